"""The bigWAE sweep: sampling, trial configs, the results table, the Ray launcher end to end,
and its --plan (chip-hours from the ahead-of-time roofline)."""

import csv
import dataclasses
import io
import json
import math
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from tests.helpers import REPO
from wae_jax import checkpoints
from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax.accelerators import sweep_plan
from wae_jax.sweep import results
from wae_jax.sweep import trials
from wae_jax import train


def _sweep(arg='bigwae', **fields):
  s = wae_config.load_config_file(f'configs/sweep.py:{arg}')
  s.update(fields)
  return s


def _configs(sampled):
  """One trial per configuration (the seeds share its values)."""
  return [t for t in sampled if t.seed == 0]


def test_bigwae_samples_lie_in_their_ranges_and_spread_over_them():
  s = _sweep(num_configs=200)
  sampled = trials.sample_trials(s)
  assert len(sampled) == 200 * 3 * len(s.methods)
  for method in s.methods:
    configs = [t for t in _configs(sampled) if t.method == method]
    assert len(configs) == 200
    for path, spec in wae_config.flatten(s.space[method]).items():
      values = [t.params[path] for t in configs]
      kind = spec[0]
      if kind == 'choice':
        assert set(values) == set(spec[1]), (method, path)  # 200 draws hit every option.
        continue
      low, high = spec[1], spec[2]
      assert all(low <= v <= high for v in values), (method, path)
      if kind == 'log_uniform':  # Uniform in log: each half of the log range gets about half.
        u = (np.log(values) - np.log(low)) / (np.log(high) - np.log(low))
        assert 0.35 < np.mean(u < 0.5) < 0.65, (method, path)
        assert u.min() < 0.1 and u.max() > 0.9, (method, path)
  vae = [t for t in sampled if t.method == 'vae']
  assert all('model.gaussian_encoder' not in t.params for t in vae)


def test_sampling_is_reproducible_and_extending_keeps_earlier_configs():
  first = trials.sample_trials(_sweep(num_configs=4))
  assert first == trials.sample_trials(_sweep(num_configs=4))
  assert first[0].trial_id == 'wae_mmd-0000-s0' and first[1].trial_id == 'wae_mmd-0000-s1'
  assert first[3].trial_id == 'wae_gan-0000-s0'
  assert first[0].params == first[1].params == first[2].params
  other = trials.sample_trials(_sweep(num_configs=4, sweep_seed=1))
  assert [t.params for t in other] != [t.params for t in first]
  more = trials.sample_trials(_sweep(num_configs=9))
  assert more[: len(first)] == first
  # A sweep of one method draws that method's configurations unchanged.
  only_vae = trials.sample_trials(_sweep(num_configs=4, methods=('vae',)))
  assert only_vae == [t for t in first if t.method == 'vae']


def test_trial_config_validates_and_carries_the_values():
  s = _sweep('tiny')
  trial = trials.sample_trials(s)[3]
  config = trials.trial_config(s, trial)
  assert trial.trial_id == 'wae_mmd-0001-s1' and config.seed == 1
  for path, value in trial.params.items():
    assert wae_config.flatten(config)[path] == value
  assert config.train.num_steps == 20
  assert (config.train.checkpoint_every, config.train.keep_checkpoints) == (10, 2)
  assert config.model.width == 1 / 32 and config.eval.num_samples == 500

  big = _sweep(num_configs=20)
  sampled = [
      t
      for t in _configs(trials.sample_trials(big))
      if t.params['model.arch'] in wae_config.ARCHITECTURES
  ]
  assert {t.method for t in sampled} == set(big.methods)
  for t in sampled:
    config = trials.trial_config(big, t)
    assert config.data.name == 'celeba' and config.train.num_steps == 100_000
    assert (config.train.checkpoint_every, config.train.keep_checkpoints) == (20_000, 5)
    assert config.penalty.lam == t.params['penalty.lam']
    assert config.model.latent_dim == t.params['model.latent_dim']
    if t.method == 'wae_mmd':  # The IMQ base scale, as a multiple of 2 d_z sigma_z^2.
      assert config.penalty.kernel_scale == pytest.approx(
          t.params['penalty.kernel_scale_factor'] * 2 * config.model.latent_dim * 2.0
      )
    if t.method == 'vae':
      assert config.model.gaussian_encoder


def test_trials_carry_their_config_file_absolute_and_need_absolute_paths(tmp_path, monkeypatch):
  s = _sweep('tiny')
  sampled = trials.sample_trials(s)
  assert sampled[0].config_file == f'{REPO / "configs" / "mnist.py"}:wae_mmd,small'
  config = trials.trial_config(s, sampled[0])
  assert config.data.dir is None and config.penalty.kernel_scale is None  # fixed's None: unset
  monkeypatch.chdir(tmp_path)  # A Ray worker may start anywhere: the trial still builds.
  assert trials.trial_config(s, sampled[0]).to_dict() == config.to_dict()
  flags = trials.override_flags(sampled[0], config)
  assert flags['--config.train.num_steps'] == '20' and '--config.data.dir' not in flags
  assert flags['--config.penalty.lam'] == repr(sampled[0].params['penalty.lam'])
  with pytest.raises(ValueError, match='not found; the current directory is'):
    trials.sample_trials(s)  # configs/mnist.py is not in tmp_path
  s.fixed.data.dir = 'mnist'
  (tmp_path / 'mnist').mkdir()
  with pytest.raises(
      ValueError, match=r"config.data.dir='mnist' is relative; a sweep needs " 'absolute paths'
  ):
    trials.trial_config(s, sampled[0])
  s.fixed.data.dir = str(tmp_path / 'mnist')
  assert trials.trial_config(s, sampled[0]).data.dir == str(tmp_path / 'mnist')


def test_wrong_specs_and_fields_are_named(monkeypatch):
  s = _sweep('tiny')
  s.space.wae_mmd.penalty.lam = ('log_uniform', 0.0, 10.0)
  with pytest.raises(ValueError, match=r'sweep.space.wae_mmd.penalty.lam=.*0 < low < high'):
    trials.sample_trials(s)
  s = _sweep('tiny')
  s.space.wae_mmd.penalty.lam = ('normal', 0.0, 1.0)
  with pytest.raises(ValueError, match='choice, uniform, log_uniform'):
    trials.sample_trials(s)
  s = _sweep('tiny')
  s.space.wae_mmd.model.depth = ('choice', (1, 2))
  with pytest.raises(
      ValueError,
      match=r'sweep.space.wae_mmd.model.depth: the config has no ' r"field 'model.depth'",
  ):
    trials.trial_config(s, trials.sample_trials(s)[0])
  monkeypatch.delenv('WAE_JAX_INCEPTION_WEIGHTS', raising=False)
  with pytest.raises(ValueError, match='Inception FID'):
    trials.fid_metric(wae_config.load_config_file('configs/celeba.py:wae_mmd'))


def test_select_best_ignores_non_finite_fids():
  assert trials.select_best({3: 12.0, 6: float('nan'), 9: 10.5, 12: 11.0}) == (9, 10.5)
  assert trials.select_best({3: float('inf')}) == (None, None)


def _fake_trial(s, trial, root, fid, status='ok'):
  record = {
      **trials.trial_record(s, trial),
      'status': status,
      'fid_metric': 'fid_inception',
      'best_fid': fid,
      'best_step': 20_000 if fid is not None else None,
  }
  (root / trial.trial_id).mkdir(parents=True)
  (root / trial.trial_id / trials.TRIAL_FILE).write_text(json.dumps(record))


def _one_error_line(error):
  """What a command stopped by `error` prints last (errors.run's line)."""
  buffer = io.StringIO()
  assert errors.report(error, file=buffer) == errors.EXIT_STATUS
  return buffer.getvalue()


@pytest.mark.parametrize('diverged', [True, False])
def test_a_trial_whose_training_diverged_is_recorded_as_diverged_not_failed(
    tmp_path, monkeypatch, diverged
):
  s = _sweep('tiny')
  trial = trials.sample_trials(s)[0]
  with pytest.raises(train.NonFiniteError) as raised:
    train._check_nonfinite({'nonfinite_steps': 3}, 3, checkpoints.Checkpoints(tmp_path / 'c'))
  error = raised.value if diverged else errors.ConfigError('config.seed=-1 is not allowed')
  output = 'INFO a log line\n' + _one_error_line(error)
  monkeypatch.setattr(trials, '_run_module', lambda *args: (errors.EXIT_STATUS, output))
  if not diverged:
    with pytest.raises(trials.TrialError, match='exited with status 2'):
      trials.run_trial(s, trial, tmp_path)
    return
  result = trials.run_trial(s, trial, tmp_path)  # no checkpoint: nothing to evaluate
  assert result['status'] == 'diverged' and result['best_fid'] is None
  written = json.loads((tmp_path / trial.trial_id / trials.TRIAL_FILE).read_text())
  assert written['status'] == 'diverged'


def test_a_trial_that_really_diverges_is_recorded_as_diverged_not_failed(tmp_path, mnist_dir):
  # The tiny sweep's trial with an absurd learning rate (valid, but the first update makes the
  # loss non-finite), really trained: 2 non-finite steps in a row stop it before its only
  # checkpoint (step 6), so there is nothing to evaluate.
  s = _sweep('tiny', num_steps=6, num_checkpoints=1)
  s.fixed.data.dir = str(mnist_dir)
  s.fixed.train.max_nonfinite_steps = 2
  trial = trials.sample_trials(s)[0]
  trial = dataclasses.replace(trial, params={**trial.params, 'train.learning_rate': 1e30})
  result = trials.run_trial(s, trial, tmp_path)  # returns: Ray does not retry it
  assert result['status'] == 'diverged' and result['best_fid'] is None and result['fids'] == {}
  workdir = tmp_path / trial.trial_id
  assert json.loads((workdir / trials.TRIAL_FILE).read_text())['status'] == 'diverged'
  log = (workdir / trials.LOG_FILE).read_text()
  assert _attempts(workdir) == 1 and '--config.train.learning_rate=1e+30' in log
  assert (
      log.strip()
      .splitlines()[-1]
      .startswith('error: diverged: 2 steps in a row had a ' 'non-finite loss')
  )


def test_collect_writes_the_table_and_figures(tmp_path):
  s = _sweep(num_configs=2)
  sampled = _configs(trials.sample_trials(s))  # 2 configs x 3 methods
  for trial, fid in zip(sampled[:4], (60.0, 45.0, 70.0, 52.0)):
    _fake_trial(s, trial, tmp_path, fid)
  _fake_trial(s, sampled[4], tmp_path, None, status='diverged')
  failure = {**trials.trial_record(s, sampled[5]), 'error': 'Traceback\nValueError: boom\n'}
  results.write_failures(tmp_path, [failure])

  paths = results.collect(tmp_path)
  with open(paths['csv']) as f:
    rows = list(csv.DictReader(f))
  # By method, then best FID, the trials without one last.
  assert [r['trial_id'] for r in rows] == [sampled[i].trial_id for i in (2, 5, 1, 4, 3, 0)]
  by_id = {r['trial_id']: r for r in rows}
  assert by_id[sampled[1].trial_id]['best_fid'] == '45.0'
  assert by_id[sampled[1].trial_id]['status'] == 'ok'
  assert by_id[sampled[4].trial_id]['status'] == 'diverged'
  assert by_id[sampled[5].trial_id]['status'] == 'failed'
  assert by_id[sampled[5].trial_id]['error'] == 'ValueError: boom'
  assert float(by_id[sampled[0].trial_id]['penalty.lam']) == sampled[0].params['penalty.lam']
  markdown = paths['markdown'].read_text()
  assert '| wae_gan | 2 | 1 | 1 | 0 | 45.0 | wae_gan-0000-s0 | 20000 |' in markdown
  assert '| vae | 2 | 1 | 0 | 1 | 70.0 | vae-0000-s0 | 20000 |' in markdown
  for name in (
      'best_fid_per_method.png',
      'fid_vs_lambda.png',
      'fid_vs_latent_dim.png',
      'fid_vs_learning_rate.png',
  ):
    with Image.open(tmp_path / name) as image:
      assert image.size[0] > 300
    assert f'![{name}]({name})' in markdown


# ---------------------------------------------------------------------------------------------
# End to end: launch/ray_sweep.py on a local Ray instance, 2 trials of 6 steps on real MNIST.


def _launch(root, cache, mnist_dir, max_retries):
  command = [
      sys.executable,
      'launch/ray_sweep.py',
      '--sweep=configs/sweep.py:tiny',
      f'--root={root}',
      '--max_concurrent=2',
      '--num_cpus=2',
      f'--max_retries={max_retries}',
      '--progress_secs=20',
      '--sweep.seeds_per_config=1',
      '--sweep.num_steps=6',
      '--sweep.fixed.eval.num_samples=200',
      '--sweep.fixed.eval.sharpness_images=50',
      '--sweep.fixed.eval.mmd_codes=50',
      f'--sweep.fixed.eval.cache_dir={cache}',
      f'--sweep.fixed.data.dir={mnist_dir}',
  ]
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def _attempts(trial_dir):
  return (trial_dir / trials.LOG_FILE).read_text().count('\n=== ')


def test_ray_sweep_retries_reports_failures_and_skips_finished_trials(tmp_path, mnist_dir):
  # The FID is on the shipped classifier (seed 0): nothing is trained.
  cache = tmp_path / 'cache'
  root = tmp_path / 'sweep'
  ok, bad = root / 'wae_mmd-0000-s0', root / 'wae_mmd-0001-s0'
  # A damaged record of the config in its workdir: the trial's training refuses to start.
  bad.mkdir(parents=True)
  (bad / wae_config.LATEST_FILE).write_text('{not json')

  first = _launch(root, cache, mnist_dir, max_retries=1)
  assert first.returncode == 1, first.stderr[-4000:]
  assert '1 trials failed' in first.stdout
  assert 'skipping 0 finished' in first.stderr and 'Progress: 2/2 done, 1 failed' in first.stderr
  result = json.loads((ok / trials.TRIAL_FILE).read_text())
  assert result['status'] == 'ok' and result['fid_metric'] == 'fid_mnist_classifier'
  assert set(result['fids']) == {'3', '6'} and result['best_step'] in (3, 6)
  for step in (3, 6):
    evaluated = json.loads(trials.eval_file(ok, step).read_text())
    assert evaluated['step'] == step
    assert evaluated['fid_mnist_classifier']['value'] == result['fids'][str(step)]
  assert result['best_fid'] == min(result['fids'].values()) and math.isfinite(result['best_fid'])
  # The trained config is the trial's, through the command-line overrides.
  trial = trials.sample_trials(_sweep('tiny', seeds_per_config=1))[0]
  assert result['params'] == trial.params
  trained = json.loads((ok / 'config.json').read_text())
  assert trained['penalty']['lam'] == trial.params['penalty.lam']
  assert trained['train']['learning_rate'] == trial.params['train.learning_rate']
  assert trained['model']['latent_dim'] == trial.params['model.latent_dim']
  assert trained['train']['checkpoint_every'] == 3 and trained['model']['width'] == 1 / 32
  # The failing trial: tried twice (one retry), then reported.
  assert not (bad / trials.TRIAL_FILE).exists() and _attempts(bad) == 2
  failures = json.loads((root / results.FAILURES_FILE).read_text())
  assert [f['trial_id'] for f in failures] == ['wae_mmd-0001-s0']
  assert 'config.json is not valid JSON' in failures[0]['error']
  assert failures[0]['attempts'] == 2
  finished_at = (ok / trials.TRIAL_FILE).stat().st_mtime_ns

  second = _launch(root, cache, mnist_dir, max_retries=0)
  assert second.returncode == 1, second.stderr[-4000:]
  assert 'skipping 1 finished' in second.stderr
  assert _attempts(ok) == 2  # training and evaluation, in the first run only
  assert (ok / trials.TRIAL_FILE).stat().st_mtime_ns == finished_at
  assert _attempts(bad) == 3
  with open(root / 'results.csv') as f:
    rows = {r['trial_id']: r for r in csv.DictReader(f)}
  assert rows['wae_mmd-0000-s0']['status'] == 'ok'
  assert float(rows['wae_mmd-0000-s0']['best_fid']) == result['best_fid']
  assert rows['wae_mmd-0001-s0']['status'] == 'failed'
  for name in (
      'results.md',
      'best_fid_per_method.png',
      'fid_vs_lambda.png',
      'fid_vs_latent_dim.png',
      'fid_vs_learning_rate.png',
  ):
    assert (root / name).stat().st_size > 0


# ---------------------------------------------------------------------------------------------
# --plan: the sweep's chip-hours from each compiled shape's roofline, before anything runs.


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


def _plan_sweep():
  """tiny with the batch size searched too: 6 (not divisible by 4 chips), 8 and 12."""
  s = _sweep('tiny', num_configs=12)
  s.fixed = trials.nested(
      {p: v for p, v in wae_config.flatten(s.fixed).items() if p != 'train.batch_size'}
  )
  s.space.wae_mmd.train.batch_size = ('choice', (6, 8, 12))
  return s


def test_plan_shape_key_drops_only_what_cannot_change_the_step():
  s = _sweep('tiny')
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
  s = _plan_sweep()
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
