"""ResNet backbones (He et al. 2016) for flax.linen, NHWC, returning multi-stride features.

  model = resnet.get_resnet('resnet18', width=32, norm='batch')
  variables = model.init(key, images, train=False)
  feats = model.apply(variables, images, train=True, mutable=['batch_stats'])[0]
  # feats['C2'] stride 4, 'C3' stride 8, 'C4' stride 16, 'C5' stride 32.

Architecture as torchvision (v1.5: the stride of a bottleneck sits on its 3x3 conv):
stem conv 7x7/2 (pad 3) + norm + ReLU + max-pool 3x3/2 (pad 1), then four stages
`layer1..layer4` of basic (resnet18/34) or bottleneck (resnet50/101/152) blocks.
Paddings are explicit (torch's symmetric ones), so converted torch weights give the
same numbers. Input H and W should be multiples of 32 for the strides to be exact.

Parameter tree mirrors torchvision names, to ease weight conversion:
  conv1, bn1, layer{1..4}/{block index}/conv{1,2[,3]}, bn{1,2[,3]},
  layer{i}/0/downsample/{0: conv, 1: norm}.
Conv kernels are [kh, kw, in, out] (torch: [out, in, kh, kw]); norm 'scale' is torch's
'weight'.

`width` is the base width (torch: 64): stage i has width * 2**(i-1) channels
(x4 for bottleneck outputs). Use 16 or 32 for CPU-sized models.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.nn import conv as conv_lib
from vision_jax.nn import max_pool
from vision_jax.nn import norms

# name -> (block kind, blocks per stage).
ARCHITECTURES = {
    'resnet18': ('basic', (2, 2, 2, 2)),
    'resnet34': ('basic', (3, 4, 6, 3)),
    'resnet50': ('bottleneck', (3, 4, 6, 3)),
    'resnet101': ('bottleneck', (3, 4, 23, 3)),
    'resnet152': ('bottleneck', (3, 8, 36, 3)),
}
# Output feature name -> stride with respect to the input.
FEATURE_STRIDES = {'C2': 4, 'C3': 8, 'C4': 16, 'C5': 32}
_EXPANSION = {'basic': 1, 'bottleneck': 4}

# torchvision's init: kaiming normal, fan_out, ReLU gain.
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def feature_channels(name: str, width: int = 64) -> dict[str, int]:
  """Channels of each output feature map of `get_resnet(name, width=width)`."""
  block, _ = _architecture(name)
  e = _EXPANSION[block]
  return {f'C{i + 2}': width * 2**i * e for i in range(4)}


def _architecture(name: str):
  if name not in ARCHITECTURES:
    raise ValueError(f'unknown ResNet {name!r}; choose one of {sorted(ARCHITECTURES)}')
  return ARCHITECTURES[name]


def _conv(features, kernel, stride, dtype, name):
  """torch's Conv2d(in, features, kernel, stride, padding=kernel // 2, bias=False)."""
  return conv_lib.Conv(features, kernel, strides=stride, use_bias=False, dtype=dtype,
                       kernel_init=conv_kernel_init, name=name)


class Downsample(nn.Module):
  """The projection shortcut: 1x1 conv (stride) '0' + norm '1' (torch's Sequential)."""
  features: int
  stride: int
  norm: Any
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    x = _conv(self.features, 1, self.stride, self.dtype, '0')(x)
    return self.norm(name='1')(x)


class BasicBlock(nn.Module):
  """3x3 -> 3x3 residual block; output channels = `features`."""
  features: int
  stride: int = 1
  norm: Any = None
  dtype: Any = None
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x):
    last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = _conv(self.features, 3, self.stride, self.dtype, 'conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = _conv(self.features, 3, 1, self.dtype, 'conv2')(y)
    y = self.norm(name='bn2', scale_init=last_scale)(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = Downsample(self.features, self.stride, self.norm, self.dtype, name='downsample')(x)
    return nn.relu(y + x)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (stride) -> 1x1 residual block; output channels = 4 * `features`."""
  features: int
  stride: int = 1
  norm: Any = None
  dtype: Any = None
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x):
    out = self.features * 4
    last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = _conv(self.features, 1, 1, self.dtype, 'conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = _conv(self.features, 3, self.stride, self.dtype, 'conv2')(y)
    y = nn.relu(self.norm(name='bn2')(y))
    y = _conv(out, 1, 1, self.dtype, 'conv3')(y)
    y = self.norm(name='bn3', scale_init=last_scale)(y)
    if self.stride != 1 or x.shape[-1] != out:
      x = Downsample(out, self.stride, self.norm, self.dtype, name='downsample')(x)
    return nn.relu(y + x)


class ResLayer(nn.Module):
  """One stage: `num_blocks` blocks named '0', '1', ...; the first one strides."""
  block: str
  features: int
  num_blocks: int
  stride: int
  norm: Any
  dtype: Any = None
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x):
    cls = BasicBlock if self.block == 'basic' else Bottleneck
    for i in range(self.num_blocks):
      x = cls(self.features, stride=self.stride if i == 0 else 1, norm=self.norm,
              dtype=self.dtype, zero_init_residual=self.zero_init_residual,
              name=str(i))(x)
    return x


class ResNet(nn.Module):
  """A ResNet trunk returning {'C2', 'C3', 'C4', 'C5'} feature maps (strides 4..32).

  Attributes:
    block: 'basic' or 'bottleneck'.
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for resnet18.
    width: base width (64 in the paper); stage i has width * 2**(i-1) (x4 bottleneck).
    norm: 'batch' | 'frozen_batch' | 'group' | 'none' (see `vision_jax.nn.norms`).
    dtype: compute dtype (e.g. jnp.bfloat16 or 'bfloat16'); params stay float32.
    zero_init_residual: start each block's last norm scale at 0 (identity blocks).
  """
  block: str = 'basic'
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  width: int = 64
  norm: str = 'batch'
  dtype: Any = jnp.float32
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, images, *, train: bool = False, up_to: str | None = None
               ) -> dict[str, Any]:
    """Runs the trunk.

    Args:
      images: [B, H, W, C] (already normalized), H and W multiples of 32.
      train: for 'batch' norm: use batch statistics and update the running ones
        (then apply with mutable=['batch_stats']).
      up_to: stop after this stage ('C2'..'C5'; None: all), e.g. YolactEdge's
        non-keyframes run the trunk up to C3 only.

    Returns:
      {'C2': [B, H/4, W/4, c2], 'C3': [B, H/8, W/8, c3], 'C4': [.., H/16, ..],
       'C5': [.., H/32, ..]} in `dtype`; channels as `feature_channels`.
    """
    if self.block not in _EXPANSION:
      raise ValueError(f"block must be 'basic' or 'bottleneck', not {self.block!r}")
    dtype = jnp.dtype(self.dtype)
    norm = norms.make_norm(self.norm, train=train, dtype=dtype)
    x = jnp.asarray(images, dtype)
    x = _conv(self.width, 7, 2, dtype, 'conv1')(x)
    x = nn.relu(norm(name='bn1')(x))
    x = max_pool.max_pool(x, 3, 2, 1)
    features = {}
    names = [f'C{i + 2}' for i in range(len(self.stage_sizes))]
    if up_to is not None and up_to not in names:
      raise ValueError(f'up_to must be one of {names} or None, not {up_to!r}')
    last = len(names) if up_to is None else names.index(up_to) + 1
    for i, num_blocks in enumerate(self.stage_sizes[:last]):
      x = ResLayer(self.block, self.width * 2**i, num_blocks, stride=1 if i == 0 else 2,
                   norm=norm, dtype=dtype, zero_init_residual=self.zero_init_residual,
                   name=f'layer{i + 1}')(x)
      features[f'C{i + 2}'] = x
    return features


def get_resnet(name: str, *, width: int = 64, norm: str = 'batch', dtype: Any = jnp.float32,
               zero_init_residual: bool = False, module_name: str | None = None) -> ResNet:
  """ResNet by name: 'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152'.

  module_name: the submodule's name when built inside a compact module (e.g. 'backbone',
  the subtree `mask_rcnn_torchvision.init_backbone_from_torchvision` fills)."""
  block, stages = _architecture(name)
  return ResNet(block=block, stage_sizes=stages, width=width, norm=norm, dtype=dtype,
                zero_init_residual=zero_init_residual, name=module_name)
