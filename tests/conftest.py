"""The test session's environment (CPU only, a shared compilation cache) and fixtures.

Helpers that tests import (tiny configs, where MNIST is) are in tests/helpers.py.
"""

import importlib
import os
import shutil
import signal
import tempfile

import pytest

# As in benchmarks/benchmark.py: triton (with PyTorch's CUDA builds) crashes the process when it
# loads after TensorFlow, which many tests import; load it first, if it is there.
try:
  importlib.import_module('triton')
except ImportError:
  pass

# Tests run on the CPU whatever the machine has, and compile for TPUs and GPUs with libtpu and
# JAX's CUDA plugin (tests/test_aot.py), which need no such hardware.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('JAX_SKIP_CUDA_CONSTRAINTS_CHECK', '1')

# JAX's "try not to do much optimization work" (XLA's backend at LLVM's -O0), here and in the
# runs the tests start (they inherit it): the tests' tiny programs compile in half the time or
# less (a tiny model's init 7.7 -> 0.8 s, its train step 7.5 -> 3.6 s) and run up to 2 times
# slower. Results may differ in the last bit; the fully_optimized fixture restores XLA's
# default where a test compares with numbers computed under it.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
# And for the GPUs tests/test_aot.py compiles for, without one: no autotuning of kernels and no
# ptxas optimisations. A tiny GPU step compiles in 9 s instead of 15, to the same memory
# figures.
if 'xla_gpu_autotune_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = ' '.join(
      [
          os.environ.get('XLA_FLAGS', ''),
          '--xla_gpu_autotune_level=0 --xla_gpu_disable_gpuasm_optimizations=true',
      ]
  ).strip()

# Many tests compile the same tiny steps, in this process, in the runs they start and in
# pytest-xdist's workers: one persistent compilation cache per test session serves them all
# (set before JAX starts, by the first process; the workers inherit it). Removed when the
# session ends, by the process that made it.
_COMPILE_CACHE = None
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _COMPILE_CACHE = tempfile.mkdtemp(prefix='wae_jax_test_compile_cache_')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _COMPILE_CACHE
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')


# The files that take longest, longest first (their totals in a full run): pytest-xdist's
# workers take whole files (--dist loadfile), in this order (--no-loadscope-reorder), so that
# none of these starts late and ends the session alone. The rest follow in collection order.
_LONGEST_FIRST = (
    'test_reliability.py',
    'test_aot.py',
    'test_packed.py',
    'test_penalty_registry.py',
    'test_multihost.py',
    'test_ray_sweep.py',
    'test_train.py',
    'test_main.py',
    'test_torch_reference.py',
    'test_benchmark.py',
    'test_data_parallel.py',
    'test_evaluate.py',
    'test_sweep_plan.py',
)


def _start_rank(item) -> int:
  file_name = item.nodeid.split('::')[0].rsplit('/', 1)[-1]
  return _LONGEST_FIRST.index(file_name) if file_name in _LONGEST_FIRST else len(_LONGEST_FIRST)


def pytest_collection_modifyitems(items):
  items.sort(key=_start_rank)


def pytest_xdist_auto_num_workers(config):
  """`-n auto`: one worker more than there are cores (a worker often waits on the runs its
  test started: 12.5 min against 14.3 for the suite on 2 cores), at most 8."""
  del config
  return min((os.cpu_count() or 1) + 1, 8)


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _COMPILE_CACHE:
    shutil.rmtree(_COMPILE_CACHE, ignore_errors=True)


from tests.helpers import MNIST_DIR  # noqa: E402  (after the environment above)


@pytest.fixture(scope='session')
def mnist_dir():
  if not (MNIST_DIR / 'train-images-idx3-ubyte.gz').exists():
    raise FileNotFoundError(
        f'the MNIST IDX files are expected in {MNIST_DIR} ' '(or set WAE_JAX_MNIST_DIR)'
    )
  return MNIST_DIR


@pytest.fixture
def fully_optimized():
  """XLA's default optimisations (not the session's fast compiles), for a test that compares
  bit for bit with numbers computed under them, or that spends more time running its steps
  than compiling them. Compiled anew: a cached program may be the session's."""
  import jax  # pylint: disable=g-import-not-at-top

  fast = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', False)
  jax.clear_caches()
  yield
  jax.config.update('jax_disable_most_optimizations', fast)
  jax.clear_caches()


@pytest.fixture
def terminal_sigint():
  """SIGINT as a program started from a terminal has it, here and in the runs a test starts.

  A test session started in the background of a script inherits SIGINT ignored, and so would
  its subprocesses (Python keeps an ignored SIGINT ignored); a handler, unlike an ignored
  signal, is reset to the default in a started program.
  """
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
  signal.signal(signal.SIGINT, previous)
