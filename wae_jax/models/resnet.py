"""ResNet50-v2 encoder and decoder (He et al. 2016, "Identity Mappings in Deep Residual
Networks"), the paper's other architecture for its big sweep: `config.model.arch='resnet50v2'`.

Both nets are stacks of one pre-activation bottleneck block. The encoder downsamples with
stride 2 in the first block of stages 2..n; the decoder mirrors it stage by stage in reverse,
upsampling by nearest-neighbour resizing to the encoder's sizes (`stage_sizes`, the one
place they are computed), so 28x28 (28-14-7-4) works as well as 64x64. Plain `nn.Conv`
throughout: there are no transposed convs, so `model.conv_impl` does not apply, nor do the
DCGAN's `kernel_size`, `encoder_widths` and `decoder_widths`.
"""

from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from wae_jax.models.autoencoder import batch_norm_relu
from wae_jax.models.autoencoder import latent_head
from wae_jax.models.autoencoder import scaled_widths

EXPANSION = 4  # a bottleneck block's output has 4x its width


def stage_sizes(image_hw: Sequence[int], num_stages: int):
  """(stem stride, each stage's output (height, width)), for the encoder and the decoder.

  The ImageNet stem (7x7 stride-2 conv and max-pool, /4) would leave 64x64 images a 2x2 map
  after stage 4 and 28x28 ones 1x1. Here the stem is one 3x3 conv, stride 2 for images of
  64 px and more (64 -> 32, 16, 8, 4) and stride 1 below (28 -> 28, 14, 7, 4); stages 2..n
  halve, rounding up as 'SAME' padding does.
  """
  stride = 2 if min(image_hw) >= 64 else 1
  size = tuple(-(-s // stride) for s in image_hw)
  sizes = [size]
  for _ in range(num_stages - 1):
    size = tuple(-(-s // 2) for s in size)
    sizes.append(size)
  return stride, tuple(sizes)


def _resize(x, size: Tuple[int, int]):
  return jax.image.resize(x, (x.shape[0],) + tuple(size) + (x.shape[-1],), 'nearest')


class Bottleneck(nn.Module):
  """Pre-activation bottleneck: BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 to 4x width,
  added to the input, or to a 1x1 projection of the pre-activated input where the shape
  changes. `stride` 2 downsamples on the 3x3 (encoder); `resize_to` upsamples just before it
  (decoder), so one block serves both nets.
  """

  width: int
  stride: int = 1
  resize_to: Optional[Tuple[int, int]] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    def conv(features, kernel, name, stride=1):
      return nn.Conv(
          features,
          (kernel, kernel),
          strides=(stride, stride),
          use_bias=False,
          dtype=self.dtype,
          name=name,
      )

    def bn_relu(y):
      return batch_norm_relu(y, train, self.dtype)

    def resize(y):
      return y if self.resize_to is None else _resize(y, self.resize_to)

    features = EXPANSION * self.width
    preact = bn_relu(x)
    y = conv(self.width, 1, 'conv1')(preact)
    y = conv(self.width, 3, 'conv2', self.stride)(resize(bn_relu(y)))
    y = conv(features, 1, 'conv3')(bn_relu(y))
    shortcut = x
    if y.shape != x.shape:
      shortcut = conv(features, 1, 'projection', self.stride)(resize(preact))
    return shortcut + y


class Encoder(nn.Module):
  """Stem conv, bottleneck stages, BN-ReLU, then a linear map of the flattened map to the code.

  Flattened, not average-pooled as in the classifier: the code must say where things are, and
  the decoder's Dense to the same map mirrors it (as in the DCGAN encoder). Returns (mean,
  log_variance) in float32; log_variance is None for a deterministic encoder.
  """

  stage_blocks: Sequence[int]
  widths: Sequence[int]
  latent_dim: int
  gaussian: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    stride, _ = stage_sizes(x.shape[1:3], len(self.widths))
    x = nn.Conv(
        self.widths[0],
        (3, 3),
        strides=(stride, stride),
        use_bias=False,
        dtype=self.dtype,
        name='stem',
    )(x)
    for i, (blocks, width) in enumerate(zip(self.stage_blocks, self.widths)):
      for j in range(blocks):
        x = Bottleneck(
            width,
            stride=2 if i > 0 and j == 0 else 1,
            dtype=self.dtype,
            name=f'stage{i + 1}_block{j + 1}',
        )(x, train)
    x = batch_norm_relu(x, train, self.dtype)
    return latent_head(x, self.latent_dim, self.gaussian, self.dtype)


class Decoder(nn.Module):
  """Dense to the encoder's last map, its stages in reverse (named after the stage they
  mirror), BN-ReLU, a 3x3 conv to the image's channels. Returns logits in float32.
  """

  stage_blocks: Sequence[int]
  widths: Sequence[int]
  image_shape: Tuple[int, int, int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, train: bool):
    height, width, channels = self.image_shape
    stride, sizes = stage_sizes((height, width), len(self.widths))
    (h, w), features = sizes[-1], EXPANSION * self.widths[-1]
    x = nn.Dense(h * w * features, dtype=self.dtype)(z).reshape((z.shape[0], h, w, features))
    last = len(self.widths) - 1
    for i in reversed(range(len(self.widths))):
      for j in range(self.stage_blocks[i]):
        x = Bottleneck(
            self.widths[i],
            resize_to=sizes[i] if i < last and j == 0 else None,
            dtype=self.dtype,
            name=f'stage{i + 1}_block{j + 1}',
        )(x, train)
    x = batch_norm_relu(x, train, self.dtype)
    if stride != 1:  # undo the stem's stride before the output conv, not after it
      x = _resize(x, (height, width))
    x = nn.Conv(channels, (3, 3), dtype=self.dtype, name='output')(x)
    return x.astype(jnp.float32)


def build(config, platform: Optional[str] = None) -> Tuple[Encoder, Decoder]:
  """The encoder and decoder of `config.model.resnet_*`, widths scaled by `model.width`.

  `platform` is unused: plain convs have one implementation on every backend.
  """
  del platform
  m = config.model
  widths = scaled_widths(m.resnet_widths, m.width)
  blocks = tuple(m.resnet_stage_blocks)
  dtype = jnp.dtype(m.dtype)
  encoder = Encoder(
      stage_blocks=blocks,
      widths=widths,
      latent_dim=m.latent_dim,
      gaussian=m.gaussian_encoder,
      dtype=dtype,
  )
  decoder = Decoder(
      stage_blocks=blocks, widths=widths, image_shape=tuple(config.data.image_shape), dtype=dtype
  )
  return encoder, decoder
