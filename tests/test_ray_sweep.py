"""launch/ray_sweep.py end to end: a local Ray instance, 2 configs x 2 seeds of 6 steps on
real MNIST in packs of 2, a failing trial's pack run again trial by trial, the failing trial
retried and reported, finished trials skipped on a second launch."""

import csv
import json
import math
import os
import subprocess
import sys

from tests.helpers import REPO
from tests.helpers import sweep_config
from wae_jax import config as wae_config
from wae_jax.sweep import results
from wae_jax.sweep import trials


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
      '--sweep.seeds_per_config=2',
      '--pack=2',
      '--sweep.num_steps=6',
      '--sweep.fixed.eval.num_samples=200',
      '--sweep.fixed.eval.sharpness_images=50',
      '--sweep.fixed.eval.mmd_codes=50',
      f'--sweep.fixed.eval.cache_dir={cache}',
      f'--sweep.fixed.data.dir={mnist_dir}',
  ]
  # Ray starts its workers, and so the trials' processes, at nice 15: among the test session's
  # other processes they got a few percent of the CPU (344 s for this test in the suite, 50 s
  # alone). At nice 0 they get their share.
  env = dict(os.environ, RAY_worker_niceness='0')
  return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _attempts(trial_dir):
  return (trial_dir / trials.LOG_FILE).read_text().count('\n=== ')


def test_ray_sweep_retries_reports_failures_and_skips_finished_trials(tmp_path, mnist_dir):
  # The FID is on the shipped classifier (seed 0): nothing is trained.
  cache = tmp_path / 'cache'
  root = tmp_path / 'sweep'
  # wae_mmd-0000-s0 and -s1 train as one pack; wae_mmd-0001-s0 and -s1 try to, but -s0 fails
  # its pack, and -s1 then trains alone.
  ok, packed_mate = root / 'wae_mmd-0000-s0', root / 'wae_mmd-0000-s1'
  bad, bad_mate = root / 'wae_mmd-0001-s0', root / 'wae_mmd-0001-s1'
  # A damaged record of the config in its workdir: the trial's training refuses to start.
  bad.mkdir(parents=True)
  (bad / wae_config.LATEST_FILE).write_text('{not json')

  first = _launch(root, cache, mnist_dir, max_retries=1)
  assert first.returncode == 1, first.stderr[-4000:]
  assert '1 trials failed' in first.stdout
  assert 'skipping 0 finished' in first.stderr and 'Progress: 4/4 done, 1 failed' in first.stderr
  assert 'pack wae_mmd-0001-s0, wae_mmd-0001-s1 failed after 2 attempts' in first.stderr
  assert 'its trials run again one by one' in first.stderr
  # The first pack trained together (its record, one training log), its trials evaluated alone.
  pack_file = root / trials.PACKS_DIR / 'wae_mmd-0000-s0' / trials.PACK_FILE
  recorded = json.loads(pack_file.read_text())['trials']
  assert [t['trial_id'] for t in recorded] == ['wae_mmd-0000-s0', 'wae_mmd-0000-s1']
  assert _attempts(pack_file.parent) == 1 and _attempts(ok) == 1  # its evaluation
  mate = json.loads((packed_mate / trials.TRIAL_FILE).read_text())
  assert mate['status'] == 'ok' and mate['seed'] == 1 and set(mate['fids']) == {'3', '6'}
  # The failed pack's other trial trained alone (training and evaluation in its own log).
  assert json.loads((bad_mate / trials.TRIAL_FILE).read_text())['status'] == 'ok'
  assert _attempts(bad_mate) == 2
  result = json.loads((ok / trials.TRIAL_FILE).read_text())
  assert result['status'] == 'ok' and result['fid_metric'] == 'fid_mnist_classifier'
  assert set(result['fids']) == {'3', '6'} and result['best_step'] in (3, 6)
  for step in (3, 6):
    evaluated = json.loads(trials.eval_file(ok, step).read_text())
    assert evaluated['step'] == step
    assert evaluated['fid_mnist_classifier']['value'] == result['fids'][str(step)]
  assert result['best_fid'] == min(result['fids'].values()) and math.isfinite(result['best_fid'])
  # The trained config is the trial's, through the command-line overrides.
  trial = trials.sample_trials(sweep_config('tiny', seeds_per_config=2))[0]
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
  assert 'skipping 3 finished' in second.stderr
  assert _attempts(ok) == 1  # its evaluation, in the first run only
  assert (ok / trials.TRIAL_FILE).stat().st_mtime_ns == finished_at
  assert _attempts(bad) == 3
  with open(root / 'results.csv') as f:
    rows = {r['trial_id']: r for r in csv.DictReader(f)}
  assert rows['wae_mmd-0000-s0']['status'] == 'ok'
  assert float(rows['wae_mmd-0000-s0']['best_fid']) == result['best_fid']
  assert rows['wae_mmd-0001-s0']['status'] == 'failed'
  assert rows['wae_mmd-0000-s1']['status'] == rows['wae_mmd-0001-s1']['status'] == 'ok'
  for name in (
      'results.md',
      'best_fid_per_method.png',
      'fid_vs_lambda.png',
      'fid_vs_latent_dim.png',
      'fid_vs_learning_rate.png',
  ):
    assert (root / name).stat().st_size > 0
