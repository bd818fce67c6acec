"""SRGAN's networks (Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution
Using a Generative Adversarial Network"), NHWC: the SRResNet generator and the SRGAN
discriminator.

  gen = SRResNet()                                          # x4, 16 blocks: 1,548,547 params
  g_vars = gen.init(key, lr, train=False)                   # {'params', 'batch_stats'}
  sr, upd = gen.apply(g_vars, lr, train=True, mutable=['batch_stats'])
  sr = gen.apply(g_vars, lr, train=False)                   # running averages
  disc = SRGANDiscriminator()                               # flatten: one crop size
  logits, upd = disc.apply(d_vars, hr, train=True, mutable=['batch_stats'])     # [B]
  tiny = SRResNet(features=8, num_blocks=2)                 # cheap variants for tests

Ranges (one scale for data, losses and PSNR/SSIM)
  lr      [B, h, w, 3] float RGB in [0, 1] (the paper's LR scaling).
  sr      [B, s h, s w, 3] float32 (s = upscale) on the [0, 1] scale, linear output
          (unbounded): clip to [0, 1] for display and metrics (`clip=True`).
  hr      [B, H, W, 3] the discriminator's input, real or generated, [0, 1].
  logits  [B] float32 raw real/fake scores (the paper's sigmoid lives in the loss:
          `vision_jax.losses.gan`).
The paper scales HR to [-1, 1] behind a tanh; here HR shares the LR's [0, 1] and the last
conv is linear, so no rescaling sits between the data, the MSE / VGG losses and PSNR, and
no tanh saturates on black or white pixels. Outputs are float32 whatever the compute dtype.

Batch norm (norm='batch', SRGAN's): `train=True` normalizes with batch statistics and
updates the running averages (apply with mutable=['batch_stats']); `train=False` uses the
running averages, which is what evaluation and inference want. norm='none' drops every BN
(and gives the convs their biases back; EDSR's finding that SR does better without BN).

SRResNet (f = features = 64, B = num_blocks = 16; every conv stride 1, zero padding k // 2):
  conv 9x9 -> f -> PReLU                                     (= h0, the long skip)
  B x residual block: x + [conv 3x3 -> BN -> PReLU -> conv 3x3 -> BN](x)
  conv 3x3 -> f -> BN, + h0
  per x2 of upscale: conv 3x3 -> 4f -> pixel shuffle x2 -> PReLU    (upscale 3: one stage
                                                                     of 9f, shuffle x3)
  conv 9x9 -> 3
PReLU is per-channel, slopes initialised at 0.25 (torch's nn.PReLU(num_parameters=C)).
Convs followed by BN have no bias (BN's shift absorbs it); the others have one.

Discriminator (f = features = 64, all convs 3x3, zero padding 1):
  conv -> f -> LeakyReLU(0.2)                               (no BN)
  7 x [conv -> BN -> LeakyReLU(0.2)] with (width, stride) = (f, 2), (2f, 1), (2f, 2),
      (4f, 1), (4f, 2), (8f, 1), (8f, 2)                     (side / 16 after them)
  pooling 'flatten' (the paper's; default): [B, H/16 * W/16 * 8f], so the crop size is
      fixed at init (96 px: 6 x 6 x 512 -> a 18.9M-param dense layer); 'avg': global
      average pooling, [B, 8f], any crop size with the same params.
  dense -> dense_features (1024) -> LeakyReLU(0.2) -> dense -> 1, the logit.

Initialisation: flax defaults (LeCun normal kernels, zero biases, BN scale 1). Params
float32; `dtype` is the compute dtype.
"""
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.nn import conv as conv_lib
from vision_jax.nn import norms
from vision_jax.nn import upsample as upsample_lib

NORMS = ('batch', 'none')
SKIPS = ('none', 'bicubic')
POOLINGS = ('flatten', 'avg')
# (width as a multiple of features, stride) of the 7 conv-BN-LeakyReLU blocks.
DISCRIMINATOR_STAGES = ((1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2))


def upscale_stages(upscale: int) -> tuple[int, ...]:
  """The sub-pixel stages of a scale factor: 2**k -> (2,) * k, 3 -> (3,).

  Raises:
    ValueError: any other factor.
  """
  if upscale == 3:
    return (3,)
  if upscale >= 2 and upscale & (upscale - 1) == 0:
    return (2,) * int(math.log2(upscale))
  raise ValueError(f'upscale must be 3 or a power of 2 >= 2, not {upscale}')


class PReLU(nn.Module):
  """Per-channel PReLU (He et al. 2015; torch's nn.PReLU(num_parameters=C)).

  x [..., C] -> max(x, 0) + a * min(x, 0); param 'negative_slope' [C] float32.
  """
  init_slope: float = 0.25

  @nn.compact
  def __call__(self, x):
    a = self.param('negative_slope', nn.initializers.constant(self.init_slope),
                   (x.shape[-1],), jnp.float32)
    return jnp.where(x >= 0, x, a.astype(x.dtype) * x)


class ResidualBlock(nn.Module):
  """SRResNet's block: x + [conv 3x3 -> BN -> PReLU -> conv 3x3 -> BN](x), zero padding.

  x: [B, H, W, C] -> same shape. (Not `nn.resnet_generator.ResnetBlock`: that one pads by
  reflection and uses ReLU.)
  """
  norm: str = 'batch'
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm = norms.make_norm(self.norm, train=train, dtype=self.dtype)
    use_bias = self.norm == 'none'
    c = x.shape[-1]
    h = conv_lib.Conv(c, 3, use_bias=use_bias, dtype=self.dtype, name='conv1')(x)
    h = PReLU(name='prelu')(norm(name='bn1')(h))
    h = conv_lib.Conv(c, 3, use_bias=use_bias, dtype=self.dtype, name='conv2')(h)
    return x + norm(name='bn2')(h).astype(x.dtype)


class SubPixelUpsample(nn.Module):
  """conv 3x3 -> features * r * r -> pixel shuffle x r -> PReLU (Shi et al. 2016).

  x: [B, H, W, C] -> [B, r H, r W, features].
  """
  features: int
  factor: int = 2
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    r = self.factor
    h = conv_lib.Conv(self.features * r * r, 3, dtype=self.dtype, name='conv')(x)
    return PReLU(name='prelu')(upsample_lib.pixel_shuffle(h, r))


class SRResNet(nn.Module):
  """SRGAN's generator, lr [B, h, w, C] in [0, 1] -> [B, s h, s w, out_channels] float32.

  See the module docstring for the layers and ranges.

  Attributes:
    features: width of the trunk (64).
    num_blocks: residual blocks (16).
    upscale: scale factor s, 3 or a power of 2 (4).
    norm: 'batch' (SRGAN) | 'none'.
    skip: 'none' (the paper's) | 'bicubic': the network adds its output to the bicubic
      upsampling of x (`jax.image.resize`), and its last conv starts at zero, so it
      starts as bicubic and learns the residual (as VDSR); needs out_channels == C.
    out_channels: channels of the output image.
    dtype: compute dtype (None: float32 / the inputs'); params stay float32.
  """
  features: int = 64
  num_blocks: int = 16
  upscale: int = 4
  norm: str = 'batch'
  skip: str = 'none'
  out_channels: int = 3
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool, clip: bool = False):
    """x: [B, h, w, C] in [0, 1] -> [B, s h, s w, out_channels] float32 ([0, 1] scale).

    Args:
      x: low-resolution images.
      train: batch norm uses (and updates, mutable=['batch_stats']) batch statistics;
        False: the running averages.
      clip: clamp the output to [0, 1] (for display and metrics; not for losses).
    Raises:
      ValueError: an unknown norm or an unsupported upscale.
    """
    if self.norm not in NORMS:
      raise ValueError(f'SRResNet: norm must be one of {NORMS}, not {self.norm!r}')
    if self.skip not in SKIPS or (self.skip == 'bicubic' and x.shape[-1] != self.out_channels):
      raise ValueError(f'SRResNet: skip must be one of {SKIPS} ({SKIPS[1]!r} needs '
                       f'out_channels == input channels), not {self.skip!r}')
    stages = upscale_stages(self.upscale)
    norm = norms.make_norm(self.norm, train=train, dtype=self.dtype)
    f = self.features
    h0 = conv_lib.Conv(f, 9, dtype=self.dtype, name='stem')(x)
    h0 = PReLU(name='stem_prelu')(h0)
    h = h0
    for i in range(self.num_blocks):
      h = ResidualBlock(self.norm, self.dtype, name=f'block{i}')(h, train=train)
    h = conv_lib.Conv(f, 3, use_bias=self.norm == 'none', dtype=self.dtype,
                      name='trunk_conv')(h)
    h = norm(name='trunk_bn')(h) + h0
    for i, r in enumerate(stages):
      h = SubPixelUpsample(f, r, self.dtype, name=f'up{i}')(h)
    bicubic = self.skip == 'bicubic'
    y = conv_lib.Conv(self.out_channels, 9, dtype=self.dtype, name='head',
                      **({'kernel_init': nn.initializers.zeros} if bicubic else {}))(h)
    y = y.astype(jnp.float32)
    if bicubic:
      b, hh, ww, c = x.shape
      y = y + jax.image.resize(x.astype(jnp.float32),
                               (b, hh * self.upscale, ww * self.upscale, c), 'bicubic')
    return jnp.clip(y, 0.0, 1.0) if clip else y


class SRGANDiscriminator(nn.Module):
  """SRGAN's discriminator, hr [B, H, W, C] in [0, 1] -> logits [B] float32.

  See the module docstring for the layers.

  Attributes:
    features: width of the first conv (64); the last is 8x wider.
    dense_features: width of the hidden dense layer (None: 16 * features, 1024).
    pooling: 'flatten' (the paper's: the crop size is fixed by init) | 'avg' (global
      average pooling: any crop size).
    norm: 'batch' (SRGAN) | 'none'.
    dtype: compute dtype (None: float32 / the inputs'); params stay float32.
  """
  features: int = 64
  dense_features: int | None = None
  pooling: str = 'flatten'
  norm: str = 'batch'
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    """x: [B, H, W, C] in [0, 1] -> [B] float32 logits (real > fake).

    Args:
      x: real or generated high-resolution crops; with pooling 'flatten' the size used
        at init (a different size fails in the dense layer's shape check).
      train: batch norm uses (and updates, mutable=['batch_stats']) batch statistics.
    Raises:
      ValueError: an unknown norm or pooling.
    """
    if self.norm not in NORMS:
      raise ValueError(f'SRGANDiscriminator: norm must be one of {NORMS}, not {self.norm!r}')
    if self.pooling not in POOLINGS:
      raise ValueError(f'SRGANDiscriminator: pooling must be one of {POOLINGS}, '
                       f'not {self.pooling!r}')
    norm = norms.make_norm(self.norm, train=train, dtype=self.dtype)
    f = self.features
    h = conv_lib.Conv(f, 3, dtype=self.dtype, name='conv0')(x)
    h = nn.leaky_relu(h, 0.2)
    for i, (mult, stride) in enumerate(DISCRIMINATOR_STAGES, start=1):
      h = conv_lib.Conv(f * mult, 3, strides=stride, use_bias=self.norm == 'none',
                        dtype=self.dtype, name=f'conv{i}')(h)
      h = nn.leaky_relu(norm(name=f'bn{i}')(h), 0.2)
    if self.pooling == 'flatten':
      h = h.reshape(h.shape[0], -1)
    else:
      h = jnp.mean(h.astype(jnp.float32), axis=(1, 2)).astype(h.dtype)
    h = nn.Dense(self.dense_features or 16 * f, dtype=self.dtype, name='dense')(h)
    h = nn.Dense(1, dtype=self.dtype, name='logit')(nn.leaky_relu(h, 0.2))
    return h[:, 0].astype(jnp.float32)
