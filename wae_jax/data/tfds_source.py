"""TensorFlow Datasets as a source: imported lazily, asked only what is on disk unless told to
download, read in chunks of numpy arrays."""

from typing import Iterator, Optional

from wae_jax.data.base import DataError

# Chunk size for turning a tf.data split into numpy (see chunks).
_CHUNK = 10_000


def keep_tensorflow_off_accelerators() -> None:
  """TensorFlow (TFDS, clu's writers) only feeds and logs on the host: the GPUs are JAX's."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # TF already initialised its devices.
    pass


def import_tfds():
  """Imports TFDS lazily: it pulls in TensorFlow, and the default install leaves it out."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(
        "config.data.source='tfds' needs TensorFlow Datasets, which the default "
        'install leaves out: pip install -c constraints.txt -e ".[tfds]" (or read '
        "MNIST's IDX files with config.data.dir, CelebA from a folder)"
    ) from e
  keep_tensorflow_off_accelerators()
  return tfds


def describe(name: str, data_dir: Optional[str]) -> str:
  """How logs and errors name a TFDS data set and where it is read from."""
  return f'tfds {name} (data_dir={data_dir or "default"})'


def prepared(data_dir: Optional[str], name: str) -> bool:
  """Whether TFDS `name` is already on disk under data_dir (no network use).

  TFDS is asked only where a `name` folder exists in a data_dir it reads (data_dir, else its
  defaults): its builder warns of every missing variant folder it probes ('Variant folder
  .../mnist/3.0.1 has no dataset_info.json'), which every offline run would log. A name this
  TFDS does not know is not prepared; any other failure to read what is there propagates.
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    from etils import epath  # pylint: disable=g-import-not-at-top
  except ImportError:  # Not installed: nothing prepared.
    return False
  # Only reads metadata; does not import TensorFlow itself.
  if not any(
      epath.Path(d, name).is_dir() for d in tfds.core.utils.file_utils.list_data_dirs(data_dir)
  ):
    return False
  try:
    return tfds.builder(name, data_dir=data_dir).is_prepared()
  except tfds.core.DatasetNotFoundError:
    return False


def chunks(
    name: str, split: str, data_dir: Optional[str], download: bool, chunk: int = _CHUNK
) -> Iterator[dict]:
  """Yields a TFDS split as dicts of numpy arrays, `chunk` examples at a time.

  Fixed chunks rather than batch_size=-1: when split sizes are unknown (e.g.
  mocked data) TFDS then batches by sys.maxsize, which aborts the whole
  process inside TensorFlow. Chunks also bound memory for CelebA.
  """
  tfds = import_tfds()
  try:
    ds = tfds.load(name, split=split, data_dir=data_dir, download=download)
    yield from tfds.as_numpy(ds.batch(chunk))
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(
        f'{describe(name, data_dir)}: could not load '
        f'split {split!r} (download={download}): {type(e).__name__}: {e}'
    ) from e
