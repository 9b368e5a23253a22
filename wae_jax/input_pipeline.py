"""A data set as the step reads it, and resumable shuffled batches.

Each data set is a record in `wae_jax.data` (MNIST, CelebA, any registered one) whose loader
gives uint8 images; `load_dataset` checks them against the record and keeps them in host
memory as uint8 (`Images`), float32 in config.data.pixel_range only when indexed: CelebA as
float32 would take about 10 GB, as uint8 2.5 GB.
"""

import dataclasses
from typing import Iterator, Optional, Tuple

from absl import logging
import numpy as np

from wae_jax import data as datasets
from wae_jax.data import DataError

# ----------------------------------------------------------------------------
# Config-driven loading.


class Images:
  """uint8 images [N, H, W, C] that read as float32 in pixel_range when indexed.

  Stands in for a float32 array at a quarter of the memory (CelebA: 2.5 GB
  instead of 10 GB; none at all while a memory-mapped cache is not read):
  images[rows], images[a:b], len(), .shape, .dtype and np.asarray work as
  on the float32 array. Pixels map as _to_float maps them.
  """

  dtype = np.dtype(np.float32)

  def __init__(self, pixels: np.ndarray, pixel_range: Tuple[float, float]):
    self.pixels = pixels
    self._table = _to_float(np.arange(256, dtype=np.uint8), *pixel_range)

  def __len__(self) -> int:
    return len(self.pixels)

  @property
  def shape(self) -> Tuple[int, ...]:
    return self.pixels.shape

  @property
  def ndim(self) -> int:
    return self.pixels.ndim

  def __getitem__(self, index) -> np.ndarray:
    return self._table[self.pixels[index]]

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    del copy  # Always a new array.
    images = self[...]
    return images if dtype is None else images.astype(dtype, copy=False)

  # The map is increasing, so the extremes need no float copy.
  def min(self) -> np.float32:
    return self._table[self.pixels.min()]

  def max(self) -> np.float32:
    return self._table[self.pixels.max()]


@dataclasses.dataclass(frozen=True)
class ImageData:
  """A whole data set: images as `Images` (float32 NHWC when indexed), labels
  int32 [N], or None for data sets without labels (CelebA)."""

  train_images: Images
  train_labels: Optional[np.ndarray]
  test_images: Images
  test_labels: Optional[np.ndarray]
  source: str  # Human-readable origin, for logs and reports.


def _pixel_range(value) -> Tuple[float, float]:
  try:
    lo, hi = (float(v) for v in value)
  except (TypeError, ValueError):
    lo = hi = None
  if lo is None or not lo < hi:
    raise DataError(
        f'config.data.pixel_range={value!r}: expected a pair '
        '(lo, hi) with lo < hi, e.g. (0.0, 1.0) or (-1.0, 1.0)'
    )
  return lo, hi


def _to_float(images: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Maps uint8 0..255 linearly onto [lo, hi] via a 256-entry lookup table.

  The table is exact at both ends (0 -> lo, 255 -> hi) and costs a single
  pass over the data.
  """
  table = (lo + (hi - lo) * np.arange(256) / 255.0).astype(np.float32)
  return table[images]


def _checked(dataset: datasets.Dataset, splits, description: str) -> None:
  """DataError unless the loader gave what its record promises: uint8 train and test images
  of image_shape, and labels (if any) one per image."""
  where = f'{dataset.title} from {description}'
  for split in ('train', 'test'):
    if split not in splits:
      raise DataError(
          f'{where}: the loader gave no {split!r} split (it gave '
          f'{sorted(splits)}); it must return both train and test'
      )
    images, labels = splits[split]
    if images.dtype != np.uint8 or tuple(images.shape[1:]) != dataset.image_shape:
      raise DataError(
          f'{where}: {split} images are {images.dtype} {list(images.shape)}; '
          f'expected uint8 [N, {", ".join(map(str, dataset.image_shape))}] (the '
          "data set's image_shape)"
      )
    if labels is not None and len(labels) != len(images):
      raise DataError(
          f'{where}: {len(images)} {split} images but {len(labels)} labels; '
          'expected one label per image, or None'
      )


def load_dataset(data_config) -> ImageData:
  """Loads the data set described by `config.data`: the record of data.name (wae_jax.data)
  loads it from data.source and data.dir (see each record's `load`), and its uint8 0..255
  are mapped linearly onto data.pixel_range (lo, hi) when read. A data.image_shape other than
  the data set's is a DataError naming the right one.
  """
  name, source = data_config.name, data_config.source
  try:
    dataset = datasets.check_source(name, source)
  except ValueError as error:  # the loader's callers catch DataError
    raise DataError(str(error)) from None
  lo, hi = _pixel_range(data_config.pixel_range)
  image_shape = data_config.get('image_shape')
  if image_shape is not None and tuple(image_shape) != dataset.image_shape:
    raise DataError(
        f'config.data.image_shape={tuple(image_shape)} does not match '
        f'{dataset.title} (config.data.name={name!r}), whose images are '
        f'{dataset.image_shape}; set config.data.image_shape={dataset.image_shape}'
    )
  splits, description = dataset.load(data_config)
  _checked(dataset, splits, description)
  logging.info('%s from %s', dataset.title, description)
  (train_x, train_y), (test_x, test_y) = splits['train'], splits['test']
  return ImageData(
      train_images=Images(train_x, (lo, hi)),
      train_labels=train_y,
      test_images=Images(test_x, (lo, hi)),
      test_labels=test_y,
      source=description,
  )


# ----------------------------------------------------------------------------
# Batching.


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches per epoch; the remainder is dropped."""
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  return num_examples // batch_size


def train_batches(
    images: np.ndarray, batch_size: int, seed: int, start_step: int = 0, rows: slice = slice(None)
) -> Iterator[np.ndarray]:
  """Yields shuffled batches forever, reproducible from any step.

  Epoch e visits the rows in the order np.random.default_rng([seed, e])
  .permutation(len(images)), so the batch of step s depends only on (seed, s)
  and a run resumed at start_step sees exactly the data of an uninterrupted
  run. `rows` picks part of each batch (a process's share with several hosts):
  only those images are read. Arguments are checked here, not on the first next().
  """
  steps = steps_per_epoch(len(images), batch_size)
  if steps == 0:
    raise DataError(
        f'batch_size={batch_size} is larger than the ' f'{len(images)} training examples'
    )
  if start_step < 0:
    raise ValueError(f'start_step must be >= 0, got {start_step}')

  def generate():
    epoch, first = divmod(start_step, steps)
    while True:
      order = np.random.default_rng([seed, epoch]).permutation(len(images))
      for i in range(first, steps):
        yield images[order[i * batch_size : (i + 1) * batch_size][rows]]
      epoch, first = epoch + 1, 0

  return generate()
