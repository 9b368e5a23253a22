"""Evaluates a checkpoint as the paper does: FID, sharpness, reconstruction, MMD.

`python -m wae_jax.main --config=... --workdir=DIR --mode=evaluate` writes
`DIR/eval/results.json`: every number with the checkpoint step, the number of images and,
for FID, the feature extractor it was computed on; `configs` lists the configs the
checkpoint was trained under, each with its step and the fields it changed. This module is
the driver: it restores the checkpoint, decodes the samples and encodes the test images once
into a Context, and runs the evaluators of wae_jax/evaluation/evaluators.py over it. FID on
InceptionV3 (pool3, the standard FID) is added when its weights are configured
(`eval.inception_weights` or $WAE_JAX_INCEPTION_WEIGHTS; see wae_jax/evaluation/inception.py),
and skipped with a log line otherwise.
"""

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


def _make_encoder(model, state):
  """Jitted images -> (mean codes, log-variances or None): the test set is encoded once.

  visualize.make_eval_fns's encoder keeps only the means; the Gaussian encoder's variances
  come from the same pass here.
  """
  variables = jax.device_get({'params': state.params, 'batch_stats': state.batch_stats})
  return jax.jit(lambda images: model.apply(variables, images, train=False,
                                            method=model.encode))


def make_context(config, model, state) -> evaluators.Context:
  """Everything the evaluators read, from the restored (model, state) and config's data."""
  e = config.eval
  data = input_pipeline.load_dataset(config.data)
  _, decode = visualize.make_eval_fns(model, state, config.data.pixel_range)
  n = min(e.num_samples, len(data.test_images))
  noise = evaluators.prior_noise(config, e.samples_seed_offset, n)
  samples = batching.batched(decode, noise, e.batch_size)
  test = data.test_images[:n]
  codes, log_variance = batching.batched(_make_encoder(model, state), test, e.batch_size)
  reconstructions = batching.batched(decode, codes, e.batch_size)
  return evaluators.Context(config=config, data=data, test_images=test, samples=samples,
                            codes=codes, log_variance=log_variance,
                            reconstructions=reconstructions)


def evaluate(config, workdir: str, step: Optional[int] = None) -> Dict:
  """Evaluates the latest (or given) checkpoint in workdir; returns and writes the results."""
  model, state = inference.restore(config, workdir, step)
  context = make_context(config, model, state)
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
