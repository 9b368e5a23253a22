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


def _no_checkpoint(ckpts: checkpoints.Checkpoints, workdir) -> errors.NotFoundError:
  return errors.NotFoundError(
      f'no checkpoint in {ckpts.directory}: train first with --mode=train --workdir={workdir}'
  )


def _restore_state(ckpts: checkpoints.Checkpoints, config, step: Optional[int]):
  """The state at `step` (None: the latest readable), shaped by `config`; None if there is no
  checkpoint."""
  target = train.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch=1)
  return ckpts.restore(target, step)


def restore(config, workdir: str, step: Optional[int] = None):
  """(model, state) from the latest (or given) checkpoint, built by `config` (validated first);
  a clear error if there is none."""
  wae_config.validate(config)
  ckpts = checkpoints.Checkpoints(workdir, keep=config.train.keep_checkpoints)
  state = _restore_state(ckpts, config, step)
  if state is None:
    raise _no_checkpoint(ckpts, workdir)
  return models.build_autoencoder(config), state


class TrainedCheckpoint:
  """The checkpoint that --mode=sample and --mode=evaluate read, under the settings it was
  trained with: the workdir's checkpoints, opened once; `step`, the given one or else the
  latest; and `config`, `trained_config` at that step, for what can be refused before the model
  is built. NotFoundError if there is no checkpoint."""

  def __init__(self, config, workdir: str, step: Optional[int] = None):
    self._given, self._workdir, self._requested = config, workdir, step
    self._checkpoints = checkpoints.Checkpoints(workdir, keep=config.train.keep_checkpoints)
    self.step = step if step is not None else self._checkpoints.latest_step()
    if self.step is None:
      raise _no_checkpoint(self._checkpoints, workdir)
    self.config = trained_config(config, workdir, self.step)

  def restore(self):
    """(config, model, state), restored once: the state at `step`, or, with no step given and
    the latest unreadable, at the latest readable one, with the config that one was trained
    under (every checkpoint of a workdir has the same arrays, so `config` shapes the target)."""
    state = _restore_state(self._checkpoints, self.config, self._requested)
    config = self.config
    if int(state.step) != self.step:
      config = trained_config(self._given, self._workdir, int(state.step))
    return config, models.build_autoencoder(config), state


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
  config, model, state = TrainedCheckpoint(config, workdir, step).restore()
  _, decode = visualize.make_eval_fns(model, state, config.data.pixel_range)
  grid = visualize.image_grid(decode(visualize.fixed_prior_noise(config)), config.data.pixel_range)
  path = visualize.save_png(pathlib.Path(workdir) / f'samples_step{int(state.step)}.png', grid)
  logging.info('Wrote %s', path)
  return path
