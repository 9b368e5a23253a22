"""Model shapes and layouts: the paper's DCGAN nets for 28x28x1 and 64x64x3."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import load_config
from wae_jax import models


@pytest.mark.parametrize('dataset', ['mnist', 'celeba'])
def test_paper_width_layout(dataset):
  config = load_config(dataset, 'wae_mmd')
  model = models.build_autoencoder(config)
  x = jnp.zeros((2,) + tuple(config.data.image_shape))
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))['params']
  k, channels = config.model.kernel_size, config.data.image_shape[-1]
  encoder, decoder = params['encoder'], params['decoder']
  assert [encoder[f'Conv_{i}']['kernel'].shape for i in range(4)] == [
      (k, k, channels, 128),
      (k, k, 128, 256),
      (k, k, 256, 512),
      (k, k, 512, 1024),
  ]
  assert encoder['Dense_0']['kernel'].shape[-1] == config.model.latent_dim
  h = config.data.image_shape[0] // 2 ** (len(config.model.decoder_widths) - 1)
  assert decoder['Dense_0']['kernel'].shape == (config.model.latent_dim, h * h * 1024)
  widths = list(config.model.decoder_widths) + [channels]
  assert [decoder[f'ConvTranspose_{i}']['kernel'].shape for i in range(len(widths) - 1)] == [
      (k, k, a, b) for a, b in zip(widths, widths[1:])
  ]


@pytest.mark.parametrize('dataset', ['mnist', 'celeba'])
@pytest.mark.parametrize('gaussian', [False, True])
def test_encoder_decoder_shapes_and_range(dataset, gaussian):
  config = load_config(dataset, 'wae_mmd')
  config.model.width = 1 / 32
  config.model.gaussian_encoder = gaussian
  model = models.build_autoencoder(config)
  x = jax.random.uniform(jax.random.PRNGKey(0), (3,) + tuple(config.data.image_shape))
  # Jitted: op by op, the phase layers take seconds.
  variables = jax.jit(model.init)(jax.random.PRNGKey(1), x)
  mean, log_variance = jax.jit(lambda v, x: model.apply(v, x, train=False, method=model.encode))(
      variables, x
  )
  assert mean.shape == (3, config.model.latent_dim)
  assert (log_variance is not None) == gaussian
  logits = jax.jit(lambda v, z: model.apply(v, z, train=False, method=model.decode))(
      variables, mean
  )
  assert logits.shape == (3,) + tuple(config.data.image_shape)
  lo, hi = config.data.pixel_range
  ends = models.activate(jnp.array([-100.0, 0.0, 100.0]), config.data.pixel_range)
  np.testing.assert_allclose(ends, [lo, (lo + hi) / 2, hi], atol=1e-6)


def test_batch_norm_statistics_update_in_training():
  config = load_config('mnist', 'wae_mmd')
  config.model.width = 1 / 32
  model = models.build_autoencoder(config)
  x = jax.random.uniform(jax.random.PRNGKey(0), (4, 28, 28, 1))
  variables = jax.jit(model.init)(jax.random.PRNGKey(1), x)
  _, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(
      variables, x
  )
  before = jax.tree_util.tree_leaves(variables['batch_stats'])
  after = jax.tree_util.tree_leaves(updates['batch_stats'])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_adversary_gives_one_logit_per_code():
  config = load_config('mnist', 'wae_gan')
  adversary = models.build_adversary(config)
  z = jnp.ones((5, config.model.latent_dim))
  params = adversary.init(jax.random.PRNGKey(0), z)
  assert adversary.apply(params, z).shape == (5, 1)
  assert [params['params'][f'Dense_{i}']['kernel'].shape[-1] for i in range(5)] == [
      512,
      512,
      512,
      512,
      1,
  ]


def test_gaussian_codes_follow_the_encoder_distribution():
  mean = jnp.full((20000, 2), 3.0)
  log_variance = jnp.log(jnp.full((20000, 2), 0.25))
  codes = models.sample_codes(jax.random.PRNGKey(0), mean, log_variance)
  np.testing.assert_allclose(codes.mean(0), 3.0, atol=0.02)
  np.testing.assert_allclose(codes.std(0), 0.5, atol=0.02)


def test_convs_before_batch_norm_have_no_bias():
  """BN subtracts a conv's bias again, so the nets have none there (only the output layer)."""
  config = load_config('mnist', 'wae_mmd')
  model = models.build_autoencoder(config)
  x = jnp.zeros((2,) + tuple(config.data.image_shape))
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))['params']
  assert not any('bias' in params['encoder'][f'Conv_{i}'] for i in range(4))
  assert not any('bias' in params['decoder'][f'ConvTranspose_{i}'] for i in range(2))
  assert 'bias' in params['decoder']['ConvTranspose_2']
