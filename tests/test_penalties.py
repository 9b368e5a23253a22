"""Tests for wae_jax.penalties against brute-force NumPy references.

The references loop over pairs and samples in float64 and are written
independently of the vectorised code, so a wrong normaliser, sign or missing
constant in penalties.py makes them disagree.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from wae_jax import penalties

# ------------------------------------------------------------ references ---


def _ref_kernel(a, b, kernel, base_scale, scales=penalties.IMQ_SCALES):
  sq = float(np.sum((np.ravel(a) - np.ravel(b)) ** 2))
  if kernel == 'rbf':
    return math.exp(-sq / base_scale)
  if kernel == 'imq':
    return base_scale / (base_scale + sq)
  return sum(base_scale * s / (base_scale * s + sq) for s in scales)


def _ref_mmd(codes, prior, kernel, base_scale):
  codes = np.asarray(codes, np.float64)
  prior = np.asarray(prior, np.float64)
  n, m = len(codes), len(prior)
  k = functools.partial(_ref_kernel, kernel=kernel, base_scale=base_scale)
  within_prior = sum(k(prior[i], prior[j]) for i in range(m) for j in range(m) if i != j)
  within_codes = sum(k(codes[i], codes[j]) for i in range(n) for j in range(n) if i != j)
  cross = sum(k(codes[i], prior[j]) for i in range(n) for j in range(m))
  return within_prior / (m * (m - 1)) + within_codes / (n * (n - 1)) - 2.0 * cross / (n * m)


def _ref_log_density(z, variance):
  out = []
  for zi in np.asarray(z, np.float64).reshape(len(z), -1):
    total = 0.0
    for v in zi:  # product of independent 1-d Gaussians
      total += -0.5 * math.log(2 * math.pi * variance) - v * v / (2 * variance)
    out.append(total)
  return np.array(out)


def _ref_kl(mean, log_variance, prior_variance):
  mean = np.asarray(mean, np.float64).reshape(len(mean), -1)
  log_variance = np.asarray(log_variance, np.float64).reshape(len(mean), -1)
  per_sample = []
  for mu_row, lv_row in zip(mean, log_variance):
    total = 0.0
    for mu, lv in zip(mu_row, lv_row):
      # KL(N(mu, s1^2) || N(0, s2^2)) = log(s2/s1) + (s1^2 + mu^2)/(2 s2^2) - 1/2
      s1, s2 = math.exp(0.5 * lv), math.sqrt(prior_variance)
      total += math.log(s2 / s1) + (s1**2 + mu**2) / (2 * s2**2) - 0.5
    per_sample.append(total)
  return float(np.mean(per_sample))


def _sigmoid(t):
  return 1.0 / (1.0 + math.exp(-t))


def _ref_cost(x, y, name):
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  y = np.asarray(y, np.float64).reshape(len(y), -1)
  per_image = []
  for xi, yi in zip(x, y):
    total = 0.0
    for a, b in zip(xi, yi):
      if name == 'bernoulli':  # b is a logit
        p = _sigmoid(b)
        total += -(a * math.log(p) + (1 - a) * math.log(1 - p))
      elif name == 'l1':
        total += abs(a - b)
      else:
        total += (a - b) ** 2
    per_image.append(math.sqrt(total) if name == 'l2' else total)
  return float(np.mean(per_image))


def _ref_sliced_wasserstein(codes, prior, directions, p):
  codes = np.asarray(codes, np.float64).reshape(len(codes), -1)
  prior = np.asarray(prior, np.float64).reshape(len(prior), -1)
  per_direction = []
  for theta in np.asarray(directions, np.float64):
    # In 1-d, optimal transport between equal-size samples pairs them sorted.
    a = sorted(float(np.dot(theta, z)) for z in codes)
    b = sorted(float(np.dot(theta, z)) for z in prior)
    per_direction.append(np.mean([abs(u - v) ** p for u, v in zip(a, b)]))
  return float(np.mean(per_direction))


def _squared_cost_matrix(x, y):
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  y = np.asarray(y, np.float64).reshape(len(y), -1)
  return np.array([[np.sum((a - b) ** 2) for b in y] for a in x])


def _exact_w2_squared(x, y):
  """min_P <P, C> over couplings of the uniform measures: a linear program."""
  cost = _squared_cost_matrix(x, y)
  n, m = cost.shape
  rows = np.kron(np.eye(n), np.ones((1, m)))  # sum_j P_ij = 1/n
  cols = np.kron(np.ones((1, n)), np.eye(m))  # sum_i P_ij = 1/m
  result = optimize.linprog(
      cost.ravel(),
      A_eq=np.vstack([rows, cols]),
      b_eq=np.concatenate([np.full(n, 1 / n), np.full(m, 1 / m)]),
      bounds=(0, None),
      method='highs',
  )
  assert result.success, result.message
  return result.fun


# Eager JAX compiles every primitive for every new shape; one compiled MMD per
# shape keeps the file fast on a 2-core CPU.
_jit_mmd = jax.jit(penalties.mmd, static_argnames=('kernel', 'scales'))
_jit_swd = jax.jit(penalties.sliced_wasserstein, static_argnames=('num_projections', 'p'))
# epsilon and threshold stay traced: one compile per shape serves every value.
_jit_sinkhorn = jax.jit(penalties.sinkhorn, static_argnames=('max_iterations',))


def _normal(seed, shape, loc=0.0, std=1.0):
  rng = np.random.default_rng(seed)
  return (loc + std * rng.standard_normal(shape)).astype(np.float32)


def _assert_finite_tree(tree):
  for leaf in jax.tree_util.tree_leaves(tree):
    assert np.all(np.isfinite(np.asarray(leaf))), leaf


# ---------------------------------------------------------------- kernels ---


def test_public_constants():
  assert penalties.IMQ_SCALES == (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
  assert penalties.KERNELS == ('rbf', 'imq', 'imq_multiscale')
  assert penalties.RECONSTRUCTION_COSTS == ('l2sq', 'l2', 'l1', 'bernoulli')
  assert penalties.SINKHORN_THRESHOLD == 1e-3


def test_squared_distances_matches_loops_and_flattens():
  x = _normal(0, (5, 2, 3))
  y = _normal(1, (4, 6))
  got = penalties.squared_distances(x, y)
  assert got.shape == (5, 4)
  want = np.array([[np.sum((x[i].ravel() - y[j]) ** 2) for j in range(4)] for i in range(5)])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_squared_distances_precise_and_non_negative_far_from_origin():
  # ||x||^2 ~ 6e5 against distances ~ 1e-4: without centring, the expansion
  # loses every digit here (float32 rounding of the norms is ~0.1).
  x = _normal(2, (16, 64), loc=100.0, std=1e-3)
  d = np.asarray(penalties.squared_distances(x, x))
  assert np.all(d >= 0.0)
  x64 = x.astype(np.float64)
  want = np.array([[np.sum((a - b) ** 2) for b in x64] for a in x64])
  np.testing.assert_allclose(d, want, rtol=1e-2, atol=1e-6)


def test_squared_distances_rejects_mismatched_dims():
  with pytest.raises(ValueError, match='dimension'):
    penalties.squared_distances(np.zeros((3, 4)), np.zeros((3, 5)))


def test_kernels_and_default_scale():
  sq = np.array([0.0, 1.0, 4.0], np.float32)
  np.testing.assert_allclose(penalties.rbf_kernel(sq, 2.0), np.exp(-sq / 2.0), rtol=1e-6)
  np.testing.assert_allclose(penalties.imq_kernel(sq, 2.0), 2.0 / (2.0 + sq), rtol=1e-6)
  # The paper's settings: MNIST d_z = 8, sigma^2 = 1; CelebA d_z = 64, sigma^2 = 2.
  assert penalties.default_kernel_scale(8, 1.0) == 16.0
  assert penalties.default_kernel_scale(64, 2.0) == 256.0


# -------------------------------------------------------------------- MMD ---


@pytest.mark.parametrize('kernel', penalties.KERNELS)
@pytest.mark.parametrize('n,m', [(7, 7), (6, 9), (9, 5)])
def test_mmd_matches_brute_force(kernel, n, m):
  codes = _normal(10 + n, (n, 3), loc=0.5, std=1.3)
  prior = _normal(20 + m, (m, 3))
  got = _jit_mmd(codes, prior, kernel=kernel)
  want = _ref_mmd(codes, prior, kernel, base_scale=2 * 3 * 1.0)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('kernel', penalties.KERNELS)
def test_mmd_scale_and_prior_variance_set_the_base_scale(kernel):
  codes = _normal(3, (6, 2, 2))  # flattened d = 4
  prior = _normal(4, (8, 4), std=math.sqrt(2.0))
  got = _jit_mmd(codes, prior, kernel=kernel, prior_variance=2.0)
  np.testing.assert_allclose(
      got, _ref_mmd(codes, prior, kernel, base_scale=2 * 4 * 2.0), rtol=1e-4, atol=1e-5
  )
  got = _jit_mmd(codes, prior, kernel=kernel, scale=0.7)
  np.testing.assert_allclose(got, _ref_mmd(codes, prior, kernel, 0.7), rtol=1e-4, atol=1e-5)


def test_mmd_custom_scales():
  codes, prior = _normal(5, (5, 3)), _normal(6, (6, 3))
  got = _jit_mmd(codes, prior, scale=1.5, scales=(0.5, 3.0))
  want = sum(_ref_mmd(codes, prior, 'imq', 1.5 * s) for s in (0.5, 3.0))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_mmd_of_identical_pair_by_hand():
  # Two points {0, 1} in both sets, rbf with scale 1, k01 = exp(-1):
  # within terms are k01 each, the cross term averages (1 + k01) / 2, so
  # MMD = 2 k01 - (1 + k01) = exp(-1) - 1 < 0. Any n^2 normaliser on the
  # within terms, or keeping their diagonal, gives a different value.
  pts = np.array([[0.0], [1.0]], np.float32)
  got = _jit_mmd(pts, pts, kernel='rbf', scale=1.0)
  np.testing.assert_allclose(got, math.exp(-1.0) - 1.0, rtol=1e-6)


def test_mmd_is_unbiased_for_equal_distributions_and_positive_when_shifted():
  n, d, seeds = 64, 8, 24
  keys = jax.random.split(jax.random.key(0), 3 * seeds).reshape(3, seeds)
  codes = jax.vmap(lambda k: jax.random.normal(k, (n, d)))(keys[0])
  prior = jax.vmap(lambda k: jax.random.normal(k, (n, d)))(keys[1])
  shifted = jax.vmap(lambda k: jax.random.normal(k, (n, d)) + 1.0)(keys[2])
  batched_mmd = jax.jit(jax.vmap(penalties.mmd))
  same = np.asarray(batched_mmd(codes, prior))
  moved = np.asarray(batched_mmd(shifted, prior))
  std = same.std(ddof=1)
  # Unbiased: the mean over seeds is within a few standard errors of 0, and
  # individual estimates are negative about half the time.
  assert abs(same.mean()) < 4 * std / math.sqrt(seeds)
  assert np.sum(same < 0) >= 3
  # A shift by 1 in every coordinate is many estimator std away from 0.
  assert moved.min() > 10 * std
  assert moved.min() > 3 * same.max()


@pytest.mark.parametrize('kernel', penalties.KERNELS)
def test_mmd_gradient_is_finite_even_at_coinciding_points(kernel):
  prior = _normal(7, (6, 4))
  codes = prior.copy()
  codes[1] = codes[0]  # duplicate codes: squared distance exactly 0
  grad_fn = jax.jit(jax.grad(functools.partial(penalties.mmd, kernel=kernel)))
  _assert_finite_tree(grad_fn(codes, prior))
  grad = grad_fn(_normal(8, (6, 4), loc=1.0), prior)
  assert np.any(np.abs(grad) > 0)


def _assert_gradient_matches_finite_differences(f, codes, atol):
  """jax.grad(f) at three entries of [5, 3] float64 codes against central differences."""
  grad = np.asarray(jax.grad(f)(codes))
  eps = 1e-6
  for i, j in [(0, 0), (2, 1), (4, 2)]:
    e = np.zeros(codes.shape)
    e[i, j] = eps
    numeric = (f(codes + e) - f(codes - e)) / (2 * eps)
    np.testing.assert_allclose(grad[i, j], numeric, rtol=1e-5, atol=atol)


def test_mmd_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    codes = jnp.asarray(_normal(9, (5, 3), loc=0.3), jnp.float64)
    prior = jnp.asarray(_normal(10, (6, 3)), jnp.float64)
    f = jax.jit(lambda c: penalties.mmd(c, prior, kernel='imq_multiscale'))
    _assert_gradient_matches_finite_differences(f, codes, atol=1e-9)


def test_mmd_with_traced_prior_variance_and_scale():
  # E.g. values from a schedule: they may be tracers, only shapes are static.
  codes, prior = _normal(11, (6, 5)), _normal(12, (7, 5))
  want = _ref_mmd(codes, prior, 'imq', base_scale=2 * 5 * 2.0)
  by_variance = jax.jit(lambda v: penalties.mmd(codes, prior, kernel='imq', prior_variance=v))
  np.testing.assert_allclose(by_variance(2.0), want, rtol=1e-4, atol=1e-5)
  by_scale = jax.jit(lambda c: penalties.mmd(codes, prior, kernel='imq', scale=c))
  np.testing.assert_allclose(by_scale(20.0), want, rtol=1e-4, atol=1e-5)


def test_mmd_vmap_matches_loop():
  codes = _normal(13, (4, 6, 3))
  prior = _normal(14, (4, 8, 3))
  batched = jax.jit(jax.vmap(functools.partial(penalties.mmd, kernel='rbf')))(codes, prior)
  looped = [_jit_mmd(c, p, kernel='rbf') for c, p in zip(codes, prior)]
  assert batched.shape == (4,)
  np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-6)


def test_mmd_rejects_unknown_kernel():
  with pytest.raises(ValueError, match=r"kernel.*'rbf', 'imq', 'imq_multiscale'"):
    penalties.mmd(np.zeros((3, 2)), np.zeros((3, 2)), kernel='gaussian')


@pytest.mark.parametrize('n,m', [(1, 5), (5, 1)])
def test_mmd_rejects_fewer_than_two_samples_even_under_jit(n, m):
  codes, prior = np.zeros((n, 2), np.float32), np.zeros((m, 2), np.float32)
  with pytest.raises(ValueError, match='at least 2'):
    penalties.mmd(codes, prior)
  with pytest.raises(ValueError, match='at least 2'):
    jax.jit(penalties.mmd)(codes, prior)


def test_mmd_rejects_mismatched_code_dims():
  with pytest.raises(ValueError, match='dimension'):
    penalties.mmd(np.zeros((4, 3)), np.zeros((4, 2, 2)))


# ------------------------------------------- sliced Wasserstein, Sinkhorn ---


def test_random_directions_are_unit_vectors_from_the_rng():
  rng = jax.random.key(0)
  directions = penalties.random_directions(rng, 300, 3)
  assert directions.shape == (300, 3) and directions.dtype == jnp.float32
  np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, rtol=1e-6)
  # Uniform on the sphere: mean ~0, second moment I / d.
  np.testing.assert_allclose(np.mean(directions, axis=0), 0.0, atol=0.15)
  np.testing.assert_allclose(np.asarray(directions).T @ directions / 300, np.eye(3) / 3, atol=0.06)
  np.testing.assert_array_equal(directions, penalties.random_directions(rng, 300, 3))
  assert not np.allclose(directions, penalties.random_directions(jax.random.key(1), 300, 3))


@pytest.mark.parametrize('p', [1, 2, 3])
@pytest.mark.parametrize('shape', [(7, 3), (6, 2, 2)])
def test_sliced_wasserstein_matches_brute_force(p, shape):
  codes = _normal(40, shape, loc=0.5, std=1.3)
  prior = _normal(41, shape)
  rng = jax.random.key(42)
  got = _jit_swd(codes, prior, rng=rng, num_projections=9, p=p)
  d = math.prod(shape[1:])
  want = _ref_sliced_wasserstein(codes, prior, penalties.random_directions(rng, 9, d), p)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('p,want', [(1, 5 / 3), (2, 3.0)])
def test_sliced_wasserstein_in_one_dimension_by_hand(p, want):
  # d = 1: every direction is +-1 and SW_p^p is W_p^p of the 1-d samples.
  # Sorted pairs (0, 2), (1, 3), (5, 4): distances 2, 2, 1.
  codes = np.array([[5.0], [0.0], [1.0]], np.float32)
  prior = np.array([[3.0], [4.0], [2.0]], np.float32)
  got = penalties.sliced_wasserstein(codes, prior, rng=jax.random.key(0), num_projections=4, p=p)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_sliced_wasserstein_randomness_comes_only_from_rng():
  codes, prior = _normal(43, (8, 5), loc=0.3), _normal(44, (8, 5))
  swd = functools.partial(_jit_swd, codes, prior, num_projections=3)
  first = swd(rng=jax.random.key(1))
  np.testing.assert_array_equal(first, swd(rng=jax.random.key(1)))
  assert float(first) != float(swd(rng=jax.random.key(2)))


@pytest.mark.parametrize('n,m', [(6, 6), (5, 7)])
def test_sinkhorn_tends_to_exact_ot_as_epsilon_shrinks(n, m):
  codes = _normal(45 + n, (n, 2), loc=0.5)
  prior = _normal(46 + m, (m, 2))
  exact = _exact_w2_squared(codes, prior)
  if n == m:  # equal uniform weights: an optimal plan is a permutation
    rows, cols = optimize.linear_sum_assignment(_squared_cost_matrix(codes, prior))
    np.testing.assert_allclose(
        exact, _squared_cost_matrix(codes, prior)[rows, cols].mean(), rtol=1e-9
    )
  # epsilon is traced: one compiled solver serves the three values.
  errors = [
      abs(
          float(_jit_sinkhorn(codes, prior, epsilon=eps, max_iterations=5000, threshold=1e-6))
          - exact
      )
      for eps in (1.0, 0.1, 0.01)
  ]
  assert errors[0] > errors[1] > errors[2], errors
  assert errors[2] < 0.02 * exact, (errors, exact)


def _ot_penalties(rng, num_projections=50):
  return {
      'swd': lambda c, p: penalties.sliced_wasserstein(
          c, p, rng=rng, num_projections=num_projections
      ),
      'sinkhorn': penalties.sinkhorn,
  }


@pytest.mark.parametrize('name', ['swd', 'sinkhorn'])
def test_ot_penalties_near_zero_for_one_distribution_large_when_shifted(name):
  keys = jax.random.split(jax.random.key(3), 3)
  prior = jax.random.normal(keys[0], (500, 2))
  same = jax.random.normal(keys[1], (500, 2))
  shifted = jax.random.normal(keys[2], (500, 2)) + 1.0
  # Enough directions that their own sampling error is small (~3%).
  fn = jax.jit(_ot_penalties(jax.random.key(4), num_projections=500)[name])
  same, shifted = float(fn(same, prior)), float(fn(shifted, prior))
  # The shift moves every point by (1, 1): W_2^2 = 2, and SW_2^2 = 2 / d = 1
  # (the mean of (theta . s)^2 over unit directions theta is |s|^2 / d).
  want = {'swd': 1.0, 'sinkhorn': 2.0}[name]
  assert 0.0 <= same < 0.05 * want
  assert abs(shifted - want) < 0.1 * want
  assert shifted > 20 * same


@pytest.mark.parametrize('name', ['swd', 'sinkhorn'])
def test_ot_penalties_gradients_are_finite_even_at_coinciding_points(name):
  prior = _normal(47, (6, 4))
  codes = prior.copy()
  codes[1] = codes[0]
  grad_fn = jax.jit(jax.grad(_ot_penalties(jax.random.key(5))[name]))
  _assert_finite_tree(grad_fn(codes, prior))
  _assert_finite_tree(grad_fn(prior, prior))  # value 0: a minimum
  grad = grad_fn(_normal(48, (6, 4), loc=1.0), prior)
  _assert_finite_tree(grad)
  assert np.any(np.abs(grad) > 0)


@pytest.mark.parametrize('name', ['swd', 'sinkhorn'])
def test_ot_penalties_gradients_match_finite_differences(name):
  with jax.enable_x64(True):
    codes = jnp.asarray(_normal(49, (5, 3), loc=0.3), jnp.float64)
    prior = jnp.asarray(_normal(50, (5, 3)), jnp.float64)
    fns = {
        'swd': lambda c: penalties.sliced_wasserstein(
            c, prior, rng=jax.random.key(6), num_projections=7
        ),
        # Danskin's gradient is exact once the potentials have converged.
        'sinkhorn': lambda c: penalties.sinkhorn(
            c, prior, epsilon=0.5, max_iterations=2000, threshold=1e-10
        ),
    }
    f = jax.jit(fns[name])
    _assert_gradient_matches_finite_differences(f, codes, atol=1e-8)


def test_ot_penalties_vmap_match_loop():
  codes = _normal(51, (3, 6, 2, 2))
  prior = _normal(52, (3, 6, 4))
  rngs = jax.random.split(jax.random.key(7), 3)
  swd = jax.jit(jax.vmap(functools.partial(penalties.sliced_wasserstein, num_projections=5)))
  batched = swd(codes, prior, rng=rngs)
  looped = [_jit_swd(c, p, rng=k, num_projections=5) for c, p, k in zip(codes, prior, rngs)]
  assert batched.shape == (3,)
  np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-6)
  batched = jax.jit(jax.vmap(penalties.sinkhorn))(codes, prior)
  looped = [_jit_sinkhorn(c, p) for c, p in zip(codes, prior)]
  assert batched.shape == (3,)
  np.testing.assert_allclose(batched, looped, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name', ['swd', 'sinkhorn'])
def test_ot_penalties_reject_bad_shapes_even_under_jit(name):
  fn = _ot_penalties(jax.random.key(0))[name]
  for codes, prior, match in [
      (np.zeros((4, 3)), np.zeros((4, 2, 2)), 'dimension'),
      (np.float32(1.0), np.zeros((4, 1)), 'scalar'),
      (np.zeros((4, 1)), np.float32(1.0), 'scalar'),
      (np.zeros((0, 2)), np.zeros((0, 2)), 'at least 1'),
  ]:
    with pytest.raises(ValueError, match=match):
      fn(codes, prior)
    with pytest.raises(ValueError, match=match):
      jax.jit(fn)(codes, prior)


def test_sliced_wasserstein_rejects_unequal_counts_and_bad_arguments():
  codes, rng = np.zeros((4, 2), np.float32), jax.random.key(0)
  with pytest.raises(ValueError, match=r'n == m.*n=4.*m=5'):
    penalties.sliced_wasserstein(codes, np.zeros((5, 2)), rng=rng)
  with pytest.raises(ValueError, match='num_projections'):
    penalties.sliced_wasserstein(codes, codes, rng=rng, num_projections=0)
  with pytest.raises(ValueError, match='p must be >= 1'):
    penalties.sliced_wasserstein(codes, codes, rng=rng, p=0.5)


def test_sinkhorn_rejects_bad_arguments():
  codes = np.zeros((4, 2), np.float32)
  with pytest.raises(ValueError, match='epsilon'):
    penalties.sinkhorn(codes, codes, epsilon=0.0)
  with pytest.raises(ValueError, match='max_iterations'):
    penalties.sinkhorn(codes, codes, max_iterations=0)


# ---------------------------------------------------------------- WAE-GAN ---


@pytest.mark.parametrize('variance', [1.0, 2.0])
def test_gaussian_log_density_matches_loops(variance):
  z = _normal(15, (5, 2, 3))
  got = penalties.gaussian_log_density(z, variance)
  assert got.shape == (5,)
  np.testing.assert_allclose(got, _ref_log_density(z, variance), rtol=1e-5)
  # Standard normal at the origin, d = 1: -log(2 pi) / 2.
  np.testing.assert_allclose(
      penalties.gaussian_log_density(np.zeros((1, 1)), 1.0),
      [-0.5 * math.log(2 * math.pi)],
      rtol=1e-6,
  )


@pytest.mark.parametrize('logit_shape', [(6, 1), (6,)])
def test_log_prior_logits_is_per_sample(logit_shape):
  logits = _normal(16, logit_shape)
  z = _normal(17, (6, 4))
  got = penalties.log_prior_logits(logits, z, 2.0)
  # The authors' TF code broadcast [N, 1] + [N] into [N, N]; this must be [N].
  assert got.shape == (6,)
  want = logits.reshape(6) + _ref_log_density(z, 2.0)
  np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize('logit_shape', [(6, 2), (6, 1, 1), (5, 1), ()])
def test_log_prior_logits_rejects_other_shapes(logit_shape):
  with pytest.raises(ValueError, match='logits'):
    penalties.log_prior_logits(np.zeros(logit_shape, np.float32), np.zeros((6, 4), np.float32), 1.0)


def test_adversary_losses_match_log_sigmoid_formulas():
  prior_logits = _normal(18, (7, 1), std=2.0)
  code_logits = _normal(19, (7, 1), loc=-1.0, std=2.0)
  p = [_sigmoid(t) for t in prior_logits.ravel()]
  q = [_sigmoid(t) for t in code_logits.ravel()]
  want_adv = -np.mean(np.log(p)) - np.mean(np.log(1 - np.array(q)))
  want_enc = -np.mean(np.log(q))
  np.testing.assert_allclose(
      penalties.adversary_loss(prior_logits, code_logits), want_adv, rtol=1e-5
  )
  np.testing.assert_allclose(penalties.encoder_adversarial_loss(code_logits), want_enc, rtol=1e-5)


def test_adversary_losses_are_finite_for_extreme_logits():
  confident = np.array([200.0, -200.0, 0.0], np.float32)
  for fn in (
      lambda l: penalties.adversary_loss(l, -l),
      lambda l: penalties.adversary_loss(-l, l),
      penalties.encoder_adversarial_loss,
  ):
    _assert_finite_tree(jax.jit(jax.value_and_grad(fn))(confident))
  # A wrong, saturated adversary pays its logit, not inf.
  np.testing.assert_allclose(
      penalties.encoder_adversarial_loss(np.array([-200.0], np.float32)), 200.0, rtol=1e-6
  )


def test_adversary_loss_gradients_are_finite_and_jit():
  prior_logits, code_logits = _normal(20, (5,)), _normal(21, (5,))
  grads = jax.jit(jax.grad(penalties.adversary_loss, argnums=(0, 1)))(prior_logits, code_logits)
  _assert_finite_tree(grads)
  # Descending the loss raises the prior logits and lowers the code logits.
  assert np.all(np.asarray(grads[0]) < 0) and np.all(np.asarray(grads[1]) > 0)


def test_adversary_accuracy():
  prior_logits = np.array([[2.0], [-1.0], [0.5], [3.0]], np.float32)  # 3 right
  code_logits = np.array([[-2.0], [0.0], [1.0], [-0.1]], np.float32)  # 3 right
  got = penalties.adversary_accuracy(prior_logits, code_logits)
  np.testing.assert_allclose(got, 6 / 8)
  p, c = _normal(22, (9,)), _normal(23, (9,))
  want = (sum(t > 0 for t in p) + sum(t <= 0 for t in c)) / 18
  np.testing.assert_allclose(jax.jit(penalties.adversary_accuracy)(p, c), want, rtol=1e-6)


# -------------------------------------------------------------------- VAE ---


@pytest.mark.parametrize('prior_variance', [1.0, 2.0])
def test_gaussian_kl_matches_reference(prior_variance):
  mean = _normal(24, (5, 3))
  log_variance = _normal(25, (5, 3), std=0.5)
  got = penalties.gaussian_kl(mean, log_variance, prior_variance)
  np.testing.assert_allclose(got, _ref_kl(mean, log_variance, prior_variance), rtol=1e-5)
  # Zero exactly when the posterior is the prior.
  np.testing.assert_allclose(
      penalties.gaussian_kl(
          np.zeros((2, 3)), np.full((2, 3), math.log(prior_variance)), prior_variance
      ),
      0.0,
      atol=1e-6,
  )


def test_gaussian_kl_matches_monte_carlo():
  # Independent of the closed form: E_q[log q(x) - log p(x)] in 1-d.
  mu, log_var, prior_var = 0.7, math.log(0.3), 2.0
  rng = np.random.default_rng(26)
  x = mu + math.exp(0.5 * log_var) * rng.standard_normal(200_000)
  log_q = -0.5 * np.log(2 * np.pi * math.exp(log_var)) - (x - mu) ** 2 / (2 * math.exp(log_var))
  log_p = -0.5 * np.log(2 * np.pi * prior_var) - x**2 / (2 * prior_var)
  estimate = np.mean(log_q - log_p)
  got = penalties.gaussian_kl(np.array([[mu]]), np.array([[log_var]]), prior_var)
  np.testing.assert_allclose(got, estimate, atol=5e-3)


def test_gaussian_kl_gradients_are_finite():
  grads = jax.jit(jax.grad(penalties.gaussian_kl, argnums=(0, 1)))(
      _normal(27, (4, 3)), _normal(28, (4, 3))
  )
  _assert_finite_tree(grads)


# --------------------------------------------------------- reconstruction ---

_COSTS = {
    'l2sq': penalties.squared_l2_cost,
    'l2': penalties.l2_cost,
    'l1': penalties.l1_cost,
    'bernoulli': penalties.bernoulli_cost,
}


def _cost_inputs(name, seed):
  x = np.random.default_rng(seed).uniform(size=(3, 4, 5, 2)).astype(np.float32)
  y = _normal(seed + 1, x.shape, std=2.0 if name == 'bernoulli' else 0.5)
  return x, y


@pytest.mark.parametrize('name', penalties.RECONSTRUCTION_COSTS)
def test_reconstruction_costs_match_loops(name):
  x, y = _cost_inputs(name, 29)
  want = _ref_cost(x, y, name)
  np.testing.assert_allclose(_COSTS[name](x, y), want, rtol=1e-5)
  np.testing.assert_allclose(_COSTS[name](x, y, scale=0.05), 0.05 * want, rtol=1e-5)
  np.testing.assert_allclose(
      penalties.reconstruction_cost(x, y, name=name, scale=0.05), 0.05 * want, rtol=1e-5
  )


@pytest.mark.parametrize('name', penalties.RECONSTRUCTION_COSTS)
def test_reconstruction_costs_have_finite_gradients_and_jit(name):
  x, y = _cost_inputs(name, 31)
  fn = functools.partial(penalties.reconstruction_cost, name=name)
  _assert_finite_tree(jax.jit(jax.grad(fn, argnums=(0, 1)))(x, y))
  # At an exact reconstruction too (l2's sqrt has an infinite slope at 0).
  grad = jax.grad(fn, argnums=1)(x, x.copy())
  _assert_finite_tree(grad)
  if name in ('l2sq', 'l2'):  # l1 may take any subgradient of |.| at 0
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)


def test_l2_cost_is_exact_away_from_zero_and_tiny_at_zero():
  x = np.zeros((2, 3), np.float32)
  y = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
  # Mean of ||(3, 4, 0)|| = 5 and 0; the epsilon adds at most sqrt(1e-8) each.
  np.testing.assert_allclose(penalties.l2_cost(x, y), 2.5, atol=1e-4)
  assert float(penalties.l2_cost(x, x)) <= 1e-4


def test_per_image_squared_error():
  x, y = _normal(33, (3, 2, 2)), _normal(34, (3, 2, 2))
  got = penalties.per_image_squared_error(x, y)
  assert got.shape == (3,)
  want = [sum((a - b) ** 2 for a, b in zip(x[i].ravel(), y[i].ravel())) for i in range(3)]
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_reconstruction_cost_vmap():
  x, y = _normal(35, (4, 3, 5)), _normal(36, (4, 3, 5))
  batched = jax.vmap(penalties.squared_l2_cost)(x, y)
  looped = [penalties.squared_l2_cost(a, b) for a, b in zip(x, y)]
  np.testing.assert_allclose(batched, looped, rtol=1e-5)


def test_reconstruction_cost_rejects_bad_name_and_shapes():
  x = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match=r"name.*'l2sq', 'l2', 'l1', 'bernoulli'"):
    penalties.reconstruction_cost(x, x, name='mse')
  with pytest.raises(ValueError, match='same shape'):
    penalties.reconstruction_cost(x, np.zeros((2, 1), np.float32))
