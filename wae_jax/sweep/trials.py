"""A sweep's trials: sampling them, a trial's config, its run and its selection by FID.

A sweep is data (configs/sweep.py). `sample_trials` draws its configurations reproducibly,
`trial_config` turns a trial into a validated wae_jax config, and `run_trial` trains it in a
subprocess (`python -m wae_jax.main`, so that XLA's memory and threads go with the process),
evaluates every kept checkpoint in another (`python -m wae_jax.sweep --steps=...`: one
process for all of them) and keeps the best by FID. Nothing here imports Ray:
launch/ray_sweep.py schedules `run_trial` on it.

A trial's folder `<root>/<trial_id>/` holds its workdir; `trial.json` is written last, so its
presence means the trial is finished. A trial started again resumes from its checkpoints. Its
subprocesses run in that folder, with its base config file made absolute when the trial was
sampled: nothing depends on where a checkout is or on the current directory of a Ray worker.
"""

import dataclasses
import json
import math
import os
import pathlib
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple
import zlib

import ml_collections
import numpy as np

from wae_jax import config as wae_config
from wae_jax import data as datasets
from wae_jax import errors
from wae_jax import files

# A method's index here (not in a sweep's own list) numbers its random stream, so that a sweep
# of any subset of methods draws the same configurations.
METHODS = tuple(wae_config.OBJECTIVES)  # wae_mmd | wae_gan | vae
DISTRIBUTIONS = ('choice', 'uniform', 'log_uniform')
# Search-space values that are not config fields: name -> (config field, f(value, config)).
# The IMQ base scale is searched as a multiple of the paper's C = 2 d_z sigma_z^2.
DERIVED = {
    'penalty.kernel_scale_factor': (
        'penalty.kernel_scale',
        lambda factor, c: factor * 2 * c.model.latent_dim * c.model.prior_variance,
    ),
}
TRIAL_FILE = 'trial.json'
LOG_FILE = 'log.txt'
LOG_TAIL_CHARS = 3000
# Linux: a subprocess gets SIGTERM when the process that started it dies (a Ray worker killed
# with its driver) instead of training on as an orphan; training checkpoints on SIGTERM.
_DIE_WITH_PARENT = (
    'import ctypes, os, signal, sys; '
    'ctypes.CDLL(None).prctl(1, signal.SIGTERM); '  # 1 = PR_SET_PDEATHSIG
    'os.execv(sys.executable, [sys.executable] + sys.argv[1:])'
)


class TrialError(RuntimeError):
  """A trial's training or evaluation failed (the message ends with its log's tail)."""


@dataclasses.dataclass(frozen=True)
class Trial:
  trial_id: str  # e.g. 'wae_mmd-0003-s1'
  method: str
  config_index: int
  seed: int
  params: Dict[str, Any]  # the sampled values, by field path (DERIVED names included)
  config_file: str  # sweep.base[method] with its file made absolute when sampled


# ---------------------------------------------------------------------------------------------
# Config trees.


def nested(flat: Dict[str, Any]) -> ml_collections.ConfigDict:
  """{'a.b': 1} -> ConfigDict a.b = 1; sweeps are written flat and overridden nested."""
  tree = ml_collections.ConfigDict()
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split('.')
    for key in parents:
      if key not in node:
        node[key] = ml_collections.ConfigDict()
      node = node[key]
    node[leaf] = value
  return tree


def _set(config, path: str, value, source: str) -> None:
  node = config
  *parents, leaf = path.split('.')
  for key in parents:
    node = node.get(key) if isinstance(node, ml_collections.ConfigDict) else None
  if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
    raise errors.ConfigError(f'{source}: the config has no field {path!r}')
  try:
    node[leaf] = value
  except TypeError as e:
    raise errors.ConfigError(f'{source}={value!r} does not fit config.{path}: {e}') from e


# ---------------------------------------------------------------------------------------------
# Sampling.


def _check_spec(field: str, spec) -> None:
  kind = spec[0] if isinstance(spec, (tuple, list)) and spec else None
  if kind == 'choice':
    ok = len(spec) == 2 and isinstance(spec[1], (tuple, list)) and len(spec[1]) > 0
    expected = "('choice', (value, ...)) with at least one value"
  elif kind in ('uniform', 'log_uniform'):
    ok = len(spec) == 3 and all(isinstance(v, (int, float)) for v in spec[1:])
    ok = ok and spec[1] < spec[2] and (kind == 'uniform' or spec[1] > 0)
    expected = f"('{kind}', low, high) with {'0 < ' if kind == 'log_uniform' else ''}low < high"
  else:
    ok, expected = False, f'a tuple whose first item is one of {", ".join(DISTRIBUTIONS)}'
  if not ok:
    raise errors.ConfigError(f'{field}={spec!r} is invalid: expected {expected}')


def sample_value(spec, rng: np.random.Generator):
  """One draw of ('choice', options) | ('uniform', low, high) | ('log_uniform', low, high)."""
  kind = spec[0]
  if kind == 'choice':
    return spec[1][int(rng.integers(len(spec[1])))]
  low, high = float(spec[1]), float(spec[2])
  if kind == 'uniform':
    return float(rng.uniform(low, high))
  return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def sample_trials(sweep) -> List[Trial]:
  """Every trial of the sweep, configuration by configuration, methods interleaved.

  Configuration i of a method draws each field from its own stream,
  default_rng([sweep_seed, method index, i, crc32(field)]): more configurations, another
  method or another searched field leave the values already drawn unchanged.
  """
  trials = []
  for method in sweep.methods:
    if method not in METHODS:
      raise errors.ConfigError(f'sweep.methods contains {method!r}; allowed: {", ".join(METHODS)}')
    for field in ('base', 'space'):
      if method not in sweep[field]:
        raise errors.ConfigError(f'sweep.{field} has no entry for method {method!r}')
  spaces = {m: wae_config.flatten(sweep.space[m]) for m in sweep.methods}
  # Relative to the current directory, once, here: the trials may run anywhere.
  config_files = {m: wae_config.resolve_config_file(sweep.base[m]) for m in sweep.methods}
  for method, space in spaces.items():
    for path, spec in space.items():
      _check_spec(f'sweep.space.{method}.{path}', spec)
  for i in range(sweep.num_configs):
    for method in sweep.methods:
      params = {}
      for path, spec in sorted(spaces[method].items()):
        seed = [sweep.sweep_seed, METHODS.index(method), i, zlib.crc32(path.encode())]
        params[path] = sample_value(spec, np.random.default_rng(seed))
      for s in range(sweep.seeds_per_config):
        trials.append(Trial(f'{method}-{i:04d}-s{s}', method, i, s, params, config_files[method]))
  return trials


# ---------------------------------------------------------------------------------------------
# A trial's config.


def trial_config(sweep, trial: Trial) -> ml_collections.ConfigDict:
  """The validated wae_jax config of a trial: base, then sweep.fixed (its None fields keep the
  base's values), the sampled values, the DERIVED ones, the seed and the step and checkpoint
  budget. Paths must be absolute: the trial's processes run in its folder."""
  config = wae_config.load_config_file(trial.config_file)
  fixed = {p: v for p, v in wae_config.flatten(sweep.fixed).items() if v is not None}
  for path, value in fixed.items():
    _set(config, path, value, f'sweep.fixed.{path}')
  for path, value in trial.params.items():
    if path in fixed:
      raise errors.ConfigError(
          f'sweep.space.{trial.method}.{path} is also in sweep.fixed; ' 'keep one'
      )
    if path not in DERIVED:
      _set(config, path, value, f'sweep.space.{trial.method}.{path}')
  for name, (path, fn) in DERIVED.items():
    if name in trial.params:
      _set(config, path, fn(trial.params[name], config), f'sweep.space.{trial.method}.{name}')
  n, k = sweep.num_steps, sweep.num_checkpoints
  if not 1 <= k <= n:
    raise errors.ConfigError(
        f'sweep.num_checkpoints={k!r} is invalid: must be in ' f'1..num_steps ({n})'
    )
  config.seed = trial.seed
  config.train.num_steps = n
  config.train.checkpoint_every = n // k
  config.train.keep_checkpoints = k
  wae_config.validate(config)
  flat = wae_config.flatten(config)
  for path in wae_config.PATH_FIELDS:
    if flat[path] is not None and not os.path.isabs(os.path.expanduser(flat[path])):
      raise errors.ConfigError(
          f'config.{path}={flat[path]!r} is relative; a sweep needs '
          "absolute paths (a trial's processes run in its own folder)"
      )
  return config


def fid_metric(config) -> str:
  """The FID a trial is selected by: Inception when its weights are configured, else the data
  set's own extractor's (its record's; MNIST's classifier)."""
  from wae_jax.evaluation import inception  # pylint: disable=g-import-not-at-top

  if inception.configured_path(config.eval.inception_weights) is not None:
    return 'fid_inception'
  own = datasets.get(config.data.name).fid_extractor
  if own:
    return f'fid_{own}'
  raise errors.ConfigError(
      f'config.eval.inception_weights is None (and '
      f'${inception.WEIGHTS_ENV} unset): {config.data.name} trials are '
      'selected by the Inception FID; set '
      'sweep.fixed.eval.inception_weights to the weights file'
  )


def _flag_value(value) -> str:
  if isinstance(value, (tuple, list)):
    return repr(tuple(value))
  return repr(value) if isinstance(value, float) else str(value)


def override_flags(trial: Trial, config) -> Dict[str, str]:
  """--config.<field> flags for every field where `config` differs from the trial's base."""
  base = wae_config.flatten(wae_config.load_config_file(trial.config_file))
  flags = {}
  for path, value in wae_config.flatten(config).items():
    if base.get(path) == value:
      continue
    if value is None:  # A placeholder's flag parses its type: None cannot be written.
      raise errors.ConfigError(
          f'config.{path} is None but {base[path]!r} in '
          f'{trial.config_file}: a command-line override cannot unset a '
          'field'
      )
    flags[f'--config.{path}'] = _flag_value(value)
  return flags


def _subprocess_env() -> Dict[str, str]:
  """This process's environment, plus the folder this wae_jax was imported from when that is
  not an installed one's site-packages (a source tree on sys.path): the subprocesses, which
  start in a trial's folder, then run this same code."""
  env = dict(os.environ)
  root = pathlib.Path(__file__).resolve().parents[2]
  if root.name not in ('site-packages', 'dist-packages'):
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(root), env.get('PYTHONPATH')]))
  return env


# ---------------------------------------------------------------------------------------------
# Running a trial.


def _run_module(
    module: str, config_spec: str, flags: Dict[str, str], workdir: pathlib.Path, *extra: str
) -> Tuple[int, str]:
  """python -m <module> --config=... --workdir=...: (exit status, the end of its output).

  The output is appended to workdir/log.txt, after a line with the command.
  """
  args = [
      '-m',
      module,
      f'--config={config_spec}',
      f'--workdir={workdir}',
      *extra,
      *(f'{k}={v}' for k, v in flags.items()),
  ]
  run = [sys.executable, *(['-c', _DIE_WITH_PARENT] if sys.platform == 'linux' else []), *args]
  with open(workdir / LOG_FILE, 'ab') as log:
    header = f'\n=== {time.strftime("%Y-%m-%d %H:%M:%S")} {sys.executable} {" ".join(args)}\n'
    log.write(header.encode())
    log.flush()
    start = log.tell()
    code = subprocess.run(
        run, cwd=workdir, env=_subprocess_env(), stdout=log, stderr=subprocess.STDOUT, check=False
    ).returncode
  with open(workdir / LOG_FILE, 'rb') as log:
    log.seek(max(start, log.seek(0, os.SEEK_END) - LOG_TAIL_CHARS))
    return code, log.read().decode(errors='replace')


def checkpoint_steps(workdir: pathlib.Path) -> List[int]:
  """Steps of the complete checkpoints (orbax's own listing would initialise JAX here, and on
  a GPU take its memory from the next trial)."""
  folder = workdir / 'checkpoints'
  if not folder.is_dir():
    return []
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def eval_file(workdir: pathlib.Path, step: int) -> pathlib.Path:
  return workdir / 'eval' / f'step_{step:07d}.json'


def select_best(fids: Dict[int, float]) -> Tuple[Optional[int], Optional[float]]:
  """(step, FID) of the lowest finite FID; (None, None) if there is none."""
  finite = {s: v for s, v in fids.items() if v is not None and math.isfinite(v)}
  if not finite:
    return None, None
  step = min(finite, key=lambda s: (finite[s], s))
  return step, finite[step]


def trial_record(sweep, trial: Trial) -> Dict[str, Any]:
  """What identifies a trial in trial.json and failures.json."""
  return {
      'trial_id': trial.trial_id,
      'method': trial.method,
      'config_index': trial.config_index,
      'seed': trial.seed,
      'params': trial.params,
      'space': {p: list(spec) for p, spec in wae_config.flatten(sweep.space[trial.method]).items()},
      'base': sweep.base[trial.method],
      'num_steps': sweep.num_steps,
  }


def run_trial(sweep, trial: Trial, root) -> Dict[str, Any]:
  """Trains, evaluates each kept checkpoint, writes <root>/<trial_id>/trial.json last.

  Returns the trial.json contents (read back if the trial had finished already). Training
  that stops on non-finite losses is not an error: the trial is 'diverged' (its exit status
  and one `error: diverged: ` line say so) and its earlier checkpoints still count. Any other
  failure raises TrialError, for the caller to retry.
  """
  workdir = trial_workdir(root, trial)
  done = workdir / TRIAL_FILE
  if done.exists():
    return json.loads(done.read_text())
  config = trial_config(sweep, trial)
  workdir.mkdir(parents=True, exist_ok=True)
  start = time.time()
  code, output = _run_module(
      'wae_jax.main', trial.config_file, override_flags(trial, config), workdir, '--mode=train'
  )
  if code != 0 and not errors.diverged(output):
    raise TrialError(
        f'{trial.trial_id}: training exited with status {code}; the end of its '
        f'output ({workdir / LOG_FILE}):\n{output}'
    )
  status = 'ok' if code == 0 else 'diverged'
  return _evaluate_trial(sweep, trial, config, workdir, status, time.time() - start)


def trial_workdir(root, trial: Trial) -> pathlib.Path:
  return pathlib.Path(root).absolute() / trial.trial_id


PACKS_DIR = 'packs'  # <root>/packs/<first trial's id>/: a pack's PACK_FILE and log
PACK_FILE = 'pack.json'


def packs(sweep, pending: List[Trial], size: int) -> List[List[Trial]]:
  """The trials in packs of at most `size` that can train together (one packed.pack_key),
  in the order of their first trial."""
  from wae_jax import packed  # pylint: disable=g-import-not-at-top  (imports JAX)

  groups: Dict[str, List[List[Trial]]] = {}
  order = []
  for trial in pending:
    key = packed.pack_key(trial_config(sweep, trial))
    chunks = groups.setdefault(key, [])
    if not chunks or len(chunks[-1]) == size:
      chunks.append([])
      order.append(chunks[-1])
    chunks[-1].append(trial)
  return order


def run_pack(sweep, pack: List[Trial], root) -> List[Dict[str, Any]]:
  """run_trial for trials that train as one pack (`packed.train_pack`, in one subprocess:
  `python -m wae_jax.sweep --train_pack=FILE`), each then evaluated alone. A trial that
  diverges is 'diverged' (its workdir's packed.DIVERGED_FILE) while the others train on; any
  other failure of the pack raises TrialError, for the caller to retry the pack."""
  from wae_jax import packed  # pylint: disable=g-import-not-at-top  (imports JAX)

  todo = [t for t in pack if not (trial_workdir(root, t) / TRIAL_FILE).exists()]
  if len(todo) < 2:
    return [run_trial(sweep, t, root) for t in pack]
  configs = [trial_config(sweep, t) for t in todo]
  workdirs = [trial_workdir(root, t) for t in todo]
  folder = pathlib.Path(root).absolute() / PACKS_DIR / todo[0].trial_id
  folder.mkdir(parents=True, exist_ok=True)
  for workdir in workdirs:
    workdir.mkdir(parents=True, exist_ok=True)
  files.write_json(
      folder / PACK_FILE,
      {
          'trials': [
              {'trial_id': t.trial_id, 'workdir': str(w), 'config': wae_config.as_dict(c)}
              for t, w, c in zip(todo, workdirs, configs)
          ]
      },
  )
  start = time.time()
  code, output = _run_module(
      'wae_jax.sweep', todo[0].config_file, {}, folder, f'--train_pack={folder / PACK_FILE}'
  )
  if code != 0 and not errors.diverged(output):
    raise TrialError(
        f'pack {", ".join(t.trial_id for t in todo)}: training exited with status {code}; the '
        f'end of its output ({folder / LOG_FILE}):\n{output}'
    )
  seconds = time.time() - start
  results = {}
  for trial, config, workdir in zip(todo, configs, workdirs):
    status = 'diverged' if (workdir / packed.DIVERGED_FILE).exists() else 'ok'
    # Its share of the pack's time: the pack trained its trials at once.
    results[trial.trial_id] = _evaluate_trial(
        sweep, trial, config, workdir, status, seconds / len(todo)
    )
  return [
      results.get(t.trial_id) or json.loads((trial_workdir(root, t) / TRIAL_FILE).read_text())
      for t in pack
  ]


def pack_configs(given, pack_file) -> Tuple[List[ml_collections.ConfigDict], List[str]]:
  """The configs and workdirs run_pack wrote to `pack_file`, each built on `given` (the
  trials' base config file) with every recorded value."""
  try:
    recorded = json.loads(pathlib.Path(pack_file).read_text())['trials']
    pairs = [(trial['config'], trial['workdir']) for trial in recorded]
  except FileNotFoundError as e:
    raise errors.NotFoundError(f'--train_pack={pack_file}: no such file') from e
  except (ValueError, KeyError, TypeError) as e:  # not JSON, or not a pack's
    raise errors.ConfigError(
        f'--train_pack={pack_file} is not a pack file as run_pack writes it (JSON with '
        f'"trials": [{{"config": ..., "workdir": ...}}, ...]): {type(e).__name__}: {e}'
    ) from e
  configs = []
  for recorded_config, _ in pairs:
    config = given.copy_and_resolve_references()
    for path, value in wae_config.flatten(recorded_config).items():
      _set(config, path, wae_config.as_config_value(value), f'{pack_file}: {path}')
    configs.append(config)
  return configs, [workdir for _, workdir in pairs]


def _evaluate_trial(
    sweep, trial: Trial, config, workdir: pathlib.Path, status: str, train_seconds: float
) -> Dict[str, Any]:
  """Evaluates each kept checkpoint of a trained trial (those evaluated before it was
  interrupted keep their results), selects the best and writes trial.json."""
  start = time.time()
  metric = fid_metric(config)
  flags = override_flags(trial, config)
  steps = checkpoint_steps(workdir)
  todo = [str(step) for step in steps if not eval_file(workdir, step).exists()]
  code, output = (
      _run_module('wae_jax.sweep', trial.config_file, flags, workdir, f'--steps={",".join(todo)}')
      if todo
      else (0, '')
  )
  fids = {}
  for step in steps:
    path = eval_file(workdir, step)
    results = json.loads(path.read_text()) if path.exists() else {}
    if metric not in results:
      raise TrialError(
          f'{trial.trial_id}: evaluating step {step} gave no {metric} (exit '
          f'status {code}); the end of its output ({workdir / LOG_FILE}):\n{output}'
      )
    fids[step] = results[metric]['value']
  best_step, best_fid = select_best(fids)
  result = {
      **trial_record(sweep, trial),
      'status': status if best_fid is not None else 'diverged',
      'fid_metric': metric,
      'best_fid': best_fid,
      'best_step': best_step,
      'fids': {str(s): v for s, v in fids.items()},
      'workdir': str(workdir),
      'train_seconds': round(train_seconds, 1),
      'seconds': round(train_seconds + time.time() - start, 1),
  }
  files.write_json(workdir / TRIAL_FILE, result)
  return result
