"""Command line: `python -m wae_jax.main --config=configs/mnist.py:wae_mmd --workdir=DIR`.

Overrides follow ml_collections: `--config.train.num_steps=200 --config.penalty.lam=5`.
A bad config, bad data, a checkpoint that does not fit, a full disk: one line, exit status 2
(`wae_jax.errors`; --verbose for the traceback). `--seeds=0,1,2` trains those seeds of the config
together, as one pack (`wae_jax.packed`), seed s in DIR/seed_<s>.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import inference
from wae_jax import packed
from wae_jax import parallel
from wae_jax import train

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, e.g. configs/mnist.py:wae_mmd.', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, pictures.')
_MODE = flags.DEFINE_enum(
    'mode',
    'train',
    ['train', 'sample', 'evaluate'],
    'train: train (resuming from the latest checkpoint); '
    'sample: a grid of samples from the latest checkpoint; '
    'evaluate: FID, sharpness, reconstruction and MMD into DIR/eval.',
)
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step for sample/evaluate (default: latest).')
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed',
    'auto',
    ['auto', 'on', 'off'],
    'jax.distributed.initialize() for multi-host runs. auto: when launched as several '
    'processes (SLURM, Open MPI, a multi-host TPU slice, or JAX_COORDINATOR_ADDRESS with '
    'JAX_NUM_PROCESSES and JAX_PROCESS_ID).',
)
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    'allow_config_change',
    False,
    'Resume a workdir under a config that changes what training computes (e.g. another '
    'penalty.lam); the new config is kept as DIR/config_<step>.json from the step it resumes '
    'at. Without it such a resume is refused with the changed fields.',
)
_SEEDS = flags.DEFINE_list(
    'seeds',
    None,
    'Train these seeds of the config together, as one pack (wae_jax.packed: one vmapped step, '
    'the trials split over the devices), seed s in DIR/seed_<s>; e.g. --seeds=0,1,2.',
)
flags.mark_flags_as_required(['config', 'workdir'])


def _seeds():
  """--seeds as integers, once each; FlagError naming the flag otherwise."""
  try:
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError:
    seeds = []
  if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
    raise errors.FlagError(
        f'--seeds={",".join(_SEEDS.value)}: expected distinct integers >= 0, e.g. --seeds=0,1,2'
    )
  if _MODE.value != 'train':
    raise errors.FlagError(
        f"--seeds trains a pack; with --mode={_MODE.value} give one seed's workdir instead, "
        f'e.g. --workdir={_WORKDIR.value}/seed_{seeds[0]}'
    )
  return seeds


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  parallel.initialize_distributed(_DISTRIBUTED.value)
  # Each mode checks its config (training validates it, then logs it), so that a refusal is
  # one line alone, before the config's 90 log lines.
  if _SEEDS.value is not None:
    seeds = _seeds()
    packed.train_pack(
        packed.seed_configs(_CONFIG.value, seeds),
        packed.seed_workdirs(_WORKDIR.value, seeds),
        allow_config_change=_ALLOW_CONFIG_CHANGE.value,
    )
  elif _MODE.value == 'train':
    train.train_and_evaluate(
        _CONFIG.value, _WORKDIR.value, allow_config_change=_ALLOW_CONFIG_CHANGE.value
    )
  else:  # the checkpoint's recorded config is validated too, where it is read
    wae_config.validate(_CONFIG.value)
    logging.info('Config:\n%s', _CONFIG.value)
    if _MODE.value == 'sample':
      inference.sample(_CONFIG.value, _WORKDIR.value, _STEP.value)
    else:
      # Imported here: the evaluators (scikit-learn's mixture, the FID networks) cost a
      # training or a refused command about a second of start-up.
      from wae_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

      evaluate.evaluate(_CONFIG.value, _WORKDIR.value, _STEP.value)


if __name__ == '__main__':
  errors.run(main)
