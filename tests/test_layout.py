"""The package's shape: modules import alone, without cycles, torch or the checkout."""

import ast
import pathlib
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.helpers import REPO
from tests.helpers import tiny_config
from wae_jax import inference

PACKAGE = REPO / 'wae_jax'
# Outside the runtime package: what training and evaluation never run.
NOT_IN_PACKAGE = ('torch', 'benchmarks', 'tests', 'configs', 'launch')


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


MODULES = sorted(_module_name(p) for p in PACKAGE.rglob('*.py'))


def _imports(path: pathlib.Path):
  """The modules a file imports at its top level (what importing it runs), as dotted names."""
  found = set()
  for node in ast.parse(path.read_text()).body:
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      found.add(node.module)
      found.update(f'{node.module}.{alias.name}' for alias in node.names)
  return found


def _graph():
  """wae_jax module -> the wae_jax modules it imports at its top level (parents included)."""
  graph = {}
  for path in PACKAGE.rglob('*.py'):
    name = _module_name(path)
    edges = set()
    for imported in _imports(path):
      parts = imported.split('.')
      for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
        prefix = '.'.join(parts[:i])
        if prefix in MODULES and prefix != name and not name.startswith(prefix + '.'):
          edges.add(prefix)
    graph[name] = edges
  return graph


def test_the_package_has_its_concerns_in_folders():
  for package in ('wae_jax.models', 'wae_jax.evaluation', 'wae_jax.accelerators', 'wae_jax.sweep'):
    assert package in MODULES
  assert not any(m.split('.')[-1] in ('benchmark', 'torch_reference') for m in MODULES)


def test_no_module_imports_torch_benchmarks_or_the_tests():
  for path in PACKAGE.rglob('*.py'):
    text = path.read_text()
    for node in ast.walk(ast.parse(text)):
      names = (
          [a.name for a in node.names]
          if isinstance(node, ast.Import)
          else [node.module or '']
          if isinstance(node, ast.ImportFrom)
          else []
      )
      for name in names:
        assert name.split('.')[0] not in NOT_IN_PACKAGE, f'{path} imports {name}'


def _cycle(graph):
  """One import cycle of `graph` as a list of modules (first == last), or None."""
  state = {}

  def visit(module, stack):
    if state.get(module) == 'open':
      return stack + [module]
    if state.get(module) == 'done':
      return None
    state[module] = 'open'
    for imported in sorted(graph[module]):
      found = visit(imported, stack + [module])
      if found:
        return found
    state[module] = 'done'
    return None

  for module in sorted(graph):
    found = visit(module, [])
    if found:
      return found[found.index(found[-1]) :]
  return None


def test_the_import_graph_has_no_cycle():
  graph = _graph()
  assert 'wae_jax.train' in graph['wae_jax.inference']  # the graph sees real imports
  assert _cycle(graph) is None, ' -> '.join(_cycle(graph))


def test_a_cycle_is_found():
  assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'b'}}) == ['b', 'c', 'b']
  assert _cycle({'a': {'b'}, 'b': set()}) is None


# What the package's modules import from outside it, loaded once before the children fork:
# each child then imports one wae_jax module first, as a fresh interpreter would (so an
# import-order cycle still fails), without paying a second each for JAX.
_THIRD_PARTY = (
    'absl',
    'flax',
    'jax',
    'matplotlib',
    'ml_collections',
    'numpy',
    'optax',
    'orbax.checkpoint',
    'PIL',
    'scipy',
    'sklearn.mixture',
)
_FORK_EACH = """
import importlib, os, sys
for library in {libraries!r}:
  importlib.import_module(library)
assert not any(m.startswith('wae_jax') for m in sys.modules)
failed = []
for module in {modules!r}:
  read, write = os.pipe()
  pid = os.fork()
  if pid == 0:
    os.close(read)
    try:
      importlib.import_module(module)
      assert 'torch' not in sys.modules, 'torch imported'
      assert 'tensorflow' not in sys.modules, 'tensorflow imported'
      os._exit(0)
    except BaseException as e:
      os.write(write, f'{{type(e).__name__}}: {{e}}'.encode())
      os._exit(1)
  os.close(write)
  with os.fdopen(read) as reason:
    message = reason.read()
  if os.waitpid(pid, 0)[1]:
    failed.append(f'{{module}}: {{message.strip().splitlines()[-1:] or "crashed"}}')
print('\\n'.join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_alone_without_torch_or_tensorflow_outside_the_checkout(tmp_path):
  """Each module first, in a process that has imported no other module of the package (so
  an import-order cycle would fail), run from a folder outside the checkout (so nothing leans
  on the working directory). None imports TensorFlow: only TFDS data and the TensorBoard
  writer need it, and they import it when they run, so the benchmark and the AOT compiler
  start on an accelerator image without it."""
  script = _FORK_EACH.format(libraries=_THIRD_PARTY, modules=MODULES)
  result = subprocess.run(
      [sys.executable, '-c', script], cwd=tmp_path, capture_output=True, text=True, timeout=900
  )
  assert result.returncode == 0, result.stdout + result.stderr


def test_the_benchmark_and_the_aot_compiler_start_without_tensorflow():
  code = (
      'import sys, benchmarks.benchmark, wae_jax.accelerators.aot, wae_jax.main; '
      'print(sorted(m for m in sys.modules if m.split(".")[0] in '
      '("tensorflow", "tensorflow_datasets", "torch")))'
  )
  result = subprocess.run(
      [sys.executable, '-c', code],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
      check=True,
  )
  assert result.stdout.strip().splitlines()[-1] == '[]', result.stdout


def test_nothing_points_outside_the_repository():
  for path in list(PACKAGE.rglob('*.py')) + list((REPO / 'configs').glob('*.py')):
    text = path.read_text()
    for outside in ('../shared/docs', 'DESIGN.md'):
      assert outside not in text, f'{path} refers to {outside}, which is not in this repository'


def test_a_checkpoint_written_before_the_new_layout_restores_and_samples_the_same(
    tmp_path, fully_optimized
):
  """tests/data/checkpoint_9ebb13e: 2 steps of a 1/32-width WAE-GAN trained by commit 9ebb13e
  (the flat package), with the sample grid that commit decoded from it."""
  old = REPO / 'tests' / 'data' / 'checkpoint_9ebb13e'
  shutil.copytree(old / 'checkpoints', tmp_path / 'checkpoints')
  config = tiny_config('wae_gan')
  _, state = inference.restore(config, str(tmp_path))
  assert int(state.step) == 2 and state.adversary_params
  path = inference.sample(config, str(tmp_path))
  np.testing.assert_array_equal(
      np.asarray(Image.open(path)), np.asarray(Image.open(old / 'samples_step2.png'))
  )
