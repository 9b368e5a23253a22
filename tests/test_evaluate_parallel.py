"""Evaluation on every local device: batching.batched, and 8 CPU devices against 1.

The 8 devices need XLA_FLAGS=--xla_force_host_platform_device_count=8 before JAX starts,
so tests/evaluation_parallel_check.py runs in a fresh process (as test_data_parallel.py's
check does) while this one computes the same numbers on its one device.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests import evaluation_parallel_check
from tests.helpers import MNIST_DIR
from tests.helpers import REPO
from wae_jax.evaluation import batching
from wae_jax.evaluation import mnist_classifier


def _double_and_sum(x):
  return {'double': 2 * x, 'sum': x.sum(axis=(1, 2)), 'none': None}


@pytest.mark.parametrize('pad', [False, True])
@pytest.mark.parametrize('count', [0, 1, 7, 8, 10])
def test_batched_equals_one_call(pad, count):
  x = np.random.default_rng(count).normal(size=(count, 3, 2)).astype(np.float32)
  fn = jax.jit(_double_and_sum)
  out = batching.batched(fn, x, 4, pad=pad)
  assert out['none'] is None
  np.testing.assert_allclose(out['double'], 2 * x)
  np.testing.assert_allclose(out['sum'], x.sum(axis=(1, 2)), rtol=1e-6)
  assert out['double'].shape == (count, 3, 2) and out['sum'].shape == (count,)


def test_batched_limit_reads_only_the_first_rows():
  class Recording:  # indexes lazily, as input_pipeline.Images

    def __init__(self, array):
      self.array, self.read = array, []

    def __len__(self):
      return len(self.array)

    def __getitem__(self, index):
      self.read.append((index.start, index.stop))
      return self.array[index]

  rows = Recording(np.arange(20.0))
  out = batching.batched(jax.jit(lambda x: x + 1), rows, 4, limit=10)
  np.testing.assert_array_equal(out, np.arange(10.0) + 1)
  assert rows.read == [(0, 4), (4, 8), (8, 10)]
  assert len(batching.batched(jax.jit(lambda x: x), rows, 4, limit=50)) == 20


def test_mapped_converts_one_batch_at_a_time():
  converted = []

  def double(rows):
    converted.append(len(rows))
    return 2.0 * rows

  x = np.arange(10.0)
  mapped = batching.Mapped(x, double)
  assert len(mapped) == 10
  out = batching.batched(jax.jit(lambda x: x + 1), mapped, 4, pad=True)
  np.testing.assert_array_equal(out, 2.0 * x + 1)
  assert converted == [4, 4, 2]


def test_weights_are_replicated_on_the_local_devices():
  params = batching.replicate({'w': np.ones((2, 3), np.float32)})
  assert params['w'].sharding.is_fully_replicated
  assert params['w'].sharding.device_set == set(jax.local_devices())


@pytest.fixture(scope='module')
def eight_devices(tmp_path_factory):
  """The check's numbers on 8 CPU devices (a fresh process) and on this one's device."""
  cache = tmp_path_factory.mktemp('fid_cache')  # each computes its real statistics itself
  env = dict(
      os.environ,
      XLA_FLAGS='--xla_force_host_platform_device_count=8',
      JAX_PLATFORMS='cpu',
      WAE_JAX_MNIST_DIR=str(MNIST_DIR),
  )
  script = pathlib.Path(evaluation_parallel_check.__file__)
  proc = subprocess.Popen(
      [sys.executable, str(script), str(cache / 'eight')],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
  )
  try:  # The single-device run overlaps the other process's start.
    with pytest.MonkeyPatch.context() as patch:
      patch.setattr(
          mnist_classifier, 'load_or_train', evaluation_parallel_check.untrained_classifier
      )
      one = evaluation_parallel_check.numbers(str(cache / 'one'))
    stdout, stderr = proc.communicate(timeout=600)
  finally:
    proc.kill()
  assert proc.returncode == 0, stderr[-4000:]
  line = [l for l in stdout.splitlines() if l.startswith('RESULT ')][-1]
  return json.loads(line[len('RESULT ') :]), one


def test_evaluation_on_eight_devices_equals_one(eight_devices):
  eight, one = eight_devices
  assert one['device_count'] == 1 and eight['device_count'] == 8
  keys = set(one) - {'device_count'}
  assert set(eight) - {'device_count', 'batch_splits'} == keys
  # Both samplers' FIDs and sharpness, the floor, the GMM's fit, reconstructions, MMD.
  assert {
      'fid_mnist_classifier',
      'fid_mnist_classifier_gmm',
      'fid_mnist_classifier_real_floor',
      'sharpness_samples_gmm',
      'gmm_train_codes_log_likelihood',
      'test_reconstruction_cost',
  } <= keys
  for key in sorted(keys):  # Only the order of floating-point operations differs.
    assert eight[key] == pytest.approx(one[key], rel=1e-4, abs=1e-9), key


def test_batches_split_evenly_over_eight_devices(eight_devices):
  splits = eight_devices[0]['batch_splits']
  # 30 rows in batches of 20 rounded up to 24: 24 rows, then 6 padded to 8 (or to 24).
  assert splits == {'pad=False': [[24, 8], [8, 8]], 'pad=True': [[24, 8], [24, 8]]}
