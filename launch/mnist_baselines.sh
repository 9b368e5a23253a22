#!/usr/bin/env bash
# Reproduces the runs of "How strong are the baselines" (docs/results.md): the CPU-sized MNIST
# model (configs/mnist.py:<objective>,small) trained and evaluated with one setting changed at a
# time.
#
#   WAE_JAX_MNIST_DIR=../shared/data/mnist bash launch/mnist_baselines.sh [ROOT]
#
# Two groups of runs, seed 0 each (SEEDS="0 1 2" for more), every setting given in full on the
# command line (so that they stay the same runs when configs/mnist.py changes):
# - diagnostics: the paper's settings with one of the reference PyTorch library's choices where
#   they differ from ours: its VAE's squared-error decoder, its constant learning rate, no
#   encoder pre-training or input noise, its WAE-MMD's balance of reconstruction and MMD;
# - the search: the same budget for each of the paper's three objectives, the penalty's weight
#   (lambda; the VAE's KL weight) at 1/3, 1, 3 and 10 times the paper's.
# Each setting is one launch/mnist_table.sh call, so runs resume and evaluations are skipped when
# done; they go to ROOT/<setting>/<objective>/seed<k> (ROOT defaults to workdirs/baselines), and
# one report over all of them to ROOT/report. 17 runs of 5 to 6 minutes on a 2-core CPU.
set -euo pipefail
root="${1:-workdirs/baselines}"
seeds="${SEEDS:-0}"

# setting objective flags...
runs=(
  'vae_gaussian_decoder vae --config.penalty.lam=1.0 --config.cost.name=l2sq --config.cost.scale=1.0'
  'vae_constant_lr vae --config.penalty.lam=1.0 --config.train.lr_decay=()'
  'wae_mmd_constant_lr wae_mmd --config.penalty.lam=10.0 --config.train.lr_decay=()'
  'wae_mmd_no_heuristics wae_mmd --config.penalty.lam=10.0 --config.train.pretrain_steps=0 --config.train.input_noise=0.0'
  'wae_mmd_reference_balance wae_mmd --config.penalty.lam=0.15'
  'vae_lam0.3333 vae --config.penalty.lam=0.3333'
  'vae_lam1 vae --config.penalty.lam=1.0'
  'vae_lam3 vae --config.penalty.lam=3.0'
  'vae_lam10 vae --config.penalty.lam=10.0'
  'wae_mmd_lam3.333 wae_mmd --config.penalty.lam=3.333'
  'wae_mmd_lam10 wae_mmd --config.penalty.lam=10.0'
  'wae_mmd_lam30 wae_mmd --config.penalty.lam=30.0'
  'wae_mmd_lam100 wae_mmd --config.penalty.lam=100.0'
  'wae_gan_lam3.333 wae_gan --config.penalty.lam=3.333'
  'wae_gan_lam10 wae_gan --config.penalty.lam=10.0'
  'wae_gan_lam30 wae_gan --config.penalty.lam=30.0'
  'wae_gan_lam100 wae_gan --config.penalty.lam=100.0'
)

workdirs=()
names=()
for run in "${runs[@]}"; do
  read -r setting objective flags <<< "${run}"
  # shellcheck disable=SC2086  # flags are words
  OBJECTIVES="${objective}" SEEDS="${seeds}" bash launch/mnist_table.sh "${root}/${setting}" \
    ${flags}
  for seed in ${seeds}; do
    workdirs+=("${root}/${setting}/${objective}/seed${seed}")
    names+=("${setting}")
  done
done
python -m wae_jax.evaluation.report --workdirs="$(IFS=,; echo "${workdirs[*]}")" \
  --names="$(IFS=,; echo "${names[*]}")" --out="${root}/report"
