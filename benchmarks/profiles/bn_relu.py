"""BatchNorm+ReLU alone, forward and forward+backward: flax, a hand-written one, PyTorch."""

import flax.linen as nn
import jax
import jax.numpy as jnp
from timing import median_ms
import torch

for shape in [(100, 7, 7, 128), (100, 14, 14, 64), (100, 28, 28, 32)]:
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
  v = bn.init(jax.random.PRNGKey(1), x)

  def f(p, x):
    y, _ = bn.apply({'params': p, 'batch_stats': v['batch_stats']}, x, mutable=['batch_stats'])
    return jnp.sum(nn.relu(y) * x)  # weight so the gradient is not trivial

  fwd = jax.jit(f)
  bwd = jax.jit(jax.grad(f, argnums=(0, 1)))
  a = median_ms(lambda: fwd(v['params'], x), n=20)
  b = median_ms(lambda: bwd(v['params'], x), n=20)

  # hand-written: one reduction pass, one elementwise pass each way
  def bnrelu(x, g, b):
    m = jnp.mean(x, (0, 1, 2))
    var = jnp.mean(jnp.square(x - m), (0, 1, 2))
    return nn.relu((x - m) * jax.lax.rsqrt(var + 1e-5) * g + b)

  h = lambda p, x: jnp.sum(bnrelu(x, p['scale'], p['bias']) * x)
  c = median_ms(lambda: jax.jit(h)(v['params'], x), n=20)
  hb = jax.jit(jax.grad(h, argnums=(0, 1)))
  d = median_ms(lambda: hb(v['params'], x), n=20)
  tb = torch.nn.BatchNorm2d(shape[-1])
  xt = torch.randn(shape[0], shape[3], shape[1], shape[2], requires_grad=True)

  def tf():
    with torch.no_grad():
      return (torch.relu(tb(xt)) * xt).sum() and None

  def tfb():
    xt.grad = None
    tb.zero_grad()
    (torch.relu(tb(xt)) * xt).sum().backward()

  e = median_ms(tf, n=20)
  g = median_ms(lambda: (tfb(), None)[1], n=20)
  print(
      shape,
      f'flax fwd {a:.2f} fwd+bwd {b:.2f} | plain fwd {c:.2f} fwd+bwd {d:.2f} | '
      f'torch fwd {e:.2f} fwd+bwd {g:.2f} ms',
  )
