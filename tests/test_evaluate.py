"""--mode=evaluate on a briefly trained tiny model: every number present, labelled, right,
for the prior's samples and those of the Gaussian mixture fitted to training codes."""

import dataclasses
import json
import logging
import shutil
import subprocess
import sys
import types

import ml_collections
import numpy as np
from PIL import Image
import pytest
from sklearn import mixture

from tests.helpers import error_line
from tests.helpers import MNIST_DIR
from tests.helpers import REPO
from tests.helpers import shallow_config
from wae_jax import checkpoints
from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import inference
from wae_jax import input_pipeline
from wae_jax import train
from wae_jax.evaluation import evaluate
from wae_jax.evaluation import evaluators
from wae_jax.evaluation import inception
from wae_jax.evaluation import metrics
from wae_jax.evaluation import mnist_classifier
from wae_jax.evaluation import samplers


@pytest.fixture(scope='module')
def trained_vae(tmp_path_factory, mnist_dir):
  config = shallow_config('vae')
  config.train.num_steps = 2
  config.eval.num_samples = 300
  config.eval.sharpness_images = 100
  config.eval.mmd_codes = 50
  config.eval.grid_samples = 16
  config.eval.gmm_train_images = 400  # few codes: the fit takes milliseconds
  config.eval.gmm_components = 3
  workdir = tmp_path_factory.mktemp('vae')
  config.eval.cache_dir = str(workdir / 'cache')
  train.train_and_evaluate(config, str(workdir))
  return config, workdir


@pytest.fixture(scope='module')
def restored(trained_vae):
  config, workdir = trained_vae
  return inference.restore(config, str(workdir))


@pytest.fixture
def untrained_classifier(monkeypatch):
  """An untrained classifier stands in for the cached one: the FID plumbing is what is tested.

  Returns the list of calls, one element each.
  """
  calls = []
  monkeypatch.setattr(
      mnist_classifier,
      'load_or_train',
      lambda *a, **k: calls.append(1) or mnist_classifier.init_params(0),
  )
  return calls


def test_evaluate_writes_labelled_results(trained_vae, untrained_classifier, caplog):
  """Labelled by what was trained: given another penalty, lambda and code size, evaluation
  takes them from the checkpoint's record, says so in one warning, and writes the record's."""
  config, workdir = trained_vae
  given = config.copy_and_resolve_references()
  given.penalty.name, given.penalty.lam, given.model.latent_dim = 'mmd', 3.0, 16
  with caplog.at_level(logging.WARNING):
    results = evaluate.evaluate(given, str(workdir))
  warnings = [
      r.getMessage() for r in caplog.records if 'recorded values are used' in r.getMessage()
  ]
  assert len(warnings) == 1 and str(workdir / 'config_0000000.json') in warnings[0]
  for change in (
      'model.latent_dim: 8 -> 16',
      'penalty.lam: 1.0 -> 3.0',
      "penalty.name: 'vae' -> 'mmd'",
  ):
    assert change in warnings[0]
  assert results['penalty'] == 'vae' and results['config'] == wae_config.as_dict(config)
  assert untrained_classifier == [1]  # one classifier for both samplers
  on_disk = json.loads((workdir / 'eval' / 'results.json').read_text())
  assert on_disk == json.loads(json.dumps(results))
  assert results['step'] == 2
  assert results['configs'] == [{'step': 0, 'file': 'config_0000000.json', 'changed': {}}]
  for key in ('sharpness_samples', 'sharpness_reconstructions', 'sharpness_test_images'):
    assert results[key]['num_images'] == 100
  data = input_pipeline.load_dataset(config.data)
  assert results['sharpness_test_images']['value'] == pytest.approx(
      metrics.sharpness(data.test_images[:100], (0.0, 1.0))
  )
  assert results['test_reconstruction_cost']['num_images'] == 300
  assert results['test_reconstruction_cost']['cost'] == 'bernoulli'
  assert 0 < results['test_mse_per_pixel']['value'] < 1
  assert results['test_codes_mmd']['num_codes'] == 50
  assert len(results['encoder_variance_per_dim']['value']) == config.model.latent_dim
  fid = results['fid_mnist_classifier']
  floor = results['fid_mnist_classifier_real_floor']
  weights = mnist_classifier.weights_sha256(mnist_classifier.init_params(0))[:12]
  assert fid['features'] == mnist_classifier.features_label(weights) and fid['num_images'] == 300
  assert fid['value'] > floor['value'] >= 0
  # Real-data statistics are cached by dataset, split, size, extractor and its weights.
  cached = sorted(p.name for p in (workdir / 'cache').glob('fid_stats_*.npz'))
  assert cached == [
      f'fid_stats_mnist_test_300_mnist_classifier_{weights}.npz',
      f'fid_stats_mnist_train_300_mnist_classifier_{weights}.npz',
  ]
  # The mixture's samples have the same metrics, under the same keys + '_gmm', labelled.
  for key in ('sharpness_samples', 'fid_mnist_classifier'):
    prior, gmm = results[key], results[f'{key}_gmm']
    assert prior['sampler'] == 'prior' and gmm['sampler'] == 'gmm'
    assert {**gmm, 'value': None, 'sampler': None} == {**prior, 'value': None, 'sampler': None}
  assert results['fid_mnist_classifier_gmm']['value'] > floor['value']
  assert 'fid_mnist_classifier_real_floor_gmm' not in results  # no sampler's: one floor
  fit = results['gmm_train_codes_log_likelihood']
  assert {k: v for k, v in fit.items() if k not in ('value', 'iterations', 'converged')} == {
      'num_codes': 400,
      'components': 3,
      'covariance': 'full',
      'seed': config.seed + 3,
  }
  assert np.isfinite(fit['value']) and fit['iterations'] >= 1
  assert 'gmm_train_codes_log_likelihood' in evaluate.summary(results)
  # One picture per sampler: its first eval.grid_samples = 16 samples, 4 x 4 digits.
  for sampler in ('prior', 'gmm'):
    with Image.open(workdir / 'eval' / f'samples_{sampler}.png') as image:
      assert image.size == (4 * 29 + 1, 4 * 29 + 1)


def test_evaluators_yield_their_keys(trained_vae, restored, untrained_classifier, monkeypatch):
  """Each evaluator of the tiny VAE (MNIST, Gaussian encoder) writes exactly its entries."""
  config, _ = trained_vae
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  context = evaluate.make_context(config, *restored)
  keys = {e.name: sorted(e.run(context)) for e in evaluators.from_config(config)}
  assert keys == {
      'sharpness': [
          'sharpness_reconstructions',
          'sharpness_samples',
          'sharpness_samples_gmm',
          'sharpness_test_images',
      ],
      'reconstruction': ['test_mse_per_pixel', 'test_reconstruction_cost'],
      'latent_mmd': ['test_codes_mmd'],
      'encoder_variance': ['encoder_variance_per_dim'],
      'fid_mnist_classifier': [
          'fid_mnist_classifier',
          'fid_mnist_classifier_gmm',
          'fid_mnist_classifier_real_floor',
      ],
      'fid_inception': [],  # No weights configured: skipped.
      'sampler_fit': ['gmm_train_codes_log_likelihood'],
      'sample_grids': [],  # No directory: no pictures.
  }
  assert list(context.samples) == ['prior', 'gmm']
  assert all(len(s) == 300 for s in context.samples.values())
  assert len(context.codes) == context.num_images == 300
  # The prior's samples decode the prior noise they always did; the mixture's, its draws.
  model, state = restored
  encoder, decode = evaluate._make_coders(model, state, config.data.pixel_range)
  noise = samplers.prior_noise(config, config.eval.samples_seed_offset, 300)
  np.testing.assert_allclose(context.samples['prior'], decode(noise), atol=1e-6)
  encode = lambda images, limit: encoder(images[:limit])[0]
  data = input_pipeline.load_dataset(config.data)
  draws = samplers.gmm(config, encode, data).codes
  np.testing.assert_allclose(context.samples['gmm'], decode(draws), atol=1e-5)


@pytest.mark.parametrize('sampler', ['prior', 'gmm'])
def test_one_sampler_gives_only_its_keys(
    trained_vae, restored, untrained_classifier, monkeypatch, sampler
):
  config, _ = trained_vae
  config = config.copy_and_resolve_references()
  config.eval.sampler = sampler
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  context = evaluate.make_context(config, *restored)
  keys = set()
  for evaluator in evaluators.from_config(config):
    keys.update(evaluator.run(context))
  common = {
      'sharpness_reconstructions',
      'sharpness_test_images',
      'test_mse_per_pixel',
      'test_reconstruction_cost',
      'test_codes_mmd',
      'encoder_variance_per_dim',
      'fid_mnist_classifier_real_floor',
  }
  if sampler == 'prior':  # the keys evaluation has always written
    assert keys == common | {'sharpness_samples', 'fid_mnist_classifier'}
  else:
    assert keys == common | {
        'sharpness_samples_gmm',
        'fid_mnist_classifier_gmm',
        'gmm_train_codes_log_likelihood',
    }
  assert list(context.samples) == [sampler]


def test_fid_uses_the_shipped_classifier_and_other_seeds_train_their_own(
    trained_vae, restored, monkeypatch, tmp_path
):
  """Seed 0 (the default) computes FIDs on the shipped weights, training nothing; another
  seed trains and caches its classifier. Each FID names its weights' hash, and the real-data
  statistics of one classifier are never reused for the other."""
  config, _ = trained_vae
  config = config.copy_and_resolve_references()
  config.eval.sampler = 'prior'
  config.eval.cache_dir = str(tmp_path)
  assert config.eval.mnist_classifier_seed == mnist_classifier.SHIPPED_SEED
  trained = []

  def train_classifier(data, seed=0, **kwargs):
    assert seed != mnist_classifier.SHIPPED_SEED, 'trained a classifier for the shipped seed'
    trained.append(seed)
    return mnist_classifier.init_params(seed)

  monkeypatch.setattr(mnist_classifier, 'train_classifier', train_classifier)
  context = evaluate.make_context(config, *restored)
  shipped = evaluators.FID('mnist_classifier').run(context)
  assert trained == [] and not (tmp_path / 'mnist_classifier_seed0.msgpack').exists()
  short = mnist_classifier.SHIPPED_SHA256[:12]
  for key in ('fid_mnist_classifier', 'fid_mnist_classifier_real_floor'):
    assert shipped[key]['features'] == (
        f'mnist_classifier penultimate layer (128-d), weights sha256 {short}'
    )

  config.eval.mnist_classifier_seed = 1
  other = evaluators.FID('mnist_classifier').run(dataclasses.replace(context, config=config))
  assert trained == [1] and (tmp_path / 'mnist_classifier_seed1.msgpack').is_file()
  other_short = mnist_classifier.weights_sha256(mnist_classifier.init_params(1))[:12]
  assert other['fid_mnist_classifier']['features'].endswith(f'weights sha256 {other_short}')
  assert other['fid_mnist_classifier']['value'] != shipped['fid_mnist_classifier']['value']
  assert sorted(p.name for p in tmp_path.glob('fid_stats_*.npz')) == sorted(
      f'fid_stats_mnist_{split}_300_mnist_classifier_{weights}.npz'
      for split in ('test', 'train')
      for weights in (short, other_short)
  )


# ----------------------------------------------------------------------------- refusals


def _evaluate_command(workdir, *overrides):
  return subprocess.run(
      [
          sys.executable,
          '-m',
          'wae_jax.main',
          '--config=configs/mnist.py:vae',
          f'--config.data.dir={MNIST_DIR}',
          f'--workdir={workdir}',
          '--mode=evaluate',
          *overrides,
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=600,
  )


@pytest.fixture
def workdir_copy(trained_vae, tmp_path):
  """A copy of the trained workdir without its evaluation, to damage."""
  return shutil.copytree(trained_vae[1], tmp_path / 'run', ignore=shutil.ignore_patterns('eval'))


def _no_data(*args):
  raise AssertionError('loaded the data before refusing')


def test_an_unreadable_record_is_refused_in_one_line_before_any_work(
    trained_vae, workdir_copy, monkeypatch
):
  """A corrupt config_0000000.json: resuming and evaluating stop at once with one line naming
  the file and how to restore it, not a JSONDecodeError after a minute's evaluation."""
  config, workdir = trained_vae[0], workdir_copy
  record = workdir / 'config_0000000.json'
  record.write_text('{not json')
  line = error_line(_evaluate_command(workdir))
  assert line.startswith(f'error: {record} is not valid JSON (') and 'from step 0' in line
  assert f'cp {workdir / "config.json"} {record}' in line
  assert not (workdir / 'eval' / 'results.json').exists()
  monkeypatch.setattr(input_pipeline, 'load_dataset', _no_data)
  for run in (
      lambda: train.train_and_evaluate(config, str(workdir)),
      lambda: evaluate.evaluate(config, str(workdir)),
  ):
    with pytest.raises(wae_config.RecordedConfigError, match='is not valid JSON'):
      run()
  shutil.rmtree(workdir / 'checkpoints')  # nothing to resume: refused before the data too
  with pytest.raises(wae_config.RecordedConfigError, match='is not valid JSON'):
    train.train_and_evaluate(config, str(workdir))
  assert record.read_text() == '{not json'  # left for the user to restore


def test_evaluate_validates_the_config_it_runs_under_once_before_the_data(trained_vae, monkeypatch):
  """The trained config (the record's training settings, the given eval.*) is what is checked,
  once, before the data are loaded."""
  config, workdir = trained_vae
  checked = []
  validate = wae_config.validate
  monkeypatch.setattr(wae_config, 'validate', lambda c: checked.append(c) or validate(c))
  monkeypatch.setattr(input_pipeline, 'load_dataset', _no_data)
  given = config.copy_and_resolve_references()
  given.eval.gmm_covariance, given.model.latent_dim = 'bogus', 16  # the record's latent_dim runs
  with pytest.raises(errors.ConfigError, match="^config.eval.gmm_covariance='bogus' is not"):
    evaluate.evaluate(given, str(workdir))
  assert [(c.eval.gmm_covariance, c.model.latent_dim) for c in checked] == [('bogus', 8)]


class _Restored(Exception):
  """Stops evaluate once its checkpoint is restored."""


def test_sample_and_evaluate_open_the_checkpoints_once_and_restore_once(
    trained_vae, workdir_copy, monkeypatch
):
  """The latest checkpoint unreadable (a later step 4 cut short): the one before it is restored,
  once, from checkpoints opened once."""
  config = trained_vae[0]
  later = shutil.copytree(workdir_copy / 'checkpoints' / '2', workdir_copy / 'checkpoints' / '4')
  for path in later.rglob('*'):
    if path.is_file() and path.parent.name == 'd':
      path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  calls = []
  for method in ('__init__', 'restore'):
    real = getattr(checkpoints.Checkpoints, method)
    monkeypatch.setattr(
        checkpoints.Checkpoints,
        method,
        lambda self, *a, real=real, method=method, **k: calls.append(method) or real(self, *a, **k),
    )
  assert inference.sample(config, str(workdir_copy)).name == 'samples_step2.png'
  assert calls == ['__init__', 'restore']
  calls.clear()

  def restored(config, model, state, directory, data):
    raise _Restored(int(state.step), config.penalty.name)

  monkeypatch.setattr(evaluate, 'make_context', restored)
  with pytest.raises(_Restored) as stop:
    evaluate.evaluate(config, str(workdir_copy))
  assert stop.value.args == (2, 'vae') and calls == ['__init__', 'restore']


def test_more_samples_than_test_images_are_refused_in_one_line(workdir_copy):
  line = error_line(_evaluate_command(workdir_copy, '--config.eval.num_samples=20000'))
  assert line == (
      'error: config.eval.num_samples=20000 is more than the 10000 mnist test '
      'images that the samples are compared with; allowed: at most 10000'
  )
  assert not (workdir_copy / 'eval' / 'results.json').exists()


def test_too_few_samples_for_an_fid_are_refused_before_any_work(trained_vae, monkeypatch):
  """An FID needs more images than its features have dimensions (2 samples scored an FID of
  1,890 under a "floor" of 2,034): 129 on the MNIST classifier's 128-d features, 2049 where
  InceptionV3's 2048-d ones are configured."""
  config, workdir = trained_vae
  monkeypatch.setattr(input_pipeline, 'load_dataset', _no_data)
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  given = config.copy_and_resolve_references()

  def refusal(count):
    given.eval.num_samples = count
    with pytest.raises(errors.ConfigError) as error:
      evaluate.evaluate(given, str(workdir))
    return str(error.value)

  assert refusal(128).startswith(
      'config.eval.num_samples=128 is too few: the FID on mnist_classifier features (128-d) '
      'needs more images than dimensions'
  )
  assert 'allowed: at least 129 (and at most the test images)' in refusal(128)
  given.eval.num_samples = 129  # enough for it: evaluation goes on to the data
  with pytest.raises(AssertionError, match='loaded the data'):
    evaluate.evaluate(given, str(workdir))
  monkeypatch.setenv(inception.WEIGHTS_ENV, '/weights.pth')
  assert 'FID on inception features (2048-d)' in refusal(129)
  assert 'allowed: at least 2049' in refusal(2048)


# ----------------------------------------------------------------------------- samplers


def _sampler_config(**eval_fields):
  config = ml_collections.ConfigDict(
      {
          'seed': 5,
          'model': {'latent_dim': 2, 'prior_variance': 1.0},
          'data': {'name': 'mnist'},
          'eval': {
              'sampler': 'both',
              'num_samples': 150,
              'samples_seed_offset': 1,
              'gmm_components': 2,
              'gmm_covariance': 'full',
              'gmm_train_images': 300,
              'gmm_seed_offset': 3,
          },
      }
  )
  config.eval.update(eval_fields)
  return config


def _two_clusters():
  """'Images' that are their own codes: two clusters, at (-5, -5) and (5, 5)."""
  rng = np.random.default_rng(0)
  centres = np.where(rng.random(1000) < 0.5, -5.0, 5.0)[:, None]
  train = (centres + rng.normal(size=(1000, 2))).astype(np.float32)
  return types.SimpleNamespace(train_images=train, test_images=np.zeros((150, 1)))


def _identity_encoder():
  limits = []

  def encode(images, limit=None):
    limits.append(limit)
    return images[:limit]

  return encode, limits


@pytest.mark.parametrize('covariance', ['full', 'diag', 'tied', 'spherical'])
def test_gmm_sampler_fits_training_codes(covariance):
  config, data = _sampler_config(gmm_covariance=covariance), _two_clusters()
  encode, limits = _identity_encoder()
  draws = samplers.gmm(config, encode, data)
  assert limits == [300]  # only the first eval.gmm_train_images training images
  # As many draws as test images to compare with; shuffled, so any prefix has both clusters.
  assert draws.codes.shape == (150, 2) and draws.codes.dtype == np.float32
  assert set(np.sign(draws.codes[:20, 0])) == {-1.0, 1.0}
  for sign in (-1, 1):
    cluster = draws.codes[np.sign(draws.codes[:, 0]) == sign]
    np.testing.assert_allclose(cluster.mean(axis=0), [5 * sign] * 2, atol=0.5)
  reference = mixture.GaussianMixture(2, covariance_type=covariance, random_state=8)
  codes = data.train_images[:300].astype(np.float64)
  assert draws.entries == {
      'gmm_train_codes_log_likelihood': {
          'value': pytest.approx(reference.fit(codes).score(codes)),
          'num_codes': 300,
          'components': 2,
          'covariance': covariance,
          'seed': 8,
          'iterations': reference.n_iter_,
          'converged': True,
      }
  }
  # Reproducible from seed + eval.gmm_seed_offset, and only from it.
  np.testing.assert_array_equal(samplers.gmm(config, encode, data).codes, draws.codes)
  config.eval.gmm_seed_offset = 4
  assert not np.array_equal(samplers.gmm(config, encode, data).codes, draws.codes)


def test_samplers_refuse_more_samples_than_test_images():
  config, data = _sampler_config(num_samples=151), _two_clusters()
  for sampler in samplers.SAMPLERS.values():
    with pytest.raises(errors.ConfigError, match='num_samples=151 is more than the 150 mnist '):
      sampler(config, _identity_encoder()[0], data)


def test_gmm_sampler_with_fewer_codes_than_components_is_a_clear_error():
  config = _sampler_config(gmm_train_images=1)
  with pytest.raises(errors.ConfigError, match='eval.gmm_components=2 is more than the 1 '):
    samplers.gmm(config, _identity_encoder()[0], _two_clusters())


def test_prior_sampler_and_sampler_names():
  config, data = _sampler_config(), _two_clusters()
  draws = samplers.prior(config, None, data)
  np.testing.assert_array_equal(draws.codes, samplers.prior_noise(config, 1, 150))
  assert draws.codes.shape == (150, 2) and draws.entries == {}
  assert samplers.names(config) == ['prior', 'gmm']
  assert [samplers.key_suffix(n) for n in samplers.names(config)] == ['', '_gmm']
  for sampler in ('prior', 'gmm'):
    config.eval.sampler = sampler
    assert samplers.names(config) == [sampler]


def test_evaluators_values_equal_their_recomputation():
  """Reconstruction cost and MSE, the test codes' MMD and the encoder variance, recomputed here
  from the context's arrays: what each evaluator reads, and how it reduces it."""
  config = shallow_config('wae_mmd')
  assert (config.cost.name, config.penalty.kernel) == ('l2sq', 'imq_multiscale')
  config.cost.scale = 0.05
  config.eval.mmd_codes = 30
  rng = np.random.default_rng(0)
  test = rng.uniform(size=(40, 28, 28, 1)).astype(np.float32)
  reconstructions = rng.uniform(size=test.shape).astype(np.float32)
  codes = rng.normal(size=(40, 8)).astype(np.float32)
  log_variance = rng.normal(size=(40, 8)).astype(np.float32)
  context = evaluators.Context(
      config=config,
      data=None,
      test_images=test,
      samples=test,
      codes=codes,
      log_variance=log_variance,
      reconstructions=reconstructions,
  )
  got = evaluators.Reconstruction().run(context)
  squared = ((test.astype(np.float64) - reconstructions) ** 2).reshape(40, -1)
  assert got['test_reconstruction_cost']['value'] == pytest.approx(
      0.05 * squared.sum(axis=1).mean(), rel=1e-5
  )
  assert got['test_mse_per_pixel']['value'] == pytest.approx(squared.mean(), rel=1e-5)
  # The MMD of the first mmd_codes codes against that many draws of the prior, seeded by
  # eval.mmd_prior_seed_offset: recomputed with the IMQ kernels of the multiscale estimator.
  got = evaluators.LatentMMD().run(context)['test_codes_mmd']
  prior = samplers.prior_noise(config, config.eval.mmd_prior_seed_offset, 30)
  x, y = codes[:30].astype(np.float64), prior.astype(np.float64)
  dz = x.shape[1]

  def kernel_sum(a, b, diagonal):
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
    k = sum(
        c / (c + d2)
        for c in (
            2 * dz * config.model.prior_variance * s for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
        )
    )
    return k.sum() - (np.trace(k) if diagonal else 0.0)

  n = 30
  expected = (
      kernel_sum(x, x, True) / (n * (n - 1))
      + kernel_sum(y, y, True) / (n * (n - 1))
      - 2 * kernel_sum(x, y, False) / n**2
  )
  # float32 against float64, in a difference of terms near 1: an absolute tolerance.
  assert got['num_codes'] == 30 and got['value'] == pytest.approx(expected, abs=5e-5)
  got = evaluators.EncoderVariance().run(context)['encoder_variance_per_dim']['value']
  np.testing.assert_allclose(got, np.exp(log_variance.astype(np.float64)).mean(axis=0), rtol=1e-6)


def test_the_prior_sampler_draws_the_prior_variance():
  config = shallow_config('wae_mmd')
  config.model.prior_variance = 4.0
  draws = samplers.prior_noise(config, 1, 20000)
  assert draws.shape == (20000, 8)
  np.testing.assert_allclose(draws.mean(axis=0), 0.0, atol=0.05)
  np.testing.assert_allclose(draws.var(axis=0), 4.0, rtol=0.05)
