"""A trained model from its workdir: restore a checkpoint, decode samples from the prior.

`python -m wae_jax.main --mode=sample` and `--mode=evaluate` start here; training does not.
"""

import pathlib
from typing import Optional

from absl import logging
import jax
import ml_collections

from wae_jax import checkpoints
from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import models
from wae_jax import train
from wae_jax import visualize


def restore(config, workdir: str, step: Optional[int] = None):
  """(model, state) from the latest (or given) checkpoint, built by `config` (validated first);
  a clear error if there is none."""
  wae_config.validate(config)
  return _restore(config, workdir, step)


def _restore(config, workdir: str, step: Optional[int]):
  """`restore` under a config already validated (`trained_config`'s)."""
  model = models.build_autoencoder(config)
  target = train.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch=1)
  ckpts = checkpoints.Checkpoints(workdir, keep=config.train.keep_checkpoints)
  state = ckpts.restore(target, step)
  if state is None:
    raise errors.NotFoundError(
        f'no checkpoint in {ckpts.directory}: train first with ' f'--mode=train --workdir={workdir}'
    )
  return model, state


def trained_config(config, workdir, step: int):
  """config with the training settings of the record the checkpoint at `step` was trained
  under (wae_config.with_recorded: all but eval.*, the seed and the paths), and one warning
  line naming each field where config disagrees. config itself for a workdir without records
  (runs older than them). Validated: it is the config the checkpoint is restored and run under.
  """
  in_force = wae_config.record_in_force(workdir, step)
  if in_force is None:
    wae_config.validate(config)
    return config
  record, recorded = in_force
  trained, disagreements = wae_config.with_recorded(config, recorded)
  wae_config.validate(trained)
  if disagreements:
    logging.warning(
        'The checkpoint at step %d of %s was trained under %s, and the given config '
        'differs from it in training settings, whose recorded values are used '
        '(recorded -> given): %s',
        step,
        workdir,
        wae_config.record_file(workdir, record),
        wae_config.describe_changes(disagreements),
    )
  return trained


def sample(
    config: ml_collections.ConfigDict, workdir: str, step: Optional[int] = None
) -> pathlib.Path:
  """Decodes the fixed prior noise with the latest (or given) checkpoint into a PNG grid,
  under the model settings it was trained with (`trained_config`)."""
  latest = step if step is not None else checkpoints.Checkpoints(workdir).latest_step()
  if latest is None:
    restore(config, workdir)  # raises: no checkpoint, train first
  config = trained_config(config, workdir, latest)
  model, state = _restore(config, workdir, step)
  _, decode = visualize.make_eval_fns(model, state, config.data.pixel_range)
  grid = visualize.image_grid(decode(visualize.fixed_prior_noise(config)), config.data.pixel_range)
  path = visualize.save_png(pathlib.Path(workdir) / f'samples_step{int(state.step)}.png', grid)
  logging.info('Wrote %s', path)
  return path
