"""CelebA loading: synthetic folders of 178x218 JPEGs, the cache, faults, mocked TFDS."""

import contextlib
import logging
from pathlib import Path

import ml_collections
import numpy as np
from PIL import Image
import pytest

from tests.helpers import load_config
from wae_jax import config as wae_config
from wae_jax import data
from wae_jax import input_pipeline as ip
from wae_jax.data import celeba
from wae_jax.data import tfds_source

NUM = 30
WIDTH, HEIGHT = 178, 218


def colour(i):
  """A distinct, JPEG-safe colour for image i (1-based)."""
  return (8 * i, 255 - 8 * i, (37 * i) % 200 + 28)


def name(i):
  return f'{i:06d}.jpg'


def write_faces(folder: Path, num=NUM) -> Path:
  """num solid-colour 178x218 JPEGs named like CelebA's, plus two non-image files."""
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(1, num + 1):
    Image.new('RGB', (WIDTH, HEIGHT), colour(i)).save(folder / name(i), quality=95)
  (folder / 'README').write_text('not an image')
  (folder / 'notes.txt').write_text('not an image either')
  return folder


def write_partition(path: Path, splits) -> None:
  path.write_text(''.join(f'{name(i)} {s}\n' for i, s in enumerate(splits, 1)))


def data_config(directory, tmp_path, source='folder'):
  return ml_collections.ConfigDict(
      dict(
          name='celeba',
          source=source,
          dir=str(directory),
          pixel_range=(-1.0, 1.0),
          cache_dir=str(tmp_path / 'cache'),
      )
  )


def colours_of(images):
  """The mean colour of each [-1, 1] image, as 0..255 ints."""
  return np.round((np.asarray(images).mean(axis=(1, 2)) + 1) * 127.5).astype(int)


def assert_images_are(images, indices):
  expected = np.array([colour(i) for i in indices])
  np.testing.assert_allclose(colours_of(images), expected, atol=3)


@pytest.fixture
def faces(tmp_path):
  return write_faces(tmp_path / 'img_align_celeba')


@pytest.fixture(autouse=True)
def _no_env_cache(monkeypatch):
  monkeypatch.delenv(data.CACHE_ENV, raising=False)


def warnings_about(caplog, needle):
  return [
      r.getMessage()
      for r in caplog.records
      if r.levelno == logging.WARNING and needle in r.getMessage()
  ]


# ------------------------------------------------------------- folder loading


def test_folder_shapes_range_and_sorted_name_split(faces, tmp_path, caplog):
  with caplog.at_level(logging.INFO):
    data = ip.load_dataset(data_config(faces, tmp_path))
  assert data.train_images.shape == (27, 64, 64, 3)
  assert data.test_images.shape == (3, 64, 64, 3)
  assert data.train_labels is None and data.test_labels is None
  batch = data.train_images[np.array([4, 0, 2])]
  assert batch.dtype == np.float32 and batch.shape == (3, 64, 64, 3)
  assert -1.0 <= batch.min() and batch.max() <= 1.0
  # Without a partition file the last 10% by sorted name are the test set.
  assert_images_are(data.train_images[:], range(1, 28))
  assert_images_are(data.test_images[:], range(28, 31))
  assert len(warnings_about(caplog, 'by sorted file name are the test set')) == 1
  # README and notes.txt are not images: ignored without a word.
  assert not warnings_about(caplog, 'README') and not warnings_about(caplog, 'notes')
  assert str(faces) in data.source


def test_centre_crop_then_lanczos(tmp_path):
  folder = tmp_path / 'faces'
  folder.mkdir()
  # Centre 140x140 (left 19, top 39) red, border blue: an off-by-one crop shows blue.
  pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
  pixels[...] = (0, 0, 255)
  pixels[39:179, 19:159] = (255, 0, 0)
  Image.fromarray(pixels).save(folder / 'a.png')
  rng = np.random.default_rng(0)
  noise = rng.integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)
  Image.fromarray(noise).save(folder / 'b.png')
  out = celeba.load_celeba_folder(folder, tmp_path / 'cache')[0]
  red = out['train'][0]
  assert out['train'].shape == (1, 64, 64, 3) and out['train'].dtype == np.uint8
  assert np.all(red == (255, 0, 0)), np.unique(red.reshape(-1, 3), axis=0)
  expected = Image.fromarray(noise).crop((19, 39, 159, 179)).resize((64, 64), Image.LANCZOS)
  np.testing.assert_array_equal(out['test'][0], np.asarray(expected))


def test_partition_file_beside_the_folder(faces, tmp_path):
  write_partition(faces.parent / celeba.CELEBA_PARTITION, [0] * 20 + [1] * 4 + [2] * 6)
  for directory in (faces.parent, faces):  # data.dir: the parent or the folder itself
    data = ip.load_dataset(data_config(directory, tmp_path))
    assert len(data.train_images) == 20 and len(data.test_images) == 6
    assert_images_are(data.train_images[:], range(1, 21))
    assert_images_are(data.test_images[:], range(25, 31))


@pytest.mark.parametrize(
    'line,message',
    [
        ('000003.jpg', r'list_eval_partition.txt:3: malformed line'),
        ('000003.jpg 7', r'list_eval_partition.txt:3: malformed line'),
        ('000099.jpg 0', r'list_eval_partition.txt:3: lists 000099.jpg'),
    ],
)
def test_bad_partition_file(faces, tmp_path, line, message):
  lines = [f'{name(i)} 0' for i in range(1, NUM + 1)]
  lines[2] = line
  (faces / celeba.CELEBA_PARTITION).write_text('\n'.join(lines) + '\n')
  with pytest.raises(data.DataError, match=message) as err:
    ip.load_dataset(data_config(faces, tmp_path))
  assert str(faces / celeba.CELEBA_PARTITION) in str(err.value)


# ---------------------------------------------------------------------- cache


def test_cache_is_reused_and_keyed_on_the_files(faces, tmp_path, monkeypatch):
  first = ip.load_dataset(data_config(faces, tmp_path))
  cached = sorted(p.name for p in (tmp_path / 'cache').iterdir())
  assert len(cached) == 2 and cached[0].startswith('celeba64_')
  assert cached[0].endswith('_test.npy') and cached[1].endswith('_train.npy')

  def no_decoding(path):
    raise AssertionError(f'decoded {path} although it is cached')

  monkeypatch.setattr(celeba, '_decode_face', no_decoding)
  second = ip.load_dataset(data_config(faces, tmp_path))
  assert isinstance(second.train_images.pixels, np.memmap)
  np.testing.assert_array_equal(second.train_images[:], first.train_images[:])
  np.testing.assert_array_equal(second.test_images[:], first.test_images[:])

  # A changed image changes the key: decoded again.
  Image.new('RGB', (WIDTH, HEIGHT), (1, 2, 3)).save(faces / name(5))
  with pytest.raises(AssertionError, match='although it is cached'):
    ip.load_dataset(data_config(faces, tmp_path))


def test_cache_write_is_atomic(faces, tmp_path, monkeypatch):
  def killed(path, array):
    Path(path).write_bytes(b'half an array')
    raise KeyboardInterrupt

  monkeypatch.setattr(np, 'save', killed)
  with pytest.raises(KeyboardInterrupt):
    ip.load_dataset(data_config(faces, tmp_path))
  assert list((tmp_path / 'cache').iterdir()) == []


# --------------------------------------------------------------------- faults


def test_undecodable_files_are_skipped_with_one_warning(faces, tmp_path, monkeypatch, caplog):
  monkeypatch.setattr(celeba, 'MAX_SKIPPED_FRACTION', 0.1)
  (faces / name(2)).write_bytes(np.random.default_rng(0).bytes(5000))
  jpeg = (faces / name(4)).read_bytes()
  (faces / name(4)).write_bytes(jpeg[: len(jpeg) // 2])
  with caplog.at_level(logging.WARNING):
    data = ip.load_dataset(data_config(faces, tmp_path))
  assert len(data.train_images) + len(data.test_images) == NUM - 2
  warnings = warnings_about(caplog, 'do not decode')
  assert len(warnings) == 1
  assert 'skipped 2 image files' in warnings[0]
  assert name(2) in warnings[0] and name(4) in warnings[0]
  assert_images_are(data.train_images[:3], [1, 3, 5])


def test_wrong_sizes_are_skipped_with_a_warning(faces, tmp_path, monkeypatch, caplog):
  monkeypatch.setattr(celeba, 'MAX_SKIPPED_FRACTION', 0.1)
  Image.new('RGB', (200, 200), colour(3)).save(faces / name(3))
  Image.new('RGB', (100, 120), colour(7)).save(faces / name(7))
  with caplog.at_level(logging.WARNING):
    data = ip.load_dataset(data_config(faces, tmp_path))
  assert len(data.train_images) == 25
  warnings = warnings_about(caplog, 'whose size')
  assert len(warnings) == 1
  for needle in (
      'skipped 2 images',
      '178x218',
      f'{name(3)} (200x200)',
      f'{name(7)} (100x120)',
      '140x140',
  ):
    assert needle in warnings[0]


def test_too_many_bad_images_is_an_error(faces, tmp_path):
  # One of 30 is 3%, above the 1% tolerated by default.
  (faces / name(9)).write_bytes(b'not a jpeg')
  with pytest.raises(data.DataError) as err:
    ip.load_dataset(data_config(faces, tmp_path))
  for needle in (str(faces), '1 of 30 images are unusable', name(9), '1%'):
    assert needle in str(err.value)
  assert not (tmp_path / 'cache').exists()


def test_all_bad_or_no_images_is_an_error(tmp_path, monkeypatch):
  monkeypatch.setattr(celeba, 'MAX_SKIPPED_FRACTION', 1.0)
  folder = tmp_path / 'bad'
  folder.mkdir()
  (folder / 'x.jpg').write_bytes(b'junk')
  with pytest.raises(data.DataError, match='1 of 1 images are unusable'):
    ip.load_dataset(data_config(folder, tmp_path))
  (folder / 'x.jpg').unlink()
  (folder / 'README').write_text('no images here')
  with pytest.raises(data.DataError, match='no images') as err:
    ip.load_dataset(data_config(folder, tmp_path))
  assert str(folder) in str(err.value)


# ----------------------------------------------------------- sources, config


def test_auto_uses_the_folder_or_explains_both(faces, tmp_path):
  loaded = ip.load_dataset(data_config(faces.parent, tmp_path, source='auto'))
  assert len(loaded.train_images) == 27
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(data.DataError) as err:
    ip.load_dataset(data_config(empty, tmp_path, source='auto'))
  for needle in ('TFDS celeb_a', celeba.CELEBA_FOLDER, 'config.data.dir', str(empty)):
    assert needle in str(err.value)


def test_tfds_mock_data_goes_through_the_same_preprocessing(tmp_path, monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  shapes, original = [], celeba.preprocess_face

  def recording(image):
    shapes.append(image.size)
    return original(image)

  monkeypatch.setattr(celeba, 'preprocess_face', recording)
  with tfds.testing.mock_data(num_examples=5):
    data = ip.load_dataset(data_config(tmp_path, tmp_path, source='tfds'))
    monkeypatch.setattr(tfds_source, 'prepared', lambda data_dir, name: True)
    auto = ip.load_dataset(data_config(tmp_path, tmp_path, source='auto'))
  assert data.source == f'tfds celeb_a (data_dir={tmp_path})' == auto.source
  assert shapes == [(WIDTH, HEIGHT)] * 20
  for images in (data.train_images, data.test_images):
    assert images.shape == (5, 64, 64, 3)
    assert images[:].dtype == np.float32
    assert -1.0 <= images.min() < images.max() <= 1.0


@pytest.mark.parametrize(
    'dataset,source,allowed',
    [
        ('celeba', 'idx', "'auto', 'tfds', 'folder'"),
        ('mnist', 'folder', "'auto', 'tfds', 'idx'"),
    ],
)
def test_source_must_fit_the_dataset(dataset, source, allowed, tmp_path):
  config = load_config(dataset, 'wae_mmd')
  config.data.source = source
  for check in (wae_config.validate, lambda c: ip.load_dataset(c.data)):
    with pytest.raises(ValueError) as err:
      check(config)
    message = str(err.value)
    assert f'config.data.source={source!r}' in message
    assert f'config.data.name={dataset!r}' in message
    assert f'allowed: {allowed}' in message
  assert data.names()[:2] == ('mnist', 'celeba')  # the registry's; later ones are registered


def test_images_index_like_a_float_array():
  pixels = np.random.default_rng(0).integers(0, 256, (6, 2, 2, 3), np.uint8)
  pixels[0, 0, 0, 0], pixels[1, 0, 0, 0] = 0, 255
  images = ip.Images(pixels, (-1.0, 1.0))
  dense = ip._to_float(pixels, -1.0, 1.0)
  assert len(images) == 6 and images.shape == (6, 2, 2, 3) and images.dtype == np.float32
  for index in (np.array([5, 0, 3]), slice(1, 4), 2):
    np.testing.assert_array_equal(images[index], dense[index])
  np.testing.assert_array_equal(np.asarray(images), dense)
  assert np.asarray(images, np.float64).dtype == np.float64
  assert (images.min(), images.max()) == (-1.0, 1.0)
  batch = next(ip.train_batches(images, 4, seed=0))
  np.testing.assert_array_equal(batch, dense[np.random.default_rng([0, 0]).permutation(6)[:4]])


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize('source', ['folder', 'tfds'])
def test_train_and_evaluate_on_a_folder_or_tfds(source, faces, tmp_path):
  from wae_jax import train  # pylint: disable=g-import-not-at-top

  write_partition(faces.parent / celeba.CELEBA_PARTITION, [0] * 24 + [2] * 6)
  config = load_config('celeba', 'wae_mmd')
  config.data.source = source
  config.data.dir = str(faces.parent)
  config.data.cache_dir = str(tmp_path / 'cache')
  config.model.width = 1 / 32
  config.train.batch_size = 4
  config.train.num_steps = 2
  config.train.pretrain_steps = 0
  config.train.log_every = config.train.checkpoint_every = config.train.image_every = 2
  workdir = tmp_path / 'work'
  data = contextlib.nullcontext()
  if source == 'tfds':  # TFDS celeb_a, mocked: random 218x178 images through the same path.
    data = pytest.importorskip('tensorflow_datasets').testing.mock_data(num_examples=8)
  with data:
    state = train.train_and_evaluate(config, str(workdir))
  assert int(state.step) == 2
  assert (workdir / 'checkpoints' / '2').is_dir()
  assert sorted(p.name for p in (workdir / 'images').iterdir()) == [
      'interpolations_0000002.png',
      'reconstructions_0000002.png',
      'samples_0000002.png',
  ]
