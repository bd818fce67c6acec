"""Box arithmetic: areas, pairwise IoU / GIoU, clipping, format conversion, the box coder.

Conventions: boxes are `(x1, y1, x2, y2)` float32 in input-image pixels unless a function
says otherwise, with x along the width. Areas are `(x2 - x1) * (y2 - y1)` (no +1), as in
torchvision and detectron2. Every function works on any number of leading batch
dimensions and under jit/vmap/grad.
"""
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

# detectron2 / torchvision clamp for dw, dh before exp(): predictions of boxes more than
# 1000/16 times larger than their anchor are not allowed.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def box_area(boxes: jax.Array) -> jax.Array:
  """Areas of [..., 4] (x1, y1, x2, y2) boxes -> [...]; negative sizes give negative areas."""
  return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _pairwise_inter_union(a, b):
  area_a, area_b = box_area(a), box_area(b)
  top_left = jnp.maximum(a[..., :, None, :2], b[..., None, :, :2])
  bottom_right = jnp.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
  wh = jnp.maximum(bottom_right - top_left, 0.0)
  inter = wh[..., 0] * wh[..., 1]
  union = area_a[..., :, None] + area_b[..., None, :] - inter
  return inter, union


def _safe_divide(num, den):
  """num / den, and 0 where den <= 0 (empty or padded boxes), with finite gradients."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Pairwise IoU, as torchvision.ops.box_iou.

  Args:
    a: [..., M, 4] (x1, y1, x2, y2).
    b: [..., K, 4] (x1, y1, x2, y2), same leading dimensions as `a`.

  Returns:
    [..., M, K] float. Pairs whose union is empty (e.g. two zero-size padding boxes) give 0
    where torchvision gives NaN.
  """
  inter, union = _pairwise_inter_union(a, b)
  return _safe_divide(inter, union)


def box_ioa(a: jax.Array, b: jax.Array) -> jax.Array:
  """Pairwise intersection over the area of the SECOND box (YOLACT's crowd overlap).

  Args:
    a: [..., M, 4] (x1, y1, x2, y2), e.g. crowd regions.
    b: [..., K, 4], e.g. anchors.

  Returns:
    [..., M, K] float: |a_m & b_k| / |b_k| (0 where b_k is empty).
  """
  inter, _ = _pairwise_inter_union(a, b)
  return _safe_divide(inter, box_area(b)[..., None, :])


def generalized_box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Pairwise generalized IoU (Rezatofighi et al.), as torchvision.ops.generalized_box_iou.

  `giou = iou - (area(C) - union) / area(C)`, C the smallest box enclosing both; in [-1, 1].

  Args:
    a: [..., M, 4], b: [..., K, 4] (x1, y1, x2, y2).

  Returns:
    [..., M, K] float (0 where the enclosing box is empty).
  """
  inter, union = _pairwise_inter_union(a, b)
  iou = _safe_divide(inter, union)
  top_left = jnp.minimum(a[..., :, None, :2], b[..., None, :, :2])
  bottom_right = jnp.maximum(a[..., :, None, 2:], b[..., None, :, 2:])
  wh = jnp.maximum(bottom_right - top_left, 0.0)
  enclosing = wh[..., 0] * wh[..., 1]
  return iou - _safe_divide(enclosing - union, enclosing)


def paired_box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """IoU of corresponding boxes: [..., 4] and [..., 4] -> [...]."""
  return jnp.squeeze(box_iou(a[..., None, :], b[..., None, :]), (-2, -1))


def paired_generalized_box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Generalized IoU of corresponding boxes: [..., 4] and [..., 4] -> [...] (for GIoU loss)."""
  return jnp.squeeze(generalized_box_iou(a[..., None, :], b[..., None, :]), (-2, -1))


def clip_boxes(boxes: jax.Array, image_size) -> jax.Array:
  """Clamps x to [0, width] and y to [0, height], as detectron2's `Boxes.clip`.

  Args:
    boxes: [..., K, 4] (x1, y1, x2, y2) in pixels.
    image_size: (height, width): two scalars, or two arrays broadcastable to boxes[..., 0]
      without the K axis, e.g. [N] each for [N, K, 4] boxes with one size per image.

  Returns:
    [..., K, 4] clipped boxes.
  """
  height, width = image_size
  height = jnp.asarray(height, boxes.dtype)
  width = jnp.asarray(width, boxes.dtype)
  if height.ndim:
    height, width = height[..., None], width[..., None]
  x = jnp.clip(boxes[..., 0::2], 0.0, width[..., None])
  y = jnp.clip(boxes[..., 1::2], 0.0, height[..., None])
  return jnp.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1)


def nonempty(boxes: jax.Array, min_size: float = 0.0) -> jax.Array:
  """[..., 4] -> [...] bool: width and height both > min_size (detectron2 `Boxes.nonempty`)."""
  return ((boxes[..., 2] - boxes[..., 0]) > min_size) & ((boxes[..., 3] - boxes[..., 1]) > min_size)


def xyxy_to_cxcywh(boxes: jax.Array) -> jax.Array:
  """(x1, y1, x2, y2) -> (center x, center y, width, height), [..., 4]."""
  x1, y1, x2, y2 = jnp.moveaxis(boxes, -1, 0)
  return jnp.stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1], axis=-1)


def cxcywh_to_xyxy(boxes: jax.Array) -> jax.Array:
  """(center x, center y, width, height) -> (x1, y1, x2, y2), [..., 4]."""
  cx, cy, w, h = jnp.moveaxis(boxes, -1, 0)
  return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def xyxy_to_xywh(boxes: jax.Array) -> jax.Array:
  """(x1, y1, x2, y2) -> (x1, y1, width, height) (the COCO json format), [..., 4]."""
  return jnp.concatenate([boxes[..., :2], boxes[..., 2:] - boxes[..., :2]], axis=-1)


def xywh_to_xyxy(boxes: jax.Array) -> jax.Array:
  """(x1, y1, width, height) -> (x1, y1, x2, y2), [..., 4]."""
  return jnp.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], axis=-1)


def yxyx_to_xyxy(boxes: jax.Array, image_size=None) -> jax.Array:
  """(y1, x1, y2, x2) -> (x1, y1, x2, y2), [..., 4]; scaled to pixels if `image_size`.

  Args:
    boxes: [..., 4] (ymin, xmin, ymax, xmax), e.g. TFDS's relative boxes.
    image_size: optional (height, width) to multiply relative coordinates by: scalars or
      arrays broadcastable to `boxes[..., 0]`.
  """
  out = jnp.stack([boxes[..., 1], boxes[..., 0], boxes[..., 3], boxes[..., 2]], axis=-1)
  if image_size is not None:
    height, width = (jnp.broadcast_to(jnp.asarray(v, out.dtype), out.shape[:-1])
                     for v in image_size)
    out = out * jnp.stack([width, height, width, height], axis=-1)
  return out


def box_convert(boxes: jax.Array, in_fmt: str, out_fmt: str) -> jax.Array:
  """Converts [..., 4] boxes between 'xyxy', 'xywh' and 'cxcywh' (torchvision's names)."""
  to_xyxy = {'xyxy': lambda b: b, 'xywh': xywh_to_xyxy, 'cxcywh': cxcywh_to_xyxy}
  from_xyxy = {'xyxy': lambda b: b, 'xywh': xyxy_to_xywh, 'cxcywh': xyxy_to_cxcywh}
  if in_fmt not in to_xyxy or out_fmt not in from_xyxy:
    raise ValueError(f'box formats must be one of {sorted(to_xyxy)}, got {in_fmt!r}, {out_fmt!r}')
  return from_xyxy[out_fmt](to_xyxy[in_fmt](boxes))


def encode_boxes(boxes: jax.Array, anchors: jax.Array,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> jax.Array:
  """Faster R-CNN regression targets of `boxes` relative to `anchors` (detectron2 get_deltas).

  `(dx, dy, dw, dh) = (wx (cx - cxa) / wa, wy (cy - cya) / ha, ww log(w / wa), wh log(h / ha))`.

  Args:
    boxes: [..., 4] target boxes (x1, y1, x2, y2).
    anchors: [..., 4] source boxes (anchors or proposals), broadcastable to `boxes`;
      must have positive width and height.
    weights: (wx, wy, ww, wh), e.g. (10, 10, 5, 5) for the Fast R-CNN box head.

  Returns:
    [..., 4] float deltas.
  """
  wx, wy, ww, wh = weights
  a_w = anchors[..., 2] - anchors[..., 0]
  a_h = anchors[..., 3] - anchors[..., 1]
  a_cx = anchors[..., 0] + 0.5 * a_w
  a_cy = anchors[..., 1] + 0.5 * a_h
  w = boxes[..., 2] - boxes[..., 0]
  h = boxes[..., 3] - boxes[..., 1]
  cx = boxes[..., 0] + 0.5 * w
  cy = boxes[..., 1] + 0.5 * h
  return jnp.stack([wx * (cx - a_cx) / a_w, wy * (cy - a_cy) / a_h,
                    ww * jnp.log(w / a_w), wh * jnp.log(h / a_h)], axis=-1)


def decode_boxes(deltas: jax.Array, anchors: jax.Array,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 scale_clamp: float = DEFAULT_SCALE_CLAMP) -> jax.Array:
  """Applies Faster R-CNN deltas to anchors (detectron2 `apply_deltas`); inverse of encode.

  dw and dh (after dividing by their weights) are clamped at `scale_clamp` from above.

  Args:
    deltas: [..., 4] (dx, dy, dw, dh).
    anchors: [..., 4] (x1, y1, x2, y2), broadcastable to `deltas`.
    weights: (wx, wy, ww, wh) used at encoding.
    scale_clamp: upper bound of dw, dh; log(1000 / 16) by default.

  Returns:
    [..., 4] boxes (x1, y1, x2, y2), float32 (deltas are promoted, as detectron2 does).
  """
  deltas = deltas.astype(jnp.promote_types(deltas.dtype, jnp.float32))
  anchors = anchors.astype(deltas.dtype)
  wx, wy, ww, wh = weights
  a_w = anchors[..., 2] - anchors[..., 0]
  a_h = anchors[..., 3] - anchors[..., 1]
  a_cx = anchors[..., 0] + 0.5 * a_w
  a_cy = anchors[..., 1] + 0.5 * a_h
  dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
  dw = jnp.minimum(deltas[..., 2] / ww, scale_clamp)
  dh = jnp.minimum(deltas[..., 3] / wh, scale_clamp)
  cx = dx * a_w + a_cx
  cy = dy * a_h + a_cy
  w = jnp.exp(dw) * a_w
  h = jnp.exp(dh) * a_h
  return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def encode_points(points: jax.Array, anchors: jax.Array, weight: float = 10.0) -> jax.Array:
  """Landmarks relative to anchors (RetinaFace): weight (p - anchor centre) / anchor size.

  RetinaFace's variance 0.1 is weight = 1 / 0.1 = 10: (x - cxa) / (0.1 wa) and
  (y - cya) / (0.1 ha), the box centre's coding of `encode_boxes(weights=(10, 10, ...))`.

  Args:
    points: [..., K, 2] (x, y) pixels.
    anchors: [..., 4] (x1, y1, x2, y2), broadcastable to points' leading axes.
    weight: the coding weight (1 / variance).

  Returns:
    [..., K, 2] float32 codes.
  """
  anchors = jnp.asarray(anchors, jnp.float32)[..., None, :]
  size = anchors[..., 2:] - anchors[..., :2]
  centre = anchors[..., :2] + 0.5 * size
  return weight * (jnp.asarray(points, jnp.float32) - centre) / size


def decode_points(codes: jax.Array, anchors: jax.Array, weight: float = 10.0) -> jax.Array:
  """Inverse of `encode_points`: [..., K, 2] codes -> (x, y) pixels (float32)."""
  anchors = jnp.asarray(anchors, jnp.float32)[..., None, :]
  size = anchors[..., 2:] - anchors[..., :2]
  centre = anchors[..., :2] + 0.5 * size
  return centre + jnp.asarray(codes, jnp.float32) * size / weight


class BoxCoder(NamedTuple):
  """The Faster R-CNN box coder (detectron2 `Box2BoxTransform`) with its settings."""
  weights: tuple = (1.0, 1.0, 1.0, 1.0)
  scale_clamp: float = DEFAULT_SCALE_CLAMP

  def encode(self, boxes: jax.Array, anchors: jax.Array) -> jax.Array:
    """[..., 4] boxes relative to [..., 4] anchors -> [..., 4] deltas."""
    return encode_boxes(boxes, anchors, self.weights)

  def decode(self, deltas: jax.Array, anchors: jax.Array) -> jax.Array:
    """[..., 4] deltas applied to [..., 4] anchors -> [..., 4] boxes."""
    return decode_boxes(deltas, anchors, self.weights, self.scale_clamp)
