"""Two processes with two CPU devices each train what one process with one device trains.

Real subprocesses of `python -m wae_jax.main` joined by jax.distributed (gloo on CPU): each
loads only its rows of every global batch, all write one checkpoint together, and only
process 0 writes metrics and pictures. A Ctrl-C to one process stops both at the same step.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from tests.helpers import MNIST_DIR
from tests.helpers import REPO
from tests.helpers import SHALLOW
from wae_jax import checkpoints
from wae_jax import config as wae_config
from wae_jax import inference
from wae_jax import train

# The tiny run both tests train, beside the workdir and the number of steps.
_SETTINGS = {
    'model.width': 0.03125,
    'train.batch_size': 8,
    'train.pretrain_steps': 2,
    'train.log_every': 1,
    'train.image_every': 100000,
    'train.checkpoint_every': 100000,
    'data.dir': str(MNIST_DIR),
    **SHALLOW,
}


def _overrides(workdir, steps):
  return [
      '--config=configs/mnist.py:wae_mmd',
      f'--workdir={workdir}',
      f'--config.train.num_steps={steps}',
  ] + [f'--config.{field}={value}' for field, value in _SETTINGS.items()]


def _config(steps):
  """The config _overrides(workdir, steps) gives the command."""
  config = wae_config.load_config_file(f'{REPO / "configs" / "mnist.py"}:wae_mmd')
  config.train.num_steps = steps
  for field, value in _SETTINGS.items():
    section, name = field.split('.')
    config[section][name] = value
  return config


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices, **extra):
  return dict(
      os.environ,
      JAX_PLATFORMS='cpu',
      XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
      **extra,
  )


def _start_two_processes(workdir, steps, log_dir):
  port = _free_port()
  procs, logs = [], []
  for i in range(2):
    logs.append(log_dir / f'process{i}.log')
    with open(logs[-1], 'w') as log:
      procs.append(
          subprocess.Popen(
              [sys.executable, '-m', 'wae_jax.main'] + _overrides(workdir, steps),
              cwd=REPO,
              env=_env(
                  2,
                  JAX_COORDINATOR_ADDRESS=f'localhost:{port}',
                  JAX_NUM_PROCESSES='2',
                  JAX_PROCESS_ID=str(i),
              ),
              stdout=log,
              stderr=subprocess.STDOUT,
          )
      )
  return procs, logs


def _wait(procs, logs):
  for p in procs:
    p.wait(timeout=900)
  texts = [log.read_text() for log in logs]
  for p, text in zip(procs, texts):
    assert p.returncode == 0, text[-4000:]
  return texts


STEPS = 3


def test_two_processes_train_like_one(tmp_path):
  # Stop after 2 steps and resume to 3, so that restoring works with several processes too.
  workdir = tmp_path / 'two'
  _wait(*_start_two_processes(workdir, STEPS - 1, tmp_path))
  texts = _wait(*_start_two_processes(workdir, STEPS, tmp_path))
  assert 'process 1 of 2, 2 local of 4 devices' in texts[1]
  # One process with one device (this one's): the command's training, without its start.
  state_one = train.train_and_evaluate(_config(STEPS), str(tmp_path / 'one'))

  _, state_two = inference.restore(_config(STEPS), str(workdir))
  assert int(state_two.step) == int(state_one.step) == STEPS
  for a, b in zip(
      jax.tree_util.tree_leaves(state_two.params), jax.tree_util.tree_leaves(state_one.params)
  ):
    np.testing.assert_allclose(a, b, atol=1e-5)
  # Metrics and pictures come from process 0 alone: one event file per run segment.
  assert len(list(workdir.glob('events.out.tfevents.*'))) == 2
  assert len(list((workdir / 'images').glob('samples_*.png'))) == 2  # each segment's last step


def test_ctrl_c_to_one_process_stops_both_at_one_step(tmp_path, terminal_sigint):
  """Ctrl-C to process 1 alone once training runs: both stop at one step, one checkpoint.

  The Ctrl-C reaches JAX's preemption service as the SIGTERM a preemption sends (the process
  sends it to itself), so this covers a preempted process too.
  """
  workdir = tmp_path / 'two'
  procs, logs = _start_two_processes(workdir, 100_000, tmp_path)
  deadline = time.time() + 600
  while not re.search(r'\(3/100000\)', logs[1].read_text()):
    assert time.time() < deadline and procs[1].poll() is None, logs[1].read_text()[-4000:]
    time.sleep(0.2)
  procs[1].send_signal(signal.SIGINT)
  texts = _wait(procs, logs)
  stopped = checkpoints.Checkpoints(workdir, keep=3).latest_step()
  assert stopped is not None and stopped >= 3
  for text in texts:
    assert re.search(rf'SIGTERM .*synchronised.* at step {stopped}: wrote a checkpoint', text)
