"""Runs a sweep (configs/sweep.py) on Ray: one task per trial, then the table and figures.

  python launch/ray_sweep.py --sweep=configs/sweep.py:tiny --root=DIR [--max_concurrent=N]
      [--address=auto|ray://host:10001] [--cpus_per_trial=1] [--gpus_per_trial=0]
      [--max_retries=2] [--pack=K] [--sweep.num_configs=10 ...]
  python launch/ray_sweep.py --plan --sweep=configs/sweep.py:bigwae [--topology=v5e:2x2]
      [--root=DIR]

Without --address it starts a small local Ray instance. Each trial (wae_jax.sweep.trials.run_trial)
trains and evaluates in subprocesses and writes DIR/<trial_id>/trial.json when finished; with
--pack=K the trials that share a compiled shape train K at a time in one task
(wae_jax.sweep.trials.run_pack: one vmapped step, wae_jax.packed), then each is evaluated. A
failed trial is retried --max_retries times, then reported (logged, DIR/failures.json, a
'failed' row) while the others go on; a pack that fails so is run again one trial at a time,
so that one trial's fault does not fail the rest. The exit status is 1 if any trial failed (2,
with one line, for a bad sweep config or flag, before anything runs). Running the same command
again skips the finished trials, resumes interrupted ones from their checkpoints and
retries the failed ones. At the end DIR/results.csv, results.md and the figures are written.
The sweep's config files are found relative to the current directory, here, before anything
is sent to Ray; paths in the trials' configs (--sweep.fixed.data.dir=..., the caches, the
Inception weights) must be absolute, since each trial's processes run in DIR/<trial_id>/.

--plan prints the sweep's cost on --topology and exits, before anything runs, without Ray
(wae_jax.accelerators.sweep_plan): each compiled shape's train step is compiled ahead of time for
it (wae_jax.accelerators.aot, on this CPU, 10-60 s each; trials differing only in e.g. learning
rate, lambda or seed share one). Total chip-hours = sum over trials of steps x roofline step
time x chips: a lower bound, not a measurement, without evaluation. --root keeps the figures in
DIR/plan_cache.json for reruns; exit 2: unknown topology. With --pack=K it compiles each shape
as a pack of K trials too and prints the chip-hours of the same trials packed.

GPU cluster: install this package (`pip install -e .[sweep]`) at the same path on every
node, put DIR on a filesystem all nodes share, `ray start --head` on one node and
`ray start --address=HEAD:6379` on the others, then run this on the head with
`--address=auto --gpus_per_trial=1`. Ray sets CUDA_VISIBLE_DEVICES for each task, and the
training subprocess inherits it: one trial per GPU.

TPU pod slice: Ray counts a TPU VM host's chips as the resource 'TPU'. Start Ray on every
host as above and run one trial per host, with all its chips: `--resources='{"TPU": 4}'`
(4 chips per v4 or v5p host). Running one trial across a whole multi-host slice means starting
`python -m wae_jax.main` on every host of the slice at once (jax.distributed); this launcher
does not do that.
"""

import collections
import json
import os
import pathlib
import sys
import time
from typing import Dict, Optional

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

REPO = pathlib.Path(__file__).resolve().parents[1]
# wae_jax for this driver when run from a checkout; Ray's workers need it installed
# (pip install -e .[sweep]) or the repository root as their working directory.
sys.path.insert(0, str(REPO))

from wae_jax import errors  # pylint: disable=g-import-not-at-top,wrong-import-position
from wae_jax.accelerators import sweep_plan  # pylint: disable=g-import-not-at-top,wrong-import-position
from wae_jax.sweep import results  # pylint: disable=g-import-not-at-top,wrong-import-position
from wae_jax.sweep import trials  # pylint: disable=g-import-not-at-top,wrong-import-position

_SWEEP = config_flags.DEFINE_config_file(
    'sweep', None, 'Sweep config, e.g. ' 'configs/sweep.py:bigwae.', lock_config=True
)
_ROOT = flags.DEFINE_string('root', None, 'Directory of the trials, the table and figures.')
_ADDRESS = flags.DEFINE_string(
    'address',
    None,
    'Ray cluster to join (auto, ray://host:10001); ' 'none: start a local Ray instance.',
)
_MAX_CONCURRENT = flags.DEFINE_integer(
    'max_concurrent',
    0,
    'Trials running at once at most; ' '0: as many as the resources allow.',
    lower_bound=0,
)
_CPUS = flags.DEFINE_float('cpus_per_trial', 1, 'CPUs Ray reserves per trial.', lower_bound=0)
_GPUS = flags.DEFINE_float('gpus_per_trial', 0, 'GPUs Ray reserves per trial.', lower_bound=0)
_RESOURCES = flags.DEFINE_string(
    'resources', '', 'Other resources per trial, as JSON, e.g. ' '\'{"TPU": 4}\'.'
)
# Ray reads -1 retries as "retry forever".
_MAX_RETRIES = flags.DEFINE_integer('max_retries', 2, 'Retries of a failed trial.', lower_bound=0)
_NUM_CPUS = flags.DEFINE_integer(
    'num_cpus', None, 'CPUs of the local Ray instance ' '(default: all).', lower_bound=1
)
_PROGRESS_SECS = flags.DEFINE_float(
    'progress_secs', 60, 'Seconds between progress lines ' 'when no trial ends.'
)
_PLAN = flags.DEFINE_bool(
    'plan',
    False,
    'Print what the sweep would cost on --topology '
    "(chip-hours from each compiled shape's roofline) and exit; runs "
    'nothing, starts no Ray.',
)
_TOPOLOGY = flags.DEFINE_string(
    'topology',
    'v5e:2x2',
    'With --plan: the TPU or GPU topology, '
    'as for python -m wae_jax.accelerators.aot (v5e:2x2, v5p:2x2x2, '
    'h100:8, ...).',
)
_PACK = flags.DEFINE_integer(
    'pack',
    1,
    'Trials that share a compiled shape train together, this many at a time, in one task and '
    'one vmapped step (wae_jax.packed; each on its own devices, no collectives); 1: one by '
    'one.',
    lower_bound=1,
)
flags.mark_flags_as_required(['sweep'])
flags.register_multi_flags_validator(
    ['plan', 'root'],
    lambda f: f['plan'] or f['root'],
    message='--root is required (except with --plan)',
)
flags.register_validator(
    'progress_secs', lambda seconds: seconds > 0, message='--progress_secs must be > 0'
)


def _run_pack(sweep, pack, root):
  """The Ray task: a pack of trials, or one (their subprocesses do the work)."""
  from wae_jax.sweep import trials as lib  # pylint: disable=g-import-not-at-top,reimported

  return lib.run_pack(sweep, pack, root)


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def _resources(text: str) -> Optional[Dict[str, float]]:
  """--resources as Ray takes them, refused in one line before Ray starts."""
  if not text:
    return None
  try:
    resources = json.loads(text)
  except ValueError:
    resources = None
  if not (
      isinstance(resources, dict)
      and all(
          isinstance(amount, (int, float)) and not isinstance(amount, bool) and amount >= 0
          for amount in resources.values()
      )
  ):
    raise errors.FlagError(
        f'--resources={text}: not a JSON object of resource names and '
        'amounts >= 0; e.g. --resources=\'{"TPU": 4}\''
    )
  return resources


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _PLAN.value:
    sys.exit(_plan(_SWEEP.value))
  resources = _resources(_RESOURCES.value)
  sweep, root = _SWEEP.value, pathlib.Path(_ROOT.value).absolute()
  sampled = trials.sample_trials(sweep)
  pending = [t for t in sampled if not (root / t.trial_id / trials.TRIAL_FILE).exists()]
  logging.info(
      'Sweep %s: %d trials; skipping %d finished (trial.json present), %d to run',
      sweep.name,
      len(sampled),
      len(sampled) - len(pending),
      len(pending),
  )
  try:  # A wrong field or a missing FID fails here, not in every task.
    for trial in pending:
      trials.fid_metric(trials.trial_config(sweep, trial))
  except errors.ConfigError as e:
    raise errors.ConfigError(f'{trial.trial_id}: {e}') from e

  failures = _run_on_ray(sweep, pending, root, resources) if pending else []
  results.write_failures(root, failures)  # This run's failures only: retried ones are gone.
  paths = results.collect(root)
  print(f'Results table: {paths["markdown"]} and {paths["csv"]}')
  print('Figures: ' + ', '.join(str(p) for p in paths.values() if p.suffix == '.png'))
  if failures:
    print(f'{len(failures)} trials failed: see {root / results.FAILURES_FILE}')
    sys.exit(1)


def _plan(sweep) -> int:
  """--plan: prints the sweep's cost on --topology; the exit status (an unknown topology is
  aot.TopologyError: one line, exit status 2)."""
  import jax  # pylint: disable=g-import-not-at-top

  # As python -m wae_jax.accelerators.aot: compile on the CPU, whatever accelerators this host has.
  jax.config.update('jax_platforms', 'cpu')
  root = pathlib.Path(_ROOT.value).absolute() if _ROOT.value else None
  cache = root / sweep_plan.PLAN_CACHE_FILE if root else None
  rows = sweep_plan.plan(sweep, _TOPOLOGY.value, cache_path=cache, pack=_PACK.value)
  print(sweep_plan.format_plan(rows, _TOPOLOGY.value), end='')
  return 0


def _run_on_ray(sweep, pending, root, resources):
  """Runs the trials as Ray tasks, at most --max_concurrent at once; returns the failures."""
  import ray  # pylint: disable=g-import-not-at-top

  os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')
  if _ADDRESS.value:
    ray.init(address=_ADDRESS.value, logging_level='WARNING')
  else:
    ray.init(
        num_cpus=_NUM_CPUS.value or os.cpu_count(),
        object_store_memory=100 * 2**20,
        include_dashboard=False,
        logging_level='WARNING',
    )
  task = ray.remote(_run_pack).options(
      num_cpus=_CPUS.value,
      num_gpus=_GPUS.value,
      resources=resources,
      max_retries=_MAX_RETRIES.value,
      retry_exceptions=True,
  )
  sweep_ref = ray.put(sweep)
  packs = trials.packs(sweep, pending, _PACK.value) if _PACK.value > 1 else [[t] for t in pending]
  queue, running, failures = collections.deque(packs), {}, []
  limit = _MAX_CONCURRENT.value or len(packs)
  finished, start = 0, time.time()
  while queue or running:
    while queue and len(running) < limit:
      pack = queue.popleft()
      running[task.remote(sweep_ref, pack, str(root))] = pack
    ready, _ = ray.wait(list(running), num_returns=1, timeout=_PROGRESS_SECS.value)
    for ref in ready:
      pack = running.pop(ref)
      try:
        for result in ray.get(ref):
          logging.info(
              '%s: %s, best %s %s at step %s',
              result['trial_id'],
              result['status'],
              result['fid_metric'],
              result['best_fid'],
              result['best_step'],
          )
      except ray.exceptions.RayError as e:
        error = str(getattr(e, 'cause', None) or e).strip()
        lines = error.splitlines() or ['']
        attempts = _MAX_RETRIES.value + 1
        ids = ', '.join(t.trial_id for t in pack)
        failed = f'{ids} failed after {attempts} attempts: {lines[0]} ... {lines[-1]}'
        if len(pack) > 1:
          # One trial's fault (a damaged workdir) or the pack's (too many for the chip's
          # memory) must not fail the others: they are tried again one by one.
          logging.warning('pack %s; its trials run again one by one', failed)
          queue.extend([t] for t in pack)
          continue
        logging.error('%s', failed)
        failures.extend(
            {
                **trials.trial_record(sweep, trial),
                'error': error[-2000:],
                'attempts': attempts,
            }
            for trial in pack
        )
        results.write_failures(root, failures)
      finished += len(pack)
    elapsed = time.time() - start
    left = len(pending) - finished
    eta = _duration(elapsed / finished * left) if finished else '?'
    logging.info(
        'Progress: %d/%d done, %d failed, %d running or queued; elapsed %s, ETA %s',
        finished,
        len(pending),
        len(failures),
        left,
        _duration(elapsed),
        eta,
    )
  ray.shutdown()
  return failures


if __name__ == '__main__':
  errors.run(main)
