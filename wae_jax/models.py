"""The paper's DCGAN-style encoder and decoder, and the latent adversary (Flax).

One architecture serves WAE-MMD, WAE-GAN and the VAE, as in the paper: only the encoder's
head (deterministic or Gaussian) and the loss differ.
"""

from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from wae_jax import layers


def scaled_widths(widths: Sequence[int], width: float) -> Tuple[int, ...]:
  """Channel counts times the width multiplier (1.0 = the paper's), at least 1."""
  return tuple(max(1, int(round(w * width))) for w in widths)


def batch_norm_relu(x, train: bool, dtype):
  """BatchNorm then ReLU, called inside a compact `__call__`: every conv of the nets ends so.

  The paper's nets use BatchNorm after every conv; momentum as in TF's default layers. Its
  statistics are reduced in float32 whatever the activations' dtype. The convs before it
  have no bias: BN subtracts it again, so its gradient is zero up to rounding, and Adam
  would turn that rounding noise into steps of the full learning rate.
  """
  bn = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype)
  return nn.relu(bn(x))


def latent_head(features, latent_dim: int, gaussian: bool, dtype):
  """An encoder's last layer, called inside its compact `__call__`: the flattened features ->
  (mean, log_variance) in float32; log_variance is None for a deterministic encoder."""
  x = features.reshape((features.shape[0], -1))
  if not gaussian:
    return nn.Dense(latent_dim, dtype=dtype)(x).astype(jnp.float32), None
  mean = nn.Dense(latent_dim, name='mean', dtype=dtype)(x)
  log_variance = nn.Dense(latent_dim, name='log_variance', dtype=dtype)(x)
  return mean.astype(jnp.float32), log_variance.astype(jnp.float32)


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
    k = (self.kernel_size, self.kernel_size)
    for features in self.widths:
      x = layers.Conv(features, k, strides=(2, 2), use_bias=False,
                      implementation=self.conv_impl, dtype=self.dtype)(x)
      x = batch_norm_relu(x, train, self.dtype)
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
      raise ValueError(f'image size {height}x{width} is not divisible by 2**{upsamplings} '
                       f'(the decoder has {len(self.widths)} widths)')
    k = (self.kernel_size, self.kernel_size)
    x = nn.Dense(h0 * w0 * self.widths[0], dtype=self.dtype)(z)
    x = x.reshape((z.shape[0], h0, w0, self.widths[0]))
    x = batch_norm_relu(x, train, self.dtype)
    for features in self.widths[1:]:
      x = layers.ConvTranspose(features, k, strides=(2, 2), use_bias=False,
                               implementation=self.conv_impl, dtype=self.dtype)(x)
      x = batch_norm_relu(x, train, self.dtype)
    x = layers.ConvTranspose(channels, k, strides=(1, 1), implementation=self.conv_impl,
                             dtype=self.dtype)(x)
    return x.astype(jnp.float32)


def activate(logits, pixel_range: Tuple[float, float]):
  """Decoder logits -> images in the data's pixel range (sigmoid, rescaled)."""
  lo, hi = pixel_range
  if (lo, hi) == (-1.0, 1.0):
    return jnp.tanh(logits)
  return lo + (hi - lo) * jax.nn.sigmoid(logits)


class AutoEncoder(nn.Module):
  """Encoder and decoder under one parameter tree: {'encoder': ..., 'decoder': ...}.

  Any pair with `encoder(x, train) -> (mean, log_variance or None)` and `decoder(z, train)
  -> logits`, all float32: the DCGAN nets here or `wae_jax.resnet`'s (`config.model.arch`).
  """
  encoder: nn.Module
  decoder: nn.Module

  def encode(self, x, train: bool):
    return self.encoder(x, train)

  def decode(self, z, train: bool):
    return self.decoder(z, train)

  def encode_decode(self, x, train: bool):
    """(codes, mean, log_variance, decoder logits); codes are sampled with the 'latent' rng."""
    mean, log_variance = self.encode(x, train)
    codes = mean
    if log_variance is not None:
      codes = sample_codes(self.make_rng('latent'), mean, log_variance)
    return codes, mean, log_variance, self.decode(codes, train)

  def __call__(self, x, train: bool = False):
    mean, _ = self.encode(x, train)
    return self.decode(mean, train)


class Adversary(nn.Module):
  """MLP on latent codes; one logit per code, shape [batch, 1]."""
  widths: Sequence[int]

  @nn.compact
  def __call__(self, z):
    for features in self.widths:
      z = nn.relu(nn.Dense(features)(z))
    return nn.Dense(1)(z)


def sample_codes(rng, mean, log_variance):
  """Reparameterised sample from the encoder's Gaussian N(mean, diag exp(log_variance))."""
  return mean + jnp.exp(0.5 * log_variance) * jax.random.normal(rng, mean.shape, mean.dtype)


# model.conv_impl='auto' per platform. CPU: the phase layers, about 10 times faster than
# XLA:CPU's strided and transposed convolutions (README, Speed). TPU and GPU: XLA's own. The
# compiled CelebA step (README, Accelerators) shows that XLA cannot split the phase layers'
# chunked batch over chips: each chip gathers every image and computes the whole step, with
# five times the temporaries. `launch/device_check.sh` times both on one GPU.
AUTO_CONV_IMPL = {'cpu': 'phase', 'tpu': 'xla', 'gpu': 'xla'}


def resolve_conv_impl(impl: str, platform: Optional[str] = None) -> str:
  """A model.conv_impl with 'auto' resolved for `platform` (default: JAX's backend).

  `platform` is the one the step will run on: the target's when compiling ahead of time
  for hardware this process does not have (`wae_jax.aot`).
  """
  if impl != 'auto':
    return impl
  return AUTO_CONV_IMPL.get(platform or jax.default_backend(), 'xla')


def build_autoencoder(config, platform: Optional[str] = None) -> AutoEncoder:
  """The config's encoder and decoder; `platform` resolves conv_impl='auto' (`resolve_conv_impl`)."""
  m = config.model
  if m.arch == 'resnet50v2':
    from wae_jax import resnet  # imported here: resnet builds on this module's BatchNorm
    return AutoEncoder(*resnet.build(config))
  if m.arch != 'dcgan':
    raise ValueError(f'config.model.arch={m.arch!r} is not supported')
  dtype, impl = jnp.dtype(m.dtype), resolve_conv_impl(m.conv_impl, platform)
  return AutoEncoder(
      Encoder(scaled_widths(m.encoder_widths, m.width), m.kernel_size, m.latent_dim,
              m.gaussian_encoder, impl, dtype),
      Decoder(scaled_widths(m.decoder_widths, m.width), m.kernel_size,
              tuple(config.data.image_shape), impl, dtype))


def build_adversary(config) -> Adversary:
  return Adversary(scaled_widths(config.model.adversary_widths, config.model.adversary_width))
