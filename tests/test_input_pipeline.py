"""Tests for wae_jax.input_pipeline (real MNIST IDX files, fake files, mocked TFDS)."""

import gzip
import logging
import os
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from wae_jax import data
from wae_jax import input_pipeline as ip
from wae_jax.data import mnist
from wae_jax.data import tfds_source

REAL_MNIST_DIR = Path(
    os.environ.get(mnist.MNIST_DIR_ENV)
    or Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'mnist'
)


def data_config(**overrides):
  fields = dict(name='mnist', source='auto', dir='', pixel_range=(0.0, 1.0))
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def idx_bytes(array, magic_type=0x08):
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, magic_type, array.ndim]) + b''.join(
      d.to_bytes(4, 'big') for d in array.shape
  )
  return header + array.tobytes()


def write_fake_mnist(folder, num_train=20, num_test=10, gz=True):
  """Writes a small, valid MNIST-format data set; returns the folder."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  for split, n in (('train', num_train), ('test', num_test)):
    images_name, labels_name = mnist.MNIST_FILES[split]
    for name, array in (
        (images_name, rng.integers(0, 256, (n, 28, 28))),
        (labels_name, rng.integers(0, 10, n)),
    ):
      data = idx_bytes(array)
      if gz:
        (folder / name).write_bytes(gzip.compress(data))
      else:
        (folder / name[: -len('.gz')]).write_bytes(data)
  return folder


@pytest.fixture(autouse=True)
def _no_env_dir(monkeypatch):
  monkeypatch.delenv(mnist.MNIST_DIR_ENV, raising=False)


@pytest.fixture(scope='module')
def real_mnist():
  return mnist.load_mnist_idx(REAL_MNIST_DIR)


@pytest.fixture(scope='module')
def real_data():
  # REAL_MNIST_DIR was read before _no_env_dir clears the env var.
  return ip.load_dataset(
      data_config(source='idx', dir=str(REAL_MNIST_DIR), pixel_range=(-1.0, 1.0))
  )


# ---------------------------------------------------------------- real MNIST


def test_real_mnist_idx(real_mnist):
  for split, count in (('train', 60000), ('test', 10000)):
    images, labels = real_mnist[split]
    assert images.shape == (count, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (count,) and labels.dtype == np.int32
    assert images.max() == 255 and images.min() == 0
    assert set(np.unique(labels)) == set(range(10))


def test_real_mnist_load_dataset(real_mnist, real_data):
  assert real_data.source == f'IDX files in {REAL_MNIST_DIR}'
  assert real_data.train_images.shape == (60000, 28, 28, 1)
  assert real_data.test_images.shape == (10000, 28, 28, 1)
  for images in (real_data.train_images, real_data.test_images):
    assert images.dtype == np.float32
    assert images.min() == -1.0 and images.max() == 1.0
  for labels in (real_data.train_labels, real_data.test_labels):
    assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() <= 9
  np.testing.assert_array_equal(real_data.train_labels, real_mnist['train'][1])
  # (0, 1) is the same linear map, checked on a slice to stay fast.
  u8 = real_mnist['test'][0][:500]
  expected = (real_data.test_images[:500] + 1.0) / 2.0
  np.testing.assert_allclose(ip._to_float(u8, 0.0, 1.0), expected, atol=1e-6)
  np.testing.assert_allclose(ip._to_float(u8, 0.0, 1.0), u8 / 255.0, atol=1e-6)


@pytest.mark.parametrize('lo,hi', [(0.0, 1.0), (-1.0, 1.0)])
def test_pixel_range_endpoints(lo, hi):
  out = ip._to_float(np.arange(256, dtype=np.uint8), lo, hi)
  assert out.dtype == np.float32
  assert out[0] == lo and out[-1] == hi and np.all(np.diff(out) > 0)


# ------------------------------------------------------------------ read_idx


def test_read_idx_gz_and_raw(tmp_path):
  array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  (tmp_path / 'a.idx').write_bytes(idx_bytes(array))
  (tmp_path / 'a.idx.gz').write_bytes(gzip.compress(idx_bytes(array)))
  # gzip detected by its magic bytes even without the .gz suffix.
  (tmp_path / 'b.idx').write_bytes(gzip.compress(idx_bytes(array)))
  for name in ('a.idx', 'a.idx.gz', 'b.idx'):
    out = mnist.read_idx(tmp_path / name)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)
  labels = np.array([3, 1, 4], np.uint8)
  (tmp_path / 'l.idx').write_bytes(idx_bytes(labels))
  np.testing.assert_array_equal(mnist.read_idx(tmp_path / 'l.idx'), labels)


@pytest.mark.parametrize(
    'mutate,message',
    [
        (lambda d: d[:-5], 'truncated IDX file'),
        (lambda d: d + b'\0', 'oversized IDX file'),
        (lambda d: b'\0\0\x0d\x03' + d[4:], 'bad IDX magic number 0x00000d03'),
        (lambda d: b'\x01\0\x08\x03' + d[4:], 'bad IDX magic number'),
        (lambda d: d[:6], 'truncated IDX header'),
    ],
)
def test_read_idx_errors(tmp_path, mutate, message):
  path = tmp_path / 'bad-idx3-ubyte'
  path.write_bytes(mutate(idx_bytes(np.zeros((2, 28, 28)))))
  with pytest.raises(data.DataError, match=message) as err:
    mnist.read_idx(path)
  assert str(path) in str(err.value)


def test_read_idx_truncated_reports_sizes(tmp_path):
  path = tmp_path / 'short.gz'
  path.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 28, 28)))[:-10]))
  with pytest.raises(data.DataError, match='expects 1568 data bytes, found 1558'):
    mnist.read_idx(path)


def test_read_idx_bad_gzip(tmp_path):
  path = tmp_path / 'x.gz'
  path.write_bytes(b'not gzip at all')
  with pytest.raises(data.DataError, match='gzip') as err:
    mnist.read_idx(path)
  assert str(path) in str(err.value)


# ------------------------------------------------------------ load_mnist_idx


def test_load_mnist_idx_raw_names(tmp_path):
  out = mnist.load_mnist_idx(write_fake_mnist(tmp_path, gz=False))
  assert out['train'][0].shape == (20, 28, 28, 1)
  assert out['test'][1].shape == (10,) and out['test'][1].dtype == np.int32


def test_load_mnist_idx_missing_file(tmp_path):
  folder = write_fake_mnist(tmp_path)
  missing = folder / mnist.MNIST_FILES['test'][1]
  missing.unlink()
  with pytest.raises(data.DataError) as err:
    mnist.load_mnist_idx(folder)
  message = str(err.value)
  assert str(missing) in message
  for names in mnist.MNIST_FILES.values():
    for name in names:
      assert name in message


def test_load_mnist_idx_wrong_image_size(tmp_path):
  folder = write_fake_mnist(tmp_path)
  path = folder / mnist.MNIST_FILES['train'][0]
  path.write_bytes(gzip.compress(idx_bytes(np.zeros((20, 27, 27)))))
  with pytest.raises(data.DataError, match=r'expected images of shape \[N, 28, 28\]') as err:
    mnist.load_mnist_idx(folder)
  assert str(path) in str(err.value)


def test_load_mnist_idx_count_mismatch(tmp_path):
  folder = write_fake_mnist(tmp_path)
  path = folder / mnist.MNIST_FILES['test'][1]
  path.write_bytes(gzip.compress(idx_bytes(np.zeros(9))))
  with pytest.raises(data.DataError, match='9 labels') as err:
    mnist.load_mnist_idx(folder)
  assert str(path) in str(err.value)


# -------------------------------------------------- load_dataset resolution


def test_idx_source_from_config_dir(tmp_path, caplog):
  folder = write_fake_mnist(tmp_path / 'mnist')
  with caplog.at_level(logging.INFO):
    data = ip.load_dataset(data_config(source='idx', dir=str(folder)))
  assert data.source == f'IDX files in {folder}'
  assert data.train_images.shape == (20, 28, 28, 1)
  assert data.train_images.dtype == np.float32
  assert 0.0 <= data.train_images.min() and data.train_images.max() <= 1.0
  assert [r.getMessage() for r in caplog.records if 'MNIST from' in r.getMessage()] == [
      f'MNIST from IDX files in {folder}'
  ]


def test_idx_source_from_env(tmp_path, monkeypatch):
  folder = write_fake_mnist(tmp_path / 'mnist')
  monkeypatch.setenv(mnist.MNIST_DIR_ENV, str(folder))
  data = ip.load_dataset(data_config(source='idx', dir=None))
  assert data.source == f'IDX files in {folder}'
  assert data.test_labels.shape == (10,)


def test_idx_source_without_folder():
  with pytest.raises(data.DataError, match='config.data.dir') as err:
    ip.load_dataset(data_config(source='idx'))
  assert mnist.MNIST_DIR_ENV in str(err.value)


def test_auto_falls_back_to_idx(tmp_path, monkeypatch):
  empty_tfds_dir = tmp_path / 'tfds'
  empty_tfds_dir.mkdir()
  folder = write_fake_mnist(tmp_path / 'mnist')
  monkeypatch.setenv(mnist.MNIST_DIR_ENV, str(folder))
  data = ip.load_dataset(data_config(source='auto', dir=str(empty_tfds_dir)))
  assert data.source == f'IDX files in {folder}'


def test_auto_uses_config_dir_idx(tmp_path):
  folder = write_fake_mnist(tmp_path)
  data = ip.load_dataset(data_config(source='auto', dir=str(folder)))
  assert data.source == f'IDX files in {folder}'


def test_auto_without_any_source_explains_both(tmp_path):
  with pytest.raises(data.DataError) as err:
    ip.load_dataset(data_config(source='auto', dir=str(tmp_path)))
  message = str(err.value)
  for needle in (
      'config.data.dir',
      mnist.MNIST_DIR_ENV,
      'TFDS',
      'train-images-idx3-ubyte.gz',
      'does not download',
  ):
    assert needle in message


@pytest.mark.parametrize(
    'field,value,needle',
    [
        ('name', 'cifar10', 'config.data.name'),
        ('source', 'web', 'config.data.source'),
        ('pixel_range', (1.0, 0.0), 'config.data.pixel_range'),
    ],
)
def test_bad_config(field, value, needle):
  with pytest.raises(data.DataError, match=needle) as err:
    ip.load_dataset(data_config(**{field: value}))
  if field == 'name':
    assert "allowed: 'mnist'" in str(err.value)


# ---------------------------------------------------------------- TFDS (mocked)


def test_without_tfds_installed_auto_reads_idx_and_tfds_names_the_extra(tmp_path, monkeypatch):
  """The default install has no TFDS: 'auto' goes on to the IDX files, 'tfds' says what to
  install."""
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets', None)  # import raises ImportError
  folder = write_fake_mnist(tmp_path / 'mnist')
  assert ip.load_dataset(data_config(dir=str(folder))).source == f'IDX files in {folder}'
  with pytest.raises(data.DataError, match=r"source='tfds' needs TensorFlow Datasets.*\.\[tfds\]"):
    ip.load_dataset(data_config(source='tfds', dir=str(tmp_path)))


def test_tfds_source_with_mock_data(tmp_path, monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  with tfds.testing.mock_data(num_examples=12):
    data = ip.load_dataset(data_config(source='tfds', dir=str(tmp_path), pixel_range=(-1.0, 1.0)))
    # 'auto' prefers an already prepared TFDS data set over IDX files.
    monkeypatch.setattr(tfds_source, 'prepared', lambda data_dir, name: True)
    monkeypatch.setenv(mnist.MNIST_DIR_ENV, str(write_fake_mnist(tmp_path / 'idx')))
    auto = ip.load_dataset(data_config(source='auto', dir=str(tmp_path)))
  assert data.source == f'tfds mnist (data_dir={tmp_path})'
  assert auto.source == data.source
  for images, labels in (
      (data.train_images, data.train_labels),
      (data.test_images, data.test_labels),
  ):
    assert images.shape == (12, 28, 28, 1) and images.dtype == np.float32
    assert -1.0 <= images.min() and images.max() <= 1.0
    assert labels.shape == (12,) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() <= 9


def test_tfds_not_prepared_is_detected_without_probing_missing_folders(
    tmp_path, monkeypatch, caplog
):
  """The offline path (IDX files as data.dir) does not ask TFDS about a folder that does not
  exist: its builder warned 'Variant folder .../mnist/3.0.1 has no dataset_info.json' in every
  MNIST run. Where an mnist folder exists, TFDS decides."""
  tfds = pytest.importorskip('tensorflow_datasets')
  folder = write_fake_mnist(tmp_path / 'idx')
  with caplog.at_level(logging.INFO):
    assert ip.load_dataset(data_config(dir=str(folder))).source == f'IDX files in {folder}'
  assert not [r for r in caplog.records if 'Variant folder' in r.getMessage()]
  assert caplog.records  # the capture works: the source's INFO line is among them
  asked = []
  monkeypatch.setattr(
      tfds,
      'builder',
      lambda name, data_dir: asked.append(data_dir)
      or (type('Builder', (), {'is_prepared': lambda self: False})()),
  )
  assert not tfds_source.prepared(str(tmp_path), 'mnist') and asked == []
  (tmp_path / 'mnist').mkdir()
  assert not tfds_source.prepared(str(tmp_path), 'mnist') and asked == [str(tmp_path)]
  # A name TFDS does not know is not prepared (its real builder's DatasetNotFoundError) ...
  monkeypatch.undo()
  (tmp_path / 'no_such_tfds_set').mkdir()
  assert not tfds_source.prepared(str(tmp_path), 'no_such_tfds_set')
  # ... but a fault reading what is there is not taken for "not prepared".
  monkeypatch.setattr(tfds, 'builder', _failing_builder)
  with pytest.raises(PermissionError, match='dataset_info.json'):
    tfds_source.prepared(str(tmp_path), 'mnist')


def _failing_builder(name, data_dir):
  raise PermissionError(f'{data_dir}/{name}/3.0.1/dataset_info.json: Permission denied')


# ------------------------------------------------------------------ batching


def test_steps_per_epoch():
  assert ip.steps_per_epoch(60000, 100) == 600
  assert ip.steps_per_epoch(50, 8) == 6
  with pytest.raises(ValueError):
    ip.steps_per_epoch(50, 0)


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_train_batches_epoch_and_determinism():
  images = np.arange(50)
  batches = take(ip.train_batches(images, 8, seed=3), 6)
  assert all(b.shape == (8,) for b in batches)
  seen = np.concatenate(batches)
  assert len(np.unique(seen)) == 48  # One epoch: no repeats, remainder dropped.
  np.testing.assert_array_equal(seen, np.random.default_rng([3, 0]).permutation(50)[:48])
  again = take(ip.train_batches(images, 8, seed=3), 6)
  np.testing.assert_array_equal(np.concatenate(again), seen)
  other = take(ip.train_batches(images, 8, seed=4), 6)
  assert not np.array_equal(np.concatenate(other), seen)


def test_train_batches_rows_of_images():
  images = np.random.default_rng(0).random((10, 2, 2, 1), np.float32)
  batch = next(ip.train_batches(images, 4, seed=0))
  order = np.random.default_rng([0, 0]).permutation(10)[:4]
  assert batch.shape == (4, 2, 2, 1) and batch.dtype == np.float32
  np.testing.assert_array_equal(batch, images[order])


def test_train_batches_rows_reads_only_those_images():
  """A process's share of each global batch: the same rows, and no other image is read."""

  class Recording:

    def __init__(self, array):
      self.array, self.read = array, []

    def __len__(self):
      return len(self.array)

    def __getitem__(self, index):
      self.read.extend(np.asarray(index).tolist())
      return self.array[index]

  images = np.arange(50)
  whole = take(ip.train_batches(images, 8, seed=2), 9)
  recording = Recording(images)
  share = take(ip.train_batches(recording, 8, seed=2, rows=slice(4, 8)), 9)
  for got, want in zip(share, whole):
    np.testing.assert_array_equal(got, want[4:8])
  assert len(recording.read) == 9 * 4


@pytest.mark.parametrize('start_step', [1, 5, 6, 7, 13])
def test_train_batches_resume(start_step):
  images = np.arange(50)
  reference = take(ip.train_batches(images, 8, seed=7), start_step + 10)
  resumed = take(ip.train_batches(images, 8, seed=7, start_step=start_step), 10)
  for got, want in zip(resumed, reference[start_step:]):
    np.testing.assert_array_equal(got, want)


def test_train_batches_bad_arguments():
  with pytest.raises(data.DataError, match='larger than'):
    ip.train_batches(np.zeros(5), 8, seed=0)
  with pytest.raises(ValueError, match='start_step'):
    ip.train_batches(np.zeros(50), 8, seed=0, start_step=-1)
