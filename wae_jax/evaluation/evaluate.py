"""Evaluates a checkpoint as the paper does: FID, sharpness, reconstruction, MMD.

`python -m wae_jax.main --config=... --workdir=DIR --mode=evaluate` writes
`DIR/eval/results.json`: every number with the checkpoint step, the number of images and,
for FID, the feature extractor it was computed on; `configs` lists the configs the
checkpoint was trained under, each with its step and the fields it changed. The checkpoint
is evaluated under the training settings (model, data, penalty, cost, train) of the record it
was trained under (`inference.trained_config`), with the given config's eval.*, seed and
paths: what results.json labels (`penalty`, `config`) is what was trained. Beside it,
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
  return (
      functools.partial(jax.jit(encode), variables),
      functools.partial(jax.jit(decode), variables),
  )


def make_context(
    config, model, state, directory: Optional[pathlib.Path] = None, data=None
) -> evaluators.Context:
  """Everything the evaluators read, from the restored (model, state) and config's data
  (loaded unless given).

  Each sampler of eval.sampler draws codes (the GMM's fit encodes training images first),
  decoded into its samples; the test images are encoded and reconstructed once. directory:
  where evaluators write pictures (None: none).
  """
  e = config.eval
  data = input_pipeline.load_dataset(config.data) if data is None else data
  test = data.test_images[: samplers.num_samples(config, data)]  # refuses before any work
  encode, decode = _make_coders(model, state, config.data.pixel_range)
  mean_codes = lambda images, limit=None: batching.batched(
      encode, images, e.batch_size, limit=limit
  )[0]
  samples, fits = {}, {}
  for name in samplers.names(config):
    draws = samplers.SAMPLERS[name](config, mean_codes, data)
    samples[name] = batching.batched(decode, draws.codes, e.batch_size)
    fits.update(draws.entries)
  codes, log_variance = batching.batched(encode, test, e.batch_size)
  reconstructions = batching.batched(decode, codes, e.batch_size)
  return evaluators.Context(
      config=config,
      data=data,
      test_images=test,
      samples=samples,
      codes=codes,
      log_variance=log_variance,
      reconstructions=reconstructions,
      sampler_fits=fits,
      directory=directory,
  )


def evaluate(config, workdir: str, step: Optional[int] = None) -> Dict:
  """Evaluates the latest (or given) checkpoint in workdir under the training settings it was
  trained under (`inference.trained_config`); returns and writes the results.

  What can be refused (an unreadable record, too many or too few samples) is refused before
  the model is built and before anything is encoded or decoded.
  """
  checkpoint = inference.TrainedCheckpoint(config, workdir, step)
  evaluators.check_num_samples(checkpoint.config)
  data = input_pipeline.load_dataset(checkpoint.config.data)
  samplers.num_samples(checkpoint.config, data)
  trained, model, state = checkpoint.restore()
  context = make_context(trained, model, state, pathlib.Path(workdir) / 'eval', data)
  results = {
      'step': int(state.step),
      'workdir': str(workdir),
      'penalty': trained.penalty.name,
      'config': wae_config.as_dict(trained),
  }
  for evaluator in evaluators.from_config(trained):
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
    lines.append(
        f"  config changed from step {record['step']}: "
        + '; '.join(
            f'{field}: {old!r} -> {new!r}' for field, (old, new) in record['changed'].items()
        )
    )
  return '\n'.join(lines)
