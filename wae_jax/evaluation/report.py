"""Compares runs: one markdown table of their evaluation numbers, one figure, one JSON.

  python -m wae_jax.evaluation.report --workdirs=DIR1,DIR2,DIR3 \
      [--names=WAE-MMD,WAE-GAN,VAE] --out=DIR

Workdirs given the same name are seeds of one row: each number is shown as the mean and sample
standard deviation over them, and the report says which rows differ by more than the seed noise
(Welch's t-test on the per-seed values), e.g.

  --workdirs=r/wae_mmd/seed0,r/wae_mmd/seed1,r/vae/seed0,r/vae/seed1 \
  --names=WAE-MMD,WAE-MMD,VAE,VAE

Without --names a workdir is named after its folder, or after its parent for a `seed<k>` folder
(so the example above groups the same way, as rows wae_mmd and vae).

Each workdir needs `eval/results.json` (from `python -m wae_jax.main ... --mode=evaluate`);
its `config.json`, TensorBoard event files and `images/samples_*.png` are used when present.
Writes `DIR/report.md` (the table and notes on what the numbers are), `DIR/report.png` (each
row's sample grid, from its first workdir, over its training curves) and `DIR/report.json`
(every row's per-seed values, mean and standard deviation, and the pairwise tests), and prints
the markdown.
"""

import dataclasses
import json
import math
import pathlib
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
from PIL import Image
from scipy import stats
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.util import tensor_util

from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import files
from wae_jax import penalties

MISSING = '–'
CLASSIFIER_FID = 'fid_mnist_classifier'
# Training curves plotted per run; the penalty goes on a second y axis.
CURVES = ('loss', 'reconstruction')
PENALTY_CURVE = 'penalty'
UPTIME = 'uptime'  # clu's ReportProgress: seconds since the training loop started.
OBJECTIVES = {penalty: objective for objective, penalty in wae_config.OBJECTIVES.items()}
FIGURE_DPI = 150
GMM_SUFFIX = '_gmm'  # results keys of the samples decoded from a GMM fitted to training codes
SIGNIFICANCE = 0.05  # two-sided p-value below which two rows differ beyond the seed noise


@dataclasses.dataclass(frozen=True)
class Curve:
  steps: np.ndarray  # int, increasing
  values: np.ndarray  # float
  wall_times: np.ndarray


@dataclasses.dataclass(frozen=True)
class TrainingTime:
  seconds: float
  steps: int  # the last step the time covers
  source: str  # 'uptime' or 'wall time'


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
  def seed(self) -> Optional[int]:
    return self.config.get('seed')

  @property
  def penalty(self) -> Optional[str]:
    return self.results.get('penalty') or self.config.get('penalty', {}).get('name')

  @property
  def trained_config(self) -> Dict[str, Any]:
    """The config the evaluated checkpoint was trained under (results.json's, written by
    evaluation since it records it), else the run's latest (config.json)."""
    config = self.results.get('config')
    return config if isinstance(config, dict) else self.config

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
  return (
      f'python -m wae_jax.main --config=configs/{dataset}.py:{objective}{small} '
      f'--workdir={workdir} --mode=evaluate'
  )


class ResultsError(errors.WaeError, ValueError):
  """A workdir's eval/results.json or config.json that is not what evaluation and training
  write: cut short, overwritten, or edited by hand."""


# The results' and the config's entries the report formats, by the JSON type it needs.
_RESULTS_TYPES = {
    'step': (int, 'a whole number'),
    'penalty': (str, 'a string'),
    'configs': (list, 'a list'),
}
_CONFIG_TYPES = {section: (dict, 'an object') for section in ('data', 'model', 'penalty')}


def _read_json_object(path: pathlib.Path, types: Dict[str, Tuple[type, str]], fix: str) -> Dict:
  """The JSON object in `path`, with `types`' entries (where present) of their type; a
  ResultsError naming the path and `fix` for anything else."""
  try:
    data = json.loads(path.read_text())
  except OSError as e:  # a folder, no permission
    raise ResultsError(f'{path} cannot be read ({errors.one_line(e)}); {fix}') from e
  except ValueError as e:  # not JSON (JSONDecodeError), not text (UnicodeDecodeError)
    raise ResultsError(
        f'{path} is not valid JSON ({errors.one_line(e)}): it was cut short '
        f'or overwritten; {fix}'
    ) from e
  if not isinstance(data, dict):
    raise ResultsError(f'{path} holds a JSON {type(data).__name__}, not an object; {fix}')
  for key, (kind, kind_name) in types.items():
    if data.get(key) is not None and not isinstance(data[key], kind):
      raise ResultsError(f'{path}: {key!r} is {data[key]!r}, not {kind_name}; {fix}')
  return data


def load_run(workdir, name: Optional[str] = None) -> Run:
  """Everything the report needs from one workdir; a clear error if it was not evaluated."""
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise errors.NotFoundError(f'{workdir}: no such workdir')
  config_path = workdir / 'config.json'
  config = (
      _read_json_object(
          config_path,
          _CONFIG_TYPES,
          'copy the latest config_<step>.json of the workdir over it (the same config, up to the '
          'fields free to change), or remove it (the report then shows no seed, and the penalty '
          'from eval/results.json)',
      )
      if config_path.exists()
      else {}
  )
  results_path = workdir / 'eval' / 'results.json'
  evaluate = evaluate_command(workdir, config)
  if not results_path.exists():
    raise errors.NotFoundError(
        f'{workdir}: no eval/results.json; evaluate the run first (with the config and '
        f'overrides it was trained with):\n  {evaluate}'
    )
  again = (
      f'evaluate the run again to rewrite it (with the config and overrides it was '
      f'trained with): {evaluate}'
  )
  results = _read_json_object(results_path, _RESULTS_TYPES, again)
  segments = [read_event_file(path) for path in event_files(workdir)]
  run = Run(
      name=name or default_name(workdir),
      workdir=workdir,
      results=results,
      config=config,
      curves=merge_segments(segments),
      training_time=training_time(segments),
      samples_png=samples_png(workdir, results.get('step')),
  )
  if all(metric.value(run) is None for metric in metrics([run])):  # a row of dashes
    raise ResultsError(
        f'{results_path} holds none of the numbers the report shows (FID, '
        f'sharpness, reconstruction, MMD); {again}'
    )
  return run


def default_name(workdir) -> str:
  """The workdir's folder name; its parent's for `seed<k>`, so that seeds share a row."""
  path = pathlib.Path(workdir).resolve()
  return path.parent.name if re.fullmatch(r'seed\d+', path.name) else path.name


def event_files(workdir) -> List[pathlib.Path]:
  """The workdir's TensorBoard event files, oldest first (one per training process)."""
  return sorted(pathlib.Path(workdir).glob('events.out.tfevents.*'))


def read_event_file(path) -> Dict[str, Curve]:
  """The scalar series of one event file: legacy 'scalars' and clu's scalar 'tensors'."""
  keep_all = {
      ea.SCALARS: 0,
      ea.TENSORS: 0,
      ea.IMAGES: 1,
      ea.AUDIO: 1,
      ea.HISTOGRAMS: 1,
      ea.COMPRESSED_HISTOGRAMS: 1,
  }
  acc = ea.EventAccumulator(str(path), size_guidance=keep_all).Reload()
  points = {}
  tags = acc.Tags()
  for tag in tags.get(ea.SCALARS, []):
    points[tag] = [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)]
  for tag in tags.get(ea.TENSORS, []):
    if acc.SummaryMetadata(tag).plugin_data.plugin_name != 'scalars':
      continue  # images, hparams, text
    points[tag] = [
        (
            e.step,
            float(np.asarray(tensor_util.make_ndarray(e.tensor_proto)).reshape(-1)[0]),
            e.wall_time,
        )
        for e in acc.Tensors(tag)
        if _num_elements(e.tensor_proto) == 1
    ]
  return {tag: _curve(p) for tag, p in points.items() if p}


def _num_elements(tensor_proto) -> int:
  return int(np.prod([d.size for d in tensor_proto.tensor_shape.dim], dtype=np.int64))


def _curve(points) -> Curve:
  points = sorted(points, key=lambda p: p[0])
  steps, values, walls = zip(*points)
  return Curve(
      np.asarray(steps, np.int64), np.asarray(values, np.float64), np.asarray(walls, np.float64)
  )


def merge_segments(segments: Sequence[Dict[str, Curve]]) -> Dict[str, Curve]:
  """One curve per tag over the event files in order; a resumed run replaces the steps it redid."""
  merged: Dict[str, Curve] = {}
  for segment in segments:
    for tag, curve in segment.items():
      if tag in merged:
        old = merged[tag]
        keep = old.steps < curve.steps[0]
        curve = Curve(
            *(
                np.concatenate([a[keep], b])
                for a, b in (
                    (old.steps, curve.steps),
                    (old.values, curve.values),
                    (old.wall_times, curve.wall_times),
                )
            )
        )
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
# Rows: the runs given one name are the seeds of one configuration.


@dataclasses.dataclass(frozen=True)
class Row:
  name: str
  runs: Tuple[Run, ...]


def group_runs(runs: Sequence[Run]) -> List[Row]:
  """One row per name, in the order the names first appear."""
  by_name: Dict[str, List[Run]] = {}
  for run in runs:
    by_name.setdefault(run.name, []).append(run)
  return [Row(name, tuple(members)) for name, members in by_name.items()]


@dataclasses.dataclass(frozen=True)
class Stats:
  """One number over a row's seeds: the values there are, their mean and sample std."""

  values: Tuple[float, ...]

  @property
  def n(self) -> int:
    return len(self.values)

  @property
  def mean(self) -> Optional[float]:
    return float(np.mean(self.values)) if self.values else None

  @property
  def std(self) -> Optional[float]:
    """ddof=1: the spread of the seeds' population, not of these few values alone."""
    if self.n < 2:
      return None
    return 0.0 if min(self.values) == max(self.values) else float(np.std(self.values, ddof=1))


def _key(key: str) -> Callable[[Dict], str]:
  return lambda results: key


def _reconstruction_cost(results: Dict):
  entry = results.get('test_reconstruction_cost')
  return (entry.get('cost'), entry.get('scale')) if isinstance(entry, dict) else None


def inception_fid_key(results: Dict) -> str:
  """The results key of an Inception FID ('fid_inception...'); evaluate.py writes none yet."""
  keys = [
      k
      for k in results
      if k.startswith('fid_inception') and not k.endswith(('_real_floor', GMM_SUFFIX))
  ]
  return sorted(keys)[0] if keys else 'fid_inception'


@dataclasses.dataclass(frozen=True)
class Metric:
  """A number column: its title, and where a run's results hold it."""

  title: str
  key: Callable[[Dict], str]  # results -> the results key
  compared: bool = True  # in the statement of differences beyond the seed noise
  sampler: Optional[str] = None  # of a sample metric shown for both samplers: prior | GMM
  # Two rows are compared only where this, of their first runs' results, is the same.
  comparable_by: Callable[[Dict], object] = lambda results: None

  def value(self, run: Run) -> Optional[float]:
    return run.value(self.key(run.results))

  def stats(self, row: Row) -> Stats:
    return Stats(tuple(v for v in map(self.value, row.runs) if v is not None))


# Metrics of the decoded samples: evaluation writes them for prior codes under these keys and,
# with eval.sampler=gmm|both, for codes from a GMM fitted to training codes under key + '_gmm'.
SAMPLE_METRICS = (
    ('FID (MNIST classifier)', _key(CLASSIFIER_FID)),
    ('FID (Inception)', inception_fid_key),
    ('sharpness samples', _key('sharpness_samples')),
)
OTHER_METRICS = (
    Metric('sharpness reconstructions', _key('sharpness_reconstructions')),
    # The real test images': the same for every run, a reference rather than a result.
    Metric('sharpness test images', _key('sharpness_test_images'), compared=False),
    # Each run's own training cost: a VAE's Bernoulli cost is not comparable to an l2sq cost.
    Metric(
        'test reconstruction cost',
        _key('test_reconstruction_cost'),
        comparable_by=_reconstruction_cost,
    ),
    Metric('MSE per pixel', _key('test_mse_per_pixel')),
    Metric('test codes MMD', _key('test_codes_mmd')),
)


def _with_sampler(title: str, sampler: str) -> str:
  return f'{title[:-1]}, {sampler})' if title.endswith(')') else f'{title} ({sampler})'


def _gmm_key(key: Callable[[Dict], str]) -> Callable[[Dict], str]:
  return lambda results: key(results) + GMM_SUFFIX


def metrics(runs: Sequence[Run]) -> List[Metric]:
  """The number columns; a sample metric gets a GMM column next to it where a run has one."""
  out = []
  for title, key in SAMPLE_METRICS:
    gmm = Metric(_with_sampler(title, 'GMM'), _gmm_key(key), sampler='GMM')
    if any(gmm.value(run) is not None for run in runs):
      out += [Metric(_with_sampler(title, 'prior'), key, sampler='prior'), gmm]
    else:
      out.append(Metric(title, key))
  return out + list(OTHER_METRICS)


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


def _std_number(x: float) -> str:
  """Two significant digits, without an exponent down to 1e-6: next to its mean, 0.00039."""
  if x == 0 or not math.isfinite(x) or not 1e-6 <= abs(x) < 1e4:
    return format_number(x, significant=2)
  digits = 1 - math.floor(math.log10(abs(x)))
  return f'{round(x, digits):.{max(digits, 0)}f}'


def stats_text(
    values: Stats,
    runs: int,
    number: Callable[[float], str] = format_number,
    std_number: Callable[[float], str] = _std_number,
) -> str:
  """'mean ± std' over seeds ('(n=k)' where only k of the row's runs have it); one value as is.

  The std gets two significant digits: more would be noise about the noise.
  """
  if values.n == 0:
    return MISSING
  text = number(values.mean)
  if values.n > 1:
    text += f' ± {std_number(values.std)}'
  return text if values.n == runs else f'{text} (n={values.n})'


def penalty_kind(name: Optional[str]) -> str:
  """A penalty's name in reports: its registered display name, or `name` for one this
  process has not registered (a results.json written where it was)."""
  penalty = penalties.REGISTRY.get(name)
  return penalty.display_name if penalty is not None else name or ''


def penalty_label(run: Run) -> str:
  name = run.penalty
  if name is None:
    return MISSING
  lam = run.trained_config.get('penalty', {}).get('lam')
  kind = penalty_kind(name)
  return kind if lam is None else f'{kind}, λ={lam:g}'


def training_time_label(time: Optional[TrainingTime]) -> str:
  if time is None:
    return MISSING
  return f'{time.seconds / 60:.1f} min / {time.steps:,} steps'


def _steps_text(steps: Sequence[int]) -> str:
  """'3,000', or '2,000–3,000' where seeds stopped at different steps."""
  if not steps:
    return MISSING
  low, high = min(steps), max(steps)
  return f'{low:,}' if low == high else f'{low:,}–{high:,}'


def _unique(items) -> List:
  return list(dict.fromkeys(items))


def _penalty_cell(row: Row) -> str:
  return ' / '.join(_unique(penalty_label(run) for run in row.runs))


def _steps_cell(row: Row) -> str:
  return _steps_text([r.results['step'] for r in row.runs if r.results.get('step') is not None])


def _one_decimal(x: float) -> str:
  return f'{x:.1f}'


def _training_time_cell(row: Row) -> str:
  """A single run's time as it is; over seeds, the mean and std of the minutes."""
  times = [r.training_time for r in row.runs if r.training_time is not None]
  if len(row.runs) == 1 or not times:
    return training_time_label(times[0] if times else None)
  minutes = stats_text(
      Stats(tuple(t.seconds / 60 for t in times)), len(times), _one_decimal, _one_decimal
  )
  text = f'{minutes} min / {_steps_text([t.steps for t in times])} steps'
  return text if len(times) == len(row.runs) else f'{text} (n={len(times)})'


def _metric_cell(metric: Metric) -> Callable[[Row], str]:
  return lambda row: stats_text(metric.stats(row), len(row.runs))


def columns(rows: Sequence[Row]) -> List[Tuple[str, Callable[[Row], str]]]:
  """(title, row -> cell); a seeds column only where some row has several runs."""
  out = [('run', lambda row: row.name)]
  if any(len(row.runs) > 1 for row in rows):
    out.append(('seeds', lambda row: str(len(row.runs))))
  out += [('penalty', _penalty_cell), ('steps', _steps_cell)]
  out += [(m.title, _metric_cell(m)) for m in metrics([r for row in rows for r in row.runs])]
  return out + [('training time', _training_time_cell)]


def _cell(text: str) -> str:
  return str(text).replace('|', r'\|').replace('\n', ' ')


def markdown_table(runs: Sequence[Run]) -> str:
  """One row per name (its runs' mean ± std where it has several); missing numbers as '–'."""
  rows = group_runs(runs)
  cols = columns(rows)
  text_columns = 3 if cols[1][0] == 'seeds' else 2
  lines = [
      '| ' + ' | '.join(title for title, _ in cols) + ' |',
      '|' + '|'.join('---' if i < text_columns else '---:' for i in range(len(cols))) + '|',
  ]
  for row in rows:
    lines.append('| ' + ' | '.join(_cell(cell(row)) for _, cell in cols) + ' |')
  return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# Differences beyond the seed noise.


@dataclasses.dataclass(frozen=True)
class Difference:
  """One metric, two rows: their means and Welch's two-sided p-value."""

  metric: str
  rows: Tuple[str, str]
  means: Tuple[float, float]
  p: float

  @property
  def significant(self) -> bool:
    return self.p < SIGNIFICANCE

  def __str__(self) -> str:
    relation = '<' if self.means[0] < self.means[1] else '>'
    return f'{self.rows[0]} {relation} {self.rows[1]} (p={self.p:.2g})'


RULE = (
    f"Welch's t-test on the per-seed values (two-sided, unequal variances), p < "
    f'{SIGNIFICANCE:g}, for each pair of rows with at least 2 seeds with the number'
)


def welch_p(a: Stats, b: Stats) -> float:
  """Welch's two-sided p-value; 0 (1) where neither row varies and the means differ (agree)."""
  var_a, var_b = a.std**2 / a.n, b.std**2 / b.n
  difference = a.mean - b.mean
  if var_a + var_b == 0:
    return 0.0 if difference else 1.0
  dof = (var_a + var_b) ** 2 / (var_a**2 / (a.n - 1) + var_b**2 / (b.n - 1))
  return float(2 * stats.t.sf(abs(difference) / math.sqrt(var_a + var_b), dof))


def _pairs(rows: Sequence[Row], metric: Metric):
  """(row a, row b, their stats, comparable) for the pairs with 2+ values each, in row order."""
  for i, a in enumerate(rows):
    for b in rows[i + 1 :]:
      stats_a, stats_b = metric.stats(a), metric.stats(b)
      if stats_a.n >= 2 and stats_b.n >= 2:
        comparable = metric.comparable_by(a.runs[0].results) == metric.comparable_by(
            b.runs[0].results
        )
        yield a, b, stats_a, stats_b, comparable


def differences(runs: Sequence[Run]) -> List[Difference]:
  """Every compared metric's tests, over the pairs of rows that have the seeds for one."""
  rows = group_runs(runs)
  return [
      Difference(m.title, (a.name, b.name), (sa.mean, sb.mean), welch_p(sa, sb))
      for m in metrics(runs)
      if m.compared
      for a, b, sa, sb, comparable in _pairs(rows, m)
      if comparable
  ]


def _pairs_text(count: int) -> str:
  return f'{count} pair' + ('' if count == 1 else 's')


def significance_lines(runs: Sequence[Run]) -> List[str]:
  """Per metric, the pairs of rows whose difference exceeds the seed noise; [] without seeds."""
  rows = group_runs(runs)
  tests = differences(runs)
  if not tests:
    return []
  lines = [
      f'Differences beyond the seed noise, by {RULE}. About 1 in 20 pairs of equally '
      'good rows passes by chance; with 3 seeds only differences of several standard '
      'deviations pass.',
      '',
  ]
  for metric in metrics(runs):
    found = [d for d in tests if d.metric == metric.title]
    skipped = sum(not c for *_, c in _pairs(rows, metric)) if metric.compared else 0
    if not found and not skipped:
      continue
    beyond = [str(d) for d in found if d.significant]
    text = f'- {metric.title}, {len(beyond)} of {_pairs_text(len(found))}: '
    text += ', '.join(beyond) if beyond else 'none'
    if skipped:
      text += f' ({_pairs_text(skipped)} with different costs not compared)'
    lines.append(text + '.')
  return lines


# ---------------------------------------------------------------------------------------------
# Notes.


def notes(runs: Sequence[Run]) -> List[str]:
  """What the numbers are: image counts, the FIDs' real-vs-real floors, how time was measured."""
  out = _seed_notes(runs)
  out += [
      note
      for note in (
          _fid_note(runs, CLASSIFIER_FID, 'FID (MNIST classifier)'),
          _fid_note(runs, None, 'FID (Inception)'),
      )
      if note
  ]
  if any(m.sampler for m in metrics(runs)):
    out.append(
        'Prior and GMM columns: the same metrics for samples decoded from prior codes '
        "(the WAE's P_Z) and from codes drawn from a Gaussian mixture fitted to the "
        'encoded training images after training (eval.sampler).'
    )
  sharp = {
      r.name: r.results['sharpness_samples'].get('num_images')
      for r in runs
      if isinstance(r.results.get('sharpness_samples'), dict)
  }
  if sharp:
    out.append(
        "Sharpness: the paper's variance of the Laplacian (higher is sharper), on "
        f'{_same_or_each(sharp)} images each.'
    )
  recon = {
      r.name: r.results['test_reconstruction_cost']
      for r in runs
      if isinstance(r.results.get('test_reconstruction_cost'), dict)
  }
  if recon:
    costs = {n: f"{e.get('cost', '?')} (scale {e.get('scale', '?')})" for n, e in recon.items()}
    counts = {n: e.get('num_images') for n, e in recon.items()}
    out.append(
        f"Test reconstruction cost: each run's own training cost, {_same_or_each(costs)}, "
        f'on {_same_or_each(counts)} test images; MSE per pixel is defined the same way '
        'for every run.'
    )
  mmd = {
      r.name: r.results['test_codes_mmd']
      for r in runs
      if isinstance(r.results.get('test_codes_mmd'), dict)
  }
  if mmd:
    codes = _same_or_each({n: e.get('num_codes') for n, e in mmd.items()})
    kernels = _same_or_each({n: e.get('kernel') for n, e in mmd.items()})
    out.append(
        f'Test codes MMD: between {codes} test codes and as many prior samples ({kernels} '
        'kernel; the unbiased estimate can be negative).'
    )
  out += _config_notes(runs)
  times = {r.training_time.source for r in runs if r.training_time}
  if times:
    out.append(
        'Training time: the training loop, summed over resumed processes, compilation '
        'included, data loading and encoder pre-training not; from clu\'s "uptime" '
        'scalar'
        + (
            ', or where it is missing from the wall times of the first and ' 'last logged loss'
            if 'wall time' in times
            else ''
        )
        + '.'
    )
  return out


def _seed_notes(runs: Sequence[Run]) -> List[str]:
  """How rows with several runs are summarised, and which seeds they have."""
  rows = group_runs(runs)
  if all(len(row.runs) == 1 for row in rows):
    return []
  seeds = {row.name: ', '.join(map(str, (r.seed for r in row.runs))) for row in rows}
  return [
      'Seeds: each row is its runs with different `config.seed` (seeds '
      f'{_same_or_each(seeds)}); a number is their mean ± sample standard deviation '
      '(ddof=1), "(n=k)" where only k of them have it.'
  ]


def _config_notes(runs: Sequence[Run]) -> List[str]:
  """One note per run whose config changed during training (--allow_config_change)."""
  out = []
  names = [r.name for r in runs]
  for run in runs:
    changes = [c for c in run.results.get('configs', [])[1:] if c.get('changed')]
    if changes:
      parts = [
          '; '.join(f'{field} {old!r} -> {new!r}' for field, (old, new) in c['changed'].items())
          + f" from step {c['step']:,} ({c['file']})"
          for c in changes
      ]
      label = run.name if names.count(run.name) == 1 else f'{run.name} (`{run.workdir}`)'
      out.append(
          f'{label}: its config changed during training: {", then ".join(parts)}. '
          'The penalty column shows the config its evaluated checkpoint was trained '
          'under.'
      )
  return out


def _fid_note(runs: Sequence[Run], key: Optional[str], label: str) -> Optional[str]:
  """What the FID compares, and its real-vs-real floor (training vs test images)."""
  keys = {r.name: key or inception_fid_key(r.results) for r in runs}
  fid_runs = [r for r in runs if r.value(keys[r.name]) is not None]
  if not fid_runs:
    return None
  floors = {r.name: r.value(f'{keys[r.name]}_real_floor') for r in fid_runs}
  entry = fid_runs[0].results[keys[fid_runs[0].name]]
  features = {r.name: r.results[keys[r.name]].get('features', 'features') for r in fid_runs}
  # Features naming other weights (another classifier's hash) make FIDs that do not compare.
  same = len(set(features.values())) == 1
  comparable = (
      'comparable only with FIDs on the same features'
      if same
      else 'NOT comparable between runs on different features'
  )
  return (
      f'{label}: Fréchet distance between {entry.get("num_images", "?")} samples and as '
      f'many test images on the {_same_or_each(features)} ({comparable}). Its real-vs-real '
      'floor (training vs test images, same count): '
      f'{_same_or_each({n: format_number(f) for n, f in floors.items()})}.'
  )


def _same_or_each(by_run: Dict[str, object]) -> str:
  """'x' if every run has x, else 'x (run A), y (run B)'."""
  unique = set(map(str, by_run.values()))
  if len(unique) == 1:
    return unique.pop()
  return ', '.join(f'{value} ({name})' for name, value in by_run.items())


def markdown_report(runs: Sequence[Run], figure: Optional[str] = None) -> str:
  rows = group_runs(runs)
  lines = ['# Runs compared', '', markdown_table(runs), '']
  lines += [f'- {note}' for note in notes(runs)]
  significance = significance_lines(runs)
  if significance:
    lines += [''] + significance
  joiner = ', ' if all(len(row.runs) == 1 for row in rows) else '; '
  lines += [
      '',
      'Workdirs: '
      + joiner.join(
          f'{row.name}: ' + ', '.join(f'`{r.workdir}`' for r in row.runs) for row in rows
      ),
  ]
  if figure:
    lines += ['', f'![Samples and training curves]({figure})']
  return '\n'.join(lines) + '\n'


def report_data(runs: Sequence[Run]) -> Dict:
  """The table as JSON: each row's per-seed values with their mean and std, and the tests."""
  rows = []
  for row in group_runs(runs):
    numbers = {}
    for metric in metrics(runs):
      values = metric.stats(row)
      numbers[metric.title] = {
          'key': metric.key(row.runs[0].results),
          'values': [metric.value(r) for r in row.runs],
          'mean': values.mean,
          'std': values.std,
          'n': values.n,
      }
    minutes = [None if r.training_time is None else r.training_time.seconds / 60 for r in row.runs]
    rows.append(
        {
            'name': row.name,
            'workdirs': [str(r.workdir) for r in row.runs],
            'seeds': [r.seed for r in row.runs],
            'steps': [r.results.get('step') for r in row.runs],
            'metrics': numbers,
            'training_minutes': minutes,
        }
    )
  tests = [
      {
          'metric': d.metric,
          'rows': list(d.rows),
          'means': list(d.means),
          'p': d.p,
          'significant': d.significant,
      }
      for d in differences(runs)
  ]
  return {'rule': RULE, 'rows': rows, 'differences': tests}


# ---------------------------------------------------------------------------------------------
# The figure.


def make_figure(runs: Sequence[Run], path) -> pathlib.Path:
  """Per row, its first run's sample grid (top) over its runs' curves (bottom), as a PNG."""
  rows = group_runs(runs)
  n = len(rows)
  figure = Figure(figsize=(max(4.2 * n, 5.0), 8.4), layout='constrained')
  FigureCanvasAgg(figure)
  axes = figure.subplots(2, n, squeeze=False, height_ratios=(1.1, 1.0))
  for row, top, bottom in zip(rows, axes[0], axes[1]):
    first = row.runs[0]
    top.set_axis_off()
    step = first.results.get('step')
    title = row.name if step is None else f'{row.name} (step {step:,})'
    if len(row.runs) > 1:
      title += (
          f'\nsamples: seed {first.seed if first.seed is not None else "?"}; '
          f'curves: {len(row.runs)} seeds'
      )
    top.set_title(title)
    if first.samples_png is not None:
      with Image.open(first.samples_png) as image:
        top.imshow(
            np.asarray(image.convert('L')), cmap='gray', vmin=0, vmax=255, interpolation='nearest'
        )
    else:
      top.text(0.5, 0.5, 'no samples PNG', ha='center', va='center', transform=top.transAxes)
    _plot_curves(row, bottom)
  path = pathlib.Path(path)
  with files.atomic_path(path) as tmp:
    figure.savefig(tmp, dpi=FIGURE_DPI)
  return path


def _plot_curves(row: Row, ax) -> None:
  """Each run's curves in the same colours, labelled once: the seeds' spread is visible."""
  lines, twin = [], None
  alpha = 1.0 if len(row.runs) == 1 else 0.6
  for index, run in enumerate(row.runs):
    labelled = index == 0
    for tag, style in zip(CURVES, ('-', '--')):
      if tag in run.curves:
        curve = run.curves[tag]
        drawn = ax.plot(
            curve.steps,
            curve.values,
            style,
            color='C0' if tag == 'loss' else 'C1',
            alpha=alpha,
            label=tag,
        )
        lines += drawn if labelled else []
    if PENALTY_CURVE in run.curves:
      curve = run.curves[PENALTY_CURVE]
      if twin is None:
        twin = ax.twinx()
      kind = penalty_kind(run.penalty)
      label = f'penalty ({kind})' if kind else 'penalty'
      drawn = twin.plot(curve.steps, curve.values, ':', color='C2', alpha=alpha, label=label)
      if labelled:
        lines += drawn
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


def _check_out(out) -> pathlib.Path:
  """--out as a directory that can be made, checked before any run is read."""
  if not str(out).strip():
    raise errors.FlagError(
        '--out is empty: give the directory to write report.md, report.png '
        'and report.json into (it is created if missing)'
    )
  out = pathlib.Path(out)
  existing = next(path for path in (out, *out.parents) if path.exists())
  if not existing.is_dir():
    raise errors.FlagError(
        f'--out={out}: {existing} is a file, not a directory; give a '
        'directory for report.md, report.png and report.json (it is created '
        'if missing)'
    )
  return out


def write_report(workdirs: Sequence[str], out, names: Optional[Sequence[str]] = None) -> str:
  """Loads the runs, writes out/report.{md,png,json}; returns the markdown.

  Workdirs with the same name are seeds of one row.
  """
  if not workdirs:
    raise errors.FlagError(
        '--workdirs is empty: give the evaluated workdirs to compare, '
        'comma-separated (e.g. --workdirs=DIR1,DIR2)'
    )
  if names and len(names) != len(workdirs):
    raise errors.FlagError(f'--names gives {len(names)} names for {len(workdirs)} workdirs')
  resolved = [pathlib.Path(w).resolve() for w in workdirs]
  twice = sorted({str(w) for w, r in zip(workdirs, resolved) if resolved.count(r) > 1})
  if twice:  # one run counted as two seeds would make a standard deviation of nothing
    raise errors.FlagError(
        f'--workdirs names {", ".join(twice)} more than once: give each ' 'run once'
    )
  out = _check_out(out)
  runs = [load_run(w, n) for w, n in zip(workdirs, names or [None] * len(workdirs))]
  make_figure(runs, out / 'report.png')
  markdown = markdown_report(runs, figure='report.png')
  files.write_bytes(out / 'report.md', markdown.encode())
  files.write_json(out / 'report.json', report_data(runs))
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
  flags.DEFINE_string(
      'workdirs',
      None,
      'Comma-separated workdirs, each evaluated ' '(--mode=evaluate wrote eval/results.json).',
  )
  flags.DEFINE_string(
      'names',
      None,
      'Comma-separated run names, one per workdir; workdirs with '
      "the same name are seeds of one row (default: the workdir's folder name, "
      "its parent's for a seed<k> folder).",
  )
  flags.DEFINE_string('out', None, 'Directory for report.md, report.png and report.json.')
  flags.DEFINE_bool('print', True, 'Print the markdown to stdout (--noprint: do not).')
  flags.mark_flags_as_required(['workdirs', 'out'])


if __name__ == '__main__':
  _define_flags()
  errors.run(main)
