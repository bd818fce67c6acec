"""Non-maximum suppression with static output shapes.

* `nms` / `batched_nms`: greedy NMS; the kept lists equal torchvision's `nms` /
  `batched_nms` (boxes in decreasing score order; equal scores are taken in index order,
  where torchvision's order is unspecified).
* `fast_nms`: YOLACT's matrix Fast NMS, per class.

All return fixed-size index arrays plus a validity mask, work under jit, and take a
leading batch axis through `jax.vmap`. Boxes are (x1, y1, x2, y2); IoU as `box_iou`.
"""
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from vision_jax.ops import boxes as box_ops


class NmsResult(NamedTuple):
  indices: jax.Array  # [max_output_size] int32 into the input boxes; 0 on padding
  valid: jax.Array  # [max_output_size] bool


def _iou_row(box, boxes, areas):
  """IoU of one box [4] with boxes [M, 4], with torchvision's nms kernel arithmetic."""
  xx1 = jnp.maximum(box[0], boxes[:, 0])
  yy1 = jnp.maximum(box[1], boxes[:, 1])
  xx2 = jnp.minimum(box[2], boxes[:, 2])
  yy2 = jnp.minimum(box[3], boxes[:, 3])
  inter = jnp.maximum(xx2 - xx1, 0.0) * jnp.maximum(yy2 - yy1, 0.0)
  area = (box[2] - box[0]) * (box[3] - box[1])
  return inter / (area + areas - inter)


def _greedy_nms(boxes, scores, iou_threshold, max_output_size, valid, class_ids):
  boxes, scores = jnp.asarray(boxes), jnp.asarray(scores)
  valid = None if valid is None else jnp.asarray(valid, bool)
  class_ids = None if class_ids is None else jnp.asarray(class_ids)
  num = boxes.shape[0]
  if num == 0:
    return NmsResult(jnp.zeros((max_output_size,), jnp.int32),
                     jnp.zeros((max_output_size,), bool))
  boxes = boxes.astype(jnp.promote_types(boxes.dtype, jnp.float32))
  if valid is None:
    valid = jnp.ones((num,), bool)
  # Decreasing score, ties by index (stable sort); invalid entries last.
  order = jnp.lexsort((jnp.arange(num), -scores.astype(jnp.float32), ~valid))
  boxes, valid = boxes[order], valid[order]
  areas = box_ops.box_area(boxes)
  classes = None if class_ids is None else class_ids[order]

  def cond(state):
    i, kept, _, _ = state
    return (i < num) & (kept < max_output_size)

  def body(state):
    i, kept, keep, suppressed = state
    take = valid[i] & ~suppressed[i]
    overlap = _iou_row(boxes[i], boxes, areas) > iou_threshold
    if classes is not None:
      overlap &= classes == classes[i]
    suppressed = jnp.where(take, suppressed | overlap, suppressed)
    keep = keep.at[i].set(take)
    return i + 1, kept + take.astype(jnp.int32), keep, suppressed

  init = (jnp.int32(0), jnp.int32(0), jnp.zeros((num,), bool), jnp.zeros((num,), bool))
  _, kept, keep, _ = jax.lax.while_loop(cond, body, init)
  (positions,) = jnp.nonzero(keep, size=max_output_size, fill_value=0)
  out_valid = jnp.arange(max_output_size) < kept
  indices = jnp.where(out_valid, order[positions], 0).astype(jnp.int32)
  return NmsResult(indices, out_valid)


def nms(boxes: jax.Array, scores: jax.Array, iou_threshold: float, max_output_size: int, *,
        valid: Optional[jax.Array] = None) -> NmsResult:
  """Greedy NMS, as torchvision.ops.nms, with a static number of outputs.

  Visits boxes by decreasing score and keeps a box unless a kept box overlaps it with
  IoU > iou_threshold; stops after `max_output_size` kept boxes. A sequential loop of
  O(M) vector steps (O(M^2) work): pre-select the top few thousand boxes by score first.

  Args:
    boxes: [M, 4] (x1, y1, x2, y2).
    scores: [M] float.
    iou_threshold: suppress IoU strictly above this.
    max_output_size: static number of outputs.
    valid: optional [M] bool; invalid (padding) boxes are neither kept nor suppress others.

  Returns:
    `NmsResult(indices [max_output_size] int32, valid [max_output_size] bool)`: the kept
    boxes' indices in decreasing score order, padded with 0 / False.
  """
  return _greedy_nms(boxes, scores, iou_threshold, max_output_size, valid, None)


def batched_nms(boxes: jax.Array, scores: jax.Array, class_ids: jax.Array,
                iou_threshold: float, max_output_size: int, *,
                valid: Optional[jax.Array] = None) -> NmsResult:
  """Class-aware NMS, as torchvision.ops.batched_nms: boxes only suppress their own class.

  Args:
    boxes: [M, 4] (x1, y1, x2, y2).
    scores: [M] float.
    class_ids: [M] int class (or any category, e.g. image or level) of each box.
    iou_threshold: suppress IoU strictly above this, within a class.
    max_output_size: static number of outputs.
    valid: optional [M] bool mask of real boxes.

  Returns:
    `NmsResult` as `nms`: kept indices over all classes in decreasing score order.
  """
  return _greedy_nms(boxes, scores, iou_threshold, max_output_size, valid, class_ids)


class FastNmsResult(NamedTuple):
  indices: jax.Array  # [max_output_size] int32 box index into M; 0 on padding
  classes: jax.Array  # [max_output_size] int32 class of each detection
  scores: jax.Array  # [max_output_size] float score (-inf on padding)
  valid: jax.Array  # [max_output_size] bool


def fast_nms(boxes: jax.Array, scores: jax.Array, iou_threshold: float = 0.5,
             top_k: int = 200, max_output_size: int = 100,
             score_threshold: float = 0.05) -> FastNmsResult:
  """YOLACT's Fast NMS (Bolya et al. 2019): matrix-form NMS, per class, in parallel.

  For each class the `top_k` highest-scoring boxes are kept unless a higher-scoring box of
  the same class overlaps them with IoU > iou_threshold, whether or not that box is itself
  kept (this is what makes it one matrix operation: `max(triu(IoU, 1), axis=0) <= t`).
  Detections from all classes are then ranked by score and the first `max_output_size`
  returned. Entries with score <= score_threshold are dropped (YOLACT's `conf_thresh`
  applied per class score, i.e. its `second_threshold=True`).

  Args:
    boxes: [M, 4] (x1, y1, x2, y2), shared by all classes (class-agnostic regression).
    scores: [M, K] float class scores, K classes without background.
    iou_threshold: suppression threshold.
    top_k: static candidates per class.
    max_output_size: static number of detections.
    score_threshold: minimum score of a detection.

  Returns:
    `FastNmsResult` of [max_output_size] arrays, in decreasing score order.
  """
  boxes, scores = jnp.asarray(boxes), jnp.asarray(scores)
  num = scores.shape[0]
  k = min(top_k, num)
  class_scores, index = jax.lax.top_k(scores.T, k)  # [K, k] decreasing
  candidates = boxes[index]  # [K, k, 4]
  iou = box_ops.box_iou(candidates, candidates)  # [K, k, k]
  iou = jnp.triu(iou, k=1)
  keep = jnp.max(iou, axis=1) <= iou_threshold
  keep &= class_scores > score_threshold
  flat_scores = jnp.where(keep, class_scores, -jnp.inf).reshape(-1)
  size = min(max_output_size, flat_scores.shape[0])
  top_scores, flat = jax.lax.top_k(flat_scores, size)
  out_valid = top_scores > -jnp.inf
  classes = (flat // k).astype(jnp.int32)
  indices = index.reshape(-1)[flat].astype(jnp.int32)
  pad = max_output_size - size
  return FastNmsResult(
      indices=jnp.pad(jnp.where(out_valid, indices, 0), (0, pad)),
      classes=jnp.pad(jnp.where(out_valid, classes, 0), (0, pad)),
      scores=jnp.pad(top_scores, (0, pad), constant_values=-jnp.inf),
      valid=jnp.pad(out_valid, (0, pad)))
