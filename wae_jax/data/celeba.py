"""CelebA from TFDS (celeb_a) or a folder of JPEGs (offline), as in the paper: a centre
140x140 crop of each aligned 178x218 image, resized to 64x64 with PIL's LANCZOS filter
(antialiased, as in the authors' code). Decoding 200k JPEGs takes minutes, so a folder's
preprocessed arrays are cached as .npy files (see load_celeba_folder) and memory-mapped
afterwards.

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
import hashlib
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
from PIL import Image

from wae_jax import files
from wae_jax.data import tfds_source
from wae_jax.data.base import DataError
from wae_jax.data.base import Dataset
from wae_jax.data.base import Splits
from wae_jax.data.base import default_cache_dir

CELEBA_FOLDER = 'img_align_celeba'
CELEBA_PARTITION = 'list_eval_partition.txt'
CELEBA_CROP = 140
CELEBA_SIZE = 64
# Without a partition file, the last 10% (rounded up) of the sorted names are test.
CELEBA_TEST_FRACTION = 0.1
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
# More skipped images than this fraction means a damaged folder: DataError.
MAX_SKIPPED_FRACTION = 0.01
_PROGRESS_EVERY = 5000


def preprocess_face(image) -> np.ndarray:
  """The paper's CelebA input: centre 140x140 crop, LANCZOS resize to 64x64.

  `image` is a PIL image (any mode); returns uint8 [64, 64, 3]. Both the
  folder and the TFDS path go through here, so they give the same pixels.
  """
  width, height = image.size
  left, top = (width - CELEBA_CROP) // 2, (height - CELEBA_CROP) // 2
  image = image.convert('RGB').crop((left, top, left + CELEBA_CROP, top + CELEBA_CROP))
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
    for i, (face, size) in enumerate(pool.map(_decode_face, [folder / n for n in names])):
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
  wrong = [
      (n, f'{s[0]}x{s[1]}')
      for n, s in zip(names, sizes)
      if not isinstance(s, str) and (s != common or min(s) < CELEBA_CROP)
  ]
  if broken:
    logging.warning(
        '%s: skipped %d image files that do not decode: %s', folder, len(broken), _examples(broken)
    )
  if wrong:
    logging.warning(
        '%s: skipped %d images whose size is not the %dx%d of the others, or '
        'is below the %dx%d crop: %s',
        folder,
        len(wrong),
        *common,
        CELEBA_CROP,
        CELEBA_CROP,
        _examples(wrong),
    )
  skipped = len(broken) + len(wrong)
  if skipped == len(names) or skipped > MAX_SKIPPED_FRACTION * len(names):
    raise DataError(
        f'{folder}: {skipped} of {len(names)} images are unusable '
        f'({len(broken)} do not decode, {len(wrong)} have the wrong size), '
        f'more than the {MAX_SKIPPED_FRACTION:.0%} tolerated; e.g. '
        f'{_examples(broken + wrong)}. Repair or re-download the data set '
        'rather than train on a damaged one.'
    )
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
  return folder.is_dir() and any(_is_image(e.name) for e in os.scandir(folder) if e.is_file())


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
      raise DataError(
          f'{path}:{lineno}: malformed line {line!r}; expected '
          '"<image file> <0|1|2>" (0 train, 1 validation, 2 test)'
      )
    splits[fields[1]].append(fields[0])
    if fields[0] not in names:
      missing.append((lineno, fields[0]))
  if missing:
    lineno, name = missing[0]
    raise DataError(
        f'{path}:{lineno}: lists {name}, which is not among the '
        f'images beside it ({len(missing)} listed files are '
        'missing); the partition file and the images do not match'
    )
  return {'train': splits['0'], 'test': splits['2']}


def celeba_splits(folder: Path, names: Sequence[str]) -> Dict[str, List[str]]:
  """Train and test names: from list_eval_partition.txt if it is beside the
  images, else by sorted name (the last CELEBA_TEST_FRACTION is test)."""
  partition = _find_partition(folder)
  if partition is not None:
    splits = read_partition(partition, names)
    unlisted = len(names) - len(splits['train']) - len(splits['test'])
    logging.info(
        '%s: split by %s (%d train, %d test, %d validation or ' 'unlisted images unused)',
        folder,
        partition,
        len(splits['train']),
        len(splits['test']),
        unlisted,
    )
    return splits
  num_test = math.ceil(CELEBA_TEST_FRACTION * len(names))
  logging.warning(
      '%s: no %s in it or its parent; the last %d of the %d '
      'images by sorted file name are the test set',
      folder,
      CELEBA_PARTITION,
      num_test,
      len(names),
  )
  cut = len(names) - num_test
  return {'train': list(names[:cut]), 'test': list(names[cut:])}


def _cache_key(folder: Path, files, partition: Optional[Path]) -> str:
  """Changes whenever a file, the split or the preprocessing changes."""
  key = hashlib.sha256(
      repr(
          (str(folder.resolve()), CELEBA_CROP, CELEBA_SIZE, 'LANCZOS', CELEBA_TEST_FRACTION)
      ).encode()
  )
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
        'the folder that holds it'
    )
  names = [name for name, _, _ in listed]
  splits = celeba_splits(folder, names)
  key = _cache_key(folder, listed, _find_partition(folder))
  cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
  paths = {s: cache_dir / f'celeba{CELEBA_SIZE}_{key}_{s}.npy' for s in splits}
  if not all(p.is_file() for p in paths.values()):
    ordered = splits['train'] + splits['test']
    logging.info(
        'Decoding %d CelebA images in %s, once: the result is ' 'cached in %s',
        len(ordered),
        folder,
        cache_dir,
    )
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
      for chunk in tfds_source.chunks('celeb_a', split, data_dir, download, chunk=1000):
        faces.extend(pool.map(lambda a: preprocess_face(Image.fromarray(a)), chunk['image']))
        if len(faces) % _PROGRESS_EVERY < len(chunk['image']):
          logging.info('Preprocessed %d %s images of tfds celeb_a', len(faces), split)
      if not faces:
        raise DataError(
            f'{tfds_source.describe("celeb_a", data_dir)}: ' f'split {split!r} is empty'
        )
      out[split] = np.stack(faces)
  return out


def _images(
    source: str, data_dir: Optional[str], cache_dir: Optional[str]
) -> Tuple[Dict[str, np.ndarray], str]:
  """Picks where CelebA comes from; returns the uint8 splits and a description."""
  tfds_desc = tfds_source.describe('celeb_a', data_dir)
  if source == 'tfds':
    return load_celeba_tfds(data_dir, download=True), tfds_desc
  if source == 'folder':
    if data_dir is None:
      raise DataError(
          "config.data.source='folder' needs config.data.dir: the "
          f'{CELEBA_FOLDER}/ folder of CelebA JPEGs or the folder holding it'
      )
    return load_celeba_folder(data_dir, cache_dir)
  # 'auto': never downloads, like MNIST's.
  if tfds_source.prepared(data_dir, 'celeb_a'):
    return load_celeba_tfds(data_dir, download=False), tfds_desc
  if data_dir and _has_images(_celeba_folder(data_dir)):
    return load_celeba_folder(data_dir, cache_dir)
  raise DataError(
      "config.data.source='auto' found no CelebA: no TFDS celeb_a prepared "
      f'under the TFDS data_dir ({data_dir or "default"}), and no images in '
      f'config.data.dir={data_dir!r} or its {CELEBA_FOLDER}/ subfolder. Set '
      f'config.data.dir to the {CELEBA_FOLDER}/ folder (or the folder holding '
      "it), or use config.data.source='tfds' to let TFDS download."
  )


def load(data_config) -> Tuple[Splits, str]:
  """CelebA from where config.data.source, .dir and .cache_dir say; the splits (no labels)
  and a description.

  'folder' reads the JPEGs in dir (img_align_celeba/ or the folder holding it; see
  load_celeba_folder), cached in cache_dir; 'tfds' loads celeb_a via TFDS, downloading if
  needed; 'auto' uses TFDS if celeb_a is prepared under dir (or the TFDS default), else the
  folder, and never downloads.
  """
  pixels, description = _images(
      data_config.source, data_config.dir or None, data_config.get('cache_dir') or None
  )
  return {split: (images, None) for split, images in pixels.items()}, description


# train_size: the official train split (the 0s of list_eval_partition.txt); a folder without
# that file trains on 90% of its images instead (182,339 of 202,599).
DATASET = Dataset(
    name='celeba',
    title='CelebA',
    load=load,
    image_shape=(CELEBA_SIZE, CELEBA_SIZE, 3),
    pixel_range=(-1.0, 1.0),
    train_size=162_770,
    sources=('auto', 'tfds', 'folder'),
)
