"""The ResNet50-v2 encoder and decoder: layout, shapes, the residual block, config, a train step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import load_config
from tests.helpers import tiny_config
from wae_jax import config as wae_config
from wae_jax import models
from wae_jax import train
from wae_jax.models import resnet

# ResNet-50's conv kernels: torchvision's 25,557,032 parameters less the 1000-way fc and the
# BatchNorms' scales and offsets.
RESNET50_CONV_KERNELS = 25_557_032 - 2_049_000 - 53_120  # 23,454,912


def _resnet_config(dataset, gaussian=False, width=1.0, blocks=(3, 4, 6, 3), dtype='float32'):
  config = load_config(dataset, 'wae_mmd')
  config.model.arch = 'resnet50v2'
  config.model.gaussian_encoder = gaussian
  config.model.width = width
  config.model.resnet_stage_blocks = blocks
  config.model.dtype = dtype
  return config


def _count(tree, keep=lambda path: True):
  return sum(
      int(np.prod(leaf.shape))
      for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
      if keep(jax.tree_util.keystr(path))
  )


def _key(seed):
  # RngBitGenerator keys: threefry's parameter initialisers take most of the compile time
  # on a CPU (~20 s for the reduced nets on a busy 2-core machine, ~8 s with rbg).
  return jax.random.key(seed, impl='rbg')


def test_stage_sizes_keep_a_map_for_small_images():
  assert resnet.stage_sizes((64, 64), 4) == (2, ((32, 32), (16, 16), (8, 8), (4, 4)))
  assert resnet.stage_sizes((28, 28), 4) == (1, ((28, 28), (14, 14), (7, 7), (4, 4)))
  assert resnet.stage_sizes((32, 20), 2) == (1, ((32, 20), (16, 10)))


@pytest.mark.parametrize('dataset,gaussian', [('celeba', False), ('mnist', True)])
def test_full_width_resnet50_layout(dataset, gaussian):
  config = _resnet_config(dataset, gaussian)
  model = models.build_autoencoder(config)
  shape, latent = tuple(config.data.image_shape), config.model.latent_dim
  x = jax.ShapeDtypeStruct((2,) + shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
  params = variables['params']
  assert set(params) == {'encoder', 'decoder'}
  encoder, decoder = params['encoder'], params['decoder']
  blocks = [f'stage{i + 1}_block{j + 1}' for i, n in enumerate((3, 4, 6, 3)) for j in range(n)]
  assert sorted(k for k in encoder if k.startswith('stage')) == sorted(blocks)
  assert sorted(k for k in decoder if k.startswith('stage')) == sorted(blocks)
  # Projections exactly where the shape changes: each encoder stage's first block; in the
  # decoder the first of stages 3..1 (upsampling), not stage 4's (its Dense gives 2048 channels).
  assert [b for b in blocks if 'projection' in encoder[b]] == [
      'stage1_block1',
      'stage2_block1',
      'stage3_block1',
      'stage4_block1',
  ]
  assert [b for b in blocks if 'projection' in decoder[b]] == [
      'stage1_block1',
      'stage2_block1',
      'stage3_block1',
  ]
  assert encoder['stage4_block3']['conv3']['kernel'].shape == (1, 1, 512, 2048)
  assert encoder['stem']['kernel'].shape == (3, 3, shape[-1], 64)
  conv_kernels = _count(
      encoder, lambda p: p.endswith("['kernel']") and ('stage' in p or 'stem' in p)
  )
  print(
      f'{dataset}: {conv_kernels:,} encoder conv parameters, {_count(encoder):,} in the '
      f'encoder, {_count(decoder):,} in the decoder'
  )
  # The same trunk, but a 3x3 stem on the image's channels for the 7x7x3 one.
  stem_difference = 3 * 3 * shape[-1] * 64 - 7 * 7 * 3 * 64
  assert conv_kernels == RESNET50_CONV_KERNELS + stem_difference  # 23,447,232 for RGB
  assert 23.4e6 < conv_kernels < 23.5e6
  # Flattened 4x4x2048 map to the code, and from the code back to it.
  heads = ['mean', 'log_variance'] if gaussian else ['Dense_0']
  assert [encoder[h]['kernel'].shape for h in heads] == [(4 * 4 * 2048, latent)] * len(heads)
  assert decoder['Dense_0']['kernel'].shape == (latent, 4 * 4 * 2048)
  assert decoder['output']['kernel'].shape == (3, 3, 256, shape[-1])

  mean, log_variance = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False, method=model.encode), variables, x
  )
  assert (mean.shape, mean.dtype) == ((2, latent), jnp.float32)
  assert (log_variance is not None) == gaussian
  if gaussian:
    assert (log_variance.shape, log_variance.dtype) == ((2, latent), jnp.float32)
  logits = jax.eval_shape(
      lambda v, z: model.apply(v, z, train=False, method=model.decode), variables, mean
  )
  assert (logits.shape, logits.dtype) == ((2,) + shape, jnp.float32)


@pytest.mark.parametrize(
    'dataset,gaussian,dtype', [('mnist', False, 'float32'), ('celeba', True, 'bfloat16')]
)
def test_stage_outputs_follow_the_plan(dataset, gaussian, dtype):
  """Each stage's output lies at the planned size, in the decoder as in the encoder; the
  activations are in the config's dtype, the codes and logits float32."""
  config = _resnet_config(dataset, gaussian, width=1 / 16, blocks=(1, 1, 1, 1), dtype=dtype)
  model = models.build_autoencoder(config)
  shape, latent = tuple(config.data.image_shape), config.model.latent_dim
  x = jax.ShapeDtypeStruct((3,) + shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
  (_, mean, log_variance, logits), state = jax.eval_shape(
      lambda v, x: model.apply(
          v,
          x,
          train=True,
          method=model.encode_decode,
          rngs={'latent': jax.random.PRNGKey(1)},
          mutable=['batch_stats', 'intermediates'],
          capture_intermediates=True,
      ),
      variables,
      x,
  )
  assert (mean.shape, mean.dtype) == ((3, latent), jnp.float32)
  assert (log_variance is not None) == gaussian
  if gaussian:
    assert (log_variance.shape, log_variance.dtype) == ((3, latent), jnp.float32)
  assert (logits.shape, logits.dtype) == ((3,) + shape, jnp.float32)
  _, sizes = resnet.stage_sizes(shape[:2], 4)
  for net in ('encoder', 'decoder'):
    for i, size in enumerate(sizes):
      (out,) = state['intermediates'][net][f'stage{i + 1}_block1']['__call__']
      assert out.shape[1:3] == size and out.dtype == jnp.dtype(dtype), (net, i, out)


def test_reduced_width_forward_and_backward():
  """A real pass through the 28x28 nets (28-14-7-4 and back): finite logits, a non-zero
  gradient for every parameter, updated BatchNorm statistics."""
  config = _resnet_config('mnist', gaussian=True, width=1 / 16, blocks=(1, 1, 1, 1))
  model = models.build_autoencoder(config)
  x = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype(np.float32)
  variables = jax.jit(model.init)(_key(1), x)

  def loss(params):
    (_, _, log_variance, logits), state = model.apply(
        {'params': params, 'batch_stats': variables['batch_stats']},
        x,
        train=True,
        method=model.encode_decode,
        rngs={'latent': _key(2)},
        mutable=['batch_stats'],
    )
    return jnp.mean((logits - x) ** 2) + jnp.mean(log_variance**2), (logits, state)

  grads, (logits, state) = jax.jit(jax.grad(loss, has_aux=True))(variables['params'])
  assert logits.shape == (3, 28, 28, 1) and np.all(np.isfinite(logits))
  largest = jax.tree_util.tree_map(lambda g: np.abs(np.asarray(g)).max(), grads)
  assert all(np.isfinite(g) and g > 0 for g in jax.tree_util.tree_leaves(largest)), largest
  before = jax.tree_util.tree_leaves(variables['batch_stats'])
  after = jax.tree_util.tree_leaves(state['batch_stats'])
  assert all(not np.allclose(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize(
    'in_shape,stride,resize_to,out_shape',
    [
        ((2, 7, 7, 16), 1, None, (2, 7, 7, 16)),  # identity shortcut
        ((2, 7, 7, 8), 2, None, (2, 4, 4, 16)),  # encoder: stride-2 projection
        ((2, 4, 4, 32), 1, (7, 7), (2, 7, 7, 16)),  # decoder: upsampling projection
    ],
)
def test_block_adds_the_shortcut(in_shape, stride, resize_to, out_shape):
  """With its last conv zeroed a block is exactly its shortcut: the input, or the 1x1
  projection of the pre-activated (BN-ReLU) input, strided or resized."""
  block = resnet.Bottleneck(4, stride=stride, resize_to=resize_to)
  x = np.random.default_rng(0).normal(size=in_shape).astype(np.float32)
  variables = jax.jit(lambda x: block.init(_key(1), x, train=False))(x)
  params = variables['params']
  apply = jax.jit(lambda v, x: block.apply(v, x, train=False))
  out = apply(variables, x)
  assert out.shape == out_shape
  zeroed = jax.tree_util.tree_map(np.asarray, params)
  zeroed['conv3']['kernel'] = np.zeros_like(zeroed['conv3']['kernel'])
  shortcut = apply({**variables, 'params': zeroed}, x)
  if 'projection' not in params:
    expected = x
  else:
    preact = np.maximum(np.asarray(x) / np.sqrt(1 + 1e-5), 0)  # BN at its initial statistics
    if resize_to:
      rows = np.floor((np.arange(resize_to[0]) + 0.5) * in_shape[1] / resize_to[0]).astype(int)
      preact = preact[:, rows][:, :, rows]
    expected = preact[:, ::stride, ::stride] @ np.asarray(params['projection']['kernel'][0, 0])
  np.testing.assert_allclose(shortcut, expected, rtol=1e-5, atol=1e-5)
  assert not np.allclose(out, shortcut, atol=1e-3)  # the residual path does add something
  assert ('projection' in params) == (in_shape != out_shape)


def test_validation_of_arch_and_resnet_fields():
  config = _resnet_config('mnist')
  wae_config.validate(config)
  config.model.arch = 'resnet18'
  with pytest.raises(ValueError, match="model.arch='resnet18'.*allowed: 'dcgan', 'resnet50v2'"):
    wae_config.validate(config)
  for field, value, message in [
      ('resnet_stage_blocks', (), 'non-empty tuple of ints >= 1'),
      ('resnet_stage_blocks', (3, 0, 6, 3), 'non-empty tuple of ints >= 1'),
      ('resnet_widths', (64, 128, 256.5, 512), 'non-empty tuple of ints >= 1'),
      ('resnet_widths', (64, 128, 256), r'one width per stage of model.resnet_stage_blocks \(4\)'),
  ]:
    config = _resnet_config('mnist')
    config.model[field] = value
    with pytest.raises(ValueError, match=message) as error:
      wae_config.validate(config)
    assert f'config.model.{field}={value!r}' in str(error.value)


def test_wae_mmd_train_step_with_resnet():
  """One jitted step of `train.make_train_step`: finite metrics, and every parameter and
  BatchNorm statistic moves. Two stages of one block at 1/32 width: the step's optimiser and
  checks over every parameter make four stages compile for over a minute on a busy CPU."""
  config = tiny_config('wae_mmd')
  config.model.arch = 'resnet50v2'
  config.model.resnet_stage_blocks = (1, 1)
  config.model.resnet_widths = (64, 128)
  wae_config.validate(config)
  model = models.build_autoencoder(config)
  adversary = models.build_adversary(config)
  state = train.create_train_state(config, _key(0), steps_per_epoch=10)
  step = jax.jit(train.make_train_step(config, model, adversary, 10, _key(1)))
  images = (
      np.random.default_rng(0)
      .uniform(0, 1, (config.train.batch_size,) + tuple(config.data.image_shape))
      .astype(np.float32)
  )
  new_state, metrics = step(state, images)
  metrics = jax.device_get(metrics)
  assert metrics['skipped'] == 0.0
  for key in ('loss', 'reconstruction', 'penalty', 'codes_mean_gap', 'codes_cov_gap'):
    assert np.isfinite(metrics[key]), key
  assert set(new_state.params) == {'encoder', 'decoder'}
  for old, new in ((state.params, new_state.params), (state.batch_stats, new_state.batch_stats)):
    changed = jax.tree_util.tree_map(lambda a, b: not np.allclose(a, b), old, new)
    assert all(jax.tree_util.tree_leaves(changed)), changed
