"""Published figures of the accelerators wae_jax targets: peak FLOP/s, HBM size and bandwidth.

One table for the benchmark's MFU and for the ahead-of-time roofline
(`wae_jax.accelerators.aot`). Peaks
are dense (no sparsity) per chip, by the dtype of the convolutions and matrix products.
'float32' is what a float32 model runs at XLA's default precision: TF32 tensor cores on
NVIDIA Ampere and later, bfloat16 passes on TPUs (so there it is the bfloat16 peak);
'float32_strict' is the non-tensor-core FP32 peak, for reference.

Sources: NVIDIA's H100 Tensor Core GPU datasheet (SXM: FP32 67 TF, TF32 989 TF and BF16
1,979 TF with sparsity, i.e. 494.5 / 989.5 dense, 80 GB at 3.35 TB/s; PCIe: 51, 756 / 1,513
sparse; NVL: 60, 835 / 1,671 sparse), NVIDIA's H200 datasheet (H100 SXM compute, 141 GB at
4.8 TB/s), NVIDIA's A100 datasheet (FP32 19.5, TF32 156, BF16 312 dense; 80 GB at 2,039 GB/s),
Google Cloud's TPU system architecture pages (per chip: v4 275 TF bf16, 32 GiB at 1,228 GB/s;
v5e 197 TF, 16 GiB at 819 GB/s; v5p 459 TF, 95 GiB at 2,765 GB/s; v6e 918 TF, 32 GiB at
1,640 GB/s).
"""

import dataclasses
import pathlib
from typing import Dict, List, Optional, Tuple

GiB = 2**30
GPU_SPECS_DIR = pathlib.Path(__file__).parent / 'gpu_specs'


@dataclasses.dataclass(frozen=True)
class Chip:
  name: str  # as in --topology, e.g. 'v5e', 'h100'
  device_kind: str  # a substring of jax's Device.device_kind for this chip
  platform: str  # 'tpu' | 'gpu' (jax.Device.platform)
  peak_flops: Dict[str, float]  # dense FLOP/s per chip, by activation dtype
  hbm_bytes: Optional[int] = None
  hbm_bytes_per_s: Optional[float] = None

  def peak(self, dtype: str) -> Optional[float]:
    return self.peak_flops.get(dtype)

  @property
  def gpu_spec(self) -> Optional[pathlib.Path]:
    """The GpuTargetConfigProto (text) that compiles for this GPU without one, if shipped."""
    path = GPU_SPECS_DIR / f'{self.name}.txtpb'
    return path if self.platform == 'gpu' and path.exists() else None


def _tpu(bf16_flops):
  return {'float32': bf16_flops, 'bfloat16': bf16_flops}


def _nvidia(tf32, bf16, fp32):
  return {'float32': tf32, 'bfloat16': bf16, 'float32_strict': fp32}


# Most specific device_kind first: 'TPU v5 lite' (v5e) before 'TPU v5' (v5p).
CHIPS = (
    Chip('h100_pcie', 'H100 PCIe', 'gpu', _nvidia(378e12, 756e12, 51e12), 80 * GiB, 2.0e12),
    Chip('h100_nvl', 'H100 NVL', 'gpu', _nvidia(417.5e12, 835.5e12, 60e12), 94 * GiB, 3.9e12),
    Chip('h100', 'H100', 'gpu', _nvidia(494.5e12, 989.5e12, 67e12), 80 * GiB, 3.35e12),
    Chip('h200', 'H200', 'gpu', _nvidia(494.5e12, 989.5e12, 67e12), 141 * 10**9, 4.8e12),
    Chip('a100', 'A100', 'gpu', _nvidia(156e12, 312e12, 19.5e12), 80 * GiB, 2.039e12),
    Chip('v4', 'TPU v4', 'tpu', _tpu(275e12), 32 * GiB, 1.228e12),
    Chip('v5e', 'TPU v5 lite', 'tpu', _tpu(197e12), 16 * GiB, 819e9),
    Chip('v5e', 'TPU v5e', 'tpu', _tpu(197e12), 16 * GiB, 819e9),
    Chip('v5p', 'TPU v5', 'tpu', _tpu(459e12), 95 * GiB, 2.765e12),
    Chip('v6e', 'TPU v6', 'tpu', _tpu(918e12), 32 * GiB, 1.64e12),  # Trillium
)


def chip_for_device_kind(device_kind: str) -> Optional[Chip]:
  """The chip whose device_kind is in `device_kind` (jax's name for a device), or None."""
  for chip in CHIPS:
    if chip.device_kind.lower() in device_kind.lower():
      return chip
  return None


def chip_named(name: str) -> Optional[Chip]:
  """The chip called `name` in --topology ('v5e', 'h100', ...), or None."""
  return next((chip for chip in CHIPS if chip.name == name.lower()), None)


def device_peak_flops(device_kind: str, dtype: str) -> Optional[float]:
  chip = chip_for_device_kind(device_kind)
  return chip.peak(dtype) if chip else None


def gpu_names():
  return sorted(chip.name for chip in CHIPS if chip.gpu_spec is not None)


TPU_NAMES = ('v4', 'v5e', 'v5p', 'v6e')


def chips_with_hbm(at_least: int) -> List[Tuple[str, int]]:
  """(name, HBM bytes) of the chips --topology can name with at least `at_least` bytes of
  HBM, smallest first: where a state too large for the target chip would fit."""
  names = set(TPU_NAMES) | set(gpu_names())
  found = {
      chip.name: chip.hbm_bytes
      for chip in CHIPS
      if chip.name in names and chip.hbm_bytes and chip.hbm_bytes >= at_least
  }
  return sorted(found.items(), key=lambda item: item[1])
