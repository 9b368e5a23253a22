"""The install: constraints.txt pins what requirements.txt and the extras allow, the README's
two commands install with it, and CI runs those two commands as the README writes them."""

import configparser
import importlib.metadata
import re
import subprocess

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
import pytest

from tests.helpers import REPO

LOCK = REPO / 'constraints.txt'
REGENERATE = 'uv pip compile setup.cfg --all-extras'


def _lock():
  """constraints.txt as {canonical name: version}; every line a comment or `name==version`."""
  pins = {}
  for line in LOCK.read_text().splitlines():
    line = line.strip()
    if not line or line.startswith('#'):
      continue
    match = re.fullmatch(r'([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)', line)
    assert match, f'constraints.txt: {line!r} is not an exact pin (name==version)'
    pins[canonicalize_name(match[1])] = Version(match[2])
  return pins


def _requirements():
  """requirements.txt and every extra of setup.cfg, as packaging Requirements."""
  lines = (REPO / 'requirements.txt').read_text().splitlines()
  setup = configparser.ConfigParser()
  setup.read(REPO / 'setup.cfg')
  for extra in setup['options.extras_require'].values():
    lines += extra.splitlines()
  return [
      Requirement(line) for line in (l.strip() for l in lines) if line and not line.startswith('#')
  ]


def test_the_lock_pins_every_requirement_within_its_range():
  pins = _lock()
  requirements = _requirements()
  assert len(requirements) > 15  # the parsing saw them
  for requirement in requirements:
    name = canonicalize_name(requirement.name)
    assert name in pins, f'{requirement} is not pinned in constraints.txt'
    assert requirement.specifier.contains(pins[name], prereleases=True), (
        f'constraints.txt pins {name}=={pins[name]}, outside {requirement} '
        f'(regenerate it: {REGENERATE} ..., as its header says)'
    )


def test_the_lock_says_how_it_was_made():
  header = LOCK.read_text().split('\n', 3)
  assert REGENERATE in header[1] and '--python-version 3.12' in header[1], header[:2]


def test_the_accelerator_plugins_are_the_builds_of_the_pinned_jax():
  """jax pins the libtpu and CUDA plugin builds its extras need: the lock holds those."""
  pins = _lock()
  jax = pins['jax']
  assert pins['jaxlib'] == jax
  for plugin in ('jax-cuda12-plugin', 'jax-cuda12-pjrt'):
    assert pins[plugin] == jax, f'{plugin}=={pins[plugin]} against jax=={jax}'
  if Version(importlib.metadata.version('jax')) == jax:  # jax's own metadata says which libtpu
    tpu = [
        Requirement(r)
        for r in importlib.metadata.requires('jax')
        if Requirement(r).name == 'libtpu' and 'tpu' in str(Requirement(r).marker)
    ]
    assert tpu and all(r.specifier.contains(pins['libtpu']) for r in tpu), tpu


@pytest.mark.parametrize(
    'package',
    ['jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy', 'tensorflow-cpu', 'pytest'],
)
def test_the_tests_run_on_the_lock(package):
  """The lock is what is tested: this environment was installed with it."""
  installed = Version(importlib.metadata.version(package))
  assert installed == _lock()[canonicalize_name(package)], (
      f'{package} {installed} is installed, constraints.txt pins {_lock()[package]}: install '
      'with pip install -c constraints.txt -e ".[test]"'
  )


def _readme_command(n: int) -> str:
  return subprocess.run(
      ['bash', str(REPO / '.ci' / 'readme_command'), str(n)],
      capture_output=True,
      text=True,
      check=True,
  ).stdout.strip()


def test_the_readme_commands_install_with_the_lock_and_ci_runs_them():
  first, second = _readme_command(1), _readme_command(2)
  assert first.startswith('python3.12 -m venv .venv && . .venv/bin/activate && ')
  assert 'pip install -c constraints.txt -e . && ' in first
  assert 'python -m wae_jax.main ' in first and '[test]' not in first
  assert 'pip install -c constraints.txt -e ".[test]" && python -m pytest' in second
  ci = (REPO / '.ci' / 'run').read_text()
  assert 'readme_command "$n"' in ci and 'for n in 1 2' in ci
  assert 'pip install' not in ci  # nothing installed that the README does not install
