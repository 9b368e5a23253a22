"""The bigWAE random search: trials, their configs, one trial's run, the results table.

A sweep is data (configs/sweep.py). `sample_trials` draws its configurations reproducibly,
`trial_config` turns a trial into a validated wae_jax config, `run_trial` trains it in a
subprocess (`python -m wae_jax.main`, so that XLA's memory and threads go with the process),
evaluates every kept checkpoint in another (`python -m wae_jax.sweep --steps=...`: one
process for all of them) and keeps the best by FID, and `collect` writes the table and the
figures. Nothing here imports Ray: launch/ray_sweep.py schedules `run_trial` on it.
`plan` and `format_plan` are its --plan: the sweep's chip-hours on a TPU or GPU topology from
each compiled shape's ahead-of-time roofline (wae_jax.accelerators.aot), before anything runs.

A trial's folder `<root>/<trial_id>/` holds its workdir; `trial.json` is written last, so its
presence means the trial is finished. A trial started again resumes from its checkpoints. Its
subprocesses run in that folder, with its base config file made absolute when the trial was
sampled: nothing depends on where a checkout is or on the current directory of a Ray worker.
"""

import csv
import dataclasses
import hashlib
import importlib.metadata
import json
import math
import os
import pathlib
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple
import zlib

import ml_collections
import numpy as np

from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import files
from wae_jax import input_pipeline

# A method's index here (not in a sweep's own list) numbers its random stream, so that a sweep
# of any subset of methods draws the same configurations.
METHODS = tuple(wae_config.OBJECTIVES)  # wae_mmd | wae_gan | vae
DISTRIBUTIONS = ('choice', 'uniform', 'log_uniform')
# Search-space values that are not config fields: name -> (config field, f(value, config)).
# The IMQ base scale is searched as a multiple of the paper's C = 2 d_z sigma_z^2.
DERIVED = {
    'penalty.kernel_scale_factor': (
        'penalty.kernel_scale',
        lambda factor, c: factor * 2 * c.model.latent_dim * c.model.prior_variance),
}
TRIAL_FILE = 'trial.json'
FAILURES_FILE = 'failures.json'
LOG_FILE = 'log.txt'
# Figures of the best FID against a searched field: file name -> field.
FID_VS = {'fid_vs_lambda.png': 'penalty.lam', 'fid_vs_latent_dim.png': 'model.latent_dim',
          'fid_vs_learning_rate.png': 'train.learning_rate'}
LOG_TAIL_CHARS = 3000
# Linux: a subprocess gets SIGTERM when the process that started it dies (a Ray worker killed
# with its driver) instead of training on as an orphan; training checkpoints on SIGTERM.
_DIE_WITH_PARENT = ('import ctypes, os, signal, sys; '
                    'ctypes.CDLL(None).prctl(1, signal.SIGTERM); '  # 1 = PR_SET_PDEATHSIG
                    'os.execv(sys.executable, [sys.executable] + sys.argv[1:])')


class TrialError(RuntimeError):
  """A trial's training or evaluation failed (the message ends with its log's tail)."""


@dataclasses.dataclass(frozen=True)
class Trial:
  trial_id: str        # e.g. 'wae_mmd-0003-s1'
  method: str
  config_index: int
  seed: int
  params: Dict[str, Any]  # the sampled values, by field path (DERIVED names included)
  config_file: str     # sweep.base[method] with its file made absolute when sampled


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
        trials.append(Trial(f'{method}-{i:04d}-s{s}', method, i, s, params,
                            config_files[method]))
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
      raise errors.ConfigError(f'sweep.space.{trial.method}.{path} is also in sweep.fixed; '
                               'keep one')
    if path not in DERIVED:
      _set(config, path, value, f'sweep.space.{trial.method}.{path}')
  for name, (path, fn) in DERIVED.items():
    if name in trial.params:
      _set(config, path, fn(trial.params[name], config), f'sweep.space.{trial.method}.{name}')
  n, k = sweep.num_steps, sweep.num_checkpoints
  if not 1 <= k <= n:
    raise errors.ConfigError(f'sweep.num_checkpoints={k!r} is invalid: must be in '
                             f'1..num_steps ({n})')
  config.seed = trial.seed
  config.train.num_steps = n
  config.train.checkpoint_every = n // k
  config.train.keep_checkpoints = k
  wae_config.validate(config)
  flat = wae_config.flatten(config)
  for path in wae_config.PATH_FIELDS:
    if flat[path] is not None and not os.path.isabs(os.path.expanduser(flat[path])):
      raise errors.ConfigError(f'config.{path}={flat[path]!r} is relative; a sweep needs '
                               "absolute paths (a trial's processes run in its own folder)")
  return config


def fid_metric(config) -> str:
  """The FID a trial is selected by: Inception when its weights are configured, else (MNIST
  only) the MNIST classifier's."""
  from wae_jax.evaluation import inception  # pylint: disable=g-import-not-at-top
  if inception.configured_path(config.eval.inception_weights) is not None:
    return 'fid_inception'
  if config.data.name == 'mnist':
    return 'fid_mnist_classifier'
  raise errors.ConfigError(f'config.eval.inception_weights is None (and '
                           f'${inception.WEIGHTS_ENV} unset): {config.data.name} trials are '
                           'selected by the Inception FID; set '
                           'sweep.fixed.eval.inception_weights to the weights file')


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
      raise errors.ConfigError(f'config.{path} is None but {base[path]!r} in '
                               f'{trial.config_file}: a command-line override cannot unset a '
                               'field')
    flags[f'--config.{path}'] = _flag_value(value)
  return flags


def _subprocess_env() -> Dict[str, str]:
  """This process's environment, plus the folder this wae_jax was imported from when that is
  not an installed one's site-packages (a source tree on sys.path): the subprocesses, which
  start in a trial's folder, then run this same code."""
  env = dict(os.environ)
  root = pathlib.Path(__file__).resolve().parents[1]
  if root.name not in ('site-packages', 'dist-packages'):
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(root), env.get('PYTHONPATH')]))
  return env


# ---------------------------------------------------------------------------------------------
# Running a trial.


def _run_module(module: str, config_spec: str, flags: Dict[str, str],
                workdir: pathlib.Path, *extra: str) -> Tuple[int, str]:
  """python -m <module> --config=... --workdir=...: (exit status, the end of its output).

  The output is appended to workdir/log.txt, after a line with the command.
  """
  args = ['-m', module, f'--config={config_spec}', f'--workdir={workdir}', *extra,
          *(f'{k}={v}' for k, v in flags.items())]
  run = [sys.executable, *(['-c', _DIE_WITH_PARENT] if sys.platform == 'linux' else []), *args]
  with open(workdir / LOG_FILE, 'ab') as log:
    header = f'\n=== {time.strftime("%Y-%m-%d %H:%M:%S")} {sys.executable} {" ".join(args)}\n'
    log.write(header.encode())
    log.flush()
    start = log.tell()
    code = subprocess.run(run, cwd=workdir, env=_subprocess_env(), stdout=log,
                          stderr=subprocess.STDOUT, check=False).returncode
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
  return {'trial_id': trial.trial_id, 'method': trial.method,
          'config_index': trial.config_index, 'seed': trial.seed, 'params': trial.params,
          'space': {p: list(spec)
                    for p, spec in wae_config.flatten(sweep.space[trial.method]).items()},
          'base': sweep.base[trial.method], 'num_steps': sweep.num_steps}


def run_trial(sweep, trial: Trial, root) -> Dict[str, Any]:
  """Trains, evaluates each kept checkpoint, writes <root>/<trial_id>/trial.json last.

  Returns the trial.json contents (read back if the trial had finished already). Training
  that stops on non-finite losses is not an error: the trial is 'diverged' and its earlier
  checkpoints still count. Any other failure raises TrialError, for the caller to retry.
  """
  workdir = pathlib.Path(root).absolute() / trial.trial_id
  done = workdir / TRIAL_FILE
  if done.exists():
    return json.loads(done.read_text())
  config = trial_config(sweep, trial)
  metric = fid_metric(config)
  workdir.mkdir(parents=True, exist_ok=True)
  spec = trial.config_file
  flags = override_flags(trial, config)

  start = time.time()
  train_flags = dict(flags)
  if trial.trial_id in [t.strip() for t in sweep.inject_failure.split(',')]:
    # A value the command line cannot parse: the training process exits at once with an error.
    train_flags['--config.train.num_steps'] = 'injected_failure'
  code, output = _run_module('wae_jax.main', spec, train_flags, workdir, '--mode=train')
  status = 'ok'
  if code != 0:
    if not errors.diverged(output):
      raise TrialError(f'{trial.trial_id}: training exited with status {code}; the end of its '
                       f'output ({workdir / LOG_FILE}):\n{output}')
    status = 'diverged'
  train_seconds = time.time() - start

  steps = checkpoint_steps(workdir)
  # Steps evaluated before the trial was interrupted keep their results.
  todo = [str(step) for step in steps if not eval_file(workdir, step).exists()]
  code, output = (_run_module('wae_jax.sweep', spec, flags, workdir, f'--steps={",".join(todo)}')
                  if todo else (0, ''))
  fids = {}
  for step in steps:
    path = eval_file(workdir, step)
    results = json.loads(path.read_text()) if path.exists() else {}
    if metric not in results:
      raise TrialError(f'{trial.trial_id}: evaluating step {step} gave no {metric} (exit '
                       f'status {code}); the end of its output ({workdir / LOG_FILE}):\n{output}')
    fids[step] = results[metric]['value']
  best_step, best_fid = select_best(fids)
  result = {**trial_record(sweep, trial), 'status': status if best_fid is not None else
            'diverged', 'fid_metric': metric, 'best_fid': best_fid, 'best_step': best_step,
            'fids': {str(s): v for s, v in fids.items()}, 'workdir': str(workdir),
            'train_seconds': round(train_seconds, 1),
            'seconds': round(time.time() - start, 1)}
  files.write_json(done, result)
  return result


def write_failures(root, failures: List[Dict[str, Any]]) -> pathlib.Path:
  """<root>/failures.json: trials that failed after their retries (trial_record + error)."""
  path = pathlib.Path(root) / FAILURES_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  files.write_json(path, failures)
  return path


# ---------------------------------------------------------------------------------------------
# The table and the figures.


def load_rows(root) -> List[Dict[str, Any]]:
  """One dict per trial: the finished ones' trial.json, then failures.json's others."""
  root = pathlib.Path(root)
  rows = [json.loads(p.read_text()) for p in sorted(root.glob(f'*/{TRIAL_FILE}'))]
  finished = {r['trial_id'] for r in rows}
  failures = root / FAILURES_FILE
  if failures.exists():
    rows += [{**f, 'status': 'failed'} for f in json.loads(failures.read_text())
             if f['trial_id'] not in finished]
  return sorted(rows, key=lambda r: (r['method'], r.get('best_fid') is None,
                                     r.get('best_fid') or 0.0, r['trial_id']))


def _last_line(text: Optional[str]) -> str:
  lines = [line for line in (text or '').splitlines() if line.strip()]
  return lines[-1].strip() if lines else ''


def _cells(row: Dict[str, Any]) -> Dict[str, Any]:
  return {**row, **row.get('params', {}), 'error': _last_line(row.get('error'))}


def collect(root) -> Dict[str, pathlib.Path]:
  """Writes <root>/results.csv, results.md and the figures; returns their paths by name."""
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  rows = load_rows(root)
  params = sorted({p for r in rows for p in r.get('params', {})})
  columns = ['trial_id', 'method', 'config_index', 'seed', 'status', 'fid_metric', 'best_fid',
             'best_step', *params, 'error']
  paths = {'csv': root / 'results.csv', 'markdown': root / 'results.md'}
  with open(paths['csv'], 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in rows:
      cells = _cells(row)
      writer.writerow(['' if cells.get(c) is None else cells[c] for c in columns])
  for name, field in [('best_fid_per_method.png', None), *FID_VS.items()]:
    paths[name] = make_figure(rows, root / name, field)
  figures = [name for name in paths if name.endswith('.png')]
  paths['markdown'].write_text(markdown(rows, columns[:-1], params, root, figures))
  return paths


def _number(value) -> str:
  from wae_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  if value is None:
    return report.MISSING
  return report.format_number(value) if isinstance(value, float) else str(value)


def markdown(rows, columns, params, root, figures) -> str:
  """A summary per method (trials, their statuses, the best), then one row per trial."""
  lines = ['# Sweep results', '',
           f'{len(rows)} trials in `{root}`; each row is a trial\'s best checkpoint by FID '
           '(fid_metric: the features it was computed on).', '',
           '| method | trials | ok | diverged | failed | best FID | trial | step |',
           '|---|---:|---:|---:|---:|---:|---|---:|']
  for method in sorted({r['method'] for r in rows}):
    mine = [r for r in rows if r['method'] == method]
    counts = [sum(r['status'] == s for r in mine) for s in ('ok', 'diverged', 'failed')]
    best = min((r for r in mine if r.get('best_fid') is not None),
               key=lambda r: r['best_fid'], default={})
    cells = [method, len(mine), *counts, best.get('best_fid'), best.get('trial_id'),
             best.get('best_step')]
    lines.append('| ' + ' | '.join(map(_number, cells)) + ' |')
  numeric = ('config_index', 'seed', 'best_fid', 'best_step', *params)
  lines += ['', '| ' + ' | '.join(columns) + ' |',
            '|' + '|'.join('---:' if c in numeric else '---' for c in columns) + '|']
  for row in rows:
    cells = _cells(row)
    lines.append('| ' + ' | '.join(_number(cells.get(c)) for c in columns) + ' |')
  lines += ['', *(f'![{name}]({name})' for name in figures)]
  return '\n'.join(lines) + '\n'


def make_figure(rows, path: pathlib.Path, field: Optional[str]) -> pathlib.Path:
  """Best FID per trial: by method (field None) or against a searched field, one colour per
  method; log x where the field is log-uniform, as it was searched."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(6.0, 4.0), layout='constrained')
  FigureCanvasAgg(figure)
  ax = figure.subplots()
  finished = [r for r in rows if r.get('best_fid') is not None]
  methods = sorted({r['method'] for r in rows})
  metrics = sorted({r['fid_metric'] for r in finished})
  ax.set_ylabel(f'best FID ({", ".join(metrics)})' if metrics else 'best FID')
  plotted = False
  for k, method in enumerate(methods):
    mine = [r for r in finished if r['method'] == method and
            (field is None or r['params'].get(field) is not None)]
    if not mine:
      continue
    fids = np.array([r['best_fid'] for r in mine])
    if field is None:
      jitter = np.random.default_rng(k).uniform(-0.15, 0.15, len(mine))
      ax.scatter(k + jitter, fids, s=12, alpha=0.6, color=f'C{k}')
      ax.plot([k - 0.3, k + 0.3], [fids.min()] * 2, color=f'C{k}', lw=2)
      ax.annotate(_number(float(fids.min())), (k + 0.3, fids.min()), fontsize='small',
                  va='center')
    else:
      ax.scatter([r['params'][field] for r in mine], fids, s=12, alpha=0.7, color=f'C{k}',
                 label=method)
    plotted = True
  if field is None:
    ax.set_xticks(range(len(methods)), methods)
    ax.set_title('Best FID of each trial, by method (line: the best)')
  else:
    ax.set_xlabel(field)
    ax.set_title(f'Best FID against {field}')
    specs = [r['space'][field] for r in rows if field in r.get('space', {})]
    if any(spec[0] == 'log_uniform' for spec in specs):
      ax.set_xscale('log')
    if specs and all(spec[0] != 'choice' for spec in specs):  # The whole searched range.
      low, high = min(spec[1] for spec in specs), max(spec[2] for spec in specs)
      pad = (high / low) ** 0.03 if ax.get_xscale() == 'log' else None
      ax.set_xlim(*((low / pad, high * pad) if pad else
                    (low - 0.03 * (high - low), high + 0.03 * (high - low))))
    if plotted:
      ax.legend(fontsize='small')
  if not plotted:
    ax.text(0.5, 0.5, 'no finished trials', ha='center', va='center', transform=ax.transAxes)
  ax.grid(alpha=0.3)
  figure.savefig(path, dpi=120)
  return path


# ---------------------------------------------------------------------------------------------
# The plan: what a sweep costs on a TPU or GPU topology, before anything runs.

PLAN_CACHE_FILE = 'plan_cache.json'
PLAN_STATUSES = ('ok', 'indivisible', 'does not fit', 'no roofline')
# A trial's compiled shape (`shape_key`) is its config less the fields below, which cannot
# change the compiled train step's shapes, ops or buffers; trials that differ only in them
# share one compile.
# - Not read by the train step: the host's loop, data loading, checkpoints, evaluation, the
#   encoder's pre-training (a program of its own, not in the plan), and the seed (it sets
#   only the values of the random keys).
# - Python scalars the step bakes in as constants, with the same shapes and ops whatever their
#   value: the learning rates, lambda, the kernel scale (None: the default C, another constant),
#   the prior variance, the cost's scale. lr_decay's (epoch, factor) pairs are constants too;
#   their number changes the step by one scalar compare per pair, not worth a compile (sweeps
#   do not vary it). Checked on the tiny sweep's step for v5e:2x2: changing any of these (and
#   the seed) left XLA's FLOPs, bytes and buffers unchanged, while Adam's beta1 (0.5, where
#   1 - b1 = b1, against 0.9) moved them by 0.3%: constants can change XLA's simplifications,
#   so train.adam_b1 stays in the key.
# Every other field stays in the key, fields unknown here included: a new one costs an extra
# compile until it is listed here, rather than sharing another shape's figures.
_NOT_IN_STEP = frozenset({
    'seed', 'data.source', 'data.dir', 'data.cache_dir',
    'train.num_epochs', 'train.num_steps', 'train.pretrain_steps',
    'train.pretrain_learning_rate', 'train.log_every', 'train.checkpoint_every',
    'train.keep_checkpoints', 'train.image_every', 'train.max_nonfinite_steps',
    'train.learning_rate', 'train.adversary_learning_rate', 'train.lr_decay',
    'penalty.lam', 'penalty.kernel_scale', 'model.prior_variance', 'cost.scale'})
_NOT_IN_STEP_PREFIXES = ('eval.',)
# Fields that count as what the step sees of them: input noise 0 leaves the noise out.
_AS_SEEN = {'train.input_noise': lambda std: std > 0}


def shape_key(config) -> Dict[str, Any]:
  """The fields of `config` that can change its compiled train step, flat (see _NOT_IN_STEP)."""
  key = {}
  for path, value in wae_config.flatten(config).items():
    if path in _NOT_IN_STEP or path.startswith(_NOT_IN_STEP_PREFIXES):
      continue
    key[path] = _AS_SEEN[path](value) if path in _AS_SEEN else value
  return key


def _key_text(key: Dict[str, Any]) -> str:
  return json.dumps(key, sort_keys=True, default=str)  # tuples and lists alike: JSON lists


@dataclasses.dataclass
class PlanRow:
  """One compiled shape of a sweep on a topology, and the trials that share it."""
  key: Dict[str, Any]                 # shape_key of its trials
  trial_ids: List[str]
  steps: int                          # train steps of all its trials together
  num_chips: int
  status: str = 'ok'                  # one of PLAN_STATUSES; only 'ok' rows are counted
  step_s: Optional[float] = None      # the roofline: a lower bound on one step's time
  img_per_s: Optional[float] = None
  bound: Optional[str] = None         # 'compute' | 'memory'
  note: str = ''                      # why it is not counted
  cached: bool = False                # its figures came from the cache, not a compile now

  @property
  def chip_hours(self) -> float:
    """steps x step_s x chips / 3600 (the sum of its trials'); 0 unless counted."""
    if self.status != 'ok':
      return 0.0
    return self.steps * self.step_s * self.num_chips / 3600


def plan_fingerprint() -> str:
  """Changes with wae_jax's source and the versions of JAX, its plugins and libtpu: cached
  figures are reused only by the code that computed them."""
  digest = hashlib.sha256()
  for name in ('jax', 'jaxlib', 'libtpu', 'jax-cuda12-plugin', 'jax-cuda12-pjrt'):
    try:
      digest.update(f'{name} {importlib.metadata.version(name)}\n'.encode())
    except importlib.metadata.PackageNotFoundError:
      pass
  package = pathlib.Path(__file__).parent
  for path in sorted(package.rglob('*')):
    if path.suffix in ('.py', '.txtpb'):
      digest.update(path.relative_to(package).as_posix().encode() + b'\0' + path.read_bytes())
  return digest.hexdigest()[:16]


def load_plan_cache(path) -> Dict[str, Dict[str, Any]]:
  """The entries of a plan cache file (`plan`'s cache) written by this code, else {}."""
  path = pathlib.Path(path)
  try:
    data = json.loads(path.read_text())
  except (OSError, ValueError):  # none yet, or damaged: compile again
    return {}
  if not isinstance(data, dict) or data.get('fingerprint') != plan_fingerprint():
    return {}
  return dict(data.get('entries') or {})


def save_plan_cache(path, cache: Dict[str, Dict[str, Any]]) -> None:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  files.write_json(path, {'fingerprint': plan_fingerprint(), 'entries': cache})


def _analysed(analyse, config, topology: str) -> Dict[str, Any]:
  """A cache entry: what `plan` needs of aot.analyse's report, as JSON."""
  from wae_jax.accelerators import aot  # pylint: disable=g-import-not-at-top
  try:
    report = analyse(config, topology)
  except aot.DoesNotFitError as e:  # the state alone is too big: nothing compiled
    return {'fit_error': str(e)}
  return {'num_chips': report.num_chips, 'roofline': report.roofline(),
          'fit_error': report.fit_error(), 'compile_s': getattr(report, 'compile_s', None)}


def varying_fields(rows: List[PlanRow]) -> List[str]:
  """The key fields whose values differ between rows, in config order."""
  paths = list(dict.fromkeys(p for row in rows for p in row.key))
  return [p for p in paths if len({_key_text(row.key.get(p)) for row in rows}) > 1]


def _cell(value) -> str:
  return value if isinstance(value, str) else _key_text(value)


def _describe(key: Dict[str, Any], fields: List[str]) -> str:
  return ', '.join(f'{p}={_cell(key.get(p))}' for p in fields)


def _print_stderr(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def plan(sweep, topology: str, analyse: Optional[Callable] = None,
         cache: Optional[Dict[str, Dict[str, Any]]] = None, cache_path=None,
         num_chips: Optional[int] = None,
         progress: Callable[[str], None] = _print_stderr) -> List[PlanRow]:
  """The sweep's trials grouped by compiled shape, each shape's roofline step time on
  `topology`: one row per shape, in the order of their first trials.

  analyse(config, topology) -> a report with num_chips, roofline() and fit_error(), or raises
  aot.DoesNotFitError (default: aot.analyse, a compile of 10-60 s). Each shape is analysed
  once; `cache` (entries by topology and shape) keeps the figures, and `cache_path` keeps
  them on disk too: read first, written after each compile, so that a rerun compiles only
  what is new. A shape whose batch size does not split over the topology's chips is not
  compiled; it and one that does not fit in HBM are listed, not counted. `progress` gets a
  line before each compile. Raises aot.TopologyError for an unknown topology, ValueError for
  a wrong sweep.
  """
  from wae_jax import train  # pylint: disable=g-import-not-at-top
  from wae_jax.accelerators import aot  # pylint: disable=g-import-not-at-top
  analyse = analyse or aot.analyse
  if num_chips is None:
    num_chips = len(aot.target(topology).devices)  # an unknown topology fails here, at once
  cache = {} if cache is None else cache
  if cache_path is not None:
    for name, entry in load_plan_cache(cache_path).items():
      cache.setdefault(name, entry)
  rows: Dict[str, PlanRow] = {}
  configs = {}
  for trial in sample_trials(sweep):
    config = trial_config(sweep, trial)
    key = shape_key(config)
    text = _key_text(key)
    per_epoch = input_pipeline.steps_per_epoch(input_pipeline.TRAIN_SIZES[config.data.name],
                                               config.train.batch_size)
    row = rows.setdefault(text, PlanRow(key, [], 0, num_chips))
    row.trial_ids.append(trial.trial_id)
    row.steps += train.num_train_steps(config, per_epoch)
    configs.setdefault(text, config)

  varying = varying_fields(list(rows.values()))
  todo = [text for text, row in rows.items() if row.key['train.batch_size'] % num_chips == 0
          and f'{topology} {text}' not in cache]
  for text, row in rows.items():
    batch_size = row.key['train.batch_size']
    if batch_size % num_chips:
      row.status = 'indivisible'
      row.note = (f'train.batch_size={batch_size} does not split over the {num_chips} chips of '
                  f'{topology}')
      continue
    name = f'{topology} {text}'
    row.cached = name in cache
    if not row.cached:
      progress(f'compiling {todo.index(text) + 1}/{len(todo)} for {topology}: '
               f'{_describe(row.key, varying) or "the only shape"} '
               f'({len(row.trial_ids)} trials) ...')
      cache[name] = _analysed(analyse, configs[text], topology)
      if cache_path is not None:
        save_plan_cache(cache_path, cache)
    entry = cache[name]
    row.num_chips = entry.get('num_chips') or num_chips
    roofline = entry.get('roofline')
    if entry.get('fit_error'):
      row.status, row.note = 'does not fit', entry['fit_error']
    elif roofline is None:
      row.status = 'no roofline'
      row.note = 'no published peak FLOP/s or HBM bandwidth for this chip and config.model.dtype'
    else:
      row.step_s, row.img_per_s, row.bound = (roofline['step_s'], roofline['img_per_s'],
                                              roofline['bound'])
  return list(rows.values())


def _hours(hours: float) -> str:
  return f'{hours:,.0f}' if hours >= 1000 else f'{hours:.3g}'


def _table(header: List[str], body: List[List[str]], right: List[bool]) -> List[str]:
  """A Markdown table whose columns line up in a terminal too."""
  widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

  def line(cells):
    return '| ' + ' | '.join(c.rjust(w) if r else c.ljust(w)
                             for c, w, r in zip(cells, widths, right)) + ' |'

  rule = '|' + '|'.join('-' * (w + 1) + (':' if r else '-') for w, r in zip(widths, right)) + '|'
  return [line(header), rule, *(line(cells) for cells in body)]


def format_plan(rows: List[PlanRow], topology: str) -> str:
  """The plan as text: one table row per compiled shape, what is not counted and why, and the
  total chip-hours (a lower bound)."""
  varying = varying_fields(rows)
  num_chips = rows[0].num_chips if rows else 0
  trials = sum(len(r.trial_ids) for r in rows)
  counted = [r for r in rows if r.status == 'ok']
  counted_trials = sum(len(r.trial_ids) for r in counted)
  total = sum(r.chip_hours for r in rows)
  analysed = sum(not r.cached for r in rows if r.status != 'indivisible')
  reasons = {'indivisible': f'not counted: batch not divisible by {num_chips}',
             'does not fit': 'not counted: does not fit in HBM',
             'no roofline': 'not counted: no roofline'}
  body = []
  for i, r in enumerate(rows, 1):
    ok = r.status == 'ok'
    body.append([str(i), *(_cell(r.key.get(p)) for p in varying), str(len(r.trial_ids)),
                 f'{r.steps:,}', f'{r.step_s * 1e3:.3g} ms' if ok else '-',
                 f'{r.img_per_s:,.0f}' if ok else '-', r.bound if ok else '-',
                 _hours(r.chip_hours) if ok else '-',
                 ('counted, cached' if r.cached else 'counted') if ok else reasons[r.status]])
  header = ['shape', *varying, 'trials', 'steps', 'step >=', 'img/s <=', 'bound', 'chip-hours',
            'status']
  right = [True, *([True] * len(varying)), True, True, True, True, False, True, False]
  lines = [f'Sweep plan on {topology} ({num_chips} chips): {trials} trials in {len(rows)} '
           f'compiled shapes ({analysed} analysed now, '
           f'{sum(r.cached for r in rows)} from the cache)', '',
           *_table(header, body, right), '']
  lines += [f'shape {i}: {r.note}' for i, r in enumerate(rows, 1) if r.status != 'ok']
  lines += [f'Total: {_hours(total)} chip-hours on {topology} for {counted_trials} of {trials} '
            f'trials (the sum over trials of steps x step time x {num_chips} chips / 3600; '
            f'{_hours(total / num_chips) if num_chips else "-"} h on one {topology} running '
            'the trials one after another).',
            'A lower bound from the roofline, not a measurement: each step takes at least '
            'max(model FLOPs / peak FLOP/s, HBM bytes / bandwidth) of published chip figures '
            '(python -m wae_jax.accelerators.aot); collectives, kernel launches, input and idle time are '
            'left out. Evaluation (FID, checkpoints) and the encoder\'s pre-training are not '
            'included.']
  return '\n'.join(lines) + '\n'


def _evaluate_steps(argv):
  """Evaluates several checkpoints in one process: run_trial's evaluation subprocess."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from wae_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(flags.FLAGS.workdir)
  for step in flags.FLAGS.steps:
    results = evaluate.evaluate(flags.FLAGS.config, str(workdir), int(step))
    eval_file(workdir, int(step)).parent.mkdir(parents=True, exist_ok=True)
    files.write_json(eval_file(workdir, int(step)), results)


if __name__ == '__main__':
  # python -m wae_jax.sweep --config=configs/x.py:arg [--config.<field>=...] --workdir=DIR
  #   --steps=S1,S2: each step's evaluation into DIR/eval/step_<step>.json.
  from absl import flags as _flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file('config', None, 'The trial\'s config.', lock_config=True)
  _flags.DEFINE_string('workdir', None, 'The trial\'s workdir.')
  _flags.DEFINE_list('steps', None, 'Checkpoint steps to evaluate.')
  _flags.mark_flags_as_required(['config', 'workdir', 'steps'])
  errors.run(_evaluate_steps)
