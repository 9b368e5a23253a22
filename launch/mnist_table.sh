#!/usr/bin/env bash
# Reproduces the README's MNIST table: WAE-MMD, WAE-GAN and the VAE with the CPU-sized model
# (configs/mnist.py:<objective>,small: 1/8 width, 5 epochs = 3,000 steps of batch 100 each),
# then evaluates each run and writes the report (table + figure).
#
#   WAE_JAX_MNIST_DIR=../shared/data/mnist bash launch/mnist_table.sh [ROOT] [extra flags]
#
# ROOT defaults to workdirs/mnist_table; the report goes to ROOT/report. Extra flags are
# passed to every training and evaluation, e.g. --config.train.num_epochs=10. A run that
# is interrupted resumes from its last checkpoint when the script is run again.
set -euo pipefail
root="${1:-workdirs/mnist_table}"
shift || true
for objective in wae_mmd wae_gan vae; do
  python -m wae_jax.main --config="configs/mnist.py:${objective},small" \
    --workdir="${root}/${objective}" "$@"
  python -m wae_jax.main --config="configs/mnist.py:${objective},small" \
    --workdir="${root}/${objective}" --mode=evaluate "$@"
done
python -m wae_jax.evaluation.report --workdirs="${root}/wae_mmd,${root}/wae_gan,${root}/vae" \
  --names=WAE-MMD,WAE-GAN,VAE --out="${root}/report"
