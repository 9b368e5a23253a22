"""Evaluates a checkpoint as the paper does: FID, sharpness, reconstruction, MMD.

`python -m wae_jax.main --config=... --workdir=DIR --mode=evaluate` writes
`DIR/eval/results.json`: every number with the checkpoint step, the number of images and,
for FID, the feature extractor it was computed on. FID on InceptionV3 (pool3, the standard
FID) is added when its weights are configured (`eval.inception_weights` or
$WAE_JAX_INCEPTION_WEIGHTS; see wae_jax/evaluation/inception.py), and skipped with a log line otherwise.
"""

import dataclasses
import json
import pathlib
from typing import Callable, Dict, Optional

from absl import logging
import jax
import numpy as np

from wae_jax import files
from wae_jax import inference
from wae_jax import input_pipeline
from wae_jax import penalties
from wae_jax import visualize
from wae_jax.evaluation import inception
from wae_jax.evaluation import metrics
from wae_jax.evaluation import mnist_classifier

MNIST_CLASSIFIER = 'mnist_classifier'
INCEPTION = 'inception'
INCEPTION_BATCH_SIZE = 100


def batched(fn: Callable, inputs: np.ndarray, batch_size: int = 500) -> np.ndarray:
  """fn over inputs in batches (the same compiled shape for all but the last)."""
  return np.concatenate([fn(inputs[i:i + batch_size]) for i in range(0, len(inputs),
                                                                       batch_size)])


class RealStatistics:
  """Feature statistics of real images, computed once per (dataset, split, extractor)."""

  def __init__(self, cache_dir: pathlib.Path):
    self.cache_dir = cache_dir

  def get(self, dataset: str, split: str, extractor: str, images: np.ndarray,
          featurize: Callable):
    path = self.cache_dir / f'fid_stats_{dataset}_{split}_{len(images)}_{extractor}.npz'
    if path.exists():
      with np.load(path) as stats:
        return stats['mean'], stats['covariance']
    mean, covariance = metrics.gaussian_statistics(featurize(images))
    with files.atomic_path(path) as tmp:
      np.savez(tmp, mean=mean, covariance=covariance)
    return mean, covariance


def evaluate(config, workdir: str, step: Optional[int] = None) -> Dict:
  """Evaluates the latest (or given) checkpoint in workdir; returns and writes the results."""
  model, state = inference.restore(config, workdir, step)
  e = config.eval
  data = input_pipeline.load_dataset(config.data)
  step = int(state.step)
  encode, decode = visualize.make_eval_fns(model, state, config.data.pixel_range)
  pixel_range = tuple(config.data.pixel_range)
  n = min(e.num_samples, len(data.test_images))
  prior_rng = jax.random.PRNGKey(config.seed + 1)
  noise = np.asarray(penalties.prior_samples(prior_rng, (n, config.model.latent_dim),
                                         config.model.prior_variance))
  samples = batched(decode, noise)
  test = data.test_images[:n]
  codes = batched(encode, test)
  reconstructions = batched(decode, codes)

  results = {'step': step, 'workdir': str(workdir), 'penalty': config.penalty.name}
  k = min(e.sharpness_images, n)
  for name, images in (('samples', samples), ('reconstructions', reconstructions),
                       ('test_images', test)):
    results[f'sharpness_{name}'] = {'value': metrics.sharpness(images[:k], pixel_range),
                                    'num_images': k}
  outputs = reconstructions
  cost_name = config.cost.name
  if cost_name == 'bernoulli':  # The Bernoulli cost needs logits: invert the sigmoid.
    clipped = np.clip(reconstructions, 1e-6, 1 - 1e-6)
    outputs = np.log(clipped) - np.log1p(-clipped)
  results['test_reconstruction_cost'] = {
      'value': float(penalties.reconstruction_cost(test, outputs, name=cost_name,
                                                   scale=config.cost.scale)),
      'num_images': n, 'cost': cost_name, 'scale': config.cost.scale}
  results['test_mse_per_pixel'] = {'value': float(np.mean((test - reconstructions)**2)),
                                   'num_images': n}
  m = min(e.mmd_codes, n)
  prior = np.asarray(penalties.prior_samples(jax.random.PRNGKey(config.seed + 2),
                                         (m, config.model.latent_dim),
                                         config.model.prior_variance))
  results['test_codes_mmd'] = {
      'value': float(penalties.mmd(codes[:m], prior, kernel=config.penalty.kernel,
                                   prior_variance=config.model.prior_variance,
                                   scale=config.penalty.kernel_scale or None)),
      'num_codes': m, 'kernel': config.penalty.kernel}
  if config.model.gaussian_encoder:
    log_variance = batched(lambda x: np.asarray(model.apply(
        {'params': state.params, 'batch_stats': state.batch_stats}, x, train=False,
        method=model.encode)[1]), test)
    results['encoder_variance_per_dim'] = {
        'value': np.exp(log_variance).mean(axis=0).tolist(), 'num_images': n}

  if config.data.name == 'mnist':
    results.update(_mnist_classifier_fid(config, data, samples, n))
  results.update(inception_fid(config, data, samples, n))

  out = pathlib.Path(workdir) / 'eval' / 'results.json'
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=2))
  logging.info('Wrote %s', out)
  print(summary(results))
  return results


def _mnist_classifier_fid(config, data, samples, n) -> Dict:
  """FID on the MNIST classifier's features, and its real-vs-real floor (train vs test)."""
  cache_dir = pathlib.Path(config.eval.cache_dir or input_pipeline.default_cache_dir())
  unit = lambda images: visualize.to_unit_range(images, config.data.pixel_range)
  params = mnist_classifier.load_or_train(str(cache_dir), _unit_range_data(data, config.data.pixel_range),
                                          seed=0)
  featurize = lambda images: mnist_classifier.features(params, unit(images))
  stats = RealStatistics(cache_dir)
  test_stats = stats.get('mnist', 'test', MNIST_CLASSIFIER, data.test_images[:n], featurize)
  train_stats = stats.get('mnist', 'train', MNIST_CLASSIFIER, data.train_images[:n],
                          featurize)
  sample_stats = metrics.gaussian_statistics(featurize(samples))
  about = {'num_images': n, 'features': f'{MNIST_CLASSIFIER} penultimate layer (128-d)',
           'reference': f'{n} MNIST test images'}
  return {
      f'fid_{MNIST_CLASSIFIER}': {'value': metrics.frechet_distance(*sample_stats,
                                                                    *test_stats), **about},
      f'fid_{MNIST_CLASSIFIER}_real_floor': {
          'value': metrics.frechet_distance(*train_stats, *test_stats), **about,
          'samples': f'{n} MNIST training images'},
  }


def inception_fid(config, data, samples, n) -> Dict:
  """FID on InceptionV3 pool3 features and its real-vs-real floor (train vs test).

  {} (with one log line) when no weights are configured; FileNotFoundError saying where to
  put them when the configured file does not exist.
  """
  configured = inception.configured_path(config.eval.get('inception_weights', ''))
  if configured is None:
    logging.info('Inception FID skipped: set config eval.inception_weights or $%s to the '
                 'path of %s (%s) to compute it.', inception.WEIGHTS_ENV,
                 inception.WEIGHTS_FILENAME, inception.WEIGHTS_URL)
    return {}
  featurizer = inception.make_featurizer(str(configured), batch_size=INCEPTION_BATCH_SIZE)
  pixel_range = tuple(config.data.pixel_range)
  featurize = lambda images: featurizer(images, pixel_range)
  cache_dir = pathlib.Path(config.eval.cache_dir or input_pipeline.default_cache_dir())
  stats = RealStatistics(cache_dir)
  name = config.data.name
  test_stats = stats.get(name, 'test', INCEPTION, data.test_images[:n], featurize)
  train_stats = stats.get(name, 'train', INCEPTION, data.train_images[:n], featurize)
  sample_stats = metrics.gaussian_statistics(featurize(samples))
  about = {'num_images': n, 'features': inception.FEATURES,
           'reference': f'{n} {name} test images'}
  return {
      'fid_inception': {'value': metrics.frechet_distance(*sample_stats, *test_stats),
                        **about},
      'fid_inception_real_floor': {
          'value': metrics.frechet_distance(*train_stats, *test_stats), **about,
          'samples': f'{n} {name} training images'},
  }


def _unit_range_data(data, pixel_range):
  """The classifier trains on pixels in [0, 1]."""
  if tuple(pixel_range) == (0.0, 1.0):
    return data
  unit = lambda images: visualize.to_unit_range(images, pixel_range)
  return dataclasses.replace(data, train_images=unit(data.train_images),
                             test_images=unit(data.test_images))


def summary(results: Dict) -> str:
  lines = [f"Evaluation of {results['workdir']} at step {results['step']}:"]
  for key, entry in results.items():
    if isinstance(entry, dict) and isinstance(entry.get('value'), float):
      lines.append(f'  {key:36s} {entry["value"]:.4f}')
  return '\n'.join(lines)
