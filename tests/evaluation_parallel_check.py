"""Evaluation's numbers on this process's devices: run by test_evaluate.py here (1 device) and
in a fresh process with 8 (XLA_FLAGS=--xla_force_host_platform_device_count=8 must be set
before JAX starts), which prints them as JSON after 'RESULT '.

An initialised tiny WAE-MMD is evaluated with both samplers: encoding (the test images and
the GMM's training codes), decoding and the MNIST classifier's FID features all go through
batching.batched, with batch sizes that leave padded batches on 8 devices.
"""

import json
import pathlib
import sys
import types

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the checkout

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from tests.helpers import shallow_config  # pylint: disable=g-import-not-at-top
from wae_jax import models
from wae_jax.evaluation import batching
from wae_jax.evaluation import evaluate
from wae_jax.evaluation import evaluators
from wae_jax.evaluation import mnist_classifier


def untrained_classifier(*args, **kwargs):
  """Stands in for mnist_classifier.load_or_train: training the classifier takes minutes."""
  del args, kwargs
  return jax.jit(mnist_classifier.init_params, static_argnums=0)(0)  # eager: seconds more


def numbers(cache_dir: str):
  """Every scalar evaluation result of an initialised tiny model, and the samples' sums.

  The caller replaces mnist_classifier.load_or_train with untrained_classifier.
  """
  config = shallow_config('wae_mmd')
  config.eval.cache_dir = cache_dir
  config.eval.num_samples = 150
  config.eval.sharpness_images = 150
  config.eval.mmd_codes = 150
  config.eval.batch_size = 36  # 40 on 8 devices; 150 = 3 x 40 + 30, padded to 32
  config.eval.mnist_classifier_batch_size = 60
  config.eval.gmm_train_images = 300
  config.eval.gmm_components = 2
  model = models.build_autoencoder(config)
  images = np.zeros((2,) + tuple(config.data.image_shape), np.float32)
  variables = jax.jit(lambda rng: model.init(rng, images, train=False))(jax.random.PRNGKey(0))
  state = types.SimpleNamespace(**variables)  # all make_context reads of a TrainState
  context = evaluate.make_context(config, model, state)
  out = {'device_count': jax.local_device_count()}
  for evaluator in evaluators.from_config(config):
    for key, entry in evaluator.run(context).items():
      if isinstance(entry.get('value'), float):
        out[key] = entry['value']
  for sampler, samples in context.samples.items():
    out[f'sum_samples_{sampler}'] = float(np.sum(samples, dtype=np.float64))
  out['sum_abs_codes'] = float(np.sum(np.abs(context.codes), dtype=np.float64))
  return out


def batch_splits():
  """(rows, devices holding them) of each batch batched() hands its function: 30 rows in
  batches of 20, rounded up to the device count, with and without pad."""
  seen = {}
  for pad in (False, True):
    calls = seen[f'pad={pad}'] = []
    double = jax.jit(lambda x: 2 * x)
    record = lambda x, calls=calls: calls.append([x.shape[0], len(x.sharding.device_set)]) or (
        double(x)
    )
    out = batching.batched(record, np.arange(30.0), 20, pad=pad)
    assert np.array_equal(out, 2 * np.arange(30.0)), out
  return seen


if __name__ == '__main__':
  mnist_classifier.load_or_train = untrained_classifier
  print('RESULT ' + json.dumps({**numbers(sys.argv[1]), 'batch_splits': batch_splits()}))
