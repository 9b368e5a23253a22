"""Data parallelism: 8 CPU devices compute what 1 device computes (WAE-MMD and WAE-GAN)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.helpers import MNIST_DIR
from tests.helpers import REPO


@pytest.fixture(scope='module')
def eight_devices():
  env = dict(
      os.environ,
      XLA_FLAGS='--xla_force_host_platform_device_count=8',
      JAX_PLATFORMS='cpu',
      WAE_JAX_MNIST_DIR=str(MNIST_DIR),
  )
  script = pathlib.Path(__file__).with_name('data_parallel_check.py')
  proc = subprocess.run(
      [sys.executable, str(script), 'wae_mmd', 'wae_gan'],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=1200,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')][-1]
  return json.loads(line[len('RESULT ') :])


def test_eight_devices_are_used(eight_devices):
  assert eight_devices['device_count'] == 8
  # The global batch of 16 is split two rows per device.
  assert eight_devices['wae_mmd']['shard_rows'] == [2] * 8


@pytest.mark.parametrize('objective', ['wae_mmd', 'wae_gan'])
def test_steps_on_eight_devices_equal_steps_on_one(eight_devices, objective):
  r = eight_devices[objective]
  assert r['loss_8'] == pytest.approx(r['loss_1'], rel=1e-5)
  # Only the order of floating-point reductions differs.
  assert r['params'] <= 1e-5 * max(1.0, r['param_scale'])
  assert r['batch_stats'] <= 1e-4
  assert r['adversary_params'] <= 1e-5


def test_gan_adversary_is_trained_on_eight_devices(eight_devices):
  # It moved, on eight devices as on one (test_steps_on_eight_devices_equal_steps_on_one).
  assert eight_devices['wae_gan']['adversary_moved'] > 1e-4


def test_training_loop_resumes_on_eight_devices(eight_devices):
  assert eight_devices['loop_final_step'] == 4


def test_batch_not_divisible_by_devices_is_a_clear_error(eight_devices):
  message = eight_devices['indivisible_error']
  assert message is not None
  assert 'config.train.batch_size=12' in message and '8 devices' in message
