"""MNIST loading (TFDS or raw IDX files) and resumable shuffled batches.

Training needs to work offline, so besides TFDS the four standard MNIST IDX
files can be read directly. The whole data set is kept in host memory as
float32 (MNIST: about 220 MB), which keeps batching simple and deterministic.
"""

import dataclasses
import gzip
import math
import os
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple
import zlib

from absl import logging
import numpy as np

MNIST_DIR_ENV = 'WAE_JAX_MNIST_DIR'

# split -> (images file, labels file); the same names without '.gz' also work.
MNIST_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}

DATASETS = ('mnist',)
SOURCES = ('auto', 'tfds', 'idx')

# Arrays per split: (images uint8 [N, 28, 28, 1], labels int32 [N]).
Splits = Dict[str, Tuple[np.ndarray, np.ndarray]]

_IDX_UBYTE = 0x08
_GZIP_MAGIC = b'\x1f\x8b'
# Chunk size for turning a tf.data split into numpy (see load_mnist_tfds).
_TFDS_CHUNK = 10_000


class DataError(ValueError):
  """A data set is missing, malformed or misconfigured (the message says where)."""


# ----------------------------------------------------------------------------
# IDX files.


def read_idx(path) -> np.ndarray:
  """Reads an IDX file of unsigned bytes, gzipped or raw, as a uint8 array.

  The header is validated against the file size so that a truncated download
  fails loudly here instead of producing garbage images later.
  """
  path = Path(path)
  try:
    data = path.read_bytes()
  except FileNotFoundError:
    raise DataError(f'{path}: file not found') from None
  except OSError as e:
    raise DataError(f'{path}: cannot read file ({e})') from e
  if path.suffix == '.gz' or data[:2] == _GZIP_MAGIC:
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
      raise DataError(f'{path}: expected gzip-compressed IDX data ({e})') from e

  if (len(data) < 4 or data[:2] != b'\0\0' or data[2] != _IDX_UBYTE
      or data[3] == 0):
    magic = data[:4].hex() if len(data) >= 4 else f'{len(data)} bytes'
    raise DataError(
        f'{path}: bad IDX magic number 0x{magic}; expected 0x000008NN '
        '(unsigned bytes, NN dimensions), e.g. 0x00000803 for images or '
        '0x00000801 for labels')
  ndim = data[3]
  offset = 4 + 4 * ndim
  if len(data) < offset:
    raise DataError(f'{path}: truncated IDX header; expected {offset} bytes '
                    f'for {ndim} dimensions, found {len(data)}')
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big')
                for i in range(ndim))
  expected, found = math.prod(shape), len(data) - offset
  if found != expected:
    kind = 'truncated' if found < expected else 'oversized'
    raise DataError(f'{path}: {kind} IDX file; header shape {shape} expects '
                    f'{expected} data bytes, found {found}')
  # Copy so callers get an ordinary writable array, not a view of `bytes`.
  return np.frombuffer(data, np.uint8, offset=offset).reshape(shape).copy()


def _find_idx_file(directory: Path, name: str) -> Optional[Path]:
  """Returns directory/name or its un-gzipped twin, whichever exists."""
  for candidate in (directory / name, directory / name[:-len('.gz')]):
    if candidate.is_file():
      return candidate
  return None


def _has_mnist_idx(directory) -> bool:
  directory = Path(directory)
  return all(_find_idx_file(directory, name) is not None
             for names in MNIST_FILES.values() for name in names)


def load_mnist_idx(directory) -> Splits:
  """Reads MNIST from the four standard IDX files in `directory`."""
  directory = Path(directory).expanduser()
  expected = ', '.join(n for names in MNIST_FILES.values() for n in names)
  out = {}
  for split, (images_name, labels_name) in MNIST_FILES.items():
    paths = []
    for name in (images_name, labels_name):
      path = _find_idx_file(directory, name)
      if path is None:
        raise DataError(
            f'{directory / name}: MNIST file not found (nor without .gz); '
            f'expected the four IDX files {expected} in {directory}')
      paths.append(path)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.shape[1:] != (28, 28):
      raise DataError(f'{paths[0]}: expected images of shape [N, 28, 28], '
                      f'found {list(images.shape)}')
    if labels.ndim != 1:
      raise DataError(f'{paths[1]}: expected labels of shape [N], '
                      f'found {list(labels.shape)}')
    if len(images) != len(labels):
      raise DataError(f'{paths[0]} has {len(images)} images but {paths[1]} '
                      f'has {len(labels)} labels; expected equal counts')
    if labels.size and labels.max() > 9:
      raise DataError(f'{paths[1]}: expected labels in 0..9, '
                      f'found {labels.max()}')
    out[split] = (images[..., None], labels.astype(np.int32))
  return out


# ----------------------------------------------------------------------------
# TFDS.


def _import_tfds():
  """Imports TFDS lazily (it pulls in TensorFlow) and keeps TF off the GPUs."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # TF already initialised its devices.
    pass
  return tfds


def _tfds_prepared(data_dir: Optional[str]) -> bool:
  """Whether TFDS mnist is already on disk under data_dir (no network use)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:  # Only reads metadata; does not import TensorFlow itself.
    return tfds.builder('mnist', data_dir=data_dir).is_prepared()
  except Exception:  # pylint: disable=broad-except
    return False


def load_mnist_tfds(data_dir: Optional[str], download: bool) -> Splits:
  """Reads MNIST through TFDS (data_dir None = the TFDS default).

  Splits are batched in fixed chunks rather than with batch_size=-1: when
  split sizes are unknown (e.g. mocked data) TFDS then batches by
  sys.maxsize, which aborts the whole process inside TensorFlow.
  """
  tfds = _import_tfds()
  where = f'tfds mnist (data_dir={data_dir or "default"})'
  out = {}
  for split in MNIST_FILES:
    try:
      ds = tfds.load('mnist', split=split, data_dir=data_dir,
                     download=download)
      chunks = list(tfds.as_numpy(ds.batch(_TFDS_CHUNK)))
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f'{where}: could not load split {split!r} '
                      f'(download={download}): {type(e).__name__}: {e}') from e
    images = np.concatenate([c['image'] for c in chunks]).astype(np.uint8)
    labels = np.concatenate([c['label'] for c in chunks]).astype(np.int32)
    if images.shape[1:] != (28, 28, 1):
      raise DataError(f'{where}: expected {split} images of shape '
                      f'[N, 28, 28, 1], found {list(images.shape)}')
    out[split] = (images, labels)
  return out


# ----------------------------------------------------------------------------
# Config-driven loading.


@dataclasses.dataclass(frozen=True)
class ImageData:
  """A whole data set in host memory; images float32 NHWC, labels int32."""
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  source: str  # Human-readable origin, for logs and reports.


def _pixel_range(value) -> Tuple[float, float]:
  try:
    lo, hi = (float(v) for v in value)
  except (TypeError, ValueError):
    lo = hi = None
  if lo is None or not lo < hi:
    raise DataError(f'config.data.pixel_range={value!r}: expected a pair '
                    '(lo, hi) with lo < hi, e.g. (0.0, 1.0) or (-1.0, 1.0)')
  return lo, hi


def _to_float(images: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Maps uint8 0..255 linearly onto [lo, hi] via a 256-entry lookup table.

  The table is exact at both ends (0 -> lo, 255 -> hi) and costs a single
  pass over the data.
  """
  table = (lo + (hi - lo) * np.arange(256) / 255.0).astype(np.float32)
  return table[images]


def _resolve_mnist(source: str, data_dir: Optional[str]) -> Tuple[Splits, str]:
  """Picks where MNIST comes from; returns the arrays and a description."""
  env_dir = os.environ.get(MNIST_DIR_ENV) or None
  tfds_desc = f'tfds mnist (data_dir={data_dir or "default"})'

  if source == 'idx':
    folder = data_dir or env_dir
    if folder is None:
      raise DataError(
          "config.data.source='idx' needs a folder with the four MNIST IDX "
          f'files: set config.data.dir or ${MNIST_DIR_ENV}')
    return load_mnist_idx(folder), f'IDX files in {folder}'

  if source == 'tfds':
    return load_mnist_tfds(data_dir, download=True), tfds_desc

  # 'auto': never downloads (offline, a TFDS attempt takes minutes to fail).
  if _tfds_prepared(data_dir):
    return load_mnist_tfds(data_dir, download=False), tfds_desc
  for folder in (data_dir, env_dir):
    if folder and _has_mnist_idx(folder):
      return load_mnist_idx(folder), f'IDX files in {folder}'
  names = ', '.join(n for names in MNIST_FILES.values() for n in names)
  raise DataError(
      "config.data.source='auto' found no MNIST: either set config.data.dir "
      f'(now {data_dir!r}) or ${MNIST_DIR_ENV} (now {env_dir!r}) to a folder '
      f'with the four IDX files ({names}), or prepare TFDS mnist under the '
      f'TFDS data_dir ({data_dir or "default"}). source=auto does not '
      'download (offline, a TFDS download takes minutes to fail); use '
      "config.data.source='tfds' to let TFDS download.")


def load_dataset(data_config) -> ImageData:
  """Loads the data set described by `config.data` into memory.

  Fields: name ('mnist'); source: 'idx' reads IDX files from dir, else from
  $WAE_JAX_MNIST_DIR; 'tfds' loads via TFDS with dir as data_dir, downloading
  if needed; 'auto' uses TFDS if mnist is already prepared under dir (or the
  TFDS default), else IDX files from dir or $WAE_JAX_MNIST_DIR if present,
  else raises DataError. 'auto' never downloads: without network a TFDS
  download only fails after minutes of retries. pixel_range: (lo, hi) onto
  which uint8 0..255 is mapped linearly.
  """
  name = data_config.name
  if name not in DATASETS:
    raise DataError(f'config.data.name={name!r} is not supported; '
                    f'allowed: {", ".join(DATASETS)}')
  source = data_config.source
  if source not in SOURCES:
    raise DataError(f'config.data.source={source!r} is not supported; '
                    f'allowed: {", ".join(SOURCES)}')
  lo, hi = _pixel_range(data_config.pixel_range)
  data_dir = data_config.dir or None

  splits, description = _resolve_mnist(source, data_dir)
  logging.info('MNIST from %s', description)
  (train_x, train_y), (test_x, test_y) = splits['train'], splits['test']
  return ImageData(
      train_images=_to_float(train_x, lo, hi), train_labels=train_y,
      test_images=_to_float(test_x, lo, hi), test_labels=test_y,
      source=description)


# ----------------------------------------------------------------------------
# Batching.


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches per epoch; the remainder is dropped."""
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  return num_examples // batch_size


def train_batches(images: np.ndarray, batch_size: int, seed: int,
                  start_step: int = 0) -> Iterator[np.ndarray]:
  """Yields shuffled batches forever, reproducible from any step.

  Epoch e visits the rows in the order np.random.default_rng([seed, e])
  .permutation(len(images)), so the batch of step s depends only on (seed, s)
  and a run resumed at start_step sees exactly the data of an uninterrupted
  run. Arguments are checked here, not on the first next().
  """
  steps = steps_per_epoch(len(images), batch_size)
  if steps == 0:
    raise DataError(f'batch_size={batch_size} is larger than the '
                    f'{len(images)} training examples')
  if start_step < 0:
    raise ValueError(f'start_step must be >= 0, got {start_step}')

  def generate():
    epoch, first = divmod(start_step, steps)
    while True:
      order = np.random.default_rng([seed, epoch]).permutation(len(images))
      for i in range(first, steps):
        yield images[order[i * batch_size:(i + 1) * batch_size]]
      epoch, first = epoch + 1, 0

  return generate()
