"""The project's own errors, and the one way every command reports them.

A `WaeError` is a fault of the input or of the machine, not of the code: a bad config or
flag, bad data, a checkpoint that does not fit, a run gone non-finite, a full disk. Its
message names the cause and what to do, so a command prints it as one line,
`error: <message>`, and exits with status 2. Any other exception is a bug and keeps its
traceback. Each class keeps the built-in base its errors had before (ValueError,
RuntimeError, FileNotFoundError, OSError), so code that catches those still does.

`run(main)` is `absl.app.run(main)` with that reporting, for every command; `--verbose`
shows the traceback of the project's errors too.
"""

import contextlib
import errno
import logging as std_logging
import os
import pathlib
import shutil
import sys
import traceback
from typing import Callable, Iterator, List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging as absl_logging
from ml_collections.config_flags import config_flags  # is_config_flag, for external users

# The exit status of a command stopped by a WaeError (1 stays Python's, for bugs).
EXIT_STATUS = 2
# A file system that is full, or a user's quota on it: the same remedy.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class WaeError(Exception):
  """A fault of the input or the machine; the message says what is wrong and what to do."""


class ConfigError(WaeError, ValueError):
  """A config value, config file, config argument or sweep field that is not allowed."""


class FlagError(WaeError, ValueError):
  """A command-line flag or argument that is unknown, missing or malformed."""


class NotFoundError(WaeError, FileNotFoundError):
  """Something a command needs is not there: a checkpoint, a workdir, a results file."""


class OutOfSpaceError(WaeError, OSError):
  """A file system filled up: the message names the path, the bytes and what is intact."""

  def __init__(self, message: str):
    super().__init__(message)
    self.errno = errno.ENOSPC  # for code that asks an OSError why; str() stays the message


# The start of the message of a run stopped by its non-finite steps (train.NonFiniteError): how
# a sweep, which sees only a trial's output, tells a diverged trial from a failed one.
DIVERGED = 'diverged: '


def diverged(output: str) -> bool:
  """Whether a command's output holds the one error line of a diverged run."""
  return any(line.startswith(f'error: {DIVERGED}') for line in output.splitlines())


# ---------------------------------------------------------------------------------------------
# Full disks.


def _chain(error: Optional[BaseException]) -> Iterator[BaseException]:
  """`error` and the errors it was raised from or while handling, innermost last."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)


def is_out_of_space(error: BaseException) -> bool:
  """Whether `error`, or one it came from, is a full disk: an OSError with ENOSPC (or EDQUOT),
  or a library's error that kept only the text of one (tensorstore under orbax, TensorFlow's
  event writer)."""
  texts = [os.strerror(code) for code in _NO_SPACE]
  for e in _chain(error):
    if isinstance(e, OSError) and e.errno in _NO_SPACE:
      return True
    if any(text in str(e) for text in texts):
      return True
  return False


def free_bytes(path) -> Optional[int]:
  """Free bytes on the file system holding `path` (or its nearest existing parent); None if
  that cannot be asked (a remote path)."""
  path = pathlib.Path(path).absolute()
  for candidate in (path, *path.parents):
    if candidate.exists():
      try:
        return shutil.disk_usage(candidate).free
      except OSError:
        return None
  return None


def out_of_space_message(
    what: str,
    then: str = ' (a training run resumes from its last intact checkpoint)',
    larger_disk: bool = True,
) -> str:
  """The text of every full disk's error: `what` could not be written, the fix (free space, or
  a --workdir on a larger disk where the command wrote into one, and the same command again),
  then what the rerun starts from."""
  disk = ' (or use a --workdir on a larger disk)' if larger_disk else ''
  return f'out of space: {what}. Free some space{disk} and run the same command again{then}.'


def out_of_space(what: str, path) -> OutOfSpaceError:
  """The one-line error for `what` (e.g. 'the picture') that could not be written to `path`."""
  free = free_bytes(path)
  free = f'{free:,} bytes are free there' if free is not None else 'its free space is unknown'
  return OutOfSpaceError(out_of_space_message(f'cannot write {what} {path}; {free}'))


@contextlib.contextmanager
def out_of_space_as_error(what: str, path) -> Iterator[None]:
  """Turns a full disk met inside the block into `out_of_space(what, path)`."""
  try:
    yield
  except WaeError:
    raise
  except Exception as e:
    if not is_out_of_space(e):
      raise
    raise out_of_space(what, path) from e


# Orbax logs a dozen INFO lines per checkpoint; JAX's backend probe logs "Unable to initialize
# backend 'tpu'" on every machine without one.
_CHATTY_LIBRARIES = ('/orbax/', '/jax/_src/xla_bridge.py')
# orbax and clu log a full disk from their threads, with tracebacks, once per thread.
_BACKGROUND_WRITERS = ('/orbax/', '/clu/')


def library_log_filter(record: std_logging.LogRecord) -> bool:
  """The commands' log filter (`run` puts it on absl's handler): drops the libraries' INFO
  chatter, and their threads' records of a full disk, which the command reports in one line;
  keeps everything else, the libraries' warnings included."""
  if any(writer in record.pathname for writer in _BACKGROUND_WRITERS):
    error = record.exc_info[1] if record.exc_info else None
    if (error is not None and is_out_of_space(error)) or any(
        os.strerror(code) in record.getMessage() for code in _NO_SPACE
    ):
      return False
  return record.levelno >= std_logging.WARNING or not any(
      library in record.pathname for library in _CHATTY_LIBRARIES
  )


# ---------------------------------------------------------------------------------------------
# The commands.


def one_line(error: BaseException) -> str:
  """An error's message on one line (a log line, or inside another message)."""
  return ' '.join(line.strip() for line in str(error).strip().splitlines() if line.strip())


def report(error: BaseException, verbose: bool = False, file=None) -> Optional[int]:
  """Prints a project error, or a full disk met anywhere, as `error: <message>` and returns
  the exit status; None for anything else, a bug, which the caller re-raises so that its
  traceback is shown. `verbose`: the project error's traceback too."""
  file = file or sys.stderr
  if isinstance(error, WaeError):
    message = str(error).strip()
  elif is_out_of_space(error):
    message = out_of_space_message(one_line(error), larger_disk=False)
  else:
    return None
  if verbose:
    traceback.print_exception(error, file=file)
  print(f'error: {message}', file=file, flush=True)
  return EXIT_STATUS


def _flag_argument(argv: Sequence[str], name: str) -> Optional[str]:
  """The last value given to --name in argv (as --name=V, -name=V or --name V), or None."""
  value = None
  for i, arg in enumerate(argv[1:], 1):
    if arg == '--':
      break
    for prefix in (f'--{name}=', f'-{name}='):
      if arg.startswith(prefix):
        value = arg[len(prefix) :]
    if arg in (f'--{name}', f'-{name}') and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def _config_flags(flag_values) -> List[str]:
  """The names of ml_collections' config file flags among flag_values."""
  return sorted(
      {flag_values[n].name for n in flag_values if config_flags.is_config_flag(flag_values[n])}
  )


def _check_config_files(argv: Sequence[str], flag_values) -> None:
  """A missing config file, said at once. ml_collections would keep the error until the
  config is first used, or raise it from an override as a bare OSError."""
  for name in _config_flags(flag_values):
    spec = _flag_argument(argv, name)
    path = spec.split(':', 1)[0] if spec is not None else None
    if path is not None and not os.path.isfile(path):
      raise ConfigError(
          f'--{name}={spec}: config file {path!r} not found; config files are '
          f'found from the current directory, {os.getcwd()}: run from the '
          "checkout, or give the file's path"
      )


def _check_loaded_configs(flag_values) -> None:
  """A config file that raised OSError while loading: ml_collections keeps that error in
  the flag's value, raised on first use; raise it now, in one line."""
  for name in _config_flags(flag_values):
    try:
      getattr(flag_values[name].value, 'keys', None)
    except OSError as e:
      raise ConfigError(
          f'--{name}={flag_values[name].config_filename}: the config cannot be '
          f'loaded: {one_line(e.__cause__ or e)}'
      ) from e


def _unknown_field(argv: Sequence[str], flag_values, error: Exception) -> Optional[ConfigError]:
  """The override of a field the config lacks (`--config.model.fo=1`) as a ConfigError naming
  it, with ml_collections' "Did you mean ...?" if it has one; None if no override names the
  key of its KeyError (wrapped in an AttributeError when the key has a close match)."""
  while error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]
  key, *close_match = str(error.args[0]).splitlines() if error.args else ['']
  names = _config_flags(flag_values)
  for arg in argv[1:]:
    flag, _, field = arg.lstrip('-').split('=', 1)[0].partition('.')
    if flag in names and key.strip('\'"') in field.split('.'):
      listed = 'docs/config.md' if arg.startswith('--config.') else 'the config file'
      hint = f'; {" ".join(close_match)}' if close_match else ''
      return ConfigError(
          f'{arg}: the config has no field {field!r}{hint} ({listed} lists every field)'
      )
  return None


def parse_flags(argv: Sequence[str], flag_values=flags.FLAGS) -> List[str]:
  """absl's flag parsing (app.run's flags_parser), its failures raised as project errors.

  A config file's own error (a bad argument: `configs/mnist.py:wae_mdm`) reaches absl
  wrapped twice, once by ml_collections with the traceback as text, once by absl; the
  innermost WaeError is raised instead. An override of a field the config lacks
  (`--config.model.foo=1`), a bare KeyError or AttributeError from ml_collections, is a
  ConfigError naming it. Other flag errors become FlagError; a config file that fails with
  something else is a bug and keeps absl's error, traceback text included.
  """
  _check_config_files(argv, flag_values)
  try:
    args = flag_values(argv)
  except flags.Error as e:
    ours = [c for c in _chain(e) if isinstance(c, WaeError)]
    if ours:
      raise ours[-1] from None
    if 'Traceback (most recent call last)' in str(e):
      raise
    raise FlagError(f'{e} (--helpshort lists the flags)') from e
  except (AttributeError, KeyError) as e:
    unknown = _unknown_field(argv, flag_values, e)
    if unknown is None:
      raise
    raise unknown from e
  _check_loaded_configs(flag_values)
  return args


def _verbose(argv: Sequence[str]) -> bool:
  if flags.FLAGS.is_parsed() and 'verbose' in flags.FLAGS:
    return bool(flags.FLAGS.verbose)
  return any(arg in ('--verbose', '-verbose', '--verbose=true', '--verbose=1') for arg in argv[1:])


def run(main: Callable[[List[str]], object], argv: Optional[Sequence[str]] = None) -> None:
  """`absl.app.run(main)` for every command: a project error (or a full disk) ends it with
  one line, `error: <message>`, and exit status 2; a bug keeps its traceback."""
  if 'verbose' not in flags.FLAGS:
    flags.DEFINE_bool(
        'verbose',
        False,
        'Show the traceback of errors that are reported in '
        'one line (bad config, data, checkpoint, full disk); bugs always show it.',
    )
  argv = list(sys.argv if argv is None else argv)
  handler = absl_logging.get_absl_handler()
  if library_log_filter not in handler.filters:
    handler.addFilter(library_log_filter)

  def main_with_one_line_usage(args):
    try:
      return main(args)
    except app.UsageError as e:  # absl would print the whole help before it
      raise FlagError(f'{e} (--helpshort lists the flags)') from e

  try:
    app.run(main_with_one_line_usage, argv=argv, flags_parser=parse_flags)
  except Exception as e:  # pylint: disable=broad-except
    status = report(e, verbose=_verbose(argv))
    if status is None:
      raise
    sys.exit(status)
