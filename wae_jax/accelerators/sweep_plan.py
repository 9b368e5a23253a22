"""A sweep's bill before it runs: its chip-hours on a TPU or GPU topology.

`plan` groups a sweep's trials by compiled shape (`shape_key`: trials that differ only in
values the train step bakes in as constants share one compile), compiles each shape's train
step ahead of time for the topology (`aot.analyse`) and takes its roofline step time;
`format_plan` prints the table and the total. `launch/ray_sweep.py --plan` runs it.
"""

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import pathlib
import sys
from typing import Any, Callable, Dict, List, Optional

from wae_jax import config as wae_config
from wae_jax import data as datasets
from wae_jax import errors
from wae_jax import files
from wae_jax import input_pipeline
from wae_jax import penalties
from wae_jax import train
from wae_jax.sweep import trials

PLAN_CACHE_FILE = 'plan_cache.json'
# A trial's compiled shape (`shape_key`) is its config less the fields below, which cannot
# change the compiled train step's shapes, ops or buffers; trials that differ only in them
# share one compile.
# - Not read by the train step: the host's loop, data loading, checkpoints, evaluation, the
#   encoder's pre-training (a program of its own, not in the plan), and the seed (it sets
#   only the values of the random keys).
# - Python scalars the step bakes in as constants, with the same shapes and ops whatever their
#   value (train.STEP_NUMBERS: the learning rates, lambda, the prior variance, the cost's
#   scale; and the kernel scale, None: the default C, another constant). lr_decay's (epoch,
#   factor) pairs are constants too; their number changes the step by one scalar compare per
#   pair, not worth a compile (sweeps do not vary it). Checked on the tiny sweep's step for
#   v5e:2x2: changing any of these (and the seed) left XLA's FLOPs, bytes and buffers
#   unchanged, while Adam's beta1 (0.5, where 1 - b1 = b1, against 0.9) moved them by 0.3%:
#   constants can change XLA's simplifications, so train.adam_b1 stays in the key.
# A penalty's own such fields are its record's (penalties.fields_not_in_step: the kernel scale).
# Every other field stays in the key, fields unknown here included: a new one costs an extra
# compile until it is listed here, rather than sharing another shape's figures.
_NOT_IN_STEP = frozenset(
    {
        'seed',
        'data.source',
        'data.dir',
        'data.cache_dir',
        'train.num_epochs',
        'train.num_steps',
        'train.pretrain_steps',
        'train.pretrain_learning_rate',
        'train.log_every',
        'train.checkpoint_every',
        'train.keep_checkpoints',
        'train.image_every',
        'train.max_nonfinite_steps',
        'train.lr_decay',
        *train.STEP_NUMBERS,
    }
)
_NOT_IN_STEP_PREFIXES = ('eval.',)
# Fields that count as what the step sees of them: input noise 0 leaves the noise out.
_AS_SEEN = {'train.input_noise': lambda std: std > 0}


def shape_key(config) -> Dict[str, Any]:
  """The fields of `config` that can change its compiled train step, flat (see _NOT_IN_STEP)."""
  # A penalty's own such fields, read at call time: a penalty registered later counts too.
  not_in_step = _NOT_IN_STEP | penalties.fields_not_in_step()
  key = {}
  for path, value in wae_config.flatten(config).items():
    if path in not_in_step or path.startswith(_NOT_IN_STEP_PREFIXES):
      continue
    key[path] = _AS_SEEN[path](value) if path in _AS_SEEN else value
  return key


def _key_text(key: Dict[str, Any]) -> str:
  return json.dumps(key, sort_keys=True, default=str)  # tuples and lists alike: JSON lists


@dataclasses.dataclass
class PlanRow:
  """One compiled shape of a sweep on a topology, and the trials that share it."""

  key: Dict[str, Any]  # shape_key of its trials
  trial_ids: List[str]
  steps: int  # train steps of all its trials together
  num_chips: int
  status: str = 'ok'  # 'ok' (counted), 'indivisible', 'does not fit' or 'no roofline'
  step_s: Optional[float] = None  # the roofline: a lower bound on one step's time
  img_per_s: Optional[float] = None
  bound: Optional[str] = None  # 'compute' | 'memory'
  note: str = ''  # why it is not counted
  cached: bool = False  # its figures came from the cache, not a compile now
  pack: int = 1  # trials per pack, with `plan(pack=K)`
  packed_step_s: Optional[float] = None  # the packed step's roofline, if it fits

  @property
  def chip_hours(self) -> float:
    """steps x step_s x chips / 3600 (the sum of its trials'); 0 unless counted."""
    if self.status != 'ok':
      return 0.0
    return self.steps * self.step_s * self.num_chips / 3600

  @property
  def packed_chip_hours(self) -> float:
    """The same trials trained `pack` at a time (their last pack may be partial, and costs a
    whole one); the unpacked chip-hours where the pack does not fit."""
    if self.packed_step_s is None:
      return self.chip_hours
    packs = math.ceil(len(self.trial_ids) / self.pack)
    return packs * self.steps / len(self.trial_ids) * self.packed_step_s * self.num_chips / 3600


def plan_fingerprint() -> str:
  """Changes with wae_jax's source and the versions of JAX, its plugins and libtpu: cached
  figures are reused only by the code that computed them."""
  digest = hashlib.sha256()
  for name in ('jax', 'jaxlib', 'libtpu', 'jax-cuda12-plugin', 'jax-cuda12-pjrt'):
    try:
      digest.update(f'{name} {importlib.metadata.version(name)}\n'.encode())
    except importlib.metadata.PackageNotFoundError:
      pass
  package = pathlib.Path(__file__).resolve().parents[1]  # all of wae_jax
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


def _analysed(analyse, config, topology: str, pack: int = 1) -> Dict[str, Any]:
  """A cache entry: what `plan` needs of aot.analyse's report, as JSON."""
  from wae_jax.accelerators import aot  # pylint: disable=g-import-not-at-top

  try:
    report = analyse(config, topology, **({'pack': pack} if pack > 1 else {}))
  except aot.DoesNotFitError as e:  # the state alone is too big: nothing compiled
    return {'fit_error': str(e)}
  return {
      'num_chips': report.num_chips,
      'roofline': report.roofline(),
      'fit_error': report.fit_error(),
      'compile_s': getattr(report, 'compile_s', None),
  }


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


def plan(
    sweep,
    topology: str,
    analyse: Optional[Callable] = None,
    cache: Optional[Dict[str, Dict[str, Any]]] = None,
    cache_path=None,
    num_chips: Optional[int] = None,
    progress: Callable[[str], None] = _print_stderr,
    pack: int = 1,
) -> List[PlanRow]:
  """The sweep's trials grouped by compiled shape, each shape's roofline step time on
  `topology`: one row per shape, in the order of their first trials.

  analyse(config, topology) -> a report with num_chips, roofline() and fit_error(), or raises
  aot.DoesNotFitError (default: aot.analyse, a compile of 10-60 s). Each shape is analysed
  once; `cache` (entries by topology and shape) keeps the figures, and `cache_path` keeps
  them on disk too: read first, written after each compile, so that a rerun compiles only
  what is new. A shape whose batch size does not split over the topology's chips is not
  compiled; it and one that does not fit in HBM are listed, not counted. `progress` gets a
  line before each compile. With `pack` > 1 each counted shape is compiled again as a pack
  of that many trials (wae_jax.packed, whole trials per chip; a multiple of the chips), for
  the chip-hours of the same trials packed. Raises aot.TopologyError for an unknown topology,
  ValueError for a wrong sweep.
  """
  from wae_jax import train  # pylint: disable=g-import-not-at-top
  from wae_jax.accelerators import aot  # pylint: disable=g-import-not-at-top

  analyse = analyse or aot.analyse
  if num_chips is None:
    num_chips = len(aot.target(topology).devices)  # an unknown topology fails here, at once
  if pack > 1 and pack % num_chips:
    raise errors.ConfigError(
        f'--pack={pack} does not split over the {num_chips} chips of {topology}: each chip '
        f'trains whole trials; allowed: a multiple of {num_chips}'
    )
  cache = {} if cache is None else cache
  if cache_path is not None:
    for name, entry in load_plan_cache(cache_path).items():
      cache.setdefault(name, entry)
  rows: Dict[str, PlanRow] = {}
  configs = {}
  for trial in trials.sample_trials(sweep):
    config = trials.trial_config(sweep, trial)
    key = shape_key(config)
    text = _key_text(key)
    per_epoch = input_pipeline.steps_per_epoch(
        datasets.get(config.data.name).train_size, config.train.batch_size
    )
    row = rows.setdefault(text, PlanRow(key, [], 0, num_chips))
    row.trial_ids.append(trial.trial_id)
    row.steps += train.num_train_steps(config, per_epoch)
    configs.setdefault(text, config)

  varying = varying_fields(list(rows.values()))
  todo = [
      text
      for text, row in rows.items()
      if row.key['train.batch_size'] % num_chips == 0 and f'{topology} {text}' not in cache
  ]
  for text, row in rows.items():
    batch_size = row.key['train.batch_size']
    if batch_size % num_chips:
      row.status = 'indivisible'
      row.note = (
          f'train.batch_size={batch_size} does not split over the {num_chips} chips of '
          f'{topology}'
      )
      continue
    name = f'{topology} {text}'
    row.cached = name in cache
    if not row.cached:
      progress(
          f'compiling {todo.index(text) + 1}/{len(todo)} for {topology}: '
          f'{_describe(row.key, varying) or "the only shape"} '
          f'({len(row.trial_ids)} trials) ...'
      )
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
      row.step_s, row.img_per_s, row.bound = (
          roofline['step_s'],
          roofline['img_per_s'],
          roofline['bound'],
      )
      if pack > 1:
        row.pack = pack
        name = f'{topology} pack{pack} {text}'
        if name not in cache:
          progress(f'compiling a pack of {pack} of the same for {topology} ...')
          cache[name] = _analysed(analyse, configs[text], topology, pack)
          if cache_path is not None:
            save_plan_cache(cache_path, cache)
        packed = cache[name]
        if packed.get('roofline') and not packed.get('fit_error'):
          row.packed_step_s = packed['roofline']['step_s']
  return list(rows.values())


def _hours(hours: float) -> str:
  return f'{hours:,.0f}' if hours >= 1000 else f'{hours:.3g}'


def _table(header: List[str], body: List[List[str]], right: List[bool]) -> List[str]:
  """A Markdown table whose columns line up in a terminal too."""
  widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

  def line(cells):
    return (
        '| '
        + ' | '.join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right))
        + ' |'
    )

  rule = '|' + '|'.join('-' * (w + 1) + (':' if r else '-') for w, r in zip(widths, right)) + '|'
  return [line(header), rule, *(line(cells) for cells in body)]


def format_plan(rows: List[PlanRow], topology: str) -> str:
  """The plan as text: one table row per compiled shape, what is not counted and why, and the
  total chip-hours (a lower bound)."""
  varying = varying_fields(rows)
  num_chips = rows[0].num_chips if rows else 0
  num_trials = sum(len(r.trial_ids) for r in rows)
  counted = [r for r in rows if r.status == 'ok']
  counted_trials = sum(len(r.trial_ids) for r in counted)
  total = sum(r.chip_hours for r in rows)
  analysed = sum(not r.cached for r in rows if r.status != 'indivisible')
  reasons = {
      'indivisible': f'not counted: batch not divisible by {num_chips}',
      'does not fit': 'not counted: does not fit in HBM',
      'no roofline': 'not counted: no roofline',
  }
  body = []
  for i, r in enumerate(rows, 1):
    ok = r.status == 'ok'
    body.append(
        [
            str(i),
            *(_cell(r.key.get(p)) for p in varying),
            str(len(r.trial_ids)),
            f'{r.steps:,}',
            f'{r.step_s * 1e3:.3g} ms' if ok else '-',
            f'{r.img_per_s:,.0f}' if ok else '-',
            r.bound if ok else '-',
            _hours(r.chip_hours) if ok else '-',
            ('counted, cached' if r.cached else 'counted') if ok else reasons[r.status],
        ]
    )
  header = [
      'shape',
      *varying,
      'trials',
      'steps',
      'step >=',
      'img/s <=',
      'bound',
      'chip-hours',
      'status',
  ]
  right = [True, *([True] * len(varying)), True, True, True, True, False, True, False]
  lines = [
      f'Sweep plan on {topology} ({num_chips} chips): {num_trials} trials in {len(rows)} '
      f'compiled shapes ({analysed} analysed now, '
      f'{sum(r.cached for r in rows)} from the cache)',
      '',
      *_table(header, body, right),
      '',
  ]
  lines += [f'shape {i}: {r.note}' for i, r in enumerate(rows, 1) if r.status != 'ok']
  pack = max((r.pack for r in rows), default=1)
  if pack > 1:
    packed = sum(r.packed_chip_hours for r in counted)
    unpacked = sum(r.chip_hours for r in counted)
    lines += [
        f'Packed {pack} at a time (wae_jax.packed: whole trials on each chip, no collectives): '
        f'{_hours(packed)} chip-hours for the same {counted_trials} trials against '
        f'{_hours(unpacked)} unpacked'
        + (f', {unpacked / packed:.2f}x fewer' if packed else '')
        + '; per shape: '
        + ', '.join(
            f'{i}: {r.packed_step_s * 1e3:.3g} ms per packed step'
            if r.packed_step_s
            else f'{i}: not packed (does not fit), counted unpacked'
            for i, r in enumerate(rows, 1)
            if r.status == 'ok'
        )
        + '.'
    ]
  lines += [
      f'Total: {_hours(total)} chip-hours on {topology} for {counted_trials} of {num_trials} '
      f'trials (the sum over trials of steps x step time x {num_chips} chips / 3600; '
      f'{_hours(total / num_chips) if num_chips else "-"} h on one {topology} running '
      'the trials one after another).',
      'A lower bound from the roofline, not a measurement: each step takes at least '
      'max(model FLOPs / peak FLOP/s, HBM bytes / bandwidth) of published chip figures '
      '(python -m wae_jax.accelerators.aot); collectives, kernel launches, input and idle '
      "time are left out. Evaluation (FID, checkpoints) and the encoder's pre-training "
      'are not included.',
  ]
  return '\n'.join(lines) + '\n'
