"""A small CNN MNIST classifier whose penultimate layer is the FID feature extractor.

InceptionV3 features (the paper's FID) mean little on 28x28 digits and need downloaded
weights; a classifier trained here from a seed ("fid_mnist_classifier") works offline. The
same seed gives bitwise identical parameters on the same machine, but not across machines
(FIDs on differently trained weights differ by about 1), so the weights of seed 0, the
default, ship with the package (`SHIPPED_PATH`, checked against `SHIPPED_SHA256` when
loaded): an FID computed on any machine compares with the README's. Other seeds are trained
the first time and cached as msgpack. FIDs on these features are comparable only with each
other (same weights: their sha256 is in the features' label), not with published FIDs.

CLI (trains and caches a seed's classifier; seed 0 reproduces the shipped file):
  python -m wae_jax.evaluation.mnist_classifier --data_dir=/path/to/idx --cache_dir=DIR
      [--seed=0]
"""

import dataclasses
import functools
import hashlib
import pathlib
import time
from typing import Any, Dict, Optional

from absl import app
from absl import flags
from absl import logging
import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from wae_jax import data as datasets
from wae_jax import errors
from wae_jax import files
from wae_jax import input_pipeline
from wae_jax import visualize
from wae_jax.evaluation import batching
from wae_jax.models import layers

Params = Dict[str, Any]

FEATURE_DIM = 128
FEATURES = f'mnist_classifier penultimate layer ({FEATURE_DIM}-d)'  # beside every FID on them
SHORT_HASH = 12  # hex digits of the weights' sha256 in FEATURES' label and cache file names
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)
# Measured (seed 0, the shipped weights): 0.9919 test accuracy after 3 epochs, trained in 143 s
# on 2 CPU cores.
DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 128
DEFAULT_LEARNING_RATE = 2e-3


def _max_pool2(x):
  """2x2 max pooling (even sizes), as nn.max_pool but as a reshape and a max.

  On CPU its gradient is much faster than nn.max_pool's select-and-scatter.
  """
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class CNN(nn.Module):
  """conv32 -> pool -> conv64 -> pool -> dense128 (features) -> dense10 (logits).

  The 3x3 'SAME' convolutions are layers.Conv (im2col + matrix product, the same function
  and parameters as nn.Conv): with it and _max_pool2 a train step runs about 3x faster on a
  2-core CPU than with nn.Conv and nn.max_pool (measured 8 vs 2.9 steps/s at batch 128).
  """

  @nn.compact
  def __call__(self, images, features_only: bool = False):
    x = images
    for i, channels in enumerate((32, 64)):
      x = layers.Conv(channels, (3, 3), strides=(1, 1), name=f'conv{i}')(x)
      x = _max_pool2(nn.relu(x))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(FEATURE_DIM, name='features')(x))
    if features_only:
      return x
    return nn.Dense(NUM_CLASSES, name='logits')(x)


_MODEL = CNN()


def init_params(seed: int = 0) -> Params:
  return _MODEL.init(jax.random.key(seed), jnp.zeros((1,) + IMAGE_SHAPE))['params']


@jax.jit
def logits(params: Params, images) -> jnp.ndarray:
  """Class logits [N, 10] for images [N, 28, 28, 1] in [0, 1]."""
  return _MODEL.apply({'params': params}, images)


@jax.jit
def _features(params: Params, images) -> jnp.ndarray:
  return _MODEL.apply({'params': params}, images, features_only=True)


def _checked(images) -> np.ndarray:
  """images as float32 [N, 28, 28, 1], or a ValueError saying what they are instead."""
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
    raise ValueError(f'expected images of shape [N, 28, 28, 1], got {images.shape}')
  return images


def features(params: Params, images, batch_size: int = 1000) -> np.ndarray:
  """Penultimate (post-ReLU dense) activations [N, 128]: the FID features.

  Images are [N, 28, 28, 1] in [0, 1]; convert other pixel ranges first.
  """
  return batching.batched(
      functools.partial(_features, params), _checked(images), batch_size, pad=True
  )


def accuracy(params: Params, images, labels, batch_size: int = 1000) -> float:
  """Fraction of images [N, 28, 28, 1] in [0, 1] classified as their labels."""
  predictions = batching.batched(
      functools.partial(logits, params), _checked(images), batch_size, pad=True
  ).argmax(-1)
  return float(np.mean(predictions == np.asarray(labels)))


def _make_train_step(optimizer):

  @jax.jit
  def train_step(params, opt_state, images, labels):
    def loss_fn(p):
      out = _MODEL.apply({'params': p}, images)
      return optax.softmax_cross_entropy_with_integer_labels(out, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return train_step


def _check_unit_range(images: np.ndarray, what: str) -> None:
  if images.size and (images.min() < 0.0 or images.max() > 1.0):
    raise ValueError(
        f'{what}: expected pixel values in [0, 1] (pixel_range=(0.0, 1.0)), '
        f'found [{images.min():g}, {images.max():g}]'
    )


def train_classifier(
    data,
    seed: int = 0,
    num_epochs: float = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
) -> Params:
  """Trains the CNN with Adam (cosine-decayed rate) on data.train_* ([0, 1] images).

  Everything derives from `seed` (initialisation and batch order via
  input_pipeline.train_batches), so a rerun gives bitwise identical parameters on the same
  machine. num_epochs may be fractional. Logs loss, steps/s and test accuracy per epoch.
  """
  train_images = np.asarray(data.train_images, np.float32)
  train_labels = np.asarray(data.train_labels, np.int32)
  _check_unit_range(train_images, 'train_classifier')
  per_epoch = input_pipeline.steps_per_epoch(len(train_images), batch_size)
  num_steps = max(1, int(round(num_epochs * per_epoch)))
  optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps))
  train_step = _make_train_step(optimizer)

  params = init_params(seed)
  opt_state = optimizer.init(params)
  # Batches of row indices, so that images and labels are shuffled together.
  batches = input_pipeline.train_batches(np.arange(len(train_images)), batch_size, seed)
  has_test = data.test_images is not None and len(data.test_images) > 0
  start, losses = time.time(), []
  for step in range(1, num_steps + 1):
    rows = next(batches)
    params, opt_state, loss = train_step(params, opt_state, train_images[rows], train_labels[rows])
    losses.append(loss)
    if step % per_epoch == 0 or step == num_steps:
      elapsed = time.time() - start
      mean_loss = float(np.mean(jax.device_get(losses)))
      test_acc = accuracy(params, data.test_images, data.test_labels) if has_test else float('nan')
      logging.info(
          'mnist_classifier step %d/%d (epoch %.2f): loss %.4f, %.1f steps/s (with '
          'compilation), test accuracy %.4f',
          step,
          num_steps,
          step / per_epoch,
          mean_loss,
          step / elapsed,
          test_acc,
      )
      losses = []
  return jax.device_get(params)


def _serialized(params: Params) -> bytes:
  return flax.serialization.msgpack_serialize(
      flax.serialization.to_state_dict(jax.device_get(params))
  )


def save_params(path, params: Params) -> None:
  """Writes params as msgpack, whole or not at all."""
  files.write_bytes(path, _serialized(params))


def _restore(path: pathlib.Path, data: bytes) -> Params:
  """Params from save_params' bytes; checks they fit this module's CNN."""
  params = flax.serialization.msgpack_restore(data)
  expected = jax.eval_shape(init_params)
  try:
    ok = jax.tree_util.tree_all(
        jax.tree_util.tree_map(lambda e, p: e.shape == np.shape(p), expected, params)
    )
  except ValueError:  # Different tree structure.
    ok = False
  if not ok:
    raise ValueError(
        f'{path}: parameters do not fit the current mnist_classifier.CNN '
        '(stale cache from another architecture?); delete the file to retrain'
    )
  return params


def load_params(path) -> Params:
  """Reads params written by save_params; checks they fit this module's CNN."""
  path = pathlib.Path(path)
  return _restore(path, path.read_bytes())


def weights_sha256(params: Params) -> str:
  """The sha256 of params as save_params writes them: for the shipped weights, SHIPPED_SHA256."""
  return hashlib.sha256(_serialized(params)).hexdigest()


def features_label(sha256: str) -> str:
  """FEATURES and the short hash of the weights (their weights_sha256): what results.json
  writes beside FIDs on them, so that FIDs on different weights are never labelled alike."""
  return f'{FEATURES}, weights sha256 {sha256[:SHORT_HASH]}'


# ---------------------------------------------------------------------------------------------
# The shipped weights: seed 0, default settings, trained once with
#   python -m wae_jax.evaluation.mnist_classifier --data_dir=../shared/data/mnist --cache_dir=DIR
# (test accuracy 0.9919, trained in 143 s on this project's 2-core CPU). Every MNIST FID is
# computed on them, so that FIDs from any machine compare. The one place that knows where they
# are and their hash.
SHIPPED_SEED = 0
SHIPPED_PATH = (
    pathlib.Path(__file__).resolve().parent
    / 'weights'
    / (f'mnist_classifier_seed{SHIPPED_SEED}.msgpack')
)
SHIPPED_SHA256 = 'fed7b12aaeacbceb655569435c659d58f618727c2e61125b3328e10433a1f2ff'
_SHIPPED_IN_CHECKOUT = 'wae_jax/evaluation/weights/' + SHIPPED_PATH.name


class WeightsError(errors.WaeError, ValueError):
  """The shipped classifier weights are missing or are not the file their hash names."""


def load_shipped(path: Optional[pathlib.Path] = None, sha256: str = SHIPPED_SHA256) -> Params:
  """The shipped weights (SHIPPED_PATH), refused with a WeightsError unless their sha256 is
  `sha256`."""
  path = pathlib.Path(path or SHIPPED_PATH)
  restore = (
      'restore the file: reinstall wae_jax, or in a checkout `git checkout -- '
      f'{_SHIPPED_IN_CHECKOUT}`'
  )
  try:
    data = path.read_bytes()
  except FileNotFoundError:
    raise WeightsError(
        f'{path}: the shipped MNIST classifier weights are missing; ' f'{restore}'
    ) from None
  actual = hashlib.sha256(data).hexdigest()
  if actual != sha256:
    raise WeightsError(
        f'{path}: sha256 {actual[:SHORT_HASH]}... is not the shipped MNIST classifier '
        f"weights' {sha256[:SHORT_HASH]}...: the file is damaged or was replaced; {restore} "
        '(if you replaced it with weights you trained, set SHIPPED_SHA256 in '
        'wae_jax/evaluation/mnist_classifier.py to the sha256 the training command printed)'
    )
  return _restore(path, data)


def cache_path(cache_dir, seed: int = 0) -> pathlib.Path:
  cache_dir = (
      datasets.default_cache_dir() if cache_dir is None else pathlib.Path(cache_dir).expanduser()
  )
  return cache_dir / f'mnist_classifier_seed{seed}.msgpack'


def load_or_train(cache_dir: Optional[str], data, seed: int = 0, pixel_range=(0.0, 1.0)) -> Params:
  """The classifier FIDs are computed on: the shipped weights for SHIPPED_SEED (checked by
  hash, nothing trained), otherwise load_cached_or_train's."""
  if seed == SHIPPED_SEED:
    logging.info('mnist_classifier: the shipped weights %s', SHIPPED_PATH)
    return load_shipped()
  return load_cached_or_train(cache_dir, data, seed, pixel_range)


def load_cached_or_train(
    cache_dir: Optional[str], data, seed: int = 0, pixel_range=(0.0, 1.0)
) -> Params:
  """The cached classifier for `seed`, trained (default settings) and cached if missing.

  cache_dir None means $WAE_JAX_CACHE or ~/.cache/wae_jax. data's images are in
  pixel_range; they are converted to [0, 1] only when the classifier has to be trained.
  """
  path = cache_path(cache_dir, seed)
  if path.exists():
    logging.info('mnist_classifier: loading %s', path)
    return load_params(path)
  logging.info('mnist_classifier: no cache at %s; training (seed %d)', path, seed)
  if tuple(pixel_range) != (0.0, 1.0):
    unit = functools.partial(visualize.to_unit_range, pixel_range=pixel_range)
    data = dataclasses.replace(
        data, train_images=unit(data.train_images), test_images=unit(data.test_images)
    )
  params = train_classifier(data, seed=seed)
  save_params(path, params)
  return params


def mnist_config(data_dir: Optional[str]) -> ml_collections.ConfigDict:
  """The data config the classifier is trained on: MNIST in [0, 1]."""
  return ml_collections.ConfigDict(
      dict(
          name='mnist', source='auto', dir=data_dir, pixel_range=(0.0, 1.0), image_shape=IMAGE_SHAPE
      )
  )


def _define_flags() -> None:
  """CLI flags, defined only when run as a script so importers' flags cannot clash."""
  flags.DEFINE_string('data_dir', None, 'Folder with the MNIST IDX files (or a TFDS data_dir).')
  flags.DEFINE_string(
      'cache_dir',
      None,
      'Folder the trained parameters are cached in (default '
      f'${datasets.CACHE_ENV} or ~/.cache/wae_jax).',
  )
  flags.DEFINE_integer('seed', 0, 'Seed of the classifier.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cfg = flags.FLAGS
  data = input_pipeline.load_dataset(mnist_config(cfg.data_dir))
  start = time.time()
  params = load_cached_or_train(cfg.cache_dir, data, seed=cfg.seed)
  seconds = time.time() - start
  test_acc = accuracy(params, data.test_images, data.test_labels)
  path = cache_path(cfg.cache_dir, cfg.seed)
  digest = weights_sha256(params)
  print(f'test accuracy: {test_acc:.4f}')
  print(f'cache: {path}')
  print(f'sha256: {digest}')
  print(f'load or train time: {seconds:.1f} s')
  if cfg.seed != SHIPPED_SEED:
    return
  if digest == SHIPPED_SHA256:
    print(f'These are the shipped weights ({SHIPPED_PATH}), bit for bit.')
  else:
    print(
        f'These differ from the shipped weights (sha256 {SHIPPED_SHA256[:SHORT_HASH]}...): '
        'the same seed trains bitwise the same weights only on the same machine. To ship '
        f'these instead: cp {path} {_SHIPPED_IN_CHECKOUT} and set SHIPPED_SHA256 in '
        f'wae_jax/evaluation/mnist_classifier.py to {digest!r}; MNIST FIDs computed on the '
        'old weights (docs/results.md) then need recomputing (launch/mnist_table.sh).'
    )


if __name__ == '__main__':
  _define_flags()
  errors.run(main)
