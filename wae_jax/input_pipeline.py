"""MNIST and CelebA loading, and resumable shuffled batches.

Training needs to work offline, so besides TFDS the four standard MNIST IDX
files and a folder of CelebA JPEGs can be read directly. Images are kept in
host memory as uint8 (`Images`) and become float32 in config.data.pixel_range
only when indexed: CelebA as float32 would take about 10 GB, as uint8 2.5 GB.

CelebA, as in the paper: a centre 140x140 crop of each aligned 178x218 image,
resized to 64x64 with PIL's LANCZOS filter (antialiased, as in the authors'
code). Decoding 200k JPEGs takes minutes, so a folder's preprocessed arrays are
cached as .npy files (see load_celeba_folder) and memory-mapped afterwards.

Faults in a CelebA folder:
- files without a .jpg/.jpeg/.png extension (README, .txt) are ignored;
- image files that do not decode (random bytes, truncated JPEGs) are skipped,
  with one warning naming the first few and the count;
- images of another size than most (CelebA aligned: 178x218), or smaller
  than the 140x140 crop, are skipped with a warning naming them and both sizes;
- if more than 1% of the images are skipped, or all, or the folder has none,
  DataError names the folder, the counts and examples: better no run than a
  run on a damaged data set;
- a list_eval_partition.txt with a malformed line, or naming a file that is
  not there, is a DataError naming the file and line.
Skipping happens when the cache is built; a cached load repeats no warnings.
"""

import collections
from concurrent import futures
import dataclasses
import gzip
import hashlib
import math
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple
import zlib

from absl import logging
import numpy as np
from PIL import Image

from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import files

MNIST_DIR_ENV = 'WAE_JAX_MNIST_DIR'

# split -> (images file, labels file); the same names without '.gz' also work.
MNIST_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}

DATASETS = wae_config.DATASETS  # and their sources: wae_config.DATA_SOURCES
_TITLES = {'mnist': 'MNIST', 'celeba': 'CelebA'}

# CelebA: the aligned images' folder and split file, and the paper's preprocessing.
CELEBA_FOLDER = 'img_align_celeba'
CELEBA_PARTITION = 'list_eval_partition.txt'
CELEBA_CROP = 140
CELEBA_SIZE = 64
# Without a partition file, the last 10% (rounded up) of the sorted names are test.
CELEBA_TEST_FRACTION = 0.1
# Training-set sizes, for counting a run's steps without loading its data (the sweep's
# plan): MNIST's 60,000, and CelebA's official train split (the 0s of list_eval_partition.txt).
# A CelebA folder without that file trains on 90% of its images instead (182,339 of 202,599).
TRAIN_SIZES = {'mnist': 60_000, 'celeba': 162_770}
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
# More skipped images than this fraction means a damaged folder: DataError.
MAX_SKIPPED_FRACTION = 0.01
CACHE_ENV = 'WAE_JAX_CACHE'  # Caches: CelebA arrays, the MNIST classifier, FID statistics.
_PROGRESS_EVERY = 5000

# Arrays per split: (images uint8 [N, 28, 28, 1], labels int32 [N]).
Splits = Dict[str, Tuple[np.ndarray, np.ndarray]]

_IDX_UBYTE = 0x08
_GZIP_MAGIC = b'\x1f\x8b'
# Chunk size for turning a tf.data split into numpy (see load_mnist_tfds).
_TFDS_CHUNK = 10_000


class DataError(errors.WaeError, ValueError):
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


def keep_tensorflow_off_accelerators() -> None:
  """TensorFlow (TFDS, clu's writers) only feeds and logs on the host: the GPUs are JAX's."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # TF already initialised its devices.
    pass


def _import_tfds():
  """Imports TFDS lazily: it pulls in TensorFlow, and the default install leaves it out."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError("config.data.source='tfds' needs TensorFlow Datasets, which the default "
                    'install leaves out: pip install -c constraints.txt -e ".[tfds]" (or read '
                    "MNIST's IDX files with config.data.dir, CelebA from a folder)") from e
  keep_tensorflow_off_accelerators()
  return tfds


def _tfds_description(name: str, data_dir: Optional[str]) -> str:
  """How logs and errors name a TFDS data set and where it is read from."""
  return f'tfds {name} (data_dir={data_dir or "default"})'


def _tfds_prepared(data_dir: Optional[str], name: str = 'mnist') -> bool:
  """Whether TFDS `name` is already on disk under data_dir (no network use).

  TFDS is asked only where a `name` folder exists in a data_dir it reads (data_dir, else its
  defaults): its builder warns of every missing variant folder it probes ('Variant folder
  .../mnist/3.0.1 has no dataset_info.json'), which every offline run would log.
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    from etils import epath  # pylint: disable=g-import-not-at-top
  except ImportError:  # Not installed: nothing prepared.
    return False
  try:  # Only reads metadata; does not import TensorFlow itself.
    if not any(epath.Path(d, name).is_dir()
               for d in tfds.core.utils.file_utils.list_data_dirs(data_dir)):
      return False
    return tfds.builder(name, data_dir=data_dir).is_prepared()
  except Exception:  # pylint: disable=broad-except
    return False


def _tfds_chunks(name: str, split: str, data_dir: Optional[str], download: bool,
                 chunk: int = _TFDS_CHUNK) -> Iterator[dict]:
  """Yields a TFDS split as dicts of numpy arrays, `chunk` examples at a time.

  Fixed chunks rather than batch_size=-1: when split sizes are unknown (e.g.
  mocked data) TFDS then batches by sys.maxsize, which aborts the whole
  process inside TensorFlow. Chunks also bound memory for CelebA.
  """
  tfds = _import_tfds()
  try:
    ds = tfds.load(name, split=split, data_dir=data_dir, download=download)
    yield from tfds.as_numpy(ds.batch(chunk))
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f'{_tfds_description(name, data_dir)}: could not load '
                    f'split {split!r} (download={download}): {type(e).__name__}: {e}') from e


def load_mnist_tfds(data_dir: Optional[str], download: bool) -> Splits:
  """Reads MNIST through TFDS (data_dir None = the TFDS default)."""
  out = {}
  for split in MNIST_FILES:
    chunks = list(_tfds_chunks('mnist', split, data_dir, download))
    images = np.concatenate([c['image'] for c in chunks]).astype(np.uint8)
    labels = np.concatenate([c['label'] for c in chunks]).astype(np.int32)
    if images.shape[1:] != (28, 28, 1):
      raise DataError(f'{_tfds_description("mnist", data_dir)}: expected {split} '
                      f'images of shape [N, 28, 28, 1], found {list(images.shape)}')
    out[split] = (images, labels)
  return out


# ----------------------------------------------------------------------------
# CelebA.


def preprocess_face(image) -> np.ndarray:
  """The paper's CelebA input: centre 140x140 crop, LANCZOS resize to 64x64.

  `image` is a PIL image (any mode); returns uint8 [64, 64, 3]. Both the
  folder and the TFDS path go through here, so they give the same pixels.
  """
  width, height = image.size
  left, top = (width - CELEBA_CROP) // 2, (height - CELEBA_CROP) // 2
  image = image.convert('RGB').crop(
      (left, top, left + CELEBA_CROP, top + CELEBA_CROP))
  image = image.resize((CELEBA_SIZE, CELEBA_SIZE), Image.LANCZOS)
  return np.asarray(image, np.uint8)


def _decode_face(path) -> Tuple[Optional[np.ndarray], object]:
  """(preprocessed pixels, (width, height)), or (None, why) if it won't decode."""
  try:
    with Image.open(path) as image:
      return preprocess_face(image), image.size
  except Exception as e:  # pylint: disable=broad-except
    # PIL raises many types for corrupt files (OSError, SyntaxError, ...).
    return None, f'{type(e).__name__}: {e}'


def _decode_faces(folder: Path, names: Sequence[str]) -> Tuple[np.ndarray, list]:
  """Decodes names in parallel: uint8 [N, 64, 64, 3] and a size or error each.

  Threads suffice: PIL releases the GIL while decoding and resizing.
  """
  pixels = np.zeros((len(names), CELEBA_SIZE, CELEBA_SIZE, 3), np.uint8)
  sizes = []
  with futures.ThreadPoolExecutor(min(32, os.cpu_count() or 1)) as pool:
    for i, (face, size) in enumerate(
        pool.map(_decode_face, [folder / n for n in names])):
      if face is not None:
        pixels[i] = face
      sizes.append(size)
      if (i + 1) % _PROGRESS_EVERY == 0:
        logging.info('Decoded %d of %d images in %s', i + 1, len(names), folder)
  return pixels, sizes


def _examples(pairs, count: int = 3) -> str:
  return ', '.join(f'{name} ({what})' for name, what in pairs[:count])


def _usable(folder: Path, names: Sequence[str], sizes: list) -> np.ndarray:
  """Which decoded images to keep; warns about the others (see the module doc).

  Raises DataError when more than MAX_SKIPPED_FRACTION of them are unusable.
  """
  broken = [(n, s) for n, s in zip(names, sizes) if isinstance(s, str)]
  counts = collections.Counter(s for s in sizes if not isinstance(s, str))
  # The most common size; on a tie, the first image's.
  common = counts.most_common(1)[0][0] if counts else None
  wrong = [(n, f'{s[0]}x{s[1]}') for n, s in zip(names, sizes)
           if not isinstance(s, str)
           and (s != common or min(s) < CELEBA_CROP)]
  if broken:
    logging.warning('%s: skipped %d image files that do not decode: %s',
                    folder, len(broken), _examples(broken))
  if wrong:
    logging.warning(
        '%s: skipped %d images whose size is not the %dx%d of the others, or '
        'is below the %dx%d crop: %s', folder, len(wrong), *common,
        CELEBA_CROP, CELEBA_CROP, _examples(wrong))
  skipped = len(broken) + len(wrong)
  if skipped == len(names) or skipped > MAX_SKIPPED_FRACTION * len(names):
    raise DataError(
        f'{folder}: {skipped} of {len(names)} images are unusable '
        f'({len(broken)} do not decode, {len(wrong)} have the wrong size), '
        f'more than the {MAX_SKIPPED_FRACTION:.0%} tolerated; e.g. '
        f'{_examples(broken + wrong)}. Repair or re-download the data set '
        'rather than train on a damaged one.')
  bad = {n for n, _ in broken + wrong}
  return np.array([n not in bad for n in names], bool)


def _is_image(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS)


def _celeba_folder(data_dir) -> Path:
  """data.dir's img_align_celeba/ subfolder if it has one, else data.dir."""
  directory = Path(data_dir).expanduser()
  sub = directory / CELEBA_FOLDER
  return sub if sub.is_dir() else directory


def _has_images(folder: Path) -> bool:
  return folder.is_dir() and any(
      _is_image(e.name) for e in os.scandir(folder) if e.is_file())


def _list_images(folder: Path) -> List[Tuple[str, int, int]]:
  """(name, size in bytes, mtime in ns) of the image files, sorted by name."""
  try:
    entries = [e for e in os.scandir(folder) if _is_image(e.name) and e.is_file()]
  except OSError as e:
    raise DataError(f'{folder}: cannot list the CelebA images ({e})') from e
  return sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries)


def _find_partition(folder: Path) -> Optional[Path]:
  for candidate in (folder / CELEBA_PARTITION, folder.parent / CELEBA_PARTITION):
    if candidate.is_file():
      return candidate
  return None


def read_partition(path: Path, names) -> Dict[str, List[str]]:
  """Train (0) and test (2) names from list_eval_partition.txt.

  The validation split (1) is read and checked, but not used for now. Every
  listed file must be among `names`.
  """
  splits = {'0': [], '1': [], '2': []}
  missing = []
  names = set(names)
  for lineno, line in enumerate(path.read_text().splitlines(), 1):
    fields = line.split()
    if not fields:
      continue
    if len(fields) != 2 or fields[1] not in splits:
      raise DataError(f'{path}:{lineno}: malformed line {line!r}; expected '
                      '"<image file> <0|1|2>" (0 train, 1 validation, 2 test)')
    splits[fields[1]].append(fields[0])
    if fields[0] not in names:
      missing.append((lineno, fields[0]))
  if missing:
    lineno, name = missing[0]
    raise DataError(f'{path}:{lineno}: lists {name}, which is not among the '
                    f'images beside it ({len(missing)} listed files are '
                    'missing); the partition file and the images do not match')
  return {'train': splits['0'], 'test': splits['2']}


def celeba_splits(folder: Path, names: Sequence[str]) -> Dict[str, List[str]]:
  """Train and test names: from list_eval_partition.txt if it is beside the
  images, else by sorted name (the last CELEBA_TEST_FRACTION is test)."""
  partition = _find_partition(folder)
  if partition is not None:
    splits = read_partition(partition, names)
    unlisted = len(names) - len(splits['train']) - len(splits['test'])
    logging.info('%s: split by %s (%d train, %d test, %d validation or '
                 'unlisted images unused)', folder, partition,
                 len(splits['train']), len(splits['test']), unlisted)
    return splits
  num_test = math.ceil(CELEBA_TEST_FRACTION * len(names))
  logging.warning('%s: no %s in it or its parent; the last %d of the %d '
                  'images by sorted file name are the test set', folder,
                  CELEBA_PARTITION, num_test, len(names))
  cut = len(names) - num_test
  return {'train': list(names[:cut]), 'test': list(names[cut:])}


def default_cache_dir() -> Path:
  """Where every cache of the project goes unless a config field says otherwise."""
  return Path(os.environ.get(CACHE_ENV) or '~/.cache/wae_jax').expanduser()


def _cache_key(folder: Path, files, partition: Optional[Path]) -> str:
  """Changes whenever a file, the split or the preprocessing changes."""
  key = hashlib.sha256(repr((
      str(folder.resolve()), CELEBA_CROP, CELEBA_SIZE, 'LANCZOS',
      CELEBA_TEST_FRACTION)).encode())
  for name, size, mtime in files:
    key.update(f'{name}\0{size}\0{mtime}\n'.encode())
  if partition is not None:
    key.update(partition.read_bytes())
  return key.hexdigest()[:16]


def load_celeba_folder(data_dir, cache_dir=None) -> Tuple[Dict[str, np.ndarray], str]:
  """CelebA from a folder of JPEGs: uint8 [N, 64, 64, 3] per split, and where.

  `data_dir` is img_align_celeba/ itself or the folder holding it. The
  preprocessed splits are cached as <cache_dir>/celeba64_<key>_{train,test}.npy
  (cache_dir default $WAE_JAX_CACHE or ~/.cache/wae_jax); the key covers the
  folder, each image's name, size and mtime, the partition file and the
  preprocessing, so a changed data set is decoded again. Cached splits are
  memory-mapped, not read.
  """
  folder = _celeba_folder(data_dir)
  if not folder.is_dir():
    raise DataError(f'config.data.dir={str(data_dir)!r}: no such folder')
  listed = _list_images(folder)
  if not listed:
    raise DataError(
        f'{folder}: no images ({", ".join(IMAGE_EXTENSIONS)}) found; '
        f'config.data.dir must be the {CELEBA_FOLDER}/ folder of CelebA or '
        'the folder that holds it')
  names = [name for name, _, _ in listed]
  splits = celeba_splits(folder, names)
  key = _cache_key(folder, listed, _find_partition(folder))
  cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
  paths = {s: cache_dir / f'celeba{CELEBA_SIZE}_{key}_{s}.npy' for s in splits}
  if not all(p.is_file() for p in paths.values()):
    ordered = splits['train'] + splits['test']
    logging.info('Decoding %d CelebA images in %s, once: the result is '
                 'cached in %s', len(ordered), folder, cache_dir)
    pixels, sizes = _decode_faces(folder, ordered)
    keep = _usable(folder, ordered, sizes)
    rows = {'train': np.arange(len(ordered)) < len(splits['train'])}
    rows['test'] = ~rows['train']
    for split, mask in rows.items():
      if not (keep & mask).any():
        raise DataError(f'{folder}: the {split} split has no usable images')
    for split, mask in rows.items():
      with files.atomic_path(paths[split]) as tmp:  # a killed run leaves no half cache
        np.save(tmp, pixels[keep & mask])
  description = f'images in {folder} (cache {cache_dir}, key {key})'
  return {s: np.load(p, mmap_mode='r') for s, p in paths.items()}, description


def load_celeba_tfds(data_dir: Optional[str], download: bool) -> Dict[str, np.ndarray]:
  """CelebA through TFDS (celeb_a): uint8 [N, 64, 64, 3] per split."""
  out = {}
  with futures.ThreadPoolExecutor(min(32, os.cpu_count() or 1)) as pool:
    for split in ('train', 'test'):
      faces = []
      for chunk in _tfds_chunks('celeb_a', split, data_dir, download, chunk=1000):
        faces.extend(pool.map(lambda a: preprocess_face(Image.fromarray(a)),
                              chunk['image']))
        if len(faces) % _PROGRESS_EVERY < len(chunk['image']):
          logging.info('Preprocessed %d %s images of tfds celeb_a', len(faces), split)
      if not faces:
        raise DataError(f'{_tfds_description("celeb_a", data_dir)}: '
                        f'split {split!r} is empty')
      out[split] = np.stack(faces)
  return out


def _resolve_celeba(source: str, data_dir: Optional[str],
                    cache_dir: Optional[str]) -> Tuple[Dict[str, np.ndarray], str]:
  """Picks where CelebA comes from; returns the uint8 splits and a description."""
  tfds_desc = _tfds_description('celeb_a', data_dir)
  if source == 'tfds':
    return load_celeba_tfds(data_dir, download=True), tfds_desc
  if source == 'folder':
    if data_dir is None:
      raise DataError(
          "config.data.source='folder' needs config.data.dir: the "
          f'{CELEBA_FOLDER}/ folder of CelebA JPEGs or the folder holding it')
    return load_celeba_folder(data_dir, cache_dir)
  # 'auto': never downloads, like MNIST's.
  if _tfds_prepared(data_dir, 'celeb_a'):
    return load_celeba_tfds(data_dir, download=False), tfds_desc
  if data_dir and _has_images(_celeba_folder(data_dir)):
    return load_celeba_folder(data_dir, cache_dir)
  raise DataError(
      "config.data.source='auto' found no CelebA: no TFDS celeb_a prepared "
      f'under the TFDS data_dir ({data_dir or "default"}), and no images in '
      f'config.data.dir={data_dir!r} or its {CELEBA_FOLDER}/ subfolder. Set '
      f'config.data.dir to the {CELEBA_FOLDER}/ folder (or the folder holding '
      "it), or use config.data.source='tfds' to let TFDS download.")


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
  tfds_desc = _tfds_description('mnist', data_dir)

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
  """Loads the data set described by `config.data`.

  Fields: name ('mnist' or 'celeba'); pixel_range: (lo, hi) onto which uint8
  0..255 is mapped linearly; source and dir:
  - MNIST: 'idx' reads IDX files from dir, else from $WAE_JAX_MNIST_DIR;
    'tfds' loads via TFDS with dir as data_dir, downloading if needed; 'auto'
    uses TFDS if mnist is already prepared under dir (or the TFDS default),
    else IDX files from dir or $WAE_JAX_MNIST_DIR if present.
  - CelebA: 'folder' reads the JPEGs in dir (img_align_celeba/ or the folder
    holding it; see load_celeba_folder), cached in cache_dir; 'tfds' loads
    celeb_a via TFDS, downloading if needed; 'auto' uses TFDS if celeb_a is
    prepared under dir (or the TFDS default), else the folder.
  'auto' never downloads: without network a TFDS download only fails after
  minutes of retries. It raises DataError saying where it looked instead.
  """
  name, source = data_config.name, data_config.source
  try:
    wae_config.check_data_source(name, source)
  except ValueError as error:  # the loader's callers catch DataError
    raise DataError(str(error)) from None
  lo, hi = _pixel_range(data_config.pixel_range)
  data_dir = data_config.dir or None

  if name == 'mnist':
    splits, description = _resolve_mnist(source, data_dir)
  else:
    pixels, description = _resolve_celeba(
        source, data_dir, data_config.get('cache_dir') or None)
    splits = {split: (images, None) for split, images in pixels.items()}
  logging.info('%s from %s', _TITLES[name], description)
  (train_x, train_y), (test_x, test_y) = splits['train'], splits['test']
  return ImageData(
      train_images=Images(train_x, (lo, hi)), train_labels=train_y,
      test_images=Images(test_x, (lo, hi)), test_labels=test_y,
      source=description)


# ----------------------------------------------------------------------------
# Batching.


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches per epoch; the remainder is dropped."""
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  return num_examples // batch_size


def train_batches(images: np.ndarray, batch_size: int, seed: int,
                  start_step: int = 0, rows: slice = slice(None)) -> Iterator[np.ndarray]:
  """Yields shuffled batches forever, reproducible from any step.

  Epoch e visits the rows in the order np.random.default_rng([seed, e])
  .permutation(len(images)), so the batch of step s depends only on (seed, s)
  and a run resumed at start_step sees exactly the data of an uninterrupted
  run. `rows` picks part of each batch (a process's share with several hosts):
  only those images are read. Arguments are checked here, not on the first next().
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
        yield images[order[i * batch_size:(i + 1) * batch_size][rows]]
      epoch, first = epoch + 1, 0

  return generate()
