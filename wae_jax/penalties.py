"""Latent-space penalties and reconstruction costs for Wasserstein Auto-Encoders.

Everything here is a pure function of arrays: no module state and no Flax, so
each function works unchanged under ``jax.jit``, ``jax.grad`` and ``jax.vmap``.
The one exception is REGISTRY, at the end: the latent penalties a config can
name (``config.penalty.name``), one record each, which a researcher extends
with ``register`` (docs/penalties.md).
Argument checks look only at shapes and Python values, which are static under
``jit``, so a bad call fails at trace time with a ``ValueError``.

Conventions: the leading axis is the batch. Codes of any shape ``[n, ...]`` are
flattened to ``[n, d]`` before any kernel or density, and images ``[n, ...]``
are reduced over every non-batch axis, so a per-image cost is a sum over pixels
and channels.

References: Tolstikhin, Bousquet, Gelly, Schoelkopf, "Wasserstein
Auto-Encoders", ICLR 2018: the objective (Section 2), WAE-GAN and
WAE-MMD (Algorithms 1 and 2), the IMQ kernel and the settings (Section 4 and
Appendix C). Kolouri et al., "Sliced Wasserstein Auto-Encoders", ICLR 2019;
Feydy et al., "Interpolating between Optimal Transport and MMD using Sinkhorn
Divergences", AISTATS 2019.
"""

import dataclasses
import math
from typing import Any, Callable, Mapping, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

# Multipliers of the base IMQ scale C that the authors' code sums over.
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
KERNELS = ('rbf', 'imq', 'imq_multiscale')
RECONSTRUCTION_COSTS = ('l2sq', 'l2', 'l1', 'bernoulli')

# Inside the square root of the l2 cost, so its gradient stays finite when a
# reconstruction is exact (the authors' code uses the same constant).
_L2_EPS = 1e-8


def _flatten(x):
  """Reshapes [n, ...] to [n, d]; a kernel only sees a code as a vector."""
  x = jnp.asarray(x)
  if x.ndim == 0:
    raise ValueError('expected an array with a leading batch axis, got a scalar')
  # Not reshape(n, -1), which cannot infer d for an empty batch.
  return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def _sum_per_image(x):
  """Sums over every non-batch axis: [n, ...] -> [n]."""
  return jnp.sum(_flatten(x), axis=1)


def _check_choice(argument, value, allowed):
  if value not in allowed:
    raise ValueError(f'{argument} must be one of {allowed}, got {value!r}')


def _check_same_shape(x, y, x_name='x', y_name='y'):
  # Broadcasting [n, ...] against a differently shaped batch would silently
  # compute a cost between the wrong pairs of images.
  if jnp.shape(x) != jnp.shape(y):
    raise ValueError(
        f'{x_name} and {y_name} must have the same shape, got ' f'{jnp.shape(x)} and {jnp.shape(y)}'
    )


def _check_dims(codes, prior_samples):
  """Flattens both sets to [n, d] and [m, d]; returns them with n, m and d."""
  codes, prior_samples = _flatten(codes), _flatten(prior_samples)
  (n, d), (m, d_prior) = codes.shape, prior_samples.shape
  if d != d_prior:
    raise ValueError(
        'codes and prior_samples must have the same flattened ' f'dimension, got {d} and {d_prior}'
    )
  if n < 1 or m < 1:
    raise ValueError(
        f'need at least 1 code and 1 prior sample, got n={n} codes ' f'and m={m} prior samples'
    )
  return codes, prior_samples, n, m, d


# ----------------------------------------------------------------- kernels ---


def squared_distances(x, y):
  """Pairwise squared Euclidean distances, [n, ...] x [m, ...] -> [n, m].

  Uses ||x||^2 + ||y||^2 - 2 <x, y>, which costs one matrix product instead of
  an [n, m, d] tensor of differences. The expansion cancels large terms, so:
  both sets are first centred on the mean of y (distances do not change, the
  norms that cancel shrink: codes far from the origin keep their precision);
  the product runs at full float32 precision (accelerators may otherwise round
  it to TF32/bfloat16); and the remaining rounding, which can make the result
  slightly negative for (near-)equal points, is clipped at 0.
  """
  x, y = _flatten(x), _flatten(y)
  if x.shape[1] != y.shape[1]:
    raise ValueError(
        'x and y must have the same flattened dimension, got ' f'{x.shape[1]} and {y.shape[1]}'
    )
  centre = jnp.mean(y, axis=0)
  x, y = x - centre, y - centre
  x_norms = jnp.sum(jnp.square(x), axis=1)
  y_norms = jnp.sum(jnp.square(y), axis=1)
  cross = jnp.matmul(x, y.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.maximum(x_norms[:, None] + y_norms[None, :] - 2.0 * cross, 0.0)


def rbf_kernel(sq_dists, scale):
  """Gaussian kernel exp(-||x - y||^2 / scale) from squared distances."""
  return jnp.exp(-sq_dists / scale)


def imq_kernel(sq_dists, scale):
  """Inverse multiquadratics scale / (scale + ||x - y||^2).

  The paper prefers it to the RBF kernel: its heavy tails still give gradients
  for codes far from the prior samples, where an RBF kernel is flat.
  """
  return scale / (scale + sq_dists)


def default_kernel_scale(latent_dim, prior_variance):
  """The paper's base kernel scale C = 2 * d_z * sigma_z^2.

  2 * d_z * sigma_z^2 is the expected squared distance between two independent
  samples of the N(0, sigma_z^2 I) prior, so C matches the typical distance.
  """
  return 2.0 * latent_dim * prior_variance


def _kernel_matrix(sq_dists, kernel, base_scale, scales):
  if kernel == 'rbf':
    return rbf_kernel(sq_dists, base_scale)
  if kernel == 'imq':
    return imq_kernel(sq_dists, base_scale)
  # 'imq_multiscale': no single scale has to be right for every stage of
  # training, so sum the kernel over a range of them.
  return sum(imq_kernel(sq_dists, base_scale * s) for s in scales)


def _mean_off_diagonal(k):
  """Mean of a square matrix over its n(n-1) off-diagonal entries."""
  n = k.shape[0]
  off_diagonal = 1.0 - jnp.eye(n, dtype=k.dtype)
  return jnp.sum(k * off_diagonal) / (n * (n - 1))


def mmd(
    codes,
    prior_samples,
    *,
    kernel='imq_multiscale',
    prior_variance=1.0,
    scale=None,
    scales=IMQ_SCALES,
):
  """Unbiased (U-statistic) estimate of MMD_k^2(Q_Z, P_Z); the WAE-MMD penalty.

  Within-sample terms leave out the diagonal k(z_i, z_i) and average over the
  n(n-1) remaining pairs; the cross term averages over all n * m pairs. That
  makes the estimate unbiased, so for Q_Z = P_Z it scatters around 0 and can be
  negative: that is correct, not a bug.

  Args:
    codes: [n, ...] encoder outputs z~ (flattened to [n, d]).
    prior_samples: [m, ...] samples z of the prior, same flattened d.
    kernel: one of KERNELS. 'imq_multiscale' sums the IMQ kernel over the
      scales C * s for s in ``scales``; 'imq' and 'rbf' use C alone.
    prior_variance: sigma_z^2 of the N(0, sigma_z^2 I) prior; sets the default C.
    scale: base scale C; defaults to default_kernel_scale(d, prior_variance).
    scales: multipliers of C for 'imq_multiscale'.

  Returns:
    A scalar.
  """
  _check_choice('kernel', kernel, KERNELS)
  codes, prior_samples, n, m, d = _check_dims(codes, prior_samples)
  if n < 2 or m < 2:
    raise ValueError(
        'the unbiased MMD needs at least 2 codes and 2 prior '
        f'samples, got n={n} codes and m={m} prior samples'
    )
  base_scale = default_kernel_scale(d, prior_variance) if scale is None else scale

  def k(a, b):
    return _kernel_matrix(squared_distances(a, b), kernel, base_scale, scales)

  return (
      _mean_off_diagonal(k(prior_samples, prior_samples))
      + _mean_off_diagonal(k(codes, codes))
      - 2.0 * jnp.mean(k(codes, prior_samples))
  )


# -------------------------------------------- optimal-transport penalties ---

# Stopping tolerance of the Sinkhorn solver: the L1 error of the coupling's
# marginals, which sum to 1 (ott-jax's default).
SINKHORN_THRESHOLD = 1e-3


def random_directions(rng, num, dim, dtype=jnp.float32):
  """``num`` directions uniform on the unit sphere of R^dim, [num, dim].

  A normalised standard normal vector is uniform on the sphere. Public so that
  a caller (or a test) can see the directions sliced_wasserstein draws.
  """
  v = jax.random.normal(rng, (num, dim), dtype)
  return v / jnp.linalg.norm(v, axis=1, keepdims=True)


def sliced_wasserstein(codes, prior_samples, *, rng, num_projections=50, p=2):
  """Sliced Wasserstein SW_p^p(Q_Z, P_Z) between the two empirical distributions.

  In 1-d, optimal transport between two equal-size uniform samples pairs them
  in sorted order, so W_p^p along a direction costs a sort, not a solver:
  O(L n (d + log n)) for L directions, against the n^2 of MMD or Sinkhorn.
  The estimate averages |a_(i) - b_(i)|^p over the sorted pairs and over
  ``num_projections`` directions random_directions(rng, ...) draws; ``rng`` is
  the only randomness (a fresh key per step gives fresh directions).

  Args:
    codes: [n, ...] encoder outputs z~ (flattened to [n, d]).
    prior_samples: [n, ...] samples z of the prior: as many as codes, same d.
    rng: a JAX PRNG key for the directions.
    num_projections: the number L of random directions.
    p: the power of |a - b| on each line, >= 1.

  Returns:
    A scalar.
  """
  codes, prior_samples, n, m, d = _check_dims(codes, prior_samples)
  if n != m:
    raise ValueError(
        'sliced_wasserstein pairs sorted codes with sorted prior '
        f'samples, so it needs as many of each (n == m), got n={n} '
        f'codes and m={m} prior samples'
    )
  if num_projections < 1:
    raise ValueError(f'num_projections must be >= 1, got {num_projections}')
  if isinstance(p, (int, float)) and p < 1:  # below 1, |x|^p has no slope at 0
    raise ValueError(f'p must be >= 1, got {p}')
  dtype = jnp.result_type(codes, prior_samples, jnp.float32)
  directions = random_directions(rng, num_projections, d, dtype)

  def project(x):  # [n, d] -> [n, L], each column sorted
    # Full float32 precision: accelerators may otherwise round to TF32/bfloat16.
    return jnp.sort(jnp.matmul(x, directions.T, precision=jax.lax.Precision.HIGHEST), axis=0)

  return jnp.mean(jnp.abs(project(codes) - project(prior_samples)) ** p)


def sinkhorn(
    codes, prior_samples, *, epsilon=1.0, max_iterations=200, threshold=SINKHORN_THRESHOLD
):
  """Debiased Sinkhorn divergence S_eps(Q_Z, P_Z), squared Euclidean cost.

  S_eps = OT_eps(a, b) - (OT_eps(a, a) + OT_eps(b, b)) / 2 for the uniform
  empirical measures a (codes) and b (prior samples), computed with ott-jax.
  The entropic term makes OT_eps smooth and cheap (Sinkhorn iterations on an
  [n, m] kernel); subtracting the self terms removes its bias, so S_eps is 0
  for equal sets and tends to W_2^2 as epsilon -> 0 (as epsilon grows, to the
  squared distance between the two means, blind to everything else). W_2^2
  sums over all d dimensions, so S_eps is roughly d times
  sliced_wasserstein(p=2) on the same sets: set lambda accordingly.

  ``epsilon`` is absolute, in the units of the cost ||x - y||^2 (about
  2 d sigma_z^2 between prior samples): smaller is closer to W_2^2 but needs
  more iterations. Gradients follow Danskin's theorem (the potentials are held
  fixed), accurate once the solver has converged; after ``max_iterations`` it
  stops anyway and returns the current, finite estimate.

  Args:
    codes: [n, ...] encoder outputs z~ (flattened to [n, d]).
    prior_samples: [m, ...] samples z of the prior, same flattened d.
    epsilon: entropic regularisation, > 0.
    max_iterations: cap on the Sinkhorn iterations of each of the 3 problems.
    threshold: stop when the marginals' L1 error is below this.

  Returns:
    A scalar.
  """
  # ott-jax (with lineax and equinox) takes ~2 s to import; config.py imports
  # this module, so only a Sinkhorn run pays for it.
  from ott.geometry import pointcloud  # pylint: disable=g-import-not-at-top
  from ott.tools import sinkhorn_divergence  # pylint: disable=g-import-not-at-top

  codes, prior_samples, _, _, _ = _check_dims(codes, prior_samples)
  if isinstance(epsilon, (int, float)) and epsilon <= 0:
    raise ValueError(f'epsilon must be > 0, got {epsilon}')
  if max_iterations < 1:
    raise ValueError(f'max_iterations must be >= 1, got {max_iterations}')
  # The cost is translation invariant: centring on the prior's mean keeps the
  # precision of ||x||^2 + ||y||^2 - 2 <x, y> for codes far from the origin.
  centre = jnp.mean(prior_samples, axis=0)
  with jax.default_matmul_precision('highest'):  # no TF32/bfloat16 rounding
    divergence, _ = sinkhorn_divergence.sinkhorn_divergence(
        pointcloud.PointCloud,
        codes - centre,
        prior_samples - centre,
        epsilon=epsilon,
        solve_kwargs={'max_iterations': max_iterations, 'threshold': threshold},
    )
  return divergence


# ------------------------------------------------------------ WAE-GAN ---


def prior_samples(rng, shape, variance: float):
  """Samples of the prior P_Z = N(0, variance I), float32."""
  return jnp.sqrt(variance) * jax.random.normal(rng, shape, jnp.float32)


def gaussian_log_density(z, variance):
  """log N(z; 0, variance * I) per sample, [n, ...] -> [n], constant included.

  The full constant -d/2 * log(2 pi variance) matters when this is added to
  adversary logits (log_prior_logits): it shifts every logit equally.
  """
  z = _flatten(z)
  d = z.shape[1]
  return -0.5 * jnp.sum(jnp.square(z), axis=1) / variance - 0.5 * d * jnp.log(
      2.0 * math.pi * variance
  )


def log_prior_logits(logits, z, prior_variance):
  """Adds log p_Z(z) to adversary logits: the WAE-GAN "log-prior trick".

  The optimal adversary's logit is log p_Z(z) - log q_Z(z); adding the known
  first term leaves the network only the second to learn. Returns shape [n]:
  the authors' TF code broadcast [n, 1] + [n] into an [n, n] matrix.

  Args:
    logits: [n, 1] or [n] adversary logits.
    z: [n, ...] the latent points the logits were computed on.
    prior_variance: sigma_z^2 of the N(0, sigma_z^2 I) prior.
  """
  logits = jnp.asarray(logits)
  n = jnp.shape(z)[0]
  if logits.shape not in ((n,), (n, 1)):
    raise ValueError(
        f'logits must have shape ({n},) or ({n}, 1) to match z of '
        f'shape {jnp.shape(z)}, got {logits.shape}'
    )
  return logits.reshape(n) + gaussian_log_density(z, prior_variance)


def adversary_loss(prior_logits, code_logits):
  """Adversary loss: cross-entropy of prior samples as 1 and codes as 0.

  Equals -mean log D(z) - mean log(1 - D(z~)), so descending it ascends the
  adversary objective of Algorithm 1. Computed from logits, which avoids the
  log(0) NaNs of probabilities. The caller multiplies by lambda.
  """
  prior_logits, code_logits = jnp.asarray(prior_logits), jnp.asarray(code_logits)
  real = optax.sigmoid_binary_cross_entropy(prior_logits, jnp.ones_like(prior_logits))
  fake = optax.sigmoid_binary_cross_entropy(code_logits, jnp.zeros_like(code_logits))
  return jnp.mean(real) + jnp.mean(fake)


def adversary_accuracy(prior_logits, code_logits):
  """Fraction of prior samples and codes the adversary classifies correctly.

  A logit > 0 means "prior". Near 0.5 means Q_Z fools the adversary; near 1
  means the penalty is far from matched.
  """
  prior_logits, code_logits = jnp.asarray(prior_logits), jnp.asarray(code_logits)
  correct = jnp.sum(prior_logits > 0) + jnp.sum(code_logits <= 0)
  return correct / (prior_logits.size + code_logits.size)


def encoder_adversarial_loss(code_logits):
  """Non-saturating encoder loss -mean log D(z~), from logits.

  Pushing log D(z~) up, rather than log(1 - D(z~)) down, keeps the encoder's
  gradient large while the adversary still wins easily.
  """
  code_logits = jnp.asarray(code_logits)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(code_logits, jnp.ones_like(code_logits)))


# ------------------------------------------------------------- VAE ---


def gaussian_kl(mean, log_variance, prior_variance=1.0):
  """KL(N(mean, diag exp(log_variance)) || N(0, prior_variance I)).

  The VAE baseline's penalty: summed over latent dimensions (all non-batch
  axes), averaged over the batch. Taking the log-variance keeps the encoder's
  variance positive without a constraint.
  """
  _check_same_shape(mean, log_variance, 'mean', 'log_variance')
  per_dim = 0.5 * (
      (jnp.exp(log_variance) + jnp.square(mean)) / prior_variance
      - 1.0
      - log_variance
      + jnp.log(prior_variance)
  )
  return jnp.mean(_sum_per_image(per_dim))


# ----------------------------------------------------- reconstruction ---


def per_image_squared_error(x, y):
  """||x - y||^2 summed over every non-batch axis, [n, ...] -> [n]."""
  _check_same_shape(x, y)
  return _sum_per_image(jnp.square(jnp.asarray(x) - jnp.asarray(y)))


def squared_l2_cost(x, y, scale=1.0):
  """The paper's cost c(x, y) = ||x - y||^2, batch mean times ``scale``."""
  return scale * jnp.mean(per_image_squared_error(x, y))


def l2_cost(x, y, scale=1.0):
  """c(x, y) = ||x - y||, batch mean times ``scale``.

  A small epsilon inside the square root keeps the gradient finite (zero) at
  an exact reconstruction, where sqrt has an infinite derivative.
  """
  return scale * jnp.mean(jnp.sqrt(per_image_squared_error(x, y) + _L2_EPS))


def l1_cost(x, y, scale=1.0):
  """c(x, y) = ||x - y||_1, batch mean times ``scale``."""
  _check_same_shape(x, y)
  return scale * jnp.mean(_sum_per_image(jnp.abs(jnp.asarray(x) - jnp.asarray(y))))


def bernoulli_cost(x, logits, scale=1.0):
  """Bernoulli negative log-likelihood of targets x in [0, 1] under decoder logits.

  Summed over pixels, batch mean times ``scale``; the VAE baseline's MNIST
  decoder. Computed from logits for numerical stability.
  """
  _check_same_shape(x, logits, 'x', 'logits')
  logits = jnp.asarray(logits)
  per_pixel = optax.sigmoid_binary_cross_entropy(logits, jnp.asarray(x))
  return scale * jnp.mean(_sum_per_image(per_pixel))


_COST_FNS = {
    'l2sq': squared_l2_cost,
    'l2': l2_cost,
    'l1': l1_cost,
    'bernoulli': bernoulli_cost,
}


def reconstruction_cost(x, y, *, name='l2sq', scale=1.0):
  """Dispatches to the cost ``name`` in RECONSTRUCTION_COSTS.

  For 'bernoulli', ``y`` are the decoder's logits, not images.
  """
  _check_choice('name', name, RECONSTRUCTION_COSTS)
  return _COST_FNS[name](x, y, scale=scale)


# ------------------------------------------------------------ the registry ---


class PenaltyInputs(NamedTuple):
  """What a train step hands a latent penalty: a batch of codes, as many prior samples."""

  codes: Any  # [n, d_z] the encoder's codes (sampled, if it is Gaussian)
  prior_samples: Any  # [n, d_z] from N(0, prior_variance I)
  rng: Any  # the penalty's own random numbers, fresh every step
  prior_variance: float  # config.model.prior_variance
  mean: Optional[Any] = None  # a Gaussian encoder's means and log-variances, else None
  log_variance: Optional[Any] = None
  code_logits: Optional[Any] = None  # needs_adversary: the adversary's [n] logits on the codes


@dataclasses.dataclass(frozen=True)
class LatentPenalty:
  """One latent penalty D_Z: everything that depends on which one config.penalty.name names.

  `fn(inputs, settings)` is D_Z before lambda, a scalar; `settings` is config.penalty, of
  which it reads `fields` (lambda, `lam`, is the step's). `compiled_fields` are those of
  `fields` whose value changes the compiled step (the others could be passed as arrays: a
  sweep's trials that differ only in them share one compilation). `choices` and `checks`
  are what `wae_jax.config.validate` asks of the fields' values.
  """

  name: str  # config.penalty.name
  fn: Callable[[PenaltyInputs, Any], Any]
  display_name: str  # in reports and figures: 'MMD', 'KL', ...
  fields: Tuple[str, ...] = ()
  compiled_fields: Tuple[str, ...] = ()
  choices: Mapping[str, Tuple[Any, ...]] = dataclasses.field(default_factory=dict)
  checks: Mapping[str, Tuple[Callable[[Any], bool], str]] = dataclasses.field(
      default_factory=dict
  )  # field -> (ok(value), what a value must be)
  needs_adversary: bool = False  # WAE-GAN: the step trains a latent adversary beside the
  # auto-encoder and hands fn its logits on the codes
  needs_gaussian_encoder: bool = False  # fn reads the encoder's mean and log_variance
  pretrains: bool = True  # train.pretrain_steps moves Q_Z onto the prior first
  min_batch_size: int = 1  # codes fn needs in a batch,
  min_batch_why: str = ''  # and why, for the message that refuses fewer

  def __post_init__(self):
    for group, names in (
        ('compiled_fields', self.compiled_fields),
        ('choices', tuple(self.choices)),
        ('checks', tuple(self.checks)),
    ):
      unknown = sorted(set(names) - set(self.fields))
      if unknown:
        raise ValueError(
            f'penalty {self.name!r}: {group} names {unknown}, which are not '
            f'among its fields {self.fields}'
        )


def _finite_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value) -> bool:
  return isinstance(value, int) and value >= 1


def _mmd_penalty(x: PenaltyInputs, settings):
  return mmd(
      x.codes,
      x.prior_samples,
      kernel=settings.kernel,
      prior_variance=x.prior_variance,
      scale=settings.kernel_scale,
  )


def _adversarial_penalty(x: PenaltyInputs, settings):
  del settings  # log_prior_trick and gan_update act on the adversary's logits and update
  return encoder_adversarial_loss(x.code_logits)


def _kl_penalty(x: PenaltyInputs, settings):
  del settings
  return gaussian_kl(x.mean, x.log_variance, x.prior_variance)


def _swd_penalty(x: PenaltyInputs, settings):
  return sliced_wasserstein(
      x.codes,
      x.prior_samples,
      rng=x.rng,
      num_projections=settings.num_projections,
      p=settings.swd_p,
  )


def _sinkhorn_penalty(x: PenaltyInputs, settings):
  return sinkhorn(
      x.codes,
      x.prior_samples,
      epsilon=settings.sinkhorn_epsilon,
      max_iterations=settings.sinkhorn_max_iterations,
  )


GAN_UPDATES = ('simultaneous', 'alternating')

# config.penalty.name -> its record, in the order configs and messages list them.
REGISTRY = {}


def register(penalty: LatentPenalty) -> LatentPenalty:
  """Makes `penalty` nameable as config.penalty.name (docs/penalties.md); returns it.

  Registering the same record again does nothing (a module imported twice); another record
  under a taken name raises ValueError.
  """
  known = REGISTRY.get(penalty.name)
  if known is not None and known != penalty:
    raise ValueError(
        f'a latent penalty named {penalty.name!r} is already registered: ' 'choose another name'
    )
  REGISTRY[penalty.name] = penalty
  return penalty


def get(name: str) -> LatentPenalty:
  """The record config.penalty.name = `name` names; ValueError naming the registered ones."""
  if name not in REGISTRY:
    raise ValueError(
        f'unknown latent penalty {name!r}; registered: ' f'{", ".join(map(repr, REGISTRY))}'
    )
  return REGISTRY[name]


def fields_not_in_step() -> frozenset:
  """The config fields ('penalty.<field>') that some penalty reads and none compiles into its
  step: a sweep's trials that differ only in them can share one compiled step."""
  read = {f for p in REGISTRY.values() for f in p.fields}
  compiled = {f for p in REGISTRY.values() for f in p.compiled_fields}
  return frozenset(f'penalty.{f}' for f in read - compiled)


register(
    LatentPenalty(
        name='mmd',
        fn=_mmd_penalty,
        display_name='MMD',
        fields=('kernel', 'kernel_scale'),
        compiled_fields=('kernel',),
        choices={'kernel': KERNELS},
        checks={
            'kernel_scale': (
                lambda v: v is None or (_finite_number(v) and v > 0),
                "must be > 0 and finite, or None (the paper's C = 2 * latent_dim "
                '* prior_variance)',
            )
        },
        min_batch_size=2,
        min_batch_why='the MMD U-statistic needs two codes',
    )
)
register(
    LatentPenalty(
        name='gan',
        fn=_adversarial_penalty,
        display_name='adversarial',
        fields=('log_prior_trick', 'gan_update'),
        compiled_fields=('log_prior_trick', 'gan_update'),
        choices={'gan_update': GAN_UPDATES},
        needs_adversary=True,
    )
)
register(
    LatentPenalty(
        name='vae', fn=_kl_penalty, display_name='KL', needs_gaussian_encoder=True, pretrains=False
    )
)
register(
    LatentPenalty(
        name='swd',
        fn=_swd_penalty,
        display_name='sliced Wasserstein',
        fields=('num_projections', 'swd_p'),
        compiled_fields=('num_projections', 'swd_p'),
        checks={
            'num_projections': (_positive_int, 'must be >= 1'),
            'swd_p': (lambda v: v >= 1, 'must be >= 1 (SW_p is a distance for p >= 1)'),
        },
    )
)
register(
    LatentPenalty(
        name='sinkhorn',
        fn=_sinkhorn_penalty,
        display_name='Sinkhorn',
        fields=('sinkhorn_epsilon', 'sinkhorn_max_iterations'),
        compiled_fields=('sinkhorn_epsilon', 'sinkhorn_max_iterations'),
        checks={
            'sinkhorn_epsilon': (lambda v: _finite_number(v) and v > 0, 'must be > 0 and finite'),
            'sinkhorn_max_iterations': (_positive_int, 'must be >= 1'),
        },
    )
)
