"""Faults a long sweep meets: kills, preemption, broken checkpoints, non-finite steps."""

import logging
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.helpers import MNIST_DIR
from tests.helpers import REPO
from tests.helpers import tiny_config
from wae_jax import checkpoints
from wae_jax import inference
from wae_jax import input_pipeline
from wae_jax import models
from wae_jax import train


def _leaves_equal(a, b, atol=0.0):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol)


def _small_run_config(num_steps, **train_fields):
  config = tiny_config('wae_mmd')
  config.train.num_steps = num_steps
  config.train.log_every = 1
  config.train.image_every = 1000
  config.train.checkpoint_every = 2
  for key, value in train_fields.items():
    config.train[key] = value
  return config


def test_nonfinite_step_is_not_applied_and_is_counted():
  config = tiny_config('wae_gan')
  state = train.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch=10)
  step = jax.jit(train.make_train_step(config, models.build_autoencoder(config),
                                       models.build_adversary(config), 10,
                                       jax.random.PRNGKey(1)))
  images = np.random.default_rng(0).uniform(0, 1, (8, 28, 28, 1)).astype(np.float32)
  poisoned = images.copy()
  poisoned[3, 5, 5, 0] = np.nan
  after, metrics = step(state, poisoned)
  assert int(after.step) == 1 and int(after.nonfinite_steps) == 1
  assert float(metrics['skipped']) == 1.0
  _leaves_equal((after.params, after.batch_stats, after.opt_state, after.adversary_params,
                 after.adversary_opt_state),
                (state.params, state.batch_stats, state.opt_state, state.adversary_params,
                 state.adversary_opt_state))
  after, metrics = step(after, poisoned)
  assert int(after.nonfinite_steps) == 2
  # A finite step is applied again and resets the count.
  recovered, metrics = step(after, images)
  assert int(recovered.nonfinite_steps) == 0 and float(metrics['skipped']) == 0.0
  assert not np.allclose(recovered.params['decoder']['Dense_0']['kernel'],
                         state.params['decoder']['Dense_0']['kernel'])


def test_run_stops_after_too_many_nonfinite_steps(tmp_path, monkeypatch):
  original = input_pipeline.train_batches

  def poisoned_after_three(images, batch_size, seed, start_step=0, rows=slice(None)):
    for i, batch in enumerate(original(images, batch_size, seed, start_step, rows)):
      yield batch if start_step + i < 3 else np.full_like(batch, np.nan)

  monkeypatch.setattr(input_pipeline, 'train_batches', poisoned_after_three)
  config = _small_run_config(20, max_nonfinite_steps=3)
  with pytest.raises(train.NonFiniteError, match='max_nonfinite_steps=3') as error:
    train.train_and_evaluate(config, str(tmp_path))
  assert 'step 4' in str(error.value)
  # Steps 4 and up were skipped, so the checkpoint of step 4 holds step 3's finite weights.
  _, state = inference.restore(config, str(tmp_path))
  assert int(state.step) == 4
  assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(state.params))


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
  config = _small_run_config(4)
  train.train_and_evaluate(config, str(tmp_path))
  latest = tmp_path / 'checkpoints' / '4'
  for path in latest.rglob('*'):
    if path.is_file() and path.stat().st_size > 0:
      path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
  with caplog.at_level(logging.WARNING):
    _, state = inference.restore(config, str(tmp_path))
  assert int(state.step) == 2
  warning = '\n'.join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
  assert str(tmp_path / 'checkpoints' / '2') in warning
  assert str(latest) in warning
  # Training on from there redoes steps 3 and 4.
  config.train.num_steps = 5
  assert int(train.train_and_evaluate(config, str(tmp_path)).step) == 5


def test_checkpoint_of_another_model_config_is_a_clear_error(tmp_path):
  config = _small_run_config(2)
  train.train_and_evaluate(config, str(tmp_path))
  config.model.latent_dim = 4
  with pytest.raises(checkpoints.CheckpointError) as error:
    inference.restore(config, str(tmp_path))
  message = str(error.value)
  assert str(tmp_path / 'checkpoints') in message
  assert ("['params']['encoder']['Dense_0']['kernel']: checkpoint has (128, 8), this config "
          "expects (128, 4)") in message
  assert 'different model config' in message


def test_no_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    inference.restore(_small_run_config(2), str(tmp_path / 'empty'))


# --- Real processes, killed and preempted ---------------------------------------------------

def _main_command(workdir, num_steps, checkpoint_every):
  return [sys.executable, '-m', 'wae_jax.main', '--config=configs/mnist.py:wae_mmd',
          f'--workdir={workdir}', '--config.model.width=0.03125',
          '--config.model.adversary_width=0.03125', '--config.train.batch_size=8',
          '--config.train.pretrain_steps=0', f'--config.train.num_steps={num_steps}',
          f'--config.train.checkpoint_every={checkpoint_every}', '--config.train.log_every=1',
          '--config.train.image_every=100000', f'--config.data.dir={MNIST_DIR}']


def _env():
  return dict(os.environ, JAX_PLATFORMS='cpu')


def _wait_for_checkpoint(workdir, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    done = [p for p in (workdir / 'checkpoints').glob('[0-9]*')] if (
        workdir / 'checkpoints').exists() else []
    if done:
      return
    time.sleep(0.2)
  raise TimeoutError(f'no checkpoint in {workdir} after {timeout} s')


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
  """Killed at random moments (inside steps, while checkpoints are written), restarted until
  it finishes, a run ends with the parameters of a run that was never interrupted."""
  steps, workdir = 40, tmp_path / 'killed'
  rng = random.Random(0)
  kills = 0
  for _ in range(4):
    proc = subprocess.Popen(_main_command(workdir, steps, 1), cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_checkpoint(workdir) if kills == 0 else None
    time.sleep(rng.uniform(0.5, 4.0))
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      kills += 1
    proc.wait()
  assert kills >= 2
  finish = subprocess.run(_main_command(workdir, steps, 1), cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=600)
  assert finish.returncode == 0, finish.stderr[-3000:]
  straight = subprocess.run(_main_command(tmp_path / 'straight', steps, 1000), cwd=REPO,
                            env=_env(), capture_output=True, text=True, timeout=600)
  assert straight.returncode == 0, straight.stderr[-3000:]
  config = _small_run_config(steps)
  _, killed_state = inference.restore(config, str(workdir))
  _, straight_state = inference.restore(config, str(tmp_path / 'straight'))
  assert int(killed_state.step) == int(straight_state.step) == steps
  _leaves_equal(killed_state, straight_state, atol=1e-6)


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path):
  workdir = tmp_path / 'preempted'
  proc = subprocess.Popen(_main_command(workdir, 100000, 50), cwd=REPO, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  _wait_for_checkpoint(workdir)
  time.sleep(1.0)
  proc.send_signal(signal.SIGTERM)
  output = proc.communicate(timeout=120)[0]
  assert proc.returncode == 0, output[-3000:]
  assert 'SIGTERM at step' in output
  stopped_at = int(output.split('SIGTERM at step ')[1].split(':')[0])
  assert stopped_at > 50
  steps = sorted(int(p.name) for p in (workdir / 'checkpoints').glob('[0-9]*'))
  assert steps[-1] == stopped_at
