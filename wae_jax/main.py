"""Command line: `python -m wae_jax.main --config=configs/mnist.py:wae_mmd --workdir=DIR`.

Overrides follow ml_collections: `--config.train.num_steps=200 --config.penalty.lam=5`.
"""

import logging as std_logging

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from wae_jax import inference
from wae_jax import input_pipeline
from wae_jax import parallel
from wae_jax import train
from wae_jax.evaluation import evaluate

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/mnist.py:wae_mmd.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, pictures.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'sample', 'evaluate'],
                          'train: train (resuming from the latest checkpoint); '
                          'sample: a grid of samples from the latest checkpoint; '
                          'evaluate: FID, sharpness, reconstruction and MMD into DIR/eval.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step for sample/evaluate (default: latest).')
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed', 'auto', ['auto', 'on', 'off'],
    'jax.distributed.initialize() for multi-host runs. auto: when launched as several '
    'processes (SLURM, Open MPI, a multi-host TPU slice, or JAX_COORDINATOR_ADDRESS with '
    'JAX_NUM_PROCESSES and JAX_PROCESS_ID).')
flags.mark_flags_as_required(['config', 'workdir'])


def _drop_library_info(record) -> bool:
  """Orbax logs a dozen INFO lines per checkpoint; keep its warnings, drop the chatter."""
  return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_drop_library_info)
  input_pipeline.keep_tensorflow_off_accelerators()
  parallel.initialize_distributed(_DISTRIBUTED.value)
  logging.info('Config:\n%s', _CONFIG.value)
  if _MODE.value == 'train':
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  elif _MODE.value == 'sample':
    inference.sample(_CONFIG.value, _WORKDIR.value, _STEP.value)
  else:
    evaluate.evaluate(_CONFIG.value, _WORKDIR.value, _STEP.value)


if __name__ == '__main__':
  app.run(main)
