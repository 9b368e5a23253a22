#!/usr/bin/env bash
# docs/accelerators.md's table: the CelebA train step of each objective and architecture
# compiled ahead of time (python -m wae_jax.accelerators.aot) for TPU and GPU topologies, on a CPU-only
# machine. Each compile writes OUT/<objective>_<arch>_<topology>[_<variant>].{json,txt}
# (and its log, with libtpu's warnings, as .log); OUT/table.md collects them. About an hour on 2 CPU cores.
# Then docs/packing.md's: the WAE-MMD step of a pack of K trials (--pack=K, batch 100 each) for
# v5e:2x2 and h100:8, in OUT/pack_table.md (another hour). What is compiled already is kept.
#   bash launch/aot_table.sh [OUT]      (default: docs/aot)
set -euo pipefail
out=${1:-docs/aot}
mkdir -p "$out"
# topology:global batch (a multiple of the chip count)
targets="v5e:2x2:100 v5e:16x16:2048 h100:8:256 h100:2x8:512"
compile() {  # name, then wae_jax.accelerators.aot arguments
  local name=$1; shift
  [ -s "$out/$name.json" ] && return 0
  grep -q '^error: ' "$out/$name.log" 2>/dev/null && return 0  # refused (does not fit): kept
  python -m wae_jax.accelerators.aot --json="$out/$name.json" "$@" > "$out/$name.txt" 2> "$out/$name.log" \
    || { echo "$name: $(grep '^error: ' "$out/$name.log" || tail -1 "$out/$name.log")"; }
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
# Packed trials.
for arch in dcgan resnet50v2; do
  for topology in v5e:2x2 h100:8; do
    for pack in 4 16 64; do
      compile "wae_mmd_${arch}_${topology/:/_}_pack${pack}" --config=configs/celeba.py:wae_mmd \
        --config.model.arch=$arch --config.train.batch_size=100 --topology=$topology --pack=$pack
    done
  done
done
# docs/accelerators.md's three tables: every compile; phase against xla; donated against not.
python - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def load(name):
  p = out / f'{name}.json'
  return json.loads(p.read_text()) if p.exists() else None
gib = lambda n: f'{n / 2**30:.2f}'
topos = [('v5e_2x2', 'v5e:2x2'), ('v5e_16x16', 'v5e:16x16'), ('h100_8', 'h100:8'), ('h100_2x8', 'h100:2x8')]
rows = ['| objective | nets | target | batch (per chip) | state GiB | temporaries GiB | total GiB (HBM) | model TFLOP | XLA TFLOP | XLA GB moved | collectives MB | step >= ms (bound) | img/s <= | compile s |',
        '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
for obj in ('wae_mmd', 'wae_gan', 'vae'):
  for arch in ('dcgan', 'resnet50v2'):
    for key, topo in topos:
      r = load(f'{obj}_{arch}_{key}')
      if r is None:
        continue
      roof = r['roofline']
      coll = sum(c['bytes'] for c in r['collectives'].values()) / 1e6
      hosts = f", {r['num_hosts']} hosts" if r['num_hosts'] > 1 else ''
      rows.append('| ' + ' | '.join([
        {'mmd': 'WAE-MMD', 'gan': 'WAE-GAN', 'vae': 'VAE'}[r['objective']], 'DCGAN' if arch == 'dcgan' else 'ResNet50-v2',
        f"{topo} ({r['num_chips']} chips{hosts})", f"{r['batch_size']} ({r['batch_size'] // r['num_chips']})",
        gib(r['params_bytes'] + r['optimizer_bytes']), gib(r['temp_bytes']),
        f"{gib(r['total_bytes'])} ({r['hbm_bytes'] / 2**30:.0f})", f"{r['model_flops'] / 1e12:.3f}",
        f"{r['xla_flops'] / 1e12:.3f}" if r['xla_flops'] else '-',
        f"{r['xla_bytes_accessed'] / 1e9:.1f}" if r['xla_bytes_accessed'] else '-',
        f'{coll:.0f}', f"{roof['step_s'] * 1e3:.2f} ({roof['bound']})", f"{roof['img_per_s']:,.0f}",
        f"{r['compile_s']:.0f}"]) + ' |')
text = ['\n'.join(rows), '']
conv = ['| objective | target | conv_impl | temporaries GiB | total GiB | XLA TFLOP | XLA GB moved | collectives MB | step >= ms (bound) |', '|---|---|---|---:|---:|---:|---:|---:|---:|']
for key, topo, batch in (('v5e_2x2', 'v5e:2x2', 100), ('h100_8', 'h100:8', 256)):
  for obj in ('wae_mmd', 'wae_gan', 'vae'):
    for variant, impl in (('', 'xla (auto)'), ('_phase', 'phase')):
      r = load(f'{obj}_dcgan_{key}{variant}')
      if r is None: continue
      roof = r['roofline']; coll = sum(c['bytes'] for c in r['collectives'].values()) / 1e6
      conv.append('| ' + ' | '.join([{'mmd': 'WAE-MMD', 'gan': 'WAE-GAN', 'vae': 'VAE'}[r['objective']], f'{topo}, batch {batch}', impl,
        gib(r['temp_bytes']), gib(r['total_bytes']),
        f"{r['xla_flops'] / 1e12:.3f}" if r['xla_flops'] else '-',
        f"{r['xla_bytes_accessed'] / 1e9:.1f}" if r['xla_bytes_accessed'] else '-', f'{coll:.0f}',
        f"{roof['step_s'] * 1e3:.2f} ({roof['bound']})"]) + ' |')
text += ['\n'.join(conv), '']
d, n = load('wae_gan_dcgan_v5e_2x2'), load('wae_gan_dcgan_v5e_2x2_nodonate')
if n:
  text.append('| state | arguments GiB | outputs GiB | written into the arguments GiB | temporaries GiB | total GiB |\n|---|---:|---:|---:|---:|---:|')
  for label, r in (('donated (training)', d), ('not donated (`--nodonate`)', n)):
    text.append(f"| {label} | {gib(r['argument_bytes'])} | {gib(r['output_bytes'])} | {gib(r['alias_bytes'])} | {gib(r['temp_bytes'])} | {gib(r['total_bytes'])} |")
(out / 'table.md').write_text('\n'.join(text) + '\n')
print('\n'.join(text))
# docs/packing.md's: each packed step beside the same step unpacked (above).
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
