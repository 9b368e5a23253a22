"""What every architecture shares: the encoder-decoder pair and the pieces its nets end with.

An architecture (`wae_jax.models.dcgan`, `wae_jax.models.resnet`) is an encoder
`(x, train) -> (mean, log_variance or None)` and a decoder `(z, train) -> logits`, all
float32; `AutoEncoder` puts them under one parameter tree and samples Gaussian codes.
"""

from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp


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


def activate(logits, pixel_range: Tuple[float, float]):
  """Decoder logits -> images in the data's pixel range (sigmoid, rescaled)."""
  lo, hi = pixel_range
  if (lo, hi) == (-1.0, 1.0):
    return jnp.tanh(logits)
  return lo + (hi - lo) * jax.nn.sigmoid(logits)


def sample_codes(rng, mean, log_variance):
  """Reparameterised sample from the encoder's Gaussian N(mean, diag exp(log_variance))."""
  return mean + jnp.exp(0.5 * log_variance) * jax.random.normal(rng, mean.shape, mean.dtype)


class AutoEncoder(nn.Module):
  """Encoder and decoder under one parameter tree: {'encoder': ..., 'decoder': ...}.

  Any pair with `encoder(x, train) -> (mean, log_variance or None)` and `decoder(z, train)
  -> logits`, all float32: the DCGAN nets here or `wae_jax.models.resnet`'s (`config.model.arch`).
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
