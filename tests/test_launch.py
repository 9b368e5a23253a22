"""launch/mnist_table.sh and launch/mnist_baselines.sh: which runs they start, with which configs;
launch/ray_sweep.py's flag errors, before Ray starts.

The scripts run against a stand-in `python` that records its arguments, so no training
happens; each recorded training's flags are then parsed by the real config flag and checked.
The sweep itself on Ray is test_ray_sweep.py's.
"""

import os
import pathlib
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
import pytest

from tests.helpers import REPO
from tests.helpers import error_line
from wae_jax import config as wae_config

_SEPARATOR = '\x1f'
# Records its arguments, one command per line; `python - WORKDIR` is the scripts' "already
# evaluated?" check, answered no.
_FAKE_PYTHON = f"""#!/usr/bin/env bash
printf '%s{_SEPARATOR}' "$@" >> "$PYTHON_CALLS"
echo >> "$PYTHON_CALLS"
[[ "$1" == - ]] && exit 1
exit 0
"""


def fake_python_env(tmp_path, body: str, **env):
  """os.environ with a `python` running `body` first on PATH; it may append to $PYTHON_CALLS."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  fake = bin_dir / 'python'
  fake.write_text(body)
  fake.chmod(0o755)
  return dict(
      os.environ,
      PATH=f'{bin_dir}:{os.environ["PATH"]}',
      PYTHON_CALLS=str(tmp_path / 'calls'),
      **env,
  )


def run_script(tmp_path, script, *args, **env):
  """The python commands `bash launch/<script> args` starts, each as a list of arguments."""
  subprocess.run(
      ['bash', f'launch/{script}', *args],
      cwd=REPO,
      check=True,
      capture_output=True,
      env=fake_python_env(tmp_path, _FAKE_PYTHON, **env),
  )
  calls = (tmp_path / 'calls').read_text().splitlines()
  return [line.split(_SEPARATOR)[:-1] for line in calls]


def parse_config(argv):
  """The config `python -m wae_jax.main argv` trains, parsed as its --config flag does."""
  values = flags.FlagValues()
  saved, sys.argv = sys.argv, ['main'] + argv  # overrides are found in sys.argv
  try:
    config_flags.DEFINE_config_file('config', None, '', flag_values=values, lock_config=True)
    values(['main'] + [a for a in argv if a.startswith('--config')])
  finally:
    sys.argv = saved
  return values.config


def changes(config, spec, **fields):
  """{field: new value} where `config` differs from the config file's own `spec` with `fields`
  set."""
  base = wae_config.flatten(wae_config.load_config_file(spec))
  base.update(fields)
  return {k: v for k, v in wae_config.flatten(config).items() if base[k] != v}


def flag(command, name):
  return next(a.split('=', 1)[1] for a in command if a.startswith(f'--{name}='))


def trainings(calls):
  return [c for c in calls if c[:2] == ['-m', 'wae_jax.main'] and '--mode=evaluate' not in c]


def test_mnist_table_trains_and_evaluates_every_objective_and_seed(tmp_path):
  calls = run_script(tmp_path, 'mnist_table.sh', 'ROOT')
  train = trainings(calls)
  evaluate = [c for c in calls if '--mode=evaluate' in c]
  expected = [
      (f'ROOT/{objective}/seed{seed}', f'configs/mnist.py:{objective},small', seed)
      for objective in wae_config.OBJECTIVES
      for seed in '012'
  ]
  for commands in (train, evaluate):
    assert [
        (flag(c, 'workdir'), flag(c, 'config'), flag(c, 'config.seed')) for c in commands
    ] == expected
  report = calls[-1]
  assert report[:2] == ['-m', 'wae_jax.evaluation.report']
  assert flag(report, 'workdirs').split(',') == [w for w, _, _ in expected]
  assert flag(report, 'names').split(',')[::3] == [
      'WAE-MMD',
      'WAE-GAN',
      'VAE',
      'WAE-SWD',
      'WAE-Sinkhorn',
  ]
  for command in train:
    wae_config.validate(parse_config(command))


# Each setting of launch/mnist_baselines.sh and how it differs from the paper's settings.
BASELINE_CHANGES = {
    'vae_gaussian_decoder': ('vae', {'cost.name': 'l2sq'}),
    'vae_constant_lr': ('vae', {'train.lr_decay': ()}),
    'wae_mmd_constant_lr': ('wae_mmd', {'train.lr_decay': ()}),
    'wae_mmd_no_heuristics': ('wae_mmd', {'train.pretrain_steps': 0, 'train.input_noise': 0.0}),
    'wae_mmd_reference_balance': ('wae_mmd', {'penalty.lam': 0.15}),
    'vae_lam0.3333': ('vae', {'penalty.lam': 0.3333}),
    'vae_lam1': ('vae', {}),
    'vae_lam3': ('vae', {'penalty.lam': 3.0}),
    'vae_lam10': ('vae', {'penalty.lam': 10.0}),
    'wae_mmd_lam3.333': ('wae_mmd', {'penalty.lam': 3.333}),
    'wae_mmd_lam10': ('wae_mmd', {}),
    'wae_mmd_lam30': ('wae_mmd', {'penalty.lam': 30.0}),
    'wae_mmd_lam100': ('wae_mmd', {'penalty.lam': 100.0}),
    'wae_gan_lam3.333': ('wae_gan', {'penalty.lam': 3.333}),
    'wae_gan_lam10': ('wae_gan', {}),
    'wae_gan_lam30': ('wae_gan', {'penalty.lam': 30.0}),
    'wae_gan_lam100': ('wae_gan', {'penalty.lam': 100.0}),
}


def test_mnist_baselines_changes_one_setting_of_the_papers_per_run(tmp_path):
  calls = run_script(tmp_path, 'mnist_baselines.sh', 'ROOT', SEEDS='0 1')
  train = trainings(calls)
  assert len(train) == 2 * len(BASELINE_CHANGES)
  for command in train:
    setting = pathlib.PurePath(flag(command, 'workdir')).parts[1]
    objective, expected = BASELINE_CHANGES[setting]
    config = parse_config(command)
    wae_config.validate(config)
    spec = flag(command, 'config')
    assert spec == f'configs/mnist.py:{objective},small'
    # The paper's lambda is its full-size config's; the small one may hold the search's.
    paper = wae_config.load_config_file(f'configs/mnist.py:{objective}')
    changed = changes(config, spec, **{'penalty.lam': paper.penalty.lam})
    assert changed.pop('seed', 0) == int(flag(command, 'config.seed'))
    assert changed == expected
  # One report over every run.
  report = calls[-1]
  names = flag(report, 'names').split(',')
  workdirs = flag(report, 'workdirs').split(',')
  assert names == [name for name in BASELINE_CHANGES for _ in range(2)]
  assert workdirs[:2] == [
      'ROOT/vae_gaussian_decoder/vae/seed0',
      'ROOT/vae_gaussian_decoder/vae/seed1',
  ]
  assert all(w.startswith(f'ROOT/{n}/') for w, n in zip(workdirs, names))


@pytest.mark.parametrize('script', ['mnist_table.sh', 'mnist_baselines.sh'])
def test_launch_script_stops_at_the_first_failure(tmp_path, script):
  """A failed training must not be followed by more runs or a report over missing results."""
  failing = '#!/usr/bin/env bash\necho "$@" >> "$PYTHON_CALLS"\nexit 3\n'
  result = subprocess.run(
      ['bash', f'launch/{script}', str(tmp_path / 'root')],
      cwd=REPO,
      env=fake_python_env(tmp_path, failing),
      capture_output=True,
  )
  assert result.returncode != 0
  assert len((tmp_path / 'calls').read_text().splitlines()) == 1


@pytest.mark.parametrize(
    'arg, line',
    [
        (
            '--sweep.fixed.train.num_stepz=1',
            'error: --sweep.fixed.train.num_stepz=1: the config has '
            "no field 'fixed.train.num_stepz'",
        ),
        # A close match: ml_collections wraps its KeyError in an AttributeError.
        (
            '--sweep.num_configz=1',
            'error: --sweep.num_configz=1: the config has no field '
            '\'num_configz\'; Did you mean "num_configs" instead of "num_configz"? (the config '
            'file lists every field)',
        ),
        (
            '--resources=notjson',
            'error: --resources=notjson: not a JSON object of resource names '
            'and amounts >= 0; e.g. --resources=\'{"TPU": 4}\'',
        ),
        ('--max_retries=-1', 'error: flag --max_retries=-1: -1 is not a non-negative integer'),
        (
            '--max_concurrent=-1',
            'error: flag --max_concurrent=-1: -1 is not a non-negative integer',
        ),
    ],
)
def test_ray_sweep_refuses_a_bad_flag_in_one_line_before_ray_starts(tmp_path, arg, line):
  # A `ray` that cannot be imported: the refusal must come before the sweep needs Ray.
  (tmp_path / 'no_ray' / 'ray').mkdir(parents=True)
  (tmp_path / 'no_ray' / 'ray' / '__init__.py').write_text(
      'raise ImportError("ray_sweep imported Ray before refusing its flags")\n'
  )
  result = subprocess.run(
      [
          sys.executable,
          'launch/ray_sweep.py',
          '--sweep=configs/sweep.py:tiny',
          f'--root={tmp_path / "root"}',
          arg,
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=120,
      env=dict(os.environ, PYTHONPATH=str(tmp_path / 'no_ray')),
  )
  assert error_line(result).startswith(line)
  assert not (tmp_path / 'root').exists()
