"""What packing trials buys: per-trial images/s of K trials trained as one pack against the
same trials trained one after another.

    python -m benchmarks.packing                          # widths 1/32 and 1/8, K = 1, 4, 16
    python -m benchmarks.packing --widths=8 --packs=4 --objective=gan --out=FILE.json

For each width (the MNIST nets at 1/N of the paper's, benchmark.model_config's mnist_w<N>)
and pack size K: K trials of one compiled shape (seeds 0..K-1, their learning rates and
lambdas spread) train in one vmapped step (`wae_jax.packed.make_packed_step`, the trial
axis over this process's devices), each on its own batch; per-trial images/s = K x batch /
step time. One after another, each trial runs its own jitted solo step
(`train.make_train_step`), whose time does not depend on which trial it is: trial 0's is
measured once per width, and K trials take K times as long, so a trial's images/s over the
time of all K is its solo rate / K. The speed-up is packed over one after another. Compile
times are excluded and printed beside. Timing as in benchmarks.benchmark (warm-up, median of
--repeats trials).
"""

import argparse
import json
import platform
import sys
import time
from typing import List, Optional

import jax
import numpy as np

from benchmarks import benchmark
from wae_jax import models
from wae_jax import packed
from wae_jax import parallel
from wae_jax import train

STEPS_PER_EPOCH = 1000


def _trial_configs(config, num_trials: int):
  """K trials of one shape: seeds 0..K-1, learning rates and lambdas spread about config's."""
  configs = []
  for index in range(num_trials):
    trial = config.copy_and_resolve_references()
    trial.seed = index
    trial.train.learning_rate = config.train.learning_rate * 2.0 ** (index % 3 - 1)
    trial.penalty.lam = config.penalty.lam * 2.0 ** (index % 5 - 2)
    configs.append(trial)
  return configs


def _images(config, num: int, seed: int) -> np.ndarray:
  lo, hi = config.data.pixel_range
  shape = (num, config.train.batch_size) + tuple(config.data.image_shape)
  return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


def time_solo(config, args) -> benchmark.Timing:
  """One trial's own step, as a solo run trains it (on one device: a trial of a pack has one)."""
  model, adversary = models.build_autoencoder(config), models.build_adversary(config)
  keys = train.run_keys(config)
  mesh = parallel.make_mesh(jax.local_devices()[:1])
  state = parallel.replicate(train.create_train_state(config, keys['init'], STEPS_PER_EPOCH), mesh)
  images = jax.device_put(_images(config, 1, 0)[0], parallel.batch_sharded(mesh))
  step = parallel.jit_on_mesh(
      train.make_train_step(config, model, adversary, STEPS_PER_EPOCH, keys['train']), mesh
  )
  return _timed(step, (state, images), config.train.batch_size, args)


def time_pack(configs, args) -> benchmark.Timing:
  config = configs[0]
  model, adversary = models.build_autoencoder(config), models.build_adversary(config)
  mesh = packed.trial_mesh(len(configs))
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(packed.TRIAL_AXIS))
  states = packed.stack(
      [train.create_train_state(c, train.run_keys(c)['init'], STEPS_PER_EPOCH) for c in configs]
  )
  arguments = jax.device_put(
      (
          states,
          _images(config, len(configs), 0),
          packed.step_numbers(configs),
          np.stack([np.asarray(train.run_keys(c)['train']) for c in configs]),
          np.ones(len(configs), bool),
      ),
      split,
  )
  step = packed.jit_packed(packed.make_packed_step(config, model, adversary, STEPS_PER_EPOCH), mesh)
  return _timed(step, arguments, len(configs) * config.train.batch_size, args)


def _timed(step, arguments, images_per_step: int, args) -> benchmark.Timing:
  start = time.perf_counter()
  compiled = step.lower(*arguments).compile()
  compile_s = time.perf_counter() - start
  state, rest = arguments[0], arguments[1:]
  holder = [state]

  def run_steps(n):
    state = holder[0]
    for _ in range(n):
      state, metrics = compiled(state, *rest)
    jax.block_until_ready((state, metrics))
    holder[0] = state

  timing = benchmark.time_steps(
      run_steps, 0, images_per_step, args.repeats, 0, args.max_seconds, None
  )
  timing.compile_s = compile_s
  return timing


def format_table(rows: List[dict]) -> str:
  """Per-trial images/s: a trial's images over the time all K take (one after another, each
  waits for the others: its solo rate / K); the speed-up is the one over the other."""
  lines = [
      '| width | K | packed: img/s per trial | one after another: img/s per trial | speed-up '
      '| compile packed / solo (s) |',
      '|---|---|---|---|---|---|',
  ]
  for r in rows:
    lines.append(
        f"| 1/{r['width']} | {r['pack']} | {r['packed_img_per_s']:.0f} | "
        f"{r['sequential_img_per_s']:.0f} | "
        f"{r['packed_img_per_s'] / r['sequential_img_per_s']:.2f}x | "
        f"{r['packed_compile_s']:.1f} / {r['solo_compile_s']:.1f} |"
    )
  return '\n'.join(lines) + '\n'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.packing', description=__doc__.split('\n\n')[0]
  )
  parser.add_argument(
      '--widths', default='32,8', help='N of 1/N of the paper width, comma-separated'
  )
  parser.add_argument('--packs', default='1,4,16', help='pack sizes K, comma-separated')
  parser.add_argument('--objective', default='mmd', choices=sorted(benchmark.OBJECTIVES))
  parser.add_argument('--batch_size', type=int, default=100, help="each trial's batch")
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--max_seconds', type=float, default=30.0, help='timing per row, at most')
  parser.add_argument('--out', default=None, help='also write the rows and the machine as JSON')
  args = parser.parse_args(argv)
  try:
    args.widths = [int(w) for w in args.widths.split(',')]
    args.packs = [int(k) for k in args.packs.split(',')]
  except ValueError:
    parser.error('--widths and --packs are comma-separated integers, e.g. --packs=1,4,16')
  if min(args.widths + args.packs) < 1 or args.batch_size < 1 or args.repeats < 1:
    parser.error('--widths, --packs, --batch_size and --repeats must be >= 1')
  return args


def main(argv: Optional[List[str]] = None, out=None) -> dict:
  args = parse_args(argv)
  out = out or sys.stdout
  device = jax.local_devices()[0]
  print(
      f'{device.platform} ({device.device_kind}), {jax.local_device_count()} devices, '
      f'{platform.processor() or platform.machine()}; JAX {jax.__version__}; objective '
      f'{args.objective}, batch {args.batch_size} per trial',
      file=out,
      flush=True,
  )
  rows = []
  for width in args.widths:
    config = benchmark.model_config(f'mnist_w{width}', args.objective, args.batch_size)
    solo = time_solo(config, args)
    for pack in args.packs:
      timing = time_pack(_trial_configs(config, pack), args)
      rows.append(
          {
              'width': width,
              'pack': pack,
              'packed_img_per_s': timing.img_per_s / pack,
              'sequential_img_per_s': solo.img_per_s / pack,
              'packed_step_s': timing.step_s,
              'solo_step_s': solo.step_s,
              'packed_compile_s': timing.compile_s,
              'solo_compile_s': solo.compile_s,
          }
      )
      print(format_table(rows[-1:]).splitlines()[-1], file=out, flush=True)
  table = format_table(rows)
  print('\n' + table, file=out, end='')
  results = {
      'command': 'python -m benchmarks.packing '
      + ' '.join(argv if argv is not None else sys.argv[1:]),
      'device': f'{device.platform} {device.device_kind}',
      'devices': jax.local_device_count(),
      'processor': platform.processor() or platform.machine(),
      'jax': jax.__version__,
      'objective': args.objective,
      'batch_size': args.batch_size,
      'rows': rows,
  }
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(results, f, indent=1)
  return results


if __name__ == '__main__':
  main()
