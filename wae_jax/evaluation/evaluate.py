"""Evaluates a checkpoint as the paper does: FID, sharpness, reconstruction, MMD.

`python -m wae_jax.main --config=... --workdir=DIR --mode=evaluate` writes
`DIR/eval/results.json`: every number with the checkpoint step, the number of images and,
for FID, the feature extractor it was computed on; `configs` lists the configs the
checkpoint was trained under, each with its step and the fields it changed. Beside it,
`samples_<sampler>.png` shows each sampler's first eval.grid_samples samples. This module is
the driver: it restores the checkpoint, decodes each sampler's samples (the prior's and/or
those of a Gaussian mixture fitted to training codes, eval.sampler; see samplers.py) and
encodes the test images once into a Context, and runs the evaluators of
wae_jax/evaluation/evaluators.py over it. Encoding, decoding and FID features run
data-parallel on every local device (batching.py). FID on
InceptionV3 (pool3, the standard FID) is added when its weights are configured
(`eval.inception_weights` or $WAE_JAX_INCEPTION_WEIGHTS; see wae_jax/evaluation/inception.py),
and skipped with a log line otherwise.
"""

import functools
import pathlib
from typing import Dict, Optional

from absl import logging
import jax

from wae_jax import config as wae_config
from wae_jax import files
from wae_jax import inference
from wae_jax import input_pipeline
from wae_jax import visualize
from wae_jax.evaluation import batching
from wae_jax.evaluation import evaluators
from wae_jax.evaluation import samplers


def _make_coders(model, state, pixel_range):
  """Jitted encode (images -> (mean codes, log-variances or None)) and decode (codes ->
  images), data-parallel: the weights are replicated on the local devices once, and the
  batches of batching.batched split over them. The encoder keeps the Gaussian encoder's
  variances: the test set is encoded once, for every evaluator.
  """
  variables = batching.replicate({'params': state.params, 'batch_stats': state.batch_stats})
  encode, decode = visualize.coders(model, pixel_range)
  return (functools.partial(jax.jit(encode), variables),
          functools.partial(jax.jit(decode), variables))


def make_context(config, model, state,
                 directory: Optional[pathlib.Path] = None) -> evaluators.Context:
  """Everything the evaluators read, from the restored (model, state) and config's data.

  Each sampler of eval.sampler draws codes (the GMM's fit encodes training images first),
  decoded into its samples; the test images are encoded and reconstructed once. directory:
  where evaluators write pictures (None: none).
  """
  e = config.eval
  data = input_pipeline.load_dataset(config.data)
  encode, decode = _make_coders(model, state, config.data.pixel_range)
  mean_codes = lambda images, limit=None: batching.batched(encode, images, e.batch_size,
                                                           limit=limit)[0]
  samples, fits = {}, {}
  for name in samplers.names(config):
    draws = samplers.SAMPLERS[name](config, mean_codes, data)
    samples[name] = batching.batched(decode, draws.codes, e.batch_size)
    fits.update(draws.entries)
  test = data.test_images[:samplers.num_samples(config, data)]
  codes, log_variance = batching.batched(encode, test, e.batch_size)
  reconstructions = batching.batched(decode, codes, e.batch_size)
  return evaluators.Context(config=config, data=data, test_images=test, samples=samples,
                            codes=codes, log_variance=log_variance,
                            reconstructions=reconstructions, sampler_fits=fits,
                            directory=directory)


def evaluate(config, workdir: str, step: Optional[int] = None) -> Dict:
  """Evaluates the latest (or given) checkpoint in workdir; returns and writes the results."""
  model, state = inference.restore(config, workdir, step)
  context = make_context(config, model, state, pathlib.Path(workdir) / 'eval')
  results = {'step': int(state.step), 'workdir': str(workdir), 'penalty': config.penalty.name}
  for evaluator in evaluators.from_config(config):
    results.update(evaluator.run(context))
  results['configs'] = wae_config.config_changes(workdir, results['step'])
  out = files.write_json(pathlib.Path(workdir) / 'eval' / 'results.json', results)
  logging.info('Wrote %s', out)
  print(summary(results))
  return results


def summary(results: Dict) -> str:
  """The scalar results, one per line, for the log."""
  lines = [f"Evaluation of {results['workdir']} at step {results['step']}:"]
  for key, entry in results.items():
    if isinstance(entry, dict) and isinstance(entry.get('value'), float):
      lines.append(f'  {key:36s} {entry["value"]:.4f}')
  for record in results.get('configs', [])[1:]:
    lines.append(f"  config changed from step {record['step']}: " + '; '.join(
        f'{field}: {old!r} -> {new!r}' for field, (old, new) in record['changed'].items()))
  return '\n'.join(lines)
