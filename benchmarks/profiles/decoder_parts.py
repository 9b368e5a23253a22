"""The 1/8-width decoder, forward and forward+backward: as is, without BatchNorm, other chunk
sizes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
from timing import median_ms

from benchmarks import benchmark
from wae_jax import models
from wae_jax.models import layers

cfg = benchmark.model_config('mnist_small', 'mmd', 100)
z = jax.random.normal(jax.random.PRNGKey(2), (100, 8))


def timing(label):
  model = models.build_autoencoder(cfg)
  v = jax.jit(lambda r: model.init(r, jnp.zeros((2, 28, 28, 1))))(jax.random.PRNGKey(0))

  def dec(p):
    out = model.apply(
        {'params': p, 'batch_stats': v.get('batch_stats', {})},
        z,
        train=True,
        method=model.decode,
        mutable=['batch_stats'],
    )[0]
    return jnp.sum(out * out)

  g = jax.jit(jax.grad(dec))
  f = jax.jit(dec)
  print(
      f'{label:28s} fwd {median_ms(lambda: f(v["params"])):6.1f}  '
      f'fwd+bwd {median_ms(lambda: g(v["params"])):6.1f} ms',
      flush=True,
  )


timing('decoder as is')
orig = models.batch_norm_relu
models.batch_norm_relu = lambda x, train, dtype: nn.relu(x)  # ReLU kept
timing('decoder without BN')
models.batch_norm_relu = orig
for mb in (2, 32, 128):
  layers._CHUNK_BYTES = mb * 2**20
  timing(f'chunk {mb} MB')
