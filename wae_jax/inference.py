"""A trained model from its workdir: restore a checkpoint, decode samples from the prior.

`python -m wae_jax.main --mode=sample` and `--mode=evaluate` start here; training does not.
"""

import pathlib
from typing import Optional

from absl import logging
import jax
import ml_collections
import numpy as np

from wae_jax import checkpoints
from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import models
from wae_jax import train
from wae_jax import visualize


def restore(config, workdir: str, step: Optional[int] = None):
  """(model, state) from the latest (or given) checkpoint; a clear error if there is none."""
  wae_config.validate(config)
  model = models.build_autoencoder(config)
  target = train.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch=1)
  ckpts = checkpoints.Checkpoints(workdir, keep=config.train.keep_checkpoints)
  state = ckpts.restore(target, step)
  if state is None:
    raise errors.NotFoundError(f'no checkpoint in {ckpts.directory}: train first with '
                               f'--mode=train --workdir={workdir}')
  return model, state


def sample(config: ml_collections.ConfigDict, workdir: str,
           step: Optional[int] = None) -> pathlib.Path:
  """Decodes the fixed prior noise with the latest (or given) checkpoint into a PNG grid."""
  model, state = restore(config, workdir, step)
  _, decode = visualize.make_eval_fns(model, state, config.data.pixel_range)
  ncols = int(np.ceil(np.sqrt(config.eval.grid_samples)))
  grid = visualize.image_grid(decode(visualize.fixed_prior_noise(config)),
                              config.data.pixel_range, ncols=ncols)
  path = visualize.save_png(pathlib.Path(workdir) / f'samples_step{int(state.step)}.png', grid)
  logging.info('Wrote %s', path)
  return path
