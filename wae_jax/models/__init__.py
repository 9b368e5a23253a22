"""The networks: auto-encoders by `config.model.arch`, and the latent adversary.

    model = models.build_autoencoder(config)      # AutoEncoder(encoder, decoder)
    adversary = models.build_adversary(config)    # WAE-GAN only

Each architecture is a module with `build(config, platform) -> (encoder, decoder)`; add one
by writing such a module and naming it in `ARCHITECTURES`.
"""

from typing import Optional

from wae_jax.models import dcgan
from wae_jax.models import resnet
from wae_jax.models.adversary import Adversary
from wae_jax.models.autoencoder import AutoEncoder
from wae_jax.models.autoencoder import activate
from wae_jax.models.autoencoder import sample_codes
from wae_jax.models.autoencoder import scaled_widths
from wae_jax.models.layers import AUTO_CONV_IMPL
from wae_jax.models.layers import resolve_conv_impl

__all__ = [
    'ARCHITECTURES',
    'AUTO_CONV_IMPL',
    'Adversary',
    'AutoEncoder',
    'activate',
    'build_adversary',
    'build_autoencoder',
    'resolve_conv_impl',
    'sample_codes',
    'scaled_widths',
]

# config.model.arch -> build(config, platform) -> (encoder, decoder)
ARCHITECTURES = {'dcgan': dcgan.build, 'resnet50v2': resnet.build}


def build_autoencoder(config, platform: Optional[str] = None) -> AutoEncoder:
  """The config's encoder and decoder; `platform` resolves conv_impl='auto'."""
  arch = config.model.arch
  if arch not in ARCHITECTURES:
    raise ValueError(
        f'config.model.arch={arch!r} is not supported; allowed: '
        f'{", ".join(map(repr, ARCHITECTURES))}'
    )
  return AutoEncoder(*ARCHITECTURES[arch](config, platform))


def build_adversary(config) -> Adversary:
  return Adversary(scaled_widths(config.model.adversary_widths, config.model.adversary_width))
