"""The transposed convs' im2col of the output gradient (`layers._gather`) against an
elementwise op writing as many bytes, per batch chunk: when the buffer outgrows the 2 MB L2
the gather falls behind. Run from the repo root, alone."""

import jax
from timing import median_ms

from wae_jax.models import layers

print(
    '| layer | images per chunk | buffer MB | gather ms | elementwise ms |\n'
    '|---|---:|---:|---:|---:|'
)
for hin, cout, images in ((7, 64, 34), (14, 32, 5), (14, 32, 20), (14, 32, 100)):
  axis = layers._conv_transpose_axis(hin, 4, 2)
  dy = jax.random.normal(jax.random.PRNGKey(0), (images, 2 * hin, 2 * hin, cout))
  gather = jax.jit(lambda dy: layers._gather(dy, axis, axis))
  out = gather(dy)
  scale = jax.jit(lambda o: o * 1.0001)
  print(
      f'| {hin}x{hin} -> {2 * hin}x{2 * hin}x{cout} | {images} | {out.size * 4 / 2**20:.1f} '
      f'| {median_ms(lambda: gather(dy), n=20):.2f} | {median_ms(lambda: scale(out), n=20):.2f} |',
      flush=True,
  )
