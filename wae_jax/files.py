"""Files written whole or not at all: a killed run leaves the old file or the new one, never half.

Every file the package writes for later runs to read (caches, trial records, results, the
classifier's weights) goes through `atomic_path`.
"""

import contextlib
import json
import os
import pathlib
import tempfile
from typing import Any, Iterator


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
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)


def write_bytes(path, data: bytes) -> pathlib.Path:
  with atomic_path(path) as tmp:
    tmp.write_bytes(data)
  return pathlib.Path(path)


def write_json(path, data: Any) -> pathlib.Path:
  """Indented JSON; values JSON cannot hold (paths, numpy scalars) are written as text."""
  with atomic_path(path) as tmp:
    tmp.write_text(json.dumps(data, indent=2, default=str))
  return pathlib.Path(path)
