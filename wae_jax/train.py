"""Training: the train state, one jitted step per objective, and the loop around it.

The step is a pure function of (state, images); its randomness is `fold_in(key, step)`, and
the data order is a function of (seed, step), so a run resumed from a checkpoint continues
exactly as if it had never stopped. It is jitted over the global batch on a device mesh
(`wae_jax.parallel`), so one device and many compute the same estimator.
"""

import contextlib
import itertools
import pathlib
from typing import Any, Callable, Dict, Tuple

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from wae_jax import checkpoints
from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import files
from wae_jax import input_pipeline
from wae_jax import models
from wae_jax import parallel
from wae_jax import penalties
from wae_jax import visualize
from wae_jax.data import tfds_source


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray
  params: Any  # {'encoder': ..., 'decoder': ...}
  batch_stats: Any
  opt_state: Any
  adversary_params: Any  # {} unless the penalty needs_adversary (WAE-GAN)
  adversary_opt_state: Any
  nonfinite_steps: jnp.ndarray  # consecutive steps skipped: loss, gradient or update not finite


def num_train_steps(config, steps_per_epoch: int) -> int:
  """train.num_steps when set, else num_epochs of the data."""
  if config.train.num_steps is not None:
    return config.train.num_steps
  return config.train.num_epochs * steps_per_epoch


def learning_rate_schedule(base_rate: float, lr_decay, steps_per_epoch: int) -> optax.Schedule:
  """The paper's piecewise-constant schedule; `lr_decay` holds (epoch, factor) pairs."""
  return optax.piecewise_constant_schedule(
      base_rate, {int(epoch * steps_per_epoch): factor for epoch, factor in lr_decay}
  )


def optimizers(config, steps_per_epoch: int):
  """(auto-encoder optimizer, its schedule, adversary optimizer): Adam with beta1 = 0.5."""
  t = config.train
  schedule = learning_rate_schedule(t.learning_rate, t.lr_decay, steps_per_epoch)
  adversary_schedule = learning_rate_schedule(
      t.adversary_learning_rate, t.lr_decay, steps_per_epoch
  )
  return (
      optax.adam(schedule, b1=t.adam_b1),
      schedule,
      optax.adam(adversary_schedule, b1=t.adam_b1),
  )


def create_train_state(config, rng, steps_per_epoch: int) -> TrainState:
  model = models.build_autoencoder(config)
  ae_rng, adversary_rng = jax.random.split(rng)
  images = jnp.zeros((2,) + tuple(config.data.image_shape), jnp.float32)
  # Jitted: running the layers eagerly op by op takes seconds.
  variables = jax.jit(lambda rng, x: model.init(rng, x, train=False))(ae_rng, images)
  ae_tx, _, adversary_tx = optimizers(config, steps_per_epoch)
  adversary_params = {}
  if penalties.get(config.penalty.name).needs_adversary:
    codes = jnp.zeros((1, config.model.latent_dim), jnp.float32)
    adversary_params = jax.jit(models.build_adversary(config).init)(adversary_rng, codes)['params']
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=variables['params'],
      batch_stats=variables['batch_stats'],
      opt_state=ae_tx.init(variables['params']),
      adversary_params=adversary_params,
      adversary_opt_state=adversary_tx.init(adversary_params),
      nonfinite_steps=jnp.zeros((), jnp.int32),
  )


class OutOfMemoryError(errors.WaeError, MemoryError):
  """A config whose training cannot fit in the memory of this machine's devices."""


def check_memory(config, need: int, what: str, mesh, activations: bool) -> None:
  """OutOfMemoryError if `need` bytes per device (`what` says of what; `activations`: they
  count) exceed what each device of the mesh can still allocate: refused in one line, before
  the allocation fails deep in XLA. Nothing is checked where the free memory is unknown."""
  free = parallel.free_memory_bytes(mesh)
  if free is None or need <= free:
    return
  gib = 2**30
  device = mesh.devices.flat[0]
  where = (
      f"this machine's memory shared by {mesh.local_mesh.size} CPU devices"
      if device.platform == 'cpu' and mesh.local_mesh.size > 1
      else "this machine's memory"
      if device.platform == 'cpu'
      else f'each {device.device_kind}'
  )
  raise OutOfMemoryError(
      f'this config needs at least {need / gib:.2f} GiB per device ({what}), more than the '
      f'{free / gib:.2f} GiB free in {where}: lower config.model.width '
      f'({config.model.width:g}; the state grows about with its square)'
      + (
          f' or config.train.batch_size ({config.train.batch_size}; the activations grow with it)'
          if activations
          else ''
      )
      + ', or train where there is more memory (python -m '
      "wae_jax.accelerators.aot gives a step's memory on a TPU or GPU without one)"
  )


def prior_moment_gaps(codes, prior_variance: float) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """How far Q_Z's batch mean and covariance are from the prior's (L2 and Frobenius norms)."""
  mean = codes.mean(axis=0)
  centred = codes - mean
  cov = centred.T @ centred / (codes.shape[0] - 1)
  eye = jnp.eye(codes.shape[1], dtype=codes.dtype)
  return jnp.linalg.norm(mean), jnp.linalg.norm(cov - prior_variance * eye)


def encoder_inputs(rng, images, noise_std: float):
  """The paper's heuristic: small truncated Gaussian pixel noise on what the encoder sees."""
  if noise_std <= 0:
    return images
  return images + noise_std * jax.random.truncated_normal(rng, -2.0, 2.0, images.shape)


def all_finite(*trees) -> jnp.ndarray:
  leaves = jax.tree_util.tree_leaves(trees)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def adversary_logits(config, adversary, adversary_params, z):
  """WAE-GAN's adversary on codes z -> [n] logits, with log p_Z(z) added under the log-prior
  trick."""
  logits = adversary.apply({'params': adversary_params}, z)
  if config.penalty.log_prior_trick:
    return penalties.log_prior_logits(logits, z, config.model.prior_variance)
  return logits[:, 0]


def latent_penalty(config, codes, z_prior, rng, *, code_logits=None, mean=None, log_variance=None):
  """The divergence config.penalty.name puts between a batch of codes and as many prior
  samples (before lambda): its registered function (`penalties.REGISTRY`), as the step and
  the benchmark compute it.

  rng: the penalty's random numbers. `code_logits`: the adversary's on the codes, for a
  penalty that needs_adversary; `mean`, `log_variance`: a Gaussian encoder's.
  """
  inputs = penalties.PenaltyInputs(
      codes,
      z_prior,
      rng,
      config.model.prior_variance,
      mean=mean,
      log_variance=log_variance,
      code_logits=code_logits,
  )
  return penalties.get(config.penalty.name).fn(inputs, config.penalty)


# The penalty's random numbers (sliced Wasserstein's directions) are fold_in(step key, this):
# a fourth split of the step key would change the other three streams, and every run with them.
_PENALTY_STREAM = 3


def step_randomness(config, rng, step, batch_size: int):
  """The random numbers of the step at `step`: (rngs of the input noise, the Gaussian
  encoder's codes and the penalty, by name; the batch's prior samples)."""
  step_rng = jax.random.fold_in(rng, step)
  noise_rng, latent_rng, prior_rng = jax.random.split(step_rng, 3)
  z_prior = penalties.prior_samples(
      prior_rng, (batch_size, config.model.latent_dim), config.model.prior_variance
  )
  rngs = {
      'noise': noise_rng,
      'latent': latent_rng,
      'penalty': jax.random.fold_in(step_rng, _PENALTY_STREAM),
  }
  return rngs, z_prior


def encode_decode(config, model, params, batch_stats, images, rngs):
  """The auto-encoder on a batch as the step runs it (train mode, the encoder's input noise):
  (codes, mean, log_variance, decoder logits), and the updated batch statistics."""
  inputs = encoder_inputs(rngs['noise'], images, config.train.input_noise)
  outputs, updates = model.apply(
      {'params': params, 'batch_stats': batch_stats},
      inputs,
      train=True,
      method=model.encode_decode,
      rngs={'latent': rngs['latent']},
      mutable=['batch_stats'],
  )
  return outputs, updates['batch_stats']


# The numbers the step reads that change none of its shapes or ops (it bakes them in as
# constants): trials that differ only in them and in their seeds share one compiled step
# (`sweep_plan.shape_key`), and train packed with them as arrays (`wae_jax.packed`). A
# penalty's own such fields are its record's (`penalties.fields_not_in_step`).
STEP_NUMBERS = (
    'train.learning_rate',
    'train.adversary_learning_rate',
    'penalty.lam',
    'model.prior_variance',
    'cost.scale',
)


def make_train_step(config, model, adversary, steps_per_epoch: int, rng) -> Callable:
  """Returns train_step(state, images) -> (state, metrics) for config.penalty.name.

  The loss is reconstruction + lambda * the registered penalty on the step's codes. A
  penalty that needs an adversary (WAE-GAN) trains one too, from codes of the same
  parameters: 'simultaneous', the encoder is penalised by the adversary both steps start
  from; 'alternating' (Algorithm 1), by the adversary after its step.

  A step whose loss, gradients or updated state are not finite changes nothing but the step
  counter and `nonfinite_steps` (its metric `skipped` is 1).
  """
  ae_tx, schedule, adversary_tx = optimizers(config, steps_per_epoch)
  penalty = penalties.get(config.penalty.name)
  lam, prior_variance = config.penalty.lam, config.model.prior_variance
  alternating = penalty.needs_adversary and config.penalty.gan_update == 'alternating'
  pixel_range = tuple(config.data.pixel_range)

  def adversary_loss(adversary_params, codes, z_prior):
    prior_logits = adversary_logits(config, adversary, adversary_params, z_prior)
    code_logits = adversary_logits(config, adversary, adversary_params, codes)
    loss = lam * penalties.adversary_loss(prior_logits, code_logits)
    return loss, penalties.adversary_accuracy(prior_logits, code_logits)

  def adversary_update(state: TrainState, codes, z_prior):
    """One Adam step of the adversary against these codes, seen as data (no gradient reaches
    the encoder through it): its new parameters and optimizer state, its loss and accuracy,
    and whether its loss and gradient are finite."""
    (loss, accuracy), grads = jax.value_and_grad(adversary_loss, has_aux=True)(
        state.adversary_params, jax.lax.stop_gradient(codes), z_prior
    )
    updates, opt_state = adversary_tx.update(
        grads, state.adversary_opt_state, state.adversary_params
    )
    return dict(
        params=optax.apply_updates(state.adversary_params, updates),
        opt_state=opt_state,
        loss=loss,
        accuracy=accuracy,
        finite=all_finite(loss, grads),
    )

  def ae_loss(params, state: TrainState, images, z_prior, rngs):
    """reconstruction + lambda * penalty, and what the step reports of it."""
    (codes, mean, log_variance, logits), batch_stats = encode_decode(
        config, model, params, state.batch_stats, images, rngs
    )
    outputs = logits if config.cost.name == 'bernoulli' else models.activate(logits, pixel_range)
    reconstruction = penalties.reconstruction_cost(
        images, outputs, name=config.cost.name, scale=config.cost.scale
    )
    code_logits, adversary_step = None, None
    if penalty.needs_adversary:
      penalised_by = state.adversary_params
      if alternating:
        # Algorithm 1: the adversary's step first, on these codes, and the encoder penalised
        # by its result. It runs inside the loss because it needs the codes of this forward
        # pass (a second one would cost an encoder's forward, which XLA does not remove).
        adversary_step = adversary_update(state, codes, z_prior)
        penalised_by = adversary_step['params']
      code_logits = adversary_logits(config, adversary, penalised_by, codes)
    value = latent_penalty(
        config,
        codes,
        z_prior,
        rngs['penalty'],
        code_logits=code_logits,
        mean=mean,
        log_variance=log_variance,
    )
    aux = dict(
        codes=codes,
        batch_stats=batch_stats,
        reconstruction=reconstruction,
        penalty=value,
        log_variance=log_variance,
        adversary_step=adversary_step,
    )
    return reconstruction + lam * value, aux

  def skip(state: TrainState) -> TrainState:
    return state.replace(nonfinite_steps=state.nonfinite_steps + 1)

  def train_step(state: TrainState, images) -> Tuple[TrainState, Dict[str, jnp.ndarray]]:
    rngs, z_prior = step_randomness(config, rng, state.step, images.shape[0])
    (loss, aux), grads = jax.value_and_grad(ae_loss, has_aux=True)(
        state.params, state, images, z_prior, rngs
    )
    adversary_step = aux['adversary_step']  # 'alternating': taken inside the loss
    if penalty.needs_adversary and not alternating:  # from the parameters the step started at
      adversary_step = adversary_update(state, aux['codes'], z_prior)

    updates, opt_state = ae_tx.update(grads, state.opt_state, state.params)
    updated = state.replace(
        params=optax.apply_updates(state.params, updates),
        batch_stats=aux['batch_stats'],
        opt_state=opt_state,
        nonfinite_steps=jnp.zeros_like(state.nonfinite_steps),
    )
    if adversary_step is not None:
      updated = updated.replace(
          adversary_params=adversary_step['params'], adversary_opt_state=adversary_step['opt_state']
      )
    # The loss, the gradients and everything the update produced: a finite gradient times an
    # absurd learning rate must not reach the parameters (or a checkpoint) either.
    finite = all_finite(
        loss,
        grads,
        updated.params,
        updated.batch_stats,
        updated.opt_state,
        updated.adversary_params,
        updated.adversary_opt_state,
    )
    if adversary_step is not None:
      finite = finite & adversary_step['finite']
    # The data and the random numbers move on either way, so that the next step does not meet
    # the same fault. A cond, not a select per leaf: XLA:CPU took 153 s to compile ResNet50's
    # step with the selects, 14 s with the cond (benchmark --models=mnist_w32_resnet).
    new_state = jax.lax.cond(finite, lambda _: updated, skip, state).replace(step=state.step + 1)

    mean_gap, cov_gap = prior_moment_gaps(aux['codes'], prior_variance)
    metrics = dict(
        loss=loss,
        reconstruction=aux['reconstruction'],
        penalty=aux['penalty'],
        learning_rate=schedule(state.step),
        codes_mean_gap=mean_gap,
        codes_cov_gap=cov_gap,
        skipped=1.0 - finite.astype(jnp.float32),
        nonfinite_steps=new_state.nonfinite_steps,
    )
    if aux['log_variance'] is not None:
      metrics['encoder_variance'] = jnp.exp(aux['log_variance']).mean()
    if adversary_step is not None:
      metrics.update(
          adversary_loss=adversary_step['loss'], adversary_accuracy=adversary_step['accuracy']
      )
    return new_state, metrics

  return train_step


def pretrain_encoder(
    config, model, state: TrainState, images: np.ndarray, rng, mesh=None
) -> TrainState:
  """The paper's heuristic: move Q_Z's mean and covariance onto the prior's before training.

  Only the encoder's parameters and batch statistics change; the main optimizer's state is
  untouched.
  """
  mesh = mesh or parallel.make_mesh()
  tx = optax.adam(config.train.pretrain_learning_rate, b1=config.train.adam_b1)

  def loss_fn(params, batch_stats, batch):
    (mean, _), updates = model.apply(
        {'params': params, 'batch_stats': batch_stats},
        batch,
        train=True,
        method=model.encode,
        mutable=['batch_stats'],
    )
    mean_gap, cov_gap = prior_moment_gaps(mean, config.model.prior_variance)
    return mean_gap**2 + cov_gap**2, updates['batch_stats']

  def step(carry, batch):
    params, batch_stats, opt_state = carry
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, batch
    )
    grads = {
        'encoder': grads['encoder'],
        'decoder': jax.tree_util.tree_map(jnp.zeros_like, grads['decoder']),
    }
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  step = parallel.jit_on_mesh(step, mesh)
  carry = parallel.replicate((state.params, state.batch_stats, tx.init(state.params)), mesh)
  seed = int(jax.random.randint(rng, (), 0, 2**31 - 1))
  batches = parallel.mesh_batches(images, config.train.batch_size, seed, mesh)
  for _ in range(config.train.pretrain_steps):
    carry, loss = step(carry, next(batches))
  logging.info(
      'Pre-trained the encoder for %d steps; moment gap %.4f',
      config.train.pretrain_steps,
      float(loss),
  )
  params, batch_stats, _ = carry
  return state.replace(params=params, batch_stats=batch_stats)


def run_keys(config) -> Dict[str, jnp.ndarray]:
  """The run's random keys, from config.seed: the initial parameters', the encoder's
  pre-training's and the train step's."""
  init, pretrain, train = jax.random.split(jax.random.PRNGKey(config.seed), 3)
  return {'init': init, 'pretrain': pretrain, 'train': train}


def check_state_memory(config, steps_per_epoch: int, mesh, states_per_device: int) -> None:
  """A checkpoint is written from a copy of the state (the step overwrites the original), and
  the step holds its gradients and updates beside it: states that cannot fit twice are
  refused before they are allocated (only their shapes are traced)."""
  key = jax.random.PRNGKey(0)
  one = checkpoints.state_bytes(
      jax.eval_shape(lambda: create_train_state(config, key, steps_per_epoch))
  )
  need = 2 * states_per_device * one
  what = 'the parameters and optimizer state' + (
      f' of {states_per_device} trials' if states_per_device > 1 else ''
  )
  check_memory(
      config,
      need,
      f"{what}, {need / 2 / 2**30:.2f} GiB, twice: beside a checkpoint's copy, or the "
      'gradients and updates',
      mesh,
      activations=False,
  )


def initial_state(config, model, ckpts, train_images, steps_per_epoch: int, mesh) -> TrainState:
  """The run's state to train from: its latest readable checkpoint, else a new state (its
  encoder pre-trained, where the penalty asks for it)."""
  keys = run_keys(config)
  state = create_train_state(config, keys['init'], steps_per_epoch)
  restored = ckpts.restore(state, set_aside_unreadable=True)
  if restored is not None:
    logging.info('Resuming from step %d', int(restored.step))
    return restored
  if config.train.pretrain_steps > 0 and penalties.get(config.penalty.name).pretrains:
    state = pretrain_encoder(config, model, state, train_images, keys['pretrain'], mesh)
  return state


class NonFiniteError(errors.WaeError, RuntimeError):
  """Too many steps in a row had a non-finite loss, gradient or update."""


def mean_metrics(history):
  stacked = jax.device_get(history)
  means = {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}
  means['skipped'] = float(np.sum([m['skipped'] for m in stacked]))  # a count, not a mean
  return means


def import_clu():
  """clu's writers and progress reports, imported when a run starts: they import TensorFlow.

  So `import wae_jax.train` (the benchmark, the AOT compiler, a refused config) starts
  without TensorFlow; TensorFlow is kept off the accelerators before it first runs.
  """
  tfds_source.keep_tensorflow_off_accelerators()
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  from clu import periodic_actions  # pylint: disable=g-import-not-at-top

  return metric_writers, periodic_actions


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, mesh=None, allow_config_change: bool = False
) -> TrainState:
  """Trains (resuming from the latest checkpoint in workdir, if any) and writes pictures.

  `mesh` (default: every device) is the data-parallel mesh the global batch is split over.
  A resume under a config that changes what training computes raises ConfigChangedError
  unless `allow_config_change` (`wae_config.check_resume`).
  """
  wae_config.validate(config)
  logging.info('Config:\n%s', config)  # after the check: a refusal is one line alone
  mesh = mesh or parallel.make_mesh()
  parallel.check_batch_size(config.train.batch_size, mesh)
  # One run at a time in a workdir (the lock is taken where the workdir is written from).
  with (
      files.workdir_lock(workdir)
      if jax.process_index() == 0
      else contextlib.nullcontext(pathlib.Path(workdir))
  ) as workdir:
    return _train(config, workdir, mesh, allow_config_change)


def _train(config, workdir: pathlib.Path, mesh, allow_config_change: bool) -> TrainState:
  """train_and_evaluate in a workdir this process holds."""
  workdir.mkdir(parents=True, exist_ok=True)
  ckpts = checkpoints.Checkpoints(workdir, keep=config.train.keep_checkpoints)
  changes, latest = {}, ckpts.latest_step()
  # Before the data and compilation, so that a refusal is quick: a resume under another
  # config, and records that cannot be read (record_config reads them at the start).
  if latest is not None:
    changes = wae_config.check_resume(config, workdir, latest, allow_config_change)
  wae_config.recorded_configs(workdir)
  data = input_pipeline.load_dataset(config.data)
  steps_per_epoch = input_pipeline.steps_per_epoch(len(data.train_images), config.train.batch_size)
  total_steps = num_train_steps(config, steps_per_epoch)
  model = models.build_autoencoder(config)
  adversary = models.build_adversary(config)
  check_state_memory(config, steps_per_epoch, mesh, states_per_device=1)
  state = initial_state(config, model, ckpts, data.train_images, steps_per_epoch, mesh)
  state = parallel.replicate(state, mesh, donate=True)
  start_step = int(state.step)
  check_start(config, workdir, start_step, total_steps)

  is_main = jax.process_index() == 0
  metric_writers, periodic_actions = import_clu()
  writer = EventWriter(
      metric_writers.create_default_writer(str(workdir), just_logging=not is_main), workdir
  )
  if changes:
    logging.warning(
        'Resuming at step %d under a changed config (--allow_config_change): %s',
        start_step,
        wae_config.describe_changes(changes),
    )
  if is_main:
    record_start(config, workdir, writer, start_step)
  logging.info(
      'Training %s for %d steps (%d per epoch) from step %d on %d devices; data: %s',
      config.penalty.name,
      total_steps,
      steps_per_epoch,
      start_step,
      mesh.devices.size,
      data.source,
  )

  train_step = parallel.jit_on_mesh(
      make_train_step(config, model, adversary, steps_per_epoch, run_keys(config)['train']),
      mesh,
  )
  report = periodic_actions.ReportProgress(
      num_train_steps=total_steps,
      writer=writer,
      every_steps=config.train.log_every,
      every_secs=None,
  )
  batches = parallel.mesh_batches(
      data.train_images, config.train.batch_size, config.seed, mesh, start_step
  )
  if start_step < total_steps:
    first = next(batches)
    check_step_memory(config, train_step.lower(state, first), mesh)
    batches = itertools.chain([first], batches)
  stop = parallel.StopSignal()
  failed = True
  try:
    state = _loop(
        config,
        state,
        train_step,
        batches,
        steps=(start_step, total_steps),
        stop=stop,
        report=report,
        writer=writer,
        ckpts=ckpts,
        pictures=lambda s, step: visualize.write_pictures(
            config, model, s, data.test_images, writer, workdir, step
        ),
    )
    failed = False
  finally:
    stop.restore()
    finish(ckpts, writer, failed)
  return state


def record_start(config, workdir, writer, start_step: int) -> None:
  """The config a run starts or resumes under (wae_config.record_config), and at step 0 its
  fields as TensorBoard hyperparameters."""
  wae_config.record_config(config, workdir, start_step)
  if start_step == 0:
    writer.write_hparams(
        {
            k: v if isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in wae_config.flatten(config).items()
        }
    )


def check_start(config, workdir, start_step: int, total_steps: int) -> None:
  """A workdir already beyond the steps the config trains for is refused, not left as is."""
  if start_step > total_steps:
    raise errors.ConfigError(
        f'{workdir} is already at step {start_step}, beyond the {total_steps} steps this config '
        f'trains for (config.train.num_steps={config.train.num_steps}, num_epochs='
        f'{config.train.num_epochs}): set train.num_steps above {start_step} to train on, use '
        '--mode=evaluate or --mode=sample to use it, or pass a new --workdir'
    )


def check_step_memory(config, lowered, mesh) -> None:
  """Compiles the lowered step (its first call reuses the compilation) and refuses it if what
  it allocates beyond its arguments (its temporaries and outputs) cannot fit next to the
  state."""
  memory = lowered.compile().memory_analysis()
  if memory is not None:
    need = memory.temp_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes
    check_memory(
        config,
        need,
        f"the step's temporaries and outputs {need / 2**30:.2f} GiB "
        'besides the state it updates',
        mesh,
        activations=True,
    )


def _loop(config, state, train_step, batches, *, steps, stop, report, writer, ckpts, pictures):
  """The steps after `steps` = (start, total) to the total, with metrics, pictures and
  checkpoints; stops cleanly on SIGTERM or Ctrl-C."""
  start_step, total_steps = steps
  t = config.train
  is_main = jax.process_index() == 0
  history, previous = [], None
  for step in range(start_step + 1, total_steps + 1):
    state, metrics = train_step(state, next(batches))
    # Read the previous step's count, so that the host does not wait for this step.
    _check_nonfinite(previous, t.max_nonfinite_steps, ckpts)
    previous = metrics
    history.append(metrics)
    report(step)
    last = step == total_steps
    if stop.should_stop(step):
      _check_nonfinite(metrics, t.max_nonfinite_steps, ckpts)
      ckpts.save(step, state)
      logging.warning(
          '%s at step %d: wrote a checkpoint and stopped; run the same command ' 'again to resume',
          stop.received,
          step,
      )
      return state
    if step % t.log_every == 0 or last:
      writer.write_scalars(step, mean_metrics(history))
      history = []
    # The checkpoint before the pictures: a picture that fails must not cost a checkpoint.
    if step % t.checkpoint_every == 0 or last:
      _check_nonfinite(metrics, t.max_nonfinite_steps, ckpts)
      with report.timed('checkpoint'):
        ckpts.save(step, state)
    if is_main and (step % t.image_every == 0 or last):
      with report.timed('pictures'):
        pictures(state, step)
  _check_nonfinite(previous, t.max_nonfinite_steps, ckpts)
  return state


def _check_nonfinite(metrics, limit: int, ckpts) -> None:
  if metrics is None:
    return
  count = int(metrics['nonfinite_steps'])
  if count >= limit:
    raise NonFiniteError(nonfinite_message(count, limit, ckpts))


def nonfinite_message(count: int, limit: int, ckpts) -> str:
  """Why a run stopped at `count` non-finite steps in a row, what is kept, and the fix."""
  latest = ckpts.latest_step()
  kept = (
      f'no checkpoint was written in {ckpts.directory} before them'
      if latest is None
      else f'the last checkpoint, step {latest} in {ckpts.directory}, is intact'
  )
  return (
      f'{errors.DIVERGED}{count} steps in a row had a non-finite loss, gradient or update '
      f'(limit: config.train.max_nonfinite_steps={limit}); none of them was applied, and {kept}. '
      'Lower the learning rate or lambda, or check the data.'
  )


class EventWriter:
  """The metric writer, with a full disk under its TensorBoard event file raised as
  OutOfSpaceError naming the file (clu raises it, from its thread, at a later write)."""

  def __init__(self, writer, workdir):
    self._writer = writer
    self._workdir = pathlib.Path(workdir)

  def _event_file(self) -> pathlib.Path:
    found = sorted(self._workdir.glob('events.out.tfevents.*'), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else self._workdir

  def __getattr__(self, name):
    attribute = getattr(self._writer, name)
    if not callable(attribute):
      return attribute

    def checked(*args, **kwargs):
      try:
        return attribute(*args, **kwargs)
      except Exception as e:  # pylint: disable=broad-except
        if isinstance(e, errors.WaeError) or not errors.is_out_of_space(e):
          raise
        raise errors.out_of_space('TensorBoard events to', self._event_file()) from e

    return checked


def finish(ckpts, writer, failed: bool) -> None:
  """Waits for the last checkpoint, closes them and flushes the metrics, each even if one
  before failed. While another error is on its way out (`failed`), theirs (often the same
  full disk) are logged, not raised over it; otherwise the first is raised."""
  first = None
  for finish in (ckpts.wait, ckpts.close, writer.flush):
    try:
      finish()
    except Exception as e:  # pylint: disable=broad-except
      if failed or first is not None:
        logging.warning('While stopping: %s', errors.one_line(e))
      else:
        first = e
  if first is not None:
    raise first
