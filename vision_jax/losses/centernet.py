"""CenterNet ("Objects as Points") targets and loss, from the padded detection batch.

Targets follow the official code (xingyizhou/CenterNet, ctdet): see the conventions of
`vision_jax.ops.heatmaps` (gaussian radius with min_overlap 0.7, per-class maximum of
gaussians, integer centers, sizes and offsets in output units). The loss is the
paper's: penalty-reduced focal loss on the heatmap + weighted L1 on size and offset at
the object centers (`losses.regression.masked_l1_loss`, whose `normalize` decides what
a size weight means: the paper's 0.1 was tuned with the official 'elements').
"""
import functools

import jax
import jax.numpy as jnp

from vision_jax.losses import focal
from vision_jax.losses import regression
from vision_jax.ops import heatmaps


def centernet_targets(boxes, classes, valid, *, output_size, stride, num_classes,
                      min_overlap: float = 0.7):
  """CenterNet training targets for a padded batch of boxes.

  Args:
    boxes: [B, M, 4] float32 (x1, y1, x2, y2) in input pixels.
    classes: [B, M] int32 0-based classes (anything on padding).
    valid: [B, M] bool, real objects.
    output_size: static (h, w) of the output grid (input size / stride).
    stride: static output stride (4 for CenterNet).
    num_classes: static number of heatmap channels.
    min_overlap: gaussian_radius's IoU.

  Returns:
    dict with
      heatmap  [B, h, w, num_classes] float32: max of per-object gaussians, 1 at centers.
      indices  [B, M] int32: flat center index cy * w + cx into an [h, w] map (0 where
               mask is False).
      centers  [B, M, 2] int32: (cx, cy) integer center cell.
      size     [B, M, 2] float32: (w, h) of the box in OUTPUT units (input px / stride).
      offset   [B, M, 2] float32: center / stride - centers, in [0, 1) (up to 1 when an
               edge center is clamped).
      radius   [B, M] int32: gaussian radius in cells.
      mask     [B, M] bool: valid and the box (clipped to the image) has w > 0, h > 0.
    Everything is zero where mask is False.
  """
  return _centernet_targets(boxes, classes, valid, min_overlap,
                            output_size=tuple(int(s) for s in output_size),
                            stride=stride, num_classes=int(num_classes))


@functools.partial(jax.jit, static_argnames=('output_size', 'stride', 'num_classes'))
def _centernet_targets(boxes, classes, valid, min_overlap, *, output_size, stride,
                       num_classes):
  out_h, out_w = output_size
  b = jnp.asarray(boxes, jnp.float32) / stride
  limits = jnp.array([out_w, out_h, out_w, out_h], jnp.float32)
  b = jnp.clip(b, 0.0, limits)
  bw = b[..., 2] - b[..., 0]
  bh = b[..., 3] - b[..., 1]
  mask = jnp.asarray(valid, bool) & (bw > 0) & (bh > 0)
  center = jnp.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2], axis=-1)
  max_cell = jnp.array([out_w - 1, out_h - 1], jnp.int32)
  centers = jnp.clip(jnp.floor(center).astype(jnp.int32), 0, max_cell)
  radius = heatmaps.gaussian_radius(jnp.ceil(bh), jnp.ceil(bw), min_overlap)
  radius = jnp.maximum(0, jnp.floor(radius)).astype(jnp.int32)
  heatmap = heatmaps.draw_gaussians(centers, radius, classes, mask, output_size=output_size,
                            num_classes=num_classes)
  m2 = mask[..., None]
  centers = jnp.where(m2, centers, 0)
  return dict(
      heatmap=heatmap,
      indices=jnp.where(mask, centers[..., 1] * out_w + centers[..., 0], 0).astype(jnp.int32),
      centers=centers,
      size=jnp.where(m2, jnp.stack([bw, bh], axis=-1), 0.0),
      offset=jnp.where(m2, center - centers, 0.0),
      radius=jnp.where(mask, radius, 0),
      mask=mask,
  )


def centernet_loss(outputs: dict, boxes, classes, valid, *, stride: int, num_classes: int,
                   heatmap_weight: float = 1.0, size_weight: float = 0.1,
                   offset_weight: float = 1.0, normalize: str = 'objects'
                   ) -> tuple[jax.Array, dict]:
  """The weighted CenterNet loss of model outputs against a padded batch of boxes.

  Args:
    outputs: CenterNet outputs ('heatmap' logits [B, h, w, C], 'size', 'offset'
      [B, h, w, 2] in output units).
    boxes, classes, valid: the detection batch's [B, M, 4] input-pixel boxes, [B, M]
      classes and [B, M] validity.
    stride: the outputs' stride.
    num_classes: C.
    heatmap_weight, size_weight, offset_weight: the terms' weights.
    normalize: the L1 terms' normalization ('objects' or 'elements', see
      `regression.masked_l1_loss`).
  Returns:
    (total, {'loss', 'heatmap_loss', 'size_loss', 'offset_loss'}).
  """
  h, w = outputs['heatmap'].shape[1:3]
  targets = centernet_targets(boxes, classes, valid, output_size=(h, w), stride=stride,
                              num_classes=num_classes)
  heat = focal.penalty_reduced_focal_loss(outputs['heatmap'], targets['heatmap'])
  size = regression.masked_l1_loss(outputs['size'], targets['indices'], targets['size'],
                                   targets['mask'], normalize=normalize)
  offset = regression.masked_l1_loss(outputs['offset'], targets['indices'],
                                     targets['offset'], targets['mask'], normalize=normalize)
  loss = heatmap_weight * heat + size_weight * size + offset_weight * offset
  return loss, {'loss': loss, 'heatmap_loss': heat, 'size_loss': size, 'offset_loss': offset}
