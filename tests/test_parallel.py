"""Mesh helpers, the multi-host switch and the stop signals (the 8-device maths is in
test_data_parallel.py; real stopped runs in test_reliability.py and test_multihost.py)."""

import os
import signal
import time

import jax
import numpy as np
import pytest

from wae_jax import parallel

LAUNCH_VARIABLES = (
    'JAX_COORDINATOR_ADDRESS',
    'JAX_NUM_PROCESSES',
    'JAX_PROCESS_ID',
    'SLURM_NTASKS',
    'OMPI_COMM_WORLD_SIZE',
    'TPU_WORKER_HOSTNAMES',
    'TPU_PROCESS_ADDRESSES',
)


@pytest.fixture
def clean_env(monkeypatch):
  for name in LAUNCH_VARIABLES:
    monkeypatch.delenv(name, raising=False)
  return monkeypatch


@pytest.mark.parametrize(
    'env,expected',
    [
        ({}, False),
        ({'SLURM_NTASKS': '1'}, False),
        ({'SLURM_NTASKS': '4'}, True),
        ({'OMPI_COMM_WORLD_SIZE': '2'}, True),
        ({'TPU_WORKER_HOSTNAMES': 'localhost'}, False),  # a single-host TPU VM
        ({'TPU_WORKER_HOSTNAMES': 'w-0,w-1,w-2,w-3'}, True),
        ({'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234'}, True),
    ],
)
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


def _send(signum, stop=None):
  """Sends signum to this process and lets its Python handler run (it runs between bytecodes
  of the main thread, here during the sleep)."""
  os.kill(os.getpid(), signum)
  deadline = time.time() + 5
  while stop is not None and stop.received is None and time.time() < deadline:
    time.sleep(0.01)


@pytest.mark.parametrize('first', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_first_signal_stops_at_the_step_and_a_ctrl_c_after_it_at_once(
    first, caplog, terminal_sigint
):
  previous_term = signal.getsignal(signal.SIGTERM)
  stop = parallel.StopSignal()
  assert not stop.should_stop(1)
  _send(first, stop)
  assert stop.received == ('SIGINT (Ctrl-C)' if first == signal.SIGINT else 'SIGTERM')
  assert stop.should_stop(2) and stop.should_stop(3)
  assert 'stopping after step 2 with a checkpoint' in caplog.text
  start = time.time()
  with pytest.raises(KeyboardInterrupt):
    _send(signal.SIGINT)
    time.sleep(5)
  assert time.time() - start < 1
  stop.restore()
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  assert signal.getsignal(signal.SIGTERM) is previous_term


def test_ignored_sigint_stays_ignored():
  previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    stop = parallel.StopSignal()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    stop.restore()
  finally:
    signal.signal(signal.SIGINT, previous)
