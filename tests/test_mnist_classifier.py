"""Tests for wae_jax.evaluation.mnist_classifier: shapes, the shipped weights and their hash,
the parameter cache of other seeds, deterministic training.

The full >= 99% training takes minutes and is not run here; the shipped weights are checked
on the real test images, and a small real-MNIST subset checks that training learns and is
bitwise reproducible.
"""

import dataclasses
import hashlib
import shutil
import types

import flax.linen as nn
import jax
import numpy as np
import pytest

from wae_jax import data as datasets
from wae_jax import errors
from wae_jax import input_pipeline
from wae_jax.evaluation import mnist_classifier


def _assert_same_params(a, b):
  flat_a = jax.tree_util.tree_leaves_with_path(a)
  flat_b = jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  for (path, x), (_, y) in zip(flat_a, flat_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


@pytest.fixture(scope='module')
def params():
  return mnist_classifier.init_params(seed=0)


@pytest.fixture(scope='module')
def mnist(mnist_dir):
  return input_pipeline.load_dataset(mnist_classifier.mnist_config(str(mnist_dir)))


def test_shapes(params):
  images = np.random.default_rng(0).uniform(size=(7, 28, 28, 1)).astype(np.float32)
  assert mnist_classifier.logits(params, images).shape == (7, 10)
  feats = mnist_classifier.features(params, images, batch_size=3)  # Padded last batch.
  assert feats.shape == (7, 128) and feats.dtype == np.float32
  np.testing.assert_allclose(feats, mnist_classifier.features(params, images), rtol=1e-5, atol=1e-6)
  assert np.all(feats >= 0)  # Post-ReLU activations.
  acc = mnist_classifier.accuracy(params, images, np.zeros(7, np.int32), batch_size=4)
  assert 0.0 <= acc <= 1.0
  with pytest.raises(ValueError, match='shape'):
    mnist_classifier.features(params, images[..., 0])


def test_cnn_matches_flax_conv_and_max_pool(params):
  """The CPU-fast layers compute the plain Flax network with the same parameters."""

  class Reference(nn.Module):

    @nn.compact
    def __call__(self, x):
      for i, channels in enumerate((32, 64)):
        x = nn.relu(nn.Conv(channels, (3, 3), name=f'conv{i}')(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      x = nn.relu(nn.Dense(128, name='features')(x.reshape((x.shape[0], -1))))
      return nn.Dense(10, name='logits')(x)

  images = np.random.default_rng(1).uniform(size=(5, 28, 28, 1)).astype(np.float32)
  expected = Reference().apply({'params': params}, images)
  np.testing.assert_allclose(
      mnist_classifier.logits(params, images), expected, rtol=1e-4, atol=1e-5
  )


def test_save_load_round_trip(tmp_path, params):
  path = tmp_path / 'sub' / 'clf.msgpack'
  mnist_classifier.save_params(path, params)
  assert list(path.parent.iterdir()) == [path]  # No temporary file left behind.
  _assert_same_params(mnist_classifier.load_params(path), params)


def test_load_rejects_other_architectures(tmp_path):
  path = tmp_path / 'other.msgpack'
  mnist_classifier.save_params(path, {'dense': {'kernel': np.zeros((3, 4), np.float32)}})
  with pytest.raises(ValueError, match='do not fit'):
    mnist_classifier.load_params(path)


def test_load_or_train_uses_cache(tmp_path, monkeypatch, params):
  calls = []

  def fake_train(data, seed=0, **kwargs):
    calls.append((data, seed))
    return params

  monkeypatch.setattr(mnist_classifier, 'train_classifier', fake_train)
  first = mnist_classifier.load_or_train(tmp_path, data='DATA', seed=3)
  assert calls == [('DATA', 3)]
  assert (tmp_path / 'mnist_classifier_seed3.msgpack').is_file()

  def no_training(*args, **kwargs):
    raise AssertionError('load_or_train retrained despite a cached classifier')

  monkeypatch.setattr(mnist_classifier, 'train_classifier', no_training)
  _assert_same_params(mnist_classifier.load_or_train(tmp_path, data=None, seed=3), first)


def test_default_cache_dir(monkeypatch, tmp_path):
  monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path))
  assert mnist_classifier.cache_path(None, seed=5) == tmp_path / 'mnist_classifier_seed5.msgpack'
  monkeypatch.delenv(datasets.CACHE_ENV)
  assert str(datasets.default_cache_dir()).endswith('.cache/wae_jax')


def test_train_rejects_other_pixel_ranges(mnist):
  data = dataclasses.replace(
      mnist, train_images=2.0 * mnist.train_images[:64] - 1.0, train_labels=mnist.train_labels[:64]
  )
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    mnist_classifier.train_classifier(data, num_epochs=1, batch_size=32)


def test_training_on_a_subset_is_deterministic_and_learns(mnist, fully_optimized):
  # fully_optimized: its 500 steps take 13 s of CPU under XLA's default optimisations, 19 s
  # under the session's fast compiles.
  small = dataclasses.replace(
      mnist,
      train_images=mnist.train_images[:2000],
      train_labels=mnist.train_labels[:2000],
      test_images=mnist.test_images[:500],
      test_labels=mnist.test_labels[:500],
  )
  train = lambda: mnist_classifier.train_classifier(small, seed=1, num_epochs=2, batch_size=16)
  first, second = train(), train()  # 250 steps each.
  _assert_same_params(first, second)
  held_out = mnist.test_images[5000:7000], mnist.test_labels[5000:7000]
  assert mnist_classifier.accuracy(first, *held_out) > 0.9
  assert mnist_classifier.features(first, held_out[0][:10]).shape == (10, 128)


# ----------------------------------------------------------------------------- shipped weights


def test_shipped_file_is_the_one_its_hash_names():
  path = mnist_classifier.SHIPPED_PATH
  assert path.name == 'mnist_classifier_seed0.msgpack' and mnist_classifier.SHIPPED_SEED == 0
  assert hashlib.sha256(path.read_bytes()).hexdigest() == mnist_classifier.SHIPPED_SHA256
  # The hash of the loaded parameters, as labels carry it, is the file's.
  params = mnist_classifier.load_shipped()
  assert mnist_classifier.weights_sha256(params) == mnist_classifier.SHIPPED_SHA256
  assert mnist_classifier.features_label(mnist_classifier.SHIPPED_SHA256) == (
      f'{mnist_classifier.FEATURES}, weights sha256 {mnist_classifier.SHIPPED_SHA256[:12]}'
  )


def test_shipped_weights_classify_the_mnist_test_images(mnist):
  """0.9919 on the 10,000 test images when they were trained (the CLI's 'test accuracy');
  another CPU's order of floating-point operations may flip an image or two."""
  params = mnist_classifier.load_shipped()
  assert mnist_classifier.accuracy(params, mnist.test_images, mnist.test_labels) == (
      pytest.approx(0.9919, abs=0.001)
  )


@pytest.mark.parametrize('damage', ['corrupted', 'missing'])
def test_damaged_shipped_weights_are_refused_in_one_line(tmp_path, damage):
  path = tmp_path / 'mnist_classifier_seed0.msgpack'
  if damage == 'corrupted':
    data = bytearray(mnist_classifier.SHIPPED_PATH.read_bytes())
    data[len(data) // 2] ^= 1  # one bit of one weight
    path.write_bytes(bytes(data))
  with pytest.raises(mnist_classifier.WeightsError) as caught:
    mnist_classifier.load_shipped(path)
  assert isinstance(caught.value, errors.WaeError)
  message = str(caught.value)
  assert '\n' not in message and str(path) in message
  assert 'git checkout -- wae_jax/evaluation/weights/mnist_classifier_seed0.msgpack' in message
  if damage == 'corrupted':
    assert mnist_classifier.SHIPPED_SHA256[:12] in message and 'SHIPPED_SHA256' in message


def test_the_shipped_seed_loads_the_shipped_weights_and_trains_nothing(tmp_path, monkeypatch):
  def no_training(*args, **kwargs):
    raise AssertionError('load_or_train trained a classifier for the shipped seed')

  monkeypatch.setattr(mnist_classifier, 'train_classifier', no_training)
  # A classifier this machine trained and cached before the weights shipped is not used.
  mnist_classifier.save_params(
      mnist_classifier.cache_path(tmp_path, 0), mnist_classifier.init_params(0)
  )
  params = mnist_classifier.load_or_train(tmp_path, data=None, seed=0)
  _assert_same_params(params, mnist_classifier.load_shipped())


def test_cli_says_how_to_ship_retrained_weights(tmp_path, monkeypatch, capsys, mnist):
  """The CLI trains (here: finds in its cache) the seed's weights, prints their hash and, for
  seed 0, whether they are the shipped ones and how to ship them."""
  small = dataclasses.replace(
      mnist, test_images=mnist.test_images[:100], test_labels=mnist.test_labels[:100]
  )
  monkeypatch.setattr(input_pipeline, 'load_dataset', lambda config: small)
  cfg = types.SimpleNamespace(data_dir='unused', cache_dir=str(tmp_path), seed=0)
  monkeypatch.setattr(mnist_classifier, 'flags', types.SimpleNamespace(FLAGS=cfg))
  cached = mnist_classifier.cache_path(tmp_path, 0)
  mnist_classifier.save_params(cached, mnist_classifier.init_params(0))  # other weights
  mnist_classifier.main(['mnist_classifier'])
  out = capsys.readouterr().out
  digest = mnist_classifier.weights_sha256(mnist_classifier.init_params(0))
  assert f'sha256: {digest}' in out and f'cache: {cached}' in out
  assert (
      f'To ship these instead: cp {cached} '
      'wae_jax/evaluation/weights/mnist_classifier_seed0.msgpack and set SHIPPED_SHA256 in '
      f"wae_jax/evaluation/mnist_classifier.py to '{digest}'"
  ) in out
  shutil.copyfile(mnist_classifier.SHIPPED_PATH, cached)  # what training on that machine gave
  mnist_classifier.main(['mnist_classifier'])
  out = capsys.readouterr().out
  assert f'sha256: {mnist_classifier.SHIPPED_SHA256}' in out
  assert 'These are the shipped weights' in out
