"""The evaluators: one object per metric family, each turning a shared Context into entries.

As big_vision's evaluators: each has a `name` and a `run` method, and knows nothing of the
others. What they all read (each sampler's decoded samples, the test images, their codes and
reconstructions) is computed once into a `Context` by evaluate.py, so adding a metric is
adding a class here and a line in `from_config`, and no image is decoded twice. A metric of
samples is computed by `per_sampler` once for each sampler (samplers.py), under the keys it
has for the prior plus the sampler's suffix ('_gmm').
"""

import dataclasses
import pathlib
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Tuple

from absl import logging
import ml_collections
import numpy as np

from wae_jax import data as datasets
from wae_jax import errors
from wae_jax import penalties
from wae_jax import visualize
from wae_jax.evaluation import fid
from wae_jax.evaluation import metrics
from wae_jax.evaluation import samplers

Entries = Dict[str, Dict[str, Any]]  # results.json key -> {'value': ..., what it was over}

# Reconstructions are clipped this far inside (0, 1) before the Bernoulli cost's logits.
_BERNOULLI_CLIP = 1e-6


@dataclasses.dataclass(frozen=True)
class Context:
  """What the evaluators read, computed once per evaluation (see evaluate.make_context)."""

  config: ml_collections.ConfigDict
  data: Any  # the dataset: FID's real-data floor reads its training images
  test_images: np.ndarray  # the first n test images
  # sampler name (samplers.PRIOR, GMM) -> the n images decoded from its codes; a bare array
  # is the prior's samples.
  samples: Mapping[str, np.ndarray]
  codes: Optional[np.ndarray] = None  # the test images' mean codes
  log_variance: Optional[np.ndarray] = None  # their Gaussian encoder's, else None
  reconstructions: Optional[np.ndarray] = None  # the test images decoded from their codes
  sampler_fits: Entries = dataclasses.field(default_factory=dict)  # what samplers fitted
  directory: Optional[pathlib.Path] = None  # where pictures are written (DIR/eval); None: none

  def __post_init__(self):
    if not isinstance(self.samples, Mapping):
      object.__setattr__(self, 'samples', {samplers.PRIOR: self.samples})

  @property
  def num_images(self) -> int:
    return len(self.test_images)


class Evaluator(Protocol):
  """A metric family: `run` returns its entries of results.json."""

  name: str

  def run(self, context: Context) -> Entries:
    ...


def per_sampler(context: Context, entries: Callable[[np.ndarray], Entries]) -> Entries:
  """entries(samples) for each sampler's samples, keys suffixed by samplers.key_suffix and
  each entry labelled with its sampler: one metric's code serves every sampler."""
  out = {}
  for sampler, samples in context.samples.items():
    suffix = samplers.key_suffix(sampler)
    out.update(
        {key + suffix: {**entry, 'sampler': sampler} for key, entry in entries(samples).items()}
    )
  return out


class Sharpness:
  """The paper's blurriness measure, of samples, reconstructions and (for scale) real images."""

  name = 'sharpness'

  def run(self, context: Context) -> Entries:
    k = min(context.config.eval.sharpness_images, context.num_images)
    pixel_range = tuple(context.config.data.pixel_range)
    entry = lambda images: {'value': metrics.sharpness(images[:k], pixel_range), 'num_images': k}
    out = per_sampler(context, lambda samples: {'sharpness_samples': entry(samples)})
    out.update(
        {
            f'sharpness_{name}': entry(images)
            for name, images in (
                ('reconstructions', context.reconstructions),
                ('test_images', context.test_images),
            )
        }
    )
    return out


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
        'test_reconstruction_cost': {
            'value': float(value),
            'num_images': context.num_images,
            'cost': cost.name,
            'scale': cost.scale,
        },
        'test_mse_per_pixel': {
            'value': float(np.mean((test - reconstructions) ** 2)),
            'num_images': context.num_images,
        },
    }


class LatentMMD:
  """How far the test codes are from the prior: the WAE-MMD penalty's own estimate."""

  name = 'latent_mmd'

  def run(self, context: Context) -> Entries:
    config = context.config
    m = min(config.eval.mmd_codes, len(context.codes))
    prior = samplers.prior_noise(config, config.eval.mmd_prior_seed_offset, m)
    value = penalties.mmd(
        context.codes[:m],
        prior,
        kernel=config.penalty.kernel,
        prior_variance=config.model.prior_variance,
        scale=config.penalty.kernel_scale,
    )
    return {
        'test_codes_mmd': {'value': float(value), 'num_codes': m, 'kernel': config.penalty.kernel}
    }


class EncoderVariance:
  """A Gaussian encoder's variance per latent dimension, averaged over the test images.

  Near 0, the encoder went deterministic; near the prior's, that dimension carries nothing.
  """

  name = 'encoder_variance'

  def run(self, context: Context) -> Entries:
    return {
        'encoder_variance_per_dim': {
            'value': np.exp(context.log_variance).mean(axis=0).tolist(),
            'num_images': context.num_images,
        }
    }


@dataclasses.dataclass(frozen=True)
class FID:
  """FID of each sampler's samples, and the real-data floor, on the features of
  fid.EXTRACTORS[extractor].

  The floor (training against test images) is the same for every sampler: one entry,
  without a suffix. No entries when the extractor is not available (Inception without its
  weights).
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
    reference = fid.Reference(
        extractor,
        fid.RealStatistics(fid.cache_dir(config)),
        config.data.name,
        context.test_images,
        context.data.train_images[: context.num_images],
    )
    return {**per_sampler(context, reference.fid_entries), **reference.floor_entries()}


class SamplerFit:
  """What the samplers fitted: the GMM's settings and average log-likelihood on its codes."""

  name = 'sampler_fit'

  def run(self, context: Context) -> Entries:
    return dict(context.sampler_fits)


class SampleGrids:
  """A picture of each sampler's first eval.grid_samples samples, samples_<sampler>.png in
  the context's directory: what its sample metrics were computed on."""

  name = 'sample_grids'

  def run(self, context: Context) -> Entries:
    if context.directory is None:
      return {}
    config = context.config
    k = min(config.eval.grid_samples, context.num_images)
    for sampler, samples in context.samples.items():
      grid = visualize.image_grid(samples[:k], config.data.pixel_range)
      path = visualize.save_png(context.directory / f'samples_{sampler}.png', grid)
      logging.info('Wrote %s', path)
    return {}


def fid_extractors(config) -> List[str]:
  """The features config's samples are scored on (fid.EXTRACTORS keys): the data set's own
  (its record's fid_extractor, e.g. the MNIST classifier, which knows digits only), then
  Inception's, which is skipped with a log line without its weights."""
  dataset = datasets.get(config.data.name)
  own = dataset.fid_extractor
  if own is not None and own not in fid.EXTRACTORS:
    raise errors.ConfigError(
        f'data set {dataset.name!r} is scored by fid_extractor={own!r}, '
        'which is not a feature extractor; allowed: '
        f'{", ".join(map(repr, fid.EXTRACTORS))}, or None (Inception only)'
    )
  return list(dict.fromkeys(name for name in (own, fid.INCEPTION) if name is not None))


def from_config(config) -> List[Evaluator]:
  """The evaluators that apply to config's run, in the order results.json lists them."""
  evaluators = [Sharpness(), Reconstruction(), LatentMMD()]
  if config.model.gaussian_encoder:
    evaluators.append(EncoderVariance())
  evaluators += [FID(name) for name in fid_extractors(config)]
  evaluators += [SamplerFit(), SampleGrids()]
  return evaluators


def min_num_samples(config) -> Tuple[int, str]:
  """(n, why): the fewest samples (eval.num_samples, also the test images encoded) that
  config's evaluators estimate from. The MMD of the test codes averages over pairs; an FID
  needs more images than its features have dimensions (fid.min_images), or their covariance
  is singular and the FID, below its own real-data floor, means nothing."""
  needs = [(2, 'the MMD of the test codes averages over pairs of them')]
  for evaluator in from_config(config):
    if isinstance(evaluator, FID) and fid.configured(evaluator.extractor, config):
      needs.append(
          (
              fid.min_images(evaluator.extractor),
              f'the FID on {evaluator.extractor} features '
              f'({fid.FEATURE_DIMS[evaluator.extractor]}-d) needs more images than '
              'dimensions, or their covariance is singular and the FID meaningless',
          )
      )
  return max(needs)


def check_num_samples(config) -> None:
  """ConfigError unless eval.num_samples is at least min_num_samples: before any work."""
  needed, why = min_num_samples(config)
  count = config.eval.num_samples
  if count < needed:
    raise errors.ConfigError(
        f'config.eval.num_samples={count} is too few: {why}; allowed: at '
        f'least {needed} (and at most the test images)'
    )
