"""python -m wae_jax.sweep: a trial's evaluation, every kept checkpoint in one process.

  python -m wae_jax.sweep --config=configs/x.py:arg [--config.<field>=...] --workdir=DIR
      --steps=S1,S2

writes each step's evaluation (wae_jax.evaluation.evaluate) into DIR/eval/step_<step>.json.
wae_jax.sweep.trials.run_trial runs it after the trial's training.
"""

import pathlib

from absl import app
from absl import flags
from ml_collections import config_flags

from wae_jax import errors
from wae_jax import files
from wae_jax.evaluation import evaluate
from wae_jax.sweep import trials


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  workdir = pathlib.Path(flags.FLAGS.workdir)
  for step in flags.FLAGS.steps:
    results = evaluate.evaluate(flags.FLAGS.config, str(workdir), int(step))
    path = trials.eval_file(workdir, int(step))
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(path, results)


if __name__ == '__main__':
  config_flags.DEFINE_config_file('config', None, "The trial's config.", lock_config=True)
  flags.DEFINE_string('workdir', None, "The trial's workdir.")
  flags.DEFINE_list('steps', None, 'Checkpoint steps to evaluate.')
  flags.mark_flags_as_required(['config', 'workdir', 'steps'])
  errors.run(main)
