"""wae_jax.accelerators.aot: the train step compiled for TPU and GPU topologies on this CPU-only
machine."""

import dataclasses
import subprocess
import sys

import jax
import pytest

from tests.helpers import REPO
from tests.helpers import error_line
from tests.helpers import shallow_config
from wae_jax import checkpoints
from wae_jax import train
from wae_jax.accelerators import aot

TPU, GPU = 'v5e:2x2', 'h100:2'
BATCH = 8
_REPORTS = {}


def small_config(objective: str, arch: str):
  config = shallow_config(objective)  # the DCGAN: two stride-2 layers each way
  config.data.dir = None
  config.train.batch_size = BATCH
  config.model.arch = arch
  config.model.resnet_stage_blocks = (1, 1)  # two stages compile in 2/3 of four's time
  config.model.resnet_widths = (4, 4)
  return config


def report(objective: str, arch: str, topology: str, donate: bool = True) -> aot.Report:
  """Compiled once per test session: several tests read the same compile."""
  key = (objective, arch, topology, donate)
  if key not in _REPORTS:
    _REPORTS[key] = aot.analyse(small_config(objective, arch), topology, donate=donate)
  return _REPORTS[key]


# Every pair of (objective, architecture, topology) values, in 6 compiles instead of all 12
# combinations: each objective with each architecture, and each of them on both topologies.
@pytest.mark.parametrize(
    'objective,arch,topology',
    [
        ('wae_mmd', 'dcgan', TPU),
        ('wae_mmd', 'resnet50v2', GPU),
        ('wae_gan', 'dcgan', TPU),
        ('wae_gan', 'resnet50v2', GPU),
        ('vae', 'dcgan', GPU),
        ('vae', 'resnet50v2', TPU),
    ],
)
def test_every_objective_and_architecture_compiles(objective, arch, topology):
  r = report(objective, arch, topology)
  assert r.num_chips == (4 if topology == TPU else 2)
  assert r.objective == {'wae_mmd': 'mmd', 'wae_gan': 'gan', 'vae': 'vae'}[objective]
  assert r.conv_impl == 'xla'  # model.conv_impl='auto' on an accelerator
  # The state is donated: the new state is written over the old one.
  assert r.alias_bytes >= r.params_bytes + r.optimizer_bytes
  assert r.argument_bytes >= r.params_bytes + r.optimizer_bytes
  assert 0 < r.total_bytes < r.hbm_bytes
  assert r.fit_error() is None
  assert r.model_flops > 0 and r.peak_flops and r.hbm_bytes_per_s
  bound = r.roofline()
  assert bound['step_s'] == max(bound['compute_s'], bound['memory_s']) > 0
  assert bound['img_per_s'] == pytest.approx(BATCH / bound['step_s'])
  assert 'all-reduce' in r.collectives  # gradients and BatchNorm statistics
  if topology == TPU:  # only libtpu estimates FLOPs and bytes
    assert r.xla_flops > 0 and r.xla_bytes_accessed > 0
  text = aot.format_report(r)
  assert 'roofline (a lower bound, not a measurement)' in text and 'HBM' in text


@pytest.mark.parametrize('topology', [TPU, GPU])
def test_data_parallel_mmd_gathers_codes_not_images_and_reduces_gradients_once(topology):
  config = small_config('wae_mmd', 'dcgan')
  r = report('wae_mmd', 'dcgan', topology)
  state = jax.eval_shape(lambda: train.create_train_state(config, jax.random.PRNGKey(0), 10))
  gradient_bytes = checkpoints.state_bytes(state.params)
  codes_bytes = BATCH * config.model.latent_dim * 4
  images_per_chip_bytes = BATCH // r.num_chips * 28 * 28 * 4
  ops = r.collective_ops
  moved = [op for op in ops if op.kind not in ('all-reduce', 'reduce-scatter')]
  assert moved, 'the MMD needs every code: something must gather them'
  # The MMD compares all codes with all prior samples: the (global batch x d_z) codes are
  # gathered (with at most one number per code beside them, e.g. its squared norm), never
  # the images.
  assert max(op.bytes for op in moved) <= codes_bytes + BATCH * 4 < images_per_chip_bytes
  # Every gradient is reduced over the chips once (with BatchNorm's small statistics).
  reduced = sum(op.bytes for op in ops if op.kind in ('all-reduce', 'reduce-scatter'))
  assert gradient_bytes <= reduced < 1.3 * gradient_bytes


def test_donating_the_state_saves_a_copy_of_it():
  donated = report('wae_gan', 'dcgan', TPU)
  kept = report('wae_gan', 'dcgan', TPU, donate=False)
  assert kept.alias_bytes == 0
  state = donated.params_bytes + donated.optimizer_bytes

  def held(r):  # the step's inputs and outputs; XLA's scratch varies with its scheduling
    return r.argument_bytes + r.output_bytes - r.alias_bytes

  assert held(kept) - held(donated) >= state
  assert not kept.donated and 'not donated' in aot.format_report(kept)


def test_a_step_larger_than_hbm_is_refused_after_its_table_with_the_batch_remedies(
    monkeypatch, capsys
):
  r = report('wae_gan', 'dcgan', TPU)
  small_chip = dataclasses.replace(r, hbm_bytes=r.total_bytes - 2**20)
  error = small_chip.fit_error()
  assert 'per chip, more than the' in error and 'over by 1.0 MiB' in error
  state = aot._gib(r.params_bytes + r.optimizer_bytes)  # pylint: disable=protected-access
  assert f'the parameters and optimizer state are {state} of it' in error
  assert 'lower config.train.batch_size (8, 2 per chip) or spread it over more chips' in error
  assert 'config.model.dtype=bfloat16' in error
  one_per_chip = dataclasses.replace(small_chip, batch_size=4, dtype='bfloat16')
  assert 'batch_size' not in one_per_chip.fit_error()  # nothing left to lower
  assert 'bfloat16' not in one_per_chip.fit_error()  # already
  monkeypatch.setattr(aot, 'analyse', lambda *args, **kwargs: small_chip)
  with pytest.raises(aot.DoesNotFitError, match='over by 1.0 MiB'):
    aot.run(small_config('wae_gan', 'dcgan'), TPU)
  assert 'roofline (a lower bound, not a measurement)' in capsys.readouterr().out


def _aot_command(*args, config='configs/mnist.py:wae_mmd,small'):
  return subprocess.run(
      [sys.executable, '-m', 'wae_jax.accelerators.aot', f'--config={config}', *args],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
  )


def test_the_command_refuses_an_oversized_model_before_compiling_and_says_only_width_helps():
  # CelebA's nets at 16 times the paper's width: 10 GB of parameters, 30 GB with Adam's
  # moments, on 16 GiB chips. The state alone is checked before any compile; every chip
  # holds all of it, so neither the batch, bfloat16 nor more chips would help.
  result = _aot_command(
      '--config.model.width=16',
      '--config.train.batch_size=4096',
      '--topology=v5e:2x2',
      config='configs/celeba.py:wae_mmd',
  )
  line = error_line(result)
  assert line.startswith(
      'error: the parameters and optimizer state need 99.39 GiB per chip, '
      'more than the 16.00 GiB of HBM of a v5e (over by 83.39 GiB)'
  )
  assert 'lower config.model.width (16;' in line and 'h200: 131.32 GiB' in line
  assert 'lower config.train.batch_size' not in line and 'use config.model.dtype' not in line
  assert 'do not shrink them' in line and result.stdout == ''


def test_the_command_prints_the_table():
  args = ['--config.model.width=0.03125', '--config.train.batch_size=8', '--topology=h100:1x2']
  result = _aot_command(*args)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'on h100:1x2: 2 x NVIDIA H100 80GB HBM3, 1 host; state donated' in result.stdout
  assert "XLA's bytes accessed               not reported" in result.stdout


@pytest.mark.parametrize(
    'topology, why',
    [
        ('h100:0', "'0' is not a GPU shape"),  # once blamed a missing CUDA plugin
        ('v5e:0x2', "'0x2' is not a TPU shape"),  # once killed libtpu (SIGFPE)
        ('v9z:2x2', "'v9z' is not a chip wae_jax compiles for"),
    ],
)
def test_the_command_refuses_a_bad_topology_in_one_line_naming_the_allowed_form(topology, why):
  line = error_line(_aot_command(f'--topology={topology}'))
  assert line.startswith(
      f'error: --topology={topology!r}: {why}; allowed: TPUs v4, v5e, v5p, '
      "v6e with libtpu's shapes of two or three chip counts"
  )
  assert 'every count a whole number >= 1' in line


@pytest.mark.parametrize(
    'topology, why',
    [
        ('h100:-1', 'not a GPU shape'),
        ('h100:abc', 'not a GPU shape'),
        ('h100:2x2x2', 'not a GPU shape'),
        ('h100:2x0', 'not a GPU shape'),
        ('v5e:2x', 'not a TPU shape'),
        ('v5e:4', 'not a TPU shape'),
        ('v5e:0', 'not a TPU shape'),
        ('nonsense', 'not a chip'),
        ('h100', 'no shape: give one as h100:<shape>'),
        ('h100_pcie:2', "no GPU spec for 'h100_pcie'"),
        ('v5e:3x7', 'libtpu refused it'),
    ],
)
def test_every_malformed_topology_is_refused_before_the_compilers_see_it(topology, why):
  with pytest.raises(aot.TopologyError, match=f'--topology={topology!r}: .*{why}.*; allowed: '):
    aot.target(topology)


def test_topologies_name_their_chips_hosts_and_devices():
  pod = aot.target('v5e:4x4')
  assert len(pod.devices) == 16 and pod.num_hosts == 4 and pod.chip.name == 'v5e'
  gpus = aot.target('h100:2x8')
  assert len(gpus.devices) == 16 and gpus.num_hosts == 2 and gpus.chip.hbm_bytes == 80 * 2**30
  assert aot.target('a100:4').chip.peak('bfloat16') == 312e12
  assert aot.target('h100:01').chip.name == 'h100' and len(aot.target('v5e:1x1').devices) == 1


def test_collectives_are_read_from_sync_and_async_hlo():
  hlo = '\n'.join(
      [
          '  %all-reduce.1 = (f32[16]{0:T(128)}, f32[4,8]{1,0}) all-reduce(%a, %b), channel_id=1',
          '  %all-reduce-start = ((f32[100]{0}), f32[100]{0}) all-reduce-start(%c), channel_id=2',
          '  %all-reduce-done = f32[100]{0} all-reduce-done(%all-reduce-start)',
          '  %all-gather-start = (bf16[2,8]{1,0}, bf16[8,8]{1,0}, u32[], u32[]) all-gather-start(%d)',  # noqa: E501
          '  %ag = f32[8,64]{1,0} all-gather(%e), dimensions={0}',
          '  %add = f32[8] add(%f, %g)',
      ]
  )
  ops = aot.parse_collectives(hlo)
  assert [(op.kind, op.bytes) for op in ops] == [
      ('all-reduce', 16 * 4 + 32 * 4),
      ('all-reduce', 400),
      ('all-gather', 128),
      ('all-gather', 8 * 64 * 4),
  ]
