"""pix2pix's U-Net generator (Isola et al. 2017, "Image-to-Image Translation with
Conditional Adversarial Networks"; Ronneberger et al. 2015), NHWC.

  gen = UNetGenerator(out_channels=3, depth=8)              # 256 x 256 inputs
  variables = gen.init({'params': key, 'dropout': key}, x, train=False)
  y, upd = gen.apply(variables, x, train=True, mutable=['batch_stats'],
                     rngs={'dropout': key})
  y = gen.apply(variables, x, train=False, dropout=True, rngs={'dropout': key})
                                                            # pix2pix's test-time noise

Shapes
  x   [B, S, S', C_in] float (images in [-1, 1]); S and S' divisible by 2**depth
      (256 px needs depth 8 to reach a 1 x 1 bottleneck, as the paper's 'unet_256';
      'unet_128' is depth 7).
  y   [B, S, S', out_channels] float32 in (-1, 1) (tanh), whatever the compute dtype.

Architecture (as pytorch-CycleGAN-and-pix2pix's UnetGenerator, widths w_i =
min(features * 2**i, max_features), i = 0 .. depth - 1, so 64 128 256 512 512 512 512 512
for depth 8):
  encoder level i:  [LeakyReLU(0.2)] -> conv 4x4 stride 2 pad 1 -> w_i -> [norm]
                    level 0 (outermost) has no LeakyReLU before it and no norm,
                    level depth-1 (innermost) has no norm; e_i is the level's output
                    [B, S / 2**(i+1), S' / 2**(i+1), w_i].
  decoder level i (i = depth-1 .. 1):
                    ReLU -> transposed conv 4x4 stride 2 pad 1 (exactly x2) -> w_{i-1}
                    -> norm -> [dropout] -> concat([e_{i-1}, that]) (skip first, channels
                    w_{i-1} + w_{i-1})
  outermost:        ReLU -> transposed conv 4x4 stride 2 pad 1 -> out_channels -> tanh.
Dropout (rate `dropout`) sits on the decoder levels whose input and output widths are
both max_features, except the innermost: the reference's use_dropout blocks, 3 of them
for depth 8 (levels 4, 5, 6), none for depth < 5.

The reference's in-place LeakyReLU rewrites the tensor that its skip concatenation then
reads, so torch concatenates LeakyReLU(e_i) rather than e_i; the concatenation only
feeds the next ReLU and ReLU(LeakyReLU(e)) = ReLU(e), so concatenating e_i (as here)
computes the same function.

Biases: convolutions and transposed convolutions have a bias only when norm is
'instance' (the reference's use_bias = norm is InstanceNorm2d), except the outermost
transposed convolution, which always has one (nothing normalizes after it).
Initialisation (the reference's init_weights('normal', 0.02)): every kernel N(0, 0.02),
biases 0; batch norm scale N(1, 0.02), bias 0. Params float32 (`dtype` is the compute
dtype). Norms: 'batch' (batch statistics when `train`, apply with
mutable=['batch_stats'], running averages otherwise) or 'instance' (no variables).
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.nn import conv as conv_lib
from vision_jax.nn import norms
from vision_jax.nn import upsample as upsample_lib

GENERATOR_NORMS = ('batch', 'instance')

# The reference's init_weights('normal', gain=0.02): conv / transposed-conv weights.
KERNEL_INIT = nn.initializers.normal(stddev=0.02)


def norm_scale_init(key, shape, dtype=jnp.float32):
  """The reference's init of a norm's affine scale: N(1, 0.02) (its bias starts at 0)."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def check_divisible(module_name: str, shape, factor: int, what: str) -> None:
  """Raises ValueError unless both spatial sides of an NHWC `shape` divide by `factor`."""
  h, w = shape[1], shape[2]
  if h % factor or w % factor or h < factor or w < factor:
    raise ValueError(f'{module_name}: the input size {h}x{w} must be a positive multiple of '
                     f'{factor} = 2**{what} on both sides')


class UNetGenerator(nn.Module):
  """pix2pix's U-Net, x [B, S, S', C_in] -> [B, S, S', out_channels] float32 in (-1, 1).

  See the module docstring for the layers.

  Attributes:
    out_channels: channels of the output image.
    features: width of the outermost level (the reference's ngf).
    depth: number of stride-2 downsamplings (the reference's num_downs; 8 for 256 px,
      7 for 128 px); the input sides must be divisible by 2**depth. At least 2.
    max_features: the width cap (ngf * 8 in the reference).
    norm: 'batch' | 'instance'.
    dropout: the dropout rate of the reference's use_dropout decoder levels (0 disables).
    dtype: compute dtype (None: float32 / the inputs'); params stay float32.
  """
  out_channels: int
  features: int = 64
  depth: int = 8
  max_features: int = 512
  norm: str = 'batch'
  dropout: float = 0.5
  dtype: Any = None

  def widths(self) -> tuple[int, ...]:
    """The encoder widths w_0 .. w_{depth-1}."""
    return tuple(min(self.features * 2 ** i, self.max_features) for i in range(self.depth))

  def dropout_levels(self) -> tuple[int, ...]:
    """The decoder levels that apply dropout (3 levels, (4, 5, 6), for depth 8)."""
    w = self.widths()
    return tuple(i for i in range(1, self.depth - 1)
                 if w[i - 1] == w[i] == self.max_features)

  @nn.compact
  def __call__(self, x, *, train: bool, dropout: bool | None = None):
    """x: [B, S, S', C_in] -> [B, S, S', out_channels] float32.

    Args:
      x: input images; S, S' divisible by 2**depth.
      train: batch norm uses (and updates) batch statistics.
      dropout: apply dropout (needs the 'dropout' rng); None: `train`. pix2pix keeps it
        on at test time as its noise source.
    Raises:
      ValueError: a side not divisible by 2**depth, depth < 2, or an unknown norm.
    """
    if self.depth < 2:
      raise ValueError(f'UNetGenerator: depth must be at least 2, not {self.depth}')
    if self.norm not in GENERATOR_NORMS:
      raise ValueError(f'UNetGenerator: norm must be one of {GENERATOR_NORMS}, '
                       f'not {self.norm!r}')
    check_divisible('UNetGenerator', x.shape, 2 ** self.depth, f'depth (depth={self.depth})')
    dropout = train if dropout is None else dropout
    norm = norms.make_norm(self.norm, train=train, dtype=self.dtype)
    use_bias = self.norm == 'instance'
    up_dtype = self.dtype or jnp.float32
    widths = self.widths()
    with_dropout = self.dropout_levels()

    h = x
    skips = []
    for i, width in enumerate(widths):
      if i > 0:
        h = nn.leaky_relu(h, 0.2)
      h = conv_lib.Conv(width, 4, strides=2, use_bias=use_bias, dtype=self.dtype,
                        kernel_init=KERNEL_INIT, name=f'down{i}')(h)
      if 0 < i < self.depth - 1:
        h = norm(name=f'down{i}_norm', scale_init=norm_scale_init)(h)
      skips.append(h)

    for i in range(self.depth - 1, 0, -1):
      h = nn.relu(h)
      h = upsample_lib.ConvTranspose4x4(widths[i - 1], use_bias=use_bias, dtype=up_dtype,
                                        kernel_init=KERNEL_INIT, name=f'up{i}')(h)
      h = norm(name=f'up{i}_norm', scale_init=norm_scale_init)(h)
      if i in with_dropout and self.dropout > 0:
        h = nn.Dropout(self.dropout, deterministic=not dropout, name=f'up{i}_dropout')(h)
      h = jnp.concatenate([skips[i - 1].astype(h.dtype), h], axis=-1)

    h = nn.relu(h)
    h = upsample_lib.ConvTranspose4x4(self.out_channels, use_bias=True, dtype=up_dtype,
                                      kernel_init=KERNEL_INIT, name='up0')(h)
    return jnp.tanh(h).astype(jnp.float32)
