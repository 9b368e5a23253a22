"""Tests for wae_jax.evaluation.metrics against closed forms and brute-force NumPy references."""

import numpy as np
import pytest
import scipy.linalg

from wae_jax.evaluation import metrics

# ------------------------------------------------------------------- FID ---


def _random_covariance(rng, d):
  a = rng.normal(size=(d, d))
  return a @ a.T / d + 0.1 * np.eye(d)


def _fid(features_a, features_b) -> float:
  """The FID of two feature sets as evaluation computes it: Gaussians fitted, then compared."""
  return metrics.frechet_distance(
      *metrics.gaussian_statistics(features_a), *metrics.gaussian_statistics(features_b)
  )


def test_gaussian_statistics_matches_numpy():
  features = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
  mu, sigma = metrics.gaussian_statistics(features)
  assert mu.dtype == sigma.dtype == np.float64
  np.testing.assert_allclose(mu, features.astype(np.float64).mean(0))
  centred = features.astype(np.float64) - mu
  np.testing.assert_allclose(sigma, centred.T @ centred / 49)


def test_gaussian_statistics_one_feature_and_bad_shapes():
  mu, sigma = metrics.gaussian_statistics(np.arange(5.0)[:, None])
  assert mu.shape == (1,) and sigma.shape == (1, 1)
  np.testing.assert_allclose(sigma, [[2.5]])
  with pytest.raises(ValueError, match='shape'):
    metrics.gaussian_statistics(np.zeros((1, 3)))
  with pytest.raises(ValueError, match='shape'):
    metrics.gaussian_statistics(np.zeros(5))


def test_fid_of_a_set_with_itself_is_zero():
  rng = np.random.default_rng(1)
  features = 10.0 * rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16))
  scale = np.trace(np.cov(features, rowvar=False))
  assert abs(_fid(features, features)) < 1e-6 * scale


@pytest.mark.parametrize('d', [1, 3, 32])
def test_frechet_distance_diagonal_closed_form(d):
  rng = np.random.default_rng(d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  a, b = rng.uniform(0.1, 5.0, size=d), rng.uniform(0.1, 5.0, size=d)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  assert isinstance(got, float)
  np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_frechet_distance_full_covariance_reference():
  """Against the symmetric form Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2) via eigh."""
  rng = np.random.default_rng(3)
  d = 8
  s1, s2 = _random_covariance(rng, d), _random_covariance(rng, d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  w, v = np.linalg.eigh(s1)
  root1 = v @ np.diag(np.sqrt(w)) @ v.T
  inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
  expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.sum(np.sqrt(inner))
  np.testing.assert_allclose(metrics.frechet_distance(mu1, s1, mu2, s2), expected, rtol=1e-9)


def test_frechet_distance_is_symmetric():
  rng = np.random.default_rng(4)
  d = 10
  s1, s2 = _random_covariance(rng, d), _random_covariance(rng, d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  np.testing.assert_allclose(
      metrics.frechet_distance(mu1, s1, mu2, s2),
      metrics.frechet_distance(mu2, s2, mu1, s1),
      rtol=1e-9,
  )
  a, b = rng.normal(size=(200, d)), 2.0 + rng.normal(size=(150, d))
  np.testing.assert_allclose(_fid(a, b), _fid(b, a), rtol=1e-9)


def test_fid_between_samples_of_gaussians():
  rng = np.random.default_rng(5)
  n, d = 20_000, 4
  mixing = rng.normal(size=(d, d))
  a = rng.normal(size=(n, d)) @ mixing
  b = rng.normal(size=(n, d)) @ mixing
  shift = np.array([3.0, -2.0, 1.0, 0.5])
  same = _fid(a, b)
  shifted = _fid(a, b + shift)
  assert 0.0 <= same < 0.02
  np.testing.assert_allclose(shifted, shift @ shift, atol=0.1)


def test_fid_with_singular_covariances_is_finite():
  rng = np.random.default_rng(6)
  n, d, rank = 400, 32, 5
  a = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))
  b = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))
  a[:, :3] = 0.0  # Dead units, as a ReLU feature can have.
  b[:, 2:6] = 1.0
  fid = _fid(a, b)
  assert np.isfinite(fid) and fid > 0
  np.testing.assert_allclose(_fid(b, a), fid, rtol=1e-6)
  assert _fid(a, a) == pytest.approx(0.0, abs=1e-6 * np.trace(np.cov(a.T)))


def test_frechet_distance_adds_eps_when_sqrtm_fails(monkeypatch):
  """A non-finite sqrtm(S1 S2) is retried with eps * I added to both covariances."""
  real_sqrtm = scipy.linalg.sqrtm
  calls = []

  def flaky_sqrtm(matrix):
    calls.append(matrix)
    return np.full_like(matrix, np.nan) if len(calls) == 1 else real_sqrtm(matrix)

  monkeypatch.setattr(scipy.linalg, 'sqrtm', flaky_sqrtm)
  a, b = np.array([1.0, 4.0]), np.array([9.0, 1.0])
  got = metrics.frechet_distance(np.zeros(2), np.diag(a), np.zeros(2), np.diag(b), eps=1e-3)
  np.testing.assert_allclose(calls[1], np.diag((a + 1e-3) * (b + 1e-3)))
  expected = np.sum(a + b) - 2 * np.sum(np.sqrt((a + 1e-3) * (b + 1e-3)))
  np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_frechet_distance_rejects_invalid_covariances():
  with pytest.raises(ValueError, match='imaginary'):
    metrics.frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
  with pytest.raises(ValueError, match='shapes'):
    metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_frechet_distance_never_negative_from_round_off():
  rng = np.random.default_rng(7)
  for d in (5, 50):
    sigma = _random_covariance(rng, d) * 1e3
    mu = rng.normal(size=d)
    assert metrics.frechet_distance(mu, sigma, mu, sigma) >= 0.0


# ------------------------------------------------------------- sharpness ---


def _ref_sharpness(images, pixel_range):
  """Brute force: per image, loop over interior pixels and apply the 3x3 Laplace filter."""
  lo, hi = pixel_range
  kernel = [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
  variances = []
  for image in np.asarray(images, np.float64):
    height, width, channels = image.shape
    grey = np.zeros((height, width))
    for i in range(height):
      for j in range(width):
        if channels == 1:
          grey[i, j] = image[i, j, 0]
        else:
          r, g, b = image[i, j]
          grey[i, j] = 0.299 * r + 0.587 * g + 0.114 * b
        grey[i, j] = (grey[i, j] - lo) / (hi - lo)
    responses = []
    for i in range(1, height - 1):
      for j in range(1, width - 1):
        responses.append(
            sum(kernel[u][v] * grey[i - 1 + u, j - 1 + v] for u in range(3) for v in range(3))
        )
    mean = sum(responses) / len(responses)
    variances.append(sum((x - mean) ** 2 for x in responses) / len(responses))
  return sum(variances) / len(variances)


def _random_images(rng, shape, pixel_range):
  lo, hi = pixel_range
  return (lo + (hi - lo) * rng.uniform(size=shape)).astype(np.float32)


@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('pixel_range', [(0.0, 1.0), (-1.0, 1.0)])
def test_sharpness_matches_brute_force(channels, pixel_range):
  rng = np.random.default_rng(channels)
  images = _random_images(rng, (3, 9, 7, channels), pixel_range)
  np.testing.assert_allclose(
      metrics.sharpness(images, pixel_range), _ref_sharpness(images, pixel_range), rtol=1e-10
  )


def test_sharpness_does_not_depend_on_pixel_range():
  images01 = _random_images(np.random.default_rng(8), (4, 12, 12, 3), (0.0, 1.0))
  np.testing.assert_allclose(
      metrics.sharpness(images01, (0.0, 1.0)),
      metrics.sharpness(2.0 * images01 - 1.0, (-1.0, 1.0)),
      rtol=1e-6,
  )


def test_sharpness_of_constant_image_is_zero():
  assert metrics.sharpness(np.full((2, 8, 8, 1), 0.3), (0.0, 1.0)) == 0.0
  assert metrics.sharpness(np.full((2, 8, 8, 3), -0.5), (-1.0, 1.0)) == 0.0


def test_sharpness_drops_with_blur():
  images = _random_images(np.random.default_rng(9), (5, 28, 28, 1), (0.0, 1.0))
  padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='edge')
  blurred = sum(padded[:, i : i + 28, j : j + 28] for i in range(3) for j in range(3)) / 9
  assert metrics.sharpness(blurred, (0.0, 1.0)) < 0.2 * metrics.sharpness(images, (0.0, 1.0))


def test_sharpness_rejects_bad_inputs():
  with pytest.raises(ValueError, match='shape'):
    metrics.sharpness(np.zeros((8, 8, 1)), (0.0, 1.0))
  with pytest.raises(ValueError, match='shape'):
    metrics.sharpness(np.zeros((1, 8, 8, 2)), (0.0, 1.0))
  with pytest.raises(ValueError, match='pixel_range'):
    metrics.sharpness(np.zeros((1, 8, 8, 1)), (1.0, 0.0))
