"""Mesh helpers and the multi-host switch (the 8-device maths is in test_data_parallel.py)."""

import jax
import numpy as np
import pytest

from wae_jax import parallel

LAUNCH_VARIABLES = ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID',
                    'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE', 'TPU_WORKER_HOSTNAMES',
                    'TPU_PROCESS_ADDRESSES')


@pytest.fixture
def clean_env(monkeypatch):
  for name in LAUNCH_VARIABLES:
    monkeypatch.delenv(name, raising=False)
  return monkeypatch


@pytest.mark.parametrize('env,expected', [
    ({}, False),
    ({'SLURM_NTASKS': '1'}, False),
    ({'SLURM_NTASKS': '4'}, True),
    ({'OMPI_COMM_WORLD_SIZE': '2'}, True),
    ({'TPU_WORKER_HOSTNAMES': 'localhost'}, False),   # a single-host TPU VM
    ({'TPU_WORKER_HOSTNAMES': 'w-0,w-1,w-2,w-3'}, True),
    ({'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234'}, True),
])
def test_multi_process_environment_is_detected(clean_env, env, expected):
  for name, value in env.items():
    clean_env.setenv(name, value)
  assert parallel.multi_process_environment() == expected


def test_initialize_distributed_only_when_asked(clean_env):
  calls = []
  clean_env.setattr(jax.distributed, 'initialize', lambda **kw: calls.append(kw))
  assert not parallel.initialize_distributed('auto')
  assert not parallel.initialize_distributed('off')
  clean_env.setenv('JAX_COORDINATOR_ADDRESS', '10.0.0.1:1234')
  with pytest.raises(ValueError, match='JAX_NUM_PROCESSES'):
    parallel.initialize_distributed('auto')
  clean_env.setenv('JAX_NUM_PROCESSES', '4')
  clean_env.setenv('JAX_PROCESS_ID', '2')
  assert parallel.initialize_distributed('auto')
  assert calls == [{'num_processes': 4, 'process_id': 2}]
  with pytest.raises(ValueError, match='allowed: auto, on, off'):
    parallel.initialize_distributed('yes')


def test_global_batch_and_process_rows_on_one_process():
  mesh = parallel.make_mesh()
  assert parallel.process_rows(8) == slice(0, 8)
  rows = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
  batch = parallel.global_batch(rows, mesh, 8)
  assert batch.shape == (8, 3) and batch.sharding == parallel.batch_sharded(mesh)
  np.testing.assert_array_equal(np.asarray(batch), rows)
  tree = parallel.replicate({'a': np.ones(3)}, mesh)
  assert tree['a'].sharding.is_fully_replicated
