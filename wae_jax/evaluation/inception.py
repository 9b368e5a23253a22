"""InceptionV3 pool3 features (2048-d) for FID, as pytorch-fid computes them, in Flax.

The network is pytorch-fid's `fid_inception_v3`: torchvision's InceptionV3 with the blocks
patched to match the TensorFlow graph the original FID (TTUR) used: the average pools in
Mixed_5b..5d, 6b..6e and 7b ignore the zero padding (count_include_pad=False), and Mixed_7c
max-pools in its pool branch. BasicConv2d = conv (no bias) + BatchNorm(eps=1e-3) + ReLU.
Features are the final global average pool (no aux logits, no fc).

Weights: the file pytorch-fid publishes, pt_inception-2015-12-05-6726825d.pth (a PyTorch
state dict, ported from TensorFlow's inception-2015-12-05). It cannot be downloaded here:
put it anywhere and point `eval.inception_weights` or $WAE_JAX_INCEPTION_WEIGHTS at it.
The .pth is read without torch: a small restricted unpickler rebuilds numpy arrays from
both the zip format (torch >= 1.6) and the legacy format (one stream of pickles and raw
storages), allowing nothing but tensors, storages and OrderedDicts.

Preprocessing as pytorch-fid: pixels to [0, 1], greyscale repeated to 3 channels,
bilinear resize to 299x299 exactly as torch's F.interpolate(mode='bilinear',
align_corners=False, no antialiasing), then 2x - 1.
"""

import collections
import functools
import io
import os
import pathlib
import pickle
import struct
from typing import Any, Callable, Dict, Optional, Sequence, Tuple
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from wae_jax import errors
from wae_jax import visualize
from wae_jax.evaluation import batching

WEIGHTS_ENV = 'WAE_JAX_INCEPTION_WEIGHTS'
WEIGHTS_FILENAME = 'pt_inception-2015-12-05-6726825d.pth'
WEIGHTS_URL = (
    'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/' + WEIGHTS_FILENAME
)
CONFIG_FIELD = 'eval.inception_weights'
FEATURES = 'inception_v3_pool3 (pt_inception-2015-12-05)'
FEATURE_DIM = 2048
INPUT_SIZE = 299
# Full float32 convolutions, also on GPUs that would otherwise use TF32.
PRECISION = jax.lax.Precision.HIGHEST

# State-dict entries of the published file that pool3 features do not use.
_UNUSED_KEYS = ('fc.weight', 'fc.bias')
_UNUSED_SUFFIXES = ('.num_batches_tracked',)


class WeightsError(errors.WaeError, ValueError):
  """A weights file that is not pytorch-fid's InceptionV3 (truncated, corrupt, another net)."""


# ----------------------------------------------------------------------------- network


class BasicConv2d(nn.Module):
  """torchvision's BasicConv2d: conv without bias, BatchNorm(eps=0.001), ReLU."""

  features: int
  kernel_size: Tuple[int, int]
  strides: Tuple[int, int] = (1, 1)
  padding: Tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(
        self.features,
        self.kernel_size,
        self.strides,
        padding=[(p, p) for p in self.padding],
        use_bias=False,
        precision=PRECISION,
        name='conv',
    )(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name='bn')(x)
    return nn.relu(x)


def _conv(name: str, features: int, kernel, strides=1, padding=0) -> BasicConv2d:
  pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
  return BasicConv2d(features, pair(kernel), pair(strides), pair(padding), name=name)


def _avg_pool_3x3(x):
  """F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x, stride: int, padding: int = 0):
  return nn.max_pool(
      x, (3, 3), strides=(stride, stride), padding=((padding, padding), (padding, padding))
  )


class FIDInceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = _conv('branch1x1', 64, 1)(x)
    b5 = _conv('branch5x5_1', 48, 1)(x)
    b5 = _conv('branch5x5_2', 64, 5, padding=2)(b5)
    b3 = _conv('branch3x3dbl_1', 64, 1)(x)
    b3 = _conv('branch3x3dbl_2', 96, 3, padding=1)(b3)
    b3 = _conv('branch3x3dbl_3', 96, 3, padding=1)(b3)
    bp = _conv('branch_pool', self.pool_features, 1)(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = _conv('branch3x3', 384, 3, strides=2)(x)
    bd = _conv('branch3x3dbl_1', 64, 1)(x)
    bd = _conv('branch3x3dbl_2', 96, 3, padding=1)(bd)
    bd = _conv('branch3x3dbl_3', 96, 3, strides=2)(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3(x, 2)], axis=-1)


class FIDInceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = _conv('branch1x1', 192, 1)(x)
    b7 = _conv('branch7x7_1', c7, 1)(x)
    b7 = _conv('branch7x7_2', c7, (1, 7), padding=(0, 3))(b7)
    b7 = _conv('branch7x7_3', 192, (7, 1), padding=(3, 0))(b7)
    bd = _conv('branch7x7dbl_1', c7, 1)(x)
    bd = _conv('branch7x7dbl_2', c7, (7, 1), padding=(3, 0))(bd)
    bd = _conv('branch7x7dbl_3', c7, (1, 7), padding=(0, 3))(bd)
    bd = _conv('branch7x7dbl_4', c7, (7, 1), padding=(3, 0))(bd)
    bd = _conv('branch7x7dbl_5', 192, (1, 7), padding=(0, 3))(bd)
    bp = _conv('branch_pool', 192, 1)(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = _conv('branch3x3_1', 192, 1)(x)
    b3 = _conv('branch3x3_2', 320, 3, strides=2)(b3)
    b7 = _conv('branch7x7x3_1', 192, 1)(x)
    b7 = _conv('branch7x7x3_2', 192, (1, 7), padding=(0, 3))(b7)
    b7 = _conv('branch7x7x3_3', 192, (7, 1), padding=(3, 0))(b7)
    b7 = _conv('branch7x7x3_4', 192, 3, strides=2)(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3(x, 2)], axis=-1)


class FIDInceptionE(nn.Module):
  """FIDInceptionE_1 (pool='avg', without the padding) or FIDInceptionE_2 (pool='max')."""

  pool: str

  @nn.compact
  def __call__(self, x):
    b1 = _conv('branch1x1', 320, 1)(x)
    b3 = _conv('branch3x3_1', 384, 1)(x)
    b3 = jnp.concatenate(
        [
            _conv('branch3x3_2a', 384, (1, 3), padding=(0, 1))(b3),
            _conv('branch3x3_2b', 384, (3, 1), padding=(1, 0))(b3),
        ],
        axis=-1,
    )
    bd = _conv('branch3x3dbl_1', 448, 1)(x)
    bd = _conv('branch3x3dbl_2', 384, 3, padding=1)(bd)
    bd = jnp.concatenate(
        [
            _conv('branch3x3dbl_3a', 384, (1, 3), padding=(0, 1))(bd),
            _conv('branch3x3dbl_3b', 384, (3, 1), padding=(1, 0))(bd),
        ],
        axis=-1,
    )
    pooled = _avg_pool_3x3(x) if self.pool == 'avg' else _max_pool_3x3(x, 1, padding=1)
    bp = _conv('branch_pool', 192, 1)(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """pytorch-fid's FID InceptionV3 up to pool3: [N, H, W, 3] in (-1, 1) -> [N, 2048].

  Submodule and variable names follow the PyTorch state-dict keys (see
  `params_from_state_dict`). Expects preprocessed input (`preprocess`), 299x299 for FID.
  """

  @nn.compact
  def __call__(self, x):
    x = _conv('Conv2d_1a_3x3', 32, 3, strides=2)(x)
    x = _conv('Conv2d_2a_3x3', 32, 3)(x)
    x = _conv('Conv2d_2b_3x3', 64, 3, padding=1)(x)
    x = _max_pool_3x3(x, 2)
    x = _conv('Conv2d_3b_1x1', 80, 1)(x)
    x = _conv('Conv2d_4a_3x3', 192, 3)(x)
    x = _max_pool_3x3(x, 2)
    x = FIDInceptionA(32, name='Mixed_5b')(x)
    x = FIDInceptionA(64, name='Mixed_5c')(x)
    x = FIDInceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    x = FIDInceptionC(128, name='Mixed_6b')(x)
    x = FIDInceptionC(160, name='Mixed_6c')(x)
    x = FIDInceptionC(160, name='Mixed_6d')(x)
    x = FIDInceptionC(192, name='Mixed_6e')(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = FIDInceptionE('avg', name='Mixed_7b')(x)
    x = FIDInceptionE('max', name='Mixed_7c')(x)
    return jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)), flattened.


# ----------------------------------------------------------------------------- weight layout

# (Flax collection, leaf name) <-> PyTorch parameter suffix. Conv kernels are the only
# leaves whose layout differs: PyTorch [out, in, kh, kw], Flax [kh, kw, in, out].
_LEAF_TO_TORCH = {
    ('params', 'kernel'): 'weight',
    ('params', 'scale'): 'weight',
    ('params', 'bias'): 'bias',
    ('batch_stats', 'mean'): 'running_mean',
    ('batch_stats', 'var'): 'running_var',
}


def _torch_key(collection: str, path: Sequence[str]) -> str:
  return '.'.join(list(path[:-1]) + [_LEAF_TO_TORCH[(collection, path[-1])]])


def _to_flax_layout(leaf: str, value):
  return np.transpose(value, (2, 3, 1, 0)) if leaf == 'kernel' else value


def _flatten(tree, prefix=()):
  for name, value in tree.items():
    if isinstance(value, dict) or hasattr(value, 'items'):
      yield from _flatten(value, prefix + (name,))
    else:
      yield prefix + (name,), value


@functools.lru_cache(maxsize=1)
def variable_shapes():
  """{'params': ..., 'batch_stats': ...} of ShapeDtypeStructs, from tracing init at 299."""
  x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
  return dict(jax.eval_shape(InceptionV3().init, jax.random.PRNGKey(0), x))


def expected_state_dict_shapes() -> Dict[str, Tuple[int, ...]]:
  """PyTorch key -> PyTorch shape of every entry the Flax network needs."""
  out = {}
  for collection, tree in variable_shapes().items():
    for path, leaf in _flatten(tree):
      s = tuple(leaf.shape)
      out[_torch_key(collection, path)] = (s[3], s[2], s[0], s[1]) if path[-1] == 'kernel' else s
  return out


def _is_unused(key: str) -> bool:
  return key in _UNUSED_KEYS or key.endswith(_UNUSED_SUFFIXES)


def params_from_state_dict(state_dict: Dict[str, np.ndarray]) -> Dict[str, Any]:
  """pytorch-fid state dict -> Flax variables {'params', 'batch_stats'} (float32 numpy).

  'X.conv.weight' [out, in, kh, kw] -> params X/conv/kernel [kh, kw, in, out];
  'X.bn.weight|bias' -> params X/bn/scale|bias; 'X.bn.running_mean|running_var' ->
  batch_stats X/bn/mean|var. fc.* and *.num_batches_tracked are not needed and ignored.
  Raises WeightsError naming the key for a missing, unexpected or wrongly shaped entry.
  """
  expected = expected_state_dict_shapes()
  missing = [k for k in expected if k not in state_dict]
  if missing:
    raise WeightsError(
        f'InceptionV3 weights: missing key {missing[0]!r} ({len(missing)} of '
        f'{len(expected)} expected keys missing); is this {WEIGHTS_FILENAME}?'
    )
  unexpected = [k for k in state_dict if k not in expected and not _is_unused(k)]
  if unexpected:
    raise WeightsError(
        f'InceptionV3 weights: unexpected key {unexpected[0]!r} (not part of '
        f"pytorch-fid's FID InceptionV3; {len(unexpected)} such keys); is "
        f'this {WEIGHTS_FILENAME}?'
    )
  variables = {}
  for collection, tree in variable_shapes().items():
    for path, _ in _flatten(tree):
      key = _torch_key(collection, path)
      value = np.asarray(state_dict[key])
      if tuple(value.shape) != expected[key]:
        raise WeightsError(
            f'InceptionV3 weights: {key!r} has shape {tuple(value.shape)}, '
            f'expected {expected[key]}'
        )
      node = variables.setdefault(collection, {})
      for name in path[:-1]:
        node = node.setdefault(name, {})
      node[path[-1]] = np.ascontiguousarray(_to_flax_layout(path[-1], value), np.float32)
  return variables


# ----------------------------------------------------------------------------- weight file


def configured_path(config_value: Optional[str] = None) -> Optional[pathlib.Path]:
  """The weights path from the config value or $WAE_JAX_INCEPTION_WEIGHTS; None if unset."""
  value = str(config_value or os.environ.get(WEIGHTS_ENV, '')).strip()
  return pathlib.Path(value).expanduser() if value else None


def missing_weights_message(path: Optional[pathlib.Path]) -> str:
  where = (
      f'were not found at {path}'
      if path is not None
      else f'are not configured (config field {CONFIG_FIELD} and ${WEIGHTS_ENV} are unset)'
  )
  return (
      f'The InceptionV3 FID weights {where}. Download {WEIGHTS_FILENAME} (the weights '
      f'of the standard PyTorch FID, pytorch-fid) from {WEIGHTS_URL} and set the config '
      f'field {CONFIG_FIELD} (e.g. --config.{CONFIG_FIELD}=/path/to/{WEIGHTS_FILENAME}) '
      f'or the environment variable {WEIGHTS_ENV} to its path (or to the folder that '
      'holds it).'
  )


def weights_path(config_value: Optional[str] = None) -> pathlib.Path:
  """The existing weights file named by the config value, else by $WAE_JAX_INCEPTION_WEIGHTS.

  A folder means the file WEIGHTS_FILENAME in it. Raises FileNotFoundError saying where to
  put the file when nothing is configured or the file does not exist.
  """
  path = configured_path(config_value)
  if path is not None and path.is_dir():
    path = path / WEIGHTS_FILENAME
  if path is None or not path.is_file():
    raise errors.NotFoundError(missing_weights_message(path))
  return path


_STORAGE_DTYPES = {
    'FloatStorage': np.dtype(np.float32),
    'DoubleStorage': np.dtype(np.float64),
    'HalfStorage': np.dtype(np.float16),
    'BFloat16Storage': np.dtype(ml_dtypes.bfloat16),
    'LongStorage': np.dtype(np.int64),
    'IntStorage': np.dtype(np.int32),
    'ShortStorage': np.dtype(np.int16),
    'CharStorage': np.dtype(np.int8),
    'ByteStorage': np.dtype(np.uint8),
    'BoolStorage': np.dtype(np.bool_),
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageType:

  def __init__(self, name: str):
    self.name, self.dtype = name, _STORAGE_DTYPES[name]


class _StorageRef:
  """A storage named in the pickle; its bytes are attached once read."""

  def __init__(self, key: str, dtype: np.dtype, numel: int):
    self.key, self.dtype, self.numel = key, dtype, numel
    self.data: Optional[np.ndarray] = None


class _StorageView:
  """A view of a storage (only in very old legacy files): offset and size in elements."""

  def __init__(self, base: _StorageRef, offset: int, numel: int):
    self.base, self.offset, self.numel = base, offset, numel


class _TensorRef:

  def __init__(self, storage, offset: int, size, stride):
    self.storage, self.offset = storage, int(offset)
    self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused_args, **unused_kwargs):
  return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused_args, **unused_kwargs):
  return data


class _RestrictedUnpickler(pickle.Unpickler):
  """Allows only what a state dict of dense tensors needs; storages become _StorageRefs."""

  def __init__(self, file, storages: Dict[str, _StorageRef]):
    super().__init__(file)
    self.storages = storages

  def find_class(self, module, name):
    if (module, name) == ('collections', 'OrderedDict'):
      return collections.OrderedDict
    if module == 'torch._utils' and name in ('_rebuild_tensor', '_rebuild_tensor_v2'):
      return _rebuild_tensor
    if module == 'torch._utils' and name in ('_rebuild_parameter', '_rebuild_parameter_with_state'):
      return _rebuild_parameter
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise pickle.UnpicklingError(
        f'{module}.{name} is not allowed in a weights file (only '
        'dense tensors, storages and OrderedDicts are)'
    )

  def persistent_load(self, pid):
    if not (
        isinstance(pid, tuple)
        and len(pid) >= 5
        and pid[0] == 'storage'
        and isinstance(pid[1], _StorageType)
    ):
      raise pickle.UnpicklingError(f'unsupported persistent id {pid!r:.100}')
    storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
    ref = self.storages.get(key)
    if ref is None:
      ref = self.storages[key] = _StorageRef(key, storage_type.dtype, numel)
    view = pid[5] if len(pid) > 5 else None
    if view is not None:  # (view key, offset, size)
      return _StorageView(ref, int(view[1]), int(view[2]))
    return ref


def _attach(ref: _StorageRef, raw: bytes, little_endian: bool, path) -> None:
  nbytes = ref.numel * ref.dtype.itemsize
  if len(raw) < nbytes:
    raise WeightsError(
        f'{path}: storage {ref.key} has {len(raw)} of its {nbytes} bytes '
        '(the file is truncated or corrupt)'
    )
  order = '<' if little_endian else '>'
  ref.data = np.frombuffer(raw[:nbytes], ref.dtype.newbyteorder(order)).astype(ref.dtype)


def _materialize(obj, path):
  """Replaces _TensorRefs in the unpickled object by numpy arrays (copies)."""
  if isinstance(obj, _TensorRef):
    storage, offset = obj.storage, obj.offset
    if isinstance(storage, _StorageView):
      offset, storage, limit = offset + storage.offset, storage.base, storage.offset + storage.numel
    else:
      limit = storage.numel
    if storage.data is None:
      raise WeightsError(f'{path}: storage {storage.key} has no data')
    if any(s == 0 for s in obj.size):
      return np.zeros(obj.size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(obj.size, obj.stride))
    if offset < 0 or min(obj.stride, default=0) < 0 or last >= min(limit, storage.numel):
      raise WeightsError(
          f'{path}: a tensor of size {obj.size} reaches past its storage '
          f'{storage.key} ({storage.numel} elements)'
      )
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage.data[offset:], obj.size, [s * item for s in obj.stride], writeable=False
    )
    return np.array(view)
  if isinstance(obj, dict):
    return type(obj)((k, _materialize(v, path)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(v, path) for v in obj)
  return obj


def _load_zip(path: pathlib.Path):
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n == 'data.pkl' or n.endswith('/data.pkl')]
    if not pickles:
      raise WeightsError(f'{path}: a zip archive without data.pkl is not a PyTorch weights file')
    prefix = pickles[0][: -len('data.pkl')]
    little = True
    if prefix + 'byteorder' in names:
      little = archive.read(prefix + 'byteorder').decode().strip() != 'big'
    storages: Dict[str, _StorageRef] = {}
    obj = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), storages).load()
    for key, ref in storages.items():
      name = f'{prefix}data/{key}'
      if name not in names:
        raise WeightsError(f'{path}: storage {name} is missing (truncated or corrupt file)')
      _attach(ref, archive.read(name), little, path)
  return obj


def _load_legacy(path: pathlib.Path):
  with open(path, 'rb') as f:
    no_globals = lambda: _RestrictedUnpickler(f, {})
    if no_globals().load() != _LEGACY_MAGIC:
      raise WeightsError(f'{path}: not a PyTorch weights file (wrong magic number)')
    protocol = no_globals().load()
    if protocol != _LEGACY_PROTOCOL:
      raise WeightsError(f'{path}: unsupported legacy PyTorch protocol {protocol!r}')
    sys_info = no_globals().load()
    little = bool(sys_info.get('little_endian', True)) if isinstance(sys_info, dict) else True
    storages: Dict[str, _StorageRef] = {}
    obj = _RestrictedUnpickler(f, storages).load()
    keys = no_globals().load()
    for key in keys:
      ref = storages.get(str(key))
      if ref is None:
        raise WeightsError(f'{path}: storage {key} is listed but no tensor uses it')
      header = f.read(8)
      if len(header) < 8:
        raise WeightsError(f'{path}: the file ends before storage {key} (truncated?)')
      (numel,) = struct.unpack('<q' if little else '>q', header)
      if numel != ref.numel:
        raise WeightsError(f'{path}: storage {key} has {numel} elements, expected {ref.numel}')
      _attach(ref, f.read(numel * ref.dtype.itemsize), little, path)
  return obj


def load_state_dict(path) -> Dict[str, np.ndarray]:
  """A PyTorch state dict file (zip or legacy format) as {key: numpy array}, without torch.

  Raises FileNotFoundError if the file does not exist and ValueError naming the file if it
  is not a complete state dict of dense tensors (truncated, corrupt, other objects).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise errors.NotFoundError(missing_weights_message(path))
  with open(path, 'rb') as f:
    head = f.read(4)
  try:
    if head.startswith(b'PK'):
      obj = _load_zip(path)
    elif head.startswith(b'\x80'):
      obj = _load_legacy(path)
    else:
      raise WeightsError(
          f'{path}: not a PyTorch weights file (neither a zip archive nor a '
          'legacy torch.save stream)'
      )
    obj = _materialize(obj, path)
  except (
      zipfile.BadZipFile,
      pickle.UnpicklingError,
      EOFError,
      struct.error,
      KeyError,
      AttributeError,
      TypeError,
      IndexError,
  ) as e:
    raise WeightsError(
        f'{path}: cannot read it as a PyTorch state dict (truncated or '
        f'corrupt?): {type(e).__name__}: {e}'
    ) from e
  if not isinstance(obj, dict):
    raise WeightsError(
        f'{path}: expected a state dict (a dict of tensors), found ' f'{type(obj).__name__}'
    )
  for key, value in obj.items():
    if not isinstance(value, np.ndarray):
      raise WeightsError(f'{path}: entry {key!r} is a {type(value).__name__}, not a tensor')
  return {str(k): v for k, v in obj.items()}


# ----------------------------------------------------------------------------- preprocessing


def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] weights of torch's bilinear interpolation, align_corners=False, no antialias.

  As ATen's upsample_bilinear2d computes them for float32 images: ratio = in / out in
  float32; source = ratio * (dst + 0.5) - 0.5 with one rounding (its compiled kernels fuse
  this multiply-add), clamped at 0; the neighbours floor(source) and min(floor + 1, in - 1)
  weighted linearly. This reproduces torch's weights exactly (the test checks every size
  up to 700); float64 arithmetic would differ by up to 6e-5.
  """
  f32 = np.float32
  ratio = np.float64(f32(in_size) / f32(out_size))
  dst = (np.arange(out_size, dtype=f32) + f32(0.5)).astype(np.float64)
  src = np.maximum((ratio * dst - 0.5).astype(f32), f32(0))
  lower = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  upper = np.minimum(lower + 1, in_size - 1)
  frac = np.clip(src - lower.astype(f32), f32(0), f32(1))
  matrix = np.zeros((out_size, in_size), f32)
  rows = np.arange(out_size)
  np.add.at(matrix, (rows, lower), f32(1) - frac)
  np.add.at(matrix, (rows, upper), frac)
  return matrix


def resize_bilinear(images, size: Tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)):
  """F.interpolate(mode='bilinear', align_corners=False) of NHWC images (float32)."""
  _, h, w, _ = images.shape
  rows, cols = _bilinear_matrix(h, size[0]), _bilinear_matrix(w, size[1])
  x = jnp.einsum('oh,nhwc->nowc', rows, images, precision=PRECISION)
  return jnp.einsum('pw,nowc->nopc', cols, x, precision=PRECISION)


def _preprocess_unit(images):
  """[N, H, W, 1 or 3] in [0, 1] -> [N, 299, 299, 3] in [-1, 1]."""
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'expected images [N, H, W, 1 or 3], got shape {images.shape}')
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  return 2.0 * resize_bilinear(images) - 1.0


def preprocess(images, pixel_range=(0.0, 1.0)):
  """pytorch-fid's input pipeline: NHWC pixels in pixel_range -> [N, 299, 299, 3] in (-1, 1).

  To [0, 1], greyscale repeated to RGB, bilinear resize to 299x299 (align_corners=False),
  then 2x - 1.
  """
  return _preprocess_unit(jnp.asarray(visualize.to_unit_range(images, pixel_range)))


@jax.jit
def _features(variables, unit_images):
  return InceptionV3().apply(variables, _preprocess_unit(unit_images))


def make_featurizer(path: Optional[str] = None, batch_size: int = 100) -> Callable[..., np.ndarray]:
  """featurize(images, pixel_range=(0, 1)) -> float32 [N, 2048] pool3 features.

  path: the weights file (or folder holding it); None = $WAE_JAX_INCEPTION_WEIGHTS. Images
  are NHWC with 1 or 3 channels in pixel_range, at least 1 pixel on each side (numpy, or
  lazily indexed like input_pipeline.Images); they go through in batches of batch_size (the
  last one padded, so one compiled shape), each converted to [0, 1] only then and split over
  the local devices (batching.batched).
  """
  state_dict = load_state_dict(weights_path(path))
  variables = batching.replicate(params_from_state_dict(state_dict))  # on every local device
  del state_dict

  def featurize(images, pixel_range=(0.0, 1.0)) -> np.ndarray:
    images = images if hasattr(images, 'shape') else np.asarray(images)
    if len(images.shape) != 4 or images.shape[-1] not in (1, 3):
      raise ValueError(f'expected images [N, H, W, 1 or 3], got shape {images.shape}')
    # Converted on the host a batch at a time: each batch then goes to the devices.
    unit = batching.Mapped(
        images, functools.partial(visualize.to_unit_range, pixel_range=pixel_range)
    )
    return batching.batched(
        functools.partial(_features, variables), unit, batch_size, pad=True
    ).astype(np.float32)

  return featurize
