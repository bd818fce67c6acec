"""Hourglass networks (Newell et al. 2016, "Stacked Hourglass Networks"), flax.linen, NHWC.

  hg = Hourglass(depth=4)                                 # one hourglass, shape-preserving
  y = hg.apply(variables, x, train=False)                 # x, y: [B, H, W, C]

  net = StackedHourglass(num_points=16, num_stacks=8)     # the paper's pose network
  heatmaps = net.apply(variables, images)                 # list of 8 x [B, H/4, W/4, 16]

Structure as princeton-vl/pytorch_stacked_hourglass (models/layers.py, models/posenet.py):

* `Residual`: the pre-activation bottleneck of the paper,
  norm-ReLU-conv1x1(C/2)-norm-ReLU-conv3x3(C/2)-norm-ReLU-conv1x1(C) plus the input, the
  input going through a 1x1 conv (`skip_layer`) when its channel count differs (or the
  block strides). Convs have biases, as in the reference.
* `Hourglass` of depth n on a map of width widths[0] (level 0 = the input resolution):
    up1  = residuals(x)                                  upper branch, full resolution
    low1 = residuals(max_pool_2x2(x))                    widths[0] -> widths[1]
    low2 = Hourglass(n - 1, widths[1:])(low1)            or residuals at depth 1
    low3 = residuals(low2)                               widths[1] -> widths[0]
    out  = up1 + nearest_upsample_x2(low3)               ADDED, not concatenated
  so the bottom is at H / 2**depth and the output has the input's shape. Each branch
  goes through convolutions (the upper one is not an identity skip).
* `StackedHourglass`: a stem to stride 4 (7x7/2 conv + norm + ReLU, residual to
  stem_widths[1], 2x2 max-pool, residual, residual to `features`), then `num_stacks`
  hourglasses with intermediate supervision: each stack runs
    y     = Hourglass(x)
    feat  = ReLU(norm(conv1x1(Residual(y))))             `features` channels
    preds = conv1x1(feat)                                 K heatmaps (no activation)
    x     = x + merge_preds(preds) + merge_features(feat) (1x1 convs; not after the last)
  and every stack's `preds` is returned (the loss supervises each of them).

Reuse (CornerNet): `Hourglass` also builds CornerNet's `kp_module` with
`widths=(256, 256, 384, 384, 384, 512)`, `num_residuals=(2, 2, 2, 2, 2, 4)`, `depth=5`,
`block='basic'` (3x3-3x3 post-activation residual, projection skip conv + norm) and
`downsample='stride'` (the first residual of low1 has stride 2 instead of a max-pool).
CornerNet's stem, inter-stack glue and heads are not here.

Channel plan: `widths[i]` is the width at level i (resolution / 2**i), len(widths) =
depth + 1, widths[0] = the input channels; None = the input width at every level.
pytorch_stacked_hourglass's `increase` is `widths=(f, f + increase, f + increase, ...)`.
`num_residuals` (int or one per level, len depth + 1) is the number of residual blocks in
up1, low1 and low3 at level i; the bottom (low2 of the deepest level) has
num_residuals[depth]. In low1 the FIRST block changes width (and strides), in low3 the
LAST block does (CornerNet's make_layer / make_layer_revr); the paper has 1 everywhere.

Parameter tree (mirrors the reference names; a stack of residuals is a module whose
children are '0', '1', ..., so torch's `up1.bn1` is `up1/0/bn1` here):
  Residual:   bn1, conv1, bn2, conv2, bn3, conv3 [, skip_layer]
  BasicResidual: conv1, bn1, conv2, bn2 [, skip/{0: conv, 1: norm}]
  Hourglass:  up1, low1, low2 (Hourglass, or a residual stack at depth 1), low3
  StackedHourglass: stem_conv, stem_bn, stem_res{1,2,3}, hg{i}, features{i}_res,
    features{i}_conv, features{i}_bn, outs{i}, merge_features{i}, merge_preds{i}
Differences from the reference: torch's `Residual` always creates its `skip_layer`,
used or not, so its parameter count exceeds ours by C * C + C for every residual whose
width does not change; parameter initialisation is torch's default for the conv
kernels (kaiming-uniform, a = sqrt(5)) with zero biases (torch's biases are uniform).
Input H and W must be multiples of 2**depth (x4 for `StackedHourglass`).
"""
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.nn import conv as conv_lib
from vision_jax.nn import fpn
from vision_jax.nn import max_pool
from vision_jax.nn import norms

BLOCKS = ('preact_bottleneck', 'basic')
DOWNSAMPLES = ('maxpool', 'stride')
STRIDES = (4, 2)  # StackedHourglass: input pixels per heatmap cell

# torch.nn.Conv2d's default kernel init: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
torch_conv_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def torch_conv(features, kernel, stride=1, use_bias=True, dtype=None, name=None):
  """torch's Conv2d(in, features, kernel, stride, padding=kernel // 2, bias=use_bias)."""
  return conv_lib.Conv(features, kernel, strides=stride, use_bias=use_bias, dtype=dtype,
                       kernel_init=torch_conv_init, name=name)


class Residual(nn.Module):
  """The paper's pre-activation bottleneck residual module.

  y = conv3(relu(bn3(conv2(relu(bn2(conv1(relu(bn1(x))))))))) + skip(x), where conv1 is
  1x1 to features // 2, conv2 3x3 (stride `stride`), conv3 1x1 to `features`, and
  skip = x, or the 1x1 conv `skip_layer` (stride `stride`) when the channels change or
  the block strides. No activation after the sum (pre-activation).

  Attributes:
    features: output channels C (even; the bottleneck has C // 2).
    stride: stride of the 3x3 conv and of the skip (1 in the paper).
    norm: a `norms.make_norm` factory (None: batch norm in inference mode).
    dtype: compute dtype; params float32.
  """
  features: int
  stride: int = 1
  norm: Callable[..., nn.Module] | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    """x: [B, H, W, Cin] -> [B, H / stride, W / stride, features]."""
    norm = self.norm or norms.make_norm('batch', dtype=self.dtype)
    half = self.features // 2
    y = nn.relu(norm(name='bn1')(x))
    y = torch_conv(half, 1, dtype=self.dtype, name='conv1')(y)
    y = nn.relu(norm(name='bn2')(y))
    y = torch_conv(half, 3, self.stride, dtype=self.dtype, name='conv2')(y)
    y = nn.relu(norm(name='bn3')(y))
    y = torch_conv(self.features, 1, dtype=self.dtype, name='conv3')(y)
    if x.shape[-1] != self.features or self.stride != 1:
      x = torch_conv(self.features, 1, self.stride, dtype=self.dtype, name='skip_layer')(x)
    return y + x.astype(y.dtype)


class BasicResidual(nn.Module):
  """CornerNet's `residual`: relu(bn2(conv2(relu(bn1(conv1(x))))) + skip(x)).

  conv1 is 3x3 with stride `stride`, conv2 3x3, both without bias; skip = x, or
  `skip` = 1x1 conv (stride, no bias) '0' + norm '1' when the channels change or the
  block strides.

  Attributes: as `Residual`.
  """
  features: int
  stride: int = 1
  norm: Callable[..., nn.Module] | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    """x: [B, H, W, Cin] -> [B, H / stride, W / stride, features]."""
    norm = self.norm or norms.make_norm('batch', dtype=self.dtype)
    y = torch_conv(self.features, 3, self.stride, use_bias=False, dtype=self.dtype,
              name='conv1')(x)
    y = nn.relu(norm(name='bn1')(y))
    y = torch_conv(self.features, 3, use_bias=False, dtype=self.dtype, name='conv2')(y)
    y = norm(name='bn2')(y)
    if x.shape[-1] != self.features or self.stride != 1:
      x = _Projection(self.features, self.stride, norm, self.dtype, name='skip')(x)
    return nn.relu(y + x.astype(y.dtype))


class _Projection(nn.Module):
  """1x1 conv (stride, no bias) '0' + norm '1' (torch's Sequential)."""
  features: int
  stride: int
  norm: Callable[..., nn.Module]
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    x = torch_conv(self.features, 1, self.stride, use_bias=False, dtype=self.dtype, name='0')(x)
    return self.norm(name='1')(x)


_BLOCK_CLASSES = {'preact_bottleneck': Residual, 'basic': BasicResidual}


class ResidualStack(nn.Module):
  """`num_blocks` residual blocks named '0', '1', ...; one of them changes the width.

  Attributes:
    features: output channels.
    num_blocks: >= 1.
    block: one of BLOCKS.
    stride: stride of the first block.
    change_first: the first block maps to `features` and the rest keep it (low1,
      CornerNet's make_layer); else all but the last keep the input width and the last
      maps to `features` (low3, make_layer_revr).
    norm: a `norms.make_norm` factory.
    dtype: compute dtype.
  """
  features: int
  num_blocks: int = 1
  block: str = 'preact_bottleneck'
  stride: int = 1
  change_first: bool = True
  norm: Callable[..., nn.Module] | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    """x: [B, H, W, Cin] -> [B, H / stride, W / stride, features]."""
    cls = _BLOCK_CLASSES[self.block]
    cin = x.shape[-1]
    for i in range(self.num_blocks):
      if self.change_first:
        width = self.features
      else:
        width = self.features if i == self.num_blocks - 1 else cin
      x = cls(width, stride=self.stride if i == 0 else 1, norm=self.norm,
              dtype=self.dtype, name=str(i))(x)
    return x


def _per_level(value, depth: int, what: str) -> tuple[int, ...]:
  """An int or a sequence of depth + 1 ints -> a tuple of depth + 1 ints."""
  if isinstance(value, int):
    return (value,) * (depth + 1)
  value = tuple(int(v) for v in value)
  if len(value) != depth + 1:
    raise ValueError(f'{what} needs depth + 1 = {depth + 1} entries (one per level, the '
                     f'bottom last), got {len(value)}: {value}')
  return value


class Hourglass(nn.Module):
  """One hourglass: a recursive encoder-decoder whose output has its input's shape.

  See the module docstring for the structure and parameter names.

  Attributes:
    depth: number of x2 downsamplings (4 in the paper, 5 in CornerNet); >= 1.
    widths: channels per level, len depth + 1, widths[0] = the input's channels;
      None = the input's channels at every level.
    num_residuals: residual blocks in up1 / low1 / low3 per level, int or len depth + 1
      (the last entry is the bottom's); 1 in the paper.
    block: 'preact_bottleneck' (the paper's `Residual`) or 'basic' (CornerNet's).
    downsample: 'maxpool' (2x2 max-pool before low1, the paper) or 'stride' (low1's
      first block has stride 2, CornerNet).
    norm: a `vision_jax.nn.norms` kind: 'batch' | 'group' | 'frozen_batch' | 'none'.
    dtype: compute dtype; params float32.
  """
  depth: int = 4
  widths: Sequence[int] | None = None
  num_residuals: int | Sequence[int] = 1
  block: str = 'preact_bottleneck'
  downsample: str = 'maxpool'
  norm: str = 'batch'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    """Runs the hourglass.

    Args:
      x: [B, H, W, widths[0]], H and W multiples of 2**depth.
      train: batch norm: use and update batch statistics (apply with
        mutable=['batch_stats']).

    Returns:
      [B, H, W, widths[0]] in `dtype`.
    """
    if self.depth < 1:
      raise ValueError(f'depth must be >= 1, not {self.depth}')
    if self.block not in BLOCKS:
      raise ValueError(f'block must be one of {BLOCKS}, not {self.block!r}')
    if self.downsample not in DOWNSAMPLES:
      raise ValueError(f'downsample must be one of {DOWNSAMPLES}, not {self.downsample!r}')
    widths = _per_level(x.shape[-1] if self.widths is None else self.widths, self.depth,
                        'widths')
    counts = _per_level(self.num_residuals, self.depth, 'num_residuals')
    if widths[0] != x.shape[-1]:
      raise ValueError(f'the input has {x.shape[-1]} channels but widths[0] = {widths[0]}')
    h, w = x.shape[1:3]
    if h % 2**self.depth or w % 2**self.depth:
      raise ValueError(f'an hourglass of depth {self.depth} needs H and W multiples of '
                       f'{2**self.depth}, got {h} x {w}')
    dtype = jnp.dtype(self.dtype)
    norm = norms.make_norm(self.norm, train=train, dtype=dtype)
    x = jnp.asarray(x, dtype)

    def stack(features, n, name, stride=1, change_first=True):
      return ResidualStack(features, n, self.block, stride, change_first, norm, dtype,
                           name=name)

    up1 = stack(widths[0], counts[0], 'up1')(x)
    if self.downsample == 'maxpool':
      low = max_pool.max_pool(x, 2, 2, 0)
      low1 = stack(widths[1], counts[0], 'low1')(low)
    else:
      low1 = stack(widths[1], counts[0], 'low1', stride=2)(x)
    if self.depth > 1:
      low2 = Hourglass(self.depth - 1, widths[1:], counts[1:], self.block,
                       self.downsample, self.norm, self.dtype, name='low2')(low1, train=train)
    else:
      low2 = stack(widths[1], counts[1], 'low2')(low1)
    low3 = stack(widths[0], counts[0], 'low3', change_first=False)(low2)
    return up1 + fpn.upsample2x(low3, 'nearest')


class StackedHourglass(nn.Module):
  """The stacked hourglass pose network (pytorch_stacked_hourglass's PoseNet).

  Attributes:
    num_points: K, heatmaps per stack (16 for MPII, 68 / 98 for face landmarks).
    num_stacks: hourglasses (8 in the paper; 2 is a common small setting).
    features: width of the hourglasses and the inter-stack maps (256 in the paper).
    depth: downsamplings per hourglass (4).
    widths: per-level widths of each hourglass (len depth + 1, widths[0] == features);
      None = `features` everywhere.
    num_residuals: residual blocks per hourglass level (see `Hourglass`).
    stem_widths: widths of the stem's 7x7 conv and of its first residual ((64, 128) in
      the reference).
    stride: input pixels per heatmap cell: 4 (the reference) or 2 (the stem's max-pool
      left out: 4x the maps' cells, and the hourglasses' cost, at the same depth).
    norm: a `vision_jax.nn.norms` kind for every norm ('batch' in the reference).
    dtype: compute dtype; params float32; outputs float32.
  """
  num_points: int
  num_stacks: int = 8
  features: int = 256
  depth: int = 4
  widths: Sequence[int] | None = None
  num_residuals: int | Sequence[int] = 1
  stem_widths: Sequence[int] = (64, 128)
  stride: int = 4
  norm: str = 'batch'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, *, train: bool = False) -> list[Any]:
    """Runs the network.

    Args:
      images: [B, H, W, C] (already normalised), H and W multiples of
        stride * 2**depth.
      train: batch norm: use and update batch statistics (apply with
        mutable=['batch_stats']).

    Returns:
      A list of `num_stacks` heatmap predictions [B, H/s, W/s, num_points] float32
      (s = stride), the first stack's first; heatmap cell (i, j) covers input pixels
      [sj, sj + s) x [si, si + s) (`vision_jax.ops.landmarks` decodes them).
    """
    if self.num_stacks < 1:
      raise ValueError(f'num_stacks must be >= 1, not {self.num_stacks}')
    if self.stride not in STRIDES:
      raise ValueError(f'stride must be one of {STRIDES}, not {self.stride}')
    h, w = images.shape[1:3]
    multiple = self.stride * 2**self.depth
    if h % multiple or w % multiple:
      raise ValueError(f'StackedHourglass(depth={self.depth}) needs H and W multiples of '
                       f'{multiple}, got {h} x {w}')
    dtype = jnp.dtype(self.dtype)
    norm = norms.make_norm(self.norm, train=train, dtype=dtype)
    c0, c1 = (int(c) for c in self.stem_widths)
    x = jnp.asarray(images, dtype)
    x = torch_conv(c0, 7, 2, dtype=dtype, name='stem_conv')(x)
    x = nn.relu(norm(name='stem_bn')(x))
    x = Residual(c1, norm=norm, dtype=dtype, name='stem_res1')(x)
    if self.stride == 4:
      x = max_pool.max_pool(x, 2, 2, 0)
    x = Residual(c1, norm=norm, dtype=dtype, name='stem_res2')(x)
    x = Residual(self.features, norm=norm, dtype=dtype, name='stem_res3')(x)
    predictions = []
    for i in range(self.num_stacks):
      y = Hourglass(self.depth, self.widths, self.num_residuals, 'preact_bottleneck',
                    'maxpool', self.norm, self.dtype, name=f'hg{i}')(x, train=train)
      y = Residual(self.features, norm=norm, dtype=dtype, name=f'features{i}_res')(y)
      y = torch_conv(self.features, 1, dtype=dtype, name=f'features{i}_conv')(y)
      feature = nn.relu(norm(name=f'features{i}_bn')(y))
      preds = torch_conv(self.num_points, 1, dtype=dtype, name=f'outs{i}')(feature)
      predictions.append(preds.astype(jnp.float32))
      if i < self.num_stacks - 1:
        x = (x + torch_conv(self.features, 1, dtype=dtype, name=f'merge_preds{i}')(preds)
             + torch_conv(self.features, 1, dtype=dtype, name=f'merge_features{i}')(feature))
    return predictions
