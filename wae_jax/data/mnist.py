"""MNIST: from the four standard IDX files (offline) or TensorFlow Datasets."""

import gzip
import math
import os
from pathlib import Path
from typing import Optional, Tuple
import zlib

import numpy as np

from wae_jax.data import tfds_source
from wae_jax.data.base import DataError
from wae_jax.data.base import Dataset
from wae_jax.data.base import Splits

MNIST_DIR_ENV = 'WAE_JAX_MNIST_DIR'

# split -> (images file, labels file); the same names without '.gz' also work.
MNIST_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}

_IDX_UBYTE = 0x08
_GZIP_MAGIC = b'\x1f\x8b'


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

  if len(data) < 4 or data[:2] != b'\0\0' or data[2] != _IDX_UBYTE or data[3] == 0:
    magic = data[:4].hex() if len(data) >= 4 else f'{len(data)} bytes'
    raise DataError(
        f'{path}: bad IDX magic number 0x{magic}; expected 0x000008NN '
        '(unsigned bytes, NN dimensions), e.g. 0x00000803 for images or '
        '0x00000801 for labels'
    )
  ndim = data[3]
  offset = 4 + 4 * ndim
  if len(data) < offset:
    raise DataError(
        f'{path}: truncated IDX header; expected {offset} bytes '
        f'for {ndim} dimensions, found {len(data)}'
    )
  shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], 'big') for i in range(ndim))
  expected, found = math.prod(shape), len(data) - offset
  if found != expected:
    kind = 'truncated' if found < expected else 'oversized'
    raise DataError(
        f'{path}: {kind} IDX file; header shape {shape} expects '
        f'{expected} data bytes, found {found}'
    )
  # Copy so callers get an ordinary writable array, not a view of `bytes`.
  return np.frombuffer(data, np.uint8, offset=offset).reshape(shape).copy()


def _find_idx_file(directory: Path, name: str) -> Optional[Path]:
  """Returns directory/name or its un-gzipped twin, whichever exists."""
  for candidate in (directory / name, directory / name[: -len('.gz')]):
    if candidate.is_file():
      return candidate
  return None


def _has_mnist_idx(directory) -> bool:
  directory = Path(directory)
  return all(
      _find_idx_file(directory, name) is not None
      for names in MNIST_FILES.values()
      for name in names
  )


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
            f'expected the four IDX files {expected} in {directory}'
        )
      paths.append(path)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.shape[1:] != (28, 28):
      raise DataError(
          f'{paths[0]}: expected images of shape [N, 28, 28], ' f'found {list(images.shape)}'
      )
    if labels.ndim != 1:
      raise DataError(f'{paths[1]}: expected labels of shape [N], ' f'found {list(labels.shape)}')
    if len(images) != len(labels):
      raise DataError(
          f'{paths[0]} has {len(images)} images but {paths[1]} '
          f'has {len(labels)} labels; expected equal counts'
      )
    if labels.size and labels.max() > 9:
      raise DataError(f'{paths[1]}: expected labels in 0..9, ' f'found {labels.max()}')
    out[split] = (images[..., None], labels.astype(np.int32))
  return out


def load_mnist_tfds(data_dir: Optional[str], download: bool) -> Splits:
  """Reads MNIST through TFDS (data_dir None = the TFDS default)."""
  out = {}
  for split in MNIST_FILES:
    chunks = list(tfds_source.chunks('mnist', split, data_dir, download))
    images = np.concatenate([c['image'] for c in chunks]).astype(np.uint8)
    labels = np.concatenate([c['label'] for c in chunks]).astype(np.int32)
    if images.shape[1:] != (28, 28, 1):
      raise DataError(
          f'{tfds_source.describe("mnist", data_dir)}: expected {split} '
          f'images of shape [N, 28, 28, 1], found {list(images.shape)}'
      )
    out[split] = (images, labels)
  return out


def load(data_config) -> Tuple[Splits, str]:
  """MNIST from where config.data.source and .dir say; the arrays and a description.

  'idx' reads IDX files from dir, else from $WAE_JAX_MNIST_DIR; 'tfds' loads via TFDS with dir
  as data_dir, downloading if needed; 'auto' uses TFDS if mnist is already prepared under dir
  (or the TFDS default), else IDX files from dir or $WAE_JAX_MNIST_DIR if present. 'auto' never
  downloads: without network a TFDS download only fails after minutes of retries.
  """
  source, data_dir = data_config.source, data_config.dir or None
  env_dir = os.environ.get(MNIST_DIR_ENV) or None
  tfds_desc = tfds_source.describe('mnist', data_dir)

  if source == 'idx':
    folder = data_dir or env_dir
    if folder is None:
      raise DataError(
          "config.data.source='idx' needs a folder with the four MNIST IDX "
          f'files: set config.data.dir or ${MNIST_DIR_ENV}'
      )
    return load_mnist_idx(folder), f'IDX files in {folder}'

  if source == 'tfds':
    return load_mnist_tfds(data_dir, download=True), tfds_desc

  # 'auto': never downloads (offline, a TFDS attempt takes minutes to fail).
  if tfds_source.prepared(data_dir, 'mnist'):
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
      "config.data.source='tfds' to let TFDS download."
  )


DATASET = Dataset(
    name='mnist',
    title='MNIST',
    load=load,
    image_shape=(28, 28, 1),
    pixel_range=(0.0, 1.0),
    train_size=60_000,
    sources=('auto', 'tfds', 'idx'),
    fid_extractor='mnist_classifier',
)
