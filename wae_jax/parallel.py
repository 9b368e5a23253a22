"""Data parallelism: one mesh axis, 'data', over every device of every process.

The train step is jitted over the *global* batch: parameters and optimizer state are
replicated, images are split along 'data'. Every reduction the loss makes (the MMD's sums
over all pairs of codes, the adversary's batch, BatchNorm's statistics, the mean cost) is
over the global batch, so the estimator is the one a single device computes; XLA inserts
the all-gathers and all-reduces. Random numbers are drawn for the global shape from a
per-step key, so each device gets its own slice of them.

On several hosts each process loads only its rows of every global batch
(`process_rows`) and `global_batch` assembles the distributed array.
"""

import os
from typing import Optional, Sequence

from absl import logging
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

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
      'TPU_PROCESS_ADDRESSES', '')
  return bool(os.environ.get(COORDINATOR_ENV)
              or _env_int('SLURM_NTASKS') > 1
              or _env_int('OMPI_COMM_WORLD_SIZE') > 1
              or ',' in tpu_hosts)


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
        raise ValueError(f'{COORDINATOR_ENV} is set, so {env} must be set too')
      kwargs[key] = int(os.environ[env])
  # CPU processes (tests, CPU clusters) exchange data through gloo; accelerators ignore this.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**kwargs)
  logging.info('jax.distributed: process %d of %d, %d local of %d devices',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
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
    raise ValueError(
        f'config.train.batch_size={batch_size} is not divisible by the {devices} devices '
        f'of the mesh; allowed: a multiple of {devices}, e.g. '
        f'{devices * max(1, round(batch_size / devices))}')


def replicate(tree, mesh: Mesh):
  """Places a pytree (the same values on every process) on every device of the mesh."""
  sharding = replicated(mesh)

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
      batch_sharded(mesh), local_rows, (batch_size,) + local_rows.shape[1:])
