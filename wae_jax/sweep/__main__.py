"""python -m wae_jax.sweep: a trial's evaluation, or the training of a pack of trials.

  python -m wae_jax.sweep --config=configs/x.py:arg [--config.<field>=...] --workdir=DIR
      --steps=S1,S2
  python -m wae_jax.sweep --config=configs/x.py:arg --workdir=DIR --train_pack=DIR/pack.json

--steps writes each step's evaluation (wae_jax.evaluation.evaluate) into
DIR/eval/step_<step>.json, every kept checkpoint in one process. --train_pack trains the
trials that wae_jax.sweep.trials.run_pack wrote to the file as one pack (wae_jax.packed), each
in its own workdir; --config is their base config, --workdir the pack's folder.
"""

import pathlib

from absl import app
from absl import flags
from ml_collections import config_flags

from wae_jax import errors
from wae_jax import files
from wae_jax import packed
from wae_jax.evaluation import evaluate
from wae_jax.sweep import trials


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if bool(flags.FLAGS.steps) == bool(flags.FLAGS.train_pack):
    raise errors.FlagError('give one of --steps (evaluate a trial) and --train_pack (train a pack)')
  if flags.FLAGS.train_pack:
    packed.train_pack(*trials.pack_configs(flags.FLAGS.config, flags.FLAGS.train_pack))
    return
  workdir = pathlib.Path(flags.FLAGS.workdir)
  for step in flags.FLAGS.steps:
    results = evaluate.evaluate(flags.FLAGS.config, str(workdir), int(step))
    path = trials.eval_file(workdir, int(step))
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(path, results)


if __name__ == '__main__':
  config_flags.DEFINE_config_file('config', None, "The trial's config.", lock_config=True)
  flags.DEFINE_string('workdir', None, "The trial's workdir (a pack's folder).")
  flags.DEFINE_list('steps', None, 'Checkpoint steps to evaluate.')
  flags.DEFINE_string('train_pack', None, 'The pack file of the trials to train together.')
  flags.mark_flags_as_required(['config', 'workdir'])
  errors.run(main)
