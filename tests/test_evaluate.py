"""--mode=evaluate on a briefly trained tiny model: every number present, labelled, right."""

import json

import pytest

from tests.helpers import tiny_config
from wae_jax import inference
from wae_jax import input_pipeline
from wae_jax import train
from wae_jax.evaluation import evaluate
from wae_jax.evaluation import evaluators
from wae_jax.evaluation import inception
from wae_jax.evaluation import metrics
from wae_jax.evaluation import mnist_classifier


@pytest.fixture(scope='module')
def trained_vae(tmp_path_factory, mnist_dir):
  config = tiny_config('vae')
  config.train.num_steps = 2
  config.eval.num_samples = 300
  config.eval.sharpness_images = 100
  config.eval.mmd_codes = 50
  workdir = tmp_path_factory.mktemp('vae')
  config.eval.cache_dir = str(workdir / 'cache')
  train.train_and_evaluate(config, str(workdir))
  return config, workdir


def test_evaluate_writes_labelled_results(trained_vae, monkeypatch):
  config, workdir = trained_vae
  # An untrained classifier stands in for the cached one: the FID plumbing is what is tested.
  trained = []
  monkeypatch.setattr(mnist_classifier, 'load_or_train',
                      lambda *a, **k: trained.append(1) or mnist_classifier.init_params(0))
  results = evaluate.evaluate(config, str(workdir))
  assert trained == [1]
  on_disk = json.loads((workdir / 'eval' / 'results.json').read_text())
  assert on_disk == json.loads(json.dumps(results))
  assert results['step'] == 2
  assert results['configs'] == [{'step': 0, 'file': 'config_0000000.json', 'changed': {}}]
  for key in ('sharpness_samples', 'sharpness_reconstructions', 'sharpness_test_images'):
    assert results[key]['num_images'] == 100
  data = input_pipeline.load_dataset(config.data)
  assert results['sharpness_test_images']['value'] == pytest.approx(
      metrics.sharpness(data.test_images[:100], (0.0, 1.0)))
  assert results['test_reconstruction_cost']['num_images'] == 300
  assert results['test_reconstruction_cost']['cost'] == 'bernoulli'
  assert 0 < results['test_mse_per_pixel']['value'] < 1
  assert results['test_codes_mmd']['num_codes'] == 50
  assert len(results['encoder_variance_per_dim']['value']) == config.model.latent_dim
  fid = results['fid_mnist_classifier']
  floor = results['fid_mnist_classifier_real_floor']
  assert 'mnist_classifier' in fid['features'] and fid['num_images'] == 300
  assert fid['value'] > floor['value'] >= 0
  # Real-data statistics are cached by dataset, split, size and extractor.
  cached = sorted(p.name for p in (workdir / 'cache').glob('fid_stats_*.npz'))
  assert cached == ['fid_stats_mnist_test_300_mnist_classifier.npz',
                    'fid_stats_mnist_train_300_mnist_classifier.npz']


def test_evaluators_yield_their_keys(trained_vae, monkeypatch):
  """Each evaluator of the tiny VAE (MNIST, Gaussian encoder) writes exactly its entries."""
  config, workdir = trained_vae
  monkeypatch.setattr(mnist_classifier, 'load_or_train',
                      lambda *a, **k: mnist_classifier.init_params(0))
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  context = evaluate.make_context(config, *inference.restore(config, str(workdir)))
  keys = {e.name: sorted(e.run(context)) for e in evaluators.from_config(config)}
  assert keys == {
      'sharpness': ['sharpness_reconstructions', 'sharpness_samples', 'sharpness_test_images'],
      'reconstruction': ['test_mse_per_pixel', 'test_reconstruction_cost'],
      'latent_mmd': ['test_codes_mmd'],
      'encoder_variance': ['encoder_variance_per_dim'],
      'fid_mnist_classifier': ['fid_mnist_classifier', 'fid_mnist_classifier_real_floor'],
      'fid_inception': [],  # No weights configured: skipped.
  }
  assert len(context.samples) == len(context.codes) == context.num_images == 300
