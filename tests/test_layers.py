"""wae_jax.models.layers must compute exactly flax's Conv / ConvTranspose ('SAME')."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wae_jax.models import layers

PAIRS = {
    'transpose': (layers.ConvTranspose, nn.ConvTranspose),
    'conv': (layers.Conv, nn.Conv),
}


def _outputs_and_grads(module, variables, x, proj):
  """Output and grads (params, input) of a random projection of the output."""

  def loss(v, x):
    return jnp.vdot(module.apply(v, x), proj)

  return jax.jit(lambda v, x: (module.apply(v, x), jax.grad(loss, argnums=(0, 1))(v, x)))(
      variables, x
  )


def _assert_close(got, want):
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert g.shape == w.shape and g.dtype == w.dtype
    g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
    scale = np.max(np.abs(w)) + 1e-6
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * scale)


def _normal(rng, shape):
  # numpy, not jax.random: XLA:CPU compiles a sampler per shape (~1 s each).
  return jnp.asarray(rng.standard_normal(shape), jnp.float32)


def _check(kind, kernel, strides, shape, features, implementation='phase'):
  ours, theirs = PAIRS[kind]
  mine = ours(features, kernel, strides, implementation=implementation)
  ref = theirs(features, kernel, strides, padding='SAME')
  rng = np.random.default_rng(0)
  x = _normal(rng, shape)
  # Random params (bias too, so that it is checked), shaped like flax's.
  variables = jax.tree.map(
      lambda a: _normal(rng, a.shape) * 0.3, jax.eval_shape(ref.init, jax.random.key(0), x)
  )
  proj = _normal(rng, jax.eval_shape(ref.apply, variables, x).shape)
  _assert_close(
      _outputs_and_grads(mine, variables, x, proj), _outputs_and_grads(ref, variables, x, proj)
  )


CASES = [
    # kernel, strides, input [N, H, W, C], features
    ((4, 4), (2, 2), (3, 7, 7, 8), 4),
    ((5, 5), (2, 2), (3, 7, 7, 8), 4),
    ((4, 4), (2, 2), (2, 4, 4, 16), 8),
    ((5, 5), (2, 2), (2, 8, 8, 3), 5),
    ((4, 4), (2, 2), (2, 5, 9, 6), 3),
    ((5, 5), (2, 2), (2, 6, 3, 4), 7),
    ((4, 4), (1, 1), (2, 7, 7, 5), 6),
    ((5, 5), (1, 1), (2, 8, 5, 4), 3),
    ((4, 5), (2, 1), (2, 6, 7, 3), 4),
    ((3, 3), (2, 2), (2, 7, 6, 3), 2),
    ((1, 1), (2, 2), (2, 3, 3, 2), 3),
]


@pytest.mark.parametrize('kind', sorted(PAIRS))
@pytest.mark.parametrize('kernel,strides,shape,features', CASES)
def test_matches_flax(kind, kernel, strides, shape, features):
  _check(kind, kernel, strides, shape, features)


@pytest.mark.parametrize('kind', sorted(PAIRS))
def test_xla_implementation_matches_flax(kind):
  _check(kind, (4, 4), (2, 2), (2, 7, 7, 4), 3, implementation='xla')


@pytest.mark.parametrize('kind', sorted(PAIRS))
def test_batch_chunks(kind, monkeypatch):
  """Several chunks, with a batch (7) that is not a multiple of the chunk."""
  seen = []
  chunking = layers._chunking

  def spy(n, rows, nbytes):
    out = chunking(n, rows, nbytes)
    seen.append((n,) + out)
    return out

  monkeypatch.setattr(layers, '_CHUNK_BYTES', 20_000)
  monkeypatch.setattr(layers, '_CHUNK_ROWS', 0)
  monkeypatch.setattr(layers, '_chunking', spy)
  _check(kind, (4, 4), (2, 2), (7, 7, 7, 4), 3)
  _check(kind, (5, 5), (2, 2), (7, 4, 4, 4), 3)
  if jax.default_backend() == 'cpu':
    assert any(c > 1 and c * size > n for n, c, size in seen)


@pytest.mark.parametrize('kind', sorted(PAIRS))
def test_params_interchangeable(kind):
  ours, theirs = PAIRS[kind]
  x = jnp.ones((2, 7, 7, 5))
  mine = ours(11, (4, 4)).init(jax.random.key(0), x)
  ref = theirs(11, (4, 4), (2, 2), padding='SAME').init(jax.random.key(0), x)
  assert jax.tree.structure(mine) == jax.tree.structure(ref)
  assert jax.tree.map(jnp.shape, mine) == jax.tree.map(jnp.shape, ref)
  assert mine['params']['kernel'].shape == (4, 4, 5, 11)
  # Same initialisers and creation order: identical values from one key.
  jax.tree.map(np.testing.assert_array_equal, mine, ref)
  no_bias = ours(11, (4, 4), use_bias=False).init(jax.random.key(0), x)
  assert set(no_bias['params']) == {'kernel'}


@pytest.mark.parametrize('kind', sorted(PAIRS))
def test_batch_dims_and_dtype(kind):
  ours, theirs = PAIRS[kind]
  rng = np.random.default_rng(1)
  x = _normal(rng, (2, 3, 4, 4, 2))
  mine, ref = ours(3, (4, 4)), theirs(3, (4, 4), (2, 2), padding='SAME')
  v = {'params': {'kernel': _normal(rng, (4, 4, 2, 3)), 'bias': _normal(rng, (3,))}}
  apply = lambda m, x: jax.jit(m.apply)(v, x)
  _assert_close(apply(mine, x), apply(ref, x))
  _assert_close(apply(mine, x[0, 0]), apply(ref, x[0, 0]))
  half = jax.eval_shape(ours(3, (4, 4), dtype=jnp.bfloat16).apply, v, x)
  assert half.dtype == jnp.bfloat16 and half.shape == apply(ref, x).shape


def test_transpose_padding_rule_matches_lax():
  from jax._src.lax import convolution  # pylint: disable=g-import-not-at-top

  for k in range(1, 8):
    for s in range(1, 4):
      pa, _ = convolution._conv_transpose_padding(k, s, 'SAME')
      assert layers._conv_transpose_axis(5, k, s).lo == k - 1 - pa


def test_unknown_implementation():
  with pytest.raises(ValueError):
    layers.ConvTranspose(2, (4, 4), implementation='fft').init(
        jax.random.key(0), jnp.ones((1, 4, 4, 1))
    )
