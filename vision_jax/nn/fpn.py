"""Feature Pyramid Network (Lin et al. 2017) over ResNet C2..C5, NHWC.

  fpn = FPN(channels=256)
  pyramid = fpn({'C2': c2, 'C3': c3, 'C4': c4, 'C5': c5})
  # [P2, P3, P4, P5, P6]: strides 4, 8, 16, 32, 64, all `channels` wide.

As torchvision's `FeaturePyramidNetwork` + `LastLevelMaxPool` (and detectron2's FPN):
lateral 1x1 convs `lateral{i}` on C{i+2}, top-down nearest x2 upsampling added to the
next finer lateral, a 3x3 output conv `output{i}` on each merged map, and P6 =
stride-2 subsampling of P5 (max-pool with kernel 1). Convs have biases and
kaiming-uniform (a=1) weights; with `norm`, a norm follows each conv (no bias then).
Input H and W must be multiples of 32 so every top-down x2 is exact.
"""
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.nn import conv as conv_lib
from vision_jax.nn import norms

LEVELS = ('C2', 'C3', 'C4', 'C5')
# torchvision / detectron2 FPN init: kaiming_uniform_(a=1).
fpn_kernel_init = nn.initializers.variance_scaling(1.0, 'fan_in', 'uniform')


def _upsample2x(x):
  """Nearest x2: [B, h, w, C] -> [B, 2h, 2w, C]."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class FPN(nn.Module):
  """C2..C5 -> [P2, P3, P4, P5, P6].

  Attributes:
    channels: width of every pyramid level (256 in the paper).
    norm: 'none' (paper / torchvision) or a `vision_jax.nn.norms` kind ('group' for
      detectron2's GN configs).
    dtype: compute dtype; params float32.
  """
  channels: int = 256
  norm: str = 'none'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Mapping[str, jax.Array], *, train: bool = False
               ) -> list[jax.Array]:
    """features: {'C2'..'C5'} [B, H/4, W/4, c2] .. [B, H/32, W/32, c5] -> 5 maps."""
    dtype = jnp.dtype(self.dtype)
    with_norm = self.norm != 'none'
    norm = norms.make_norm(self.norm, train=train, dtype=dtype)

    def conv(kernel, name):
      layer = conv_lib.Conv(self.channels, kernel, use_bias=not with_norm, dtype=dtype,
                            kernel_init=fpn_kernel_init, name=name)
      if not with_norm:
        return layer
      return lambda x: norm(name=f'{name}_norm')(layer(x))

    laterals = [conv(1, f'lateral{i}')(features[name]) for i, name in enumerate(LEVELS)]
    merged = [None] * len(LEVELS)
    top = laterals[-1]
    merged[-1] = top
    for i in range(len(LEVELS) - 2, -1, -1):
      lateral = laterals[i]
      if lateral.shape[1] != 2 * top.shape[1] or lateral.shape[2] != 2 * top.shape[2]:
        raise ValueError(f'FPN needs each level twice the size of the next: {LEVELS[i]} is '
                         f'{lateral.shape[1:3]}, {LEVELS[i + 1]} {top.shape[1:3]}; '
                         'make the input H, W multiples of 32')
      top = lateral + _upsample2x(top)
      merged[i] = top
    outputs = [conv(3, f'output{i}')(m) for i, m in enumerate(merged)]
    outputs.append(outputs[-1][:, ::2, ::2, :])  # P6: max_pool2d(kernel 1, stride 2).
    return outputs
