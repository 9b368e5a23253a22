"""The bigWAE sweep's trials: sampling, trial configs, a trial's run and status, the results
table."""

import csv
import dataclasses
import io
import json

import numpy as np
from PIL import Image
import pytest

from tests.helpers import REPO
from tests.helpers import sweep_config
from wae_jax import checkpoints
from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import train
from wae_jax.sweep import results
from wae_jax.sweep import trials


def _configs(sampled):
  """One trial per configuration (the seeds share its values)."""
  return [t for t in sampled if t.seed == 0]


def test_bigwae_samples_lie_in_their_ranges_and_spread_over_them():
  s = sweep_config(num_configs=200)
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
  first = trials.sample_trials(sweep_config(num_configs=4))
  assert first == trials.sample_trials(sweep_config(num_configs=4))
  assert first[0].trial_id == 'wae_mmd-0000-s0' and first[1].trial_id == 'wae_mmd-0000-s1'
  assert first[3].trial_id == 'wae_gan-0000-s0'
  assert first[0].params == first[1].params == first[2].params
  other = trials.sample_trials(sweep_config(num_configs=4, sweep_seed=1))
  assert [t.params for t in other] != [t.params for t in first]
  more = trials.sample_trials(sweep_config(num_configs=9))
  assert more[: len(first)] == first
  # A sweep of one method draws that method's configurations unchanged.
  only_vae = trials.sample_trials(sweep_config(num_configs=4, methods=('vae',)))
  assert only_vae == [t for t in first if t.method == 'vae']


def test_trial_config_validates_and_carries_the_values():
  s = sweep_config('tiny')
  trial = trials.sample_trials(s)[3]
  config = trials.trial_config(s, trial)
  assert trial.trial_id == 'wae_mmd-0001-s1' and config.seed == 1
  for path, value in trial.params.items():
    assert wae_config.flatten(config)[path] == value
  assert config.train.num_steps == 20
  assert (config.train.checkpoint_every, config.train.keep_checkpoints) == (10, 2)
  assert config.model.width == 1 / 32 and config.eval.num_samples == 500

  big = sweep_config(num_configs=20)
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
  s = sweep_config('tiny')
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
  s = sweep_config('tiny')
  s.space.wae_mmd.penalty.lam = ('log_uniform', 0.0, 10.0)
  with pytest.raises(ValueError, match=r'sweep.space.wae_mmd.penalty.lam=.*0 < low < high'):
    trials.sample_trials(s)
  s = sweep_config('tiny')
  s.space.wae_mmd.penalty.lam = ('normal', 0.0, 1.0)
  with pytest.raises(ValueError, match='choice, uniform, log_uniform'):
    trials.sample_trials(s)
  s = sweep_config('tiny')
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
  s = sweep_config('tiny')
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
  s = sweep_config('tiny', num_steps=6, num_checkpoints=1)
  s.fixed.data.dir = str(mnist_dir)
  s.fixed.train.max_nonfinite_steps = 2
  trial = trials.sample_trials(s)[0]
  trial = dataclasses.replace(trial, params={**trial.params, 'train.learning_rate': 1e30})
  result = trials.run_trial(s, trial, tmp_path)  # returns: Ray does not retry it
  assert result['status'] == 'diverged' and result['best_fid'] is None and result['fids'] == {}
  workdir = tmp_path / trial.trial_id
  assert json.loads((workdir / trials.TRIAL_FILE).read_text())['status'] == 'diverged'
  log = (workdir / trials.LOG_FILE).read_text()
  assert log.count('\n=== ') == 1 and '--config.train.learning_rate=1e+30' in log
  assert (
      log.strip()
      .splitlines()[-1]
      .startswith('error: diverged: 2 steps in a row had a ' 'non-finite loss')
  )


def test_collect_writes_the_table_and_figures(tmp_path):
  s = sweep_config(num_configs=2)
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
