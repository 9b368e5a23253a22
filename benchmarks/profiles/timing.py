"""The one timer of these profile scripts: median milliseconds per call, after two warm-up calls."""

import time

import jax
import numpy as np


def median_ms(run, n=10, repeats=7):
  """Median over `repeats` trials of `n` calls of `run()`; a JAX result is waited for."""
  run()
  run()
  trials = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(n):
      out = run()
    if out is not None:
      jax.block_until_ready(out)
    trials.append((time.perf_counter() - start) / n)
  return 1e3 * np.median(trials)
