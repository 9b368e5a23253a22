"""Sample-quality metrics of the paper: FID (on any feature extractor) and sharpness.

FID follows the reference implementations (TTUR, pytorch-fid) in float64 with
scipy.linalg.sqrtm, including their guards against singular covariances, so that numbers
are comparable with published ones given the same features. Sharpness is the paper's
blurriness measure: the variance of the Laplacian of the greyscale image.
"""

from typing import Tuple
import warnings

from absl import logging
import numpy as np
import scipy.linalg

from wae_jax import data as datasets

# Added to both covariances' diagonals when sqrtm(S1 S2) fails on a singular product.
FID_EPS = 1e-6
# sqrtm's result is accepted if ||X X - A||_F <= this * ||A||_F.
_SQRTM_RTOL = 1e-5
# The trace of sqrtm(S1 S2) is real in theory; a larger imaginary part means failure.
_MAX_IMAG = 1e-3
# Negative distances down to -this * (scale of the terms) are round-off and read as 0.
_NEGATIVE_RTOL = 1e-6

# ITU-R BT.601 luma weights, as in PIL's convert('L') and tf.image.rgb_to_grayscale.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


def gaussian_statistics(features) -> Tuple[np.ndarray, np.ndarray]:
  """Mean [d] and sample covariance [d, d] (ddof=1) of features [N, d], in float64."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 2:
    raise ValueError(f'expected features of shape [N >= 2, d], got {features.shape}')
  return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1).reshape(
      features.shape[1], features.shape[1]
  )


def _sqrtm(matrix: np.ndarray) -> Tuple[np.ndarray, bool]:
  """sqrtm(matrix) and whether it is usable (finite and squares back to matrix)."""
  with warnings.catch_warnings():  # Singular inputs are checked below instead.
    warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
    root = scipy.linalg.sqrtm(matrix)
  if not np.all(np.isfinite(root)):
    return root, False
  scale = max(np.linalg.norm(matrix), np.finfo(np.float64).tiny)
  return root, bool(np.linalg.norm(root @ root - matrix) <= _SQRTM_RTOL * scale)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = FID_EPS) -> float:
  """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)): the 2-Wasserstein distance squared.

  As in the reference FID code: if S1 S2 is too singular for sqrtm, eps * I is added to
  both covariances; a small imaginary part of sqrtm (round-off) is dropped, a large one
  (diagonal > 1e-3) raises ValueError. A slightly negative result from round-off is
  returned as 0; a clearly negative one raises ValueError.
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  d = mu1.shape[0]
  if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(
        f'inconsistent shapes: mu1 {mu1.shape}, sigma1 {sigma1.shape}, '
        f'mu2 {mu2.shape}, sigma2 {sigma2.shape}'
    )

  covmean, ok = _sqrtm(sigma1 @ sigma2)
  if not ok:
    logging.warning(
        'FID: sqrtm of a singular product of covariances; adding %g to their ' 'diagonals', eps
    )
    offset = eps * np.eye(d)
    covmean, _ = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    largest = np.max(np.abs(np.diagonal(covmean).imag))
    if largest > _MAX_IMAG:
      raise ValueError(
          f'FID: sqrtm(S1 S2) has an imaginary part of {largest:g} on its '
          'diagonal; the covariances are not valid (symmetric PSD)'
      )
    covmean = covmean.real

  diff = mu1 - mu2
  mean_term = float(diff @ diff)
  trace_terms = float(np.trace(sigma1) + np.trace(sigma2))
  distance = mean_term + trace_terms - 2.0 * float(np.trace(covmean))
  if distance < 0.0:
    if -distance > _NEGATIVE_RTOL * max(mean_term + trace_terms, 1.0):
      raise ValueError(
          f'FID: negative distance {distance:g}, beyond round-off; '
          'are the covariances symmetric positive semi-definite?'
      )
    distance = 0.0
  return distance


def sharpness(images, pixel_range) -> float:
  """The paper's sharpness: mean over images of Var(Laplacian(grey image)); higher = sharper.

  Convention, for images [N, H, W, C] with C in {1, 3} and values in pixel_range (lo, hi):
    1. greyscale: one channel as is, RGB -> 0.299 R + 0.587 G + 0.114 B;
    2. scale to [0, 1]: (x - lo) / (hi - lo) (no clipping);
    3. Laplace filter [[0, 1, 0], [1, -4, 1], [0, 1, 0]] on the 'valid' region only
       ([H - 2, W - 2], no padding, so borders add no artificial edges);
    4. population variance (ddof=0) of the response over its pixels, per image;
    5. the mean over images.
  Computed in float64. Blurring lowers it; a constant image scores 0.
  """
  images = np.asarray(images, np.float64)
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or min(images.shape[1:3]) < 3:
    raise ValueError('expected images of shape [N, H >= 3, W >= 3, 1 or 3], ' f'got {images.shape}')
  lo, hi = datasets.pixel_bounds(pixel_range)
  grey = images[..., 0] if images.shape[-1] == 1 else images @ LUMA_WEIGHTS
  grey = (grey - lo) / (hi - lo)
  laplacian = (
      grey[:, :-2, 1:-1]
      + grey[:, 2:, 1:-1]
      + grey[:, 1:-1, :-2]
      + grey[:, 1:-1, 2:]
      - 4.0 * grey[:, 1:-1, 1:-1]
  )
  return float(np.mean(np.var(laplacian, axis=(1, 2))))
