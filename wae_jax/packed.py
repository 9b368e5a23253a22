"""Packed trials: runs of one compiled shape trained K at a time, as one vmapped step.

Trials that differ only in their seeds and in numbers the step reads as constants
(`train.STEP_NUMBERS` and a penalty's uncompiled fields, such as the kernel scale) share one
compiled program. Packed, every part of their state carries a leading trial axis, those
numbers and the random keys reach the step as arrays, and the trial axis is split over this
process's devices: each device trains whole trials, with no collectives. Small models, which
leave an accelerator idle, train K trials in about the time of one.

Each trial stays a run of its own: its workdir gets what a solo run writes (its config,
checkpoints, TensorBoard metrics, pictures), it resumes from its own latest checkpoint, and
its data order and random numbers are its seed's, as if it trained alone. A trial that
reaches train.max_nonfinite_steps non-finite steps in a row is frozen, its last good
checkpoint kept, and recorded in its DIVERGED_FILE, while the rest of its pack trains on.
"""

import contextlib
import dataclasses
import json
import pathlib
from typing import Any, Dict, List, Sequence

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
import ml_collections
import numpy as np

from wae_jax import checkpoints
from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import files
from wae_jax import input_pipeline
from wae_jax import models
from wae_jax import parallel
from wae_jax import penalties
from wae_jax import train
from wae_jax import visualize

TRIAL_AXIS = 'trials'
# Written into a trial's workdir when it diverges in a pack (its message and step); removed
# when the trial later trains to its end. Solo runs say it in their exit status instead.
DIVERGED_FILE = 'diverged.json'


def traced_fields(config) -> tuple:
  """The fields a pack's trials may differ in besides the seed: they reach the packed step as
  arrays. train.STEP_NUMBERS, and the fields the penalty reads but does not compile."""
  penalty = penalties.get(config.penalty.name)
  own = tuple(f'penalty.{f}' for f in penalty.fields if f not in penalty.compiled_fields)
  return train.STEP_NUMBERS + own


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def pack_key(config) -> str:
  """What trials must share to train in one pack: their configs less the seed and the
  traced_fields that hold numbers (as JSON text, to group trials by)."""
  traced = traced_fields(config)
  return json.dumps(
      {
          path: 'a number' if path in traced and _is_number(value) else value
          for path, value in wae_config.flatten(config).items()
          if path != 'seed'
      },
      sort_keys=True,
      default=str,
  )


def check_pack(configs: Sequence[ml_collections.ConfigDict], workdirs: Sequence[Any]) -> None:
  """ConfigError unless the configs can train as one pack (one pack_key), one workdir each,
  none twice; it names the first field two trials differ in."""
  if not configs or len(configs) != len(workdirs):
    raise errors.ConfigError(
        f'a pack needs one workdir per config; got {len(configs)} configs and '
        f'{len(workdirs)} workdirs'
    )
  resolved = [pathlib.Path(w).resolve() for w in workdirs]
  if len(set(resolved)) != len(resolved):
    twice = next(w for w in resolved if resolved.count(w) > 1)
    raise errors.ConfigError(f'{twice} is the workdir of two trials of a pack: give each its own')
  keys = [json.loads(pack_key(c)) for c in configs]
  for i, key in enumerate(keys[1:], 1):
    for path in sorted(set(keys[0]) | set(key)):
      if keys[0].get(path) != key.get(path):
        first, other = (wae_config.flatten(configs[j]).get(path) for j in (0, i))
        raise errors.ConfigError(
            f'trials 0 and {i} of a pack differ in {path} ({first!r} and {other!r}): a '
            "pack's trials may differ only in seed and in "
            f'{", ".join(traced_fields(configs[0]))} (numbers in all of them); train the '
            'others in a pack of their own'
        )


def step_numbers(configs) -> Dict[str, np.ndarray]:
  """{field: [K] float32} of the traced fields that hold numbers (a None stays a constant)."""
  flat = [wae_config.flatten(c) for c in configs]
  return {
      path: np.asarray([f[path] for f in flat], np.float32)
      for path in traced_fields(configs[0])
      if _is_number(flat[0][path])
  }


def with_numbers(config, numbers: Dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of `config` holding `numbers` (one trial's, traced) in place of its own values."""
  copy = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
  for path, value in numbers.items():
    section, name = path.rsplit('.', 1)
    copy[section][name] = value
  return copy


def make_packed_step(config, model, adversary, steps_per_epoch: int):
  """packed_step(states, images, numbers, keys, active) -> (states, metrics), every argument
  and result with a leading trial axis: train.make_train_step for each trial, vmapped, with
  its `numbers` (step_numbers) and its train key. An inactive trial (diverged, or done)
  keeps its state."""

  def one_trial(state, images, numbers, key, active):
    step = train.make_train_step(
        with_numbers(config, numbers), model, adversary, steps_per_epoch, key
    )
    new_state, metrics = step(state, images)
    new_state = jax.tree_util.tree_map(
        lambda new, old: jnp.where(active, new, old), new_state, state
    )
    return new_state, metrics

  return jax.vmap(one_trial)


def trial_mesh(num_trials: int, devices=None) -> Mesh:
  """The devices (default: this process's) that the trials split over evenly: the most of
  them whose number divides num_trials (a device trains whole trials)."""
  devices = list(jax.local_devices() if devices is None else devices)
  count = max(d for d in range(1, len(devices) + 1) if num_trials % d == 0)
  return Mesh(np.asarray(devices[:count]), (TRIAL_AXIS,))


def jit_packed(packed_step, mesh: Mesh):
  """jit with every argument and result split along the trial axis; the states donated.

  Each device steps its own trials (shard_map): left to XLA's partitioner, the vmapped
  convolutions of a pack split over TPU chips gathered every trial's images onto each chip.
  Nothing in the step crosses devices, so shard_map's check of which values vary across
  them is off: it refused the CPU layers' lax.scan over batch chunks, whose carry starts as
  zeros on every device.
  """
  trials = PartitionSpec(TRIAL_AXIS)
  per_device = jax.shard_map(
      packed_step, mesh=mesh, in_specs=trials, out_specs=trials, check_vma=False
  )
  split = NamedSharding(mesh, trials)
  return jax.jit(per_device, in_shardings=split, out_shardings=split, donate_argnums=(0,))


def stack(trees):
  """[tree, ...] -> one tree with a leading trial axis (on the host)."""
  return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def trial_state(states, index: int):
  return jax.tree_util.tree_map(lambda x: x[index], states)


@dataclasses.dataclass
class _Trial:
  """One trial of a pack, and what the host keeps of it."""

  config: ml_collections.ConfigDict
  workdir: pathlib.Path
  ckpts: checkpoints.Checkpoints
  step: int = 0
  status: str = 'training'  # | 'done' | 'diverged'
  writer: Any = None
  batches: Any = None
  history: List[Dict[str, Any]] = dataclasses.field(default_factory=list)


def train_pack(
    configs: Sequence[ml_collections.ConfigDict],
    workdirs: Sequence[Any],
    allow_config_change: bool = False,
) -> Dict[str, str]:
  """Trains the configs as one pack, trial i in workdirs[i] (resuming each from its latest
  checkpoint); returns {workdir: 'done' | 'diverged' | 'training' (stopped by a signal, with
  a checkpoint)}. NonFiniteError (one line, the `errors.DIVERGED` kind) after the others
  have finished if any trial diverged."""
  for config in configs:
    wae_config.validate(config)
  check_pack(configs, workdirs)
  logging.info('Config of the first of %d trials:\n%s', len(configs), configs[0])
  if jax.process_count() > 1:
    raise errors.ConfigError(
        'packed trials train in one process (each on its own devices): run a pack per host'
    )
  with contextlib.ExitStack() as stack_:
    locked = [stack_.enter_context(files.workdir_lock(w)) for w in workdirs]
    return _train_pack(configs, locked, allow_config_change)


def _train_pack(configs, workdirs, allow_config_change: bool) -> Dict[str, str]:
  config = configs[0]
  trials = []
  for trial_config, workdir in zip(configs, workdirs):
    workdir.mkdir(parents=True, exist_ok=True)
    ckpts = checkpoints.Checkpoints(workdir, keep=trial_config.train.keep_checkpoints)
    if ckpts.latest_step() is not None:  # before the data: a refusal is quick
      wae_config.check_resume(trial_config, workdir, ckpts.latest_step(), allow_config_change)
    wae_config.recorded_configs(workdir)
    trials.append(_Trial(trial_config, workdir, ckpts))

  data = input_pipeline.load_dataset(config.data)
  steps_per_epoch = input_pipeline.steps_per_epoch(len(data.train_images), config.train.batch_size)
  total_steps = train.num_train_steps(config, steps_per_epoch)
  model = models.build_autoencoder(config)
  mesh = trial_mesh(len(trials))
  train.check_state_memory(config, steps_per_epoch, mesh, len(trials) // mesh.size)
  solo_mesh = parallel.make_mesh(jax.local_devices())  # the encoder's pre-training, per trial
  states = []
  for trial in trials:
    state = train.initial_state(
        trial.config, model, trial.ckpts, data.train_images, steps_per_epoch, solo_mesh
    )
    trial.step = int(state.step)
    train.check_start(trial.config, trial.workdir, trial.step, total_steps)
    states.append(state)
  states = jax.device_put(stack(states), NamedSharding(mesh, PartitionSpec(TRIAL_AXIS)))

  metric_writers, periodic_actions = train.import_clu()
  for trial in trials:
    trial.writer = train.EventWriter(
        metric_writers.create_default_writer(str(trial.workdir)), trial.workdir
    )
    train.record_start(trial.config, trial.workdir, trial.writer, trial.step)
    trial.batches = input_pipeline.train_batches(
        data.train_images, config.train.batch_size, trial.config.seed, trial.step
    )
    if trial.step == total_steps:
      trial.status = 'done'
  logging.info(
      'Training a pack of %d %s trials for %d steps (%d per epoch) from steps %s on %d devices; '
      'data: %s',
      len(trials),
      config.penalty.name,
      total_steps,
      steps_per_epoch,
      sorted({t.step for t in trials}),
      mesh.size,
      data.source,
  )

  step = jit_packed(
      make_packed_step(config, model, models.build_adversary(config), steps_per_epoch), mesh
  )
  numbers = step_numbers(configs)
  keys = np.stack([np.asarray(train.run_keys(c)['train']) for c in configs])
  pack = _Pack(trials, step, numbers, keys, total_steps, model, data.test_images)
  failed = True
  try:
    states = pack.train(states, periodic_actions, mesh)
    failed = False
  finally:
    for trial in trials:
      train.finish(trial.ckpts, trial.writer, failed)
  diverged = [t for t in trials if t.status == 'diverged']
  if diverged:
    raise train.NonFiniteError(
        f'{errors.DIVERGED}{len(diverged)} of the {len(trials)} trials of the pack: '
        + '; '.join(str(t.workdir) for t in diverged)
        + f' (each says why in its {DIVERGED_FILE}); the others trained to step {total_steps}'
    )
  return {str(t.workdir): t.status for t in trials}


@dataclasses.dataclass
class _Pack:
  """The loop of a pack: its steps, and each trial's metrics, checkpoints and pictures."""

  trials: List[_Trial]
  step: Any
  numbers: Dict[str, np.ndarray]
  keys: np.ndarray
  total_steps: int
  model: Any
  test_images: np.ndarray

  def train(self, states, periodic_actions, mesh):
    active = np.array([t.status == 'training' for t in self.trials])
    if active.any():
      images = self._images()
      train.check_step_memory(
          self.trials[0].config,
          self.step.lower(states, images, self.numbers, self.keys, active),
          mesh,
      )
    start = min((t.step for t in self.trials if t.status == 'training'), default=0)
    report = periodic_actions.ReportProgress(
        num_train_steps=self.total_steps,
        every_steps=self.trials[0].config.train.log_every,
        every_secs=None,
    )
    stop = parallel.StopSignal()
    previous = None
    try:
      while active.any():
        states, metrics = self.step(states, images, self.numbers, self.keys, active)
        # The previous step's counts, so that the host does not wait for this step.
        self._freeze_diverged(previous)
        previous = (metrics, active)
        stopping = stop.should_stop(start)
        for index, trial in enumerate(self.trials):
          if active[index] and trial.status == 'training':
            self._after_step(trial, index, states, metrics, stopping)
        start += 1
        report(start)
        if stopping:
          logging.warning(
              '%s: wrote a checkpoint of every trial still training and stopped; run the same '
              'command again to resume',
              stop.received,
          )
          return states
        active = np.array([t.status == 'training' for t in self.trials])
        if active.any():
          images = self._images()
    finally:
      stop.restore()
    return states

  def _images(self):
    return np.stack([next(t.batches) for t in self.trials])

  def _freeze_diverged(self, previous) -> None:
    """Freezes each trial still training that the step `previous` (its metrics, and which
    trials it stepped) left at train.max_nonfinite_steps non-finite steps in a row."""
    if previous is None:
      return
    metrics, stepped = previous
    counts = np.asarray(metrics['nonfinite_steps'])
    for index, trial in enumerate(self.trials):
      if stepped[index] and trial.status == 'training':
        self._check_finite(trial, int(counts[index]))

  def _check_finite(self, trial: _Trial, count: int) -> bool:
    """Freezes the trial and records why if its count reached the limit; whether it did not."""
    limit = trial.config.train.max_nonfinite_steps
    if count < limit:
      return True
    message = train.nonfinite_message(count, limit, trial.ckpts)
    trial.ckpts.wait()
    files.write_json(trial.workdir / DIVERGED_FILE, {'step': trial.step, 'message': message})
    logging.error('Trial %s stopped: %s', trial.workdir, message)
    trial.status = 'diverged'
    return False

  def _after_step(self, trial: _Trial, index: int, states, metrics, stopping: bool) -> None:
    """A trial's step done: its metrics, checkpoint and pictures when they are due."""
    t = trial.config.train
    trial.step += 1
    trial.history.append(metrics)
    last = trial.step == self.total_steps
    if trial.step % t.log_every == 0 or last or stopping:
      host = jax.device_get(trial.history)
      trial.writer.write_scalars(
          trial.step, train.mean_metrics([{k: v[index] for k, v in m.items()} for m in host])
      )
      trial.history = []
    if trial.step % t.checkpoint_every == 0 or last or stopping:
      count = int(np.asarray(metrics['nonfinite_steps'])[index])
      if not self._check_finite(trial, count):
        return
      trial.ckpts.save(trial.step, trial_state(states, index))
    if last:
      trial.status = 'done'
      (trial.workdir / DIVERGED_FILE).unlink(missing_ok=True)
    if trial.step % t.image_every == 0 or last:
      visualize.write_pictures(
          trial.config,
          self.model,
          trial_state(states, index),
          self.test_images,
          trial.writer,
          trial.workdir,
          trial.step,
      )


def seed_workdirs(workdir, seeds: Sequence[int]) -> List[pathlib.Path]:
  """A pack of seeds of one config: trial `seed` trains in <workdir>/seed_<seed>."""
  return [pathlib.Path(workdir) / f'seed_{seed}' for seed in seeds]


def seed_configs(config, seeds: Sequence[int]) -> List[ml_collections.ConfigDict]:
  configs = []
  for seed in seeds:
    trial_config = config.copy_and_resolve_references()
    trial_config.seed = int(seed)
    configs.append(trial_config)
  return configs
