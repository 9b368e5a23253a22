#!/usr/bin/env bash
# The README's accelerator table: the CelebA train step of each objective and architecture
# compiled ahead of time (python -m wae_jax.aot) for TPU and GPU topologies, on a CPU-only
# machine. Each compile writes OUT/<objective>_<arch>_<topology>[_<variant>].{json,txt};
# OUT/table.md collects them. About an hour on 2 CPU cores.
#   bash launch/aot_table.sh [OUT]      (default: docs/aot)
set -euo pipefail
out=${1:-docs/aot}
mkdir -p "$out"
# topology:global batch (a multiple of the chip count)
targets="v5e:2x2:100 v5e:16x16:2048 h100:8:256 h100:2x8:512"
compile() {  # name, then wae_jax.aot arguments
  local name=$1; shift
  [ -s "$out/$name.json" ] && return 0
  python -m wae_jax.aot --json="$out/$name.json" "$@" > "$out/$name.txt" 2> "$out/$name.log" \
    || { echo "failed: $name (see $out/$name.log)"; tail -3 "$out/$name.log"; }
  tail -1 "$out/$name.txt"
}
for objective in wae_mmd wae_gan vae; do
  for arch in dcgan resnet50v2; do
    for t in $targets; do
      topology=${t%:*}; batch=${t##*:}
      compile "${objective}_${arch}_${topology/:/_}" --config="configs/celeba.py:$objective" \
        --config.model.arch=$arch --config.train.batch_size=$batch --topology=$topology
    done
  done
done
# The evidence for conv_impl='auto' and for donation.
for objective in wae_mmd wae_gan vae; do
  compile "${objective}_dcgan_v5e_2x2_phase" --config="configs/celeba.py:$objective" \
    --config.model.conv_impl=phase --topology=v5e:2x2
  compile "${objective}_dcgan_h100_8_phase" --config="configs/celeba.py:$objective" \
    --config.model.conv_impl=phase --config.train.batch_size=256 --topology=h100:8
done
compile wae_gan_dcgan_v5e_2x2_nodonate --config=configs/celeba.py:wae_gan --nodonate \
  --topology=v5e:2x2
python - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
gib = lambda n: f'{n / 2**30:.2f}'
rows = ['| objective | arch | topology | batch | conv | donated | state GiB | args GiB | temp GiB '
        '| total GiB (of HBM) | model TFLOP | XLA TFLOP | XLA GB accessed | collectives MB '
        '| bound ms (which) | img/s at most | compile s |', '|' + '---|' * 17]
for path in sorted(out.glob('*.json')):
  r = json.loads(path.read_text())
  roof = r['roofline'] or {}
  coll = sum(c['bytes'] for c in r['collectives'].values()) / 1e6
  rows.append('| ' + ' | '.join([
      r['objective'], r['arch'], r['topology'], str(r['batch_size']), r['conv_impl'],
      'yes' if r['donated'] else 'no', gib(r['params_bytes'] + r['optimizer_bytes']),
      gib(r['argument_bytes']), gib(r['temp_bytes']),
      f"{gib(r['total_bytes'])} ({gib(r['hbm_bytes'])})", f"{r['model_flops'] / 1e12:.3f}",
      f"{r['xla_flops'] / 1e12:.3f}" if r['xla_flops'] else '-',
      f"{r['xla_bytes_accessed'] / 1e9:.1f}" if r['xla_bytes_accessed'] else '-',
      f'{coll:.0f}', f"{roof['step_s'] * 1e3:.2f} ({roof['bound']})" if roof else '-',
      f"{roof['img_per_s']:,.0f}" if roof else '-', f"{r['compile_s']:.0f}"]) + ' |')
(out / 'table.md').write_text('\n'.join(rows) + '\n')
print('\n'.join(rows))
PY
