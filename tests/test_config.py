"""Config files load for every argument, and bad values fail early with a clear message."""

import pytest

from tests.helpers import load_config
from wae_jax import config as wae_config


@pytest.mark.parametrize('arg', ['wae_mmd', 'wae_gan', 'vae', 'wae_mmd,small', 'wae_gan,small',
                                 'vae,small'])
def test_mnist_configs_are_valid(arg):
  config = load_config('mnist', arg)
  wae_config.validate(config)
  assert config.model.latent_dim == 8
  assert config.penalty.name == {'wae_mmd': 'mmd', 'wae_gan': 'gan', 'vae': 'vae'}[
      arg.split(',')[0]]
  assert config.model.width == (0.125 if 'small' in arg else 1.0)


@pytest.mark.parametrize('arg', ['wae_mmd', 'wae_gan', 'vae'])
def test_celeba_configs_are_valid(arg):
  config = load_config('celeba', arg)
  wae_config.validate(config)
  assert tuple(config.data.image_shape) == (64, 64, 3)


def test_paper_settings():
  mmd, gan = load_config('celeba', 'wae_mmd'), load_config('celeba', 'wae_gan')
  assert (mmd.penalty.lam, gan.penalty.lam) == (100.0, 1.0)
  assert (gan.train.learning_rate, gan.train.adversary_learning_rate) == (3e-4, 1e-3)
  mnist = load_config('mnist', 'wae_gan')
  assert (mnist.penalty.lam, mnist.train.learning_rate, mnist.train.adam_b1) == (10.0, 1e-3, 0.5)
  assert mnist.train.adversary_learning_rate == 5e-4


def test_bad_config_argument():
  with pytest.raises(ValueError, match='wae_mmd, wae_gan, vae'):
    load_config('mnist', 'wae_foo')


@pytest.mark.parametrize('field,value,message', [
    ('penalty.name', 'wgan', "allowed: 'mmd', 'gan', 'vae'"),
    ('penalty.kernel', 'laplace', "allowed: 'rbf', 'imq', 'imq_multiscale'"),
    ('data.name', 'cifar', "allowed: 'mnist', 'celeba'"),
    ('cost.name', 'l3', 'allowed:'),
    ('penalty.lam', 0.0, 'must be > 0'),
    ('model.latent_dim', 0, 'must be >= 1'),
    ('train.batch_size', 1, 'needs two codes'),
    ('model.arch', 'vgg', "allowed: 'dcgan'"),
    ('model.dtype', 'float16', "allowed: 'float32', 'bfloat16'"),
    ('model.width', -1.0, 'must be > 0'),
    ('data.dir', '/no/such/dir', 'no such directory'),
    ('data.source', 'http', "allowed: 'auto', 'tfds', 'idx'"),
    ('train.max_nonfinite_steps', 0, 'must be >= 1'),
    ('train.checkpoint_every', 0, 'must be >= 1'),
])
def test_validation_names_field_value_and_allowed(field, value, message):
  config = load_config('mnist', 'wae_mmd')
  group, name = field.split('.')
  config[group][name] = value
  with pytest.raises(ValueError, match=message) as error:
    wae_config.validate(config)
  assert f'config.{field}={value!r}' in str(error.value)
