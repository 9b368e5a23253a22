"""The Flax InceptionV3 FID extractor against a PyTorch mirror of pytorch-fid's network.

The published weights cannot be downloaded here, so a torch mirror of pytorch-fid's
`fid_inception_v3` (torchvision is not installed) with random, calibrated weights stands in:
its state dict, saved by torch.save, must load into the Flax network and give the same
pool3 features as the mirror through pytorch-fid's own preprocessing.
"""

import os

from absl import logging
import jax
import ml_collections
import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from wae_jax.evaluation import evaluators
from wae_jax.evaluation import inception
from wae_jax.evaluation import metrics

# Image shape and batch size shared by the tests that run the network: one compilation.
IMAGE_SHAPE = (28, 28, 1)
BATCH = 2

# ----------------------------------------------------------------------------- torch mirror
# pytorch-fid's fid_inception_v3: torchvision's Inception3(num_classes=1008,
# aux_logits=False) with Mixed_5b..5d = FIDInceptionA, 6b..6e = FIDInceptionC,
# 7b = FIDInceptionE_1, 7c = FIDInceptionE_2.


class TBasicConv2d(nn.Module):

  def __init__(self, cin, cout, **kwargs):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
    self.bn = nn.BatchNorm2d(cout, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def _fid_avg_pool(x):
  return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class TInceptionA(nn.Module):

  def __init__(self, cin, pool_features):
    super().__init__()
    self.branch1x1 = TBasicConv2d(cin, 64, kernel_size=1)
    self.branch5x5_1 = TBasicConv2d(cin, 48, kernel_size=1)
    self.branch5x5_2 = TBasicConv2d(48, 64, kernel_size=5, padding=2)
    self.branch3x3dbl_1 = TBasicConv2d(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = TBasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = TBasicConv2d(96, 96, kernel_size=3, padding=1)
    self.branch_pool = TBasicConv2d(cin, pool_features, kernel_size=1)

  def forward(self, x):
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_fid_avg_pool(x))], 1)


class TInceptionB(nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.branch3x3 = TBasicConv2d(cin, 384, kernel_size=3, stride=2)
    self.branch3x3dbl_1 = TBasicConv2d(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = TBasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = TBasicConv2d(96, 96, kernel_size=3, stride=2)

  def forward(self, x):
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class TInceptionC(nn.Module):

  def __init__(self, cin, c7):
    super().__init__()
    self.branch1x1 = TBasicConv2d(cin, 192, kernel_size=1)
    self.branch7x7_1 = TBasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7_2 = TBasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7_3 = TBasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = TBasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7dbl_2 = TBasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = TBasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = TBasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = TBasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch_pool = TBasicConv2d(cin, 192, kernel_size=1)

  def forward(self, x):
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = x
    for i in range(1, 6):
      bd = getattr(self, f'branch7x7dbl_{i}')(bd)
    return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_fid_avg_pool(x))], 1)


class TInceptionD(nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.branch3x3_1 = TBasicConv2d(cin, 192, kernel_size=1)
    self.branch3x3_2 = TBasicConv2d(192, 320, kernel_size=3, stride=2)
    self.branch7x7x3_1 = TBasicConv2d(cin, 192, kernel_size=1)
    self.branch7x7x3_2 = TBasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7x3_3 = TBasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7x3_4 = TBasicConv2d(192, 192, kernel_size=3, stride=2)

  def forward(self, x):
    b3 = self.branch3x3_2(self.branch3x3_1(x))
    b7 = x
    for i in range(1, 5):
      b7 = getattr(self, f'branch7x7x3_{i}')(b7)
    return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class TInceptionE(nn.Module):

  def __init__(self, cin, max_pool):
    super().__init__()
    self.max_pool = max_pool  # FIDInceptionE_2
    self.branch1x1 = TBasicConv2d(cin, 320, kernel_size=1)
    self.branch3x3_1 = TBasicConv2d(cin, 384, kernel_size=1)
    self.branch3x3_2a = TBasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3_2b = TBasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = TBasicConv2d(cin, 448, kernel_size=1)
    self.branch3x3dbl_2 = TBasicConv2d(448, 384, kernel_size=3, padding=1)
    self.branch3x3dbl_3a = TBasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = TBasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch_pool = TBasicConv2d(cin, 192, kernel_size=1)

  def forward(self, x):
    b3 = self.branch3x3_1(x)
    b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
    pooled = (
        F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _fid_avg_pool(x)
    )
    return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class TFIDInceptionV3(nn.Module):

  def __init__(self):
    super().__init__()
    self.Conv2d_1a_3x3 = TBasicConv2d(3, 32, kernel_size=3, stride=2)
    self.Conv2d_2a_3x3 = TBasicConv2d(32, 32, kernel_size=3)
    self.Conv2d_2b_3x3 = TBasicConv2d(32, 64, kernel_size=3, padding=1)
    self.Conv2d_3b_1x1 = TBasicConv2d(64, 80, kernel_size=1)
    self.Conv2d_4a_3x3 = TBasicConv2d(80, 192, kernel_size=3)
    self.Mixed_5b = TInceptionA(192, pool_features=32)
    self.Mixed_5c = TInceptionA(256, pool_features=64)
    self.Mixed_5d = TInceptionA(288, pool_features=64)
    self.Mixed_6a = TInceptionB(288)
    self.Mixed_6b = TInceptionC(768, 128)
    self.Mixed_6c = TInceptionC(768, 160)
    self.Mixed_6d = TInceptionC(768, 160)
    self.Mixed_6e = TInceptionC(768, 192)
    self.Mixed_7a = TInceptionD(768)
    self.Mixed_7b = TInceptionE(1280, max_pool=False)
    self.Mixed_7c = TInceptionE(2048, max_pool=True)
    self.fc = nn.Linear(2048, 1008)  # In the published file; not used for pool3.

  def forward(self, x):
    """pytorch-fid's InceptionV3 forward for block 3: resize, normalize, pool3."""
    x = F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)
    x = 2 * x - 1
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for name in ('5b', '5c', '5d', '6a', '6b', '6c', '6d', '6e', '7a', '7b', '7c'):
      x = getattr(self, f'Mixed_{name}')(x)
    return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


def _to_torch(images_nhwc):
  x = torch.from_numpy(np.ascontiguousarray(images_nhwc, np.float32)).permute(0, 3, 1, 2)
  return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


@pytest.fixture(scope='module')
def mirror():
  """The torch mirror with random weights and BN statistics calibrated on random images,
  so that activations are O(1) all the way to pool3. Running variances are floored at 0.2:
  two images leave some channels nearly constant, and dividing by their tiny variances
  would amplify float32 round-off to 4e-4 (torch float32 vs float64); floored, both
  networks agree with float64 to 2e-7, so 1e-4 is a wide margin, not a tuned one."""
  torch.manual_seed(0)
  net = TFIDInceptionV3()
  with torch.no_grad():
    for module in net.modules():
      if isinstance(module, nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.2, 0.2)
        module.momentum = None  # Cumulative: one batch sets the running statistics.
    net.train()
    net(_to_torch(np.random.default_rng(1).uniform(size=(2,) + IMAGE_SHAPE)))
    for module in net.modules():
      if isinstance(module, nn.BatchNorm2d):
        module.running_var.clamp_(min=0.2)
  return net.eval()


@pytest.fixture(scope='module')
def weights_file(mirror, tmp_path_factory):
  path = tmp_path_factory.mktemp('inception') / inception.WEIGHTS_FILENAME
  torch.save(mirror.state_dict(), path)
  return path


# ----------------------------------------------------------------------------- layout


def test_layout_matches_pytorch_fid_state_dict(mirror):
  torch_shapes = {
      k: tuple(v.shape)
      for k, v in mirror.state_dict().items()
      if not k.startswith('fc.') and not k.endswith('.num_batches_tracked')
  }
  assert inception.expected_state_dict_shapes() == torch_shapes
  assert len(torch_shapes) == 470  # 94 BasicConv2d x (conv weight + 4 BN entries)
  shapes = inception.variable_shapes()
  flax_count = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes['params']))
  torch_count = sum(p.numel() for k, p in mirror.named_parameters() if not k.startswith('fc.'))
  assert flax_count == torch_count == 21_785_568
  # The published file's keys: these plus fc.weight [1008, 2048] and fc.bias.
  assert tuple(mirror.state_dict()['fc.weight'].shape) == (1008, 2048)


def test_state_dict_round_trip_and_kernel_layout(mirror):
  state = {k: v.numpy() for k, v in mirror.state_dict().items()}
  variables = inception.params_from_state_dict(state)
  kernel = variables['params']['Mixed_6b']['branch7x7_2']['conv']['kernel']
  assert kernel.shape == (1, 7, 128, 128)  # [kh, kw, in, out] of a [out, in, 1, 7] weight
  np.testing.assert_array_equal(
      kernel[0, 3, 5, 9], state['Mixed_6b.branch7x7_2.conv.weight'][9, 5, 0, 3]
  )
  np.testing.assert_array_equal(
      variables['batch_stats']['Mixed_7c']['branch_pool']['bn']['var'],
      state['Mixed_7c.branch_pool.bn.running_var'],
  )
  back = _state_dict_of(variables)
  assert set(back) == set(inception.expected_state_dict_shapes())
  for key, value in back.items():
    np.testing.assert_array_equal(value, state[key])


# Flax leaf -> pytorch-fid's name for it, by collection.
_TORCH_NAMES = {
    'params': {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'},
    'batch_stats': {'mean': 'running_mean', 'var': 'running_var'},
}


def _state_dict_of(variables):
  """The PyTorch state dict `variables` hold (fc and num_batches_tracked aside): the inverse of
  params_from_state_dict, written out here to check it."""
  back = {}
  for collection, tree in variables.items():
    for path, value in jax.tree_util.tree_flatten_with_path(tree)[0]:
      *module, leaf = [p.key for p in path]
      value = np.asarray(value)
      back['.'.join([*module, _TORCH_NAMES[collection][leaf]])] = (
          value.transpose(3, 2, 0, 1) if leaf == 'kernel' else value
      )
  return back


def test_bad_state_dicts_name_the_key():
  shapes = inception.expected_state_dict_shapes()
  state = {k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}
  state['fc.weight'] = np.zeros((1008, 2048), np.float32)
  state['Mixed_5b.branch1x1.bn.num_batches_tracked'] = np.zeros((), np.int64)
  inception.params_from_state_dict(state)  # fc and num_batches_tracked are ignored.
  with pytest.raises(ValueError, match=r"missing key 'Mixed_6e\.branch_pool\.conv\.weight'"):
    inception.params_from_state_dict(
        {k: v for k, v in state.items() if k != 'Mixed_6e.branch_pool.conv.weight'}
    )
  with pytest.raises(
      ValueError, match=r"'Mixed_7b\.branch1x1\.bn\.bias' has shape \(3,\), " r'expected \(320,\)'
  ):
    inception.params_from_state_dict({**state, 'Mixed_7b.branch1x1.bn.bias': np.zeros(3)})
  with pytest.raises(ValueError, match=r"unexpected key 'AuxLogits\.conv0\.conv\.weight'"):
    inception.params_from_state_dict({**state, 'AuxLogits.conv0.conv.weight': np.zeros(1)})


# ----------------------------------------------------------------------------- weight file


def _awkward_state_dict():
  base = torch.arange(60, dtype=torch.float32).reshape(6, 10) / 7
  return {
      'plain': torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),
      'offset_slice': base[2:5, 3:8],  # storage offset 23, strides (10, 1)
      'transposed': base.t(),  # strides (1, 10)
      'strided': base[::2, 1::3],  # strides (20, 3), offset 1
      'conv': torch.randn(4, 3, 2, 2).permute(0, 2, 3, 1),
      'scalar': torch.tensor(2.5, dtype=torch.float64),
      'steps': torch.tensor(7),
      'half': torch.linspace(-1, 1, 5).half(),
      'mask': torch.tensor([True, False, True]),
      'empty': torch.zeros(0, 3),
  }


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy'])
def test_load_state_dict_matches_torch(tmp_path, zip_format):
  state = _awkward_state_dict()
  path = tmp_path / 'w.pth'
  torch.save(state, path, _use_new_zipfile_serialization=zip_format)
  loaded = inception.load_state_dict(path)
  assert list(loaded) == list(state)
  for key, tensor in state.items():
    expected = tensor.numpy()
    assert loaded[key].dtype == expected.dtype, key
    assert loaded[key].shape == expected.shape, key
    np.testing.assert_array_equal(loaded[key], expected, err_msg=key)


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy'])
def test_truncated_or_foreign_files_give_clear_errors(tmp_path, zip_format):
  path = tmp_path / 'w.pth'
  torch.save({'w': torch.randn(64, 64)}, path, _use_new_zipfile_serialization=zip_format)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match=r'w\.pth.*(truncated|corrupt)'):
    inception.load_state_dict(path)
  # Anything but tensors is refused, not executed.
  torch.save({'w': torch.zeros(1), 'f': os.system}, path, _use_new_zipfile_serialization=zip_format)
  with pytest.raises(ValueError, match=r'system is not allowed'):
    inception.load_state_dict(path)
  path.write_bytes(b'not a checkpoint')
  with pytest.raises(ValueError, match='not a PyTorch weights file'):
    inception.load_state_dict(path)


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  assert inception.configured_path('') is None
  for configured, shown in (
      ('', 'are not configured'),
      (str(tmp_path / 'nope.pth'), str(tmp_path / 'nope.pth')),
  ):
    with pytest.raises(FileNotFoundError) as error:
      inception.weights_path(configured)
    message = str(error.value)
    for part in (
        shown,
        'pt_inception-2015-12-05-6726825d.pth',
        'eval.inception_weights',
        'WAE_JAX_INCEPTION_WEIGHTS',
        'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
        'pt_inception-2015-12-05-6726825d.pth',
    ):
      assert part in message
  with pytest.raises(FileNotFoundError, match='eval.inception_weights'):
    inception.make_featurizer(str(tmp_path / 'nope.pth'))
  # The environment variable, a folder holding the file, and the config value first.
  (tmp_path / inception.WEIGHTS_FILENAME).write_bytes(b'')
  monkeypatch.setenv(inception.WEIGHTS_ENV, str(tmp_path))
  assert inception.weights_path('') == tmp_path / inception.WEIGHTS_FILENAME
  with pytest.raises(FileNotFoundError, match='other.pth'):
    inception.weights_path(str(tmp_path / 'other.pth'))


# ----------------------------------------------------------------------------- preprocessing


def test_resize_weights_are_torchs_exactly():
  # Checked once for every size from 1 to 700; here a fast selection.
  for size in list(range(1, 40)) + [64, 100, 128, 178, 218, 256, 298, 300, 320, 511, 1024]:
    one_hot = torch.eye(size).reshape(size, 1, size, 1)  # each input pixel alone
    weights = F.interpolate(one_hot, size=(299, 1), mode='bilinear', align_corners=False)
    np.testing.assert_array_equal(
        inception._bilinear_matrix(size, 299),
        weights.reshape(size, 299).T.numpy(),
        err_msg=str(size),
    )


@pytest.mark.parametrize(
    'shape', [(2, 28, 28, 3), (1, 64, 48, 3), (1, 320, 310, 3), (1, 299, 299, 3)]
)
def test_resize_matches_torch_interpolate(shape):
  images = np.random.default_rng(0).uniform(size=shape).astype(np.float32)
  ours = np.asarray(inception.resize_bilinear(images))
  ref = (
      F.interpolate(_to_torch(images), size=(299, 299), mode='bilinear', align_corners=False)
      .permute(0, 2, 3, 1)
      .numpy()
  )
  np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_preprocess_range_and_channels():
  rng = np.random.default_rng(0)
  unit = rng.uniform(size=(2, 28, 28, 1)).astype(np.float32)
  reference = np.asarray(inception.preprocess(unit, (0.0, 1.0)))
  assert reference.shape == (2, 299, 299, 3)
  assert -1.0 <= reference.min() and reference.max() <= 1.0
  # Greyscale is the same image in all three channels.
  np.testing.assert_array_equal(reference[..., 0], reference[..., 2])
  rgb = np.asarray(inception.preprocess(np.repeat(unit, 3, axis=-1), (0.0, 1.0)))
  np.testing.assert_array_equal(rgb, reference)
  # Other pixel ranges map to [0, 1] first (and out-of-range pixels are clipped).
  np.testing.assert_allclose(inception.preprocess(2 * unit - 1, (-1.0, 1.0)), reference, atol=1e-6)
  np.testing.assert_allclose(inception.preprocess(255 * unit, (0, 255)), reference, atol=1e-5)
  flat = np.asarray(inception.preprocess(np.full((1, 8, 8, 3), 7.0), (0.0, 1.0)))
  np.testing.assert_array_equal(flat, np.ones_like(flat))
  with pytest.raises(ValueError, match='1 or 3'):
    inception.preprocess(np.zeros((1, 8, 8, 2)), (0.0, 1.0))


# ----------------------------------------------------------------------------- numerics


def test_features_match_the_torch_mirror(mirror, weights_file, monkeypatch):
  """The whole path: torch.save'd file -> loader -> mapping -> preprocessing -> network.

  The images come in [-1, 1]: they are converted to [0, 1] a batch at a time, never whole.
  """
  featurize = inception.make_featurizer(str(weights_file), batch_size=BATCH)
  images = np.random.default_rng(2).uniform(size=(3,) + IMAGE_SHAPE).astype(np.float32)
  converted = []  # rows per conversion
  to_unit_range = inception.visualize.to_unit_range
  monkeypatch.setattr(
      inception.visualize,
      'to_unit_range',
      lambda x, pixel_range: converted.append(len(x)) or to_unit_range(x, pixel_range),
  )
  ours = featurize(2.0 * images - 1.0, pixel_range=(-1.0, 1.0))  # a full batch, a padded one
  assert sum(converted) == 3 and max(converted) <= BATCH
  with torch.no_grad():
    ref = mirror(_to_torch(images)).numpy()
  assert ours.shape == (3, 2048) and ours.dtype == np.float32
  assert ref.std() > 0.1  # calibrated: the comparison is not between near-zero vectors
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


# ----------------------------------------------------------------------------- evaluate


def _eval_config(weights, cache_dir, pixel_range=(-1.0, 1.0)):
  config = ml_collections.ConfigDict()
  config.data = ml_collections.ConfigDict({'name': 'mnist', 'pixel_range': pixel_range})
  config.eval = ml_collections.ConfigDict(
      {'inception_weights': weights, 'cache_dir': str(cache_dir), 'inception_batch_size': BATCH}
  )
  return config


def _inception_fid(config, data, samples):
  """The Inception FID evaluator, with samples against as many test images."""
  context = evaluators.Context(
      config=config, data=data, test_images=data.test_images[: len(samples)], samples=samples
  )
  return evaluators.FID('inception').run(context)


class _Data:

  def __init__(self, rng, n):
    self.train_images = rng.uniform(-1, 1, size=(n,) + IMAGE_SHAPE).astype(np.float32)
    self.test_images = rng.uniform(-1, 1, size=(n,) + IMAGE_SHAPE).astype(np.float32)


def test_evaluate_inception_fid(mirror, weights_file, tmp_path, monkeypatch):
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  n = 2  # pixels in (-1, 1), so this also checks the range conversion
  data = _Data(np.random.default_rng(3), n)
  samples = np.clip(data.test_images + 0.5, -1, 1)
  config = _eval_config(str(weights_file), tmp_path / 'cache')
  # sqrtm of 2048 x 2048 covariances takes minutes on 2 cores, and frechet_distance has its
  # own tests: a cheap distance of the same statistics checks which ones each entry uses.
  distance = lambda mu1, s1, mu2, s2: float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) - np.trace(s2))
  monkeypatch.setattr(metrics, 'frechet_distance', distance)
  results = _inception_fid(config, data, samples)
  fid, floor = results['fid_inception'], results['fid_inception_real_floor']
  assert fid['features'] == 'inception_v3_pool3 (pt_inception-2015-12-05)'
  assert fid['num_images'] == floor['num_images'] == n
  with torch.no_grad():  # One forward pass for all three sets.
    features = mirror(
        _to_torch((np.concatenate([samples, data.test_images, data.train_images]) + 1) / 2)
    ).numpy()
  ref = {
      name: metrics.gaussian_statistics(features[i * n : (i + 1) * n])
      for i, name in enumerate(('samples', 'test', 'train'))
  }
  assert fid['value'] == pytest.approx(distance(*ref['samples'], *ref['test']), rel=1e-4)
  assert floor['value'] == pytest.approx(distance(*ref['train'], *ref['test']), rel=1e-4)
  cached = sorted(p.name for p in (tmp_path / 'cache').glob('fid_stats_*.npz'))
  assert cached == ['fid_stats_mnist_test_2_inception.npz', 'fid_stats_mnist_train_2_inception.npz']


def test_evaluate_without_weights_skips_or_fails_clearly(tmp_path, monkeypatch):
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  logged = []
  monkeypatch.setattr(logging, 'info', lambda msg, *args: logged.append(msg % args))
  data = _Data(np.random.default_rng(0), 2)
  assert _inception_fid(_eval_config('', tmp_path), data, data.test_images) == {}
  assert len(logged) == 1 and 'Inception FID skipped' in logged[0]
  assert 'eval.inception_weights' in logged[0] and inception.WEIGHTS_ENV in logged[0]
  with pytest.raises(FileNotFoundError, match=inception.WEIGHTS_URL):
    _inception_fid(_eval_config(str(tmp_path / 'missing.pth'), tmp_path), data, data.test_images)
