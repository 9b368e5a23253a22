"""Other ways to run the 1/8-width nets' weight-gradient products, each checked against the
current one: swapped operands, the row sum split into batched blocks, and both operands
transposed so that the sum runs along contiguous memory (the product alone, and with the
transposes it needs). Milliseconds per step (per chunk x chunks). Run from the repo root, alone."""

import jax
from jax import lax
import numpy as np
from timing import median_ms
from weight_grad_dot import layer_products


def tn(a, b):
  return lax.dot_general(a, b, (((0,), (0,)), ((), ())))


def blocks(a, b, k):
  a, b = a.reshape(k, -1, a.shape[1]), b.reshape(k, -1, b.shape[1])
  return lax.dot_general(a, b, (((1,), (1,)), ((0,), (0,)))).sum(0)


def nt(a_t, b_t):
  return lax.dot_general(a_t, b_t, (((1,), (1,)), ((), ())))


VARIANTS = {
    'current (a^T b)': tn,
    'swapped (b^T a)^T': lambda a, b: tn(b, a).T,
    '2 blocks': lambda a, b: blocks(a, b, 2),
    '8 blocks': lambda a, b: blocks(a, b, 8),
    'transposed, with the transposes': lambda a, b: nt(a.T, b.T),
}

print('| layer | ' + ' | '.join(VARIANTS) + ' | transposed, product alone |')
print('|---|' + '---:|' * (len(VARIANTS) + 1))
for name, r, n, ac, bc in layer_products():
  a = np.random.randn(r, ac).astype(np.float32)
  b = np.random.randn(r, bc).astype(np.float32)
  want = tn(a, b)
  cells = []
  for label, fn in VARIANTS.items():
    if 'blocks' in label and r % int(label.split()[0]):
      cells.append('-')
      continue
    fn = jax.jit(fn)
    np.testing.assert_allclose(fn(a, b), want, rtol=1e-3, atol=1e-2)
    cells.append(f'{n * median_ms(lambda: fn(a, b), n=20):.2f}')
  a_t, b_t, nt_jit = a.T.copy(), b.T.copy(), jax.jit(nt)
  cells.append(f'{n * median_ms(lambda: nt_jit(a_t, b_t), n=20):.2f}')
  print(f'| {name} | ' + ' | '.join(cells) + ' |', flush=True)
