"""A PyTorch implementation of the same nets and objectives, for the benchmark.

`python -m benchmarks.benchmark` times this beside the JAX train step, so it is written the
way a PyTorch user would write it, not as a port of the JAX code: `nn.Module`s on NCHW
tensors, `nn.BatchNorm2d`, eager autograd, `torch.optim.Adam` and a `LambdaLR` schedule,
`zero_grad(set_to_none=True)` / `backward()` / `step()`. It is built from the same
ml_collections config as the Flax models, and `load_jax_variables` copies a wae_jax
parameter tree into it; tests/test_torch_reference.py checks with that copy that both
compute the same outputs, losses and optimizer step.

Differences that are PyTorch's conventions, not the objective's:
* Parameters start from PyTorch's default initialisers, not Flax's (the benchmark does not
  care; the test copies the JAX weights in).
* `nn.BatchNorm2d` updates its running variance with the unbiased batch variance, Flax
  with the biased one. Training-mode outputs and every parameter are unaffected.
* Random numbers come from torch's generator, so the same seed gives other noise.

Needs torch (`pip install -e ".[bench]"`): the rest of wae_jax does not import this module.
"""

import math
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from wae_jax import errors
from wae_jax import penalties as jax_penalties
from wae_jax.models import scaled_widths
from wae_jax.penalties import IMQ_SCALES

_L2_EPS = 1e-8  # as wae_jax.penalties: keeps the l2 cost's gradient finite at 0


# --------------------------------------------------------------- 'SAME' layers ---


def same_conv_pads(n: int, k: int, s: int) -> Tuple[int, int]:
  """(before, after) zero padding of TF/Flax `Conv(padding='SAME')` along one axis."""
  out = -(-n // s)
  total = max((out - 1) * s + k - n, 0)
  return total // 2, total - total // 2


def same_conv_transpose_crops(n: int, k: int, s: int) -> Tuple[int, int]:
  """Flax `ConvTranspose(padding='SAME')` as a crop of the full transposed conv.

  The full transposed convolution (PyTorch's with padding 0, whose kernel is Flax's with
  its taps flipped) has (n - 1) * s + k outputs; Flax keeps s * n of them, starting at
  `before`. Same rule as lax's 'SAME' transpose padding.
  """
  pad_len = k + s - 2
  pa = k - 1 if s > k - 1 else -(-pad_len // 2)
  before = k - 1 - pa
  return before, (n - 1) * s + k - before - s * n


class Conv2dSame(nn.Conv2d):
  """`nn.Conv2d` with TF/Flax 'SAME' padding for a known input size.

  A stride-2 'SAME' conv pads one more row/column after than before when the padding is
  odd (e.g. 7x7 -> 4x4 with 4x4 kernels pads (1, 2)), which `nn.Conv2d(padding=...)`
  cannot express: those layers pad explicitly, as timm's `Conv2dSame` does.
  """

  def __init__(
      self,
      in_channels,
      out_channels,
      kernel_size: int,
      stride: int,
      in_size: Tuple[int, int],
      bias: bool = True,
  ):
    (top, bottom), (left, right) = (same_conv_pads(n, kernel_size, stride) for n in in_size)
    symmetric = top == bottom and left == right
    super().__init__(
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding=(top, left) if symmetric else 0,
        bias=bias,
    )
    self.explicit_pad = None if symmetric else (left, right, top, bottom)

  def forward(self, x):
    if self.explicit_pad is not None:
      x = F.pad(x, self.explicit_pad)
    return super().forward(x)


class ConvTranspose2dSame(nn.ConvTranspose2d):
  """`nn.ConvTranspose2d` whose output is Flax's `ConvTranspose(padding='SAME')`: s * n.

  `padding` crops the full output by the same amount on both sides; where Flax crops one
  more after than before, the extra row/column is sliced off, and where it crops less,
  `output_padding` keeps it.
  """

  def __init__(
      self,
      in_channels,
      out_channels,
      kernel_size: int,
      stride: int,
      in_size: Tuple[int, int],
      bias: bool = True,
  ):
    crops = [same_conv_transpose_crops(n, kernel_size, stride) for n in in_size]
    super().__init__(
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding=tuple(before for before, _ in crops),
        output_padding=tuple(max(before - after, 0) for before, after in crops),
        bias=bias,
    )
    self.out_size = tuple(stride * n for n in in_size)
    self.slice_extra = any(after > before for before, after in crops)

  def forward(self, x):
    y = super().forward(x)
    if self.slice_extra:
      y = y[:, :, : self.out_size[0], : self.out_size[1]]
    return y


def _batch_norm(channels: int) -> nn.BatchNorm2d:
  # Flax momentum 0.9 (weight of the old running average) is PyTorch's momentum 0.1.
  # The convs before a BatchNorm have no bias (it would cancel), as in wae_jax.models.
  return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


# ------------------------------------------------------------------------ nets ---


class Encoder(nn.Module):
  """Stride-2 'SAME' convs with BN and ReLU, then linear heads; returns (mean, log_var)."""

  def __init__(
      self,
      widths: Sequence[int],
      kernel_size: int,
      latent_dim: int,
      image_shape: Tuple[int, int, int],
      gaussian: bool = False,
  ):
    super().__init__()
    h, w, c = image_shape
    blocks = []
    for features in widths:
      blocks += [
          Conv2dSame(c, features, kernel_size, 2, (h, w), bias=False),
          _batch_norm(features),
          nn.ReLU(inplace=True),
      ]
      h, w, c = -(-h // 2), -(-w // 2), features
    blocks.append(nn.Flatten())
    self.features = nn.Sequential(*blocks)
    self.map_shape = (c, h, w)  # what nn.Flatten flattens
    self.gaussian = gaussian
    if gaussian:
      self.mean = nn.Linear(h * w * c, latent_dim)
      self.log_variance = nn.Linear(h * w * c, latent_dim)
    else:
      self.fc = nn.Linear(h * w * c, latent_dim)

  def forward(self, x) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(mean, log_variance) in float32 (also under autocast); log_variance None if not
    Gaussian."""
    h = self.features(x)
    if self.gaussian:
      return self.mean(h).float(), self.log_variance(h).float()
    return self.fc(h).float(), None


class Decoder(nn.Module):
  """Linear to a small feature map, stride-2 transposed convs, a stride-1 output layer."""

  def __init__(
      self,
      widths: Sequence[int],
      kernel_size: int,
      latent_dim: int,
      image_shape: Tuple[int, int, int],
  ):
    super().__init__()
    height, width, channels = image_shape
    upsamplings = len(widths) - 1
    h, w = height // 2**upsamplings, width // 2**upsamplings
    if (h * 2**upsamplings, w * 2**upsamplings) != (height, width):
      raise ValueError(f'image size {height}x{width} is not divisible by 2**{upsamplings}')
    self.fc = nn.Linear(latent_dim, widths[0] * h * w)
    blocks = [nn.Unflatten(1, (widths[0], h, w)), _batch_norm(widths[0]), nn.ReLU(inplace=True)]
    for c_in, c_out in zip(widths, widths[1:]):
      blocks += [
          ConvTranspose2dSame(c_in, c_out, kernel_size, 2, (h, w), bias=False),
          _batch_norm(c_out),
          nn.ReLU(inplace=True),
      ]
      h, w = 2 * h, 2 * w
    blocks.append(ConvTranspose2dSame(widths[-1], channels, kernel_size, 1, (h, w)))
    self.body = nn.Sequential(*blocks)

  def forward(self, z):
    """Pre-activation outputs (logits), [n, channels, height, width], float32."""
    return self.body(self.fc(z)).float()


class AutoEncoder(nn.Module):

  def __init__(self, encoder: Encoder, decoder: Decoder):
    super().__init__()
    self.encoder = encoder
    self.decoder = decoder

  def forward(self, x, latent_noise: Optional[torch.Tensor] = None):
    """(codes, mean, log_variance, logits); a Gaussian encoder's codes are sampled.

    `latent_noise` (standard normal, shaped like the codes) is drawn when not given.
    """
    mean, log_variance = self.encoder(x)
    codes = mean
    if log_variance is not None:
      if latent_noise is None:
        latent_noise = torch.randn_like(mean)
      codes = mean + torch.exp(0.5 * log_variance) * latent_noise
    return codes, mean, log_variance, self.decoder(codes)


class NotInReferenceError(errors.ConfigError):
  """A config the PyTorch reference has no implementation of (another architecture or latent
  penalty): time it JAX-only."""


def build_autoencoder(config) -> AutoEncoder:
  m = config.model
  if m.arch != 'dcgan':
    raise NotInReferenceError(
        f'config.model.arch={m.arch!r}: the PyTorch reference has only '
        "the DCGAN nets, arch='dcgan'"
    )
  image_shape = tuple(config.data.image_shape)
  return AutoEncoder(
      Encoder(
          scaled_widths(m.encoder_widths, m.width),
          m.kernel_size,
          m.latent_dim,
          image_shape,
          m.gaussian_encoder,
      ),
      Decoder(scaled_widths(m.decoder_widths, m.width), m.kernel_size, m.latent_dim, image_shape),
  )


def build_adversary(config) -> nn.Sequential:
  """MLP on latent codes, ReLU hidden layers, one logit per code: [n, 1]."""
  widths = scaled_widths(config.model.adversary_widths, config.model.adversary_width)
  layers, fan_in = [], config.model.latent_dim
  for features in widths:
    layers += [nn.Linear(fan_in, features), nn.ReLU(inplace=True)]
    fan_in = features
  layers.append(nn.Linear(fan_in, 1))
  return nn.Sequential(*layers)


# ---------------------------------------------------------------------- losses ---


def activate(logits, pixel_range):
  lo, hi = pixel_range
  if (lo, hi) == (-1.0, 1.0):
    return torch.tanh(logits)
  return lo + (hi - lo) * torch.sigmoid(logits)


def reconstruction_cost(x, y, name: str = 'l2sq', scale: float = 1.0):
  """Batch mean of a per-image cost summed over pixels; for 'bernoulli', y are logits."""
  if name == 'bernoulli':
    per_pixel = F.binary_cross_entropy_with_logits(y, x, reduction='none')
  elif name == 'l1':
    per_pixel = (x - y).abs()
  elif name in ('l2sq', 'l2'):
    per_pixel = (x - y).square()
  else:
    raise ValueError(f'unknown cost {name!r}')
  per_image = per_pixel.flatten(1).sum(1)
  if name == 'l2':
    per_image = torch.sqrt(per_image + _L2_EPS)
  return scale * per_image.mean()


def squared_distances(x, y):
  """||x_i - y_j||^2 by one matrix product, centred on y's mean, clipped at 0."""
  centre = y.mean(0)
  x, y = x - centre, y - centre
  return (x.square().sum(1)[:, None] + y.square().sum(1)[None, :] - 2.0 * x @ y.T).clamp_min(0.0)


def _kernel(sq_dists, kernel: str, scale: float, scales: Sequence[float]):
  if kernel == 'rbf':
    return torch.exp(-sq_dists / scale)
  if kernel == 'imq':
    return scale / (scale + sq_dists)
  if kernel == 'imq_multiscale':
    return sum(scale * s / (scale * s + sq_dists) for s in scales)
  raise ValueError(f'unknown kernel {kernel!r}')


def mmd(
    codes,
    prior_samples,
    kernel: str = 'imq_multiscale',
    prior_variance: float = 1.0,
    scale: Optional[float] = None,
    scales: Sequence[float] = IMQ_SCALES,
):
  """Unbiased (U-statistic) MMD^2 estimate; base scale C = 2 * d * sigma_z^2 by default."""
  d = codes.shape[1]
  scale = 2.0 * d * prior_variance if scale is None else scale

  def off_diagonal_mean(k):
    return (k.sum() - k.diagonal().sum()) / (k.shape[0] * (k.shape[0] - 1))

  k_pp = _kernel(squared_distances(prior_samples, prior_samples), kernel, scale, scales)
  k_qq = _kernel(squared_distances(codes, codes), kernel, scale, scales)
  k_qp = _kernel(squared_distances(codes, prior_samples), kernel, scale, scales)
  return off_diagonal_mean(k_pp) + off_diagonal_mean(k_qq) - 2.0 * k_qp.mean()


def gaussian_log_density(z, variance: float):
  d = z.shape[1]
  return -0.5 * z.square().sum(1) / variance - 0.5 * d * math.log(2.0 * math.pi * variance)


def adversary_loss(prior_logits, code_logits):
  """Cross-entropy of prior samples as 1 and codes as 0 (the caller multiplies by lambda)."""
  return F.binary_cross_entropy_with_logits(
      prior_logits, torch.ones_like(prior_logits)
  ) + F.binary_cross_entropy_with_logits(code_logits, torch.zeros_like(code_logits))


def encoder_adversarial_loss(code_logits):
  """Non-saturating -mean log D(z~)."""
  return F.binary_cross_entropy_with_logits(code_logits, torch.ones_like(code_logits))


def gaussian_kl(mean, log_variance, prior_variance: float = 1.0):
  per_dim = 0.5 * (
      (log_variance.exp() + mean.square()) / prior_variance
      - 1.0
      - log_variance
      + math.log(prior_variance)
  )
  return per_dim.sum(1).mean()


# The latent penalties this reference has, by config.penalty.name (wae_jax.penalties.REGISTRY
# may hold more): each takes the Trainer and the auto-encoder's codes, means and
# log-variances, and the prior samples.
PENALTIES = {
    'mmd': lambda t, codes, mean, log_variance, z_prior: mmd(
        codes, z_prior, t.config.penalty.kernel, t.prior_variance, t.config.penalty.kernel_scale
    ),
    'gan': lambda t, codes, mean, log_variance, z_prior: encoder_adversarial_loss(
        t.adversary_logits(codes)
    ),
    'vae': lambda t, codes, mean, log_variance, z_prior: gaussian_kl(
        mean, log_variance, t.prior_variance
    ),
}


def unsupported(config) -> str:
  """Why the reference cannot train `config` ('' when it can): the DCGAN nets and PENALTIES
  only."""
  if config.model.arch != 'dcgan':
    return (
        f'the PyTorch reference (benchmarks/torch_reference.py) has the DCGAN nets only, '
        f'not model.arch={config.model.arch!r}'
    )
  if config.penalty.name not in PENALTIES:
    return (
        f'the PyTorch reference (benchmarks/torch_reference.py) has the latent penalties '
        f'{", ".join(map(repr, PENALTIES))} only, not penalty.name='
        f'{config.penalty.name!r}'
    )
  return ''


# --------------------------------------------------------------------- training ---


def _lr_factor(lr_decay, steps_per_epoch: int):
  """optax.piecewise_constant_schedule's factor at a step: product of f for step >= b."""
  boundaries = sorted((int(epoch * steps_per_epoch), factor) for epoch, factor in lr_decay)

  def factor(step: int) -> float:
    f = 1.0
    for boundary, scale in boundaries:
      if step >= boundary:
        f *= scale
    return f

  return factor


class Trainer:
  """Model, adversary, optimizers and schedules, and the train step of config.penalty.name.

  Images are NCHW float tensors in config.data.pixel_range. With config.model.dtype
  'bfloat16' the auto-encoder runs under `torch.autocast` (mixed precision, as the JAX
  models' dtype); the adversary, losses and penalties stay float32.
  """

  def __init__(self, config, steps_per_epoch: int = 1, device='cpu'):
    if config.penalty.name not in PENALTIES:
      raise NotInReferenceError(
          f'{unsupported(config)}: time it JAX-only ' '(python -m benchmarks.benchmark --notorch)'
      )
    self.config = config
    self.device = torch.device(device)
    dtype = config.model.get('dtype', 'float32')
    if dtype not in ('float32', 'bfloat16'):
      raise ValueError(f'config.model.dtype={dtype!r}: expected float32 or bfloat16')
    self.mixed_precision = dtype == 'bfloat16'
    t = config.train
    self.penalty_name, self.lam = config.penalty.name, config.penalty.lam
    self.prior_variance = config.model.prior_variance
    self.latent_dim = config.model.latent_dim
    self.model = build_autoencoder(config).to(self.device)
    self.optimizer = torch.optim.Adam(
        self.model.parameters(), lr=t.learning_rate, betas=(t.adam_b1, 0.999)
    )
    factor = _lr_factor(t.lr_decay, steps_per_epoch)
    self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
    self.adversary = None
    if jax_penalties.get(self.penalty_name).needs_adversary:
      self.adversary = build_adversary(config).to(self.device)
      self.adversary_optimizer = torch.optim.Adam(
          self.adversary.parameters(), lr=t.adversary_learning_rate, betas=(t.adam_b1, 0.999)
      )
      self.adversary_scheduler = torch.optim.lr_scheduler.LambdaLR(self.adversary_optimizer, factor)

  def adversary_logits(self, z):
    logits = self.adversary(z)[:, 0]
    if self.config.penalty.log_prior_trick:
      logits = logits + gaussian_log_density(z, self.prior_variance)
    return logits

  def ae_losses(self, inputs, images, z_prior, latent_noise=None):
    """Auto-encoder loss: reconstruction of `images` from `inputs` + lambda * penalty."""
    c = self.config
    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.mixed_precision):
      codes, mean, log_variance, logits = self.model(inputs, latent_noise)
    outputs = logits if c.cost.name == 'bernoulli' else activate(logits, c.data.pixel_range)
    reconstruction = reconstruction_cost(images, outputs, c.cost.name, c.cost.scale)
    penalty = PENALTIES[self.penalty_name](self, codes, mean, log_variance, z_prior)
    return dict(
        loss=reconstruction + self.lam * penalty,
        reconstruction=reconstruction,
        penalty=penalty,
        codes=codes,
        logits=logits,
    )

  def adversary_losses(self, codes, z_prior):
    return self.lam * adversary_loss(self.adversary_logits(z_prior), self.adversary_logits(codes))

  def sample_prior(self, n: int):
    return math.sqrt(self.prior_variance) * torch.randn(n, self.latent_dim, device=self.device)

  def train_step(self, images, z_prior=None, latent_noise=None):
    """One step on a batch; WAE-GAN updates both nets simultaneously, as wae_jax.train."""
    self.model.train()
    if z_prior is None:
      z_prior = self.sample_prior(images.shape[0])
    inputs = images
    noise_std = self.config.train.input_noise
    if noise_std > 0:
      noise = nn.init.trunc_normal_(torch.empty_like(images), mean=0.0, std=1.0, a=-2.0, b=2.0)
      inputs = images + noise_std * noise

    if self.adversary is not None:
      self.adversary.requires_grad_(False)  # the encoder's loss does not train the adversary
    out = self.ae_losses(inputs, images, z_prior, latent_noise)
    self.optimizer.zero_grad(set_to_none=True)
    out['loss'].backward()
    metrics = dict(loss=out['loss'].detach(), penalty=out['penalty'].detach())
    if self.adversary is not None:
      self.adversary.requires_grad_(True)
      adv_loss = self.adversary_losses(out['codes'].detach(), z_prior)
      self.adversary_optimizer.zero_grad(set_to_none=True)
      adv_loss.backward()
      self.adversary_optimizer.step()
      self.adversary_scheduler.step()
      metrics['adversary_loss'] = adv_loss.detach()
    self.optimizer.step()
    self.scheduler.step()
    return metrics


# ---------------------------------------------------- weights from a JAX model ---


def _tensor(a) -> torch.Tensor:
  return torch.from_numpy(np.array(a, dtype=np.float32))


def _set(param: torch.Tensor, value: torch.Tensor, name: str):
  if tuple(param.shape) != tuple(value.shape):
    raise ValueError(f'{name}: torch shape {tuple(param.shape)} != {tuple(value.shape)}')
  param.copy_(value)


def _conv_weight(kernel):
  """Flax Conv kernel [kh, kw, in, out] -> nn.Conv2d weight [out, in, kh, kw]."""
  return _tensor(kernel).permute(3, 2, 0, 1)


def _conv_transpose_weight(kernel):
  """Flax ConvTranspose kernel [kh, kw, in, out] -> nn.ConvTranspose2d [in, out, kh, kw].

  lax.conv_transpose correlates the dilated input with the kernel as given; PyTorch's
  transposed conv is the adjoint of a correlation, i.e. uses the taps flipped.
  """
  return _tensor(kernel).flip(0, 1).permute(2, 3, 0, 1)


def _load_linear(linear: nn.Linear, dense, name, in_chw=None, out_chw=None):
  """Flax Dense [in, out] -> nn.Linear [out, in]; NHWC <-> NCHW flattening order fixed.

  in_chw: the (c, h, w) map that nn.Flatten flattened into the input (Flax: h, w, c);
  out_chw: the (c, h, w) map that nn.Unflatten makes of the output.
  """
  kernel, bias = _tensor(dense['kernel']), _tensor(dense['bias'])
  if in_chw is not None:
    c, h, w = in_chw
    kernel = kernel.reshape(h, w, c, -1).permute(2, 0, 1, 3).reshape(c * h * w, -1)
  if out_chw is not None:
    c, h, w = out_chw
    kernel = kernel.reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(kernel.shape[0], -1)
    bias = bias.reshape(h, w, c).permute(2, 0, 1).reshape(-1)
  _set(linear.weight, kernel.T, name + '.kernel')
  _set(linear.bias, bias, name + '.bias')


def _load_batch_norm(bn: nn.BatchNorm2d, params, stats, name):
  _set(bn.weight, _tensor(params['scale']), name + '.scale')
  _set(bn.bias, _tensor(params['bias']), name + '.bias')
  if stats is not None:
    _set(bn.running_mean, _tensor(stats['mean']), name + '.mean')
    _set(bn.running_var, _tensor(stats['var']), name + '.var')


def _load_conv(conv, p, name, convert):
  _set(conv.weight, convert(p['kernel']), name + '.kernel')
  if ('bias' in p) != (conv.bias is not None):
    raise ValueError(f'{name}: bias in JAX: {"bias" in p}, in torch: {conv.bias is not None}')
  if conv.bias is not None:
    _set(conv.bias, _tensor(p['bias']), name + '.bias')


def _of_type(module, cls):
  return [m for m in module.modules() if isinstance(m, cls)]


@torch.no_grad()
def load_jax_variables(model: AutoEncoder, params, batch_stats=None) -> None:
  """Copies wae_jax auto-encoder variables (params, batch_stats) into `model`, in place.

  Flax numbers its layers in call order (Conv_0, BatchNorm_0, ...), which is the order of
  the same layers in the torch modules.
  """
  for part in ('encoder', 'decoder'):
    module, p = getattr(model, part), params[part]
    s = batch_stats[part] if batch_stats is not None else None
    for i, bn in enumerate(_of_type(module, nn.BatchNorm2d)):
      _load_batch_norm(bn, p[f'BatchNorm_{i}'], s and s[f'BatchNorm_{i}'], f'{part}.BatchNorm_{i}')
  enc, dec = model.encoder, model.decoder
  for i, conv in enumerate(_of_type(enc, nn.Conv2d)):
    _load_conv(conv, params['encoder'][f'Conv_{i}'], f'encoder.Conv_{i}', _conv_weight)
  heads = {'mean': 'mean', 'log_variance': 'log_variance'} if enc.gaussian else {'fc': 'Dense_0'}
  for head, name in heads.items():
    _load_linear(
        getattr(enc, head), params['encoder'][name], 'encoder.' + name, in_chw=enc.map_shape
    )
  unflatten = _of_type(dec, nn.Unflatten)[0]
  _load_linear(
      dec.fc,
      params['decoder']['Dense_0'],
      'decoder.Dense_0',
      out_chw=tuple(unflatten.unflattened_size),
  )
  for i, conv in enumerate(_of_type(dec, nn.ConvTranspose2d)):
    _load_conv(
        conv,
        params['decoder'][f'ConvTranspose_{i}'],
        f'decoder.ConvTranspose_{i}',
        _conv_transpose_weight,
    )


@torch.no_grad()
def load_jax_adversary(adversary: nn.Sequential, adversary_params) -> None:
  """Copies wae_jax adversary params (Dense_0 ... Dense_k) into `adversary`, in place."""
  for i, linear in enumerate(_of_type(adversary, nn.Linear)):
    _load_linear(linear, adversary_params[f'Dense_{i}'], f'adversary.Dense_{i}')


def nchw(images) -> torch.Tensor:
  """NHWC array (the JAX pipeline's layout) -> NCHW float32 tensor."""
  return _tensor(images).permute(0, 3, 1, 2).contiguous()
