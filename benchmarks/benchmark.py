"""Train-step throughput of the JAX models, beside an idiomatic PyTorch implementation.

    python -m benchmarks.benchmark                       # default models and objectives
    python -m benchmarks.benchmark --models=mnist_paper --objectives=mmd --max_seconds=120
    python -m benchmarks.benchmark --models=mnist_small --parts   # where the step's time goes
    python -m benchmarks.benchmark --penalties --penalty_batches=100,1000,10000  # penalties alone

For each model and objective: images/s of one train step (compile excluded, median over
`--repeats` timed trials of `--steps_per_trial` steps each, after a warm-up step), the
model FLOP/s that throughput achieves, the JAX compile time, and the same for the PyTorch
reference (`benchmarks.torch_reference`, same architecture and objective) with the ratio
JAX / PyTorch (> 1: JAX is faster). On a GPU or TPU it also reports model FLOP
utilisation (MFU) against the peak of the devices it ran on.

The step is the one training runs: `wae_jax.train.make_train_step` jitted by
`parallel.jit_on_mesh` over every local device (the batch split, the state replicated), on a
fixed batch of random images; the input pipeline is not timed. The model FLOPs are counted
from the architecture (`wae_jax.accelerators.flops.train_step_flops`), so both frameworks
get the same count whatever they actually execute.

Models (`--models`, comma-separated): mnist_small (configs/mnist.py size=small: the paper's
nets at 1/8 width), mnist_paper and celeba_paper (the paper's sizes), and <dataset>_w<N>
for the paper's nets at 1/N width (adversary at 2/N, as mnist_small), e.g. mnist_w4. A
`_resnet` suffix swaps in the ResNet50-v2 nets at that width (`model.arch='resnet50v2'`),
e.g. celeba_paper_resnet. The PyTorch reference has the DCGAN nets and the paper's objectives
(mmd, gan, vae) only (`torch_reference.PENALTIES`): other rows are JAX-only, with a note.

`--penalties` times each latent penalty alone instead (JAX only): its value and gradient with
respect to a batch of codes, jitted, at each batch size of `--penalty_batches`, for codes and
prior samples from N(0, I) with the settings of the MNIST configs (d_z = 8).
"""

import argparse
import contextlib
import dataclasses
import functools
import gc
import importlib
import json
import os
import pathlib
import platform
import re
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

# The CUDA builds of PyTorch (the only ones PyPI has for Python 3.12) bring triton, whose
# libraries crash the process when they load after TensorFlow's, which clu's metric writers
# import with wae_jax.train. So triton, if installed, is loaded first.
with contextlib.suppress(ImportError):
  importlib.import_module('triton')

import jax
import jax.numpy as jnp

from wae_jax import config as wae_config
from wae_jax import models
from wae_jax import parallel
from wae_jax import penalties
from wae_jax import train
from wae_jax.accelerators import flops as model_flops
from wae_jax.accelerators import hardware

CONFIGS_DIR = pathlib.Path(__file__).resolve().parents[1] / 'configs'  # beside benchmarks/
DEFAULT_MODELS = ('mnist_small', 'mnist_paper', 'celeba_paper')
OBJECTIVES = {penalty: objective for objective, penalty in wae_config.OBJECTIVES.items()}
TORCH_MISSING = (
    'PyTorch is not installed, so only the JAX columns are measured; '
    'install it with `pip install -e ".[bench]"` (torch==2.13.0, a CPU build).'
)
# A trial should last about this long when --steps_per_trial is not given (auto).
TARGET_TRIAL_SECONDS = 1.0
# --penalties: the latent penalties (config.penalty.name) of the configs' objectives that act on
# the codes alone (the KL reads the encoder's means and variances), and the configs their
# settings are from.
PENALTIES = tuple(name for name in OBJECTIVES if not penalties.get(name).needs_gaussian_encoder)
PENALTY_MODEL = 'mnist_paper'
DEFAULT_PENALTY_BATCHES = (100, 1000, 10000)

# --------------------------------------------------------------------- configs ---


def model_config(
    model: str, objective: str, batch_size: int, dtype: str = 'float32', conv_impl: str = 'auto'
):
  """The config of a benchmark model name (see the module doc) and objective."""
  match = re.fullmatch(r'(mnist|celeba)_(paper|small|w(\d+))(_resnet)?', model)
  if not match or (match.group(1) == 'celeba' and match.group(2) == 'small'):
    raise ValueError(
        f'unknown model {model!r}: expected mnist_small, mnist_paper, '
        "celeba_paper or <mnist|celeba>_w<N> (1/N of the paper's width), "
        'each optionally followed by _resnet (ResNet50-v2 nets)'
    )
  if objective not in OBJECTIVES:
    raise ValueError(f'unknown objective {objective!r}: expected one of {", ".join(OBJECTIVES)}')
  dataset, size = match.group(1), match.group(2)
  arg = f'objective={OBJECTIVES[objective]}' + (',size=small' if size == 'small' else '')
  config = wae_config.load_config_file(f'{CONFIGS_DIR / dataset}.py:{arg}')
  if match.group(3):
    n = int(match.group(3))
    config.model.width = 1.0 / n
    config.model.adversary_width = min(1.0, 2.0 / n)
  if match.group(4):
    config.model.arch = 'resnet50v2'
  config.train.batch_size = batch_size
  config.model.conv_impl = conv_impl
  if dtype != 'float32':
    if 'dtype' not in config.model:
      raise ValueError(f'--dtype={dtype}: this version of the config has no model.dtype')
    config.model.dtype = dtype
  wae_config.validate(config)
  return config


# --------------------------------------------------------------------- timing ---


@dataclasses.dataclass
class Timing:
  img_per_s: Optional[float] = None
  gflop_per_s: Optional[float] = None
  step_s: Optional[float] = None  # median seconds per step
  trials_s: List[float] = dataclasses.field(default_factory=list)  # seconds per trial
  steps_per_trial: int = 0
  compile_s: Optional[float] = None  # JAX only: lower + compile
  approximate: bool = False  # from the one warm-up step only
  mfu: Optional[float] = None
  note: str = ''


def time_steps(
    run_steps: Callable[[int], None],
    flops: int,
    batch_size: int,
    repeats: int,
    steps_per_trial: int,
    max_seconds: float,
    predicted_step_s: Optional[float],
) -> Timing:
  """Warm-up, then `repeats` trials of `steps_per_trial` steps, within `max_seconds`.

  `run_steps(n)` runs n steps and returns when they are done.
  """
  t = Timing()
  if predicted_step_s is not None and predicted_step_s > max_seconds:
    t.note = (
        f'not timed: about {predicted_step_s:.0f} s per step predicted (model FLOPs at '
        f'the fastest rate measured so far) > --max_seconds={max_seconds:g}'
    )
    return t
  start = time.perf_counter()
  run_steps(1)
  step_s = time.perf_counter() - start
  if step_s > max_seconds:
    t.approximate, t.step_s, t.steps_per_trial = True, step_s, 1
    t.note = (
        f'the warm-up step alone took {step_s:.1f} s > --max_seconds={max_seconds:g}: '
        'its time is reported (~), not a median'
    )
  else:
    if step_s < 0.2 * TARGET_TRIAL_SECONDS:  # a second warm-up step: cheap, steadier
      start = time.perf_counter()
      run_steps(1)
      step_s = time.perf_counter() - start
    steps = steps_per_trial or max(1, min(100, round(TARGET_TRIAL_SECONDS / step_s)))
    trials = max(1, min(repeats, int(max_seconds // (steps * step_s))))
    if trials < repeats:
      t.note = f'{trials} of {repeats} trials, to stay within --max_seconds={max_seconds:g}'
    for _ in range(trials):
      start = time.perf_counter()
      run_steps(steps)
      t.trials_s.append(time.perf_counter() - start)
    t.steps_per_trial = steps
    t.step_s = statistics.median(t.trials_s) / steps
  t.img_per_s = batch_size / t.step_s
  t.gflop_per_s = flops / t.step_s / 1e9
  return t


def time_jax(
    config,
    flops: int,
    batch_size: int,
    repeats: int,
    steps_per_trial: int,
    max_seconds: float,
    predicted_step_s: Optional[float] = None,
    seed: int = 0,
) -> Timing:
  """Times the training loop's step; `flops` is its model FLOPs (`flops.train_step_flops`)."""
  steps_per_epoch = 1000
  init_rng, step_rng, data_rng = jax.random.split(jax.random.PRNGKey(seed), 3)
  model, adversary = models.build_autoencoder(config), models.build_adversary(config)
  mesh = parallel.make_mesh()
  parallel.check_batch_size(batch_size, mesh)
  state = parallel.replicate(train.create_train_state(config, init_rng, steps_per_epoch), mesh)
  lo, hi = config.data.pixel_range
  images = jax.device_put(
      jax.random.uniform(
          data_rng, (batch_size,) + tuple(config.data.image_shape), jnp.float32, lo, hi
      ),
      parallel.batch_sharded(mesh),
  )
  step = parallel.jit_on_mesh(
      train.make_train_step(config, model, adversary, steps_per_epoch, step_rng), mesh
  )
  start = time.perf_counter()
  compiled = step.lower(state, images).compile()
  compile_s = time.perf_counter() - start
  holder = [state]

  def run_steps(n):
    state = holder[0]
    for _ in range(n):
      state, metrics = compiled(state, images)
    jax.block_until_ready((state, metrics))
    holder[0] = state

  t = time_steps(
      run_steps, flops, batch_size, repeats, steps_per_trial, max_seconds, predicted_step_s
  )
  t.compile_s = compile_s
  return t


def time_torch(
    torch,
    config,
    flops: int,
    batch_size: int,
    repeats: int,
    steps_per_trial: int,
    max_seconds: float,
    device: str,
    predicted_step_s: Optional[float] = None,
    seed: int = 0,
    channels_last: bool = False,
) -> Timing:
  """The same for the PyTorch reference's step."""
  torch.manual_seed(seed)
  trainer = _torch_reference().Trainer(config, steps_per_epoch=1000, device=device)
  height, width, channels = config.data.image_shape
  lo, hi = config.data.pixel_range
  images = lo + (hi - lo) * torch.rand(batch_size, channels, height, width, device=device)
  if channels_last:
    trainer.model.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
  sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)

  def run_steps(n):  # config.model.dtype='bfloat16': the Trainer autocasts the model
    for _ in range(n):
      trainer.train_step(images)
    sync()

  t = time_steps(
      run_steps, flops, batch_size, repeats, steps_per_trial, max_seconds, predicted_step_s
  )
  return t


PARTS = ('encoder fwd', 'encoder fwd+bwd', 'decoder fwd', 'decoder fwd+bwd')


def time_parts_jax(
    config, batch_size: int, repeats: int, max_seconds: float, seed: int = 0
) -> Dict[str, Optional[float]]:
  """Milliseconds of the encoder and decoder alone, forward and forward+backward (train mode,
  BatchNorm on batch statistics): where a step's time goes."""
  model = models.build_autoencoder(config)
  init_rng, data_rng, code_rng = jax.random.split(jax.random.PRNGKey(seed), 3)
  state = train.create_train_state(config, init_rng, steps_per_epoch=1)
  images = jax.random.uniform(data_rng, (batch_size,) + tuple(config.data.image_shape))
  codes = jax.random.normal(code_rng, (batch_size, config.model.latent_dim))

  def apply(params, inputs, method):
    out, _ = model.apply(
        {'params': params, 'batch_stats': state.batch_stats},
        inputs,
        train=True,
        method=method,
        mutable=['batch_stats'],
    )
    return jnp.sum(out[0] if method == model.encode else out)

  fns = {}
  for name, inputs, method in (('encoder', images, model.encode), ('decoder', codes, model.decode)):
    loss = lambda p, x=inputs, m=method: apply(p, x, m)
    fns[f'{name} fwd'], fns[f'{name} fwd+bwd'] = jax.jit(loss), jax.jit(jax.grad(loss))
  out = {}
  for name in PARTS:
    fn = fns[name]
    t = time_steps(
        lambda n, fn=fn: jax.block_until_ready([fn(state.params) for _ in range(n)]),
        1,
        batch_size,
        repeats,
        0,
        max_seconds,
        None,
    )
    out[name] = None if t.step_s is None else 1e3 * t.step_s
  return out


def time_parts_torch(
    torch, config, batch_size: int, repeats: int, max_seconds: float, device: str, seed: int = 0
) -> Dict[str, Optional[float]]:
  """The same parts of the PyTorch reference."""
  torch.manual_seed(seed)
  model = _torch_reference().Trainer(config, steps_per_epoch=1, device=device).model
  height, width, channels = config.data.image_shape
  inputs = {
      'encoder': torch.rand(batch_size, channels, height, width, device=device),
      'decoder': torch.randn(batch_size, config.model.latent_dim, device=device),
  }
  sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)

  def call(name):
    out = getattr(model, name)(inputs[name])
    return (out[0] if name == 'encoder' else out).sum()

  def run(name, backward, n):
    for _ in range(n):
      if backward:
        model.zero_grad(set_to_none=True)
        call(name).backward()
      else:
        with torch.no_grad():
          call(name)
    sync()

  out = {}
  for part in PARTS:
    name, kind = part.split()
    t = time_steps(
        lambda n, name=name, b=kind == 'fwd+bwd': run(name, b, n),
        1,
        batch_size,
        repeats,
        0,
        max_seconds,
        None,
    )
    out[part] = None if t.step_s is None else 1e3 * t.step_s
  return out


def format_parts(
    model: str,
    objective: str,
    parts: Dict[str, Dict[str, Optional[float]]],
    step_ms: Dict[str, Optional[float]],
) -> str:
  """A markdown table: ms per part and per whole step, each framework, and their ratio."""
  names = list(parts)
  lines = [
      f'{model}/{objective}, ms per call (median):',
      '',
      '| part | '
      + ' | '.join(f'{n} ms' for n in names)
      + (' | jax / torch time |' if len(names) == 2 else ' |'),
      '|---|' + '---:|' * (len(names) + (len(names) == 2)),
  ]
  for part in PARTS + ('train step',):
    values = [step_ms[n] if part == 'train step' else parts[n][part] for n in names]
    cells = [_fmt(v) for v in values]
    if len(names) == 2:
      cells.append(_fmt(values[0] / values[1], 2) if None not in values else '-')
    lines.append(f'| {part} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


# ----------------------------------------------------------- penalties alone ---


def penalty_step(name: str, config) -> Callable:
  """step(codes, z_prior, rng, adversary_params) -> (value, gradients): the latent penalty
  `name` as a train step computes it (`wae_jax.train.latent_penalty`), with its gradient with
  respect to the codes. For a penalty with an adversary (gan), the step also trains it
  (simultaneous update): its loss and gradient with respect to its parameters are part of the
  penalty's cost."""
  adversary = models.build_adversary(config)
  logits = functools.partial(train.adversary_logits, config, adversary)
  needs_adversary = penalties.get(name).needs_adversary

  def loss(codes, z_prior, rng, params):
    code_logits = logits(params, codes) if needs_adversary else None
    return train.latent_penalty(config, codes, z_prior, rng, code_logits=code_logits)

  def step(codes, z_prior, rng, params):
    out = jax.value_and_grad(loss)(codes, z_prior, rng, params)
    if needs_adversary:
      adversary_loss = lambda q: penalties.adversary_loss(logits(q, z_prior), logits(q, codes))
      out = out, jax.value_and_grad(adversary_loss)(params)
    return out

  return step


def time_penalty(
    name: str,
    batch_size: int,
    latent_dim: int,
    repeats: int,
    steps_per_trial: int,
    max_seconds: float,
    seed: int = 0,
) -> Timing:
  """Times penalty_step(name) on `batch_size` codes and as many prior samples; `step_s` is
  the median seconds per call (compile excluded, in `compile_s`)."""
  config = model_config(PENALTY_MODEL, name, batch_size)
  config.model.latent_dim = latent_dim
  codes_rng, prior_rng, init_rng, rng = jax.random.split(jax.random.PRNGKey(seed), 4)
  shape = (batch_size, config.model.latent_dim)
  codes = jax.random.normal(codes_rng, shape)
  z_prior = penalties.prior_samples(prior_rng, shape, config.model.prior_variance)
  params = {}
  if penalties.get(name).needs_adversary:
    params = models.build_adversary(config).init(init_rng, codes)['params']
  args = (codes, z_prior, rng, params)
  start = time.perf_counter()
  compiled = jax.jit(penalty_step(name, config)).lower(*args).compile()
  compile_s = time.perf_counter() - start
  t = time_steps(
      lambda n: jax.block_until_ready([compiled(*args) for _ in range(n)]),
      1,
      batch_size,
      repeats,
      steps_per_trial,
      max_seconds,
      None,
  )
  t.compile_s = compile_s
  return t


def format_penalties(rows: List[dict], batches: List[int]) -> str:
  """Markdown table: ms per call of each penalty at each batch size ('~': the warm-up call
  alone, '-': not timed)."""
  by_key = {(r['penalty'], r['batch_size']): r for r in rows}
  names = list(dict.fromkeys(r['penalty'] for r in rows))
  lines = [
      '| penalty | ' + ' | '.join(f'batch {b:,} ms' for b in batches) + ' |',
      '|---|' + '---:|' * len(batches),
  ]
  for name in names:
    cells = []
    for b in batches:
      r = by_key.get((name, b))
      cells.append('-' if r is None else _fmt(r['ms'], 2, r['approximate']))
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


# ---------------------------------------------------------------------- output ---


def _fmt(value, digits=1, approximate=False):
  if value is None:
    return '-'
  text = f'{value:,.{digits}f}'
  return '~' + text if approximate else text


def _mfu(timing) -> str:
  return '-' if timing['mfu'] is None else f'{100 * timing["mfu"]:.1f}%'


def format_table(rows: List[dict], accelerator: bool, with_torch: bool) -> str:
  """Markdown table; '~' marks a time from the one warm-up step, '-' one not measured."""
  head = ['model', 'objective', 'GFLOP/img', 'jax img/s', 'jax GFLOP/s']
  if accelerator:
    head.append('jax MFU')
  head.append('compile s')
  if with_torch:
    head += ['torch img/s', 'torch GFLOP/s'] + (['torch MFU'] if accelerator else [])
    head.append('jax/torch')
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in rows:
    j, tt = r['jax'], r.get('torch')
    cells = [
        r['model'],
        r['objective'],
        _fmt(r['train_gflop_per_image'], 3),
        _fmt(j['img_per_s'], 1, j['approximate']),
        _fmt(j['gflop_per_s'], 1, j['approximate']),
    ]
    if accelerator:
      cells.append(_mfu(j))
    cells.append(_fmt(j['compile_s'], 1))
    if with_torch and tt is None:
      cells += ['-'] * (3 + accelerator)
    elif with_torch:
      cells += [
          _fmt(tt['img_per_s'], 1, tt['approximate']),
          _fmt(tt['gflop_per_s'], 1, tt['approximate']),
      ]
      if accelerator:
        cells.append(_mfu(tt))
      cells.append(_fmt(r['ratio'], 2, j['approximate'] or tt['approximate']))
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def device_info(torch, torch_threads: Optional[int], torch_device: Optional[str]) -> dict:
  devices = jax.devices()
  info = dict(
      jax_version=jax.__version__,
      jax_backend=jax.default_backend(),
      jax_devices=[str(d) for d in devices],
      device_kind=devices[0].device_kind,
      cpu_count=os.cpu_count(),
      platform=platform.platform(),
      processor=platform.processor(),
      python=sys.version.split()[0],
      load_average=_load_average(),
      environment={k: os.environ[k] for k in _ENV_VARS if k in os.environ},
  )
  if torch is not None:
    info.update(
        torch_version=torch.__version__, torch_threads=torch_threads, torch_device=torch_device
    )
  return info


# Environment variables that change how either framework runs; recorded with the results.
_ENV_VARS = (
    'XLA_FLAGS',
    'JAX_PLATFORMS',
    'OMP_NUM_THREADS',
    'OMP_WAIT_POLICY',
    'MKL_NUM_THREADS',
    'CUDA_VISIBLE_DEVICES',
)


def _load_average() -> Optional[float]:
  try:
    return os.getloadavg()[0]
  except OSError:
    return None


def busy_warning(load: Optional[float], cpu_count: Optional[int]) -> str:
  """A warning when other processes keep the CPUs busy ('' when they do not)."""
  if load is None or not cpu_count or load < 0.5 * cpu_count:
    return ''
  return (
      f'warning: the 1-minute load average is {load:.1f} on {cpu_count} CPUs before the '
      'benchmark starts: other processes are running, so timings will be low and noisy. '
      'PyTorch suffers most: its OpenMP threads spin-wait for each other, and one that '
      'is descheduled stalls the rest (OMP_WAIT_POLICY=passive softens that, but is not '
      "PyTorch's default). Measure on a quiet machine."
  )


# ------------------------------------------------------------------------ main ---


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
      prog='python -m benchmarks.benchmark', description=__doc__.split('\n\n')[0]
  )
  p.add_argument(
      '--models',
      default=','.join(DEFAULT_MODELS),
      help='comma-separated: mnist_small, mnist_paper, celeba_paper, '
      '<mnist|celeba>_w<N>, each optionally with a _resnet suffix '
      '(default: %(default)s)',
  )
  p.add_argument(
      '--objectives',
      default=','.join(OBJECTIVES),
      help=f'comma-separated subset of {", ".join(OBJECTIVES)}; the PyTorch reference '
      'times mmd, gan and vae, the others are JAX-only (default: %(default)s)',
  )
  p.add_argument('--batch_size', type=int, default=100)
  p.add_argument('--repeats', type=int, default=5, help='timed trials; the median is reported')
  p.add_argument(
      '--steps_per_trial',
      type=int,
      default=0,
      help=f'steps per timed trial (0: about {TARGET_TRIAL_SECONDS:g} s worth)',
  )
  p.add_argument(
      '--torch',
      dest='torch',
      action='store_true',
      default=True,
      help='also time the PyTorch reference (default)',
  )
  p.add_argument('--notorch', '--no-torch', dest='torch', action='store_false')
  p.add_argument(
      '--torch_threads',
      type=int,
      default=os.cpu_count(),
      help='torch.set_num_threads (default: os.cpu_count() = %(default)s)',
  )
  p.add_argument(
      '--torch_channels_last',
      action='store_true',
      help='PyTorch in channels_last memory format (default: NCHW-contiguous)',
  )
  p.add_argument(
      '--max_seconds',
      type=float,
      default=30.0,
      help='time budget of one measurement (one framework, model and objective; '
      'compile and warm-up excluded): fewer trials if need be; a step predicted '
      'or measured slower than this is not timed (default: %(default)s)',
  )
  p.add_argument(
      '--dtype',
      default='float32',
      choices=wae_config.DTYPES,
      help='activations dtype, config.model.dtype (PyTorch: autocast); the MFU '
      'peak is that of this dtype (default: %(default)s)',
  )
  p.add_argument(
      '--conv_impl',
      default='auto',
      choices=wae_config.CONV_IMPLS,
      help="JAX's convolutions, config.model.conv_impl: auto (this backend's "
      'default, models.AUTO_CONV_IMPL), phase (wae_jax.models.layers) or xla '
      "(flax's own, the plain Flax baseline) (default: %(default)s)",
  )
  p.add_argument(
      '--parts',
      action='store_true',
      help='also time the encoder and decoder alone, forward and forward+backward, '
      'for each framework: where the step time goes',
  )
  p.add_argument(
      '--penalties',
      nargs='?',
      const=','.join(PENALTIES),
      default='',
      help='instead of train steps, time the latent penalties alone (JAX only): '
      f'a comma-separated subset of {", ".join(PENALTIES)} (bare: all of them)',
  )
  p.add_argument(
      '--penalty_batches',
      default=','.join(map(str, DEFAULT_PENALTY_BATCHES)),
      help='--penalties: comma-separated batch sizes (default: %(default)s)',
  )
  p.add_argument(
      '--latent_dim',
      type=int,
      default=None,
      help="--penalties: d_z of the codes (default: the MNIST configs', 8)",
  )
  p.add_argument('--json_out', default='', help='also write the results as JSON here')
  args = p.parse_args(argv)
  args.models = [m.strip() for m in args.models.split(',') if m.strip()]
  args.objectives = [o.strip() for o in args.objectives.split(',') if o.strip()]
  if args.batch_size < 2 or args.repeats < 1 or args.steps_per_trial < 0:
    p.error('--batch_size must be >= 2, --repeats >= 1, --steps_per_trial >= 0')
  args.penalties = [n.strip() for n in args.penalties.split(',') if n.strip()]
  for name in args.penalties:
    if name not in PENALTIES:
      p.error(f'unknown penalty {name!r}: expected one of {", ".join(PENALTIES)}')
  try:
    args.penalty_batches = [int(b) for b in args.penalty_batches.split(',') if b.strip()]
  except ValueError:
    p.error(f'--penalty_batches must be comma-separated integers, got {args.penalty_batches!r}')
  if not args.penalty_batches or min(args.penalty_batches) < 2:
    p.error('--penalty_batches must be >= 2 (the unbiased MMD needs 2 codes)')
  if args.latent_dim is not None and args.latent_dim < 1:
    p.error('--latent_dim must be >= 1')
  if args.penalties:  # no models to check
    return args
  for model in args.models:
    for objective in args.objectives:
      try:
        model_config(model, objective, args.batch_size, args.dtype, args.conv_impl)
      except ValueError as e:
        p.error(str(e))
  return args


def _torch_reference():
  """benchmarks.torch_reference, imported once torch is known to be installed."""
  from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top

  return torch_reference


def _import_torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return torch


def main(argv: Optional[List[str]] = None, out=None) -> dict:
  """Runs the benchmark; prints the table to `out` (stdout) and returns the results."""
  args = parse_args(argv)
  out = out or sys.stdout

  def say(*lines):
    print(*lines, sep='\n', file=out, flush=True)

  torch = _import_torch() if args.torch and not args.penalties else None
  backend = jax.default_backend()
  accelerator = backend in ('gpu', 'tpu', 'cuda', 'rocm')
  torch_device = None
  old_threads = None
  if torch is not None:
    torch_device = 'cuda' if backend in ('gpu', 'cuda') and torch.cuda.is_available() else 'cpu'
    old_threads = torch.get_num_threads()
    torch.set_num_threads(args.torch_threads)
    if torch_device == 'cuda':
      torch.backends.cudnn.benchmark = True
  info = device_info(torch, args.torch_threads if torch else None, torch_device)
  peak = hardware.device_peak_flops(info['device_kind'], args.dtype) if accelerator else None
  say(
      f'JAX {info["jax_version"]}, backend {backend}: {", ".join(info["jax_devices"])} '
      f'({info["device_kind"]}); {info["cpu_count"]} CPUs; {info["processor"] or info["platform"]}'
      + ''.join(f'; {k}={v}' for k, v in info['environment'].items())
  )
  warning = busy_warning(info['load_average'], info['cpu_count'])
  if warning:
    say(warning)
  if args.penalties:
    return main_penalties(args, info, warning, say)
  if args.torch and torch is None:
    say(TORCH_MISSING)
  elif torch is not None:
    say(
        f'PyTorch {torch.__version__} on {torch_device}, {args.torch_threads} threads'
        + (', channels_last' if args.torch_channels_last else '')
    )
  if accelerator:
    say(
        'MFU peak: '
        + (
            f'{peak / 1e12:g} TFLOP/s ({args.dtype}, dense)'
            if peak
            else f'unknown for {info["device_kind"]!r}'
        )
    )
  say(
      f'batch {args.batch_size}, {args.dtype}, '
      f'JAX convs: {args.conv_impl} ({models.resolve_conv_impl(args.conv_impl)}), '
      f'median of {args.repeats} trials, '
      f'--max_seconds={args.max_seconds:g} per measurement',
      '',
  )

  rows, notes = [], []
  best_rate = {}  # framework -> the highest FLOP/s measured so far, to predict step times
  try:
    for model in args.models:
      for objective in args.objectives:
        config = model_config(model, objective, args.batch_size, args.dtype, args.conv_impl)
        flops = model_flops.train_step_flops(config, args.batch_size)
        row = dict(
            model=model,
            objective=objective,
            dtype=args.dtype,
            batch_size=args.batch_size,
            train_flop_per_step=flops,
            train_gflop_per_image=flops / args.batch_size / 1e9,
        )
        frameworks = [
            (
                'jax',
                lambda p: time_jax(
                    config,
                    flops,
                    args.batch_size,
                    args.repeats,
                    args.steps_per_trial,
                    args.max_seconds,
                    p,
                ),
            )
        ]
        not_in_torch = _torch_reference().unsupported(config) if torch is not None else ''
        with_torch = torch is not None and not not_in_torch
        if not_in_torch:
          notes.append(f'{model}/{objective} torch: not timed, {not_in_torch}')
        if with_torch:
          frameworks.append(
              (
                  'torch',
                  lambda p: time_torch(
                      torch,
                      config,
                      flops,
                      args.batch_size,
                      args.repeats,
                      args.steps_per_trial,
                      args.max_seconds,
                      torch_device,
                      p,
                      channels_last=args.torch_channels_last,
                  ),
              )
          )
        for name, measure in frameworks:
          predicted = flops / best_rate[name] if name in best_rate else None
          timing = measure(predicted)
          gc.collect()  # the measured model's buffers, before the next one is built
          if timing.step_s is not None and not timing.approximate:
            best_rate[name] = max(best_rate.get(name, 0.0), flops / timing.step_s)
          on_accelerator = name == 'jax' or torch_device == 'cuda'
          if peak and on_accelerator and timing.step_s:
            # JAX runs on every local device, the PyTorch reference on one.
            devices = jax.local_device_count() if name == 'jax' else 1
            timing.mfu = flops / timing.step_s / (peak * devices)
          if timing.note:
            notes.append(f'{model}/{objective} {name}: {timing.note}')
          row[name] = dataclasses.asdict(timing)
        if 'torch' in row and row['jax']['img_per_s'] and row['torch']['img_per_s']:
          row['ratio'] = row['jax']['img_per_s'] / row['torch']['img_per_s']
        else:
          row['ratio'] = None
        rows.append(row)
        say(
            f'{model}/{objective}: jax {_fmt(row["jax"]["img_per_s"])} img/s'
            + (f', torch {_fmt(row["torch"]["img_per_s"])} img/s' if 'torch' in row else '')
        )
        if args.parts:
          row['parts'] = {
              'jax': time_parts_jax(config, args.batch_size, args.repeats, args.max_seconds)
          }
          if with_torch:
            row['parts']['torch'] = time_parts_torch(
                torch, config, args.batch_size, args.repeats, args.max_seconds, torch_device
            )
          step_ms = {
              n: None if row[n]['step_s'] is None else 1e3 * row[n]['step_s'] for n in row['parts']
          }
          row['parts_table'] = format_parts(model, objective, row['parts'], step_ms)
          say('', row['parts_table'], '')
  finally:
    if old_threads is not None:
      torch.set_num_threads(old_threads)

  table = format_table(rows, accelerator, torch is not None)
  say('', table)
  if warning:
    notes.append(warning)
  if notes:
    say('', 'Notes:', *[f'- {n}' for n in notes])
  if args.torch and torch is None:
    say('', TORCH_MISSING)
  results = dict(
      device=info,
      settings=dict(
          models=args.models,
          objectives=args.objectives,
          batch_size=args.batch_size,
          repeats=args.repeats,
          steps_per_trial=args.steps_per_trial,
          max_seconds=args.max_seconds,
          dtype=args.dtype,
          conv_impl=args.conv_impl,
          torch=torch is not None,
          torch_threads=args.torch_threads if torch else None,
          torch_channels_last=args.torch_channels_last,
          peak_flops=peak,
      ),
      rows=rows,
      notes=notes,
      table=table,
  )
  _write_json(args.json_out, results, say)
  return results


def main_penalties(args, info: dict, warning: str, say) -> dict:
  """--penalties: times each penalty at each batch size; prints the table, returns results."""
  latent_dim = args.latent_dim or model_config(PENALTY_MODEL, 'mmd', 2).model.latent_dim
  say(
      f'latent penalties alone: value and gradient with respect to the codes, jitted, '
      f'd_z = {latent_dim}, codes and prior samples from N(0, I), median of {args.repeats} '
      f'trials, --max_seconds={args.max_seconds:g} per measurement',
      '',
  )
  rows, notes = [], []
  for name in args.penalties:
    for batch in args.penalty_batches:
      t = time_penalty(
          name, batch, latent_dim, args.repeats, args.steps_per_trial, args.max_seconds
      )
      gc.collect()  # the large batches' buffers, before the next measurement
      ms = None if t.step_s is None else 1e3 * t.step_s
      rows.append(
          dict(
              penalty=name,
              batch_size=batch,
              latent_dim=latent_dim,
              ms=ms,
              compile_s=t.compile_s,
              approximate=t.approximate,
              trials_s=t.trials_s,
              steps_per_trial=t.steps_per_trial,
              note=t.note,
          )
      )
      if t.note:
        notes.append(f'{name} batch {batch}: {t.note}')
      say(
          f'{name} batch {batch}: {_fmt(ms, 2, t.approximate)} ms per call '
          f'(compile {t.compile_s:.1f} s)'
      )
  table = format_penalties(rows, args.penalty_batches)
  say('', table)
  if warning:
    notes.append(warning)
  if notes:
    say('', 'Notes:', *[f'- {n}' for n in notes])
  results = dict(
      device=info,
      settings=dict(
          penalties=args.penalties,
          penalty_batches=args.penalty_batches,
          latent_dim=latent_dim,
          penalty_model=PENALTY_MODEL,
          repeats=args.repeats,
          steps_per_trial=args.steps_per_trial,
          max_seconds=args.max_seconds,
      ),
      rows=rows,
      notes=notes,
      table=table,
  )
  _write_json(args.json_out, results, say)
  return results


def _write_json(path: str, results: dict, say):
  if path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    say(f'Wrote {path}')


if __name__ == '__main__':
  main()
