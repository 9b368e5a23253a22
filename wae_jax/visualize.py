"""Pictures of a model: random samples, reconstructions beside originals, interpolations.

Training writes them every `train.image_every` steps, as PNGs under `<workdir>/images/` and
as TensorBoard images; `--mode=sample` decodes the same fixed prior noise.
"""

import functools
import pathlib
from typing import Callable, Dict, Optional, Sequence

import jax
import numpy as np
from PIL import Image

from wae_jax import data as datasets
from wae_jax import errors
from wae_jax import files
from wae_jax import models
from wae_jax import penalties


def to_unit_range(images, pixel_range: Sequence[float]) -> np.ndarray:
  """Pixels in pixel_range -> [0, 1] (clipped), float32: what pictures and features read."""
  lo, hi = datasets.pixel_bounds(pixel_range)
  return np.clip((np.asarray(images, np.float32) - lo) / (hi - lo), 0.0, 1.0)


def to_uint8(images, pixel_range: Sequence[float]) -> np.ndarray:
  return np.round(to_unit_range(images, pixel_range) * 255.0).astype(np.uint8)


def image_grid(
    images, pixel_range: Sequence[float], ncols: Optional[int] = None, pad: int = 1
) -> np.ndarray:
  """[N, H, W, C] images -> one [rows*(H+pad)+pad, cols*(W+pad)+pad, C] uint8 grid; `ncols`
  None: as square as N allows (every grid of samples)."""
  images = to_uint8(images, pixel_range)
  n, h, w, c = images.shape
  ncols = ncols or max(1, int(np.ceil(np.sqrt(n))))
  nrows = -(-n // ncols)
  grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, np.uint8)
  for i, image in enumerate(images):
    r, col = divmod(i, ncols)
    top, left = pad + r * (h + pad), pad + col * (w + pad)
    grid[top : top + h, left : left + w] = image
  return grid


def save_png(path, grid: np.ndarray) -> pathlib.Path:
  """Writes the grid whole or not at all; a full disk is OutOfSpaceError naming the path."""
  path = pathlib.Path(path)
  with errors.out_of_space_as_error('the picture', path), files.atomic_path(path) as tmp:
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(tmp, format='PNG')
  return path


def make_pictures(
    encode: Callable,
    decode: Callable,
    test_images: np.ndarray,
    prior_noise: np.ndarray,
    pixel_range: Sequence[float],
    num_pairs: int = 8,
    num_steps: int = 10,
) -> Dict[str, np.ndarray]:
  """The grids, from `encode` (images -> mean codes) and `decode` (codes -> images).

  Samples: the prior noise decoded. Reconstructions: originals and their reconstructions in
  alternating columns. Interpolations: one row per test pair, linear in latent space,
  endpoints included. A grid with nothing to show (no test image, or no pair of them) is left
  out, so that a tiny data set still gets the others.
  """
  grids = {}
  if len(prior_noise):
    grids['samples'] = image_grid(decode(prior_noise), pixel_range)
  originals = test_images[:32]
  if len(originals):
    reconstructions = decode(encode(originals))
    side_by_side = np.stack([originals, np.asarray(reconstructions)], axis=1)
    grids['reconstructions'] = image_grid(
        side_by_side.reshape((-1,) + originals.shape[1:]), pixel_range, 8
    )
  num_pairs = min(num_pairs, len(test_images) // 2)  # a small test set has fewer pairs
  if num_pairs:
    pairs = encode(test_images[: 2 * num_pairs])
    start, end = pairs[0::2], pairs[1::2]
    t = np.linspace(0.0, 1.0, num_steps)[None, :, None]
    path = (1 - t) * np.asarray(start)[:, None] + t * np.asarray(end)[:, None]
    interpolations = decode(path.reshape((-1,) + path.shape[2:]))
    grids['interpolations'] = image_grid(interpolations, pixel_range, num_steps)
  return grids


def coders(model, pixel_range):
  """Pure encode(variables, images) -> (mean codes, log-variances or None) and
  decode(variables, codes) -> images: pictures and evaluation jit these with their own
  placement of the weights."""
  pixel_range = tuple(pixel_range)

  def encode(variables, images):
    return model.apply(variables, images, train=False, method=model.encode)

  def decode(variables, codes):
    logits = model.apply(variables, codes, train=False, method=model.decode)
    return models.activate(logits, pixel_range)

  return encode, decode


def make_eval_fns(model, state, pixel_range):
  """Jitted (encode to mean codes, decode to images) with the state's current weights.

  They run on this process's default device with a host copy of the weights, so that one
  process can make pictures while the others train on.
  """
  variables = jax.device_get({'params': state.params, 'batch_stats': state.batch_stats})
  encode_fn, decode_fn = coders(model, pixel_range)
  encode = jax.jit(lambda images: encode_fn(variables, images)[0])
  decode = jax.jit(functools.partial(decode_fn, variables))
  return (lambda x: np.asarray(encode(x))), (lambda z: np.asarray(decode(z)))


def fixed_prior_noise(config) -> np.ndarray:
  """The prior noise every sample grid decodes: the same in every run, so grids compare."""
  shape = (config.eval.grid_samples, config.model.latent_dim)
  return np.asarray(
      penalties.prior_samples(
          jax.random.PRNGKey(config.eval.grid_seed), shape, config.model.prior_variance
      )
  )


def write_pictures(config, model, state, test_images, writer, workdir, step) -> Dict[str, str]:
  encode, decode = make_eval_fns(model, state, config.data.pixel_range)
  grids = make_pictures(
      encode, decode, test_images, fixed_prior_noise(config), config.data.pixel_range
  )
  paths = {
      name: str(save_png(pathlib.Path(workdir) / 'images' / f'{name}_{step:07d}.png', grid))
      for name, grid in grids.items()
  }
  if grids:
    writer.write_images(step, {name: grid[None] for name, grid in grids.items()})
  return paths
