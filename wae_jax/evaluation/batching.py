"""The one helper that runs a function over many images in fixed-size batches.

Evaluation encodes, decodes and featurizes tens of thousands of images: whole, they would
not fit in memory, and a jitted function compiles once per batch shape. Every evaluation
module batches through `batched`, so that padding and concatenation live in one place.
"""

from typing import Any, Callable

import jax
import numpy as np


def batched(fn: Callable[[np.ndarray], Any], inputs: np.ndarray, batch_size: int,
            pad: bool = False) -> Any:
  """fn over inputs [N, ...] in batches of batch_size; outputs concatenated along axis 0.

  fn may return any pytree of arrays (e.g. an encoder's (mean, log_variance or None)).
  pad=True zero-pads the last batch to batch_size and drops the padding's outputs, so that
  a jitted fn compiles for one shape only; without it, only the last batch has another
  shape. An empty input still gives outputs of the right trailing shape.
  """
  outputs = []
  for start in range(0, len(inputs), batch_size) or [0]:
    batch = inputs[start:start + batch_size]
    count = len(batch)
    if pad and count < batch_size:
      padding = np.zeros((batch_size - count,) + batch.shape[1:], batch.dtype)
      batch = np.concatenate([batch, padding])
    outputs.append(jax.tree.map(lambda y, n=count: np.asarray(y)[:n], fn(batch)))
  return jax.tree.map(lambda *ys: np.concatenate(ys), *outputs)
