"""The code is formatted by pyink and passes ruff's checks, as pyproject.toml configures them."""

import subprocess
import sys

from tests.helpers import REPO


def _run(*args):
  return subprocess.run(
      [sys.executable, '-m', *args], cwd=REPO, capture_output=True, text=True, timeout=300
  )


def test_the_code_is_formatted():
  result = _run('pyink', '--check', '.')
  assert result.returncode == 0, f'run `pyink .` to format:\n{result.stderr[-3000:]}'


def test_the_linter_passes():
  result = _run('ruff', 'check', '.')
  assert result.returncode == 0, f'ruff check . found:\n{result.stdout[-3000:]}'
