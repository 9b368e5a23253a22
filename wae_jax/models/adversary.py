"""The WAE-GAN latent adversary: an MLP that tells prior samples from codes."""

from typing import Sequence

import flax.linen as nn


class Adversary(nn.Module):
  """MLP on latent codes; one logit per code, shape [batch, 1]."""

  widths: Sequence[int]

  @nn.compact
  def __call__(self, z):
    for features in self.widths:
      z = nn.relu(nn.Dense(features)(z))
    return nn.Dense(1)(z)
