"""Faults a long sweep meets: kills, preemption, Ctrl-C, broken checkpoints, non-finite steps,
a resume under another config, a full disk."""

import errno
import io
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.helpers import MNIST_DIR
from tests.helpers import REPO
from tests.helpers import SHALLOW_FLAGS
from tests.helpers import shallow_config
from wae_jax import checkpoints
from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import files
from wae_jax import inference
from wae_jax import input_pipeline
from wae_jax import models
from wae_jax import parallel
from wae_jax import train
from wae_jax import visualize
from wae_jax.evaluation import evaluate
from wae_jax.evaluation import evaluators
from wae_jax.evaluation import report


def _leaves_equal(a, b, atol=0.0):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol)


def _small_run_config(num_steps, **train_fields):
  config = shallow_config('wae_mmd')
  config.train.num_steps = num_steps
  config.train.log_every = 1
  config.train.image_every = 1000
  config.train.checkpoint_every = 2
  for key, value in train_fields.items():
    config.train[key] = value
  return config


def _state_step_and_images(config):
  """A fresh train state, the jitted step of `config` and a batch of 8 random images."""
  state = train.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch=10)
  step = jax.jit(
      train.make_train_step(
          config,
          models.build_autoencoder(config),
          models.build_adversary(config),
          10,
          jax.random.PRNGKey(1),
      )
  )
  images = np.random.default_rng(0).uniform(0, 1, (8, 28, 28, 1)).astype(np.float32)
  return state, step, images


def test_nonfinite_step_is_not_applied_and_is_counted():
  config = shallow_config('wae_gan')
  state, step, images = _state_step_and_images(config)
  poisoned = images.copy()
  poisoned[3, 5, 5, 0] = np.nan
  after, metrics = step(state, poisoned)
  assert int(after.step) == 1 and int(after.nonfinite_steps) == 1
  assert float(metrics['skipped']) == 1.0
  _leaves_equal(
      (
          after.params,
          after.batch_stats,
          after.opt_state,
          after.adversary_params,
          after.adversary_opt_state,
      ),
      (
          state.params,
          state.batch_stats,
          state.opt_state,
          state.adversary_params,
          state.adversary_opt_state,
      ),
  )
  after, metrics = step(after, poisoned)
  assert int(after.nonfinite_steps) == 2
  # A finite step is applied again and resets the count.
  recovered, metrics = step(after, images)
  assert int(recovered.nonfinite_steps) == 0 and float(metrics['skipped']) == 0.0
  assert not np.allclose(
      recovered.params['decoder']['Dense_0']['kernel'], state.params['decoder']['Dense_0']['kernel']
  )


def test_a_step_whose_update_is_not_finite_is_skipped_though_its_gradient_is():
  # An infinite learning rate times a finite gradient: the loss and gradients are finite, the
  # updated parameters are not. (validate refuses the rate; the step must not trust that.)
  config = shallow_config('wae_mmd')
  config.train.learning_rate = float('inf')
  state, step, images = _state_step_and_images(config)
  after, metrics = step(state, images)
  assert np.isfinite(float(metrics['loss']))
  assert float(metrics['skipped']) == 1.0 and int(after.nonfinite_steps) == 1
  _leaves_equal((after.params, after.opt_state), (state.params, state.opt_state))


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


def test_a_run_diverging_before_its_first_checkpoint_says_there_is_none(tmp_path, monkeypatch):
  original = input_pipeline.train_batches

  def poisoned(images, batch_size, seed, start_step=0, rows=slice(None)):
    for batch in original(images, batch_size, seed, start_step, rows):
      yield np.full_like(batch, np.nan)

  monkeypatch.setattr(input_pipeline, 'train_batches', poisoned)
  config = _small_run_config(20, max_nonfinite_steps=3, checkpoint_every=100)
  with pytest.raises(train.NonFiniteError, match='no checkpoint was written') as error:
    train.train_and_evaluate(config, str(tmp_path))
  assert 'None' not in str(error.value)


def test_pictures_that_fail_do_not_cost_the_checkpoint_of_their_step(tmp_path, monkeypatch):
  def broken_pictures(*args):
    raise RuntimeError('the pictures broke')

  monkeypatch.setattr(visualize, 'write_pictures', broken_pictures)
  with pytest.raises(RuntimeError, match='the pictures broke'):
    train.train_and_evaluate(_small_run_config(2, image_every=2), str(tmp_path))
  assert checkpoints.Checkpoints(tmp_path).latest_step() == 2
  # Asked for fewer steps than the workdir has: refused, not "Training for 1 step from step 2".
  with pytest.raises(errors.ConfigError, match='already at step 2, beyond the 1 steps'):
    train.train_and_evaluate(_small_run_config(1), str(tmp_path))


def test_a_workdir_is_trained_in_by_one_run_at_a_time(tmp_path):
  holder = subprocess.Popen(
      [
          sys.executable,
          '-c',
          'import sys, time; from wae_jax import files\n'
          'with files.workdir_lock(sys.argv[1]):\n  print("locked", flush=True); time.sleep(600)',
          str(tmp_path),
      ],
      stdout=subprocess.PIPE,
      text=True,
      cwd=REPO,
  )
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(
        files.WorkdirError,
        match=f'another run is training in {tmp_path} ' f'\\(pid {holder.pid} on ',
    ):
      train.train_and_evaluate(_small_run_config(2), str(tmp_path))
  finally:
    holder.kill()  # SIGKILL: the kernel releases the lock
    holder.wait()
  with files.workdir_lock(tmp_path):
    pass
  assert not any(tmp_path.glob('checkpoints/*'))


def _truncate(checkpoint):
  """Cuts each array file of a checkpoint in half, as a kill during a copy would."""
  for path in checkpoint.rglob('*'):
    if path.is_file() and path.parent.name == 'd' and path.stat().st_size > 0:
      path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_config_too_big_for_memory_is_refused_before_it_is_allocated_or_run(
    tmp_path, monkeypatch
):
  assert parallel.free_memory_bytes(parallel.make_mesh()) > 2**20  # this machine's, read
  free = iter([1])  # the state's check: 1 byte free
  monkeypatch.setattr(parallel, 'free_memory_bytes', lambda mesh: next(free, 2**50))
  with pytest.raises(train.OutOfMemoryError) as error:
    train.train_and_evaluate(_small_run_config(2), str(tmp_path / 'state'))
  status, line = _one_line_status(error.value)
  assert status == 2 and 'GiB per device (the parameters and optimizer state, ' in line
  assert 'config.model.width (0.03125;' in line and 'batch_size' not in line, line
  monkeypatch.undo()
  free = iter([2**50, 1])  # the state fits; the compiled step's temporaries do not
  monkeypatch.setattr(parallel, 'free_memory_bytes', lambda mesh: next(free, 2**50))
  with pytest.raises(
      train.OutOfMemoryError,
      match="the step's temporaries and outputs .* " r'config.train.batch_size \(8;',
  ):
    train.train_and_evaluate(_small_run_config(2), str(tmp_path / 'step'))
  assert not any((tmp_path / 'step').glob('checkpoints/*'))


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
  config = _small_run_config(4)
  train.train_and_evaluate(config, str(tmp_path))
  latest = tmp_path / 'checkpoints' / '4'
  _truncate(latest)
  with caplog.at_level(logging.WARNING):
    _, state = inference.restore(config, str(tmp_path))
  assert int(state.step) == 2
  warning = '\n'.join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
  assert str(tmp_path / 'checkpoints' / '2') in warning
  assert str(latest) in warning
  # Training on from there redoes steps 3 and 4, and writes step 4 afresh: the unreadable
  # one is kept aside, not left to break an evaluation of step 4 later.
  assert int(train.train_and_evaluate(config, str(tmp_path)).step) == 4
  assert (tmp_path / checkpoints.UNREADABLE / '4' / 'default').is_dir()
  assert int(inference.restore(config, str(tmp_path), step=4)[1].step) == 4
  # Every checkpoint broken: the error says so (not "another config"), in one line.
  for step in ('2', '4'):
    _truncate(tmp_path / 'checkpoints' / step)
  with pytest.raises(checkpoints.CheckpointError) as error:
    train.train_and_evaluate(config, str(tmp_path))
  status, line = _one_line_status(error.value)
  assert status == 2 and line.count('\n') == 1, line
  assert 'cut short or corrupt' in line and 'config' not in line, line
  assert 'TensorStore' not in line


def test_checkpoint_of_another_model_config_is_a_clear_error(tmp_path):
  config = _small_run_config(2)
  train.train_and_evaluate(config, str(tmp_path))
  config.model.latent_dim = 4
  with pytest.raises(checkpoints.CheckpointError) as error:
    inference.restore(config, str(tmp_path))
  message = str(error.value)
  assert str(tmp_path / 'checkpoints') in message
  assert (
      "['params']['decoder']['Dense_0']['kernel']: checkpoint has (8, 1568), this config "
      'expects (4, 1568)'
  ) in message
  assert 'different model config' in message and '\n' not in message


def test_resume_under_a_changed_config_is_refused_unless_meant(tmp_path, monkeypatch):
  """A resume that changes what training computes is refused, naming each field and both
  values; free fields may differ; with allow_config_change (--allow_config_change) it goes
  on, keeps each config with its step, and evaluation and the report show the change."""
  monkeypatch.setattr(visualize, 'write_pictures', lambda *args: None)  # not tested here
  workdir = tmp_path / 'run'
  train.train_and_evaluate(_small_run_config(1), str(workdir))
  assert sorted(p.name for p in workdir.glob('config*.json')) == [
      'config.json',
      'config_0000000.json',
  ]
  (tmp_path / 'mnist').symlink_to(MNIST_DIR)
  free = _small_run_config(2, log_every=5, checkpoint_every=7, image_every=9, max_nonfinite_steps=3)
  free.data.dir = str(tmp_path / 'mnist')
  free.eval.num_samples = 50
  assert wae_config.check_resume(free, workdir, 1) == {}
  changed = free.copy_and_resolve_references()
  changed.penalty.lam = 3.0
  changed.cost.scale = 0.1

  def no_data(*args):
    raise AssertionError('loaded the data before refusing')

  with monkeypatch.context() as patch:
    patch.setattr(input_pipeline, 'load_dataset', no_data)
    with pytest.raises(wae_config.ConfigChangedError) as error:
      train.train_and_evaluate(changed, str(workdir))
  message = str(error.value)
  assert message.split('changed: ')[1].split('. ')[0] == (
      'cost.scale: 0.05 -> 0.1; penalty.lam: 10.0 -> 3.0'
  )
  assert (
      '--allow_config_change to go on under this one from step 1 (kept as ' 'config_0000001.json)'
  ) in message and str(workdir) in message
  assert json.loads((workdir / 'config.json').read_text())['penalty']['lam'] == 10.0

  assert int(train.train_and_evaluate(changed, str(workdir), allow_config_change=True).step) == 2
  configs = wae_config.recorded_configs(workdir)
  assert sorted(configs) == [0, 1]  # config_0000001.json: resumed at step 1, trained step 2
  assert [c['penalty']['lam'] for c in configs.values()] == [10.0, 3.0]
  assert json.loads((workdir / 'config.json').read_text())['penalty']['lam'] == 3.0

  # Evaluation records the configs its checkpoint was trained under; the report says so.
  monkeypatch.setattr(evaluate, 'make_context', lambda *args: None)

  class OneNumber:  # a number for the report's row; the metrics are tested elsewhere
    name = 'one_number'

    def run(self, context):
      return {'test_mse_per_pixel': {'value': 0.5, 'num_images': 1}}

  monkeypatch.setattr(evaluators, 'from_config', lambda config: [OneNumber()])
  first = {'step': 0, 'file': 'config_0000000.json', 'changed': {}}
  assert wae_config.config_changes(workdir, step=1) == [first]  # step 1 came before the change
  results = evaluate.evaluate(changed, str(workdir))
  assert results['configs'] == [
      first,
      {
          'step': 1,
          'file': 'config_0000001.json',
          'changed': {'cost.scale': [0.05, 0.1], 'penalty.lam': [10.0, 3.0]},
      },
  ]
  assert 'config changed from step 1: cost.scale: 0.05 -> 0.1; penalty.lam: 10.0 -> 3.0' in (
      evaluate.summary(results)
  )
  markdown = report.markdown_report([report.load_run(workdir, 'lam10to3')])
  assert (
      'lam10to3: its config changed during training: cost.scale 0.05 -> 0.1; penalty.lam '
      '10.0 -> 3.0 from step 1 (config_0000001.json).'
  ) in markdown


def test_no_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    inference.restore(_small_run_config(2), str(tmp_path / 'empty'))


# --- A full disk ------------------------------------------------------------------------------


def _checkpoint_folders(workdir):
  return sorted(p.name for p in (workdir / 'checkpoints').iterdir())


def _one_line_status(error):
  out = io.StringIO()
  return errors.report(error, file=out), out.getvalue()


def test_a_checkpoint_without_room_is_not_begun_and_names_path_bytes_and_intact_step(
    tmp_path, monkeypatch
):
  """The free space is checked before each save; here the disk is full once step 2's
  checkpoint is written."""
  real_disk_usage = shutil.disk_usage

  def disk_usage(path):
    usage = real_disk_usage(path)
    return usage._replace(free=1000) if (tmp_path / 'checkpoints' / '2').exists() else usage

  monkeypatch.setattr(shutil, 'disk_usage', disk_usage)
  config = _small_run_config(4)
  with pytest.raises(errors.OutOfSpaceError) as error:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(error.value)
  needed = int(re.search(r'needs about ([\d,]+) bytes', message).group(1).replace(',', ''))
  arrays = checkpoints.state_bytes(train.create_train_state(config, jax.random.PRNGKey(0), 1))
  assert arrays < needed < 1.1 * arrays + 2**21
  assert message == (
      f'out of space: checkpoint {tmp_path / "checkpoints" / "4"} needs about {needed:,} bytes '
      'but only 1,000 bytes are free on its file system. Free some space (or use a --workdir on '
      'a larger disk) and run the same command again; the last intact checkpoint is step 2 '
      f'({tmp_path / "checkpoints" / "2"}): the run will resume from it.'
  )
  assert _checkpoint_folders(tmp_path) == ['2']  # step 4 was not begun
  assert _one_line_status(error.value) == (2, f'error: {message}\n')
  assert int(inference.restore(config, str(tmp_path))[1].step) == 2


def test_a_disk_that_fills_up_during_a_save_leaves_the_last_intact_checkpoint_in_use(
    tmp_path, monkeypatch
):
  """The write itself meets ENOSPC (here orbax's last act, completing step 4's checkpoint):
  the same one-line error, and the half-written checkpoint, left as orbax's temporary folder,
  is never restored."""
  from orbax.checkpoint._src.path import atomicity  # pylint: disable=g-import-not-at-top

  finalize = atomicity.AtomicRenameTemporaryPath.finalize

  async def full_at_step_4(self):
    if self.get_final().name == '4':
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.get()))
    return await finalize(self)

  monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, 'finalize', full_at_step_4)
  config = _small_run_config(4)
  with pytest.raises(errors.OutOfSpaceError) as error:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(error.value)
  assert message.startswith(
      f'out of space: the disk filled up while checkpoint '
      f'{tmp_path / "checkpoints" / "4"} was written (it needs about '
  )
  assert message.endswith(
      f'the last intact checkpoint is step 2 '
      f'({tmp_path / "checkpoints" / "2"}): the run will resume from it.'
  )
  assert _one_line_status(error.value)[0] == 2
  folders = _checkpoint_folders(tmp_path)
  assert folders[0] == '2' and folders[1].startswith('4.orbax-checkpoint-tmp'), folders
  monkeypatch.undo()
  ckpts = checkpoints.Checkpoints(tmp_path)
  assert ckpts.all_steps() == [2]  # the partial one is not a checkpoint
  ckpts.close()
  assert int(inference.restore(config, str(tmp_path))[1].step) == 2


# --- Real processes, killed and preempted ---------------------------------------------------


def _main_command(workdir, num_steps, checkpoint_every):
  return [
      sys.executable,
      '-m',
      'wae_jax.main',
      '--config=configs/mnist.py:wae_mmd',
      f'--workdir={workdir}',
      '--config.model.width=0.03125',
      '--config.model.adversary_width=0.03125',
      '--config.train.batch_size=8',
      '--config.train.pretrain_steps=0',
      f'--config.train.num_steps={num_steps}',
      f'--config.train.checkpoint_every={checkpoint_every}',
      '--config.train.log_every=1',
      '--config.train.image_every=100000',
      f'--config.data.dir={MNIST_DIR}',
      *SHALLOW_FLAGS,  # _small_run_config's
  ]


def _env():
  return dict(os.environ, JAX_PLATFORMS='cpu')


def _wait_for_checkpoint(workdir, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    done = (
        [p for p in (workdir / 'checkpoints').glob('[0-9]*')]
        if (workdir / 'checkpoints').exists()
        else []
    )
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
    proc = subprocess.Popen(
        _main_command(workdir, steps, 1),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_checkpoint(workdir) if kills == 0 else None
    time.sleep(rng.uniform(0.5, 4.0))
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      kills += 1
    proc.wait()
  assert kills >= 2
  finish = subprocess.run(
      _main_command(workdir, steps, 1),
      cwd=REPO,
      env=_env(),
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert finish.returncode == 0, finish.stderr[-3000:]
  # Never interrupted: the command's training, in this process (no interpreter to start).
  config = _small_run_config(steps, checkpoint_every=1000)
  straight_state = train.train_and_evaluate(config, str(tmp_path / 'straight'))
  _, killed_state = inference.restore(config, str(workdir))
  assert int(killed_state.step) == int(straight_state.step) == steps
  _leaves_equal(killed_state, straight_state, atol=1e-6)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_signal_stops_with_a_checkpoint_and_the_resume_matches_an_uninterrupted_run(
    tmp_path, signum, terminal_sigint
):
  """A preemption (SIGTERM) or a Ctrl-C (SIGINT) finishes the step, checkpoints it, says so
  and exits 0; resumed (with a longer budget and other intervals: free fields), the run ends
  with the parameters of one never stopped."""
  workdir = tmp_path / 'stopped'
  proc = subprocess.Popen(
      _main_command(workdir, 100000, 50),
      cwd=REPO,
      env=_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )
  _wait_for_checkpoint(workdir)
  time.sleep(1.0)
  proc.send_signal(signum)
  output = proc.communicate(timeout=120)[0]
  assert proc.returncode == 0, output[-3000:]
  name = 'SIGTERM' if signum == signal.SIGTERM else r'SIGINT \(Ctrl-C\)'
  match = re.search(
      rf'{name} at step (\d+): wrote a checkpoint and stopped; run the same '
      'command again to resume',
      output,
  )
  assert match, output[-3000:]
  stopped_at = int(match.group(1))
  assert stopped_at > 50 and 'Traceback' not in output
  steps = sorted(int(p.name) for p in (workdir / 'checkpoints').glob('[0-9]*'))
  assert steps[-1] == stopped_at

  config = _small_run_config(stopped_at + 2, checkpoint_every=100000, log_every=100000)
  resumed = train.train_and_evaluate(config, str(workdir))
  straight = train.train_and_evaluate(config, str(tmp_path / 'straight'))
  assert int(resumed.step) == int(straight.step) == stopped_at + 2
  _leaves_equal(resumed, straight, atol=1e-6)
