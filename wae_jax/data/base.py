"""What every data set shares: its record (`Dataset`), the registry of them, DataError.

A data set is one record: how to load it, what its images are, which FID features score it.
Everything that differs between data sets (the loader, the config's checks of data.name and
data.source, the sweep's step count, evaluation's FID) reads the record, so a new data set is
one `register(Dataset(...))` call, from inside the package or outside it.
"""

import dataclasses
import os
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from wae_jax import errors

CACHE_ENV = 'WAE_JAX_CACHE'  # Caches: CelebA arrays, the MNIST classifier, FID statistics.

# split ('train', 'test') -> (images uint8 [N, H, W, C], labels int32 [N] or None).
Splits = Dict[str, Tuple[np.ndarray, Optional[np.ndarray]]]


class DataError(errors.WaeError, ValueError):
  """A data set is missing, malformed or misconfigured (the message says where)."""


# What a pixel range is: the values images are mapped into (config.data.pixel_range).
PIXEL_RANGE_RULE = 'pixel_range must be (low, high) with low < high'


def is_pixel_range(value) -> bool:
  """Whether `value` is a pixel range: two numbers, the first below the second."""
  try:
    lo, hi = (float(v) for v in value)
  except (TypeError, ValueError):
    return False
  return lo < hi


def pixel_bounds(pixel_range) -> Tuple[float, float]:
  """A pixel range's (low, high) as floats, for what maps pixels; ValueError naming the rule
  unless `is_pixel_range`."""
  if not is_pixel_range(pixel_range):
    raise ValueError(f'{PIXEL_RANGE_RULE}, got {pixel_range!r}')
  lo, hi = pixel_range
  return float(lo), float(hi)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One data set, named by config.data.name."""

  name: str  # config.data.name
  title: str  # how logs name it ('MNIST from IDX files in ...')
  # config.data (source, dir, cache_dir, ...) -> (Splits, where they came from, for the logs).
  # Images are uint8 0..255; config.data.pixel_range maps them when a batch is read.
  load: Callable[..., Tuple[Splits, str]]
  image_shape: Tuple[int, int, int]  # height, width, channels of every image
  pixel_range: Tuple[float, float]  # the range its configs train in (config_fields)
  train_size: int  # training images: a run's steps counted without loading them (the sweep)
  sources: Tuple[str, ...] = ('auto',)  # config.data.source values it takes; the first: default
  # The FID features made for it (a key of evaluation.fid.EXTRACTORS), computed besides
  # Inception's; None: Inception's only.
  fid_extractor: Optional[str] = None

  def __post_init__(self):
    object.__setattr__(self, 'image_shape', tuple(self.image_shape))
    object.__setattr__(self, 'pixel_range', tuple(float(v) for v in self.pixel_range))
    object.__setattr__(self, 'sources', tuple(self.sources))
    problems = [
        what
        for what, ok in (
            ('name must be a non-empty string', isinstance(self.name, str) and self.name),
            ('load must be callable', callable(self.load)),
            (
                'image_shape must be 3 ints >= 1 (height, width, channels)',
                len(self.image_shape) == 3
                and all(isinstance(v, int) and v >= 1 for v in self.image_shape),
            ),
            (PIXEL_RANGE_RULE, is_pixel_range(self.pixel_range)),
            (
                'train_size must be an int >= 1',
                isinstance(self.train_size, int) and self.train_size >= 1,
            ),
            (
                'sources must be a non-empty tuple of strings',
                self.sources and all(isinstance(s, str) for s in self.sources),
            ),
        )
        if not ok
    ]
    if problems:
      raise ValueError(f'Dataset {self.name!r}: ' + '; '.join(problems))

  def config_fields(self) -> Dict[str, object]:
    """config.data's fields that name this data set: `config.data.update(d.config_fields())`."""
    return {
        'name': self.name,
        'source': self.sources[0],
        'image_shape': self.image_shape,
        'pixel_range': self.pixel_range,
    }


_REGISTRY: Dict[str, Dataset] = {}


def register(dataset: Dataset) -> Dataset:
  """Makes `dataset` loadable by config.data.name=dataset.name; returns it."""
  if dataset.name in _REGISTRY:
    raise ValueError(
        f'a data set named {dataset.name!r} is already registered '
        f'({_REGISTRY[dataset.name].title}); pick another name'
    )
  _REGISTRY[dataset.name] = dataset
  return dataset


def names() -> Tuple[str, ...]:
  """The registered data sets' names, in the order they were registered."""
  return tuple(_REGISTRY)


def get(name: str) -> Dataset:
  """The record of config.data.name=name; ConfigError naming the registered ones."""
  if name not in _REGISTRY:
    raise errors.ConfigError(
        f'config.data.name={name!r} is not supported; allowed: '
        f'{", ".join(map(repr, _REGISTRY))}'
    )
  return _REGISTRY[name]


def check_source(name: str, source: str) -> Dataset:
  """The record of config.data.name; ConfigError unless config.data.source is one of its."""
  dataset = get(name)
  if source not in dataset.sources:
    raise errors.ConfigError(
        f'config.data.source={source!r} is not supported with '
        f'config.data.name={name!r}; allowed: '
        f'{", ".join(map(repr, dataset.sources))}'
    )
  return dataset


def default_cache_dir() -> Path:
  """Where every cache of the project goes unless a config field says otherwise."""
  return Path(os.environ.get(CACHE_ENV) or '~/.cache/wae_jax').expanduser()
