"""A data set added from outside the package with one `register` call: docs/data_and_models.md's
code, run as written, trains; each data set's record decides its loading, checks and FID."""

import re

import ml_collections
import numpy as np
import pytest

from tests.helpers import REPO
from tests.helpers import tiny_config
from wae_jax import config as wae_config
from wae_jax import data
from wae_jax import errors
from wae_jax import input_pipeline
from wae_jax import visualize
from wae_jax.evaluation import evaluators
from wae_jax.evaluation import fid
from wae_jax.evaluation import metrics


def _docs_code() -> str:
  """The python block of the page's 'Your own data set' section."""
  page = (REPO / 'docs' / 'data_and_models.md').read_text()
  section = page.split('## Your own data set', 1)[1]
  return re.search(r'```python\n(.*?)```', section, re.S).group(1)


@pytest.fixture(scope='module')
def noise():
  """The page's data set, registered once per process as the page's code does it."""
  namespace = {}
  if 'noise16' not in data.names():
    exec(_docs_code(), namespace)  # pylint: disable=exec-used
  return data.get('noise16')


def _noise_config(noise):
  config = tiny_config()
  config.data.update(noise.config_fields())
  config.data.dir = None
  # Two stride-2 convolutions each way, not four: half the compile time.
  config.model.encoder_widths, config.model.decoder_widths = (128, 256), (256, 128)
  config.train.num_steps = 3
  config.train.log_every = config.train.checkpoint_every = config.train.image_every = 3
  return config


def test_the_docs_data_set_trains_from_a_config_naming_it(noise, tmp_path):
  from wae_jax import train  # pylint: disable=g-import-not-at-top

  config = _noise_config(noise)
  assert (config.data.name, tuple(config.data.image_shape)) == ('noise16', (16, 16, 1))
  loaded = input_pipeline.load_dataset(config.data)
  assert loaded.source == 'random pixels' and loaded.train_labels is None
  assert loaded.train_images.shape == (64, 16, 16, 1) and len(loaded.test_images) == 16
  state = train.train_and_evaluate(config, str(tmp_path / 'work'))
  assert int(state.step) == 3
  assert (tmp_path / 'work' / 'checkpoints' / '3').is_dir()
  # Scored by Inception's features only; MNIST by its classifier's first.
  assert evaluators.fid_extractors(config) == [fid.INCEPTION]
  assert evaluators.fid_extractors(tiny_config()) == [fid.MNIST_CLASSIFIER, fid.INCEPTION]


def test_the_records_describe_the_built_in_data_sets(monkeypatch):
  mnist, celeba = data.get('mnist'), data.get('celeba')
  assert (mnist.image_shape, mnist.train_size, mnist.fid_extractor) == (
      (28, 28, 1),
      60_000,
      fid.MNIST_CLASSIFIER,
  )
  assert (celeba.image_shape, celeba.pixel_range, celeba.train_size, celeba.fid_extractor) == (
      (64, 64, 3),
      (-1.0, 1.0),
      162_770,
      None,
  )
  with pytest.raises(ValueError, match="'mnist' is already registered"):
    data.register(mnist)
  with pytest.raises(ValueError, match=r'image_shape must be 3 ints.*train_size must be'):
    data.Dataset(
        name='bad', title='Bad', load=len, image_shape=(16, 16), pixel_range=(0, 1), train_size=0
    )
  monkeypatch.delitem(fid.EXTRACTORS, fid.MNIST_CLASSIFIER)  # as if the record misnamed it
  with pytest.raises(
      errors.ConfigError,
      match="data set 'mnist' is scored by fid_extractor="
      "'mnist_classifier', which is not a feature extractor; allowed: 'inception'",
  ):
    evaluators.fid_extractors(tiny_config())


def _config(name, **fields):
  return ml_collections.ConfigDict(
      dict(name=name, source='auto', dir=None, pixel_range=(0.0, 1.0), **fields)
  )


# What the 'handmade8' data set's loader returns: each test below puts its splits here.
_HANDMADE = {}


@pytest.fixture(scope='module')
def handmade():
  if 'handmade8' not in data.names():
    data.register(
        data.Dataset(
            name='handmade8',
            title='Handmade',
            image_shape=(8, 8, 1),
            load=lambda config: (_HANDMADE['splits'], 'memory'),
            pixel_range=(0, 1),
            train_size=4,
        )
    )
  return _config('handmade8')


@pytest.mark.parametrize(
    'splits,message',
    [
        (
            {'train': (np.zeros((4, 8, 8, 1), np.uint8), None)},
            r"the loader gave no 'test' split \(it gave \['train'\]\)",
        ),
        (
            {
                'train': (np.zeros((4, 8, 8, 3), np.uint8), None),
                'test': (np.zeros((4, 8, 8, 1), np.uint8), None),
            },
            r'train images are uint8 \[4, 8, 8, 3\]; expected uint8 \[N, 8, 8, 1\]',
        ),
        (
            {
                'train': (np.zeros((4, 8, 8, 1), np.float32), None),
                'test': (np.zeros((4, 8, 8, 1), np.uint8), None),
            },
            'train images are float32',
        ),
        (
            {
                'train': (np.zeros((4, 8, 8, 1), np.uint8), np.zeros(3, np.int32)),
                'test': (np.zeros((4, 8, 8, 1), np.uint8), None),
            },
            '4 train images but 3 labels',
        ),
    ],
)
def test_what_a_loader_gives_is_checked_against_its_record(handmade, splits, message, monkeypatch):
  monkeypatch.setitem(_HANDMADE, 'splits', splits)
  with pytest.raises(data.DataError, match=f'^Handmade from memory: {message}'):
    input_pipeline.load_dataset(handmade)
  monkeypatch.setitem(
      _HANDMADE,
      'splits',
      {split: (np.zeros((4, 8, 8, 1), np.uint8), None) for split in ('train', 'test')},
  )
  assert input_pipeline.load_dataset(handmade).test_images.shape == (4, 8, 8, 1)


def test_an_image_shape_other_than_the_records_is_refused():
  with pytest.raises(data.DataError) as err:
    input_pipeline.load_dataset(_config('celeba', image_shape=(28, 28, 1)))
  assert str(err.value) == (
      "config.data.image_shape=(28, 28, 1) does not match CelebA (config.data.name='celeba'), "
      'whose images are (64, 64, 3); set config.data.image_shape=(64, 64, 3)'
  )


def test_an_unknown_name_lists_the_registered_ones():
  with pytest.raises(
      data.DataError,
      match=r"config.data.name='cifar' is not " r"supported; allowed: 'mnist', 'celeba'",
  ):
    input_pipeline.load_dataset(_config('cifar'))


def test_one_pixel_range_check_for_records_configs_pictures_and_sharpness():
  assert data.pixel_bounds([0, 1]) == (0.0, 1.0) and data.pixel_bounds((-1.0, 1.0)) == (-1, 1)
  for bad in ((1.0, 0.0), (0.5, 0.5), (0.0,), (0.0, 1.0, 2.0), ('a', 'b'), None):
    assert not data.is_pixel_range(bad)
    with pytest.raises(ValueError, match=re.escape(f'{data.PIXEL_RANGE_RULE}, got {bad!r}')):
      data.pixel_bounds(bad)
    with pytest.raises(ValueError, match=re.escape(data.PIXEL_RANGE_RULE)):
      visualize.to_unit_range(np.zeros((1, 3, 3, 1)), bad)
    with pytest.raises(ValueError, match=re.escape(data.PIXEL_RANGE_RULE)):
      metrics.sharpness(np.zeros((1, 3, 3, 1)), bad)
  with pytest.raises(ValueError, match=re.escape(data.PIXEL_RANGE_RULE)):
    data.Dataset(
        name='bad', title='Bad', load=len, image_shape=(4, 4, 1), pixel_range=(1, 0), train_size=1
    )
  config = tiny_config()
  config.data.pixel_range = (1.0, 0.0)
  with pytest.raises(errors.ConfigError, match=r'^config.data.pixel_range=\(1.0, 0.0\) is invalid'):
    wae_config.validate(config)
