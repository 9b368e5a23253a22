"""Model FLOPs of a train step, counted from the architecture (any `config.model.arch`).

The benchmark's MFU and the ahead-of-time roofline (`wae_jax.accelerators.aot`) both divide by these
counts rather than by XLA's estimates, which miss or invent work depending on how a layer is
written (e.g. `wae_jax.models.layers`' phase form of a transposed convolution).
"""

import math
from typing import Dict

import flax.linen as nn
import jax
import jax.numpy as jnp

from wae_jax import models
from wae_jax import penalties
from wae_jax.models import layers


def forward_macs(config) -> Dict[str, int]:
  """Multiply-accumulates per image of each conv, transposed conv and dense layer.

  Counted by tracing the nets (shapes only, `jax.eval_shape`) and intercepting every layer
  call, so any architecture (`config.model.arch`) is counted the same way. A conv costs
  (output pixels) * k * k * c_in * c_out, a transposed conv (input pixels) * k * k * c_in *
  c_out (every input pixel meets every tap), a dense layer fan_in * fan_out. Biases,
  BatchNorm, activations, resizes and the losses are not counted. Keys: 'encoder', 'decoder',
  'adversary' (one code through the adversary MLP).
  """
  batch, macs = 2, {'encoder': 0, 'decoder': 0, 'adversary': 0}

  def trace(init, part=None):
    """Adds up the layers that `init` calls, under `part` or their top module's name."""

    def count(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      module = context.module
      if context.method_name == '__call__' and isinstance(module, _COUNTED):
        inputs, kernel = args[0], module.variables['params']['kernel']
        if isinstance(module, (nn.ConvTranspose, layers.ConvTranspose)):
          n = inputs.size * kernel.shape[-1] * math.prod(kernel.shape[:-2])
        else:  # a conv or a dense layer: every output meets the kernel's fan-in
          n = out.size * math.prod(kernel.shape[:-1])
        macs[part or module.scope.path[0]] += n // batch
      return out

    with nn.intercept_methods(count):
      jax.eval_shape(init)

  model, adversary = models.build_autoencoder(config), models.build_adversary(config)
  rng = jax.random.PRNGKey(0)
  images = jnp.zeros((batch,) + tuple(config.data.image_shape))
  trace(lambda: model.init(rng, images, train=False))  # 'encoder' and 'decoder' submodules
  trace(lambda: adversary.init(rng, jnp.zeros((batch, config.model.latent_dim))), 'adversary')
  return macs


_COUNTED = (nn.Conv, nn.ConvTranspose, nn.Dense, layers.Conv, layers.ConvTranspose)


def train_step_flops(config, batch_size: int) -> int:
  """Model FLOPs of one train step: 3 x the forward's 2 x MACs (forward, and a backward
  that costs two forwards: gradients of the inputs and of the weights).

  The auto-encoder runs once per image. A penalty's adversary (WAE-GAN's) runs on three
  batches of codes: the encoder's loss (codes) and its own loss (prior samples and codes).
  """
  macs = forward_macs(config)
  per_image = macs['encoder'] + macs['decoder']
  if penalties.get(config.penalty.name).needs_adversary:
    per_image += 3 * macs['adversary']
  return 3 * 2 * batch_size * per_image
