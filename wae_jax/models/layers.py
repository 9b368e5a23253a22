"""Convolution layers that are fast on CPU and exactly match flax's.

Why this module exists: on a small x86 CPU, XLA:CPU's ``lax.conv_transpose``
(a convolution of a dilated input) and the backward pass of its strided
``conv_general_dilated`` are one to three orders of magnitude slower than
matrix products with the same FLOPs at the shapes of the paper's MNIST nets
(one 4x4 stride-2 transposed convolution, 7x7x256 -> 14x14x128, batch 100:
~3 s forward+backward; the 4x4x512 -> 2x2x1024 conv: ~15 s).

Both layers here compute exactly the function of ``flax.linen.ConvTranspose``
/ ``flax.linen.Conv`` with ``padding='SAME'``, with the same parameter names
and shapes (checkpoints are interchangeable), but as matrix products plus pure
data movement:

* Every stride-``s`` convolution is ``y = G(x) @ W``: ``G`` gathers, for each
  output pixel, the ``kh*kw`` input pixels its taps read (im2col). Splitting
  the input into ``s*s`` phases (space-to-depth) turns each strided tap into a
  unit-stride slice.
* Every transposed convolution is ``y = G^T(x @ W')``: one matrix product gives
  each input pixel's contribution to every tap, and the adjoint ``G^T`` adds
  the contributions landing on each output phase and interleaves the ``s*s``
  phases (depth-to-space). Only the multiply-adds that are really needed are
  done.

The gradients of one are the other (``dx`` of a conv is a transposed conv and
vice versa), so a custom VJP keeps the backward pass on the same fast path.
All work runs over chunks of the batch so that the im2col buffers stay in
cache: freshly touched memory is slow on the target machine.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import flax.linen as nn
from flax.linen.dtypes import promote_dtype
import jax
from jax import lax
import jax.numpy as jnp

# Upper bound on the per-chunk im2col buffer, in bytes (measured sweet spot on
# a 2-core x86 CPU: big enough for efficient matmuls, small enough for cache).
_CHUNK_BYTES = 8 * 2**20
# ... but at least this many matrix rows per chunk, for matmul efficiency.
_CHUNK_ROWS = 1024

_DN = ('NHWC', 'HWIO', 'NHWC')

# `implementation=`: 'phase' (this module's matrix products) or 'xla' (lax's convolutions).
IMPLEMENTATIONS = ('phase', 'xla')


class _Axis(NamedTuple):
  """Index map of one spatial axis: patch ``p``, tap ``t`` reads ``s*p+t-lo``.

  ``n_in`` is the length of the strided side (a conv's input, a transposed
  conv's output), ``n_out`` the number of patches (the other side).
  """

  n_in: int
  n_out: int
  k: int
  s: int
  lo: int

  @property
  def phase_len(self) -> int:
    """Length of each of the ``s`` phases after padding the strided side."""
    reach = self.n_out + (self.k - 1) // self.s
    return max(reach, -(-(self.n_in + self.lo) // self.s))

  @property
  def pads(self) -> tuple[int, int]:
    return self.lo, self.s * self.phase_len - self.lo - self.n_in


def _conv_axis(n: int, k: int, s: int) -> _Axis:
  """``flax.linen.Conv(padding='SAME')`` along one axis (lax's SAME rule)."""
  ((lo, _),) = lax.padtype_to_pads((n,), (k,), (s,), 'SAME')
  return _Axis(n_in=n, n_out=-(-n // s), k=k, s=s, lo=lo)


def _conv_transpose_axis(n: int, k: int, s: int) -> _Axis:
  """``flax.linen.ConvTranspose(padding='SAME')`` along one axis.

  ``lax.conv_transpose`` pads the ``s``-dilated input by ``(pa, pb)`` from
  lax's 'SAME' transpose rule and correlates with the kernel, so output
  ``o`` gets ``w[t] * x[p]`` whenever ``o = s*p + pa - t``. Flipping the taps,
  ``t' = k-1-t``, this is ``o = s*p + t' - (k-1-pa)``: the adjoint of a
  strided conv with ``lo = k-1-pa``, whose strided side has length ``s*n``.
  """
  # Same rule as jax._src.lax.convolution._conv_transpose_padding('SAME').
  pad_len = k + s - 2
  pa = k - 1 if s > k - 1 else -(-pad_len // 2)
  return _Axis(n_in=s * n, n_out=n, k=k, s=s, lo=k - 1 - pa)


def _gather(u: jax.Array, ah: _Axis, aw: _Axis) -> jax.Array:
  """im2col: ``[n, ah.n_in, aw.n_in, c] -> [n, ah.n_out, aw.n_out, kh*kw*c]``.

  Tap ``(t, v)`` of patch ``(p, q)`` is ``u[s*p+t-lo, s*q+v-lo]`` (zero outside).
  After padding and a free reshape into phases, each tap is a unit-stride
  slice of one phase.
  """
  n, _, _, c = u.shape
  u = lax.pad(u, jnp.zeros((), u.dtype), ((0, 0, 0), (*ah.pads, 0), (*aw.pads, 0), (0, 0, 0)))
  u = u.reshape(n, ah.phase_len, ah.s, aw.phase_len, aw.s, c)
  # Two nested stacks: XLA:CPU fuses each into one pass, but not a flat
  # stack of all kh*kw slices (measured 2x slower).
  rows = [
      jnp.stack(
          [
              u[
                  :,
                  t // ah.s : t // ah.s + ah.n_out,
                  t % ah.s,
                  v // aw.s : v // aw.s + aw.n_out,
                  v % aw.s,
                  :,
              ]
              for v in range(aw.k)
          ],
          axis=3,
      )
      for t in range(ah.k)
  ]
  return jnp.stack(rows, axis=3).reshape(n, ah.n_out, aw.n_out, -1)


def _scatter(z: jax.Array, ah: _Axis, aw: _Axis) -> jax.Array:
  """col2im, the adjoint of ``_gather``: ``[n, P, Q, kh*kw*c] -> [n, H, W, c]``.

  Each of the ``s*s`` output phases is a sum of shifted tap slices; the phases
  are then interleaved (depth-to-space) and the padding cropped.
  """
  n, ph, pw, _ = z.shape
  z = z.reshape(n, ph, pw, ah.k, aw.k, -1)
  c = z.shape[-1]
  lh, lw = ah.phase_len, aw.phase_len
  rows = []
  for r in range(ah.s):
    cols = []
    for r2 in range(aw.s):
      acc = jnp.zeros((n, lh, lw, c), z.dtype)
      for t in range(r, ah.k, ah.s):
        for v in range(r2, aw.k, aw.s):
          j, j2 = t // ah.s, v // aw.s
          acc = acc + lax.pad(
              z[:, :, :, t, v, :],
              jnp.zeros((), z.dtype),
              ((0, 0, 0), (j, lh - ph - j, 0), (j2, lw - pw - j2, 0), (0, 0, 0)),
          )
      cols.append(acc)
    rows.append(jnp.stack(cols, axis=3))
  u = jnp.stack(rows, axis=2).reshape(n, ah.s * lh, aw.s * lw, c)
  return u[:, ah.lo : ah.lo + ah.n_in, aw.lo : aw.lo + aw.n_in, :]


def _rows_t_dot(a: jax.Array, b: jax.Array, swap: bool) -> jax.Array:
  """``a^T @ b`` (or ``b^T @ a`` if ``swap``) summed over all leading axes.

  XLA:CPU copies the left operand of such a product into a transposed
  layout, so the smaller operand should go there (``swap = a is larger``).
  The caller transposes the swapped result once, after the loop: inside the
  loop XLA would fold that transpose back into the product.
  """
  a = a.reshape(-1, a.shape[-1])
  b = b.reshape(-1, b.shape[-1])
  if swap:
    a, b = b, a
  return lax.dot_general(a, b, (((0,), (0,)), ((), ())))


def _chunking(n: int, rows_per_item: int, bytes_per_item: int) -> tuple[int, int]:
  """(number of chunks, chunk size) for a batch of ``n`` (an empty batch: one, empty)."""
  if jax.default_backend() != 'cpu' or n == 0:
    return 1, n
  per = max(1, _CHUNK_BYTES // max(1, bytes_per_item), -(-_CHUNK_ROWS // max(1, rows_per_item)))
  n_chunks = -(-n // per)
  return n_chunks, -(-n // n_chunks)


def _split(a: jax.Array, n_chunks: int, size: int) -> jax.Array:
  pad = n_chunks * size - a.shape[0]
  if pad:
    a = jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1))
  return a.reshape(n_chunks, size, *a.shape[1:])


def _merge(a: jax.Array, n: int) -> jax.Array:
  return a.reshape(-1, *a.shape[2:])[:n]


def _batched(fn, n_chunks, size, n, xs, acc=None):
  """Runs ``fn(acc, *chunks) -> (acc, y)`` over batch chunks; returns (acc, y).

  A ``lax.scan``, so XLA compiles the body once and reuses its buffers.
  """
  if n_chunks == 1:
    return fn(acc, *xs)
  acc, ys = lax.scan(lambda a, cs: fn(a, *cs), acc, tuple(_split(x, n_chunks, size) for x in xs))
  return acc, _merge(ys, n)


def _chunks_for(v: jax.Array, ah: _Axis, aw: _Axis, cols: int):
  """Chunking of ``v``'s batch for an im2col buffer of ``cols`` columns."""
  rows = ah.n_out * aw.n_out
  return _chunking(v.shape[0], rows, rows * cols * v.dtype.itemsize)


# A strided convolution: y = G(u) @ w, with w: [kh*kw*cin, cout].
# Backward: dw = G(u)^T dy, du = G^T(dy @ w^T) (a transposed convolution).
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _patch_dot(u, w, ah, aw):
  def body(_, uc):
    return None, jnp.dot(_gather(uc, ah, aw), w)

  return _batched(body, *_chunks_for(u, ah, aw, w.shape[0]), u.shape[0], (u,))[1]


def _patch_dot_fwd(u, w, ah, aw):
  return _patch_dot(u, w, ah, aw), (u, w)


def _patch_dot_bwd(ah, aw, res, dy):
  u, w = res
  swap = w.shape[0] > w.shape[1]  # im2col wider than dy: dw^T = dy^T G(u)

  def body(dw, uc, dyc):
    p = _gather(uc, ah, aw)  # recomputed, not stored: memory is slow here
    return dw + _rows_t_dot(p, dyc, swap), _scatter(jnp.dot(dyc, w.T), ah, aw)

  dw, du = _batched(
      body,
      *_chunks_for(u, ah, aw, w.shape[0]),
      u.shape[0],
      (u, dy),
      jnp.zeros(w.shape[::-1] if swap else w.shape, w.dtype),
  )
  return du, (dw.T if swap else dw)


_patch_dot.defvjp(_patch_dot_fwd, _patch_dot_bwd)


# A transposed convolution: y = G^T(v @ w), with w: [cin, kh*kw*cout].
# Backward: with d = G(dy) (a strided im2col of dy), dw = v^T d, dv = d @ w^T.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _dot_scatter(v, w, ah, aw):
  def body(_, vc):
    return None, _scatter(jnp.dot(vc, w), ah, aw)

  return _batched(body, *_chunks_for(v, ah, aw, w.shape[1]), v.shape[0], (v,))[1]


def _dot_scatter_fwd(v, w, ah, aw):
  return _dot_scatter(v, w, ah, aw), (v, w)


def _dot_scatter_bwd(ah, aw, res, dy):
  v, w = res
  swap = w.shape[0] > w.shape[1]  # input wider than G(dy): dw^T = G(dy)^T v

  def body(dw, vc, dyc):
    d = _gather(dyc, ah, aw)
    return dw + _rows_t_dot(vc, d, swap), jnp.dot(d, w.T)

  dw, dv = _batched(
      body,
      *_chunks_for(v, ah, aw, w.shape[1]),
      v.shape[0],
      (v, dy),
      jnp.zeros(w.shape[::-1] if swap else w.shape, w.dtype),
  )
  return dv, (dw.T if swap else dw)


_dot_scatter.defvjp(_dot_scatter_fwd, _dot_scatter_bwd)


def conv_transpose(x: jax.Array, kernel: jax.Array, strides: tuple[int, int]) -> jax.Array:
  """``lax.conv_transpose(x, kernel, strides, 'SAME')`` (NHWC/HWIO), fast.

  Computed as ``G^T(x @ W')`` with the taps of ``kernel`` flipped (see
  ``_conv_transpose_axis``).
  """
  kh, kw, cin, cout = kernel.shape
  ah = _conv_transpose_axis(x.shape[1], kh, strides[0])
  aw = _conv_transpose_axis(x.shape[2], kw, strides[1])
  w = kernel[::-1, ::-1].transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)
  return _dot_scatter(x, w, ah, aw)


def conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int]) -> jax.Array:
  """``lax.conv_general_dilated(x, kernel, strides, 'SAME')`` (NHWC/HWIO), fast."""
  kh, kw, cin, cout = kernel.shape
  ah = _conv_axis(x.shape[1], kh, strides[0])
  aw = _conv_axis(x.shape[2], kw, strides[1])
  return _patch_dot(x, kernel.reshape(kh * kw * cin, cout), ah, aw)


class _ConvBase(nn.Module):
  """Shared fields and plumbing of ``Conv`` and ``ConvTranspose``.

  Fields mirror flax's (same initialisers, ``dtype`` promotion, leading batch
  dimensions), except that ``strides`` defaults to ``(2, 2)``, the stride of
  every resampling layer of the WAE nets, and an int ``kernel_size`` means a
  square kernel (only 2-d convolutions exist here).
  """

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (2, 2)
  use_bias: bool = True
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros_init()
  dtype: Any = None
  param_dtype: Any = jnp.float32
  implementation: str = 'phase'

  def _apply(self, inputs, fast, xla):
    if self.implementation not in IMPLEMENTATIONS:
      raise ValueError(f'unknown implementation {self.implementation!r}')
    ks = self.kernel_size
    ks = (ks, ks) if isinstance(ks, int) else tuple(ks)
    st = self.strides
    st = (st, st) if isinstance(st, int) else tuple(st)
    if len(ks) != 2 or len(st) != 2:
      raise ValueError('only 2-d convolutions are supported')
    batch_shape = inputs.shape[:-3]
    x = inputs.reshape((-1,) + inputs.shape[-3:])
    kernel = self.param(
        'kernel', self.kernel_init, ks + (x.shape[-1], self.features), self.param_dtype
    )
    bias = (
        self.param('bias', self.bias_init, (self.features,), self.param_dtype)
        if self.use_bias
        else None
    )
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = (fast if self.implementation == 'phase' else xla)(x, kernel, st)
    if bias is not None:
      y = y + bias
    return y.reshape(batch_shape + y.shape[1:])


class ConvTranspose(_ConvBase):
  """``flax.linen.ConvTranspose(padding='SAME')``, fast on CPU.

  Same function, parameter names and shapes (``kernel`` ``[kh, kw, cin,
  features]``, ``bias`` ``[features]``). ``implementation='phase'`` computes
  it as one matrix product and a phase interleave (exact FLOPs, custom VJP);
  ``'xla'`` calls ``lax.conv_transpose`` exactly as flax does.
  """

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    return self._apply(
        inputs,
        conv_transpose,
        lambda x, k, s: lax.conv_transpose(x, k, s, 'SAME', dimension_numbers=_DN),
    )


class Conv(_ConvBase):
  """``flax.linen.Conv(padding='SAME')``, fast on CPU.

  Same function, parameter names and shapes. ``implementation='phase'``
  computes it as im2col over input phases plus one matrix product (custom
  VJP); ``'xla'`` calls ``lax.conv_general_dilated`` exactly as flax does.
  """

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    return self._apply(
        inputs,
        conv,
        lambda x, k, s: lax.conv_general_dilated(x, k, s, 'SAME', dimension_numbers=_DN),
    )


# model.conv_impl='auto' per platform. CPU: the phase layers, about 10 times faster than
# XLA:CPU's strided and transposed convolutions (docs/speed.md). TPU and GPU: XLA's own. The
# compiled CelebA step (docs/accelerators.md) shows that XLA cannot split the phase layers'
# chunked batch over chips: each chip gathers every image and computes the whole step, with
# five times the temporaries. `launch/device_check.sh` times both on one GPU.
AUTO_CONV_IMPL = {'cpu': 'phase', 'tpu': 'xla', 'gpu': 'xla'}


def resolve_conv_impl(impl: str, platform: Optional[str] = None) -> str:
  """A model.conv_impl with 'auto' resolved for `platform` (default: JAX's backend).

  `platform` is the one the step will run on: the target's when compiling ahead of time
  for hardware this process does not have (`wae_jax.accelerators.aot`).
  """
  if impl != 'auto':
    return impl
  return AUTO_CONV_IMPL.get(platform or jax.default_backend(), 'xla')
