"""Two processes with two CPU devices each train what one process with one device trains.

Real subprocesses of `python -m wae_jax.main` joined by jax.distributed (gloo on CPU): each
loads only its rows of every global batch, all write one checkpoint together, and only
process 0 writes metrics and pictures.
"""

import os
import socket
import subprocess
import sys

import jax
import numpy as np

from conftest import MNIST_DIR, REPO, tiny_config
from wae_jax import train

STEPS = 3


def _overrides(workdir, steps):
  return ['--config=configs/mnist.py:wae_mmd', f'--workdir={workdir}',
          '--config.model.width=0.03125', '--config.train.batch_size=8',
          f'--config.train.num_steps={steps}', '--config.train.pretrain_steps=2',
          '--config.train.log_every=1', '--config.train.image_every=100',
          '--config.train.checkpoint_every=100', f'--config.data.dir={MNIST_DIR}']


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices, **extra):
  return dict(os.environ, JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', **extra)


def _train_two_processes(workdir, steps):
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'wae_jax.main'] + _overrides(workdir, steps), cwd=REPO,
      env=_env(2, JAX_COORDINATOR_ADDRESS=f'localhost:{port}', JAX_NUM_PROCESSES='2',
               JAX_PROCESS_ID=str(i)),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  logs = [p.communicate(timeout=900)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-4000:]
  return logs


def test_two_processes_train_like_one(tmp_path):
  # Stop after 2 steps and resume to 3, so that restoring works with several processes too.
  _train_two_processes(tmp_path / 'two', STEPS - 1)
  logs = _train_two_processes(tmp_path / 'two', STEPS)
  assert 'process 1 of 2, 2 local of 4 devices' in logs[1]
  one = subprocess.run([sys.executable, '-m', 'wae_jax.main'] + _overrides(tmp_path / 'one',
                                                                            STEPS),
                       cwd=REPO, env=_env(1), capture_output=True, text=True, timeout=900)
  assert one.returncode == 0, one.stderr[-4000:]

  config = tiny_config('wae_mmd')
  _, state_two = train.restore_for_inference(config, str(tmp_path / 'two'))
  _, state_one = train.restore_for_inference(config, str(tmp_path / 'one'))
  assert int(state_two.step) == int(state_one.step) == STEPS
  for a, b in zip(jax.tree_util.tree_leaves(state_two.params),
                  jax.tree_util.tree_leaves(state_one.params)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  # Metrics and pictures come from process 0 alone: one event file per run segment.
  assert len(list((tmp_path / 'two').glob('events.out.tfevents.*'))) == 2
  assert len(list((tmp_path / 'two' / 'images').glob('samples_*.png'))) == 2
