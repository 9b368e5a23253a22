"""The two stride-2 transposed convs, forward and backward, under other batch-chunk bounds
(`layers._CHUNK_BYTES`, and `_CHUNK_ROWS`, the fewest rows a chunk may have). The default is
8 MB and 1024 rows. Run from the repo root, alone."""

import jax
from timing import median_ms

from wae_jax.models import layers

print(
    '| min rows | chunk MB | 7x7x128->64 fwd | bwd | 14x14x64->32 fwd | bwd |\n'
    '|---:|---:|---:|---:|---:|---:|'
)
for rows in (1024, 256):
  for mb in (0.5, 1, 2, 4, 8):
    layers._CHUNK_BYTES, layers._CHUNK_ROWS = int(mb * 2**20), rows
    cells = []
    for hin, cin, cout in ((7, 128, 64), (14, 64, 32)):
      x = jax.random.normal(jax.random.PRNGKey(0), (100, hin, hin, cin))
      k = 0.05 * jax.random.normal(jax.random.PRNGKey(1), (4, 4, cin, cout))
      dy = jax.random.normal(jax.random.PRNGKey(2), (100, 2 * hin, 2 * hin, cout))
      fwd = jax.jit(lambda x, k: layers.conv_transpose(x, k, (2, 2)))
      bwd = jax.jit(
          lambda x, k, dy: jax.vjp(lambda x, k: layers.conv_transpose(x, k, (2, 2)), x, k)[1](dy)
      )
      cells += [median_ms(lambda: fwd(x, k)), median_ms(lambda: bwd(x, k, dy))]
    print(f'| {rows} | {mb} | ' + ' | '.join(f'{c:.2f}' for c in cells) + ' |', flush=True)
