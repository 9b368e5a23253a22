#!/usr/bin/env bash
# Reproduces the MNIST table (docs/results.md; the README shows its FIDs): WAE-MMD, WAE-GAN,
# the VAE, WAE-SWD and WAE-Sinkhorn, each trained with seeds 0, 1 and 2 (--config.seed) with
# the CPU-sized model (configs/mnist.py:<objective>,small: 1/8 width, 5 epochs = 3,000 steps
# of batch 100 each),
# then evaluates every run and writes one report over all of them: per objective the mean and
# standard deviation over its seeds, and which differences exceed the seed noise.
#
#   WAE_JAX_MNIST_DIR=../shared/data/mnist bash launch/mnist_table.sh [ROOT] [extra flags]
#
# 15 runs. On this project's 2-core CPU, with the cores to itself, each training took 5.9 to
# 7.6 minutes (100 minutes in all) and each evaluation under a minute: about 2 hours for the
# table (docs/results.md).
#
# Runs go to ROOT/<objective>/seed<k> (ROOT defaults to workdirs/mnist_table), the report to
# ROOT/report (report.md, report.png, report.json). Extra flags are passed to every training and
# evaluation, e.g. --config.train.num_epochs=10. Fewer runs, e.g. for a quick look:
#
#   OBJECTIVES="wae_mmd vae" SEEDS="0 1" bash launch/mnist_table.sh
#
# Run again, the script resumes: an interrupted training continues from its last checkpoint,
# and an evaluation is skipped where eval/results.json is at the run's latest checkpoint step
# (delete that file, or set EVALUATE=always, to evaluate again, e.g. with other eval flags).
set -euo pipefail
root="${1:-workdirs/mnist_table}"
shift || true
objectives="${OBJECTIVES:-wae_mmd wae_gan vae wae_swd wae_sinkhorn}"
seeds="${SEEDS:-0 1 2}"

# The report's row name of an objective.
display_name() {
  case "$1" in
    wae_mmd) echo WAE-MMD ;;
    wae_gan) echo WAE-GAN ;;
    vae) echo VAE ;;
    wae_swd) echo WAE-SWD ;;
    wae_sinkhorn) echo WAE-Sinkhorn ;;
    *) echo "$1" ;;
  esac
}

# Succeeds if workdir $1 has eval/results.json for its latest checkpoint.
evaluated() {
  python - "$1" <<'EOF'
import json
import pathlib
import sys

workdir = pathlib.Path(sys.argv[1])
steps = [int(p.name) for p in (workdir / 'checkpoints').glob('*') if p.name.isdigit()]
results = workdir / 'eval' / 'results.json'
done = steps and results.exists() and json.loads(results.read_text()).get('step') == max(steps)
sys.exit(0 if done else 1)
EOF
}

workdirs=()
names=()
for objective in ${objectives}; do
  for seed in ${seeds}; do
    workdir="${root}/${objective}/seed${seed}"
    config="configs/mnist.py:${objective},small"
    python -m wae_jax.main --config="${config}" --config.seed="${seed}" \
      --workdir="${workdir}" "$@"
    if [[ "${EVALUATE:-}" != always ]] && evaluated "${workdir}"; then
      echo "${workdir}: already evaluated at its latest checkpoint; not evaluating again"
    else
      python -m wae_jax.main --config="${config}" --config.seed="${seed}" \
        --workdir="${workdir}" --mode=evaluate "$@"
    fi
    workdirs+=("${workdir}")
    names+=("$(display_name "${objective}")")
  done
done
python -m wae_jax.evaluation.report --workdirs="$(IFS=,; echo "${workdirs[*]}")" \
  --names="$(IFS=,; echo "${names[*]}")" --out="${root}/report"
