"""Train steps for the three objectives, the schedule, pre-training and exact resumption."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import shallow_config
from tests.helpers import tiny_config
from wae_jax import models
from wae_jax import parallel
from wae_jax import train


def _random_images(config, n, seed=0):
  lo, hi = config.data.pixel_range
  shape = (n,) + tuple(config.data.image_shape)
  return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


def _run_steps(config, num_steps):
  model = models.build_autoencoder(config)
  adversary = models.build_adversary(config)
  state = train.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch=10)
  step = jax.jit(train.make_train_step(config, model, adversary, 10, jax.random.PRNGKey(1)))
  images = _random_images(config, config.train.batch_size)
  metrics = []
  new_state = state
  for _ in range(num_steps):
    new_state, m = step(new_state, images)
    metrics.append(jax.device_get(m))
  return state, new_state, metrics


@pytest.mark.parametrize(
    'objective,extra_metrics',
    [
        ('wae_mmd', ()),
        ('wae_gan', ('adversary_loss', 'adversary_accuracy')),
        ('vae', ('encoder_variance',)),
        ('wae_swd', ()),
        ('wae_sinkhorn', ()),
    ],
)
def test_train_step_learns(objective, extra_metrics):
  config = shallow_config(objective)
  before, after, metrics = _run_steps(config, 8)
  assert int(after.step) == 8
  for key in (
      'loss',
      'reconstruction',
      'penalty',
      'learning_rate',
      'codes_mean_gap',
      'codes_cov_gap',
  ) + extra_metrics:
    assert all(np.isfinite(m[key]) for m in metrics), key
  # The same batch, eight times: its reconstruction cost must fall.
  assert metrics[-1]['reconstruction'] < metrics[0]['reconstruction']
  changed = jax.tree_util.tree_map(lambda a, b: not np.allclose(a, b), before.params, after.params)
  assert all(jax.tree_util.tree_leaves(changed))
  if objective == 'wae_gan':
    assert not np.allclose(
        jax.tree_util.tree_leaves(before.adversary_params)[0],
        jax.tree_util.tree_leaves(after.adversary_params)[0],
    )
    assert 0.0 <= metrics[-1]['adversary_accuracy'] <= 1.0
  else:
    assert before.adversary_params == {}


def _tree_close(a, b):
  return all(
      jax.tree_util.tree_leaves(
          jax.tree_util.tree_map(lambda x, y: np.allclose(x, y, rtol=1e-5, atol=1e-6), a, b)
      )
  )


def test_alternating_gan_update_penalises_the_encoder_with_the_updated_adversary():
  """Algorithm 1's order: the adversary's step is the simultaneous one's (both see the codes of
  the same parameters), and the auto-encoder's step is the simultaneous one taken against the
  adversary after its step."""
  config = shallow_config('wae_gan')
  model, adversary = models.build_autoencoder(config), models.build_adversary(config)
  state = train.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch=10)
  images = _random_images(config, config.train.batch_size)

  def step_fn(gan_update):
    config.penalty.gan_update = gan_update
    return jax.jit(train.make_train_step(config, model, adversary, 10, jax.random.PRNGKey(1)))

  simultaneous, alternating = step_fn('simultaneous'), step_fn('alternating')
  for _ in range(2):  # a trained adversary, so that its step matters to the encoder
    state, _ = simultaneous(state, images)
  after_sim, sim_metrics = simultaneous(state, images)
  after_alt, alt_metrics = alternating(state, images)
  assert _tree_close(after_alt.adversary_params, after_sim.adversary_params)
  assert float(alt_metrics['adversary_loss']) == pytest.approx(
      float(sim_metrics['adversary_loss']), rel=1e-5
  )
  assert not _tree_close(after_alt.params, after_sim.params)
  against_updated, _ = simultaneous(
      state.replace(adversary_params=after_alt.adversary_params), images
  )
  assert _tree_close(after_alt.params, against_updated.params)


def test_celeba_config_trains_a_step_on_random_data():
  for objective in ('wae_mmd', 'wae_gan', 'vae'):
    config = tiny_config(objective, dataset='celeba')
    assert config.model.latent_dim == 64 and config.model.prior_variance == 2.0
  assert config.model.kernel_size == 5
  config = tiny_config('wae_gan', dataset='celeba')
  assert config.penalty.log_prior_trick and config.penalty.lam == 1.0
  config.train.batch_size = 4
  _, after, metrics = _run_steps(config, 1)
  assert int(after.step) == 1
  assert np.isfinite(metrics[0]['loss']) and np.isfinite(metrics[0]['adversary_loss'])


def test_unset_num_steps_and_kernel_scale_mean_epochs_and_the_papers_c():
  config = shallow_config('wae_mmd')
  assert config.train.num_steps is None and config.penalty.kernel_scale is None
  assert train.num_train_steps(config, steps_per_epoch=7) == config.train.num_epochs * 7
  config.train.num_steps = 3
  assert train.num_train_steps(config, steps_per_epoch=7) == 3
  # None is the paper's C = 2 * d_z * sigma_z^2: the same step as that scale written out.
  _, _, unset = _run_steps(config, 1)
  config.penalty.kernel_scale = 2 * config.model.latent_dim * config.model.prior_variance
  _, _, explicit = _run_steps(config, 1)
  assert unset[0]['penalty'] == explicit[0]['penalty']
  config.penalty.kernel_scale *= 4
  _, _, other = _run_steps(config, 1)
  assert other[0]['penalty'] != unset[0]['penalty']


def test_learning_rate_schedule_follows_the_paper():
  schedule = train.learning_rate_schedule(1e-3, ((30, 0.5), (50, 0.2)), steps_per_epoch=600)
  assert float(schedule(0)) == pytest.approx(1e-3)
  assert float(schedule(30 * 600 - 1)) == pytest.approx(1e-3)
  assert float(schedule(30 * 600 + 1)) == pytest.approx(5e-4)
  assert float(schedule(50 * 600 + 1)) == pytest.approx(1e-4)


def test_prior_moment_gaps():
  codes = jnp.asarray(np.random.default_rng(0).normal(size=(200000, 3)) * 2.0 + 1.0)
  mean_gap, cov_gap = train.prior_moment_gaps(codes, prior_variance=4.0)
  assert float(mean_gap) == pytest.approx(np.sqrt(3.0), rel=0.02)
  assert float(cov_gap) < 0.1


def test_pretraining_moves_codes_towards_the_prior():
  config = shallow_config('wae_mmd')
  config.train.batch_size = 32  # a covariance of 8-d codes needs more than 8 of them
  config.train.pretrain_steps = 40
  config.train.pretrain_learning_rate = 3e-3
  model = models.build_autoencoder(config)
  state = train.create_train_state(config, jax.random.PRNGKey(0), 10)
  images = _random_images(config, 64)

  @jax.jit  # op by op, the encoder takes seconds
  def squared_gaps(params, batch_stats):
    codes = model.apply(
        {'params': params, 'batch_stats': batch_stats},
        images,
        train=True,
        method=model.encode,
        mutable=['batch_stats'],
    )[0][0]
    m, c = train.prior_moment_gaps(codes, 1.0)
    return m**2 + c**2

  def gap(s):
    return float(squared_gaps(s.params, s.batch_stats))

  pretrained = train.pretrain_encoder(config, model, state, images, jax.random.PRNGKey(2))
  assert gap(pretrained) < 0.5 * gap(state)
  np.testing.assert_array_equal(
      jax.tree_util.tree_leaves(pretrained.params['decoder'])[0],
      jax.tree_util.tree_leaves(state.params['decoder'])[0],
  )


def test_resumed_run_matches_uninterrupted_run(tmp_path, mnist_dir):
  # WAE-GAN: its state has the most parts (adversary and its optimizer besides the AE's).
  config = shallow_config('wae_gan')
  config.train.pretrain_steps = 3
  config.train.checkpoint_every = 4
  config.train.log_every = 2
  config.train.image_every = 100
  config.train.num_steps = 8
  straight = train.train_and_evaluate(config, str(tmp_path / 'straight'))
  config.train.num_steps = 4
  train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  config.train.num_steps = 8
  resumed = train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  assert int(straight.step) == int(resumed.step) == 8
  for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  assert sorted(
      p.name for p in (tmp_path / 'resumed' / 'checkpoints').iterdir() if p.name.isdigit()
  ) == ['4', '8']


def test_bfloat16_activations_keep_float32_parameters_and_losses():
  config = shallow_config('wae_mmd')
  config.model.dtype = 'bfloat16'
  model = models.build_autoencoder(config)
  step_fn = train.make_train_step(
      config, model, models.build_adversary(config), 10, jax.random.PRNGKey(1)
  )
  state = train.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch=10)
  images = _random_images(config, config.train.batch_size)
  # The convolutions' matrix products run in bfloat16 (the step traced once, then compiled) ...
  traced = jax.jit(step_fn).trace(state, images)
  jaxpr = str(traced.jaxpr)
  assert 'bf16' in jaxpr and 'dot_general' in jaxpr
  new_state, metrics = traced.lower().compile()(state, images)
  # ... while parameters, optimizer state, losses and penalty stay float32.
  for leaf in jax.tree_util.tree_leaves(
      (new_state.params, new_state.opt_state, new_state.batch_stats)
  ):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32
  for key in ('loss', 'reconstruction', 'penalty'):
    assert metrics[key].dtype == jnp.float32 and np.isfinite(metrics[key])
  # And the bfloat16 model computes nearly what the float32 model does.
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  config.model.dtype = 'float32'
  exact = jax.jit(models.build_autoencoder(config).apply)(variables, images)
  approx = jax.jit(model.apply)(variables, images)
  assert approx.dtype == jnp.float32
  np.testing.assert_allclose(approx, exact, atol=0.1)
  assert float(jnp.abs(approx - exact).mean()) < 0.02


def test_jitted_step_donates_the_state_and_a_checkpoint_keeps_its_own_copy(tmp_path):
  from wae_jax import checkpoints  # pylint: disable=g-import-not-at-top

  config = shallow_config('wae_gan')
  mesh = parallel.make_mesh()
  state = parallel.replicate(train.create_train_state(config, jax.random.PRNGKey(0), 10), mesh)
  step = parallel.jit_on_mesh(
      train.make_train_step(
          config,
          models.build_autoencoder(config),
          models.build_adversary(config),
          10,
          jax.random.PRNGKey(1),
      ),
      mesh,
  )
  images = jax.device_put(
      _random_images(config, config.train.batch_size), parallel.batch_sharded(mesh)
  )
  # Copies: on the CPU a numpy view of a buffer would keep the step from donating it.
  saved = jax.tree_util.tree_map(lambda x: np.array(x, copy=True), state)
  ckpts = checkpoints.Checkpoints(tmp_path, keep=2)
  ckpts.save(0, state)  # asynchronous: orbax may still be reading when the step runs
  new_state, _ = step(state, images)
  # The step wrote its result into the donated state's buffers ...
  assert all(x.is_deleted() for x in jax.tree_util.tree_leaves(state.params))
  # ... and the checkpoint, written from its own copy, holds the state before the step.
  ckpts.wait()
  restored = ckpts.restore(jax.device_get(new_state), 0)
  ckpts.close()
  for a, b in zip(jax.tree_util.tree_leaves(saved), jax.tree_util.tree_leaves(restored)):
    np.testing.assert_array_equal(a, b)
  assert int(new_state.step) == 1
