"""The 1/8-width nets' weight-gradient products (dW = X^T dY, summed over pixels) on 2 cores and
on 1.

Each strided layer's backward multiplies im2col buffers twice: dX as a plain product (many rows
out) and dW as a product that contracts over all rows (batch x pixels) into a small output.
This times both shapes at the sizes `wae_jax.models.layers` runs them (per batch chunk, times the
number of chunks), as XLA:CPU runs them, with the FLOPs of dW done as a plain product beside
it, and again pinned to one core. Run from the repo root, alone:
python benchmarks/profiles/weight_grad_dot.py
"""

import os
import subprocess
import sys

import numpy as np


def layer_products(batch=100):
  """(name, chunk rows, chunks, lhs columns, rhs columns) of each dW = lhs^T rhs in layers.py."""
  import jax.numpy as jnp

  from wae_jax.models import layers as L

  out = []
  for hin, cin, cout, s in ((7, 128, 64, 2), (14, 64, 32, 2), (28, 32, 1, 1)):  # decoder
    ah = L._conv_transpose_axis(hin, 4, s)
    n_chunks, size = L._chunks_for(jnp.zeros((batch, hin, hin, cin)), ah, ah, 16 * cout)
    out.append((f'convT {hin}x{hin}x{cin}->{cout}', size * hin * hin, n_chunks, cin, 16 * cout))
  for hin, cin, cout in ((28, 1, 16), (14, 16, 32), (7, 32, 64), (4, 64, 128)):  # encoder
    ah = L._conv_axis(hin, 4, 2)
    n_chunks, size = L._chunks_for(jnp.zeros((batch, hin, hin, cin)), ah, ah, 16 * cin)
    out.append((f'conv {hin}x{hin}x{cin}->{cout}', size * ah.n_out**2, n_chunks, 16 * cin, cout))
  return out


def measure():
  import jax
  from jax import lax
  from timing import median_ms

  tn = jax.jit(lambda a, b: lax.dot_general(a, b, (((0,), (0,)), ((), ()))))
  nn = jax.jit(lambda b, w: b @ w)
  rows = []
  for name, r, n_chunks, ac, bc in layer_products():
    a = np.random.randn(r, ac).astype(np.float32)
    b = np.random.randn(r, bc).astype(np.float32)
    w = np.random.randn(bc, ac).astype(np.float32)
    rows.append(
        (
            name,
            r,
            n_chunks,
            ac,
            bc,
            n_chunks * median_ms(lambda: tn(a, b), n=20),
            n_chunks * median_ms(lambda: nn(b, w), n=20),
        )
    )
  return rows


if __name__ == '__main__':
  if sys.argv[1:] == ['--child']:
    for row in measure():
      print(*row, sep='\t')
    sys.exit()
  results = {}
  for cores in ({0, 1}, {0}):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    out = subprocess.run(
        [sys.executable, __file__, '--child'],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda c=cores: os.sched_setaffinity(0, c),
    )
    results[len(cores)] = [line.split('\t') for line in out.stdout.strip().splitlines()]
  print(
      '| layer | dW product per chunk x chunks | dW ms, 2 cores | dW ms, 1 core | same FLOPs as '
      'X @ W, 2 cores | 1 core |\n|---|---|---:|---:|---:|---:|'
  )
  for two, one in zip(results[2], results[1]):
    name, r, n, ac, bc = two[:5]
    print(
        f'| {name} | [{r}x{ac}]^T [{r}x{bc}] x {n} | {float(two[5]):.2f} | {float(one[5]):.2f} '
        f'| {float(two[6]):.2f} | {float(one[6]):.2f} |'
    )
  total = lambda res, i: sum(float(row[i]) for row in res)
  print(
      f'| all | | {total(results[2], 5):.2f} | {total(results[1], 5):.2f} '
      f'| {total(results[2], 6):.2f} | {total(results[1], 6):.2f} |'
  )
