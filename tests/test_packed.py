"""Packed trials train exactly as each would alone, keep their own workdirs, resume, and a
diverging one is frozen and reported alone."""

import dataclasses
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.helpers import REPO
from tests.helpers import SHALLOW_FLAGS
from tests.helpers import error_line
from tests.helpers import shallow_config
from tests.helpers import sweep_config
from tests.helpers import tiny_config
from wae_jax import checkpoints
from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import files
from wae_jax import input_pipeline
from wae_jax import models
from wae_jax import packed
from wae_jax import train
from wae_jax.accelerators import aot
from wae_jax.models import layers
from wae_jax.accelerators import flops
from wae_jax.accelerators import sweep_plan
from wae_jax.sweep import trials


def _trial_configs(objective, rows):
  """Shallow tiny configs with `rows` of {field path: value} set, one config per row."""
  configs = []
  for row in rows:
    config = shallow_config(objective)
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


def test_pack_writes_each_trials_run_resumes_and_reports_a_diverged_trial_alone(
    tmp_path, monkeypatch
):
  # The CPU layers split a batch into chunks (a lax.scan) as they do at batch 100: under the
  # pack's shard_map that scan was refused.
  monkeypatch.setattr(layers, '_CHUNK_BYTES', 20_000)
  monkeypatch.setattr(layers, '_CHUNK_ROWS', 0)
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

  # As if killed while trial 1's step 4 was being written: it resumes from step 2, trial 0
  # from 4, and they train on together, each from its own step.
  (tmp_path / 'aside' / 'checkpoints').mkdir(parents=True)
  (workdirs[1] / 'checkpoints' / '4').rename(tmp_path / 'aside' / 'checkpoints' / '4')
  # Resumed to 6 steps, trial 0 equals the same config trained alone for 6.
  for config in configs:
    config.train.num_steps = 6
  with pytest.raises(train.NonFiniteError):
    packed.train_pack(configs, workdirs)
  assert train_steps(workdirs[0]) == train_steps(workdirs[1]) == [2, 4, 6]
  _assert_trees_close(
      _restored_params(workdirs[1], configs[1], 4),
      _restored_params(tmp_path / 'aside', configs[1], 4),
  )
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


def test_a_traced_field_that_is_none_in_one_trial_is_refused(tmp_path):
  a, b = tiny_config('wae_mmd'), tiny_config('wae_mmd')
  a.penalty.kernel_scale = 2.0  # b's None: the default C, a constant of b's step
  with pytest.raises(
      errors.ConfigError, match=r'differ in penalty\.kernel_scale \(2\.0 and None\)'
  ):
    packed.check_pack([a, b], [tmp_path / 'a', tmp_path / 'b'])
  assert packed.pack_key(a) != packed.pack_key(b)
  b.penalty.kernel_scale, b.seed = 8.0, 3
  assert packed.pack_key(a) == packed.pack_key(b)


def test_a_sweep_packs_seeds_of_a_configuration_and_reports_its_diverged_trial_alone(
    tmp_path, mnist_dir
):
  s = sweep_config('tiny', num_steps=4, num_checkpoints=1)
  s.fixed.data.dir = str(mnist_dir)
  s.fixed.train.max_nonfinite_steps = 2
  sampled = trials.sample_trials(s)
  groups = trials.packs(s, sampled, 2)
  # The tiny sweep: 2 configurations (other latent sizes: other shapes) x 2 seeds.
  assert [[t.trial_id for t in g] for g in groups] == [
      [t.trial_id for t in sampled if t.config_index == i] for i in (0, 1)
  ]
  assert [len(g) for g in trials.packs(s, sampled, 1)] == [1, 1, 1, 1]
  first, second = groups[0]
  second = dataclasses.replace(second, params={**second.params, 'train.learning_rate': 1e30})
  # The first trial's only checkpoint (step 4) counts as evaluated already (as after an
  # interrupted sweep): its evaluation, another process, is test_sweep's; this is the pack's.
  metric = trials.fid_metric(trials.trial_config(s, first))
  eval_path = trials.eval_file(trials.trial_workdir(tmp_path, first), 4)
  eval_path.parent.mkdir(parents=True)
  files.write_json(eval_path, {metric: {'value': 12.5}})

  result = trials.run_pack(s, [first, second], tmp_path)  # returns: Ray does not retry it
  assert [r['status'] for r in result] == ['ok', 'diverged']
  assert result[0]['best_fid'] == 12.5 and result[1]['best_fid'] is None
  assert train_steps(trials.trial_workdir(tmp_path, first)) == [4]
  assert (trials.trial_workdir(tmp_path, second) / packed.DIVERGED_FILE).exists()
  result = json.loads(json.dumps(result))  # as trial.json holds it: tuples as lists
  for trial, expected in zip((first, second), result):
    workdir = trials.trial_workdir(tmp_path, trial)
    assert json.loads((workdir / trials.TRIAL_FILE).read_text()) == expected
  folder = tmp_path / trials.PACKS_DIR / first.trial_id
  assert errors.diverged((folder / trials.LOG_FILE).read_text())
  # The pack's process trained exactly the trials' configs.
  configs, workdirs = trials.pack_configs(
      wae_config.load_config_file(first.config_file), folder / trials.PACK_FILE
  )
  assert [wae_config.flatten(c) for c in configs] == [
      wae_config.flatten(trials.trial_config(s, t)) for t in (first, second)
  ]
  assert workdirs == [str(trials.trial_workdir(tmp_path, t)) for t in (first, second)]
  # Finished trials are read back, not trained again.
  assert trials.run_pack(s, [first, second], tmp_path) == result


def _run_module(module, *args, timeout=600):
  """`python -m <module>` on the small WAE-MMD config, from the checkout."""
  return subprocess.run(
      [sys.executable, '-m', module, '--config=configs/mnist.py:wae_mmd,small', *args],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=timeout,
  )


def test_cli_trains_seeds_as_a_pack_and_refuses_bad_seeds_in_one_line(tmp_path, mnist_dir):
  result = _run_module(
      'wae_jax.main',
      f'--workdir={tmp_path}',
      '--seeds=3,5',
      '--config.train.num_steps=2',
      '--config.model.width=0.03125',
      '--config.train.batch_size=8',
      '--config.train.pretrain_steps=0',
      f'--config.data.dir={mnist_dir}',
      *SHALLOW_FLAGS,
  )
  assert result.returncode == 0, result.stderr[-4000:]
  assert 'Traceback' not in result.stderr
  assert 'Training a pack of 2 mmd trials' in result.stderr
  for seed in (3, 5):
    workdir = tmp_path / f'seed_{seed}'
    assert train_steps(workdir) == [2]
    assert json.loads(wae_config.record_file(workdir, 0).read_text())['seed'] == seed

  line = error_line(_run_module('wae_jax.main', f'--workdir={tmp_path}', '--seeds=1,x,1'))
  assert line == 'error: --seeds=1,x,1: expected distinct integers >= 0, e.g. --seeds=0,1,2'
  line = error_line(
      _run_module('wae_jax.main', f'--workdir={tmp_path}', '--seeds=3', '--mode=evaluate')
  )
  assert f'--workdir={tmp_path}/seed_3' in line


def test_a_pack_compiled_for_a_tpu_trains_whole_trials_per_chip_with_no_collectives():
  config = shallow_config()
  config.data.dir = None
  config.train.batch_size = 4  # libtpu compiles the pack in half the time it takes at 8
  r = aot.analyse(config, 'v5e:2x2', pack=8)  # 2 trials on each of the 4 chips
  assert r.pack == 8 and r.trials_per_chip == 2 and r.conv_impl == 'xla'
  # Each chip steps its own trials: nothing crosses chips (unpacked, the gradients are
  # all-reduced: test_aot), not even the images, which the partitioner gathered unasked.
  assert r.collectives == {}
  state = jax.eval_shape(lambda: train.create_train_state(config, jax.random.PRNGKey(0), 10))
  assert r.params_bytes == 2 * checkpoints.state_bytes((state.params, state.batch_stats))
  assert r.alias_bytes >= r.params_bytes + r.optimizer_bytes  # donated
  assert r.model_flops == pytest.approx(2 * flops.train_step_flops(config, config.train.batch_size))
  bound = r.roofline()
  assert bound['img_per_s'] == pytest.approx(8 * config.train.batch_size / bound['step_s'])
  assert bound['chip_s_per_trial_step'] == pytest.approx(bound['step_s'] * 4 / 8)
  assert 'a pack of 8 trials, batch 4 each (2 trials per chip)' in aot.format_report(r)

  # A pack takes as many chips as divide it, as in training (packed.trial_mesh).
  chips = aot.target('v5e:2x2').devices
  assert [packed.trial_mesh(k, chips).size for k in (2, 4, 6, 64)] == [2, 4, 3, 4]


def test_a_pack_that_libtpu_cannot_fit_while_compiling_is_one_line(monkeypatch):
  # Compiling 64 CelebA DCGAN trials for v5e:2x2 (16 per chip) ends in libtpu's
  # RESOURCE_EXHAUSTED: 20.03G of temporaries. It was a traceback; this is its shape.
  class _Step:

    def lower(self, *args):
      del args
      return self

    def compile(self):
      raise jax.errors.JaxRuntimeError(
          'RESOURCE_EXHAUSTED: E1000: CompileTimeHbmOom: Ran out of memory on HBM\nmore'
      )

  monkeypatch.setattr(packed, 'jit_packed', lambda *args: _Step())
  config = tiny_config('wae_mmd')
  config.data.dir = None
  with pytest.raises(aot.DoesNotFitError) as raised:
    aot.analyse(config, 'v5e:2x2', pack=64)
  assert str(raised.value) == (
      'XLA cannot fit the compiled step in a v5e: RESOURCE_EXHAUSTED: E1000: '
      'CompileTimeHbmOom: Ran out of memory on HBM Lower --pack (trials per chip), '
      'config.model.width, or use more chips or a chip with more HBM'
  )


class _PlanReport:
  """What sweep_plan.plan reads of an aot.Report: a packed step of K trials on 4 chips takes
  K / 4 x 1.5 ms against 4 ms unpacked; a pack of 16 does not fit."""

  num_chips = 4

  def __init__(self, pack):
    self.pack = pack

  def roofline(self):
    step_s = 4e-3 if self.pack == 1 else self.pack / 4 * 1.5e-3
    return dict(step_s=step_s, img_per_s=8 / step_s, bound='memory')

  def fit_error(self):
    return 'the compiled step needs 20 GiB per chip' if self.pack >= 16 else None


def test_the_plan_prints_the_sweeps_chip_hours_packed_against_unpacked():
  s = sweep_config('tiny')  # 2 shapes (latent sizes 4 and 8) x 2 seeds of 20 steps
  calls = []

  def analyse(config, topology, pack=1):
    calls.append(pack)
    return _PlanReport(pack)

  rows = sweep_plan.plan(s, 'v5e:2x2', analyse=analyse, num_chips=4, pack=4, progress=len)
  assert calls == [1, 4, 1, 4]
  for row in rows:  # 2 trials: one pack of 4, half empty; 20 steps of 4 / 4 x 1.5 ms x 4 chips
    assert row.chip_hours == pytest.approx(2 * 20 * 4e-3 * 4 / 3600)
    assert row.packed_chip_hours == pytest.approx(1 * 20 * 1.5e-3 * 4 / 3600)
  text = sweep_plan.format_plan(rows, 'v5e:2x2')
  assert 'Packed 4 at a time' in text and '5.33x fewer' in text
  rows = sweep_plan.plan(s, 'v5e:2x2', analyse=analyse, num_chips=4, pack=16, progress=len)
  assert all(r.packed_chip_hours == r.chip_hours for r in rows)  # does not fit: unpacked
  assert 'not packed (does not fit), counted unpacked' in sweep_plan.format_plan(rows, 'v5e:2x2')
  with pytest.raises(errors.ConfigError, match='--pack=6 does not split over the 4 chips'):
    sweep_plan.plan(s, 'v5e:2x2', analyse=analyse, num_chips=4, pack=6)


def test_a_damaged_or_missing_pack_file_is_one_line(tmp_path):
  given = tiny_config()
  (tmp_path / 'cut.json').write_text('{"trials": [{"con')
  (tmp_path / 'other.json').write_text('{"trials": [{"config": {}}]}')
  for name, why in (
      ('cut.json', 'JSONDecodeError'),
      ('other.json', "KeyError: 'workdir'"),
  ):
    with pytest.raises(errors.ConfigError, match='is not a pack file as run_pack writes it') as e:
      trials.pack_configs(given, tmp_path / name)
    assert why in str(e.value)
  missing = tmp_path / 'missing.json'
  line = error_line(
      _run_module('wae_jax.sweep', f'--workdir={tmp_path}', f'--train_pack={missing}', timeout=300)
  )
  assert line == f'error: --train_pack={missing}: no such file'
