"""Compares runs: one markdown table of their evaluation numbers and one figure.

  python -m wae_jax.evaluation.report --workdirs=DIR1,DIR2,DIR3 \
      [--names=WAE-MMD,WAE-GAN,VAE] --out=DIR

Each workdir needs `eval/results.json` (from `python -m wae_jax.main ... --mode=evaluate`);
its `config.json`, TensorBoard event files and `images/samples_*.png` are used when present.
Writes `DIR/report.md` (the table and notes on what the numbers are) and `DIR/report.png`
(the sample grids side by side over each run's training curves), and prints the markdown.
"""

import dataclasses
import json
import math
import pathlib
import re
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.util import tensor_util

from wae_jax import config as wae_config
from wae_jax import errors

MISSING = '–'
CLASSIFIER_FID = 'fid_mnist_classifier'
# Training curves plotted per run; the penalty goes on a second y axis.
CURVES = ('loss', 'reconstruction')
PENALTY_CURVE = 'penalty'
UPTIME = 'uptime'  # clu's ReportProgress: seconds since the training loop started.
PENALTY_KINDS = {'mmd': 'MMD', 'gan': 'adversarial', 'vae': 'KL'}
OBJECTIVES = {penalty: objective for objective, penalty in wae_config.OBJECTIVES.items()}
FIGURE_DPI = 150


@dataclasses.dataclass(frozen=True)
class Curve:
  steps: np.ndarray   # int, increasing
  values: np.ndarray  # float
  wall_times: np.ndarray


@dataclasses.dataclass(frozen=True)
class TrainingTime:
  seconds: float
  steps: int     # the last step the time covers
  source: str    # 'uptime' or 'wall time'


@dataclasses.dataclass
class Run:
  name: str
  workdir: pathlib.Path
  results: Dict
  config: Dict
  curves: Dict[str, Curve]
  training_time: Optional[TrainingTime]
  samples_png: Optional[pathlib.Path]

  @property
  def penalty(self) -> Optional[str]:
    return self.results.get('penalty') or self.config.get('penalty', {}).get('name')

  def value(self, key: str) -> Optional[float]:
    """results[key]['value'] if it is a number, else None."""
    entry = self.results.get(key)
    value = entry.get('value') if isinstance(entry, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


# ---------------------------------------------------------------------------------------------
# Reading a workdir.


def evaluate_command(workdir, config: Optional[Dict] = None) -> str:
  """The command that writes workdir/eval/results.json, with the config guessed from config.json."""
  config = config or {}
  dataset = config.get('data', {}).get('name', 'mnist')
  objective = OBJECTIVES.get(config.get('penalty', {}).get('name'), '<objective>')
  small = ',small' if config.get('model', {}).get('width') == 0.125 else ''
  return (f'python -m wae_jax.main --config=configs/{dataset}.py:{objective}{small} '
          f'--workdir={workdir} --mode=evaluate')


def load_run(workdir, name: Optional[str] = None) -> Run:
  """Everything the report needs from one workdir; a clear error if it was not evaluated."""
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise errors.NotFoundError(f'{workdir}: no such workdir')
  config_path = workdir / 'config.json'
  config = json.loads(config_path.read_text()) if config_path.exists() else {}
  results_path = workdir / 'eval' / 'results.json'
  if not results_path.exists():
    raise errors.NotFoundError(
        f'{workdir}: no eval/results.json; evaluate the run first (with the config and '
        f'overrides it was trained with):\n  {evaluate_command(workdir, config)}')
  results = json.loads(results_path.read_text())
  segments = [read_event_file(path) for path in event_files(workdir)]
  return Run(name=name or workdir.resolve().name, workdir=workdir, results=results,
             config=config, curves=merge_segments(segments),
             training_time=training_time(segments),
             samples_png=samples_png(workdir, results.get('step')))


def event_files(workdir) -> List[pathlib.Path]:
  """The workdir's TensorBoard event files, oldest first (one per training process)."""
  return sorted(pathlib.Path(workdir).glob('events.out.tfevents.*'))


def read_event_file(path) -> Dict[str, Curve]:
  """The scalar series of one event file: legacy 'scalars' and clu's scalar 'tensors'."""
  keep_all = {ea.SCALARS: 0, ea.TENSORS: 0, ea.IMAGES: 1, ea.AUDIO: 1, ea.HISTOGRAMS: 1,
              ea.COMPRESSED_HISTOGRAMS: 1}
  acc = ea.EventAccumulator(str(path), size_guidance=keep_all).Reload()
  points = {}
  tags = acc.Tags()
  for tag in tags.get(ea.SCALARS, []):
    points[tag] = [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)]
  for tag in tags.get(ea.TENSORS, []):
    if acc.SummaryMetadata(tag).plugin_data.plugin_name != 'scalars':
      continue  # images, hparams, text
    points[tag] = [(e.step, float(np.asarray(tensor_util.make_ndarray(e.tensor_proto))
                                  .reshape(-1)[0]), e.wall_time)
                   for e in acc.Tensors(tag) if _num_elements(e.tensor_proto) == 1]
  return {tag: _curve(p) for tag, p in points.items() if p}


def _num_elements(tensor_proto) -> int:
  return int(np.prod([d.size for d in tensor_proto.tensor_shape.dim], dtype=np.int64))


def _curve(points) -> Curve:
  points = sorted(points, key=lambda p: p[0])
  steps, values, walls = zip(*points)
  return Curve(np.asarray(steps, np.int64), np.asarray(values, np.float64),
               np.asarray(walls, np.float64))


def merge_segments(segments: Sequence[Dict[str, Curve]]) -> Dict[str, Curve]:
  """One curve per tag over the event files in order; a resumed run replaces the steps it redid."""
  merged: Dict[str, Curve] = {}
  for segment in segments:
    for tag, curve in segment.items():
      if tag in merged:
        old = merged[tag]
        keep = old.steps < curve.steps[0]
        curve = Curve(*(np.concatenate([a[keep], b]) for a, b in
                        ((old.steps, curve.steps), (old.values, curve.values),
                         (old.wall_times, curve.wall_times))))
      merged[tag] = curve
  return merged


def training_time(segments: Sequence[Dict[str, Curve]]) -> Optional[TrainingTime]:
  """Time in the training loop, summed over the processes (event files) of a run.

  From clu's 'uptime' scalar (seconds since the loop started, so compilation included and
  data loading and encoder pre-training excluded) where it was written, else from the wall
  times of the first and last logged 'loss' of each process (which misses the steps before
  the first log).
  """
  seconds, steps, sources = 0.0, None, set()
  for segment in segments:
    if UPTIME in segment:
      curve, source = segment[UPTIME], 'uptime'
      seconds += float(curve.values[-1])
    elif 'loss' in segment:
      curve, source = segment['loss'], 'wall time'
      seconds += float(curve.wall_times[-1] - curve.wall_times[0])
    else:
      continue
    sources.add(source)
    steps = max(int(curve.steps[-1]), steps or 0)
  if steps is None:
    return None
  return TrainingTime(seconds, steps, ' and '.join(sorted(sources)))


def samples_png(workdir, step: Optional[int] = None) -> Optional[pathlib.Path]:
  """images/samples_<step>.png for the evaluated step if there is one, else the latest."""
  found = {}
  for path in (pathlib.Path(workdir) / 'images').glob('samples_*.png'):
    match = re.fullmatch(r'samples_(\d+)\.png', path.name)
    if match:
      found[int(match.group(1))] = path
  if not found:
    return None
  return found.get(step, found[max(found)])


# ---------------------------------------------------------------------------------------------
# The table.


def format_number(x: Optional[float], significant: int = 3) -> str:
  """Three significant digits, no exponent for 1e-3 <= |x| < 1e4; '–' for None."""
  if x is None:
    return MISSING
  if not math.isfinite(x):
    return str(x)
  if x == 0:
    return '0'
  magnitude = math.floor(math.log10(abs(x)))
  if magnitude >= 4 or magnitude < -3:
    return f'{x:.{significant - 1}e}'
  return f'{x:.{max(significant - 1 - magnitude, 0)}f}'


def penalty_label(run: Run) -> str:
  name = run.penalty
  if name is None:
    return MISSING
  lam = run.config.get('penalty', {}).get('lam')
  kind = PENALTY_KINDS.get(name, name)
  return kind if lam is None else f'{kind}, λ={lam:g}'


def inception_fid_key(results: Dict) -> str:
  """The results key of an Inception FID ('fid_inception...'); evaluate.py writes none yet."""
  keys = [k for k in results if k.startswith('fid_inception') and not k.endswith('_real_floor')]
  return sorted(keys)[0] if keys else 'fid_inception'


def training_time_label(time: Optional[TrainingTime]) -> str:
  if time is None:
    return MISSING
  return f'{time.seconds / 60:.1f} min / {time.steps:,} steps'


# (column title, function of a run -> cell)
COLUMNS = (
    ('run', lambda r: r.name),
    ('penalty', penalty_label),
    ('steps', lambda r: MISSING if r.results.get('step') is None else f"{r.results['step']:,}"),
    ('FID (MNIST classifier)', lambda r: format_number(r.value(CLASSIFIER_FID))),
    ('FID (Inception)', lambda r: format_number(r.value(inception_fid_key(r.results)))),
    ('sharpness samples', lambda r: format_number(r.value('sharpness_samples'))),
    ('sharpness reconstructions', lambda r: format_number(r.value('sharpness_reconstructions'))),
    ('sharpness test images', lambda r: format_number(r.value('sharpness_test_images'))),
    ('test reconstruction cost', lambda r: format_number(r.value('test_reconstruction_cost'))),
    ('MSE per pixel', lambda r: format_number(r.value('test_mse_per_pixel'))),
    ('test codes MMD', lambda r: format_number(r.value('test_codes_mmd'))),
    ('training time', lambda r: training_time_label(r.training_time)),
)


def _cell(text: str) -> str:
  return str(text).replace('|', r'\|').replace('\n', ' ')


def markdown_table(runs: Sequence[Run]) -> str:
  """One row per run; missing numbers as '–'."""
  lines = ['| ' + ' | '.join(title for title, _ in COLUMNS) + ' |',
           '|' + '|'.join('---' if i < 2 else '---:' for i in range(len(COLUMNS))) + '|']
  for run in runs:
    lines.append('| ' + ' | '.join(_cell(cell(run)) for _, cell in COLUMNS) + ' |')
  return '\n'.join(lines)


def notes(runs: Sequence[Run]) -> List[str]:
  """What the numbers are: image counts, the FIDs' real-vs-real floors, how time was measured."""
  out = [note for note in (_fid_note(runs, CLASSIFIER_FID, 'FID (MNIST classifier)'),
                           _fid_note(runs, None, 'FID (Inception)')) if note]
  sharp = {r.name: r.results['sharpness_samples'].get('num_images') for r in runs
           if isinstance(r.results.get('sharpness_samples'), dict)}
  if sharp:
    out.append('Sharpness: the paper\'s variance of the Laplacian (higher is sharper), on '
               f'{_same_or_each(sharp)} images each.')
  recon = {r.name: r.results['test_reconstruction_cost'] for r in runs
           if isinstance(r.results.get('test_reconstruction_cost'), dict)}
  if recon:
    costs = {n: f"{e.get('cost', '?')} (scale {e.get('scale', '?')})" for n, e in recon.items()}
    counts = {n: e.get('num_images') for n, e in recon.items()}
    out.append(f'Test reconstruction cost: each run\'s own training cost, {_same_or_each(costs)}, '
               f'on {_same_or_each(counts)} test images; MSE per pixel is defined the same way '
               'for every run.')
  mmd = {r.name: r.results['test_codes_mmd'] for r in runs
         if isinstance(r.results.get('test_codes_mmd'), dict)}
  if mmd:
    codes = _same_or_each({n: e.get('num_codes') for n, e in mmd.items()})
    kernels = _same_or_each({n: e.get('kernel') for n, e in mmd.items()})
    out.append(f'Test codes MMD: between {codes} test codes and as many prior samples ({kernels} '
               'kernel; the unbiased estimate can be negative).')
  out += _config_notes(runs)
  times = {r.training_time.source for r in runs if r.training_time}
  if times:
    out.append('Training time: the training loop, summed over resumed processes, compilation '
               'included, data loading and encoder pre-training not; from clu\'s "uptime" '
               'scalar' + (', or where it is missing from the wall times of the first and '
                           'last logged loss' if 'wall time' in times else '') + '.')
  return out


def _config_notes(runs: Sequence[Run]) -> List[str]:
  """One note per run whose config changed during training (--allow_config_change)."""
  out = []
  for run in runs:
    changes = [c for c in run.results.get('configs', [])[1:] if c.get('changed')]
    if changes:
      parts = ['; '.join(f'{field} {old!r} -> {new!r}'
                         for field, (old, new) in c['changed'].items()) +
               f" from step {c['step']:,} ({c['file']})" for c in changes]
      out.append(f'{run.name}: its config changed during training: {", then ".join(parts)}. '
                 'The penalty column shows the latest config (config.json).')
  return out


def _fid_note(runs: Sequence[Run], key: Optional[str], label: str) -> Optional[str]:
  """What the FID compares, and its real-vs-real floor (training vs test images)."""
  keys = {r.name: key or inception_fid_key(r.results) for r in runs}
  fid_runs = [r for r in runs if r.value(keys[r.name]) is not None]
  if not fid_runs:
    return None
  floors = {r.name: r.value(f'{keys[r.name]}_real_floor') for r in fid_runs}
  entry = fid_runs[0].results[keys[fid_runs[0].name]]
  return (f'{label}: Fréchet distance between {entry.get("num_images", "?")} samples and as '
          f'many test images on the {entry.get("features", "features")} (comparable only with '
          'FIDs on the same features). Its real-vs-real floor (training vs test images, same '
          f'count): {_same_or_each({n: format_number(f) for n, f in floors.items()})}.')


def _same_or_each(by_run: Dict[str, object]) -> str:
  """'x' if every run has x, else 'x (run A), y (run B)'."""
  unique = set(map(str, by_run.values()))
  if len(unique) == 1:
    return unique.pop()
  return ', '.join(f'{value} ({name})' for name, value in by_run.items())


def markdown_report(runs: Sequence[Run], figure: Optional[str] = None) -> str:
  lines = ['# Runs compared', '', markdown_table(runs), '']
  lines += [f'- {note}' for note in notes(runs)]
  lines += ['', 'Workdirs: ' + ', '.join(f'{r.name}: `{r.workdir}`' for r in runs)]
  if figure:
    lines += ['', f'![Samples and training curves]({figure})']
  return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------
# The figure.


def make_figure(runs: Sequence[Run], path) -> pathlib.Path:
  """Sample grids side by side (top) over each run's curves (bottom), as a PNG."""

  n = len(runs)
  figure = Figure(figsize=(max(4.2 * n, 5.0), 8.4), layout='constrained')
  FigureCanvasAgg(figure)
  axes = figure.subplots(2, n, squeeze=False, height_ratios=(1.1, 1.0))
  for run, top, bottom in zip(runs, axes[0], axes[1]):
    top.set_axis_off()
    step = run.results.get('step')
    top.set_title(run.name if step is None else f'{run.name} (step {step:,})')
    if run.samples_png is not None:
      with Image.open(run.samples_png) as image:
        top.imshow(np.asarray(image.convert('L')), cmap='gray', vmin=0, vmax=255,
                   interpolation='nearest')
    else:
      top.text(0.5, 0.5, 'no samples PNG', ha='center', va='center', transform=top.transAxes)
    _plot_curves(run, bottom)
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, dpi=FIGURE_DPI)
  return path


def _plot_curves(run: Run, ax) -> None:
  lines = []
  for tag, style in zip(CURVES, ('-', '--')):
    if tag in run.curves:
      curve = run.curves[tag]
      lines += ax.plot(curve.steps, curve.values, style, color='C0' if tag == 'loss' else 'C1',
                       label=tag)
  if PENALTY_CURVE in run.curves:
    curve = run.curves[PENALTY_CURVE]
    twin = ax.twinx()
    kind = PENALTY_KINDS.get(run.penalty, run.penalty or '')
    label = f'penalty ({kind})' if kind else 'penalty'
    lines += twin.plot(curve.steps, curve.values, ':', color='C2', label=label)
    twin.set_ylabel(label, color='C2')
    twin.tick_params(axis='y', colors='C2')
  if not lines:
    ax.text(0.5, 0.5, 'no training scalars', ha='center', va='center', transform=ax.transAxes)
    return
  ax.set_xlabel('step')
  ax.set_ylabel('loss, reconstruction')
  ax.grid(alpha=0.3)
  ax.legend(lines, [line.get_label() for line in lines], fontsize='small', loc='upper right')


# ---------------------------------------------------------------------------------------------
# Command line.


def write_report(workdirs: Sequence[str], out, names: Optional[Sequence[str]] = None) -> str:
  """Loads the runs, writes out/report.md and out/report.png; returns the markdown."""
  if names and len(names) != len(workdirs):
    raise errors.FlagError(f'--names gives {len(names)} names for {len(workdirs)} workdirs')
  runs = [load_run(w, n) for w, n in zip(workdirs, names or [None] * len(workdirs))]
  out = pathlib.Path(out)
  make_figure(runs, out / 'report.png')
  markdown = markdown_report(runs, figure='report.png')
  (out / 'report.md').write_text(markdown)
  return markdown


def _split(value: Optional[str]) -> List[str]:
  return [v.strip() for v in (value or '').split(',') if v.strip()]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  markdown = write_report(_split(f.workdirs), f.out, _split(f.names) or None)
  if f['print'].value:
    print(markdown, end='')


def _define_flags():
  flags.DEFINE_string('workdirs', None, 'Comma-separated workdirs, each evaluated '
                      '(--mode=evaluate wrote eval/results.json).')
  flags.DEFINE_string('names', None, 'Comma-separated run names (default: workdir names).')
  flags.DEFINE_string('out', None, 'Directory for report.md and report.png.')
  flags.DEFINE_bool('print', True, 'Print the markdown to stdout (--noprint: do not).')
  flags.mark_flags_as_required(['workdirs', 'out'])


if __name__ == '__main__':
  _define_flags()
  errors.run(main)
