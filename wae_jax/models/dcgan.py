"""The paper's DCGAN-style encoder and decoder (Flax).

One architecture serves WAE-MMD, WAE-GAN and the VAE, as in the paper: only the encoder's
head (deterministic or Gaussian) and the loss differ. Strided convs and transposed convs are
`wae_jax.models.layers`', whose `model.conv_impl` picks each backend's fastest form.
"""

from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from wae_jax.models import layers
from wae_jax.models.autoencoder import batch_norm_relu
from wae_jax.models.autoencoder import latent_head
from wae_jax.models.autoencoder import scaled_widths


def _stride_2(conv, module, features: int, x, train: bool):
  """conv (layers.Conv or ConvTranspose), stride 2 and no bias, then BatchNorm and ReLU: a
  step of the encoder's or the decoder's, with `module`'s kernel size, implementation and
  dtype (called inside its compact __call__, so the layers are its own)."""
  k = (module.kernel_size, module.kernel_size)
  x = conv(
      features,
      k,
      strides=(2, 2),
      use_bias=False,
      implementation=module.conv_impl,
      dtype=module.dtype,
  )(x)
  return batch_norm_relu(x, train, module.dtype)


class Encoder(nn.Module):
  """Stride-2 convs with BN and ReLU, then a linear map to the latent code.

  Returns (mean, log_variance) in float32; log_variance is None for a deterministic encoder.
  `dtype` is the activations' dtype (bfloat16 for mixed precision); parameters stay float32.
  """

  widths: Sequence[int]
  kernel_size: int
  latent_dim: int
  gaussian: bool = False
  conv_impl: str = 'phase'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    for features in self.widths:
      x = _stride_2(layers.Conv, self, features, x, train)
    return latent_head(x, self.latent_dim, self.gaussian, self.dtype)


class Decoder(nn.Module):
  """Linear map to a small feature map, stride-2 transposed convs, a stride-1 output layer.

  Returns pre-activation outputs (logits) in float32; `activate` maps them into the data's
  range.
  """

  widths: Sequence[int]
  kernel_size: int
  image_shape: Tuple[int, int, int]
  conv_impl: str = 'phase'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, train: bool):
    height, width, channels = self.image_shape
    upsamplings = len(self.widths) - 1
    h0, w0 = height // 2**upsamplings, width // 2**upsamplings
    if (h0 * 2**upsamplings, w0 * 2**upsamplings) != (height, width):
      raise ValueError(
          f'image size {height}x{width} is not divisible by 2**{upsamplings} '
          f'(the decoder has {len(self.widths)} widths)'
      )
    k = (self.kernel_size, self.kernel_size)
    x = nn.Dense(h0 * w0 * self.widths[0], dtype=self.dtype)(z)
    x = x.reshape((z.shape[0], h0, w0, self.widths[0]))
    x = batch_norm_relu(x, train, self.dtype)
    for features in self.widths[1:]:
      x = _stride_2(layers.ConvTranspose, self, features, x, train)
    x = layers.ConvTranspose(
        channels, k, strides=(1, 1), implementation=self.conv_impl, dtype=self.dtype
    )(x)
    return x.astype(jnp.float32)


def build(config, platform: Optional[str] = None) -> Tuple[Encoder, Decoder]:
  """The config's encoder and decoder; `platform` resolves conv_impl='auto'."""
  m = config.model
  dtype, impl = jnp.dtype(m.dtype), layers.resolve_conv_impl(m.conv_impl, platform)
  encoder = Encoder(
      widths=scaled_widths(m.encoder_widths, m.width),
      kernel_size=m.kernel_size,
      latent_dim=m.latent_dim,
      gaussian=m.gaussian_encoder,
      conv_impl=impl,
      dtype=dtype,
  )
  decoder = Decoder(
      widths=scaled_widths(m.decoder_widths, m.width),
      kernel_size=m.kernel_size,
      image_shape=tuple(config.data.image_shape),
      conv_impl=impl,
      dtype=dtype,
  )
  return encoder, decoder
