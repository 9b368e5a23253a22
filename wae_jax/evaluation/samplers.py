"""Where evaluation's samples come from: the prior, or a density fitted to training codes.

A WAE is trained so that its codes match the prior P_Z, and its samples decode prior draws.
RAE (Ghosh et al. 2020) and pythae sample "ex post" instead: they fit a Gaussian mixture to
the training images' codes and decode draws from it, which shows how much of the FID is the
gap between the codes and the prior rather than the decoder. `eval.sampler` picks prior,
gmm or both; each sampler is a function (config, encode, data) -> Draws, and the
evaluators compute the same sample metrics on each sampler's decoded draws.
"""

import dataclasses
import time
from typing import Any, Callable, Dict, List

from absl import logging
import jax
import numpy as np

from wae_jax import errors
from wae_jax import penalties

PRIOR = 'prior'
GMM = 'gmm'
BOTH = 'both'

# encode(images, limit=None): the mean codes of the first `limit` images, batched over devices.
Encode = Callable[..., np.ndarray]


@dataclasses.dataclass(frozen=True)
class Draws:
  """A sampler's codes, and what results.json records about the sampler (its fit)."""

  codes: np.ndarray  # [num_samples, latent_dim]
  entries: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)


def names(config) -> List[str]:
  """The samplers eval.sampler asks for, the prior's first."""
  return [PRIOR, GMM] if config.eval.sampler == BOTH else [config.eval.sampler]


def key_suffix(sampler: str) -> str:
  """What a sampler's results keys end with: nothing for the prior (the keys WAE runs have
  always had), '_gmm' for the mixture."""
  return '' if sampler == PRIOR else f'_{sampler}'


def num_samples(config, data) -> int:
  """Samples per sampler: eval.num_samples, compared with as many test images. ConfigError
  if the test set has fewer: a smaller FID than asked for is not quietly computed."""
  count, available = config.eval.num_samples, len(data.test_images)
  if count > available:
    raise errors.ConfigError(
        f'config.eval.num_samples={count} is more than the {available} {config.data.name} test '
        f'images that the samples are compared with; allowed: at most {available}'
    )
  return count


def prior_noise(config, seed_offset: int, count: int) -> np.ndarray:
  """count draws of the prior from PRNGKey(config.seed + seed_offset): the same every time."""
  rng = jax.random.PRNGKey(config.seed + seed_offset)
  return np.asarray(
      penalties.prior_samples(rng, (count, config.model.latent_dim), config.model.prior_variance)
  )


def prior(config, encode: Encode, data) -> Draws:
  """The WAE's own sampler: draws of P_Z from seed + eval.samples_seed_offset."""
  del encode  # Nothing is fitted.
  return Draws(prior_noise(config, config.eval.samples_seed_offset, num_samples(config, data)))


def gmm(config, encode: Encode, data) -> Draws:
  """Draws of a Gaussian mixture fitted to the mean codes of the first eval.gmm_train_images
  training images; the fit and the draws follow from seed + eval.gmm_seed_offset."""
  e = config.eval
  seed = config.seed + e.gmm_seed_offset
  codes = np.asarray(encode(data.train_images, e.gmm_train_images), np.float64)
  if len(codes) < e.gmm_components:
    raise errors.ConfigError(
        f'config.eval.gmm_components={e.gmm_components} is more than the {len(codes)} '
        'training codes the mixture is fitted to; allowed: at most that many'
    )
  from sklearn import mixture  # pylint: disable=g-import-not-at-top  (0.8 s; only the GMM needs it)

  start = time.perf_counter()
  fitted = mixture.GaussianMixture(
      n_components=e.gmm_components, covariance_type=e.gmm_covariance, random_state=seed
  )
  fitted.fit(codes)
  seconds = time.perf_counter() - start
  log_likelihood = float(fitted.score(codes))
  logging.info(
      'GMM sampler: %d components (%s covariance) fitted to %d training codes in '
      '%.2f s (%d EM iterations, converged: %s); average log-likelihood %.4f',
      e.gmm_components,
      e.gmm_covariance,
      len(codes),
      seconds,
      fitted.n_iter_,
      fitted.converged_,
      log_likelihood,
  )
  count = num_samples(config, data)
  draws, _ = fitted.sample(count)  # grouped by component: shuffled so any prefix is fair
  draws = draws[np.random.default_rng(seed).permutation(count)].astype(np.float32)
  entry = {
      'value': log_likelihood,
      'num_codes': len(codes),
      'components': e.gmm_components,
      'covariance': e.gmm_covariance,
      'seed': seed,
      'iterations': int(fitted.n_iter_),
      'converged': bool(fitted.converged_),
  }
  return Draws(draws, {'gmm_train_codes_log_likelihood': entry})


# eval.sampler's names -> sampler(config, encode, data) -> Draws.
SAMPLERS: Dict[str, Callable[..., Draws]] = {PRIOR: prior, GMM: gmm}
