"""Landmark localization models: heatmaps (Stacked Hourglass), integral regression over
the same heatmaps, and direct coordinate regression (ResNet + global pooling + FC).

  model = LandmarkModel(kind='heatmap', num_points=68)
  outputs = model.apply(variables, images_uint8, train=False)
  points = decode(outputs, kind='heatmap', image_size=96)     # [B, K, 2] input pixels

The three kinds (`KINDS`), measured against each other in the README:
  * 'heatmap' (Newell et al. 2016): `nn.hourglass.StackedHourglass` gives one
    [B, S/4, S/4, K] map per stack, trained toward Gaussian targets with MSE at every
    stack; decoded by argmax plus the quarter-pixel shift
    (`vision_jax.ops.landmarks.decode_heatmaps`) or DARK's Newton step on the smoothed
    log-map (`ops.landmarks.refine_dark`).
  * 'integral' (Sun et al. 2018, "Integral Human Pose Regression"): the same network,
    its maps read by soft-argmax (`ops.landmarks.soft_argmax`) and trained end to end
    on coordinates (L1 at every stack).
  * 'regression': a ResNet trunk (`nn.resnet`), global average pooling of C5 and one
    dense layer to 2K numbers, the points' (x, y) / S (normalised coordinates), L1.

Outputs (float32): {'heatmaps': [num_stacks, B, S/s, S/s, K]} (s = heatmap_stride, 4) for the hourglass kinds,
{'coords': [B, K, 2]} (normalised, (x, y) / S) for 'regression'. Images enter as uint8
(or floats in [0, 1]) and are normalised with ImageNet statistics inside.

Coordinates are pixel-edge (`vision_jax.ops.landmarks`): heatmap cell (i, j) covers
input pixels [sj, sj + s) x [si, si + s), so x_input = s x_heatmap.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.nn import hourglass
from vision_jax.nn import resnet
from vision_jax.ops import image as image_ops
from vision_jax.ops import landmarks as landmark_ops

KINDS = ('heatmap', 'integral', 'regression')
REFINEMENTS = ('quarter', 'dark')  # sub-pixel refinements of the heatmaps' argmax
HEATMAP_STRIDE = 4
HEATMAP_STRIDES = hourglass.STRIDES


class LandmarkModel(nn.Module):
  """One of `KINDS` (module doc).

  Attributes:
    kind: 'heatmap' | 'integral' | 'regression'.
    num_points: K.
    num_stacks, features, depth: the hourglass (`nn.hourglass.StackedHourglass`).
    stem_widths: the hourglass stem's widths.
    heatmap_stride: input pixels per heatmap cell, 4 (the reference) or 2.
    backbone, width: the regression trunk (`nn.resnet.get_resnet`; width = its base).
    norm: a `vision_jax.nn.norms` kind.
    dtype: compute dtype.
  """
  kind: str
  num_points: int
  num_stacks: int = 2
  features: int = 128
  depth: int = 4
  stem_widths: tuple[int, int] = (64, 128)
  heatmap_stride: int = HEATMAP_STRIDE
  backbone: str = 'resnet18'
  width: int = 64
  norm: str = 'batch'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, *, train: bool = False) -> dict:
    """images: [B, S, S, 3] uint8 or float in [0, 1] -> the module doc's outputs."""
    if self.kind not in KINDS:
      raise ValueError(f'kind must be one of {KINDS}, not {self.kind!r}')
    x = image_ops.normalize(images, dtype=jnp.dtype(self.dtype))
    if self.kind == 'regression':
      features = resnet.get_resnet(self.backbone, width=self.width, norm=self.norm,
                                   dtype=self.dtype)(x, train=train)
      pooled = jnp.mean(features['C5'].astype(jnp.float32), axis=(1, 2))
      coords = nn.Dense(2 * self.num_points, name='fc')(pooled)
      return {'coords': coords.reshape(-1, self.num_points, 2)}
    maps = hourglass.StackedHourglass(
        num_points=self.num_points, num_stacks=self.num_stacks, features=self.features,
        depth=self.depth, stem_widths=tuple(self.stem_widths),
        stride=self.heatmap_stride, norm=self.norm,
        dtype=self.dtype, name='hourglass')(x, train=train)
    return {'heatmaps': jnp.stack(maps)}


def stack_points(heatmaps, kind: str, *, refine: str = 'quarter', sigma: float = 1.0):
  """Points in heatmap pixels, [..., K, 2], of maps [..., h, w, K]: soft-argmax for
  'integral'; for 'heatmap' the argmax refined by `refine` (one of `REFINEMENTS`:
  'quarter', the paper's quarter-pixel shift, or 'dark', `ops.landmarks.refine_dark`
  with the targets' `sigma`)."""
  if kind == 'integral':
    return landmark_ops.soft_argmax(heatmaps)
  if refine not in REFINEMENTS:
    raise ValueError(f'heatmap refinement must be one of {REFINEMENTS}, not {refine!r}')
  if refine == 'dark':
    argmax, _ = landmark_ops.decode_heatmaps(heatmaps, quarter_offset=False)
    return landmark_ops.refine_dark(heatmaps, argmax, sigma)
  return landmark_ops.decode_heatmaps(heatmaps)[0]


def decode(outputs: dict, *, kind: str, image_size: int, refine: str = 'quarter',
           sigma: float = 1.0):
  """The model's outputs -> [B, K, 2] float32 (x, y) in input pixels, from the last
  stack for the hourglass kinds (`refine`, `sigma`: `stack_points`; the heatmap stride
  is image_size / the maps' width)."""
  if kind == 'regression':
    return outputs['coords'] * float(image_size)
  maps = outputs['heatmaps'][-1]
  stride = image_size / maps.shape[-2]
  return stack_points(maps, kind, refine=refine, sigma=sigma) * stride
