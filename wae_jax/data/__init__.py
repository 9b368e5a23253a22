"""The data sets, one record each, named by config.data.name.

    from wae_jax import data
    data.register(data.Dataset(name='noise', title='Noise', load=load, image_shape=(16, 16, 1),
                               pixel_range=(0.0, 1.0), train_size=64))

`load(config.data)` returns ({'train': (uint8 images [N, H, W, C], int32 labels or None),
'test': ...}, a description for the logs); `wae_jax.input_pipeline.load_dataset` checks what it
returns against the record and maps the pixels into config.data.pixel_range. Built in: MNIST
(mnist.py) and CelebA (celeba.py); docs/data_and_models.md walks through adding one.
"""

from wae_jax.data import celeba
from wae_jax.data import mnist
from wae_jax.data.base import CACHE_ENV
from wae_jax.data.base import DataError
from wae_jax.data.base import Dataset
from wae_jax.data.base import PIXEL_RANGE_RULE
from wae_jax.data.base import Splits
from wae_jax.data.base import check_source
from wae_jax.data.base import default_cache_dir
from wae_jax.data.base import get
from wae_jax.data.base import is_pixel_range
from wae_jax.data.base import names
from wae_jax.data.base import pixel_bounds
from wae_jax.data.base import register

__all__ = [
    'CACHE_ENV',
    'DataError',
    'Dataset',
    'PIXEL_RANGE_RULE',
    'Splits',
    'check_source',
    'default_cache_dir',
    'get',
    'is_pixel_range',
    'names',
    'pixel_bounds',
    'register',
]

register(mnist.DATASET)
register(celeba.DATASET)
