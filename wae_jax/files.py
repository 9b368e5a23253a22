"""Files written whole or not at all: a killed run leaves the old file or the new one, never half.

Every file the package writes for later runs to read (caches, trial records, results, the
classifier's weights) goes through `atomic_path`. A workdir is trained in by one run at a time
(`workdir_lock`).
"""

import contextlib
import datetime
import fcntl
import json
import os
import pathlib
import tempfile
from typing import Any, Iterator

from wae_jax import errors

# The lock file a training run holds in its workdir.
LOCK_FILE = '.training.lock'


class WorkdirError(errors.WaeError, RuntimeError):
  """A workdir that cannot be trained in: not a directory, or another run is training in it."""


@contextlib.contextmanager
def atomic_path(path) -> Iterator[pathlib.Path]:
  """Yields a temporary path beside `path` to write; on success one rename makes it `path`.

  The temporary name ends with `path`'s suffix, so writers that add one (np.save) keep it.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix=f'.tmp{path.suffix}')
  os.close(fd)
  tmp = pathlib.Path(tmp)
  try:
    yield tmp
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from the group
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)


def _umask() -> int:
  """The process's umask, read without setting it (os.umask would, for every thread)."""
  try:
    with open('/proc/self/status') as status:
      for line in status:
        if line.startswith('Umask:'):
          return int(line.split()[1], 8)
  except OSError:
    pass
  return 0o022


def write_bytes(path, data: bytes) -> pathlib.Path:
  with atomic_path(path) as tmp:
    tmp.write_bytes(data)
  return pathlib.Path(path)


def write_json(path, data: Any) -> pathlib.Path:
  """Indented JSON; values JSON cannot hold (paths, numpy scalars) are written as text."""
  with atomic_path(path) as tmp:
    tmp.write_text(json.dumps(data, indent=2, default=str))
  return pathlib.Path(path)


def check_workdir(workdir) -> pathlib.Path:
  """`workdir` as a path; WorkdirError if it is a file (every command reads or writes in it)."""
  workdir = pathlib.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise WorkdirError(
        f'--workdir={workdir} is a file, not a directory: pass a directory '
        '(it is created if missing)'
    )
  return workdir


@contextlib.contextmanager
def workdir_lock(workdir) -> Iterator[pathlib.Path]:
  """Creates `workdir` if needed and holds its lock while a run trains in it.

  A second run started on the same workdir is refused (WorkdirError) instead of both writing
  checkpoints and event files. The lock is the kernel's (flock) on an open file, so a run that
  is killed, even with SIGKILL, releases it; the file only tells the next run who holds it.
  """
  workdir = check_workdir(workdir)
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except (FileExistsError, NotADirectoryError) as e:
    raise WorkdirError(
        f'--workdir={workdir} cannot be created: {e.strerror} ({e.filename}); '
        'pass a directory path whose parents are directories'
    ) from e
  path = workdir / LOCK_FILE
  with open(path, 'a+') as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      lock.seek(0)
      holder = lock.read().strip() or 'another process'
      raise WorkdirError(
          f'another run is training in {workdir} ({holder}): wait for it to end '
          'or stop it, or pass another --workdir'
      ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(
        f'pid {os.getpid()} on {os.uname().nodename}, since '
        f'{datetime.datetime.now().isoformat(timespec="seconds")}'
    )
    lock.flush()
    try:
      yield workdir
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
