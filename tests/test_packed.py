"""Packed trials train exactly as each would alone, keep their own workdirs, resume, and a
diverging one is frozen and reported alone."""

import json

import jax
import numpy as np
import pytest

from tests.helpers import tiny_config
from wae_jax import checkpoints
from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import input_pipeline
from wae_jax import models
from wae_jax import packed
from wae_jax import train


def _trial_configs(objective, rows):
  """tiny configs with `rows` of {field path: value} set, one config per row."""
  configs = []
  for row in rows:
    config = tiny_config(objective)
    for path, value in row.items():
      section, name = path.rsplit('.', 1) if '.' in path else (None, path)
      (config[section] if section else config)[name] = value
    configs.append(config)
  return configs


def _assert_trees_close(a, b):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=2e-5)


def test_packed_step_trains_each_trial_as_it_trains_alone():
  # WAE-GAN: the state with the most parts (the adversary and its Adam besides the AE's), and
  # every number the sweep samples that the step reads: both learning rates, lambda, the prior
  # variance; each trial its own seed (initial parameters, random numbers, data order).
  configs = _trial_configs(
      'wae_gan',
      [
          {'seed': 0, 'train.learning_rate': 1e-3, 'penalty.lam': 1.0},
          {
              'seed': 1,
              'train.learning_rate': 3e-4,
              'train.adversary_learning_rate': 1e-4,
              'penalty.lam': 10.0,
          },
          {'seed': 2, 'penalty.lam': 0.1, 'model.prior_variance': 2.0},
      ],
  )
  config, steps_per_epoch, num_steps = configs[0], 10, 3
  model, adversary = models.build_autoencoder(config), models.build_adversary(config)
  images = np.random.default_rng(0).uniform(0, 1, (40, 28, 28, 1)).astype(np.float32)

  alone_losses, alone_states = [], []
  for trial in configs:
    keys = train.run_keys(trial)
    state = train.create_train_state(trial, keys['init'], steps_per_epoch)
    step = jax.jit(train.make_train_step(trial, model, adversary, steps_per_epoch, keys['train']))
    batches = input_pipeline.train_batches(images, 8, trial.seed)
    losses = []
    for _ in range(num_steps):
      state, metrics = step(state, next(batches))
      losses.append([float(metrics[k]) for k in ('loss', 'penalty', 'adversary_loss')])
    alone_losses.append(losses)
    alone_states.append(state)

  states = packed.stack(
      [train.create_train_state(c, train.run_keys(c)['init'], steps_per_epoch) for c in configs]
  )
  step = jax.jit(packed.make_packed_step(config, model, adversary, steps_per_epoch))
  numbers = packed.step_numbers(configs)
  assert set(numbers) == set(train.STEP_NUMBERS)  # all traced: one compile for any values
  keys = np.stack([np.asarray(train.run_keys(c)['train']) for c in configs])
  batches = [input_pipeline.train_batches(images, 8, c.seed) for c in configs]
  packed_losses = []
  for _ in range(num_steps):
    images_k = np.stack([next(b) for b in batches])
    states, metrics = step(states, images_k, numbers, keys, np.ones(3, bool))
    packed_losses.append(
        np.stack([metrics[k] for k in ('loss', 'penalty', 'adversary_loss')], axis=-1)
    )
  packed_losses = np.transpose(np.asarray(packed_losses), (1, 0, 2))  # [trial, step, metric]
  np.testing.assert_allclose(packed_losses, np.asarray(alone_losses), rtol=1e-4, atol=1e-5)
  assert len({round(float(x), 3) for x in packed_losses[:, -1, 0]}) == 3  # they do differ
  for index, alone in enumerate(alone_states):
    _assert_trees_close(packed.trial_state(states, index), alone)

  # An inactive trial keeps its state; the others step on.
  before = jax.device_get(states)
  states, _ = step(states, images_k, numbers, keys, np.array([True, False, True]))
  after = jax.device_get(states)
  for x, y in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after)):
    np.testing.assert_array_equal(x[1], y[1])
  assert any(
      not np.array_equal(x[0], y[0])
      for x, y in zip(
          jax.tree_util.tree_leaves(before.params), jax.tree_util.tree_leaves(after.params)
      )
  )


def _restored_params(workdir, config, step):
  template = train.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch=1)
  ckpts = checkpoints.Checkpoints(workdir)
  try:
    return ckpts.restore(template, step=step).params
  finally:
    ckpts.close()


def test_pack_writes_each_trials_run_resumes_and_reports_a_diverged_trial_alone(tmp_path):
  common = {
      'train.checkpoint_every': 2,
      'train.log_every': 2,
      'train.image_every': 4,
      'train.max_nonfinite_steps': 2,
      'train.num_steps': 4,
  }
  configs = _trial_configs(
      'wae_mmd',
      [
          {**common, 'seed': 0, 'penalty.kernel_scale': 2.0},
          {**common, 'seed': 1, 'penalty.kernel_scale': 8.0, 'penalty.lam': 1.0},
          {**common, 'seed': 2, 'penalty.kernel_scale': 4.0, 'train.learning_rate': 1e30},
      ],
  )
  workdirs = [tmp_path / f'trial_{i}' for i in range(3)]
  with pytest.raises(train.NonFiniteError) as raised:
    packed.train_pack(configs, workdirs)
  message = errors.one_line(raised.value)
  assert message.startswith(errors.DIVERGED + '1 of the 3 trials of the pack: ')
  assert str(workdirs[2]) in message and str(workdirs[0]) not in message

  for workdir in workdirs[:2]:  # each trial's run, as if alone
    assert train_steps(workdir) == [2, 4]
    assert wae_config.record_file(workdir, 0).exists()
    assert list(workdir.glob('events.out.tfevents.*'))
    assert list((workdir / 'images').glob('*_0000004.png'))
    assert not (workdir / packed.DIVERGED_FILE).exists()
  record = json.loads((workdirs[2] / packed.DIVERGED_FILE).read_text())
  assert record['message'].startswith(errors.DIVERGED)
  assert 'max_nonfinite_steps=2' in record['message']
  for step in train_steps(workdirs[2]):  # nothing non-finite was saved
    params = _restored_params(workdirs[2], configs[2], step)
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(params))

  # Resumed to 6 steps, trial 0 equals the same config trained alone for 6.
  for config in configs:
    config.train.num_steps = 6
  with pytest.raises(train.NonFiniteError):
    packed.train_pack(configs, workdirs)
  assert train_steps(workdirs[0]) == [2, 4, 6]
  alone = train.train_and_evaluate(configs[0], str(tmp_path / 'alone'))
  _assert_trees_close(_restored_params(workdirs[0], configs[0], 6), alone.params)


def train_steps(workdir):
  folder = workdir / 'checkpoints'
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def test_configs_that_cannot_share_a_pack_are_refused_naming_the_field(tmp_path):
  a, b = tiny_config('wae_mmd'), tiny_config('wae_mmd')
  b.model.latent_dim = 4
  with pytest.raises(errors.ConfigError, match=r'differ in model\.latent_dim \(8 and 4\)'):
    packed.check_pack([a, b], [tmp_path / 'a', tmp_path / 'b'])
  with pytest.raises(errors.ConfigError, match='workdir of two trials'):
    packed.check_pack([a, a], [tmp_path / 'a', tmp_path / 'a'])
  b = tiny_config('wae_mmd')
  b.seed, b.penalty.lam, b.train.learning_rate = 5, 3.0, 1e-2  # may differ
  packed.check_pack([a, b], [tmp_path / 'a', tmp_path / 'b'])
