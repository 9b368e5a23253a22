#!/usr/bin/env bash
# docs/accelerators.md's packed-trials table: the CelebA WAE-MMD train step of a pack of K
# trials (wae_jax.packed; python -m wae_jax.accelerators.aot --pack=K), batch 100 each, DCGAN
# and ResNet50-v2 nets, compiled ahead of time for v5e:2x2 and h100:8 on a CPU-only machine,
# beside the same step unpacked (one trial, its batch split over the chips; from
# launch/aot_table.sh). Each compile writes OUT/wae_mmd_<arch>_<topology>_pack<K>.{json,txt,log};
# OUT/pack_table.md collects them.
#   bash launch/aot_pack_table.sh [OUT]      (default: docs/aot)
set -euo pipefail
out=${1:-docs/aot}
mkdir -p "$out"
compile() {  # name, then wae_jax.accelerators.aot arguments
  local name=$1; shift
  [ -s "$out/$name.json" ] && return 0
  grep -q '^error: ' "$out/$name.log" 2>/dev/null && return 0  # refused (does not fit): kept
  python -m wae_jax.accelerators.aot --json="$out/$name.json" "$@" > "$out/$name.txt" 2> "$out/$name.log" \
    || { echo "$name: $(grep '^error: ' "$out/$name.log" || tail -1 "$out/$name.log")"; }
  tail -1 "$out/$name.txt"
}
for arch in dcgan resnet50v2; do
  for topology in v5e:2x2 h100:8; do
    for pack in ${PACKS:-4 16 64}; do
      compile "wae_mmd_${arch}_${topology/:/_}_pack${pack}" --config=configs/celeba.py:wae_mmd \
        --config.model.arch=$arch --config.train.batch_size=100 --topology=$topology --pack=$pack
    done
  done
done
python - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def load(name):
  p = out / f'{name}.json'
  return json.loads(p.read_text()) if p.exists() else None
gib = lambda n: f'{n / 2**30:.2f}'
rows = ['| nets | target | trials (per chip) | state GiB | temporaries GiB | total GiB (HBM) | XLA GB moved | collectives | step >= ms (bound) | chip-ms per trial step of 100 images |',
        '|---|---|---|---:|---:|---:|---:|---|---:|---:|']
for arch, nets in (('dcgan', 'DCGAN'), ('resnet50v2', 'ResNet50-v2')):
  for key, topo in (('v5e_2x2', 'v5e:2x2'), ('h100_8', 'h100:8')):
    solo = load(f'wae_mmd_{arch}_{key}')
    if solo:  # one trial on every chip (launch/aot_table.sh), its batch split
      roof = solo['roofline']
      rows.append(f"| {nets} | {topo} | 1, batch {solo['batch_size']} split | {gib(solo['params_bytes'] + solo['optimizer_bytes'])} | {gib(solo['temp_bytes'])} | {gib(solo['total_bytes'])} ({gib(solo['hbm_bytes'])}) | {solo['traffic_bytes'] / 1e9:.1f} | {', '.join(f'{k} {v['bytes'] / 1e6:.0f} MB' for k, v in solo['collectives'].items()) or 'none'} | {roof['step_s'] * 1e3:.3g} ({roof['bound']}) | {roof['step_s'] * solo['num_chips'] * 100 / solo['batch_size'] * 1e3:.3g} |")
    for pack in (4, 16, 64):
      name = f'wae_mmd_{arch}_{key}_pack{pack}'
      r = load(name)
      if r is None:
        log = out / f'{name}.log'
        why = [l for l in log.read_text().splitlines() if l.startswith('error: ')] if log.exists() else []
        if why:
          rows.append(f'| {nets} | {topo} | {pack} | does not fit: {why[0][7:160]}... | | | | | | |')
        continue
      roof = r['roofline']
      fits = r['total_bytes'] <= r['hbm_bytes']
      idle = f"; {r['idle_chips']} chips idle" if r.get('idle_chips') else ''
      rows.append(f"| {nets} | {topo} | {pack} ({pack // r['num_chips']}{idle}) | {gib(r['params_bytes'] + r['optimizer_bytes'])} | {gib(r['temp_bytes'])} | {gib(r['total_bytes'])} ({gib(r['hbm_bytes'])}){'' if fits else ' **does not fit**'} | {r['traffic_bytes'] / 1e9:.1f} | {', '.join(r['collectives']) or 'none'} | {roof['step_s'] * 1e3:.3g} ({roof['bound']}) | {roof['chip_s_per_trial_step'] * 1e3:.3g} |")
(out / 'pack_table.md').write_text('\n'.join(rows) + '\n')
print('\n'.join(rows))
PY
