"""Compile a run's train step for TPUs or GPUs this machine does not have, and say what it costs.

    python -m wae_jax.accelerators.aot --config=configs/celeba.py:wae_gan --topology=v5e:2x2
    python -m wae_jax.accelerators.aot --config=configs/celeba.py:wae_mmd --topology=v5e:16x16 \\
        --config.train.batch_size=1024
    python -m wae_jax.accelerators.aot --config=configs/celeba.py:vae --topology=h100:2x8
    python -m wae_jax.accelerators.aot --config=configs/celeba.py:wae_mmd --topology=h100:8 \\
        --pack=16   # 16 trials of a sweep trained together, 2 per chip

The step is the training loop's own (`train.make_train_step` jitted by `parallel.jit_on_mesh`:
state replicated and donated, batch split over every chip), built from the same config and
overrides as `wae_jax.main`, and compiled by XLA for the target: libtpu compiles for a TPU
topology (`v4`, `v5e`, `v5p`, `v6e`, with libtpu's shapes: `v5e:2x2`, `v5p:2x2x2`,
`v5e:16x16` for 64 hosts), JAX's CUDA plugin for GPUs whose spec ships in `gpu_specs/`
(`h100:8` for one host of 8, `h100:2x8` for two). Nothing runs on the target and this
process uses none of the local accelerators.

Printed per chip: the state (parameters and optimizer state), XLA's buffer assignment
(arguments, outputs, the donated part, temporaries, code) and its total against the chip's
HBM; the model FLOPs per step (`wae_jax.accelerators.flops`, counted from the
architecture) beside XLA's estimate and bytes accessed (TPU only: the GPU compiler reports
none); the collectives in the compiled program; and a roofline: the step takes at least
max(FLOPs / peak FLOP/s, bytes / HBM bandwidth). That is a lower bound from published chip
figures (`wae_jax.accelerators.hardware`), not a measurement: it ignores the collectives'
time, kernel launch and idle time, and XLA's bytes are an estimate. A config whose buffers
exceed the chip's HBM is an error (exit status 2) that says by how much and what to change.
"""

import dataclasses
import math
import os
import re
import time
from typing import Dict, List, Optional, Tuple

import jax
import numpy as np

from wae_jax import checkpoints
from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import files
from wae_jax import models
from wae_jax import packed
from wae_jax import parallel
from wae_jax import train
from wae_jax.accelerators import flops as model_flops
from wae_jax.accelerators import hardware

COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all', 'collective-permute')
_DTYPE_BYTES = {
    'pred': 1,
    's8': 1,
    'u8': 1,
    'bf16': 2,
    'f16': 2,
    's16': 2,
    'u16': 2,
    'f32': 4,
    's32': 4,
    'u32': 4,
    'f64': 8,
    's64': 8,
    'u64': 8,
}


class TopologyError(errors.WaeError, ValueError):
  """A --topology that names no known chip or shape."""


class DoesNotFitError(errors.WaeError, RuntimeError):
  """The step's buffers exceed the target chip's HBM."""


@dataclasses.dataclass(frozen=True)
class Target:
  chip: hardware.Chip
  devices: Tuple  # compile-only devices of the topology, every host's

  @property
  def num_hosts(self) -> int:
    return len({d.process_index for d in self.devices})


_ALLOWED_TOPOLOGIES = (
    f'TPUs {", ".join(hardware.TPU_NAMES)} with libtpu\'s shapes of two or three chip counts '
    f'(e.g. v5e:2x2, v5p:2x2x2, v5e:16x16), or GPUs {", ".join(hardware.gpu_names())} as '
    '<gpus> or <hosts>x<gpus per host> (e.g. h100:8, h100:2x8), every count a whole number >= 1'
)


def _topology_error(topology: str, why: str) -> TopologyError:
  return TopologyError(f'--topology={topology!r}: {why}; allowed: {_ALLOWED_TOPOLOGIES}')


def _first_line(error: Exception) -> str:
  """A compiler's error without the source-location trace that may follow it."""
  return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _shape_counts(shape: str) -> Optional[List[int]]:
  """The counts of a shape ('2x8' -> [2, 8]), or None unless each is a whole number >= 1
  (libtpu dies of a zero, the CUDA plugin blames a missing client)."""
  counts = shape.split('x')
  if not all(re.fullmatch(r'\d+', count) and int(count) > 0 for count in counts):
    return None
  return [int(count) for count in counts]


def target(topology: str) -> Target:
  """Compile-only devices for `topology` ('<chip>:<shape>'); no such hardware is needed."""
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top

  name, _, shape = topology.partition(':')
  chip = hardware.chip_named(name)
  if chip is None:
    raise _topology_error(topology, f'{name!r} is not a chip wae_jax compiles for')
  if not shape:
    raise _topology_error(topology, f'no shape: give one as {name}:<shape>')
  counts = _shape_counts(shape)
  if chip.platform == 'tpu':
    if counts is None or len(counts) not in (2, 3):
      raise _topology_error(topology, f'{shape!r} is not a TPU shape')
    # Only compiling: let this process load libtpu beside another that holds it (a training
    # run on a TPU VM, a second compile).
    os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
    try:
      desc = topologies.get_topology_desc(topology_name=f'{chip.name}:{shape}', platform='tpu')
    except ModuleNotFoundError as e:
      raise TopologyError(
          f'--topology={topology}: compiling for TPUs needs libtpu: ' 'pip install -e ".[tpu]"'
      ) from e
    except Exception as e:  # libtpu's own words for a shape it does not know
      raise _topology_error(topology, f'libtpu refused it ({_first_line(e)})') from e
    return Target(chip, tuple(desc.devices))
  if chip.gpu_spec is None:
    raise _topology_error(topology, f'no GPU spec for {name!r} ships with wae_jax')
  if counts is None or len(counts) > 2:
    raise _topology_error(topology, f'{shape!r} is not a GPU shape')
  hosts, per_host = ([1] + counts)[-2:]
  # Without a GPU the CUDA plugin would give up at cuInit(); it only compiles here.
  os.environ.setdefault('JAX_SKIP_CUDA_CONSTRAINTS_CHECK', '1')
  try:
    desc = topologies.get_topology_desc(
        platform='cuda',
        topology_name=chip.name,
        topology=f'1x{hosts}x{per_host}',
        target_config=chip.gpu_spec.read_text(),
    )
  except NotImplementedError as e:  # no topology factory for 'cuda': the plugin is missing
    raise TopologyError(
        f"--topology={topology}: compiling for GPUs needs JAX's CUDA plugin: "
        'pip install -e ".[cuda12]"'
    ) from e
  except Exception as e:  # the plugin's own words for a shape it refuses
    raise _topology_error(topology, f"JAX's CUDA plugin refused it ({_first_line(e)})") from e
  return Target(chip, tuple(desc.devices))


@dataclasses.dataclass
class Collective:
  kind: str  # one of COLLECTIVES
  bytes: int  # size of its result, per chip
  shapes: str  # e.g. 'f32[64,800]'


def parse_collectives(hlo_text: str) -> List[Collective]:
  """The collective ops of a compiled (SPMD, per-chip) HLO module, with their result sizes.

  Asynchronous pairs count once, at their `-start`, whose tuple holds the operands and then
  the results; only the results are counted.
  """
  found = []
  pattern = re.compile(r'=\s*(.*?)\s+(' + '|'.join(COLLECTIVES) + r')(-start)?\(')
  for line in hlo_text.splitlines():
    match = pattern.search(line)
    if not match:
      continue
    shape_text, kind, start = match.groups()
    arrays = re.findall(r'\b(' + '|'.join(_DTYPE_BYTES) + r')\[([\d,]*)\]', shape_text)
    if start:
      arrays = [a for a in arrays if a[1]]  # drop the scalar sync flags
      arrays = arrays[len(arrays) // 2 :]
    size = sum(
        _DTYPE_BYTES[dtype] * math.prod(int(d) for d in dims.split(',') if d)
        for dtype, dims in arrays
    )
    found.append(Collective(kind, size, ', '.join(f'{t}[{d}]' for t, d in arrays)))
  return found


@dataclasses.dataclass
class Report:
  """Per-chip figures of one compiled step (bytes, FLOPs, seconds)."""

  topology: str
  chip: str
  device_kind: str
  num_chips: int
  num_hosts: int
  objective: str
  arch: str
  dtype: str
  conv_impl: str
  batch_size: int  # per trial
  donated: bool
  compile_s: float
  params_bytes: int  # parameters and BatchNorm statistics (all nets)
  optimizer_bytes: int  # Adam's moments (auto-encoder and adversary)
  argument_bytes: int
  output_bytes: int
  alias_bytes: int  # outputs written into donated arguments
  temp_bytes: int
  code_bytes: int
  hbm_bytes: Optional[int]
  model_flops: float  # per chip and step, counted from the architecture
  xla_flops: Optional[float]
  xla_bytes_accessed: Optional[float]
  collective_ops: List[Collective]  # in the order of the compiled program
  peak_flops: Optional[float]
  hbm_bytes_per_s: Optional[float]
  pack: int = 1  # trials trained together (wae_jax.packed), each on one chip; 1: one trial
  # on every chip, its batch split
  idle_chips: int = 0  # the topology's chips a pack leaves idle (it uses as many as divide it)

  @property
  def trials_per_chip(self) -> float:
    return self.pack / self.num_chips

  @property
  def collectives(self) -> Dict[str, Dict[str, int]]:
    """kind -> {'ops': how many, 'bytes': their results' total}."""
    summary: Dict[str, Dict[str, int]] = {}
    for op in self.collective_ops:
      entry = summary.setdefault(op.kind, {'ops': 0, 'bytes': 0})
      entry['ops'] += 1
      entry['bytes'] += op.bytes
    return summary

  @property
  def total_bytes(self) -> int:
    """What the step holds at once: arguments, outputs not written over them, scratch, code."""
    return (
        self.argument_bytes
        + self.output_bytes
        - self.alias_bytes
        + self.temp_bytes
        + self.code_bytes
    )

  @property
  def traffic_bytes(self) -> Tuple[int, str]:
    """HBM bytes a step moves: XLA's estimate where given, else arguments read + outputs
    written once (less than the truth)."""
    if self.xla_bytes_accessed:
      return int(self.xla_bytes_accessed), "XLA's bytes accessed"
    return self.argument_bytes + self.output_bytes, 'arguments read + outputs written once'

  def roofline(self) -> Optional[Dict[str, float]]:
    """Lower bounds on the step time (s) from peak FLOP/s and HBM bandwidth; None if unknown."""
    if not self.peak_flops or not self.hbm_bytes_per_s:
      return None
    compute_s = self.model_flops / self.peak_flops
    memory_s = self.traffic_bytes[0] / self.hbm_bytes_per_s
    step_s = max(compute_s, memory_s)
    return dict(
        compute_s=compute_s,
        memory_s=memory_s,
        step_s=step_s,
        img_per_s=self.batch_size * self.pack / step_s,
        # A trial's step in chip-seconds: what a sweep's chip-hours add up.
        chip_s_per_trial_step=step_s * self.num_chips / self.pack,
        bound='compute' if compute_s >= memory_s else 'memory',
    )

  def fit_error(self) -> Optional[str]:
    """Why the step does not fit in the chip's HBM and what to change, or None."""
    if not self.hbm_bytes or self.total_bytes <= self.hbm_bytes:
      return None
    return _step_too_big(self)

  def to_json(self) -> dict:
    return dict(
        dataclasses.asdict(self),
        collectives=self.collectives,
        total_bytes=self.total_bytes,
        traffic_bytes=self.traffic_bytes[0],
        roofline=self.roofline(),
    )


def _over_hbm(what: str, need: int, have: int, chip: str) -> str:
  return (
      f'{what} {_gib(need)} per chip, more than the {_gib(have)} of HBM of a {chip} '
      f'(over by {_gib(need - have)})'
  )


def _state_too_big(need: int, have: int, chip: str, width: float) -> str:
  """The state alone exceeds HBM: only a narrower model or a larger chip helps, since every
  chip holds all of it (data parallel: the state is replicated, only the batch is split)."""
  larger = ', '.join(f'{name}: {_gib(hbm)}' for name, hbm in hardware.chips_with_hbm(need))
  return (
      f'{_over_hbm("the parameters and optimizer state need", need, have, chip)} before any '
      'activation; every chip holds all of them (the state is replicated, only the batch is '
      'split), so a smaller batch, bfloat16 (activations only) or more chips do not shrink '
      f'them: lower config.model.width ({width:g}; the state grows about with its square), '
      f'or use a chip with more HBM ({larger or "none that wae_jax knows has enough"})'
  )


def _step_too_big(r: 'Report') -> str:
  """The state fits, the step does not: what grows with the batch per chip is the rest."""
  state = r.params_bytes + r.optimizer_bytes
  per_chip = r.batch_size // r.num_chips
  remedies = []
  if per_chip > 1:
    remedies.append(
        f'lower config.train.batch_size ({r.batch_size}, {per_chip} per chip) or '
        'spread it over more chips'
    )
  if r.dtype != 'bfloat16':
    remedies.append('use config.model.dtype=bfloat16')
  remedies += ['lower config.model.width', 'use a chip with more HBM']
  return (
      f'{_over_hbm("the compiled step needs", r.total_bytes, r.hbm_bytes, r.chip)}; the '
      f'parameters and optimizer state are {_gib(state)} of it, the rest '
      f'({_gib(r.total_bytes - state)}: the batch, its activations, gradients and scratch) '
      f'shrinks with the batch per chip: {", ".join(remedies[:-1])}, or {remedies[-1]}'
  )


def _gib(n: float) -> str:
  if abs(n) < hardware.GiB:
    return f'{n / 2**20:.1f} MiB'
  return f'{n / hardware.GiB:.2f} GiB'


def analyse(config, topology: str, donate: bool = True, pack: int = 1) -> Report:
  """Compiles the config's train step for `topology` and reads off its per-chip figures:
  one trial with its batch split over the chips, or (`pack` > 1) a pack of trials
  (`wae_jax.packed`) split over them, `pack` / chips whole trials on each.

  Raises DoesNotFitError before compiling when the state alone exceeds the chip's HBM.
  """
  wae_config.validate(config)
  tgt = target(topology)
  batch_size = config.train.batch_size
  if pack > 1:  # as training places a pack: on as many chips as divide it, whole trials each
    mesh = packed.trial_mesh(pack, tgt.devices)
  else:
    mesh = parallel.make_mesh(tgt.devices)
    parallel.check_batch_size(batch_size, mesh)
  num_chips = mesh.size
  platform = tgt.devices[0].platform
  model = models.build_autoencoder(config, platform)
  adversary = models.build_adversary(config)
  steps_per_epoch = 1000  # only the learning-rate schedule's boundaries depend on it
  state = jax.eval_shape(
      lambda: train.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch)
  )
  per_chip = max(1, pack // num_chips)  # states on each chip
  params_bytes = per_chip * checkpoints.state_bytes(
      (state.params, state.batch_stats, state.adversary_params)
  )
  optimizer_bytes = per_chip * checkpoints.state_bytes((state.opt_state, state.adversary_opt_state))
  sizes = dict(topology=topology, chip=tgt.chip.name, num_chips=num_chips, batch_size=batch_size)
  hbm = tgt.chip.hbm_bytes
  if hbm and params_bytes + optimizer_bytes > hbm:
    need = params_bytes + optimizer_bytes
    raise DoesNotFitError(
        f'{_over_hbm(f"the states of {per_chip} trials need", need, hbm, tgt.chip.name)}: '
        'lower --pack (trials per chip) or config.model.width, or use more chips'
        if pack > 1
        else _state_too_big(need, hbm, tgt.chip.name, config.model.width)
    )

  def spec(x, sharding, lead=()):
    return jax.ShapeDtypeStruct(lead + x.shape, x.dtype, sharding=sharding)

  images = jax.ShapeDtypeStruct((batch_size,) + tuple(config.data.image_shape), np.float32)
  if pack > 1:
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(packed.TRIAL_AXIS))
    numbers = packed.step_numbers([config])
    key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
    arguments = jax.tree_util.tree_map(
        lambda x: spec(x, split, (pack,)),
        (state, images, {k: v[0] for k, v in numbers.items()}, key, np.bool_(True)),
    )
    step = packed.jit_packed(
        packed.make_packed_step(config, model, adversary, steps_per_epoch), mesh
    )
  else:
    arguments = (
        jax.tree_util.tree_map(lambda x: spec(x, parallel.replicated(mesh)), state),
        spec(images, parallel.batch_sharded(mesh)),
    )
    step = parallel.jit_on_mesh(
        train.make_train_step(config, model, adversary, steps_per_epoch, jax.random.PRNGKey(0)),
        mesh,
        donate=donate,
    )
  start = time.perf_counter()
  try:
    compiled = step.lower(*arguments).compile()
  except jax.errors.JaxRuntimeError as e:
    if 'RESOURCE_EXHAUSTED' not in str(e):
      raise
    raise DoesNotFitError(  # libtpu refuses what cannot fit in HBM while it compiles
        f'XLA cannot fit the compiled step in a {tgt.chip.name}: {_first_line(e)} Lower '
        + ('--pack (trials per chip), ' if pack > 1 else 'config.train.batch_size, ')
        + 'config.model.width, or use more chips or a chip with more HBM'
    ) from e
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  dtype = config.model.dtype
  return Report(
      **sizes,
      device_kind=tgt.devices[0].device_kind,
      num_hosts=tgt.num_hosts,
      objective=config.penalty.name,
      arch=config.model.arch,
      dtype=dtype,
      conv_impl=models.resolve_conv_impl(config.model.conv_impl, platform),
      donated=donate or pack > 1,
      compile_s=compile_s,
      params_bytes=params_bytes,
      optimizer_bytes=optimizer_bytes,
      argument_bytes=memory.argument_size_in_bytes,
      output_bytes=memory.output_size_in_bytes,
      alias_bytes=memory.alias_size_in_bytes,
      temp_bytes=memory.temp_size_in_bytes,
      code_bytes=memory.generated_code_size_in_bytes,
      hbm_bytes=hbm,
      model_flops=model_flops.train_step_flops(config, batch_size) * max(pack, 1) / num_chips,
      xla_flops=cost.get('flops'),
      xla_bytes_accessed=cost.get('bytes accessed'),
      collective_ops=parse_collectives(compiled.as_text()),
      peak_flops=tgt.chip.peak(dtype),
      hbm_bytes_per_s=tgt.chip.hbm_bytes_per_s,
      pack=pack,
      idle_chips=len(tgt.devices) - num_chips,
  )


def _num(x: Optional[float], unit: str = '') -> str:
  if x is None:
    return 'not reported'
  for scale, prefix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
    if abs(x) >= scale:
      return f'{x / scale:.3g} {prefix}{unit}'
  return f'{x:.3g} {unit}'.strip()


def format_report(r: Report) -> str:
  """The per-chip table that `python -m wae_jax.accelerators.aot` prints."""
  hbm = (
      f' of {_gib(r.hbm_bytes)} HBM ({100 * r.total_bytes / r.hbm_bytes:.0f}%)'
      if r.hbm_bytes
      else ''
  )
  traffic, traffic_what = r.traffic_bytes
  rows = [
      ('parameters + BatchNorm statistics', _gib(r.params_bytes)),
      ('optimizer state (Adam moments)', _gib(r.optimizer_bytes)),
      ('arguments (state, batch)', _gib(r.argument_bytes)),
      ('outputs (state, metrics)', _gib(r.output_bytes)),
      ('  written into donated arguments', _gib(r.alias_bytes)),
      ('temporaries', _gib(r.temp_bytes)),
      ('generated code', _gib(r.code_bytes)),
      ('total', _gib(r.total_bytes) + hbm),
      ('model FLOPs per step (counted)', _num(r.model_flops, 'FLOP')),
      ("XLA's FLOPs estimate", _num(r.xla_flops, 'FLOP')),
      ("XLA's bytes accessed", _num(r.xla_bytes_accessed, 'B')),
  ]
  for kind in COLLECTIVES:
    if kind in r.collectives:
      c = r.collectives[kind]
      rows.append((f'{kind}', f'{c["ops"]:.0f} ops, {_num(c["bytes"], "B")}'))
  if not r.collectives:
    rows.append(('collectives', 'none'))
  width = max(len(name) for name, _ in rows)
  what = (
      f'a pack of {r.pack} trials, batch {r.batch_size} each ({r.trials_per_chip:g} trials per '
      'chip' + (f'; {r.idle_chips} chips idle' if r.idle_chips else '') + ')'
      if r.pack > 1
      else f'batch {r.batch_size} ({r.batch_size // r.num_chips} per chip)'
  )
  lines = [
      f'{r.objective} ({r.arch}, {r.dtype}, conv_impl {r.conv_impl}), {what} on '
      f'{r.topology}: {r.num_chips} x '
      f'{r.device_kind}, {r.num_hosts} host{"s" if r.num_hosts > 1 else ""}; state '
      f'{"donated" if r.donated else "not donated"}; compiled in {r.compile_s:.1f} s',
      'per chip:',
  ]
  lines += [f'  {name:<{width}}  {value}' for name, value in rows]
  bound = r.roofline()
  if bound is None:
    lines.append(f'roofline: no published peak for {r.device_kind} ({r.dtype})')
  else:
    lines.append(
        f'roofline (a lower bound, not a measurement): compute {bound["compute_s"] * 1e3:.3g} ms '
        f'(model FLOPs / {_num(r.peak_flops, "FLOP/s")} {r.dtype} peak), memory '
        f'{bound["memory_s"] * 1e3:.3g} ms ({traffic_what}, {_num(traffic, "B")} / '
        f'{_num(r.hbm_bytes_per_s, "B/s")}): step >= {bound["step_s"] * 1e3:.3g} ms, '
        f'<= {bound["img_per_s"]:,.0f} img/s, {bound["bound"]}-bound; a trial\'s step >= '
        f'{bound["chip_s_per_trial_step"] * 1e3:.3g} chip-ms'
    )
  return '\n'.join(lines)


def run(
    config, topology: str, donate: bool = True, json_path: Optional[str] = None, pack: int = 1
) -> None:
  """The command: prints the report (and writes its JSON); a config that does not compile for
  or fit on the target raises a WaeError, which errors.run prints in one line (exit status 2)
  after the report, if there is one."""
  report = analyse(config, topology, donate=donate, pack=pack)
  print(format_report(report), flush=True)
  if json_path:
    files.write_json(json_path, report.to_json())
  error = report.fit_error()
  if error:
    raise DoesNotFitError(error)


def _main():
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  # Defined here, not at import: wae_jax.main defines --config too.
  config = config_flags.DEFINE_config_file(
      'config', None, 'Config file and overrides, as for wae_jax.main.', lock_config=True
  )
  topology = flags.DEFINE_string(
      'topology',
      None,
      'Target: a TPU topology (v5e:2x2, v5p:2x2x2, v5e:16x16, ...) or '
      'GPUs (h100:8, h100:2x8, a100:4, ...).',
  )
  donate = flags.DEFINE_bool('donate', True, 'Donate the state to the step, as training does.')
  json_path = flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')
  pack = flags.DEFINE_integer(
      'pack',
      1,
      'Compile a pack of this many trials (wae_jax.packed: one vmapped step, whole trials on '
      'each chip); 1: one trial, its batch split over the chips.',
      lower_bound=1,
  )
  flags.mark_flags_as_required(['config', 'topology'])

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    # Compile on the host's CPU: a TPU VM's chips or a GPU host's GPUs may be busy training.
    jax.config.update('jax_platforms', 'cpu')
    run(config.value, topology.value, donate.value, json_path.value, pack.value)

  errors.run(main)


if __name__ == '__main__':
  _main()
