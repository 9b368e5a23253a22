"""End to end through the command line, as a user runs it."""

import os
import subprocess
import sys

from PIL import Image

from tests.helpers import MNIST_DIR
from tests.helpers import REPO
from tests.helpers import SHALLOW_FLAGS
from tests.helpers import error_line


def _command(*args, env=None, timeout=600):
  return subprocess.run(
      [sys.executable, '-m', 'wae_jax.main', *args],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=timeout,
      env={**os.environ, **(env or {})},
  )


def _run(*args, env=None):
  result = _command(*args, env=env)
  assert result.returncode == 0, result.stderr[-4000:]
  return result


def _run_failing(*args):
  """The one `error:` line of a command that must be refused (tests.helpers.error_line)."""
  return error_line(_command(*args, timeout=300))


def test_cli_trains_checkpoints_draws_and_samples(tmp_path, mnist_dir):
  workdir = tmp_path / 'run'
  result = _run(
      '--config=configs/mnist.py:wae_mmd,small',
      f'--workdir={workdir}',
      '--config.train.num_steps=6',
      '--config.train.log_every=2',
      '--config.train.checkpoint_every=3',
      '--config.train.image_every=6',
      '--config.train.pretrain_steps=2',
      '--config.model.width=0.0625',
      env={'WAE_JAX_MNIST_DIR': str(mnist_dir)},
  )
  log = result.stderr
  assert 'Traceback' not in log and 'Unable to initialize backend' not in log
  assert 'IDX files' in log  # which data source was used
  assert 'steps/s' in log and 'ETA' in log  # the progress line
  steps = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())
  assert steps == [3, 6]
  assert list(workdir.glob('events.out.tfevents.*'))
  for name in ('samples', 'reconstructions', 'interpolations'):
    with Image.open(workdir / 'images' / f'{name}_0000006.png') as image:
      image.load()
      assert min(image.size) > 28

  # The model is built from the config the run recorded, whatever --config says.
  result = _run(
      '--config=configs/mnist.py:wae_mmd,small',
      f'--workdir={workdir}',
      '--mode=sample',
      '--config.model.latent_dim=16',
  )
  assert 'model.latent_dim: 8 -> 16; model.width: 0.0625 -> 0.125' in result.stderr
  with Image.open(workdir / 'samples_step6.png') as image:
    assert image.size == (8 * 29 + 1, 8 * 29 + 1)


def test_cli_sample_without_checkpoint_says_what_is_missing(tmp_path):
  line = _run_failing(
      '--config=configs/mnist.py:wae_mmd,small', f'--workdir={tmp_path}', '--mode=sample'
  )
  assert line == (
      f'error: no checkpoint in {tmp_path / "checkpoints"}: train '
      f'first with --mode=train --workdir={tmp_path}'
  )


def test_cli_config_file_missing_is_one_line_at_flag_parsing(tmp_path):
  """ml_collections loads the file while absl parses the flags: the error surfaces there (with
  an override, as a bare OSError), not in main. The other config and data errors, raised in
  main, are covered in-process (tests/test_errors.py) and by the test above."""
  line = _run_failing(
      '--config=configs/nope.py:wae_gan', f'--workdir={tmp_path}', '--config.train.num_steps=1'
  )
  assert line == (
      "error: --config=configs/nope.py:wae_gan: config file 'configs/nope.py' not found; "
      f'config files are found from the current directory, {REPO}: run from the checkout, or '
      "give the file's path"
  )


def test_cli_refuses_an_infinite_learning_rate_before_writing_anything(tmp_path):
  workdir = tmp_path / 'run'
  line = _run_failing(
      '--config=configs/mnist.py:wae_mmd,small',
      f'--workdir={workdir}',
      '--config.train.learning_rate=inf',
  )
  assert line == ('error: config.train.learning_rate=inf is invalid: must be > 0 ' 'and finite')
  assert not workdir.exists()


def test_cli_refuses_a_workdir_that_is_a_file_in_every_mode(tmp_path):
  workdir = tmp_path / 'notes.txt'
  workdir.write_text('not a workdir')
  for mode in ('train', 'sample'):
    line = _run_failing(
        '--config=configs/mnist.py:wae_mmd,small', f'--workdir={workdir}', f'--mode={mode}'
    )
    assert line == (
        f'error: --workdir={workdir} is a file, not a directory: '
        'pass a directory (it is created if missing)'
    )
  assert workdir.read_text() == 'not a workdir'


def test_cli_sample_of_a_checkpoint_of_another_shape_is_one_line_and_no_tracebacks(tmp_path):
  """orbax's failed reads of arrays of another shape printed hundreds of 'Event loop is
  closed' tracebacks around the error; the shapes are now compared before reading."""
  workdir = tmp_path / 'run'
  flags = [
      '--config=configs/mnist.py:wae_mmd,small',
      f'--workdir={workdir}',
      '--config.model.width=0.03125',
      '--config.train.num_steps=1',
      '--config.train.pretrain_steps=0',
      '--config.train.batch_size=8',
      *SHALLOW_FLAGS,
  ]
  _run(*flags, f'--config.data.dir={MNIST_DIR}')
  for record in workdir.glob('config*.json'):  # as an older run's: the given config is used
    record.unlink()
  result = _command(*flags, '--mode=sample', '--config.model.latent_dim=16', timeout=300)
  line = error_line(result)
  assert line.startswith(f'error: no checkpoint in {workdir / "checkpoints"} fits this config')
  assert 'checkpoint has (8, 1568), this config expects (16, 1568)' in line
  assert len(result.stderr.splitlines()) < 200 and 'Event loop' not in result.stderr
