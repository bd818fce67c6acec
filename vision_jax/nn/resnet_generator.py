"""CycleGAN's ResNet generator (Johnson et al. 2016's transformation network, as
pytorch-CycleGAN-and-pix2pix's ResnetGenerator; Zhu et al. 2017), NHWC.

  gen = ResnetGenerator(out_channels=3, num_blocks=9)       # 'resnet_9blocks', 256 px
  variables = gen.init(key, x, train=False)
  y = gen.apply(variables, x, train=True)                   # norm='instance': no state

Shapes
  x   [B, S, S', C_in] float (images in [-1, 1]); S and S' divisible by
      2**num_downsampling (4 by default).
  y   [B, S, S', out_channels] float32 in (-1, 1) (tanh), whatever the compute dtype.

Architecture (f = features, n = num_downsampling):
  reflect pad 3 -> conv 7x7 -> f -> norm -> ReLU
  n x [conv 3x3 stride 2 pad 1 (zeros) -> 2x width -> norm -> ReLU]      (f * 2**n wide)
  num_blocks x residual block: x + [reflect pad 1 -> conv 3x3 -> norm -> ReLU
                                    -> (dropout) -> reflect pad 1 -> conv 3x3 -> norm](x)
  n x [transposed conv 3x3 stride 2 (torch padding=1, output_padding=1: exactly x2)
       -> half width -> norm -> ReLU]
  reflect pad 3 -> conv 7x7 -> out_channels -> tanh.
Reflection padding is torch's ReflectionPad2d (the edge pixel is not repeated).

Biases: every conv / transposed conv has one only when norm is 'instance' (the
reference's use_bias), except the last 7x7 conv, which always has one.
Initialisation (init_weights('normal', 0.02)): kernels N(0, 0.02), biases 0, batch norm
scale N(1, 0.02). Params float32; `dtype` is the compute dtype.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.nn import conv as conv_lib
from vision_jax.nn import norms
from vision_jax.nn import unet
from vision_jax.nn import upsample

NORMS = ('batch', 'instance', 'none')
KERNEL_INIT = unet.KERNEL_INIT  # N(0, 0.02)


def reflect_pad(x, pad: int):
  """torch's ReflectionPad2d(pad) on NHWC: x [B, H, W, C] -> [B, H + 2p, W + 2p, C]."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')


class ConvTranspose3x3(nn.Module):
  """torch.nn.ConvTranspose2d(in, features, 3, stride=2, padding=1, output_padding=1).

  x [B, h, w, in] -> [B, 2h, 2w, features]: the adjoint (input gradient) of the
  convolution 3x3 stride 2 pad 1 from [2h, 2w] to [h, w] with the same kernel.
  Param 'kernel' [3, 3, features, in] float32 = torch's weight [in, out, kh, kw]
  transposed to (kh, kw, out, in), not flipped (as `nn.upsample.ConvTranspose4x4`);
  'bias' [features] when `use_bias`. Computed as 4 sub-pixel convolutions, one per output
  phase, interleaved (no multiplications by inserted zeros):
    out[2m] = x[m] W[1];   out[2m + 1] = x[m] W[2] + x[m + 1] W[0]   (x[h] = 0)
  per axis.
  """
  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32
  kernel_init: Any = unet.KERNEL_INIT

  # output phase (even, odd) -> (kernel taps, (low, high) zero padding) of its conv.
  _PHASES = (((1,), (0, 0)), ((2, 0), (0, 1)))

  @nn.compact
  def __call__(self, x):
    """x: [B, h, w, in] -> [B, 2h, 2w, features]."""
    cin = x.shape[-1]
    kernel = self.param('kernel', self.kernel_init, (3, 3, self.features, cin), jnp.float32)
    dtype = jnp.dtype(self.dtype)
    x = x.astype(dtype)
    kernel = kernel.astype(dtype)
    y = upsample.stride2_phases(x, kernel, self._PHASES)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,),
                         jnp.float32).astype(dtype)
    return y


class ResnetBlock(nn.Module):
  """x + [reflect pad 1, conv 3x3, norm, ReLU, (dropout), reflect pad 1, conv 3x3, norm](x).

  x: [B, H, W, C] -> same shape (H, W >= 2). The convs have biases for the instance norms
  ('instance', 'instance_affine': torch's InstanceNorm2d, the reference's use_bias).
  """
  norm: str = 'instance'
  dropout: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool, dropout: bool):
    norm = norms.make_norm(self.norm, train=train, dtype=self.dtype)
    use_bias = self.norm in ('instance', 'instance_affine')
    c = x.shape[-1]
    h = nn.Conv(c, (3, 3), padding='VALID', use_bias=use_bias, dtype=self.dtype,
                kernel_init=KERNEL_INIT, name='conv1')(reflect_pad(x, 1))
    h = nn.relu(norm(name='norm1', scale_init=unet.norm_scale_init)(h))
    if self.dropout > 0:
      h = nn.Dropout(self.dropout, deterministic=not dropout, name='dropout')(h)
    h = nn.Conv(c, (3, 3), padding='VALID', use_bias=use_bias, dtype=self.dtype,
                kernel_init=KERNEL_INIT, name='conv2')(reflect_pad(h, 1))
    h = norm(name='norm2', scale_init=unet.norm_scale_init)(h)
    return x + h.astype(x.dtype)


class ResnetGenerator(nn.Module):
  """CycleGAN's generator, x [B, S, S', C_in] -> [B, S, S', out_channels] float32.

  See the module docstring for the layers.

  Attributes:
    out_channels: channels of the output image.
    features: width of the first and last stage (the reference's ngf).
    num_blocks: residual blocks at the bottleneck (6 for 128 px, 9 for 256 px).
    num_downsampling: stride-2 stages (and as many x2 upsamplings); the input sides must
      be divisible by 2**num_downsampling.
    norm: 'instance' (CycleGAN) | 'batch' | 'none'.
    dropout: dropout rate inside the residual blocks (0: none, CycleGAN's default).
    dtype: compute dtype (None: float32 / the inputs'); params stay float32.
  """
  out_channels: int
  features: int = 64
  num_blocks: int = 9
  num_downsampling: int = 2
  norm: str = 'instance'
  dropout: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool, dropout: bool | None = None):
    """x: [B, S, S', C_in] -> [B, S, S', out_channels] float32.

    Args:
      x: input images; S, S' divisible by 2**num_downsampling.
      train: batch norm (norm='batch') uses and updates batch statistics.
      dropout: apply dropout when `self.dropout` > 0 (needs the 'dropout' rng); None:
        `train`.
    Raises:
      ValueError: a side not divisible by 2**num_downsampling, or an unknown norm.
    """
    if self.norm not in NORMS:
      raise ValueError(f'ResnetGenerator: norm must be one of {NORMS}, not {self.norm!r}')
    factor = 2 ** self.num_downsampling
    unet.check_divisible('ResnetGenerator', x.shape, factor,
                         f'num_downsampling (num_downsampling={self.num_downsampling})')
    dropout = train if dropout is None else dropout
    norm = norms.make_norm(self.norm, train=train, dtype=self.dtype)
    use_bias = self.norm == 'instance'
    up_dtype = self.dtype or jnp.float32

    h = nn.Conv(self.features, (7, 7), padding='VALID', use_bias=use_bias, dtype=self.dtype,
                kernel_init=KERNEL_INIT, name='stem')(reflect_pad(x, 3))
    h = nn.relu(norm(name='stem_norm', scale_init=unet.norm_scale_init)(h))
    width = self.features
    for i in range(self.num_downsampling):
      width *= 2
      h = conv_lib.Conv(width, 3, strides=2, use_bias=use_bias, dtype=self.dtype,
                        kernel_init=KERNEL_INIT, name=f'down{i}')(h)
      h = nn.relu(norm(name=f'down{i}_norm', scale_init=unet.norm_scale_init)(h))
    for i in range(self.num_blocks):
      h = ResnetBlock(self.norm, self.dropout, self.dtype, name=f'block{i}')(
          h, train=train, dropout=dropout)
    for i in range(self.num_downsampling):
      width //= 2
      h = ConvTranspose3x3(width, use_bias=use_bias, dtype=up_dtype, name=f'up{i}')(h)
      h = nn.relu(norm(name=f'up{i}_norm', scale_init=unet.norm_scale_init)(h))
    h = nn.Conv(self.out_channels, (7, 7), padding='VALID', use_bias=True, dtype=self.dtype,
                kernel_init=KERNEL_INIT, name='head')(reflect_pad(h, 3))
    return jnp.tanh(h).astype(jnp.float32)
