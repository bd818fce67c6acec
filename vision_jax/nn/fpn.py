"""Feature Pyramid Network (Lin et al. 2017) over ResNet feature maps, NHWC.

  fpn = FPN(channels=256)                     # Mask R-CNN's: C2..C5 -> P2..P6
  pyramid = fpn({'C2': c2, 'C3': c3, 'C4': c4, 'C5': c5})
  # [P2, P3, P4, P5, P6]: strides 4, 8, 16, 32, 64, all `channels` wide.

  fpn = FPN(256, in_levels=('C3', 'C4', 'C5'), extra_levels=2, extra_kind='conv',
            upsample='bilinear', relu_outputs=True)   # YOLACT's: C3..C5 -> P3..P7

By default as torchvision's `FeaturePyramidNetwork` + `LastLevelMaxPool` (and
detectron2's FPN): lateral 1x1 convs `lateral{i}` on the i-th input level, top-down
nearest x2 upsampling added to the next finer lateral, a 3x3 output conv `output{i}` on
each merged map, and one extra level = stride-2 subsampling of the coarsest output
(max-pool with kernel 1). Convs have biases and kaiming-uniform (a=1) weights; with
`norm`, a norm follows each conv (no bias then).

YOLACT's FPN differs in three switches: bilinear top-down upsampling
(`upsample='bilinear'`, half-pixel centres as torch's align_corners=False), a ReLU on
each output (`relu_outputs`), and extra levels made by 3x3 stride-2 convs `extra{j}`,
each on the previous level, without ReLU in between (`extra_kind='conv'`).
The input H and W must be multiples of the coarsest input stride (32 for C5) so every
top-down x2 is exact.
"""
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.nn import conv as conv_lib
from vision_jax.nn import norms
from vision_jax.ops import image as image_ops

LEVELS = ('C2', 'C3', 'C4', 'C5')
# torchvision / detectron2 FPN init: kaiming_uniform_(a=1).
fpn_kernel_init = nn.initializers.variance_scaling(1.0, 'fan_in', 'uniform')


UPSAMPLE_MODES = ('nearest', 'bilinear')
EXTRA_KINDS = ('maxpool', 'conv')


def upsample2x(x, mode: str = 'nearest'):
  """x2 upsampling [B, h, w, C] -> [B, 2h, 2w, C]: 'nearest', or 'bilinear' with
  half-pixel centres and clamped edges (torch's align_corners=False)."""
  if mode == 'nearest':
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return image_ops.upsample_linear(x, 2)


class FPN(nn.Module):
  """`in_levels` feature maps -> len(in_levels) + extra_levels pyramid maps, finest first.

  Attributes:
    channels: width of every pyramid level (256 in the paper).
    norm: 'none' (paper / torchvision) or a `vision_jax.nn.norms` kind ('group' for
      detectron2's GN configs).
    in_levels: the input maps, finest first, each half the size of the previous.
    extra_levels: coarser levels added after the last output.
    extra_kind: 'maxpool' (kernel 1, stride 2) or 'conv' (3x3 stride-2 convs).
    upsample: top-down upsampling, one of UPSAMPLE_MODES.
    relu_outputs: ReLU after each output conv (YOLACT), not on the extra levels.
    dtype: compute dtype; params float32.
  """
  channels: int = 256
  norm: str = 'none'
  in_levels: Sequence[str] = LEVELS
  extra_levels: int = 1
  extra_kind: str = 'maxpool'
  upsample: str = 'nearest'
  relu_outputs: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Mapping[str, jax.Array], *, train: bool = False,
               top_down: Mapping[str, jax.Array] | None = None,
               laterals: Mapping[str, jax.Array] | None = None,
               laterals_only: bool = False, with_intermediates: bool = False):
    """features: {name: [B, H / s, W / s, c]} for each of `in_levels` -> list of maps.

    With the defaults: {'C2'..'C5'} [B, H/4, W/4, c2] .. [B, H/32, W/32, c5] -> 5 maps.

    Args:
      features: the input maps by level name.
      train: for norms with batch statistics.
      top_down: merged top-down maps [B, h, w, channels] given for the COARSEST levels
        (a suffix of `in_levels`), used instead of computing them: their input maps are
        not needed (YolactEdge feeds keyframe maps warped to the current frame).
      laterals: lateral maps already computed (by a `laterals_only` call), used instead
        of the lateral convs for those levels.
      laterals_only: return only {name: lateral map} of the levels in `features`.
      with_intermediates: also return {'laterals': {name: map}, 'merged': {name: map}}.

    Returns:
      The list of output maps, finest first; with_intermediates: (list, dict);
      laterals_only: the dict of laterals.
    """
    if self.upsample not in UPSAMPLE_MODES:
      raise ValueError(f'upsample must be one of {UPSAMPLE_MODES}, not {self.upsample!r}')
    if self.extra_kind not in EXTRA_KINDS:
      raise ValueError(f'extra_kind must be one of {EXTRA_KINDS}, not {self.extra_kind!r}')
    levels = tuple(self.in_levels)
    given = dict(top_down or {})
    num_given = len(given)
    if set(given) != set(levels[len(levels) - num_given:]) or num_given == len(levels):
      raise ValueError(f'top_down must give the coarsest levels of {levels} (not all), '
                       f'got {sorted(given)}')
    computed = levels[:len(levels) - num_given]
    missing = [name for name in computed
               if name not in features and name not in (laterals or {})]
    if missing and not laterals_only:
      raise ValueError(f'FPN needs feature maps {computed}, missing {missing}')
    dtype = jnp.dtype(self.dtype)
    with_norm = self.norm != 'none'
    norm = norms.make_norm(self.norm, train=train, dtype=dtype)

    def conv(kernel, name):
      layer = conv_lib.Conv(self.channels, kernel, use_bias=not with_norm, dtype=dtype,
                            kernel_init=fpn_kernel_init, name=name)
      if not with_norm:
        return layer
      return lambda x: norm(name=f'{name}_norm')(layer(x))

    if laterals_only:
      return {name: conv(1, f'lateral{i}')(features[name])
              for i, name in enumerate(levels) if name in features}
    laterals = dict(laterals or {})
    for i, name in enumerate(computed):
      if name not in laterals:
        laterals[name] = conv(1, f'lateral{i}')(features[name])
    merged = dict(given)
    top = merged[levels[-1]] if given else laterals[levels[-1]]
    merged[levels[-1]] = top
    for i in range(len(levels) - 2, -1, -1):
      name = levels[i]
      if name in merged:
        top = merged[name]
        continue
      lateral = laterals[name]
      if lateral.shape[1] != 2 * top.shape[1] or lateral.shape[2] != 2 * top.shape[2]:
        raise ValueError(f'FPN needs each level twice the size of the next: {name} is '
                         f'{lateral.shape[1:3]}, {levels[i + 1]} {top.shape[1:3]}; '
                         'make the input H, W multiples of 32')
      top = lateral + upsample2x(top, self.upsample)
      merged[name] = top
    outputs = [conv(3, f'output{i}')(merged[name]) for i, name in enumerate(levels)]
    if self.relu_outputs:
      outputs = [nn.relu(x) for x in outputs]
    for j in range(self.extra_levels):
      if self.extra_kind == 'maxpool':
        outputs.append(outputs[-1][:, ::2, ::2, :])  # max_pool2d(kernel 1, stride 2).
      else:
        outputs.append(conv_lib.Conv(self.channels, 3, strides=2, dtype=dtype,
                                     kernel_init=fpn_kernel_init, name=f'extra{j}')(outputs[-1]))
    if with_intermediates:
      return outputs, {'laterals': laterals, 'merged': merged}
    return outputs
