"""Orbax checkpoints of the whole train state, every N steps, keeping the last few.

The state is saved as a plain nested dict (flax.serialization.to_state_dict) so that a
checkpoint restores into any state of the same structure, whatever its Python classes.

A full disk is one error, `errors.OutOfSpaceError`, naming the checkpoint, the bytes it needs
and the last intact step: checked before each save (so that a checkpoint that cannot fit is
not begun), and converted from orbax's own errors when the disk fills up during the write.
Orbax writes into a temporary folder renamed when complete, so a half-written checkpoint is
never restored.
"""

import math
from typing import Optional, TypeVar

from absl import logging
import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

from wae_jax import errors
from wae_jax import files

State = TypeVar('State')

# What a checkpoint may need beyond its arrays' bytes: orbax's metadata, and a share for the
# format. An estimate from above (orbax compresses), so that a save that starts can finish.
_METADATA_BYTES = 2**20
_MARGIN = 0.05


def state_bytes(state) -> int:
  """The bytes of a state's arrays (or of their `jax.ShapeDtypeStruct`s): at most what a
  checkpoint of it holds, uncompressed."""
  return sum(
      math.prod(x.shape) * np.dtype(x.dtype).itemsize
      for x in jax.tree_util.tree_leaves(state)
      if hasattr(x, 'dtype')
  )


# Where training keeps checkpoints it could not read (next to checkpoints/).
UNREADABLE = 'unreadable_checkpoints'


class CheckpointError(errors.WaeError, RuntimeError):
  """No checkpoint of the workdir can be restored into the requested state."""


def _first_line(error: Exception, limit: int = 200) -> str:
  """The error's kind and first line, cut at `limit` characters (tensorstore's errors hold
  whole JSON specs)."""
  text = str(error).strip().splitlines()
  text = text[0].split(' See full TensorStore details')[0] if text else ''
  line = f'{type(error).__name__}: {text}'
  return line if len(line) <= limit else line[:limit] + ' ...'


def _tree_differences(found, expected, limit: int = 6):
  """Lines naming the paths whose presence or shape differs between two trees."""
  flat_found = {
      jax.tree_util.keystr(p): getattr(v, 'shape', None)
      for p, v in jax.tree_util.tree_flatten_with_path(found)[0]
  }
  flat_expected = {
      jax.tree_util.keystr(p): tuple(v.shape)
      for p, v in jax.tree_util.tree_flatten_with_path(expected)[0]
  }
  lines = []
  # The parameters first: they say most plainly which config wrote the checkpoint.
  for path in sorted(set(flat_found) | set(flat_expected), key=lambda p: ('opt_state' in p, p)):
    have, want = flat_found.get(path, 'missing'), flat_expected.get(path, 'not expected')
    if have is not None and have != 'missing':
      have = tuple(have)
    if have != want:
      lines.append(f'  {path}: checkpoint has {have}, this config expects {want}')
  more = len(lines) - limit
  return lines[:limit] + ([f'  ... and {more} more differences'] if more > 0 else [])


class Checkpoints:
  """The checkpoints of one run: `<workdir>/checkpoints/<step>/`."""

  def __init__(self, workdir, keep: int = 3):
    self.directory = files.check_workdir(workdir).absolute() / 'checkpoints'
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_handlers=ocp.StandardCheckpointHandler(),
    )  # so metadata reads before a restore
    self._writing = None  # (step, bytes needed) of the save last started
    self._failure: Optional[errors.OutOfSpaceError] = None

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state) -> None:
    """Writes asynchronously; `wait` (or the next save) makes sure it is complete.

    First the previous save is waited for and the free space checked: OutOfSpaceError if the
    state's arrays (plus a margin) do not fit. A Checkpoints that ran out of space saves no
    more. Orbax reads the arrays after this returns, while the train step, which donates its
    state, overwrites them; so it is given a copy on the same devices, freed once written.
    """
    if self._failure is not None:
      raise self._failure
    self.wait()
    state = flax.serialization.to_state_dict(state)
    needed = int(state_bytes(state) * (1 + _MARGIN)) + _METADATA_BYTES
    free = errors.free_bytes(self.directory)
    if free is not None and free < needed:
      raise self._out_of_space(step, needed, free)
    state = jax.tree_util.tree_map(lambda x: x.copy() if isinstance(x, jax.Array) else x, state)
    self._writing = (step, needed)
    try:
      self._manager.save(step, args=ocp.args.StandardSave(state))
    except Exception as e:  # pylint: disable=broad-except
      self._raise_if_out_of_space(e)
      raise

  def _out_of_space(
      self, step: int, needed: int, free: Optional[int], while_writing: bool = False
  ) -> errors.OutOfSpaceError:
    """The one-line error: the checkpoint, its bytes, the free bytes, the last intact step."""
    last = self._manager.latest_step()
    path = self.directory / str(step)
    free = f'{free:,} bytes' if free is not None else 'an unknown number of bytes'
    if while_writing:
      what = (
          f'the disk filled up while checkpoint {path} was written (it needs about '
          f'{needed:,} bytes; {free} are free now)'
      )
    else:
      what = (
          f'checkpoint {path} needs about {needed:,} bytes but only {free} are free on '
          'its file system'
      )
    if last is None:
      then = 'there is no intact checkpoint yet: the run will start from the beginning'
    else:
      then = (
          f'the last intact checkpoint is step {last} ({self.directory / str(last)}): the '
          f'run will resume from it'
      )
    return errors.OutOfSpaceError(errors.out_of_space_message(what, then=f'; {then}'))

  def _raise_if_out_of_space(self, error: Exception) -> None:
    """Orbax's error for a full disk (tensorstore's text in a ValueError, from a thread) as
    OutOfSpaceError; orbax has dropped the unfinished step, so the latest is intact."""
    if not errors.is_out_of_space(error):
      return
    step, needed = self._writing or (None, 0)
    self._failure = self._out_of_space(
        step, needed, errors.free_bytes(self.directory), while_writing=True
    )
    raise self._failure from error

  def all_steps(self):
    return sorted(self._manager.all_steps())

  def restore(
      self, target: State, step: Optional[int] = None, set_aside_unreadable: bool = False
  ) -> Optional[State]:
    """The state at `step` (default: the latest readable one), shaped like `target`.

    None if there is no checkpoint. Without `step`, a checkpoint that cannot be read (cut
    short, corrupt) is skipped with a warning naming it and the one used instead; with
    `set_aside_unreadable` (training) the skipped ones are then moved into
    `<workdir>/unreadable_checkpoints/`, kept, so that their steps are written afresh. If none
    can be restored, CheckpointError says whether they are from another config or broken.
    """
    steps = [step] if step is not None else self.all_steps()[::-1]
    if not steps:
      return None
    template = jax.tree_util.tree_map(
        ocp.utils.to_shape_dtype_struct, flax.serialization.to_state_dict(target)
    )
    failed = []
    for s in steps:
      try:
        # Arrays of another shape are found from the metadata, before orbax reads them: its
        # failed reads leave coroutines that print hundreds of tracebacks at exit.
        differences = self._shape_differences(s, template)
        if differences:
          raise ValueError(f'arrays of another shape: {differences[0].strip()}')
        restored = self._manager.restore(s, args=ocp.args.StandardRestore(template))
      except Exception as e:  # pylint: disable=broad-except
        logging.warning(
            'Checkpoint %s cannot be restored: %s', self.directory / str(s), _first_line(e)
        )
        failed.append((s, e))
        continue
      if failed:
        logging.warning(
            'Restored checkpoint %s instead of the later %s, which cannot be read',
            self.directory / str(s),
            ', '.join(str(self.directory / str(f)) for f, _ in failed),
        )
        if set_aside_unreadable:
          self._set_aside([f for f, _ in failed])
      else:
        logging.info('Restored checkpoint %s', self.directory / str(s))
      return flax.serialization.from_state_dict(target, restored)
    raise CheckpointError(self._explain(failed, template))

  def _set_aside(self, steps) -> None:
    """Moves unreadable checkpoints out of orbax's sight, kept under a name that says so."""
    aside = self.directory.parent / UNREADABLE
    if jax.process_index() == 0:
      aside.mkdir(exist_ok=True)
      for step in steps:
        target = aside / str(step)
        copies = 1
        while target.exists():  # the same step broken before
          copies += 1
          target = aside / f'{step}.{copies}'
        (self.directory / str(step)).rename(target)
        logging.warning(
            'Moved the unreadable checkpoint of step %d to %s; that step will be ' 'written again',
            step,
            target,
        )
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

      multihost_utils.sync_global_devices('wae_jax.checkpoints.set_aside')
    self._manager.reload()

  def _shape_differences(self, step: int, template):
    """Lines naming the arrays whose shapes differ between the checkpoint's metadata and
    `template`; none if they agree or the metadata cannot be read."""
    try:
      found = self._manager.item_metadata(step)
      found = dict(found) if found is not None else {}
    except Exception:  # pylint: disable=broad-except
      found = {}
    return _tree_differences(found, template) if found else []

  def _explain(self, failed, template) -> str:
    """One line: the arrays that differ from this config's, or else that the files are
    broken (the remedy differs: another config, or a copy / a fresh start)."""
    tried = ', '.join(f'step {s} ({_first_line(e)})' for s, e in failed)
    differences = self._shape_differences(failed[0][0], template)
    if differences:
      return (
          f'no checkpoint in {self.directory} fits this config (tried steps '
          f'{", ".join(str(s) for s, _ in failed)}); step {failed[0][0]}: '
          f'{"; ".join(line.strip() for line in differences)}. Was it written with a '
          'different model config (widths, latent_dim, penalty)? Use that config, or a new '
          '--workdir.'
      )
    return (
        f'no checkpoint in {self.directory} can be read (tried {tried}): its files are cut '
        'short or corrupt (a kill during a copy, a full or failing disk). Put back intact '
        f'copies, or move the folder aside (mv {self.directory} '
        f'{self.directory.parent / UNREADABLE}) to train again from step 0.'
    )

  def wait(self) -> None:
    """Blocks until the last save is complete; OutOfSpaceError if the disk filled up during
    it (once: afterwards this returns, and save raises it again)."""
    if self._failure is not None:
      return
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      self._raise_if_out_of_space(e)
      raise

  def close(self) -> None:
    try:
      self._manager.close()
    except Exception as e:  # pylint: disable=broad-except
      if self._failure is not None and errors.is_out_of_space(e):
        return  # orbax raises the failed save's error again: it was reported already
      self._raise_if_out_of_space(e)
      raise
