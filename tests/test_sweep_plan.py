"""The sweep's --plan (wae_jax/accelerators/sweep_plan.py): chip-hours from each compiled
shape's roofline, before anything runs."""

import os
import subprocess
import sys

from tests.helpers import REPO
from tests.helpers import sweep_config
from wae_jax import config as wae_config
from wae_jax.accelerators import sweep_plan
from wae_jax.sweep import trials


class _FakeReport:
  """What sweep_plan.plan reads of an aot.Report; the step time follows the latent dim and
  batch."""

  num_chips = 4

  def __init__(self, config):
    self.latent_dim, self.batch_size = config.model.latent_dim, config.train.batch_size

  def roofline(self):
    step_s = 1e-3 * self.latent_dim + 1e-4 * self.batch_size
    return dict(
        compute_s=step_s,
        memory_s=step_s / 3,
        step_s=step_s,
        img_per_s=self.batch_size / step_s,
        bound='compute',
    )

  def fit_error(self):
    return 'the compiled step needs 20 GiB per chip' if self.batch_size == 12 else None


def _fake_analyse(calls):
  from wae_jax.accelerators import aot  # pylint: disable=g-import-not-at-top

  def analyse(config, topology):
    calls.append((config.model.latent_dim, config.train.batch_size, topology))
    if (config.model.latent_dim, config.train.batch_size) == (8, 12):
      raise aot.DoesNotFitError('the parameters and optimizer state need 99 GiB per chip')
    return _FakeReport(config)

  return analyse


def _plansweep_config():
  """tiny with the batch size searched too: 6 (not divisible by 4 chips), 8 and 12."""
  s = sweep_config('tiny', num_configs=12)
  s.fixed = trials.nested(
      {p: v for p, v in wae_config.flatten(s.fixed).items() if p != 'train.batch_size'}
  )
  s.space.wae_mmd.train.batch_size = ('choice', (6, 8, 12))
  return s


def test_plan_shape_key_drops_only_what_cannot_change_the_step():
  s = sweep_config('tiny')
  sampled = trials.sample_trials(s)
  a, b = trials.trial_config(s, sampled[0]), trials.trial_config(s, sampled[1])  # seeds 0 and 1
  assert sweep_plan.shape_key(a) == sweep_plan.shape_key(b)
  b.train.learning_rate, b.penalty.lam, b.penalty.kernel_scale = 3e-3, 55.0, 3.3
  b.train.num_steps, b.train.lr_decay, b.train.input_noise = 999, ((1, 0.1),), 0.05
  b.eval.num_samples, b.data.dir = 7, '/elsewhere'
  assert sweep_plan.shape_key(a) == sweep_plan.shape_key(b)
  key = sweep_plan.shape_key(a)
  assert key['model.latent_dim'] == a.model.latent_dim and key['train.input_noise'] is True
  assert not {'seed', 'penalty.lam', 'train.learning_rate', 'eval.num_samples'} & set(key)
  for path, value in [
      ('model.latent_dim', 16),
      ('train.batch_size', 12),
      ('train.input_noise', 0.0),
      ('train.adam_b1', 0.9),
      ('penalty.name', 'gan'),
      ('model.dtype', 'bfloat16'),
  ]:
    c = trials.trial_config(s, sampled[0])
    trials._set(c, path, value, 'test')  # pylint: disable=protected-access
    assert sweep_plan.shape_key(c) != key, path


def test_plan_compiles_each_shape_once_and_adds_up_the_chip_hours(tmp_path):
  s = _plansweep_config()
  sampled = trials.sample_trials(s)
  combos = {}
  for t in sampled:
    combos.setdefault((t.params['model.latent_dim'], t.params['train.batch_size']), []).append(t)
  assert len(combos) == 6  # every latent dim with every batch size
  calls, lines = [], []
  rows = sweep_plan.plan(
      s,
      'v5e:2x2',
      analyse=_fake_analyse(calls),
      num_chips=4,
      progress=lines.append,
      cache_path=tmp_path / sweep_plan.PLAN_CACHE_FILE,
  )
  # One compile per shape: the trials of a shape differ in learning rate, lambda and seed only.
  compiled = sorted(c for c in combos if c[1] % 4 == 0)
  assert sorted(calls) == [(*c, 'v5e:2x2') for c in compiled]
  assert [line.split(' for ')[0] for line in lines] == [f'compiling {i}/4' for i in range(1, 5)]
  assert len(rows) == 6
  by_combo = {(r.key['model.latent_dim'], r.key['train.batch_size']): r for r in rows}
  assert {c: r.trial_ids for c, r in by_combo.items()} == {
      c: [t.trial_id for t in ts] for c, ts in combos.items()
  }
  assert any(len({t.params['train.learning_rate'] for t in ts}) > 1 for ts in combos.values())

  total = 0.0
  for (latent_dim, batch_size), row in by_combo.items():
    assert row.steps == 20 * len(row.trial_ids)  # sweep.num_steps per trial
    if batch_size == 6:
      assert row.status == 'indivisible' and row.chip_hours == 0.0
      assert 'train.batch_size=6 does not split over the 4 chips' in row.note
    elif batch_size == 12:
      assert row.status == 'does not fit' and row.chip_hours == 0.0
      assert row.note == (
          'the parameters and optimizer state need 99 GiB per chip'
          if latent_dim == 8
          else 'the compiled step needs 20 GiB per chip'
      )
    else:
      step_s = 1e-3 * latent_dim + 1e-4 * batch_size
      assert (row.status, row.step_s, row.bound) == ('ok', step_s, 'compute')
      assert row.chip_hours == row.steps * step_s * 4 / 3600
      total += row.chip_hours
  counted = sum(len(combos[c]) for c in combos if c[1] == 8)

  text = sweep_plan.format_plan(rows, 'v5e:2x2')
  header = text.splitlines()[2]
  assert 'model.latent_dim' in header and 'train.batch_size' in header
  assert 'learning_rate' not in header and 'lam' not in header
  assert f'Total: {total:.3g} chip-hours on v5e:2x2 for {counted} of {len(sampled)} trials' in text
  assert 'lower bound from the roofline, not a measurement' in text
  assert 'Evaluation (FID, checkpoints)' in text and 'not included' in text
  assert text.count('not counted: batch not divisible by 4') == 2
  assert text.count('not counted: does not fit in HBM') == 2
  assert ': the parameters and optimizer state need 99 GiB per chip' in text

  # A rerun reads the figures back from the cache file: no compile.
  def no_compile(config, topology):
    raise AssertionError('compiled again')

  again = sweep_plan.plan(
      s,
      'v5e:2x2',
      analyse=no_compile,
      num_chips=4,
      progress=lines.append,
      cache_path=tmp_path / sweep_plan.PLAN_CACHE_FILE,
  )
  assert len(lines) == 4 and all(r.cached for r in again if r.status != 'indivisible')
  assert [(r.trial_ids, r.status, r.step_s, r.note) for r in again] == [
      (r.trial_ids, r.status, r.step_s, r.note) for r in rows
  ]
  assert sweep_plan.format_plan(again, 'v5e:2x2').splitlines()[-2:] == text.splitlines()[-2:]
  # Another topology is another compile; the in-memory cache serves as the file does.
  cache = {}
  sweep_plan.plan(
      s, 'v5e:4x4', analyse=_fake_analyse(calls), num_chips=4, cache=cache, progress=lines.append
  )
  sweep_plan.plan(s, 'v5e:4x4', analyse=no_compile, num_chips=4, cache=cache, progress=lines.append)
  assert len(calls) == 8 and len(cache) == 4


def _plan_command(*args):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  return subprocess.run(
      [sys.executable, 'launch/ray_sweep.py', '--plan', '--sweep=configs/sweep.py:tiny', *args],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=600,
  )


def test_plan_of_the_tiny_sweep_compiles_for_v5e(tmp_path):
  # The tiny sweep: 2 configurations x 2 seeds, at most 2 shapes of ~10 s compiles each.
  first = _plan_command('--topology=v5e:2x2', f'--root={tmp_path}')
  assert first.returncode == 0, first.stderr[-4000:]
  assert 'compiling 1/' in first.stderr
  assert first.stdout.startswith('Sweep plan on v5e:2x2 (4 chips): 4 trials in ')
  assert '| counted |' in first.stdout
  total = [line for line in first.stdout.splitlines() if line.startswith('Total: ')]
  assert len(total) == 1 and 'chip-hours on v5e:2x2 for 4 of 4 trials' in total[0]
  assert 'a lower bound from the roofline, not a measurement' in first.stdout.lower()
  assert (tmp_path / sweep_plan.PLAN_CACHE_FILE).exists()
  second = _plan_command('--topology=v5e:2x2', f'--root={tmp_path}')
  assert second.returncode == 0, second.stderr[-4000:]
  assert 'compiling' not in second.stderr and 'counted, cached' in second.stdout
  assert [l for l in second.stdout.splitlines() if l.startswith('Total: ')] == total


def test_plan_with_an_unknown_topology_exits_2_naming_the_allowed_ones():
  result = _plan_command('--topology=v9z:1x1')
  assert result.returncode == 2 and result.stdout == ''
  errors = [line for line in result.stderr.splitlines() if 'v9z' in line]
  assert len(errors) == 1 and errors[0].startswith('error: ')
  assert 'allowed: TPUs v4, v5e' in errors[0] and 'h100' in errors[0]
