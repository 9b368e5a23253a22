"""The project's errors: one line and exit status 2 for faults of the input or the machine, a
traceback for bugs. In-process and fast; tests/test_main.py runs the command itself."""

import errno
import gzip
import logging as std_logging
import os
import pathlib

from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags
import numpy as np
from PIL import Image
import pytest

from tests.helpers import REPO
from tests.helpers import load_config
from wae_jax import checkpoints
from wae_jax import config as wae_config
from wae_jax import data as datasets
from wae_jax import errors
from wae_jax import train
from wae_jax import visualize
from wae_jax.accelerators import aot
from wae_jax.data import mnist as mnist_data
from wae_jax.evaluation import inception

MNIST_CONFIG = str(REPO / 'configs' / 'mnist.py')


def test_each_project_error_keeps_the_builtin_base_callers_catch():
  for cls, base in [
      (errors.ConfigError, ValueError),
      (errors.FlagError, ValueError),
      (datasets.DataError, ValueError),
      (inception.WeightsError, ValueError),
      (aot.TopologyError, ValueError),
      (aot.DoesNotFitError, RuntimeError),
      (checkpoints.CheckpointError, RuntimeError),
      (train.NonFiniteError, RuntimeError),
      (errors.NotFoundError, FileNotFoundError),
      (errors.OutOfSpaceError, OSError),
  ]:
    assert issubclass(cls, errors.WaeError) and issubclass(cls, base), cls
  full = errors.OutOfSpaceError('out of space: x')
  assert str(full) == 'out of space: x' and full.errno == errno.ENOSPC


def test_config_checks_raise_config_errors():
  config = load_config('mnist', 'wae_mmd')
  config.model.latent_dim = 0
  with pytest.raises(errors.ConfigError, match=r'^config.model.latent_dim=0 is invalid'):
    wae_config.validate(config)
  with pytest.raises(errors.ConfigError, match="'wae_mdm' is not a value of any key"):
    wae_config.load_config_file(f'{MNIST_CONFIG}:wae_mdm')
  with pytest.raises(errors.ConfigError, match='not found'):
    wae_config.resolve_config_file('configs/nope.py')


def _report(error, verbose=False):
  lines = []

  class Out:

    def write(self, text):
      lines.append(text)

    def flush(self):
      pass

  status = errors.report(error, verbose=verbose, file=Out())
  return status, ''.join(lines)


def _raised(error):
  """`error` with a traceback, as a command meets it."""
  try:
    raise error
  except Exception as e:  # pylint: disable=broad-except
    return e


def test_report_is_one_line_and_status_2_and_a_bug_is_left_to_its_traceback(tmp_path):
  config = load_config('mnist', 'wae_mmd')
  config.penalty.kernel = 'laplace'
  with pytest.raises(errors.ConfigError) as bad_config:
    wae_config.validate(config)
  status, out = _report(bad_config.value)
  assert status == 2
  assert out == (
      "error: config.penalty.kernel='laplace' is not supported; allowed: 'rbf', "
      "'imq', 'imq_multiscale'\n"
  )
  # Data: a truncated IDX file, read for real.
  path = tmp_path / 'train-images-idx3-ubyte.gz'
  header = np.array([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28], np.uint8).tobytes()
  path.write_bytes(gzip.compress(header + bytes(28 * 28)))  # 1 of 2 images
  with pytest.raises(datasets.DataError) as bad_data:
    mnist_data.read_idx(path)
  status, out = _report(bad_data.value)
  assert status == 2 and out.startswith(f'error: {path}: truncated IDX file')
  assert len(out.splitlines()) == 1
  # A message of several lines keeps them (a checkpoint's differing arrays), with no traceback.
  status, out = _report(_raised(checkpoints.CheckpointError('no checkpoint fits\n  a: b')))
  assert (status, out) == (2, 'error: no checkpoint fits\n  a: b\n')
  # --verbose: the traceback too, then the same line.
  status, out = _report(_raised(errors.ConfigError('bad')), verbose=True)
  assert status == 2 and out.startswith('Traceback (most recent call last)')
  assert out.endswith('errors.ConfigError: bad\nerror: bad\n')
  # A bug: nothing printed, the caller re-raises it.
  assert _report(_raised(KeyError('bug'))) == (None, '')
  # A full disk met anywhere (here an unconverted OSError) is reported, not a bug.
  status, out = _report(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), '/w/config.json'))
  assert status == 2 and out.startswith(
      'error: out of space: [Errno 28] No space left on ' "device: '/w/config.json'"
  )


def test_full_disks_are_recognised_through_the_wrappers_libraries_put_around_them():
  assert errors.is_out_of_space(OSError(errno.ENOSPC, 'No space left on device'))
  assert errors.is_out_of_space(OSError(errno.EDQUOT, 'Disk quota exceeded'))
  # tensorstore under orbax: a ValueError with the OS's text.
  assert errors.is_out_of_space(
      ValueError(
          'RESOURCE_EXHAUSTED: Error writing "params" in OCDBT database: Failed to write 1332195 '
          "bytes to file 5: No space left on device [os_error_code='28']"
      )
  )
  try:  # clu's AsyncError, raised from TensorFlow's error
    try:
      raise RuntimeError('/w/events.out.tfevents.1; No space left on device')
    except RuntimeError as e:
      raise RuntimeError("Error '...' occurred ASYNCHRONOUSLY.") from e
  except RuntimeError as e:
    assert errors.is_out_of_space(e)
  assert not errors.is_out_of_space(OSError(errno.EACCES, 'Permission denied'))
  assert not errors.is_out_of_space(ValueError('something else'))


# --- The command line: flags and the wrapper ------------------------------------------------


def _parse(argv):
  """errors.parse_flags with a --config flag of its own, as wae_jax.main defines it."""
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file(
      'config', None, 'test', flag_values=flag_values, lock_config=True, sys_argv=argv
  )
  errors.parse_flags(argv, flag_values)
  return flag_values


def test_config_flag_errors_are_one_line(tmp_path):
  config = _parse(
      ['prog', f'--config={MNIST_CONFIG}:wae_gan,small', '--config.train.num_steps=3']
  ).config
  assert config.penalty.name == 'gan' and config.train.num_steps == 3
  # A missing file, with an override too (ml_collections raises a bare OSError there).
  for spec, argv in [
      ('configs/nope.py', ['prog', '--config=configs/nope.py']),
      (
          'configs/nope.py:wae_gan',
          ['prog', '--config', 'configs/nope.py:wae_gan', '--config.train.num_steps=1'],
      ),
  ]:
    with pytest.raises(errors.ConfigError) as error:
      _parse(argv)
    assert str(error.value).startswith(
        f"--config={spec}: config file 'configs/nope.py' not "
        'found; config files are found from the current '
        f'directory, {os.getcwd()}'
    )
  # A bad argument: the config file's own ConfigError, not the two wrappers around it.
  with pytest.raises(errors.ConfigError) as error:
    _parse(['prog', f'--config={MNIST_CONFIG}:wae_mdm'])
  assert "'wae_mdm' is not a value of any key" in str(error.value)
  assert 'Traceback' not in str(error.value) and '\n' not in str(error.value)
  # A field the config lacks; a value that does not parse.
  with pytest.raises(
      errors.ConfigError, match=r'^--config.model.fo=1: the config has no field ' r"'model.fo'"
  ):
    _parse(['prog', f'--config={MNIST_CONFIG}', '--config.model.fo=1'])
  with pytest.raises(
      errors.FlagError,
      match=r'^flag --config.model.latent_dim=abc: invalid ' r'literal for int\(\)',
  ):
    _parse(['prog', f'--config={MNIST_CONFIG}', '--config.model.latent_dim=abc'])
  # A config file with a bug keeps absl's error, with the file's traceback in it.
  buggy = tmp_path / 'buggy.py'
  buggy.write_text('def get_config():\n  return 1 + "a"\n')
  with pytest.raises(flags.IllegalFlagValueError, match='Traceback'):
    _parse(['prog', f'--config={buggy}'])


@pytest.fixture
def absl_app(monkeypatch):
  """errors.run in this process: absl's app.run without its handler on the root logger; the
  global flags parsed by the test are reset after it."""
  monkeypatch.setattr(absl_logging, 'use_absl_handler', lambda: None)
  absl_logger = std_logging.getLogger('absl')
  handler = absl_logging.get_absl_handler()
  level, filters = absl_logger.level, list(handler.filters)
  yield
  flags.FLAGS.unparse_flags()
  # Parsing the flags set absl's verbosity on its logger: later tests' caplog must see INFO.
  absl_logger.setLevel(level)
  handler.filters[:] = filters


def test_run_ends_a_project_error_with_one_line_and_status_2(absl_app, capsys):
  def main(argv):
    del argv
    raise errors.ConfigError('config.model.latent_dim=0 is invalid: must be >= 1')

  with pytest.raises(SystemExit) as exit_:
    errors.run(main, argv=['prog'])
  assert exit_.value.code == 2
  assert capsys.readouterr().err == 'error: config.model.latent_dim=0 is invalid: must be >= 1\n'
  flags.FLAGS.unparse_flags()
  with pytest.raises(SystemExit) as exit_:
    errors.run(main, argv=['prog', '--verbose'])
  err = capsys.readouterr().err
  assert exit_.value.code == 2 and err.startswith('Traceback (most recent call last)')
  assert 'in main' in err and err.endswith(
      'error: config.model.latent_dim=0 is invalid: must be ' '>= 1\n'
  )
  flags.FLAGS.unparse_flags()
  with pytest.raises(SystemExit) as exit_:  # a flag absl does not know
    errors.run(main, argv=['prog', '--no_such_flag=1'])
  err = capsys.readouterr().err
  assert exit_.value.code == 2 and err.startswith('error: Unknown command line flag')
  assert len(err.splitlines()) == 1


def test_run_leaves_a_bug_to_its_traceback(absl_app, capsys):
  def main(argv):
    del argv
    return {}['missing']

  with pytest.raises(KeyError):
    errors.run(main, argv=['prog'])
  assert 'error:' not in capsys.readouterr().err


# --- Pictures and event files on a full disk ------------------------------------------------


def test_a_picture_on_a_full_disk_is_one_error_naming_it_and_leaves_no_half_file(
    tmp_path, monkeypatch
):
  def fill_up(self, fp, *args, **kwargs):
    del self, args, kwargs
    pathlib.Path(fp).write_bytes(b'\x89PNG half')
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(Image.Image, 'save', fill_up)
  path = tmp_path / 'images' / 'samples_0000100.png'
  with pytest.raises(errors.OutOfSpaceError) as error:
    visualize.save_png(path, np.zeros((5, 5, 1), np.uint8))
  assert str(error.value).startswith(f'out of space: cannot write the picture {path}; ')
  assert 'bytes are free there' in str(error.value) and '\n' not in str(error.value)
  assert list(path.parent.iterdir()) == []


def test_event_files_on_a_full_disk_are_one_error_naming_the_file(tmp_path):
  event_file = tmp_path / 'events.out.tfevents.1.host.1.0.v2'
  event_file.write_bytes(b'')

  class FullDiskWriter:

    def write_scalars(self, step, scalars):
      del step, scalars

    def flush(self):
      raise RuntimeError(
          f"Error '{event_file}; No space left on device' occurred " 'ASYNCHRONOUSLY.'
      )

  writer = train.EventWriter(FullDiskWriter(), tmp_path)
  writer.write_scalars(1, {'loss': 1.0})
  with pytest.raises(
      errors.OutOfSpaceError,
      match=f'^out of space: cannot write TensorBoard events to {event_file}; ',
  ):
    writer.flush()


def test_library_chatter_and_their_threads_full_disks_are_dropped_and_warnings_kept():
  def record(path, level, message='message', error=None):
    exc_info = (type(error), error, None) if error else None
    return std_logging.LogRecord('jax', level, path, 1, message, (), exc_info)

  xla_bridge = '/venv/site-packages/jax/_src/xla_bridge.py'
  orbax = '/venv/site-packages/orbax/checkpoint/checkpointer.py'
  clu = '/venv/site-packages/clu/metric_writers/async_writer.py'
  ours = '/repo/wae_jax/train.py'
  full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  for dropped in (
      record(xla_bridge, std_logging.INFO),
      record(orbax, std_logging.INFO),
      record(orbax, std_logging.ERROR, 'save failed', full),
      record(clu, std_logging.ERROR, f'write failed: {os.strerror(errno.ENOSPC)}'),
  ):
    assert not errors.library_log_filter(dropped), dropped
  for kept in (
      record(xla_bridge, std_logging.WARNING),
      record(orbax, std_logging.ERROR, 'save failed', OSError(errno.EACCES, 'Permission denied')),
      record(ours, std_logging.INFO),
      record(ours, std_logging.ERROR, f'write failed: {os.strerror(errno.ENOSPC)}'),
  ):
    assert errors.library_log_filter(kept), kept


def test_run_puts_the_log_filter_on_abseils_handler_once(absl_app):
  for _ in range(2):
    with pytest.raises(SystemExit) as exit_:
      errors.run(lambda argv: None, argv=['prog'])
    assert exit_.value.code is None
    flags.FLAGS.unparse_flags()
  assert absl_logging.get_absl_handler().filters.count(errors.library_log_filter) == 1
