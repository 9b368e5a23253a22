"""Orbax checkpoints of the whole train state, every N steps, keeping the last few.

The state is saved as a plain nested dict (flax.serialization.to_state_dict) so that a
checkpoint restores into any state of the same structure, whatever its Python classes.
"""

import pathlib
from typing import Optional, TypeVar

from absl import logging
import flax.serialization
import jax
import orbax.checkpoint as ocp

State = TypeVar('State')


class Checkpoints:
  """The checkpoints of one run: `<workdir>/checkpoints/<step>/`."""

  def __init__(self, workdir, keep: int = 3):
    self.directory = pathlib.Path(workdir).absolute() / 'checkpoints'
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state) -> None:
    """Writes asynchronously; `wait` (or the next save) makes sure it is complete."""
    self._manager.save(step, args=ocp.args.StandardSave(flax.serialization.to_state_dict(state)))

  def restore(self, target: State, step: Optional[int] = None) -> Optional[State]:
    """The state at `step` (default: the latest), shaped like `target`; None if none."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    template = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct,
                                      flax.serialization.to_state_dict(target))
    restored = self._manager.restore(step, args=ocp.args.StandardRestore(template))
    logging.info('Restored checkpoint %s', self.directory / str(step))
    return flax.serialization.from_state_dict(target, restored)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
