"""The one config tree every run is described by, and its validation.

`configs/<dataset>.py` start from `base_config()` and set the paper's values for their data;
`validate` runs before anything heavy so that a typo fails in a second, not after compiling.
"""

import functools
import importlib.util
import os
import pathlib
from typing import Any, Dict

import ml_collections

from wae_jax import input_pipeline
from wae_jax import penalties

PENALTIES = ('mmd', 'gan', 'vae')
DATASETS = input_pipeline.DATASETS
ARCHITECTURES = ('dcgan', 'resnet50v2')
CONV_IMPLS = ('auto', 'phase', 'xla')
DTYPES = ('float32', 'bfloat16')
REPO = pathlib.Path(__file__).resolve().parents[1]  # configs/ sits here in a checkout


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every dataset: the paper's MNIST WAE-MMD."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = 'mnist'
  c.data.source = 'auto'        # auto | tfds | idx (MNIST: the four IDX .gz files)
                                # | folder (CelebA: img_align_celeba/ or the folder holding it)
  c.data.dir = ''               # TFDS data_dir, or the IDX folder ('' = $WAE_JAX_MNIST_DIR),
                                # or the CelebA folder
  c.data.cache_dir = ''         # preprocessed CelebA ('' = $WAE_JAX_CACHE or ~/.cache/wae_jax)
  c.data.image_shape = (28, 28, 1)
  c.data.pixel_range = (0.0, 1.0)

  c.model = ml_collections.ConfigDict()
  c.model.arch = 'dcgan'        # dcgan (the paper's nets below) | resnet50v2 (wae_jax.models.resnet)
  c.model.latent_dim = 8
  c.model.prior_variance = 1.0  # sigma_z^2 of the N(0, sigma_z^2 I) prior
  c.model.width = 1.0           # channel multiplier; 1.0 = the paper's 128..1024
  c.model.kernel_size = 4
  c.model.encoder_widths = (128, 256, 512, 1024)
  c.model.decoder_widths = (1024, 512, 256)
  c.model.gaussian_encoder = False
  c.model.adversary_widths = (512, 512, 512, 512)
  c.model.adversary_width = 1.0
  c.model.conv_impl = 'auto'    # auto: each backend's fastest (models.AUTO_CONV_IMPL);
                                # phase: sub-pixel convs for XLA:CPU; xla: lax's own
  c.model.dtype = 'float32'     # activations; bfloat16 = mixed precision for accelerators
                                # (parameters, losses and penalties stay float32)
  # arch=resnet50v2 only (kernel_size, encoder/decoder_widths and conv_impl are dcgan's):
  c.model.resnet_stage_blocks = (3, 4, 6, 3)  # bottleneck blocks per stage; ResNet-50's
  c.model.resnet_widths = (64, 128, 256, 512)  # bottleneck widths, times model.width;
                                               # a block's output has 4x its width

  c.penalty = ml_collections.ConfigDict()
  c.penalty.name = 'mmd'        # mmd (WAE-MMD) | gan (WAE-GAN) | vae (KL, the baseline)
  c.penalty.lam = 10.0          # lambda; for the VAE, the KL weight
  c.penalty.kernel = 'imq_multiscale'
  c.penalty.kernel_scale = 0.0  # 0 = the paper's C = 2 * latent_dim * prior_variance
  c.penalty.log_prior_trick = False

  c.cost = ml_collections.ConfigDict()
  c.cost.name = 'l2sq'          # l2sq | l2 | l1 | bernoulli
  c.cost.scale = 0.05           # the authors' code scales the squared cost by 0.05

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 100
  c.train.num_epochs = 100
  c.train.num_steps = 0         # > 0 overrides num_epochs
  c.train.learning_rate = 1e-3
  c.train.adversary_learning_rate = 5e-4
  c.train.adam_b1 = 0.5
  c.train.lr_decay = ((30, 0.5), (50, 0.2))  # (epoch, factor): lr *= factor from that epoch
  c.train.pretrain_steps = 200  # match Q_Z's mean and covariance to the prior first; 0 = off
  c.train.pretrain_learning_rate = 1e-3
  c.train.input_noise = 0.01    # std of truncated Gaussian pixel noise on encoder inputs
  c.train.log_every = 100
  c.train.checkpoint_every = 1000
  c.train.keep_checkpoints = 3
  c.train.image_every = 1000
  c.train.max_nonfinite_steps = 20  # stop after this many non-finite steps in a row

  c.eval = ml_collections.ConfigDict()
  c.eval.grid_samples = 64      # sample grids (training pictures, --mode=sample) decode this
  c.eval.grid_seed = 1234       # many prior draws from this seed: the same in every run
  c.eval.num_samples = 10000    # generated images for FID, against as many held-out ones
  c.eval.sharpness_images = 1000
  c.eval.mmd_codes = 2000       # encoded test images for the MMD to the prior
  c.eval.cache_dir = ''         # classifier weights, real-data FID statistics ('' = default)
  c.eval.inception_weights = ''  # path to pt_inception-2015-12-05-6726825d.pth
                                 # ('' = $WAE_JAX_INCEPTION_WEIGHTS; neither: no Inception FID)
  return c


def resolve_config_file(spec: str) -> str:
  """'configs/x.py[:arg]' with the file made absolute (relative to the cwd, else the repo)."""
  path, _, arg = spec.partition(':')
  found = pathlib.Path(path).expanduser()
  if not found.is_absolute() and not found.exists():
    found = REPO / path
  if not found.exists():
    raise ValueError(f'config file {path!r} (from {spec!r}) not found in {os.getcwd()} or '
                     f'{REPO}')
  return f'{found.resolve()}:{arg}' if arg else str(found.resolve())


@functools.lru_cache(maxsize=None)
def _config_module(path: str):
  spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """get_config(arg) of 'configs/<name>.py[:arg]', loaded by path as the command line does."""
  path, _, arg = resolve_config_file(spec).partition(':')
  module = _config_module(path)
  return module.get_config(arg) if arg else module.get_config()


def _allowed(field: str, value, allowed) -> None:
  if value not in allowed:
    raise ValueError(f'config.{field}={value!r} is not supported; allowed: '
                     f'{", ".join(map(repr, allowed))}')


def _require(ok: bool, field: str, value, expected: str) -> None:
  if not ok:
    raise ValueError(f'config.{field}={value!r} is invalid: {expected}')


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field, its value and what is allowed."""
  _allowed('data.name', config.data.name, DATASETS)
  _allowed('model.arch', config.model.arch, ARCHITECTURES)
  _allowed('model.conv_impl', config.model.conv_impl, CONV_IMPLS)
  _allowed('model.dtype', config.model.dtype, DTYPES)
  _allowed('penalty.name', config.penalty.name, PENALTIES)
  _allowed('penalty.kernel', config.penalty.kernel, penalties.KERNELS)
  _allowed('cost.name', config.cost.name, penalties.RECONSTRUCTION_COSTS)
  _require(config.penalty.lam > 0, 'penalty.lam', config.penalty.lam, 'must be > 0')
  _require(config.model.latent_dim >= 1, 'model.latent_dim', config.model.latent_dim,
           'must be >= 1')
  _require(config.model.width > 0, 'model.width', config.model.width, 'must be > 0')
  for field in ('resnet_stage_blocks', 'resnet_widths'):
    value = config.model[field]
    _require(isinstance(value, (tuple, list)) and len(value) >= 1
             and all(isinstance(v, int) and v >= 1 for v in value),
             f'model.{field}', value, 'must be a non-empty tuple of ints >= 1')
  _require(len(config.model.resnet_widths) == len(config.model.resnet_stage_blocks),
           'model.resnet_widths', config.model.resnet_widths,
           f'must have one width per stage of model.resnet_stage_blocks '
           f'({len(config.model.resnet_stage_blocks)})')
  _require(config.model.prior_variance > 0, 'model.prior_variance',
           config.model.prior_variance, 'must be > 0')
  min_batch = 2 if config.penalty.name == 'mmd' else 1
  _require(config.train.batch_size >= min_batch, 'train.batch_size', config.train.batch_size,
           f'must be >= {min_batch} (the MMD U-statistic needs two codes)'
           if min_batch == 2 else 'must be >= 1')
  for field in ('log_every', 'checkpoint_every', 'image_every', 'keep_checkpoints',
                'max_nonfinite_steps'):
    value = config.train[field]
    _require(value >= 1, f'train.{field}', value, 'must be >= 1')
  _require(config.train.num_steps >= 0, 'train.num_steps', config.train.num_steps,
           'must be >= 0 (0 = use num_epochs)')
  _require(config.train.num_steps > 0 or config.train.num_epochs > 0, 'train.num_epochs',
           config.train.num_epochs, 'must be > 0 when train.num_steps is 0')
  if config.penalty.name == 'vae':
    _require(config.model.gaussian_encoder, 'model.gaussian_encoder',
             config.model.gaussian_encoder, 'must be True with penalty.name=vae')
  if config.data.dir:
    _require(pathlib.Path(config.data.dir).expanduser().is_dir(), 'data.dir', config.data.dir,
             'no such directory')
  input_pipeline.check_source(config.data.name, config.data.source)
  lo, hi = config.data.pixel_range
  _require(lo < hi, 'data.pixel_range', config.data.pixel_range, 'must be (low, high), low < high')
  if config.cost.name == 'bernoulli':
    _require(tuple(config.data.pixel_range) == (0.0, 1.0), 'data.pixel_range',
             config.data.pixel_range, 'must be (0.0, 1.0) with cost.name=bernoulli')


def flatten(config, prefix: str = '') -> Dict[str, Any]:
  """{'train.batch_size': 100, ...}: a config tree as dotted keys."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[prefix + key] = value
  return flat
