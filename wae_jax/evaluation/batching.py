"""The one helper that runs a function over many images in batches, on every local device.

Evaluation encodes, decodes and featurizes tens of thousands of images: whole, they would
not fit in memory, and a jitted function compiles once per batch shape. Every evaluation
module batches through `batched`, so that padding, the split over devices and concatenation
live in one place. Each batch is split along its first axis over a 1-d mesh of this
process's devices (wae_jax/parallel.py's 'data' axis), so evaluation runs data-parallel on
all of them; a per-image function gives the same numbers on one device as on eight.
"""

from typing import Any, Callable, Optional

import jax
import numpy as np

from wae_jax import parallel


def local_mesh():
  """The 1-d 'data' mesh over this process's devices: evaluation needs no other process."""
  return parallel.make_mesh(jax.local_devices())


def replicate(tree):
  """A pytree (weights) on every local device once, rather than sent with every batch."""
  return parallel.replicate(tree, local_mesh())


class Mapped:
  """`inputs` read through `fn` a slice at a time, e.g. images converted to [0, 1] floats:
  `batched` reads it batch by batch, so the converted copy is never whole in memory (10,000
  CelebA images as float32 are 0.5 GB)."""

  def __init__(self, inputs, fn: Callable[[Any], np.ndarray]):
    self.inputs, self.fn = inputs, fn

  def __len__(self) -> int:
    return len(self.inputs)

  def __getitem__(self, index) -> np.ndarray:
    return self.fn(self.inputs[index])


def _round_up(count: int, multiple: int) -> int:
  return -(-count // multiple) * multiple


def batched(
    fn: Callable[[jax.Array], Any],
    inputs,
    batch_size: int,
    pad: bool = False,
    limit: Optional[int] = None,
) -> Any:
  """fn over inputs [N, ...] in batches; outputs concatenated along axis 0, as numpy.

  fn (jitted: it gets a jax.Array split over the local devices along axis 0; its other
  arguments replicated, see `replicate`, or host values) may return any pytree of arrays
  (e.g. an encoder's (mean, log_variance or None)). A batch holds batch_size rows rounded
  up to a multiple of the device count, so that it splits evenly. The last batch is
  zero-padded to a multiple of the device count, or with pad=True to the full batch, so
  that a jitted fn compiles for one shape only; the padding's outputs are dropped. limit:
  only the first `limit` rows (inputs are read a batch at a time, so a lazily indexed one,
  as input_pipeline.Images, is never whole in memory). An empty input still gives outputs
  of the right trailing shape.
  """
  mesh = local_mesh()
  devices = mesh.devices.size
  sharding = parallel.batch_sharded(mesh)
  size = _round_up(batch_size, devices)
  total = len(inputs) if limit is None else min(limit, len(inputs))
  outputs = []
  for start in range(0, total, size) or [0]:
    batch = np.asarray(inputs[start : min(start + size, total)])
    count = len(batch)
    padded = size if pad else _round_up(count, devices)
    if padded > count:
      padding = np.zeros((padded - count,) + batch.shape[1:], batch.dtype)
      batch = np.concatenate([batch, padding])
    result = fn(jax.device_put(batch, sharding))
    outputs.append(jax.tree.map(lambda y, n=count: np.asarray(y)[:n], result))
  return jax.tree.map(lambda *ys: np.concatenate(ys), *outputs)
