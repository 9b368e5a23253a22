"""A sweep's results: failures.json, then the table (results.csv, results.md) and the figures.

Each finished trial left `<root>/<trial_id>/trial.json` (wae_jax.sweep.trials.run_trial);
the launcher writes the trials that failed after their retries to `<root>/failures.json`.
`collect` reads both into one row per trial.
"""

import csv
import json
import pathlib
from typing import Any, Dict, List, Optional

import numpy as np

from wae_jax import files
from wae_jax.sweep import trials

FAILURES_FILE = 'failures.json'
# Figures of the best FID against a searched field: file name -> field.
FID_VS = {
    'fid_vs_lambda.png': 'penalty.lam',
    'fid_vs_latent_dim.png': 'model.latent_dim',
    'fid_vs_learning_rate.png': 'train.learning_rate',
}


def write_failures(root, failures: List[Dict[str, Any]]) -> pathlib.Path:
  """<root>/failures.json: trials that failed after their retries (trial_record + error)."""
  path = pathlib.Path(root) / FAILURES_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  files.write_json(path, failures)
  return path


def load_rows(root) -> List[Dict[str, Any]]:
  """One dict per trial: the finished ones' trial.json, then failures.json's others."""
  root = pathlib.Path(root)
  rows = [json.loads(p.read_text()) for p in sorted(root.glob(f'*/{trials.TRIAL_FILE}'))]
  finished = {r['trial_id'] for r in rows}
  failures = root / FAILURES_FILE
  if failures.exists():
    rows += [
        {**f, 'status': 'failed'}
        for f in json.loads(failures.read_text())
        if f['trial_id'] not in finished
    ]
  return sorted(
      rows,
      key=lambda r: (
          r['method'],
          r.get('best_fid') is None,
          r.get('best_fid') or 0.0,
          r['trial_id'],
      ),
  )


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
  columns = [
      'trial_id',
      'method',
      'config_index',
      'seed',
      'status',
      'fid_metric',
      'best_fid',
      'best_step',
      *params,
      'error',
  ]
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
  lines = [
      '# Sweep results',
      '',
      f"{len(rows)} trials in `{root}`; each row is a trial's best checkpoint by FID "
      '(fid_metric: the features it was computed on).',
      '',
      '| method | trials | ok | diverged | failed | best FID | trial | step |',
      '|---|---:|---:|---:|---:|---:|---|---:|',
  ]
  for method in sorted({r['method'] for r in rows}):
    mine = [r for r in rows if r['method'] == method]
    counts = [sum(r['status'] == s for r in mine) for s in ('ok', 'diverged', 'failed')]
    best = min(
        (r for r in mine if r.get('best_fid') is not None), key=lambda r: r['best_fid'], default={}
    )
    cells = [
        method,
        len(mine),
        *counts,
        best.get('best_fid'),
        best.get('trial_id'),
        best.get('best_step'),
    ]
    lines.append('| ' + ' | '.join(map(_number, cells)) + ' |')
  numeric = ('config_index', 'seed', 'best_fid', 'best_step', *params)
  lines += [
      '',
      '| ' + ' | '.join(columns) + ' |',
      '|' + '|'.join('---:' if c in numeric else '---' for c in columns) + '|',
  ]
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
    mine = [
        r
        for r in finished
        if r['method'] == method and (field is None or r['params'].get(field) is not None)
    ]
    if not mine:
      continue
    fids = np.array([r['best_fid'] for r in mine])
    if field is None:
      jitter = np.random.default_rng(k).uniform(-0.15, 0.15, len(mine))
      ax.scatter(k + jitter, fids, s=12, alpha=0.6, color=f'C{k}')
      ax.plot([k - 0.3, k + 0.3], [fids.min()] * 2, color=f'C{k}', lw=2)
      ax.annotate(_number(float(fids.min())), (k + 0.3, fids.min()), fontsize='small', va='center')
    else:
      ax.scatter(
          [r['params'][field] for r in mine], fids, s=12, alpha=0.7, color=f'C{k}', label=method
      )
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
      ax.set_xlim(
          *(
              (low / pad, high * pad)
              if pad
              else (low - 0.03 * (high - low), high + 0.03 * (high - low))
          )
      )
    if plotted:
      ax.legend(fontsize='small')
  if not plotted:
    ax.text(0.5, 0.5, 'no finished trials', ha='center', va='center', transform=ax.transAxes)
  ax.grid(alpha=0.3)
  figure.savefig(path, dpi=120)
  return path
