"""The PyTorch reference computes the same function as the JAX models and train step.

Weights come from a JAX-initialised model (copied by torch_reference.load_jax_variables);
inputs are random MNIST/CelebA-shaped images; input noise is off so that both sides see
the same inputs, and the prior samples / latent noise are passed to torch explicitly.
The JAX side is wae_jax.models, wae_jax.penalties and wae_jax.train themselves.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip('torch')

from benchmarks import torch_reference as tr  # noqa: E402
from tests.helpers import load_config  # noqa: E402
from wae_jax import models  # noqa: E402
from wae_jax import penalties  # noqa: E402
from wae_jax import train  # noqa: E402
from wae_jax.models import layers  # noqa: E402

BATCH = 8
ATOL = 1e-4


def _config(dataset, objective, width=1 / 16):
  config = load_config(dataset, objective)
  config.model.width = width
  config.model.adversary_width = width
  config.train.batch_size = BATCH
  config.train.input_noise = 0.0
  return config


def _setup(config, seed=0):
  state = train.create_train_state(config, jax.random.PRNGKey(seed), steps_per_epoch=10)
  lo, hi = config.data.pixel_range
  images = jax.random.uniform(
      jax.random.PRNGKey(seed + 1), (BATCH,) + tuple(config.data.image_shape), minval=lo, maxval=hi
  )
  torch_model = tr.build_autoencoder(config)
  tr.load_jax_variables(torch_model, state.params, state.batch_stats)
  torch_model.train()
  return state, images, torch_model


def _np(t):
  return t.detach().cpu().numpy()


def _nhwc(t):
  return _np(t.permute(0, 2, 3, 1))


def _t(a):
  return torch.from_numpy(np.array(a, np.float32))


@pytest.mark.parametrize(
    'n,k,s',
    [(28, 4, 2), (7, 4, 2), (4, 4, 2), (64, 5, 2), (9, 5, 2), (28, 4, 1), (64, 5, 1), (5, 3, 2)],
)
def test_same_padding_layers_match_flax(n, k, s):
  """Conv2dSame / ConvTranspose2dSame = flax 'SAME' conv / transposed conv, incl. odd pads."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, n, n, 3)).astype(np.float32)
  for flax_cls, torch_cls, convert in [
      (layers.Conv, tr.Conv2dSame, tr._conv_weight),
      (layers.ConvTranspose, tr.ConvTranspose2dSame, tr._conv_transpose_weight),
  ]:
    layer = flax_cls(5, (k, k), strides=(s, s), implementation='xla')
    variables = layer.init(jax.random.PRNGKey(0), x)
    expected = np.asarray(layer.apply(variables, x))
    torch_layer = torch_cls(3, 5, k, s, (n, n))
    with torch.no_grad():
      torch_layer.weight.copy_(convert(variables['params']['kernel']))
      torch_layer.bias.copy_(_t(variables['params']['bias']))
      got = _nhwc(torch_layer(tr.nchw(x)))
    assert got.shape == expected.shape, (flax_cls.__name__, got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, atol=ATOL, err_msg=flax_cls.__name__)


@pytest.mark.parametrize(
    'dataset,objective',
    [('mnist', 'wae_mmd'), ('mnist', 'vae'), ('celeba', 'wae_mmd'), ('celeba', 'vae')],
)
@pytest.mark.parametrize('training', [True, False])
def test_forward_matches_jax(dataset, objective, training):
  config = _config(dataset, objective)
  state, images, torch_model = _setup(config)
  model = models.build_autoencoder(config)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}

  @jax.jit
  def forward(variables, images):
    (mean, log_variance), _ = model.apply(
        variables, images, train=training, method=model.encode, mutable=['batch_stats']
    )
    logits, _ = model.apply(
        variables, mean, train=training, method=model.decode, mutable=['batch_stats']
    )
    return mean, log_variance, logits

  mean, log_variance, logits = forward(variables, images)
  torch_model.train(training)
  with torch.no_grad():
    t_mean, t_log_variance = torch_model.encoder(tr.nchw(images))
    t_logits = torch_model.decoder(_t(mean))
  np.testing.assert_allclose(_np(t_mean), mean, atol=ATOL)
  if config.model.gaussian_encoder:
    np.testing.assert_allclose(_np(t_log_variance), log_variance, atol=ATOL)
  else:
    assert t_log_variance is None
  assert t_logits.shape == (BATCH, config.data.image_shape[2]) + tuple(config.data.image_shape[:2])
  np.testing.assert_allclose(_nhwc(t_logits), logits, atol=ATOL)


def _jax_losses(config, state, images, z_prior, latent_noise):
  """The objective from wae_jax.models and wae_jax.penalties, noise given explicitly."""
  return jax.jit(lambda *args: _jax_losses_impl(config, *args))(
      state, images, z_prior, latent_noise
  )


def _jax_losses_impl(config, state, images, z_prior, latent_noise):
  model = models.build_autoencoder(config)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  (mean, log_variance), _ = model.apply(
      variables, images, train=True, method=model.encode, mutable=['batch_stats']
  )
  codes = mean if log_variance is None else mean + jnp.exp(0.5 * log_variance) * latent_noise
  logits, _ = model.apply(
      variables, codes, train=True, method=model.decode, mutable=['batch_stats']
  )
  outputs = (
      logits
      if config.cost.name == 'bernoulli'
      else models.activate(logits, config.data.pixel_range)
  )
  reconstruction = penalties.reconstruction_cost(
      images, outputs, name=config.cost.name, scale=config.cost.scale
  )
  lam, variance = config.penalty.lam, config.model.prior_variance
  out = {}
  if config.penalty.name == 'mmd':
    penalty = penalties.mmd(
        codes,
        z_prior,
        kernel=config.penalty.kernel,
        prior_variance=variance,
        scale=config.penalty.kernel_scale,
    )
  elif config.penalty.name == 'gan':
    adversary = models.build_adversary(config)

    def adversary_logits(z):
      raw = adversary.apply({'params': state.adversary_params}, z)
      return (
          penalties.log_prior_logits(raw, z, variance)
          if config.penalty.log_prior_trick
          else raw[:, 0]
      )

    penalty = penalties.encoder_adversarial_loss(adversary_logits(codes))
    out['adversary_loss'] = lam * penalties.adversary_loss(
        adversary_logits(z_prior), adversary_logits(codes)
    )
  else:
    penalty = penalties.gaussian_kl(mean, log_variance, variance)
  out.update(loss=reconstruction + lam * penalty, reconstruction=reconstruction, penalty=penalty)
  return out


@pytest.mark.parametrize(
    'dataset,objective,log_prior_trick',
    [
        ('mnist', 'wae_mmd', False),
        ('mnist', 'wae_gan', True),
        ('mnist', 'wae_gan', False),
        ('mnist', 'vae', False),
        ('celeba', 'wae_mmd', False),
        ('celeba', 'wae_gan', True),
        ('celeba', 'vae', False),
    ],
)
def test_losses_match_jax(dataset, objective, log_prior_trick):
  config = _config(dataset, objective)
  config.penalty.log_prior_trick = log_prior_trick
  state, images, torch_model = _setup(config)
  rng = np.random.default_rng(2)
  z_prior = (
      np.sqrt(config.model.prior_variance) * rng.standard_normal((BATCH, config.model.latent_dim))
  ).astype(np.float32)
  latent_noise = rng.standard_normal((BATCH, config.model.latent_dim)).astype(np.float32)
  expected = _jax_losses(config, state, images, z_prior, latent_noise)

  trainer = tr.Trainer(config)
  trainer.model = torch_model
  if trainer.adversary is not None:
    tr.load_jax_adversary(trainer.adversary, state.adversary_params)
  with torch.no_grad():
    x = tr.nchw(images)
    got = trainer.ae_losses(x, x, _t(z_prior), _t(latent_noise))
    if trainer.adversary is not None:
      got['adversary_loss'] = trainer.adversary_losses(got['codes'], _t(z_prior))
  for key, value in expected.items():
    np.testing.assert_allclose(float(got[key]), float(value), rtol=1e-5, atol=ATOL, err_msg=key)


def _bn_batch_sizes(torch_model, x):
  """How many values each BatchNorm2d averages over (for the Bessel correction)."""
  sizes, hooks = [], []
  for bn in tr._of_type(torch_model, torch.nn.BatchNorm2d):
    hooks.append(
        bn.register_forward_hook(
            lambda m, inputs, out: sizes.append(inputs[0].numel() // inputs[0].shape[1])
        )
    )
  with torch.no_grad():
    torch_model.train()(x)
  for h in hooks:
    h.remove()
  return sizes


def _biases_before_batch_norm(torch_model):
  """Names of the biases whose layer's output goes straight into a BatchNorm."""
  names = {'decoder.fc.bias'}  # Dense -> Unflatten -> BatchNorm
  for prefix, seq in (
      ('encoder.features', torch_model.encoder.features),
      ('decoder.body', torch_model.decoder.body),
  ):
    for i, (layer, after) in enumerate(zip(seq, list(seq)[1:])):
      if getattr(layer, 'bias', None) is not None and isinstance(after, torch.nn.BatchNorm2d):
        names.add(f'{prefix}.{i}.bias')
  return names


def test_one_train_step_matches_jax_wae_mmd():
  """One Adam step of the JAX train step and of the torch Trainer give the same weights."""
  config = _config('mnist', 'wae_mmd')
  state, images, _ = _setup(config)
  rng = jax.random.PRNGKey(3)
  model, adversary = models.build_autoencoder(config), models.build_adversary(config)
  step = jax.jit(train.make_train_step(config, model, adversary, 10, rng))
  new_state, metrics = step(state, images)
  # The prior samples of step 0, drawn as wae_jax.train.make_train_step draws them.
  _, _, prior_rng = jax.random.split(jax.random.fold_in(rng, 0), 3)
  z_prior = penalties.prior_samples(
      prior_rng, (BATCH, config.model.latent_dim), config.model.prior_variance
  )

  trainer = tr.Trainer(config, steps_per_epoch=10)
  tr.load_jax_variables(trainer.model, state.params, state.batch_stats)
  x = tr.nchw(images)
  bn_sizes = _bn_batch_sizes(tr.build_autoencoder(config), x)
  torch_metrics = trainer.train_step(x, z_prior=_t(z_prior))
  np.testing.assert_allclose(
      float(torch_metrics['loss']),
      float(metrics['loss']),
      rtol=1e-5,
      err_msg='loss of step 0 (if train_step now draws its prior '
      'samples differently, update this test)',
  )

  expected = tr.build_autoencoder(config)
  tr.load_jax_variables(expected, new_state.params, new_state.batch_stats)
  got_state, expected_state = trainer.model.state_dict(), expected.state_dict()
  # The decoder's Dense bias goes into a BatchNorm: its gradient is zero up to rounding, and
  # Adam's first step, lr * g / (|g| + eps), turns that into noise of size lr: not compared.
  # (The convs before a BatchNorm have no bias.)
  cancelled = _biases_before_batch_norm(trainer.model)
  assert cancelled == {'decoder.fc.bias'}
  compared = []
  for name, value in expected_state.items():
    if name.endswith(('num_batches_tracked', 'running_var')) or name in cancelled:
      continue
    np.testing.assert_allclose(_np(got_state[name]), _np(value), atol=ATOL, err_msg=name)
    compared.append(name)
  assert {'encoder.fc.bias', 'decoder.body.9.bias', 'decoder.body.9.weight'} <= set(compared)
  old = tr.build_autoencoder(config)
  tr.load_jax_variables(old, state.params, state.batch_stats)
  moved = np.abs(
      _np(got_state['decoder.body.9.weight']) - _np(old.state_dict()['decoder.body.9.weight'])
  ).max()
  assert moved > 10 * ATOL  # the step really moved the weights (Adam: about lr = 1e-3)
  # Running variances: torch averages in the unbiased batch variance, Flax the biased one.
  bns = [n[: -len('.running_var')] for n in expected_state if n.endswith('running_var')]
  assert len(bns) == len(bn_sizes)
  for name, n in zip(bns, bn_sizes):
    var_old = _np(old.state_dict()[name + '.running_var'])
    flax_batch_var = (_np(expected_state[name + '.running_var']) - 0.9 * var_old) / 0.1
    np.testing.assert_allclose(
        _np(got_state[name + '.running_var']),
        0.9 * var_old + 0.1 * flax_batch_var * n / (n - 1),
        atol=ATOL,
        err_msg=name,
    )


def test_lr_schedule_matches_optax():
  schedule = optax.piecewise_constant_schedule(1.0, {30: 0.5, 50: 0.2})
  factor = tr._lr_factor(((3, 0.5), (5, 0.2)), steps_per_epoch=10)
  for step in (0, 29, 30, 31, 49, 50, 51, 100):
    assert factor(step) == pytest.approx(float(schedule(step))), step


def test_gan_step_updates_both_nets_and_input_noise_runs():
  config = _config('mnist', 'wae_gan')
  config.train.input_noise = 0.01
  trainer = tr.Trainer(config)
  before = [p.detach().clone() for p in trainer.adversary.parameters()]
  before_ae = [p.detach().clone() for p in trainer.model.parameters()]
  metrics = trainer.train_step(torch.rand(BATCH, 1, 28, 28))
  assert np.isfinite(float(metrics['loss'])) and np.isfinite(float(metrics['adversary_loss']))
  assert all(not torch.equal(a, b) for a, b in zip(before, trainer.adversary.parameters()))
  assert any(not torch.equal(a, b) for a, b in zip(before_ae, trainer.model.parameters()))
  assert all(p.requires_grad for p in trainer.adversary.parameters())


def test_bfloat16_autocasts_the_auto_encoder_only():
  config = _config('mnist', 'wae_mmd')
  state, images, _ = _setup(config)
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    config.model.dtype = dtype
    trainer = tr.Trainer(config)
    assert trainer.mixed_precision == (dtype == 'bfloat16')
    tr.load_jax_variables(trainer.model, state.params, state.batch_stats)
    x = tr.nchw(images)
    z_prior = torch.randn(
        BATCH, config.model.latent_dim, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
      out = trainer.ae_losses(x, x, z_prior)
    assert out['codes'].dtype == out['logits'].dtype == torch.float32
    losses[dtype] = float(out['loss'])
    metrics = trainer.train_step(x, z_prior=z_prior)
    assert np.isfinite(float(metrics['loss']))
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
  assert losses['bfloat16'] == pytest.approx(losses['float32'], rel=0.05)


@pytest.mark.parametrize('objective', ['wae_mmd', 'wae_gan', 'vae'])
def test_step_loss_matches_train_py_for_each_penalty_it_has(objective):
  """The reference's step and wae_jax.train's, from the same weights, prior samples and latent
  noise, give the same loss and penalty, for every penalty the reference has."""
  config = _config('mnist', objective)
  assert config.penalty.name in tr.PENALTIES
  state, images, _ = _setup(config)
  rng = jax.random.PRNGKey(3)
  model, adversary = models.build_autoencoder(config), models.build_adversary(config)
  _, metrics = jax.jit(train.make_train_step(config, model, adversary, 10, rng))(state, images)
  rngs, z_prior = train.step_randomness(config, rng, 0, BATCH)
  # The Gaussian encoder's noise of the step, from its codes (Flax derives the key it draws
  # it with from the step's 'latent' key).
  # Jitted: one compile, not one per operation of the auto-encoder.
  (codes, mean, log_variance, _), _ = jax.jit(
      lambda params, batch_stats, x, rngs: train.encode_decode(
          config, model, params, batch_stats, x, rngs
      )
  )(state.params, state.batch_stats, images, rngs)
  latent_noise = None
  if log_variance is not None:
    latent_noise = (codes - mean) / jnp.exp(0.5 * log_variance)
  trainer = tr.Trainer(config, steps_per_epoch=10)
  tr.load_jax_variables(trainer.model, state.params, state.batch_stats)
  if trainer.adversary is not None:
    tr.load_jax_adversary(trainer.adversary, state.adversary_params)
  got = trainer.train_step(
      tr.nchw(images),
      z_prior=_t(z_prior),
      latent_noise=None if latent_noise is None else _t(latent_noise),
  )
  for key in ('loss', 'penalty'):
    np.testing.assert_allclose(
        float(got[key]), float(metrics[key]), rtol=1e-5, atol=ATOL, err_msg=key
    )


@pytest.mark.parametrize('objective', ['wae_swd', 'wae_sinkhorn'])
def test_a_penalty_the_reference_lacks_is_refused(objective):
  config = _config('mnist', objective)
  assert config.penalty.name in penalties.REGISTRY and config.penalty.name not in tr.PENALTIES
  with pytest.raises(
      tr.NotInReferenceError,
      match=f"latent penalties 'mmd', 'gan', 'vae' only, not penalty.name="
      f"'{config.penalty.name}': time it JAX-only",
  ):
    tr.Trainer(config)
  assert tr.unsupported(_config('mnist', 'wae_mmd')) == ''
