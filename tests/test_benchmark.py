"""python -m benchmarks.benchmark: the table and JSON it writes, and its model FLOP count."""

import io
import json
import types

import pytest

from benchmarks import benchmark
from wae_jax.accelerators import flops
from wae_jax.accelerators import hardware

# The paper's MNIST nets at 1/32 width, by hand: encoder 1 -> 4 -> 8 -> 16 -> 32 channels
# (28 -> 14 -> 7 -> 4 -> 2 pixels, 4x4 kernels), a dense layer 2*2*32 -> 8; decoder 8 ->
# 7*7*32, transposed convs 32 -> 16 (7 -> 14), 16 -> 8 (14 -> 28), 8 -> 1 (stride 1).
ENCODER_MACS = (
    14 * 14 * 16 * 1 * 4
    + 7 * 7 * 16 * 4 * 8
    + 4 * 4 * 16 * 8 * 16
    + 2 * 2 * 16 * 16 * 32
    + 2 * 2 * 32 * 8
)
DECODER_MACS = 8 * 7 * 7 * 32 + 7 * 7 * 16 * 32 * 16 + 14 * 14 * 16 * 16 * 8 + 28 * 28 * 16 * 8
# Its adversary (width 2/32 of 512): 8 -> 32 -> 32 -> 32 -> 32 -> 1.
ADVERSARY_MACS = 8 * 32 + 3 * 32 * 32 + 32


def test_flops_match_a_hand_count():
  assert ENCODER_MACS == 104_192 and DECODER_MACS == 915_712  # the arithmetic above
  mmd = benchmark.model_config('mnist_w32', 'mmd', batch_size=8)
  assert flops.forward_macs(mmd) == dict(
      encoder=ENCODER_MACS, decoder=DECODER_MACS, adversary=ADVERSARY_MACS
  )
  # Training = 3 x forward; 2 FLOPs per multiply-accumulate.
  assert flops.train_step_flops(mmd, 8) == 3 * 2 * 8 * (ENCODER_MACS + DECODER_MACS)
  gan = benchmark.model_config('mnist_w32', 'gan', batch_size=8)
  assert flops.train_step_flops(gan, 8) == 3 * 2 * 8 * (
      ENCODER_MACS + DECODER_MACS + 3 * ADVERSARY_MACS
  )
  vae = benchmark.model_config('mnist_w32', 'vae', batch_size=8)  # two dense heads
  assert flops.train_step_flops(vae, 8) == 3 * 2 * 8 * (
      ENCODER_MACS + 2 * 2 * 32 * 8 + DECODER_MACS
  )


def test_configs_are_found_beside_the_benchmarks_from_any_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = benchmark.model_config('mnist_small', 'gan', batch_size=8)
  assert (config.penalty.name, config.model.width, config.train.batch_size) == ('gan', 0.125, 8)
  assert benchmark.model_config('celeba_w8', 'vae', batch_size=4).model.width == 1 / 8


def test_paper_model_flops():
  """The paper-size nets: MNIST about 0.92 GMAC per image forward, CelebA about 3.2."""
  mnist = flops.forward_macs(benchmark.model_config('mnist_paper', 'mmd', 100))
  assert mnist['encoder'] == (
      14 * 14 * 16 * 1 * 128
      + 7 * 7 * 16 * 128 * 256
      + 4 * 4 * 16 * 256 * 512
      + 2 * 2 * 16 * 512 * 1024
      + 2 * 2 * 1024 * 8
  )
  celeba = flops.forward_macs(benchmark.model_config('celeba_paper', 'mmd', 100))
  assert celeba['decoder'] == (
      64 * 8 * 8 * 1024
      + 8 * 8 * 25 * 1024 * 512
      + 16 * 16 * 25 * 512 * 256
      + 32 * 32 * 25 * 256 * 128
      + 64 * 64 * 25 * 128 * 3
  )
  assert 0.9e9 < mnist['encoder'] + mnist['decoder'] < 0.95e9
  assert 3.1e9 < celeba['encoder'] + celeba['decoder'] < 3.3e9


def _resnet_macs_by_hand(
    image_hw, channels, latent_dim, blocks=(3, 4, 6, 3), widths=(64, 128, 256, 512)
):
  """ResNet50-v2 encoder and decoder MACs per image, from the block diagram in resnet.py."""
  stride = 2 if min(image_hw) >= 64 else 1
  sizes = [-(-image_hw[0] // stride)]
  for _ in widths[1:]:
    sizes.append(-(-sizes[-1] // 2))
  px = lambda s: s * s
  # Encoder: 3x3 stem; per block 1x1, 3x3 (stride 2 in the first block of stages 2..4),
  # 1x1 to 4x width, a 1x1 projection where the shape changes; a dense head.
  encoder, c, size = px(sizes[0]) * 9 * channels * widths[0], widths[0], sizes[0]
  for i, (n, w) in enumerate(zip(blocks, widths)):
    for j in range(n):
      encoder += px(size) * c * w + px(sizes[i]) * (9 * w * w + w * 4 * w)
      if j == 0:
        encoder += px(sizes[i]) * c * 4 * w
      c, size = 4 * w, sizes[i]
  encoder += px(sizes[-1]) * c * latent_dim
  # Decoder: dense to the last map, the stages reversed (the first block of each but the last
  # stage resizes up before its 3x3 and its projection), a 3x3 output conv at full size.
  decoder, c, size = latent_dim * px(sizes[-1]) * 4 * widths[-1], 4 * widths[-1], sizes[-1]
  for i in reversed(range(len(widths))):
    w = widths[i]
    for j in range(blocks[i]):
      decoder += px(size) * c * w + px(sizes[i]) * (9 * w * w + w * 4 * w)
      if c != 4 * w:
        decoder += px(sizes[i]) * c * 4 * w
      c, size = 4 * w, sizes[i]
  decoder += px(image_hw[0]) * 9 * c * channels
  return encoder, decoder


@pytest.mark.parametrize(
    'model,image_hw,channels,latent_dim',
    [('celeba_paper_resnet', (64, 64), 3, 64), ('mnist_w4_resnet', (28, 28), 1, 8)],
)
def test_resnet_flops_match_a_hand_count(model, image_hw, channels, latent_dim):
  config = benchmark.model_config(model, 'mmd', 100)
  assert config.model.arch == 'resnet50v2'
  widths = tuple(int(w * config.model.width) for w in (64, 128, 256, 512))
  macs = flops.forward_macs(config)
  assert (macs['encoder'], macs['decoder']) == _resnet_macs_by_hand(
      image_hw, channels, latent_dim, widths=widths
  )


def test_model_names():
  small = benchmark.model_config('mnist_small', 'gan', 100)
  w8 = benchmark.model_config('mnist_w8', 'gan', 100)
  assert (small.model.width, small.model.adversary_width) == (0.125, 0.25)
  assert (w8.model.width, w8.model.adversary_width) == (0.125, 0.25)
  assert benchmark.model_config('celeba_paper', 'vae', 100).model.gaussian_encoder
  resnet = benchmark.model_config('celeba_w16_resnet', 'mmd', 100)
  assert (resnet.model.arch, resnet.model.width) == ('resnet50v2', 1 / 16)
  for bad in ('mnist', 'celeba_small', 'mnist_w0x', 'svhn_paper', 'mnist_resnet'):
    with pytest.raises(ValueError, match='unknown model'):
      benchmark.model_config(bad, 'mmd', 100)
  with pytest.raises(SystemExit):
    benchmark.parse_args(['--objectives=wgan'])


def test_peak_table():
  assert hardware.device_peak_flops('NVIDIA H100 80GB HBM3', 'bfloat16') == 989.5e12
  assert hardware.device_peak_flops('NVIDIA H100 PCIe', 'float32') == 378e12
  assert hardware.device_peak_flops('NVIDIA H200', 'float32') == 494.5e12
  assert hardware.device_peak_flops('TPU v5 lite', 'bfloat16') == 197e12
  assert hardware.device_peak_flops('cpu', 'float32') is None


def test_main_tiny_model_with_torch(tmp_path):
  pytest.importorskip('torch')
  out, json_path = io.StringIO(), tmp_path / 'bench.json'
  results = benchmark.main(
      [
          '--models=mnist_w32',
          '--objectives=mmd',
          '--batch_size=8',
          '--repeats=1',
          '--steps_per_trial=1',
          '--max_seconds=60',
          '--parts',
          f'--json_out={json_path}',
      ],
      out=out,
  )
  assert json.loads(json_path.read_text()) == json.loads(json.dumps(results))
  (row,) = results['rows']
  assert (row['model'], row['objective'], row['batch_size']) == ('mnist_w32', 'mmd', 8)
  assert row['train_flop_per_step'] == 3 * 2 * 8 * (ENCODER_MACS + DECODER_MACS)
  for name in ('jax', 'torch'):
    timing = row[name]
    assert timing['img_per_s'] > 0 and timing['gflop_per_s'] > 0, name
    assert len(timing['trials_s']) == 1 and timing['steps_per_trial'] == 1
    assert timing['gflop_per_s'] == pytest.approx(
        row['train_flop_per_step'] / timing['step_s'] / 1e9
    )
    assert timing['img_per_s'] == pytest.approx(8 / timing['step_s'])
  assert row['jax']['compile_s'] > 0
  assert row['ratio'] == pytest.approx(row['jax']['img_per_s'] / row['torch']['img_per_s'])
  text = out.getvalue()
  assert (
      '| model | objective | GFLOP/img | jax img/s | jax GFLOP/s | compile s | torch img/s' in text
  )
  assert '| mnist_w32 | mmd |' in text
  assert results['device']['cpu_count'] >= 1 and results['device']['torch_threads'] >= 1
  # --parts: each framework's encoder and decoder alone; a backward pass costs time too.
  for name in ('jax', 'torch'):
    parts = row['parts'][name]
    assert set(parts) == set(benchmark.PARTS) and all(v > 0 for v in parts.values()), name
  assert '| part | jax ms | torch ms | jax / torch time |' in text
  assert '| train step |' in text


def test_main_penalties_alone(tmp_path):
  out, json_path = io.StringIO(), tmp_path / 'penalties.json'
  results = benchmark.main(
      [
          '--penalties',
          '--penalty_batches=8,16',
          '--repeats=1',
          '--steps_per_trial=1',
          f'--json_out={json_path}',
      ],
      out=out,
  )
  assert json.loads(json_path.read_text()) == json.loads(json.dumps(results))
  rows = results['rows']
  assert [(r['penalty'], r['batch_size']) for r in rows] == [
      (name, batch) for name in benchmark.PENALTIES for batch in (8, 16)
  ]
  for row in rows:
    assert row['ms'] > 0 and row['compile_s'] > 0 and row['latent_dim'] == 8, row
    assert row['trials_s'] and row['steps_per_trial'] == 1 and not row['approximate']
  text = out.getvalue()
  assert '| penalty | batch 8 ms | batch 16 ms |' in text
  for name in benchmark.PENALTIES:
    assert f'| {name} |' in text
  assert 'img/s' not in text


def test_penalties_arguments():
  args = benchmark.parse_args(['--penalties=swd,gan', '--penalty_batches=4', '--latent_dim=3'])
  assert (args.penalties, args.penalty_batches, args.latent_dim) == (['swd', 'gan'], [4], 3)
  assert benchmark.parse_args(['--penalties']).penalties == list(benchmark.PENALTIES)
  assert benchmark.parse_args([]).penalty_batches == [100, 1000, 10000]
  for bad in ('--penalties=wgan', '--penalty_batches=1', '--penalty_batches=10x', '--latent_dim=0'):
    with pytest.raises(SystemExit):
      benchmark.parse_args(['--penalties', bad])


def _fake_timing(*args, **kwargs):
  return benchmark.Timing(
      img_per_s=10.0, gflop_per_s=1.0, step_s=0.8, trials_s=[0.8], steps_per_trial=1, compile_s=2.0
  )


def test_main_without_torch_says_how_to_install(monkeypatch):
  monkeypatch.setattr(benchmark, '_import_torch', lambda: None)
  monkeypatch.setattr(benchmark, 'time_jax', _fake_timing)
  out = io.StringIO()
  results = benchmark.main(['--models=mnist_w32,celeba_w32', '--objectives=mmd,gan'], out=out)
  text = out.getvalue()
  assert 'pip install -e ".[bench]"' in text
  assert 'torch img/s' not in text and '| celeba_w32 | gan |' in text
  assert [(r['model'], r['objective']) for r in results['rows']] == [
      ('mnist_w32', 'mmd'),
      ('mnist_w32', 'gan'),
      ('celeba_w32', 'mmd'),
      ('celeba_w32', 'gan'),
  ]
  assert all('torch' not in r and r['ratio'] is None for r in results['rows'])


def test_resnet_rows_are_jax_only(monkeypatch):
  """The PyTorch reference has the DCGAN nets only: ResNet rows say so instead of timing it."""
  fake_torch = types.SimpleNamespace(
      __version__='2.13.0', get_num_threads=lambda: 2, set_num_threads=lambda n: None
  )
  monkeypatch.setattr(benchmark, '_import_torch', lambda: fake_torch)
  monkeypatch.setattr(benchmark, 'time_jax', _fake_timing)
  timed = []
  monkeypatch.setattr(
      benchmark,
      'time_torch',
      lambda torch, config, *a, **k: timed.append(config.model.arch) or _fake_timing(),
  )
  out = io.StringIO()
  results = benchmark.main(['--models=mnist_w32,mnist_w32_resnet', '--objectives=mmd'], out=out)
  dcgan, resnet = results['rows']
  assert timed == ['dcgan'] and dcgan['ratio'] == 1.0
  assert 'torch' not in resnet and resnet['ratio'] is None
  text = out.getvalue()
  assert '| mnist_w32_resnet | mmd | 0.014 | 10.0 | 1.0 | 2.0 | - | - | - |' in text
  assert 'mnist_w32_resnet/mmd torch: not timed' in text and 'DCGAN nets only' in text


def test_default_objectives_time_the_references_against_torch_and_the_rest_jax_only(monkeypatch):
  """The default objectives include penalties the PyTorch reference lacks (swd, sinkhorn): their
  rows are JAX-only with a note, instead of the reference training them as the VAE."""
  pytest.importorskip('torch')
  fake_torch = types.SimpleNamespace(
      __version__='2.13.0', get_num_threads=lambda: 2, set_num_threads=lambda n: None
  )
  monkeypatch.setattr(benchmark, '_import_torch', lambda: fake_torch)
  monkeypatch.setattr(benchmark, 'time_jax', _fake_timing)
  timed = []
  monkeypatch.setattr(
      benchmark,
      'time_torch',
      lambda torch, config, *a, **k: timed.append(config.penalty.name) or _fake_timing(),
  )
  out = io.StringIO()
  results = benchmark.main(['--models=mnist_w32'], out=out)
  assert [r['objective'] for r in results['rows']] == ['mmd', 'gan', 'vae', 'swd', 'sinkhorn']
  assert timed == ['mmd', 'gan', 'vae']
  assert [r['ratio'] for r in results['rows']] == [1.0, 1.0, 1.0, None, None]
  text = out.getvalue()
  for name in ('swd', 'sinkhorn'):
    assert (
        f'mnist_w32/{name} torch: not timed, the PyTorch reference '
        "(benchmarks/torch_reference.py) has the latent penalties 'mmd', 'gan', 'vae' only, "
        f"not penalty.name='{name}'"
    ) in text


def test_torch_reference_refuses_resnet():
  torch_reference = pytest.importorskip('benchmarks.torch_reference')
  config = benchmark.model_config('mnist_w32_resnet', 'mmd', 8)
  with pytest.raises(ValueError, match="arch='resnet50v2'.*only the DCGAN"):
    torch_reference.build_autoencoder(config)


def test_slow_steps_are_skipped_or_approximate(monkeypatch):
  calls = []
  timing = benchmark.time_steps(
      calls.append,
      flops=10**9,
      batch_size=10,
      repeats=5,
      steps_per_trial=0,
      max_seconds=5.0,
      predicted_step_s=50.0,
  )
  assert calls == [] and timing.img_per_s is None and 'not timed' in timing.note

  clock = [0.0]

  def slow(n):  # 8 s per step on a fake clock
    clock[0] += 8.0 * n

  monkeypatch.setattr(benchmark.time, 'perf_counter', lambda: clock[0])
  timing = benchmark.time_steps(
      slow,
      flops=10**9,
      batch_size=10,
      repeats=5,
      steps_per_trial=0,
      max_seconds=5.0,
      predicted_step_s=None,
  )
  assert timing.approximate and timing.step_s == 8.0 and timing.img_per_s == 10 / 8.0
  assert 'warm-up step alone' in timing.note
  timing = benchmark.time_steps(
      slow,
      flops=10**9,
      batch_size=10,
      repeats=5,
      steps_per_trial=0,
      max_seconds=20.0,
      predicted_step_s=None,
  )
  assert not timing.approximate and timing.trials_s == [8.0, 8.0] and '2 of 5' in timing.note
  assert timing.gflop_per_s == 1 / 8.0


def test_table_on_an_accelerator_has_mfu_columns():
  timing = dict(img_per_s=1000.0, gflop_per_s=500.0, approximate=False, mfu=0.25, compile_s=3.0)
  row = dict(
      model='mnist_paper',
      objective='mmd',
      train_gflop_per_image=5.5,
      jax=timing,
      torch=dict(timing, mfu=None, approximate=True),
      ratio=1.0,
  )
  table = benchmark.format_table([row], accelerator=True, with_torch=True)
  assert 'jax MFU' in table and 'torch MFU' in table
  assert (
      '| mnist_paper | mmd | 5.500 | 1,000.0 | 500.0 | 25.0% | 3.0 | ~1,000.0 | ~500.0 | - | ~1.00 |'  # noqa: E501
      in table
  )
