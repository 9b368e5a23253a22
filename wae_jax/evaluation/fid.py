"""FID with a pluggable feature extractor: the MNIST classifier's features or InceptionV3's.

Every FID is computed the same way, whatever network gives the features: generated samples
against as many test images, and beside it the real-data floor (as many training images
against the same test images), which says how low the number can go on these features.
Only the extractor differs, so it is a value (`Extractor`) built by a factory registered in
`EXTRACTORS`. Real images' statistics are cached per dataset, split, size and extractor (and
its weights' hash, where the extractor's name does not fix them), as they do not change from
one checkpoint to the next; a `Reference` holds them for the samples of every sampler.
Features are computed data-parallel over the local devices (batching.py), the extractor's
weights replicated once.
"""

import dataclasses
import pathlib
from typing import Callable, Dict, Optional, Tuple

from absl import logging
import numpy as np

from wae_jax import data as datasets
from wae_jax import files
from wae_jax import visualize
from wae_jax.evaluation import batching
from wae_jax.evaluation import inception
from wae_jax.evaluation import metrics
from wae_jax.evaluation import mnist_classifier

MNIST_CLASSIFIER = 'mnist_classifier'
INCEPTION = 'inception'


@dataclasses.dataclass(frozen=True)
class Extractor:
  """A feature extractor, and how results.json labels the FIDs computed on it."""

  name: str  # in the result keys (fid_<name>, fid_<name>_real_floor) and cache file names
  features: str  # what the features are, written beside every FID on them
  dataset_label: str  # how the entries name the real images ('500 MNIST test images')
  featurize: Callable[[np.ndarray], np.ndarray]  # images in the data's pixel range -> [N, d]
  # The weights' short hash where the name does not fix them, in the statistics' file names:
  # statistics on other weights are never reused.
  weights: Optional[str] = None

  @property
  def cache_key(self) -> str:
    return self.name if self.weights is None else f'{self.name}_{self.weights}'


def cache_dir(config) -> pathlib.Path:
  """Where real-data statistics and the classifier's weights of seeds other than the shipped
  one are cached."""
  return pathlib.Path(config.eval.cache_dir or datasets.default_cache_dir())


class RealStatistics:
  """Feature statistics of real images, computed once per (dataset, split, size, extractor's
  cache_key)."""

  def __init__(self, directory: pathlib.Path):
    self.directory = directory

  def get(
      self, dataset: str, split: str, extractor: str, images: np.ndarray, featurize: Callable
  ) -> Tuple[np.ndarray, np.ndarray]:
    path = self.directory / f'fid_stats_{dataset}_{split}_{len(images)}_{extractor}.npz'
    if path.exists():
      with np.load(path) as stats:
        return stats['mean'], stats['covariance']
    mean, covariance = metrics.gaussian_statistics(featurize(images))
    with files.atomic_path(path) as tmp:
      np.savez(tmp, mean=mean, covariance=covariance)
    return mean, covariance


def mnist_classifier_extractor(config, data) -> Extractor:
  """The MNIST classifier's penultimate layer: the shipped weights for the default seed,
  another seed's trained on `data` the first time, then cached. Labelled with the weights'
  hash."""
  pixel_range = tuple(config.data.pixel_range)
  weights = mnist_classifier.load_or_train(
      str(cache_dir(config)), data, seed=config.eval.mnist_classifier_seed, pixel_range=pixel_range
  )
  sha256 = mnist_classifier.weights_sha256(weights)
  params = batching.replicate(weights)
  batch_size = config.eval.mnist_classifier_batch_size
  featurize = lambda images: mnist_classifier.features(
      params, visualize.to_unit_range(images, pixel_range), batch_size
  )
  return Extractor(
      MNIST_CLASSIFIER,
      mnist_classifier.features_label(sha256),
      'MNIST',
      featurize,
      weights=sha256[: mnist_classifier.SHORT_HASH],
  )


def inception_extractor(config, data) -> Optional[Extractor]:
  """InceptionV3 pool3, the standard FID's features, if its weights are configured.

  None (with one log line) when no weights are configured; FileNotFoundError saying where
  to put them when the configured file does not exist.
  """
  del data  # The weights are published; nothing is trained.
  configured = inception.configured_path(config.eval.inception_weights)
  if configured is None:
    logging.info(
        'Inception FID skipped: set config eval.inception_weights or $%s to the '
        'path of %s (%s) to compute it.',
        inception.WEIGHTS_ENV,
        inception.WEIGHTS_FILENAME,
        inception.WEIGHTS_URL,
    )
    return None
  featurizer = inception.make_featurizer(
      str(configured), batch_size=config.eval.inception_batch_size
  )
  pixel_range = tuple(config.data.pixel_range)
  return Extractor(
      INCEPTION,
      inception.FEATURES,
      config.data.name,
      lambda images: featurizer(images, pixel_range),
  )


# name -> factory(config, data) -> Extractor, or None when it is not available.
EXTRACTORS: Dict[str, Callable[..., Optional[Extractor]]] = {
    MNIST_CLASSIFIER: mnist_classifier_extractor,
    INCEPTION: inception_extractor,
}
# name -> d, the dimension of its features: an FID on n images needs n > d, or the images'
# covariance has rank n - 1 < d and the distance compares singular fits (on MNIST, 2 samples
# scored 1,890 against a "floor" of 2,034).
FEATURE_DIMS = {MNIST_CLASSIFIER: mnist_classifier.FEATURE_DIM, INCEPTION: inception.FEATURE_DIM}


def configured(name: str, config) -> bool:
  """Whether EXTRACTORS[name] gives features under config, known without building it."""
  return name != INCEPTION or inception.configured_path(config.eval.inception_weights) is not None


def min_images(name: str) -> int:
  """The fewest images an FID on EXTRACTORS[name]'s features is estimated from: one more than
  their dimension, so that the images' covariance can have full rank. Above it the FID is
  still biased upwards (by about d/n); the real-data floor, on as many images, shows by how
  much."""
  return FEATURE_DIMS[name] + 1


class Reference:
  """The real images FIDs compare with: n test images' feature statistics, and the floor.

  Every FID is of n generated images against the same n test images, so that it and its
  real-data floor (n training images against them) carry the same bias. The real images'
  statistics come from `stats` (cached); a Reference serves the samples of every sampler.
  """

  def __init__(
      self, extractor: Extractor, stats: RealStatistics, dataset: str, test_images, train_images
  ):
    self.extractor = extractor
    self.num_images = len(test_images)
    self.test_stats = stats.get(
        dataset, 'test', extractor.cache_key, test_images, extractor.featurize
    )
    self._train = (stats, dataset, train_images)

  def _about(self) -> Dict:
    n, e = self.num_images, self.extractor
    return {
        'num_images': n,
        'features': e.features,
        'reference': f'{n} {e.dataset_label} test images',
    }

  def fid_entries(self, samples) -> Dict:
    """fid_<extractor>: the FID of n samples."""
    sample_stats = metrics.gaussian_statistics(self.extractor.featurize(samples))
    return {
        f'fid_{self.extractor.name}': {
            'value': metrics.frechet_distance(*sample_stats, *self.test_stats),
            **self._about(),
        }
    }

  def floor_entries(self) -> Dict:
    """fid_<extractor>_real_floor: n training images' FID, how low the FID can go."""
    stats, dataset, train_images = self._train
    e = self.extractor
    train_stats = stats.get(dataset, 'train', e.cache_key, train_images, e.featurize)
    return {
        f'fid_{e.name}_real_floor': {
            'value': metrics.frechet_distance(*train_stats, *self.test_stats),
            **self._about(),
            'samples': f'{self.num_images} {e.dataset_label} training images',
        }
    }
