"""The one config tree every run is described by: its defaults, its checks, its files.

`base_config()` is the paper's MNIST WAE-MMD and holds every default once; `configs/<name>.py`
set only what their argument changes, parsed by `parse_arg`. A field with no value is None
(a typed `placeholder`, so that `--config.<field>=...` still parses), never a sentinel like 0
or ''. `validate` holds every check of a config's values and runs before anything heavy, so
that a typo fails in a second, not after compiling.

A workdir keeps the configs it was trained under (`record_config`): `config.json` is the
latest, `config_<step>.json` each one with the step it was started or resumed at (it trained
the steps after that one). A resume under a config that changes what training computes is
refused (`check_resume`) unless the change is meant; `FREE_FIELDS` may differ freely.
Evaluating a checkpoint takes every other field from the record it was trained under
(`record_in_force`, `with_recorded`), so that its results are labelled by what was trained.
"""

import fnmatch
import functools
import importlib.util
import json
import math
import os
import pathlib
import re
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import ml_collections
from ml_collections import config_dict

from wae_jax import data as datasets
from wae_jax import errors
from wae_jax import files
from wae_jax import models
from wae_jax import penalties
from wae_jax.models import layers

# The objectives configs/*.py offer (their `objective=` argument), by config.penalty.name:
# the paper's settings of each are in those files. Any penalty in penalties.REGISTRY can be
# named by config.penalty.name (`penalties.register` adds one: docs/penalties.md).
OBJECTIVES = {
    'wae_mmd': 'mmd',
    'wae_gan': 'gan',
    'vae': 'vae',
    'wae_swd': 'swd',
    'wae_sinkhorn': 'sinkhorn',
}
ARCHITECTURES = tuple(models.ARCHITECTURES)
CONV_IMPLS = ('auto',) + layers.IMPLEMENTATIONS
DTYPES = ('float32', 'bfloat16')
SAMPLERS = ('prior', 'gmm', 'both')
GMM_COVARIANCES = ('full', 'diag', 'tied', 'spherical')
# Fields holding a file or folder; None = unset (each one's default applies).
PATH_FIELDS = ('data.dir', 'data.cache_dir', 'eval.cache_dir', 'eval.inception_weights')
# Fields (fnmatch patterns) a resumed run may change freely: they leave every step's result as
# it was. The step budget (so that a run can be continued longer), how often it logs, draws
# pictures and checkpoints, how many checkpoints it keeps, when it gives up on non-finite steps,
# where the data and its cache are, and evaluation's settings (evaluation takes these from its
# own command's config, the rest from the checkpoint's record: `with_recorded`; training uses
# eval.* only for the pictures' sample grids).
FREE_FIELDS = (
    'train.num_epochs',
    'train.num_steps',
    'train.log_every',
    'train.image_every',
    'train.checkpoint_every',
    'train.keep_checkpoints',
    'train.max_nonfinite_steps',
    'data.dir',
    'data.cache_dir',
    'eval.*',
)


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every dataset: the paper's MNIST WAE-MMD.

  Each field's comment is its description in docs/config.md (`python -m
  wae_jax.config_reference --out=docs/config.md`): a comment on the field's line, continued on
  the comment lines indented below it; a section's comment is on its ConfigDict's line.
  """
  c = ml_collections.ConfigDict()
  c.seed = 0  # parameters, noise and the data order all follow from it

  c.data = ml_collections.ConfigDict()  # the images: which data set, read from where
  c.data.name = 'mnist'  # mnist | celeba
  c.data.source = 'auto'  # auto | tfds | idx (MNIST: the four IDX .gz files)
  #   | folder (CelebA: img_align_celeba/ or the folder holding it)
  c.data.dir = config_dict.placeholder(str)  # TFDS data_dir, or the IDX folder (None:
  #   $WAE_JAX_MNIST_DIR), or the CelebA folder
  c.data.cache_dir = config_dict.placeholder(str)  # preprocessed CelebA (None: $WAE_JAX_CACHE
  #   or ~/.cache/wae_jax)
  c.data.image_shape = (28, 28, 1)  # height, width, channels
  c.data.pixel_range = (0.0, 1.0)  # uint8 0..255 maps linearly onto [low, high]

  c.model = ml_collections.ConfigDict()  # the encoder, the decoder, WAE-GAN's adversary
  c.model.arch = 'dcgan'  # dcgan (the paper's nets below) | resnet50v2 (models/resnet.py)
  c.model.latent_dim = 8  # d_z
  c.model.prior_variance = 1.0  # sigma_z^2 of the N(0, sigma_z^2 I) prior
  c.model.width = 1.0  # channel multiplier; 1.0 = the paper's 128..1024
  c.model.kernel_size = 4  # dcgan: of every (transposed) convolution
  c.model.encoder_widths = (128, 256, 512, 1024)  # dcgan: stride-2 convs, then a linear map
  #   to the code
  c.model.decoder_widths = (1024, 512, 256)  # dcgan: a linear map to a widths[0] map, then
  #   stride-2 transposed convs (one per further width)
  c.model.gaussian_encoder = False  # True: the encoder gives a mean and a log-variance
  c.model.adversary_widths = (512, 512, 512, 512)  # WAE-GAN's MLP on codes
  c.model.adversary_width = 1.0  # multiplier of adversary_widths
  c.model.conv_impl = 'auto'  # dcgan: auto (each backend's fastest, models.AUTO_CONV_IMPL)
  #   | phase (sub-pixel convs for XLA:CPU) | xla (lax's own)
  c.model.dtype = 'float32'  # activations; bfloat16 = mixed precision for accelerators
  #   (parameters, losses and penalties stay float32)
  c.model.resnet_stage_blocks = (3, 4, 6, 3)  # resnet50v2: bottleneck blocks per stage;
  #   ResNet-50's
  c.model.resnet_widths = (64, 128, 256, 512)  # resnet50v2: bottleneck widths, times
  #   model.width; a block's output has 4x its width

  c.penalty = ml_collections.ConfigDict()  # the latent penalty D_Z and its weight
  c.penalty.name = 'mmd'  # mmd (WAE-MMD) | gan (WAE-GAN) | vae (KL, the baseline)
  #   | swd (sliced Wasserstein) | sinkhorn (Sinkhorn divergence)
  #   | one added with penalties.register (docs/penalties.md)
  c.penalty.lam = 10.0  # lambda; for the VAE, the KL weight
  c.penalty.kernel = 'imq_multiscale'  # rbf | imq | imq_multiscale (IMQ summed over scales)
  c.penalty.kernel_scale = config_dict.placeholder(float)  # the kernel's base scale C (None:
  #   the paper's C = 2 * latent_dim * prior_variance)
  c.penalty.log_prior_trick = False  # WAE-GAN: add log p_z(z) to the adversary's logits
  c.penalty.gan_update = 'simultaneous'  # WAE-GAN: simultaneous (both nets from the same
  #   parameters) | alternating (the paper's Algorithm 1: the
  #   adversary first, then the auto-encoder against the new one)
  c.penalty.num_projections = 50  # swd: random directions per step
  c.penalty.swd_p = 2.0  # swd: the p of SW_p^p (the distance |a - b|^p on each line)
  c.penalty.sinkhorn_epsilon = 1.0  # sinkhorn: entropic regularisation, in squared-distance
  #   units (smaller: closer to W_2^2, more iterations)
  c.penalty.sinkhorn_max_iterations = 200  # sinkhorn: cap on the solver's iterations

  c.cost = ml_collections.ConfigDict()  # the reconstruction cost c(x, G(z))
  c.cost.name = 'l2sq'  # l2sq | l2 | l1 | bernoulli
  c.cost.scale = 0.05  # the authors' code scales the squared cost by 0.05

  c.train = ml_collections.ConfigDict()  # the optimiser, the run's length, logs, checkpoints
  c.train.batch_size = 100  # the global batch, split over the devices
  c.train.num_epochs = 100  # the length of a run, unless num_steps is set
  c.train.num_steps = config_dict.placeholder(int)  # None: num_epochs; set: overrides it
  c.train.learning_rate = 1e-3  # Adam's, for the encoder and decoder
  c.train.adversary_learning_rate = 5e-4  # Adam's, for WAE-GAN's adversary
  c.train.adam_b1 = 0.5  # Adam's beta1, as in the paper
  c.train.lr_decay = ((30, 0.5), (50, 0.2))  # (epoch, factor): lr *= factor from that epoch
  c.train.pretrain_steps = 200  # match Q_Z's mean and covariance to the prior first; 0 = off
  c.train.pretrain_learning_rate = 1e-3  # Adam's, for that pre-training
  c.train.input_noise = 0.01  # std of truncated Gaussian pixel noise on encoder inputs
  c.train.log_every = 100  # steps between metric lines
  c.train.checkpoint_every = 1000  # steps between checkpoints (and one at the end)
  c.train.keep_checkpoints = 3  # the latest this many stay on disk
  c.train.image_every = 1000  # steps between sample and reconstruction pictures
  c.train.max_nonfinite_steps = 20  # stop after this many non-finite steps in a row

  c.eval = ml_collections.ConfigDict()  # --mode=evaluate, and the pictures' sample grids
  c.eval.grid_samples = 64  # sample grids (training pictures, --mode=sample) decode this
  c.eval.grid_seed = 1234  # many prior draws from this seed: the same in every run
  c.eval.num_samples = 10000  # generated images for FID, against as many held-out ones
  c.eval.sharpness_images = 1000  # samples, reconstructions and test images whose sharpness
  #   is averaged
  c.eval.mmd_codes = 2000  # encoded test images for the MMD to the prior
  c.eval.samples_seed_offset = 1  # evaluation samples decode prior noise from seed + this
  c.eval.mmd_prior_seed_offset = 2  # the MMD's prior draws come from seed + this
  c.eval.batch_size = 500  # images per encode or decode call when evaluating
  c.eval.sampler = 'both'  # where samples' codes come from: prior (the WAE's P_Z) | gmm
  #   (a Gaussian mixture fitted to training codes, ex post) | both
  c.eval.gmm_components = 10  # gmm: mixture components
  c.eval.gmm_covariance = 'full'  # gmm: full | diag | tied | spherical (scikit-learn's names)
  c.eval.gmm_train_images = 60000  # gmm: encoded training images it is fitted to (at most all)
  c.eval.gmm_seed_offset = 3  # gmm: its fit and its samples draw from seed + this
  c.eval.mnist_classifier_seed = 0  # the MNIST FID classifier's seed: 0 uses the weights
  #   shipped with the package (sha256-checked), others are
  #   trained and cached
  c.eval.mnist_classifier_batch_size = 1000  # images per MNIST classifier call for FID features
  c.eval.inception_batch_size = 100  # images per InceptionV3 call for FID features
  c.eval.cache_dir = config_dict.placeholder(str)  # real-data FID statistics, other seeds'
  #   classifiers (None: $WAE_JAX_CACHE or ~/.cache/wae_jax)
  c.eval.inception_weights = config_dict.placeholder(str)  # the FID's InceptionV3 weights,
  #   pt_inception-2015-12-05-6726825d.pth (None:
  #   $WAE_JAX_INCEPTION_WEIGHTS; neither: no Inception FID)
  return c


def resolve_config_file(spec: str) -> str:
  """'configs/x.py[:arg]' with the file made absolute, relative to the current directory as
  on the command line (the package does not know where a checkout is)."""
  path, _, arg = spec.partition(':')
  found = pathlib.Path(path).expanduser()
  if not found.is_file():
    raise errors.ConfigError(
        f'config file {path!r} (from {spec!r}) not found; the current '
        f'directory is {os.getcwd()}'
    )
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


def _shown(file: str) -> str:
  """A config file as a message names it: relative to the current directory if inside it."""
  relative = os.path.relpath(os.path.abspath(file))
  return file if relative.startswith(os.pardir) else relative


def parse_arg(file: str, arg: str, **options: Sequence[str]) -> ml_collections.ConfigDict:
  """A config file's argument: comma-separated key=value pairs, each key optional.

  `options` gives each key's allowed values, its default first. A bare value sets the key
  that allows it, so 'wae_gan,small' means 'objective=wae_gan,size=small': the short forms
  every config file has taken stay valid. Anything else raises ConfigError in one line naming
  `file` (the config file's __file__), the part that is wrong and what is allowed.
  """
  allowed = '; '.join(f'{key} = {", ".join(choices)}' for key, choices in options.items())

  def fail(why: str):
    raise errors.ConfigError(
        f'{_shown(file)}:{arg}: {why}; expected comma-separated key=value '
        f'pairs (or bare values) with {allowed} (the first value is the '
        'default)'
    )

  values, given = {key: choices[0] for key, choices in options.items()}, set()
  for part in (p.strip() for p in arg.split(',')):
    if not part:
      continue
    key, has_key, value = (s.strip() for s in part.partition('='))
    if not has_key:
      keys = [k for k, choices in options.items() if part in choices]
      if len(keys) != 1:
        fail(
            f'{part!r} is not a value of any key'
            if not keys
            else f'{part!r} is a value of {" and ".join(keys)}: write key={part}'
        )
      key, value = keys[0], part
    elif key not in options:
      fail(f'unknown key {key!r} in {part!r}')
    elif value not in options[key]:
      fail(f'{key}={value!r} is not allowed')
    if key in given:
      fail(f'{key} is given twice')
    given.add(key)
    values[key] = value
  return ml_collections.ConfigDict(values)


def _allowed(field: str, value, allowed) -> None:
  if value not in allowed:
    raise errors.ConfigError(
        f'config.{field}={value!r} is not supported; allowed: ' f'{", ".join(map(repr, allowed))}'
    )


def _require(ok: bool, field: str, value, expected: str) -> None:
  if not ok:
    raise errors.ConfigError(f'config.{field}={value!r} is invalid: {expected}')


def _number(value) -> bool:
  """A finite int or float (not a bool, a string or None)."""
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError (a ValueError) naming the field, its value and what is allowed."""
  _allowed('data.name', config.data.name, datasets.names())
  _allowed('model.arch', config.model.arch, ARCHITECTURES)
  _allowed('model.conv_impl', config.model.conv_impl, CONV_IMPLS)
  _allowed('model.dtype', config.model.dtype, DTYPES)
  _allowed('penalty.name', config.penalty.name, tuple(penalties.REGISTRY))
  penalty = penalties.get(config.penalty.name)
  _check_penalty_fields(config, penalty)
  _allowed('cost.name', config.cost.name, penalties.RECONSTRUCTION_COSTS)
  _allowed('eval.sampler', config.eval.sampler, SAMPLERS)
  _allowed('eval.gmm_covariance', config.eval.gmm_covariance, GMM_COVARIANCES)
  # Positive and finite: an infinite learning rate or lambda trains parameters that are not
  # numbers, a zero or negative one trains nothing or climbs.
  for field in (
      'penalty.lam',
      'train.learning_rate',
      'train.adversary_learning_rate',
      'train.pretrain_learning_rate',
      'model.width',
      'model.prior_variance',
  ):
    group, name = field.split('.')
    value = config[group][name]
    _require(_number(value) and value > 0, field, value, 'must be > 0 and finite')
  _require(
      config.model.latent_dim >= 1, 'model.latent_dim', config.model.latent_dim, 'must be >= 1'
  )
  for field in ('resnet_stage_blocks', 'resnet_widths'):
    value = config.model[field]
    _require(
        isinstance(value, (tuple, list))
        and len(value) >= 1
        and all(isinstance(v, int) and v >= 1 for v in value),
        f'model.{field}',
        value,
        'must be a non-empty tuple of ints >= 1',
    )
  _require(
      len(config.model.resnet_widths) == len(config.model.resnet_stage_blocks),
      'model.resnet_widths',
      config.model.resnet_widths,
      f'must have one width per stage of model.resnet_stage_blocks '
      f'({len(config.model.resnet_stage_blocks)})',
  )
  min_batch = penalty.min_batch_size
  _require(
      config.train.batch_size >= min_batch,
      'train.batch_size',
      config.train.batch_size,
      f'must be >= {min_batch}' + (f' ({penalty.min_batch_why})' if penalty.min_batch_why else ''),
  )
  for field in (
      'log_every',
      'checkpoint_every',
      'image_every',
      'keep_checkpoints',
      'max_nonfinite_steps',
  ):
    value = config.train[field]
    _require(value >= 1, f'train.{field}', value, 'must be >= 1')
  for field in (
      'grid_samples',
      'sharpness_images',
      'batch_size',
      'mnist_classifier_batch_size',
      'inception_batch_size',
  ):
    value = config.eval[field]
    _require(isinstance(value, int) and value >= 1, f'eval.{field}', value, 'must be >= 1')
  # The MMD's U-statistic averages over pairs of codes; evaluation asks more of num_samples
  # for its FIDs (evaluators.min_num_samples), which depends on the features configured.
  for field in ('num_samples', 'mmd_codes'):
    value = config.eval[field]
    _require(
        isinstance(value, int) and value >= 2,
        f'eval.{field}',
        value,
        'must be >= 2 (the MMD of the test codes needs two of them)',
    )
  for field in ('gmm_components', 'gmm_train_images'):
    value = config.eval[field]
    _require(isinstance(value, int) and value >= 1, f'eval.{field}', value, 'must be >= 1')
  num_steps = config.train.num_steps
  _require(
      num_steps is None or num_steps >= 1,
      'train.num_steps',
      num_steps,
      'must be >= 1 or None (use num_epochs)',
  )
  _require(
      num_steps is not None or config.train.num_epochs > 0,
      'train.num_epochs',
      config.train.num_epochs,
      'must be > 0 when train.num_steps is None',
  )
  lr_decay = config.train.lr_decay
  _require(
      isinstance(lr_decay, (tuple, list))
      and all(
          isinstance(pair, (tuple, list))
          and len(pair) == 2
          and _number(pair[0])
          and pair[0] >= 0
          and _number(pair[1])
          and pair[1] > 0
          for pair in lr_decay
      ),
      'train.lr_decay',
      lr_decay,
      'must be a tuple of (epoch >= 0, factor > 0) pairs, e.g. ((30, 0.5), (50, 0.2)), or '
      '() for a constant rate',
  )
  _require(
      _number(config.train.input_noise) and config.train.input_noise >= 0,
      'train.input_noise',
      config.train.input_noise,
      'must be >= 0 and finite',
  )
  _require(
      _number(config.train.adam_b1) and 0 <= config.train.adam_b1 < 1,
      'train.adam_b1',
      config.train.adam_b1,
      'must be in [0, 1)',
  )
  _require(
      _number(config.cost.scale) and config.cost.scale > 0,
      'cost.scale',
      config.cost.scale,
      'must be > 0 and finite',
  )
  if penalty.needs_gaussian_encoder:
    _require(
        config.model.gaussian_encoder,
        'model.gaussian_encoder',
        config.model.gaussian_encoder,
        f'must be True with penalty.name={penalty.name}',
    )
  for field in PATH_FIELDS:
    group, name = field.split('.')
    value = config[group][name]
    _require(
        value is None or (isinstance(value, str) and value.strip()),
        field,
        value,
        'must be a path, or None to leave it unset',
    )
  if config.data.dir is not None:
    _require(
        pathlib.Path(config.data.dir).expanduser().is_dir(),
        'data.dir',
        config.data.dir,
        'no such directory',
    )
  datasets.check_source(config.data.name, config.data.source)  # the record's sources
  _require(
      datasets.is_pixel_range(config.data.pixel_range),
      'data.pixel_range',
      config.data.pixel_range,
      'must be (low, high), low < high',
  )
  if config.cost.name == 'bernoulli':
    _require(
        tuple(config.data.pixel_range) == (0.0, 1.0),
        'data.pixel_range',
        config.data.pixel_range,
        'must be (0.0, 1.0) with cost.name=bernoulli',
    )


def _check_penalty_fields(config, penalty: penalties.LatentPenalty) -> None:
  """The fields of every registered penalty that the config holds must hold values it allows
  (a bad value is refused even where another penalty is chosen); the chosen one's must exist."""
  missing = [field for field in penalty.fields if field not in config.penalty]
  if missing:
    raise errors.ConfigError(
        f'config.penalty.name={penalty.name!r} reads config.penalty.{missing[0]}, which this '
        f'config lacks: add it to config.penalty in the config file (the fields it reads: '
        f'{", ".join(penalty.fields)})'
    )
  for record in penalties.REGISTRY.values():
    for field, allowed in record.choices.items():
      if field in config.penalty:
        _allowed(f'penalty.{field}', config.penalty[field], allowed)
    for field, (ok, expected) in record.checks.items():
      if field in config.penalty:
        _require(ok(config.penalty[field]), f'penalty.{field}', config.penalty[field], expected)


def flatten(tree: Mapping[str, Any], prefix: str = '') -> Dict[str, Any]:
  """{'train.batch_size': 100, ...}: a config tree (ConfigDicts or plain dicts, e.g. a read
  config.json or a sweep's space) as dotted keys."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[prefix + key] = value
  return flat


# ---------------------------------------------------------------------------------------------
# The configs a workdir was trained under.

LATEST_FILE = 'config.json'
_HISTORY_FILE = re.compile(r'config_(\d+)\.json')
ABSENT = '<absent>'  # a field one of two configs lacks (one written by older code)


class ConfigChangedError(errors.ConfigError):
  """A resume under a config that changes what training computes, without
  --allow_config_change."""


def history_file(workdir, step: int) -> pathlib.Path:
  return pathlib.Path(workdir) / f'config_{step:07d}.json'


def record_file(workdir, step: int) -> pathlib.Path:
  """The file recorded_configs read the config of `step` from: config_<step>.json, or in a
  workdir from before those files, config.json."""
  path = history_file(workdir, step)
  return path if path.exists() else pathlib.Path(workdir) / LATEST_FILE


def is_free(field: str) -> bool:
  return any(fnmatch.fnmatchcase(field, pattern) for pattern in FREE_FIELDS)


def as_dict(config) -> Dict[str, Any]:
  """A config as config.json holds it (tuples as lists), so that a read one compares equal."""
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort())
  return json.loads(json.dumps(config, default=str))


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> Dict[str, Tuple[Any, Any]]:
  """{field: (old value, new value)} of the fields that are not free and differ.

  A field that `old` lacks (it was written before the field existed) is unchanged while
  `new` holds the field's default: the default is what the older code did.
  """
  old, new = flatten(as_dict(old)), flatten(as_dict(new))
  defaults = flatten(as_dict(base_config()))
  for field in set(new) - set(old):
    if field in defaults and new[field] == defaults[field]:
      old[field] = new[field]
  return {
      field: (old.get(field, ABSENT), new.get(field, ABSENT))
      for field in sorted(set(old) | set(new))
      if not is_free(field) and old.get(field, ABSENT) != new.get(field, ABSENT)
  }


def describe_changes(changes: Mapping[str, Tuple[Any, Any]]) -> str:
  return '; '.join(f'{field}: {old!r} -> {new!r}' for field, (old, new) in changes.items())


class RecordedConfigError(errors.ConfigError):
  """A config a workdir recorded (config.json, config_<step>.json) that cannot be read."""


def _read_record(path: pathlib.Path) -> Dict[str, Any]:
  """A recorded config; RecordedConfigError (without the fix, which depends on the other
  records) if it is not a JSON object."""
  try:
    record = json.loads(path.read_text())
  except FileNotFoundError:
    raise
  except OSError as error:  # a folder, no permission
    raise RecordedConfigError(f'{path} cannot be read ({errors.one_line(error)})') from None
  except ValueError as error:  # not JSON (JSONDecodeError), not text (UnicodeDecodeError)
    raise RecordedConfigError(f'{path} is not valid JSON ({errors.one_line(error)})') from None
  if not isinstance(record, dict):
    raise RecordedConfigError(f'{path} holds a JSON {type(record).__name__}, not a config')
  return record


def _unreadable_record(
    error: RecordedConfigError, workdir: pathlib.Path, step: Optional[int], latest: bool
) -> RecordedConfigError:
  """`error` with what the file is for and the fix that is safe for it.

  config.json is rewritten at every start and config_<s>.json whenever the config changes,
  so config.json holds the config of the latest record (`latest`), and of no other.
  """
  what = (
      f'the config {workdir} was trained under from step {step}'
      if step is not None
      else f'the only record of the config {workdir} was trained under'
  )
  latest_copy = workdir / LATEST_FILE
  if step is not None and latest:
    try:
      _read_record(latest_copy)
      fix = (
          f"copy {latest_copy} over it, which holds the same config (the latest start's, "
          f'differing at most in fields free to change): cp {latest_copy} '
          f'{history_file(workdir, step)}; or restore the file from a backup'
      )
    except (OSError, RecordedConfigError):
      fix = f'restore it from a backup ({latest_copy}, its copy, cannot be read either)'
  elif step is not None:
    fix = 'restore it from a backup; no other file holds it'
  else:
    fix = (
        'restore it from a backup, or remove it to go on under the config you pass '
        '(nothing then checks that the checkpoints were trained under it)'
    )
  return RecordedConfigError(
      f'{error}: it is {what}, which resuming and evaluation read. ' f'To fix it, {fix}.'
  )


def recorded_configs(workdir) -> Dict[int, Dict[str, Any]]:
  """{step: config} of each config_<step>.json: it trained the steps after `step`.

  A workdir from before these files has only config.json: its config, from step 0. A record
  that is not a JSON object raises RecordedConfigError naming it and the fix.
  """
  workdir = pathlib.Path(workdir)
  paths = {}
  for path in workdir.glob('config_*.json'):
    match = _HISTORY_FILE.fullmatch(path.name)
    if match:
      paths[int(match.group(1))] = path
  found = {}
  for step, path in sorted(paths.items()):
    try:
      found[step] = _read_record(path)
    except FileNotFoundError:  # another process dropped it meanwhile
      continue
    except RecordedConfigError as error:
      raise _unreadable_record(error, workdir, step, latest=step == max(paths)) from None
  if not found and (workdir / LATEST_FILE).exists():
    try:
      found[0] = _read_record(workdir / LATEST_FILE)
    except RecordedConfigError as error:
      raise _unreadable_record(error, workdir, None, latest=True) from None
  return found


def check_resume(
    config, workdir, resume_step: int, allow_change: bool = False
) -> Dict[str, Tuple[Any, Any]]:
  """The fields in which `config` differs from the one workdir was last trained under.

  Call when resuming (from the checkpoint at `resume_step`). Raises ConfigChangedError naming
  each field with both values unless `allow_change`; fields in FREE_FIELDS are not compared.
  """
  recorded = recorded_configs(workdir)
  if not recorded:
    return {}
  step, last = max(recorded.items())
  changes = changed_fields(last, config)
  if changes and not allow_change:
    raise ConfigChangedError(
        f'{workdir} was trained under another config ({record_file(workdir, step)}); changed: '
        f'{describe_changes(changes)}. Resume with the config it was trained under, start a new '
        f'--workdir, or pass --allow_config_change to go on under this one from step '
        f'{resume_step} (kept as {history_file(workdir, resume_step).name}). Free to change: '
        f'{", ".join(FREE_FIELDS)}'
    )
  return changes


def record_config(config, workdir, start_step: int) -> Optional[pathlib.Path]:
  """Writes config.json (the latest) and, if training from `start_step` computes anything
  differently than the recorded config in force there, config_<start_step>.json; returns it.

  Records from later steps are dropped: those steps are trained again, under this config.
  """
  workdir = pathlib.Path(workdir)
  recorded = recorded_configs(workdir)
  for step in [s for s in recorded if s > start_step]:
    history_file(workdir, step).unlink(missing_ok=True)
  earlier = {s: c for s, c in recorded.items() if s <= start_step}
  in_force = earlier[max(earlier)] if earlier else None
  if earlier and not history_file(workdir, max(earlier)).exists():  # config.json alone so far
    files.write_json(history_file(workdir, max(earlier)), in_force)
  new = as_dict(config)
  written = None
  if start_step == 0 or in_force is None or changed_fields(in_force, new):
    written = files.write_json(history_file(workdir, start_step), new)
  files.write_json(workdir / LATEST_FILE, new)
  return written


def record_in_force(workdir, step: int) -> Optional[Tuple[int, Dict[str, Any]]]:
  """(s, config) of the record that trained the checkpoint at `step`: the latest
  config_<s>.json with s < step (config s trained steps s+1 on), s = 0 for step 0, the
  earliest where none is older (as config_changes lists them). None for a workdir without
  records (a run older than them).
  """
  recorded = recorded_configs(workdir)
  if not recorded:
    return None
  older = [s for s in recorded if s < step]
  s = max(older) if older else min(recorded)
  return s, recorded[s]


def as_config_value(value):
  """A JSON value with its lists as tuples, as config fields hold them."""
  return tuple(map(as_config_value, value)) if isinstance(value, list) else value


def is_given(field: str) -> bool:
  """Whether a checkpoint's evaluation or samples take `field` from their command's config,
  not from the one the checkpoint was trained under: the fields free to change (where the
  data is, evaluation's own settings) and the seed that evaluation's noise draws from."""
  return field == 'seed' or is_free(field)


def with_recorded(given, recorded: Mapping[str, Any]):
  """(config, disagreements): a copy of `given` holding `recorded`'s value in every field but
  those `is_given` keeps, and {field: (recorded value, given value)} where they differed.

  A field `recorded` lacks (written before the field existed) takes its default, the value
  the older code used (as in changed_fields).
  """
  config = given.copy_and_resolve_references()
  values = flatten(as_dict(recorded))
  defaults = flatten(as_dict(base_config()))
  for field, value in flatten(given).items():
    if not is_given(field):
      *groups, name = field.split('.')
      parent = functools.reduce(lambda tree, key: tree[key], groups, config)
      parent[name] = as_config_value(values.get(field, defaults.get(field, value)))
  return config, {
      field: change
      for field, change in changed_fields(recorded, given).items()
      if not is_given(field)
  }


def config_changes(workdir, step: Optional[int] = None) -> list:
  """The configs the checkpoint at `step` (default: the latest) was trained under, oldest first:
  [{'step': s, 'file': 'config_<s>.json', 'changed': {field: [old, new]}}, ...].

  Config s trained steps s+1 on, so a checkpoint at step s was not trained under it. The first
  entry's 'changed' is empty.
  """
  out, previous = [], None
  for s, config in recorded_configs(workdir).items():
    if step is not None and out and s >= step:
      break
    changed = (
        {}
        if previous is None
        else {f: list(v) for f, v in changed_fields(previous, config).items()}
    )
    out.append({'step': s, 'file': history_file(workdir, s).name, 'changed': changed})
    previous = config
  return out
