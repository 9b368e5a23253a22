"""The evaluators: one object per metric family, each turning a shared Context into entries.

As big_vision's evaluators: each has a `name` and a `run` method, and knows nothing of the
others. What they all read (the decoded samples, the test images, their codes and
reconstructions) is computed once into a `Context` by evaluate.py, so adding a metric is
adding a class here and a line in `from_config`, and no image is decoded twice.
"""

import dataclasses
from typing import Any, Dict, List, Optional, Protocol

import jax
import ml_collections
import numpy as np

from wae_jax import penalties
from wae_jax.evaluation import fid
from wae_jax.evaluation import metrics

Entries = Dict[str, Dict[str, Any]]  # results.json key -> {'value': ..., what it was over}

# Reconstructions are clipped this far inside (0, 1) before the Bernoulli cost's logits.
_BERNOULLI_CLIP = 1e-6


@dataclasses.dataclass(frozen=True)
class Context:
  """What the evaluators read, computed once per evaluation (see evaluate.make_context)."""
  config: ml_collections.ConfigDict
  data: Any  # the dataset: FID's real-data floor reads its training images
  test_images: np.ndarray  # the first n test images
  samples: np.ndarray  # n images decoded from prior noise
  codes: Optional[np.ndarray] = None  # the test images' mean codes
  log_variance: Optional[np.ndarray] = None  # their Gaussian encoder's, else None
  reconstructions: Optional[np.ndarray] = None  # the test images decoded from their codes

  @property
  def num_images(self) -> int:
    return len(self.test_images)


class Evaluator(Protocol):
  """A metric family: `run` returns its entries of results.json."""
  name: str

  def run(self, context: Context) -> Entries:
    ...


def prior_noise(config, seed_offset: int, count: int) -> np.ndarray:
  """count draws of the prior from PRNGKey(config.seed + seed_offset): the same every time."""
  rng = jax.random.PRNGKey(config.seed + seed_offset)
  return np.asarray(penalties.prior_samples(rng, (count, config.model.latent_dim),
                                            config.model.prior_variance))


class Sharpness:
  """The paper's blurriness measure, of samples, reconstructions and (for scale) real images."""
  name = 'sharpness'

  def run(self, context: Context) -> Entries:
    k = min(context.config.eval.sharpness_images, context.num_images)
    pixel_range = tuple(context.config.data.pixel_range)
    sets = (('samples', context.samples), ('reconstructions', context.reconstructions),
            ('test_images', context.test_images))
    return {f'sharpness_{name}': {'value': metrics.sharpness(images[:k], pixel_range),
                                  'num_images': k}
            for name, images in sets}


class Reconstruction:
  """How well test images come back: the training cost and, comparable across costs, MSE."""
  name = 'reconstruction'

  def run(self, context: Context) -> Entries:
    cost = context.config.cost
    test, reconstructions = context.test_images, context.reconstructions
    outputs = reconstructions
    if cost.name == 'bernoulli':  # The Bernoulli cost needs logits: invert the sigmoid.
      clipped = np.clip(reconstructions, _BERNOULLI_CLIP, 1 - _BERNOULLI_CLIP)
      outputs = np.log(clipped) - np.log1p(-clipped)
    value = penalties.reconstruction_cost(test, outputs, name=cost.name, scale=cost.scale)
    return {
        'test_reconstruction_cost': {'value': float(value), 'num_images': context.num_images,
                                     'cost': cost.name, 'scale': cost.scale},
        'test_mse_per_pixel': {'value': float(np.mean((test - reconstructions)**2)),
                               'num_images': context.num_images},
    }


class LatentMMD:
  """How far the test codes are from the prior: the WAE-MMD penalty's own estimate."""
  name = 'latent_mmd'

  def run(self, context: Context) -> Entries:
    config = context.config
    m = min(config.eval.mmd_codes, len(context.codes))
    prior = prior_noise(config, config.eval.mmd_prior_seed_offset, m)
    value = penalties.mmd(context.codes[:m], prior, kernel=config.penalty.kernel,
                          prior_variance=config.model.prior_variance,
                          scale=config.penalty.kernel_scale)
    return {'test_codes_mmd': {'value': float(value), 'num_codes': m,
                               'kernel': config.penalty.kernel}}


class EncoderVariance:
  """A Gaussian encoder's variance per latent dimension, averaged over the test images.

  Near 0, the encoder went deterministic; near the prior's, that dimension carries nothing.
  """
  name = 'encoder_variance'

  def run(self, context: Context) -> Entries:
    return {'encoder_variance_per_dim': {
        'value': np.exp(context.log_variance).mean(axis=0).tolist(),
        'num_images': context.num_images}}


@dataclasses.dataclass(frozen=True)
class FID:
  """FID and its real-data floor on the features of fid.EXTRACTORS[extractor].

  No entries when the extractor is not available (Inception without its weights).
  """
  extractor: str

  @property
  def name(self) -> str:
    return f'fid_{self.extractor}'

  def run(self, context: Context) -> Entries:
    config = context.config
    extractor = fid.EXTRACTORS[self.extractor](config, context.data)
    if extractor is None:
      return {}
    n = context.num_images
    return fid.fid_entries(extractor, fid.RealStatistics(fid.cache_dir(config)),
                           config.data.name, context.samples, context.test_images,
                           context.data.train_images[:n])


def from_config(config) -> List[Evaluator]:
  """The evaluators that apply to config's run, in the order results.json lists them."""
  evaluators = [Sharpness(), Reconstruction(), LatentMMD()]
  if config.model.gaussian_encoder:
    evaluators.append(EncoderVariance())
  if config.data.name == 'mnist':  # The classifier knows digits only.
    evaluators.append(FID(fid.MNIST_CLASSIFIER))
  evaluators.append(FID(fid.INCEPTION))  # Skipped, with a log line, without its weights.
  return evaluators
