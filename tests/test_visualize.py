"""Picture grids: layout, pixel mapping, and the three grids from encode/decode functions."""

import pathlib

import jax
import numpy as np

from tests.helpers import tiny_config
from wae_jax import models
from wae_jax import train
from wae_jax import visualize


def test_image_grid_layout_and_pixel_mapping():
  images = np.zeros((5, 3, 4, 1), np.float32)
  images[1] = 1.0
  grid = visualize.image_grid(images, (0.0, 1.0), ncols=2, pad=1)
  assert grid.shape == (3 * 4 + 1, 2 * 5 + 1, 1) and grid.dtype == np.uint8
  assert (grid[1:4, 1:5] == 0).all()  # image 0: black
  assert (grid[1:4, 6:10] == 255).all()  # image 1: white
  assert (grid[0] == 255).all()  # padding
  # Without ncols, as square as the count allows: 5 images in 3 columns and 2 rows.
  assert visualize.image_grid(images, (0.0, 1.0), pad=1).shape == (2 * 4 + 1, 3 * 5 + 1, 1)
  signed = visualize.image_grid(-np.ones((1, 2, 2, 3)), (-1.0, 1.0), ncols=1)
  assert (signed[1:3, 1:3] == 0).all()


def test_make_pictures_places_originals_reconstructions_and_interpolations():
  # The decoder inverts the pixels (1 - x), so that every picture says which image it shows.
  rng = np.random.default_rng(0)
  test_images = rng.uniform(size=(40, 4, 4, 1)).astype(np.float32)
  flat = lambda x: x.reshape(len(x), -1)
  inverted = lambda z: 1.0 - z.reshape(len(z), 4, 4, 1)
  noise = rng.uniform(size=(9, 16)).astype(np.float32)
  grids = visualize.make_pictures(
      flat, inverted, test_images, noise, (0.0, 1.0), num_pairs=2, num_steps=3
  )
  as_uint8 = lambda images: visualize.to_uint8(images, (0.0, 1.0))
  samples = grids['samples']
  assert samples.shape == (3 * 5 + 1, 3 * 5 + 1, 1)
  np.testing.assert_array_equal(samples[1:5, 6:10], as_uint8(1.0 - noise[1].reshape(4, 4, 1)))
  rec = grids['reconstructions']
  assert rec.shape == (8 * 5 + 1, 8 * 5 + 1, 1)
  # Row 0: original 0, its reconstruction, original 1, its reconstruction, ...
  np.testing.assert_array_equal(rec[1:5, 1:5], as_uint8(test_images[0]))
  np.testing.assert_array_equal(rec[1:5, 6:10], as_uint8(1.0 - test_images[0]))
  np.testing.assert_array_equal(rec[1:5, 11:15], as_uint8(test_images[1]))
  inter = grids['interpolations']
  assert inter.shape == (2 * 5 + 1, 3 * 5 + 1, 1)
  # Pair (0, 1) in row 0: its ends decode images 0 and 1, its middle their mean.
  np.testing.assert_array_equal(inter[1:5, 1:5], as_uint8(1.0 - test_images[0]))
  np.testing.assert_array_equal(inter[1:5, 11:15], as_uint8(1.0 - test_images[1]))
  middle = as_uint8(1.0 - (test_images[0] + test_images[1]) / 2)
  np.testing.assert_allclose(inter[1:5, 6:10].astype(int), middle.astype(int), atol=1)
  np.testing.assert_array_equal(inter[6:10, 1:5], as_uint8(1.0 - test_images[2]))


def test_save_png_round_trip(tmp_path):
  from PIL import Image

  grid = visualize.image_grid(np.ones((4, 5, 5, 3)) * 0.5, (0.0, 1.0), ncols=2)
  path = visualize.save_png(tmp_path / 'a' / 'grid.png', grid)
  with Image.open(path) as image:
    np.testing.assert_array_equal(np.asarray(image), grid)


def test_make_pictures_with_few_test_images():
  # Three test images make one interpolation pair, not a crash on pairs of unequal length.
  images = np.random.default_rng(0).uniform(size=(3, 4, 4, 1)).astype(np.float32)
  grids = visualize.make_pictures(
      lambda x: x.reshape(len(x), -1),
      lambda z: z.reshape(len(z), 4, 4, 1),
      images,
      np.zeros((4, 16), np.float32),
      (0.0, 1.0),
      num_steps=3,
  )
  assert grids['interpolations'].shape == (1 * 5 + 1, 3 * 5 + 1, 1)


class _Writer:

  def __init__(self):
    self.images = {}

  def write_images(self, step, images):
    self.images[step] = images


def test_pictures_of_a_real_model_from_one_test_image_or_none(tmp_path):
  # A CelebA folder of 10 images has one test image: no interpolation pair. The model must not
  # be asked to encode an empty batch (its im2col chunking divided by zero).
  config = tiny_config('wae_mmd')
  config.eval.grid_samples = 4
  model = models.build_autoencoder(config)
  state = train.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch=10)
  for n, expected in ((1, {'samples', 'reconstructions'}), (0, {'samples'})):
    writer = _Writer()
    paths = visualize.write_pictures(
        config, model, state, np.zeros((n, 28, 28, 1), np.float32), writer, tmp_path, n
    )
    assert set(paths) == set(writer.images[n]) == expected
    assert all(pathlib.Path(p).exists() for p in paths.values())
