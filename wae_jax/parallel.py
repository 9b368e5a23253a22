"""Data parallelism: one mesh axis, 'data', over every device of every process.

The train step is jitted over the *global* batch: parameters and optimizer state are
replicated, images are split along 'data'. Every reduction the loss makes (the MMD's sums
over all pairs of codes, the adversary's batch, BatchNorm's statistics, the mean cost) is
over the global batch, so the estimator is the one a single device computes; XLA inserts
the all-gathers and all-reduces. Random numbers are drawn for the global shape from a
per-step key, so each device gets its own slice of them.

On several hosts each process loads only its rows of every global batch
(`process_rows`) and `global_batch` assembles the distributed array. `StopSignal` turns a
SIGTERM (a preemption) or a Ctrl-C into a clean stop at the same step on every process.
"""

import os
import signal
import threading
from typing import Callable, Optional, Sequence

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
import numpy as np

from wae_jax import errors
from wae_jax import input_pipeline

DATA_AXIS = 'data'
# Set by a launcher that is not SLURM, Open MPI or a TPU pod (JAX detects those itself):
# JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES=N, JAX_PROCESS_ID=i.
COORDINATOR_ENV = 'JAX_COORDINATOR_ADDRESS'
NUM_PROCESSES_ENV = 'JAX_NUM_PROCESSES'
PROCESS_ID_ENV = 'JAX_PROCESS_ID'


def _env_int(name: str) -> int:
  try:
    return int(os.environ.get(name, '1') or '1')
  except ValueError:
    return 1


def multi_process_environment() -> bool:
  """Whether the environment launched several cooperating processes of this program."""
  tpu_hosts = os.environ.get('TPU_WORKER_HOSTNAMES', '') or os.environ.get(
      'TPU_PROCESS_ADDRESSES', ''
  )
  return bool(
      os.environ.get(COORDINATOR_ENV)
      or _env_int('SLURM_NTASKS') > 1
      or _env_int('OMPI_COMM_WORLD_SIZE') > 1
      or ',' in tpu_hosts
  )


def initialize_distributed(mode: str = 'auto') -> bool:
  """Calls `jax.distributed.initialize()` when asked ('on') or when the environment is
  a multi-process launch ('auto'); returns whether it did. Must run before any JAX work.
  """
  if mode not in ('auto', 'on', 'off'):
    raise ValueError(f'--distributed={mode!r}; allowed: auto, on, off')
  if mode == 'off' or (mode == 'auto' and not multi_process_environment()):
    return False
  kwargs = {}
  if os.environ.get(COORDINATOR_ENV):
    for key, env in (('num_processes', NUM_PROCESSES_ENV), ('process_id', PROCESS_ID_ENV)):
      if env not in os.environ:
        raise errors.ConfigError(f'{COORDINATOR_ENV} is set, so {env} must be set too')
      kwargs[key] = int(os.environ[env])
  # CPU processes (tests, CPU clusters) exchange data through gloo; accelerators ignore this.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**kwargs)
  logging.info(
      'jax.distributed: process %d of %d, %d local of %d devices',
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.device_count(),
  )
  return True


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-d mesh over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """The global batch must split evenly over the devices (and so over the processes)."""
  devices = mesh.devices.size
  if batch_size % devices:
    raise errors.ConfigError(
        f'config.train.batch_size={batch_size} is not divisible by the {devices} devices '
        f'of the mesh; allowed: a multiple of {devices}, e.g. '
        f'{devices * max(1, round(batch_size / devices))}'
    )


def free_memory_bytes(mesh: Mesh) -> Optional[int]:
  """The bytes each device of this process can still allocate: its allocator's limit less
  what it holds (GPU, TPU), or the host's available memory shared by this process's CPU
  devices; None where unknown."""
  local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
  if not local:
    return None
  if local[0].platform == 'cpu':
    try:
      with open('/proc/meminfo') as meminfo:
        for line in meminfo:
          if line.startswith('MemAvailable:'):
            return int(line.split()[1]) * 1024 // len(local)
    except OSError:
      return None
    return None
  stats = local[0].memory_stats() or {}
  if 'bytes_limit' not in stats:
    return None
  return int(stats['bytes_limit']) - int(stats.get('bytes_in_use', 0))


def replicate(tree, mesh: Mesh, donate: bool = False):
  """Places a pytree (the same values on every process) on every device of the mesh.

  `donate`: the tree's arrays may be used up, so that a large state is not held twice (on
  one device they stay where they are).
  """
  sharding = replicated(mesh)
  if donate and jax.process_count() == 1:
    return jax.device_put(tree, sharding, donate=True)

  def put(x):
    x = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree_util.tree_map(put, tree)


def process_rows(batch_size: int) -> slice:
  """The rows of each global batch that this process loads and feeds."""
  per_process = batch_size // jax.process_count()
  start = jax.process_index() * per_process
  return slice(start, start + per_process)


def global_batch(local_rows: np.ndarray, mesh: Mesh, batch_size: int) -> jax.Array:
  """This process's rows of a global batch -> one array split along 'data'."""
  return jax.make_array_from_process_local_data(
      batch_sharded(mesh), local_rows, (batch_size,) + local_rows.shape[1:]
  )


def jit_on_mesh(step_fn: Callable, mesh, donate: bool = True) -> Callable:
  """jit of step_fn(state, batch) -> (state, metrics): state replicated, batch split.

  The state is donated: the new state is written into its buffers, so that a step holds one
  copy of the parameters and optimizer state instead of two (`python -m
  wae_jax.accelerators.aot` shows the saving). Don't use a state after passing it in; a
  checkpoint saves a copy (`checkpoints.Checkpoints.save`), so the next step cannot overwrite
  what it still reads.
  """
  return jax.jit(
      step_fn,
      in_shardings=(replicated(mesh), batch_sharded(mesh)),
      out_shardings=replicated(mesh),
      donate_argnums=(0,) if donate else (),
  )


def mesh_batches(images: np.ndarray, batch_size: int, seed: int, mesh, start_step: int = 0):
  """Global batches split over the mesh; each process loads only its own rows."""
  rows = process_rows(batch_size)
  for batch in input_pipeline.train_batches(images, batch_size, seed, start_step, rows):
    yield global_batch(batch, mesh, batch_size)


class StopSignal:
  """Remembers a SIGTERM (preemption) or Ctrl-C (SIGINT) so that the loop can checkpoint and
  exit cleanly; a second Ctrl-C raises KeyboardInterrupt at once.

  With several processes each would see its signal at a different step, and a checkpoint
  needs all of them at the same one. There JAX's preemption service keeps the SIGTERM (its
  notifier installs its own handler at `jax.distributed.initialize`): it tells every process,
  and `should_stop(step)` turns True at the same step on all of them. A first Ctrl-C is passed
  on to it as a SIGTERM to this process, so that it stops at that agreed step too.
  """

  def __init__(self):
    self.received = None
    self._previous = {}
    self._announced = False
    self._multi_process = jax.process_count() > 1
    if threading.current_thread() is not threading.main_thread():
      return  # Python takes handlers only in the main thread
    signals = [] if self._multi_process else [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored: `cmd &` in a script
      signals.append(signal.SIGINT)
    for signum in signals:
      self._previous[signum] = signal.signal(signum, self._handle)

  def _handle(self, signum, frame):
    # No logging here: the handler may run inside a write to the same stream.
    del frame
    self._release_sigint()
    if signum == signal.SIGINT and self._multi_process:
      os.kill(os.getpid(), signal.SIGTERM)
    else:
      self.received = 'SIGINT (Ctrl-C)' if signum == signal.SIGINT else 'SIGTERM'

  def _release_sigint(self):
    """Once stopping, a Ctrl-C meets the handler from before: Python's raises
    KeyboardInterrupt at once."""
    if signal.SIGINT in self._previous:
      _set_handler(signal.SIGINT, self._previous.pop(signal.SIGINT))

  def should_stop(self, step: int) -> bool:
    """Call at every step; in multi-process runs every process must call it."""
    if self._multi_process and multihost_utils.reached_preemption_sync_point(step):
      self.received = 'SIGTERM (preemption notice, synchronised across processes)'
    if self.received is not None and not self._announced:
      self._announced = True
      self._release_sigint()
      logging.warning(
          '%s: stopping after step %d with a checkpoint (a Ctrl-C now stops at '
          'once, without one)',
          self.received,
          step,
      )
    return self.received is not None

  def restore(self):
    for signum, previous in self._previous.items():
      _set_handler(signum, previous)
    self._previous = {}


def _set_handler(signum, handler) -> None:
  """signal.signal, with None (a handler installed outside Python) read as the default."""
  signal.signal(signum, signal.SIG_DFL if handler is None else handler)
