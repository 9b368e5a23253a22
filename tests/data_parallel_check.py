"""N train steps on 8 devices against N on 1: run by test_data_parallel.py in a fresh process.

The parent sets XLA_FLAGS=--xla_force_host_platform_device_count=8 (it must be set before JAX
starts, hence a separate process) and reads the JSON this prints.
"""

import json
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the checkout

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from tests.helpers import shallow_config  # pylint: disable=g-import-not-at-top
from wae_jax import input_pipeline
from wae_jax import models
from wae_jax import parallel
from wae_jax import train

NUM_STEPS = 3
BATCH = 16


def run(config, mesh, images, steps_per_epoch, initial):
  """NUM_STEPS steps from `initial` (host arrays) on `mesh`: the state, the last loss and the
  rows of each device's shard. The step is the one train_and_evaluate compiles for the config
  (the run's key and steps per epoch), so that main's loop on 8 devices finds it compiled."""
  state = parallel.replicate(initial, mesh)
  step = parallel.jit_on_mesh(
      train.make_train_step(
          config,
          models.build_autoencoder(config),
          models.build_adversary(config),
          steps_per_epoch,
          train.run_keys(config)['train'],
      ),
      mesh,
  )
  batches = parallel.mesh_batches(images, BATCH, seed=0, mesh=mesh)
  shards = None
  for _ in range(NUM_STEPS):
    batch = next(batches)
    shards = sorted(s.data.shape[0] for s in batch.addressable_shards)
    state, metrics = step(state, batch)
  return jax.device_get(state), float(metrics['loss']), shards


def max_difference(a, b):
  diffs = jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(x - y))), a, b)
  return max(jax.tree_util.tree_leaves(diffs), default=0.0)


def main():
  out = {'device_count': jax.device_count()}
  for objective in sys.argv[1:]:
    config = shallow_config(objective)
    config.train.batch_size = BATCH
    train_images = input_pipeline.load_dataset(config.data).train_images
    steps_per_epoch = input_pipeline.steps_per_epoch(len(train_images), BATCH)
    images = train_images[: 10 * BATCH]
    # On the host: each run's step donates (overwrites) the state it is given.
    initial = jax.device_get(
        train.create_train_state(config, train.run_keys(config)['init'], steps_per_epoch)
    )
    many, loss_many, shards = run(config, parallel.make_mesh(), images, steps_per_epoch, initial)
    one, loss_one, _ = run(
        config, parallel.make_mesh(jax.devices()[:1]), images, steps_per_epoch, initial
    )
    out[objective] = {
        'shard_rows': shards,
        'loss_8': loss_many,
        'loss_1': loss_one,
        'params': max_difference(many.params, one.params),
        'batch_stats': max_difference(many.batch_stats, one.batch_stats),
        'adversary_params': max_difference(many.adversary_params, one.adversary_params),
        # How far the steps moved the adversary from where it started.
        'adversary_moved': max_difference(many.adversary_params, initial.adversary_params),
        'param_scale': max(float(np.max(np.abs(x))) for x in jax.tree_util.tree_leaves(one.params)),
    }
  # The whole loop (checkpoints, resume, pictures) on 8 devices, and the divisibility check.
  config = shallow_config('wae_gan')
  config.train.batch_size = BATCH
  config.train.num_steps = 2
  with tempfile.TemporaryDirectory() as workdir:
    train.train_and_evaluate(config, workdir)
    config.train.num_steps = 4
    state = train.train_and_evaluate(config, workdir)
    out['loop_final_step'] = int(state.step)
    config.train.batch_size = 12
    try:
      train.train_and_evaluate(config, workdir)
      out['indivisible_error'] = None
    except ValueError as e:
      out['indivisible_error'] = str(e)
  print('RESULT ' + json.dumps(out))


if __name__ == '__main__':
  main()
