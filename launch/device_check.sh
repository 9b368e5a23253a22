#!/usr/bin/env bash
# One GPU's numbers for docs/accelerators.md: the train step of the paper's MNIST and CelebA
# nets and of the CelebA ResNet50-v2 nets, in float32 and bfloat16, with each conv_impl (phase,
# xla), timed by the benchmark (images/s, MFU against the chip's dense peak). Under 8 minutes on
# one H100/H200; each run writes its JSON as soon as it ends, so a cut-off run keeps the rest.
#   bash launch/device_check.sh [OUT]          (default: device_check)
# Setup on the GPU machine: pip install -c constraints.txt -e ".[cuda12]" (on an image with JAX:
# pip install --no-deps -c constraints.txt -e . ml-collections pillow)
# OBJECTIVES=mmd,gan,vae widens it (about three times as long); MODELS='mnist_w32 mnist_w32_resnet'
# runs other benchmark models (a quick check of the script itself, e.g. on a CPU).
set -uo pipefail
out=${1:-device_check}
objectives=${OBJECTIVES:-mmd}
models=${MODELS:-mnist_paper celeba_paper celeba_paper_resnet}
mkdir -p "$out"
# A second run of the script reuses the compiled steps.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$(cd "$out" && pwd)/jax_cache}
python -c 'import jax; print(jax.devices())' | tee "$out/devices.txt"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$out/nvidia_smi.csv" 2>&1 || true
status=0
for dtype in float32 bfloat16; do
  for impl in xla phase; do
    for model in $models; do
      limit=40
      if [[ $model == *_resnet ]]; then
        [ $impl = phase ] && continue  # no conv_impl in the ResNet nets: the xla run covers it
        limit=60
      fi
      echo "== $model, $dtype, conv_impl=$impl"
      timeout $limit python -m benchmarks.benchmark --models=$model --objectives=$objectives \
        --dtype=$dtype --conv_impl=$impl --notorch --repeats=3 --max_seconds=8 \
        --json_out="$out/${model}_${dtype}_${impl}.json" || { status=1; echo "(cut short)"; }
    done
  done
done
ls -l "$out"
exit $status
