#!/usr/bin/env bash
# The report in this folder: WAE-MMD and WAE-GAN at lambda 3.333 (the README table's runs, from
# launch/mnist_table.sh) against lambda 10 (seeds 0, 1, 2 of the lambda-10 settings of
# launch/mnist_baselines.sh: SEEDS="0 1 2" for those two settings).
set -euo pipefail
W="${1:-workdirs}"
runs=()
names=()
for objective in wae_mmd wae_gan; do
  for seed in 0 1 2; do runs+=("$W/mnist_table/$objective/seed$seed"); names+=("${objective}_lam3.333"); done
  for seed in 0 1 2; do runs+=("$W/baselines/${objective}_lam10/$objective/seed$seed"); names+=("${objective}_lam10"); done
done
python -m wae_jax.evaluation.report --workdirs="$(IFS=,; echo "${runs[*]}")" \
  --names="$(IFS=,; echo "${names[*]}")" --out=docs/wae_lambda
