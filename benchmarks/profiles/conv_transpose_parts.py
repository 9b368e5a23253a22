"""The 1/8-width decoder's two stride-2 transposed convs alone: forward, backward, XLA's conv
for dx."""

import jax
from jax import lax
from timing import median_ms

from wae_jax.models import layers

for hin, cin, cout in [(7, 128, 64), (14, 64, 32)]:
  x = jax.random.normal(jax.random.PRNGKey(0), (100, hin, hin, cin))
  k = jax.random.normal(jax.random.PRNGKey(1), (4, 4, cin, cout)) * 0.05
  dy = jax.random.normal(jax.random.PRNGKey(2), (100, 2 * hin, 2 * hin, cout))
  f = jax.jit(lambda x, k: layers.conv_transpose(x, k, (2, 2)))
  fwd = median_ms(lambda: f(x, k))
  bwd = jax.jit(
      lambda x, k, dy: jax.vjp(lambda x, k: layers.conv_transpose(x, k, (2, 2)), x, k)[1](dy)
  )
  b = median_ms(lambda: bwd(x, k, dy))
  # dx via XLA's own strided conv of dy (the adjoint), dW via our path for comparison
  dx_xla = jax.jit(
      lambda dy, k: lax.conv_general_dilated(
          dy,
          k[::-1, ::-1].transpose(0, 1, 3, 2),
          (2, 2),
          'SAME',
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      )
  )
  c = median_ms(lambda: dx_xla(dy, k))
  print(
      f'{hin}x{hin}x{cin}->{cout}: ours fwd {fwd:.1f} fwd+bwd(vjp only) {b:.1f} ms; '
      f'xla strided conv for dx alone {c:.1f} ms',
      flush=True,
  )
