"""The latent penalties' registry: docs/penalties.md's walk-through run as written, and every
registered penalty tied to the train step (loss = reconstruction + lambda * its function on the
step's own codes; its fields change the step's penalty)."""

import re

import jax
import numpy as np
import pytest

from tests.helpers import MNIST_DIR
from tests.helpers import REPO
from tests.helpers import shallow_config
from tests.helpers import tiny_config
from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import models
from wae_jax import penalties
from wae_jax import train
from wae_jax.accelerators import flops
from wae_jax.evaluation import report

BUILT_IN = ('mmd', 'gan', 'vae', 'swd', 'sinkhorn')
# A value other than the default for every field a built-in penalty reads.
CHANGED = {
    'kernel': 'rbf',
    'kernel_scale': 3.0,
    'log_prior_trick': True,
    'gan_update': 'alternating',
    'num_projections': 7,
    'swd_p': 1.0,
    'sinkhorn_epsilon': 0.1,
    'sinkhorn_max_iterations': 1,
}
LAM = 2.5  # for the VAE, whose KL weight is 1: a lambda dropped from the loss must show


@pytest.fixture
def registry(monkeypatch):
  """A copy of the registry for the test to register into, dropped after it."""
  monkeypatch.setattr(penalties, 'REGISTRY', dict(penalties.REGISTRY))
  return penalties.REGISTRY


def _doc_blocks():
  return re.findall(r'```python\n(.*?)```', (REPO / 'docs' / 'penalties.md').read_text(), re.DOTALL)


def test_the_docs_walk_through_trains_and_evaluates_a_registered_penalty(
    registry, tmp_path, monkeypatch
):
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'configs').symlink_to(REPO / 'configs')
  monkeypatch.setenv('WAE_JAX_MNIST_DIR', str(MNIST_DIR))
  blocks = _doc_blocks()
  assert len(blocks) == 3
  scope = {'__name__': 'my_penalties'}  # outside the package, as a user's module
  for block in blocks:
    exec(compile(block, 'docs/penalties.md', 'exec'), scope)  # pylint: disable=exec-used
  config, state, results = scope['config'], scope['state'], scope['results']
  assert registry['moments'] is scope['MOMENTS'] and 'moments' not in BUILT_IN
  assert int(state.step) == 4 and state.adversary_params == {}
  assert results['penalty'] == 'moments' and results['step'] == 4
  assert np.isfinite(results['fid_mnist_classifier']['value'])
  assert report.penalty_kind('moments') == 'moment matching'
  # The step's penalty is the registered function of the step's codes, with its own field.
  step_metrics, expected = _step_and_recomputed(config)
  assert float(step_metrics['penalty']) == pytest.approx(expected['penalty'], rel=1e-5)
  config.penalty.moments_covariance_weight = -1.0
  with pytest.raises(
      errors.ConfigError,
      match=r'penalty.moments_covariance_weight=-1.0 is ' 'invalid: must be >= 0',
  ):
    wae_config.validate(config)
  del config.penalty['moments_covariance_weight']
  with pytest.raises(
      errors.ConfigError,
      match="penalty.name='moments' reads "
      'config.penalty.moments_covariance_weight, which this config lacks',
  ):
    wae_config.validate(config)


def test_register_refuses_another_record_under_a_taken_name(registry):
  mmd = registry['mmd']
  assert penalties.register(mmd) is mmd  # the same record again: nothing happens
  with pytest.raises(ValueError, match="'mmd' is already registered"):
    penalties.register(penalties.LatentPenalty('mmd', mmd.fn, 'another MMD'))
  with pytest.raises(ValueError, match="compiled_fields names \\['p'\\], which are not among"):
    penalties.LatentPenalty('toy', mmd.fn, 'toy', fields=('q',), compiled_fields=('p',))
  with pytest.raises(ValueError, match="unknown latent penalty 'toy'; registered: 'mmd'"):
    penalties.get('toy')


def test_the_built_in_records():
  assert tuple(penalties.REGISTRY) == BUILT_IN
  assert set(wae_config.OBJECTIVES.values()) == set(BUILT_IN)
  fields = {f for p in penalties.REGISTRY.values() for f in p.fields}
  assert fields == set(CHANGED) and all(f in wae_config.base_config().penalty for f in fields)
  assert [p.name for p in penalties.REGISTRY.values() if p.needs_adversary] == ['gan']
  assert [p.name for p in penalties.REGISTRY.values() if not p.pretrains] == ['vae']
  # A sweep's trials that differ only in the kernel's scale share a compiled step.
  assert penalties.fields_not_in_step() == {'penalty.kernel_scale'}
  assert report.penalty_kind('swd') == 'sliced Wasserstein'
  assert report.penalty_kind('unknown') == 'unknown'
  # The adversary's FLOPs are counted where a penalty needs one.
  gan, mmd = tiny_config('wae_gan'), tiny_config('wae_mmd')
  adversary = 3 * 2 * 8 * 3 * flops.forward_macs(gan)['adversary']  # on three batches
  assert flops.train_step_flops(gan, 8) - flops.train_step_flops(mmd, 8) == adversary > 0


def test_each_record_computes_its_documented_penalty():
  """Each built-in record passes the config's fields to the function docs and README name."""
  rng = np.random.default_rng(0)
  codes, prior = (rng.normal(size=(16, 3)).astype(np.float32) for _ in range(2))
  mean, log_variance, logits = (
      rng.normal(size=s).astype(np.float32) for s in ((16, 3), (16, 3), (16,))
  )
  key = jax.random.key(3)
  inputs = penalties.PenaltyInputs(
      codes, prior, key, 2.0, mean=mean, log_variance=log_variance, code_logits=logits
  )
  s = wae_config.base_config().penalty
  s.kernel, s.kernel_scale, s.num_projections, s.swd_p = 'rbf', 1.5, 6, 1.0
  s.sinkhorn_epsilon, s.sinkhorn_max_iterations = 0.3, 20
  expected = {
      'mmd': penalties.mmd(codes, prior, kernel='rbf', prior_variance=2.0, scale=1.5),
      # The non-saturating encoder loss: -mean log D(z~), D the sigmoid of the logits.
      'gan': -np.mean(jax.nn.log_sigmoid(logits)),
      'vae': penalties.gaussian_kl(mean, log_variance, 2.0),
      'swd': penalties.sliced_wasserstein(codes, prior, rng=key, num_projections=6, p=1.0),
      'sinkhorn': penalties.sinkhorn(codes, prior, epsilon=0.3, max_iterations=20),
  }
  for name, value in expected.items():
    assert float(penalties.get(name).fn(inputs, s)) == pytest.approx(float(value), rel=1e-5)


def _random_images(config):
  lo, hi = config.data.pixel_range
  return (
      np.random.default_rng(0)
      .uniform(lo, hi, (config.train.batch_size,) + tuple(config.data.image_shape))
      .astype(np.float32)
  )


STEP_RNG = jax.random.PRNGKey(1)


def _step(config, state, images):
  """One train step from `state`: (its new state, its metrics)."""
  model, adversary = models.build_autoencoder(config), models.build_adversary(config)
  new_state, metrics = jax.jit(train.make_train_step(config, model, adversary, 10, STEP_RNG))(
      state, images
  )
  assert float(metrics['skipped']) == 0.0
  return new_state, jax.device_get(metrics)


def _step_codes(config, state, images):
  """What the auto-encoder gives the step at `state` (the step's own random numbers): its
  codes, means, log-variances, prior samples and penalty key, and its reconstruction cost."""

  @jax.jit
  def run(state):
    rngs, z_prior = train.step_randomness(config, STEP_RNG, state.step, images.shape[0])
    (codes, mean, log_variance, logits), _ = train.encode_decode(
        config, models.build_autoencoder(config), state.params, state.batch_stats, images, rngs
    )
    outputs = (
        logits
        if config.cost.name == 'bernoulli'
        else models.activate(logits, config.data.pixel_range)
    )
    reconstruction = penalties.reconstruction_cost(
        images, outputs, name=config.cost.name, scale=config.cost.scale
    )
    return (codes, mean, log_variance, z_prior, rngs['penalty']), reconstruction

  return run(state)


def _registered_penalty(config, step_codes, state, new_state):
  """The registered function of config.penalty.name on the step's codes, with config.penalty;
  a penalty with an adversary gets its logits (after its step, under 'alternating')."""
  codes, mean, log_variance, z_prior, key = step_codes
  penalty = penalties.get(config.penalty.name)
  code_logits = None
  if penalty.needs_adversary:
    penalised_by = (
        new_state.adversary_params
        if config.penalty.gan_update == 'alternating'
        else state.adversary_params
    )
    code_logits = train.adversary_logits(
        config, models.build_adversary(config), penalised_by, codes
    )
  inputs = penalties.PenaltyInputs(
      codes,
      z_prior,
      key,
      config.model.prior_variance,
      mean=mean,
      log_variance=log_variance,
      code_logits=code_logits,
  )
  return float(jax.jit(lambda x: penalty.fn(x, config.penalty))(inputs))


def _step_and_recomputed(config):
  """One train step's metrics, and its loss, reconstruction and penalty recomputed from the
  registered function on the step's own codes."""
  state = train.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch=10)
  images = _random_images(config)
  new_state, metrics = _step(config, state, images)
  step_codes, reconstruction = _step_codes(config, state, images)
  value = _registered_penalty(config, step_codes, state, new_state)
  return metrics, dict(
      penalty=value,
      reconstruction=float(reconstruction),
      loss=float(reconstruction) + config.penalty.lam * value,
  )


@pytest.mark.parametrize('objective', sorted(wae_config.OBJECTIVES))
def test_step_loss_is_reconstruction_plus_lambda_times_the_registered_penalty(objective):
  """For every built-in penalty: the step's loss is reconstruction + lambda * its registered
  function on the step's codes; and each field it reads, changed, changes the step's penalty
  to the function's with that value."""
  config = shallow_config(objective)
  if config.penalty.lam == 1:
    config.penalty.lam = LAM
  metrics, expected = _step_and_recomputed(config)
  for key in ('loss', 'reconstruction', 'penalty'):
    assert float(metrics[key]) == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
  lam_penalty = config.penalty.lam * expected['penalty']
  assert abs(lam_penalty) > 1e-3 * abs(expected['loss'])  # the term shows
  # The codes do not depend on the penalty's fields: the step's own, recomputed once.
  state = train.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch=10)
  images = _random_images(config)
  step_codes, _ = _step_codes(config, state, images)
  for field in penalties.get(config.penalty.name).fields:
    changed = config.copy_and_resolve_references()
    changed.penalty[field] = CHANGED[field]
    new_state, changed_metrics = _step(changed, state, images)
    value = float(changed_metrics['penalty'])
    # Compared exactly: a field the step ignored would compile the same program.
    assert value != float(metrics['penalty']), field
    assert value == pytest.approx(
        _registered_penalty(changed, step_codes, state, new_state), rel=1e-4, abs=1e-6
    ), field
