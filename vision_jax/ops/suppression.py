"""Non-maximum suppression with static output shapes.

* `nms` / `batched_nms`: greedy NMS; the kept lists equal torchvision's `nms` /
  `batched_nms` (boxes in decreasing score order; equal scores are taken in index order,
  where torchvision's order is unspecified).
* `fast_nms`: YOLACT's matrix Fast NMS, per class.
* `soft_nms`: Soft-NMS (Bodla et al. 2017), linear or gaussian score decay.
* `vote`: after NMS, each kept box's values (its box, its landmarks) replaced by the
  score-weighted mean over the candidates overlapping it (box voting).

All return fixed-size index arrays plus a validity mask, work under jit, and take a
leading batch axis through `jax.vmap`. Boxes are (x1, y1, x2, y2); IoU as `box_iou`.

`nms` / `batched_nms` have two kernels with exactly the same results (same kept indices
in the same order, same `valid`), picked by `vision_jax.ops.backend` at trace time:

* 'cpu': a `lax.while_loop` over the score-sorted boxes, one box per step (each step
  one [M] IoU row). Cheap steps suit XLA:CPU.
* 'plain' (GPU / TPU): tiled fixed-point NMS (the formulation of TF Model Garden's
  `sorted_non_max_suppression_padded`). Sorted boxes are cut into tiles of
  `_NMS_TILE`; a tile is first suppressed by the boxes kept in earlier tiles (one
  [kept, T] IoU block), then resolved inside by iterating `keep = alive & not suppressed
  by any kept higher-scored box of the tile` until it stops changing. The iteration is
  triangular (a box depends only on earlier ones), so its fixed point is the greedy
  answer; it takes about as many steps as the longest suppression chain in the tile,
  not T. One loop step per tile instead of per box.
"""
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from vision_jax.ops import backend
from vision_jax.ops import boxes as box_ops

# Boxes per tile of the tiled ('plain') NMS.
_NMS_TILE = 512


class NmsResult(NamedTuple):
  indices: jax.Array  # [max_output_size] int32 into the input boxes; 0 on padding
  valid: jax.Array  # [max_output_size] bool


def _iou(a, area_a, b, area_b):
  """IoU [..] of suppressors `a` [.., 4] with candidates `b` [.., 4] (broadcast).

  torchvision's nms kernel arithmetic: `inter / (area_a + area_b - inter)`. Both NMS
  kernels use this one expression, in this operand order, so their comparisons with the
  threshold agree bit for bit.
  """
  xx1 = jnp.maximum(a[..., 0], b[..., 0])
  yy1 = jnp.maximum(a[..., 1], b[..., 1])
  xx2 = jnp.minimum(a[..., 2], b[..., 2])
  yy2 = jnp.minimum(a[..., 3], b[..., 3])
  inter = jnp.maximum(xx2 - xx1, 0.0) * jnp.maximum(yy2 - yy1, 0.0)
  return inter / (area_a + area_b - inter)


def _greedy_keep(boxes, areas, valid, classes, iou_threshold, max_output_size):
  """Greedy NMS over score-sorted boxes: one box per while_loop step.

  Returns (positions [max_output_size] int32 into the sorted boxes, kept count).
  """
  num = boxes.shape[0]

  def cond(state):
    i, kept, _, _ = state
    return (i < num) & (kept < max_output_size)

  def body(state):
    i, kept, keep, suppressed = state
    take = valid[i] & ~suppressed[i]
    overlap = _iou(boxes[i], areas[i], boxes, areas) > iou_threshold
    if classes is not None:
      overlap &= classes == classes[i]
    suppressed = jnp.where(take, suppressed | overlap, suppressed)
    keep = keep.at[i].set(take)
    return i + 1, kept + take.astype(jnp.int32), keep, suppressed

  init = (jnp.int32(0), jnp.int32(0), jnp.zeros((num,), bool), jnp.zeros((num,), bool))
  _, kept, keep, _ = jax.lax.while_loop(cond, body, init)
  (positions,) = jnp.nonzero(keep, size=max_output_size, fill_value=0)
  return positions.astype(jnp.int32), kept


def _tiled_keep(boxes, areas, valid, classes, iou_threshold, max_output_size):
  """Tiled fixed-point NMS over score-sorted boxes (see the module doc); same results.

  Returns (positions [max_output_size] int32 into the sorted boxes, kept count).
  """
  num = boxes.shape[0]
  tile = min(_NMS_TILE, -(-num // 8) * 8)
  num_tiles = -(-num // tile)
  pad = num_tiles * tile - num
  boxes = jnp.pad(boxes, ((0, pad), (0, 0)))
  areas = jnp.pad(areas, (0, pad))
  valid = jnp.pad(valid, (0, pad))
  if classes is not None:
    classes = jnp.pad(classes, (0, pad))
  # Kept boxes so far (the only suppressors of later tiles); at most max_output_size.
  cap = min(max_output_size, num)
  earlier = jnp.arange(tile)[:, None] < jnp.arange(tile)[None, :]  # i before j

  def cond(state):
    t, kept = state[:2]
    # Invalid boxes are sorted last: a tile starting with one has nothing to keep.
    return (t < num_tiles) & (kept < max_output_size) & valid[t * tile]

  def body(state):
    t, kept, positions, kept_boxes, kept_areas, kept_classes = state
    start = t * tile
    take = lambda a: jax.lax.dynamic_slice_in_dim(a, start, tile)
    tb, ta, tv = take(boxes), take(areas), take(valid)
    # Suppressed by the boxes kept in earlier tiles: [cap, tile].
    over = _iou(kept_boxes[:, None], kept_areas[:, None], tb[None], ta[None]) > iou_threshold
    over &= (jnp.arange(cap) < kept)[:, None]
    if classes is not None:
      tc = take(classes)
      over &= kept_classes[:, None] == tc[None, :]
    alive = tv & ~jnp.any(over, axis=0)
    # Inside the tile: box i (earlier, higher score) suppresses box j if kept.
    inner = (_iou(tb[:, None], ta[:, None], tb[None], ta[None]) > iou_threshold) & earlier
    if classes is not None:
      inner &= tc[:, None] == tc[None, :]

    def step(carry):
      keep, _ = carry
      new = alive & ~jnp.any(inner & keep[:, None], axis=0)
      return new, jnp.any(new != keep)

    keep, _ = jax.lax.while_loop(lambda carry: carry[1], step, (alive, jnp.bool_(True)))
    # Append this tile's kept boxes (in order) after the earlier ones; beyond
    # max_output_size they are dropped (greedy stops there).
    slot = jnp.where(keep, kept + jnp.cumsum(keep) - 1, max_output_size)
    positions = positions.at[slot].set(start + jnp.arange(tile, dtype=jnp.int32),
                                       mode='drop')
    kept_boxes = kept_boxes.at[slot].set(tb, mode='drop')
    kept_areas = kept_areas.at[slot].set(ta, mode='drop')
    if classes is not None:
      kept_classes = kept_classes.at[slot].set(tc, mode='drop')
    kept = jnp.minimum(kept + jnp.sum(keep, dtype=jnp.int32), max_output_size)
    return t + 1, kept, positions, kept_boxes, kept_areas, kept_classes

  kept_classes = (jnp.zeros((cap,), classes.dtype) if classes is not None
                  else jnp.zeros((cap,), jnp.int32))
  init = (jnp.int32(0), jnp.int32(0), jnp.zeros((max_output_size,), jnp.int32),
          jnp.zeros((cap, 4), boxes.dtype), jnp.zeros((cap,), areas.dtype), kept_classes)
  _, kept, positions, _, _, _ = jax.lax.while_loop(cond, body, init)
  return positions, kept


def _nms(boxes, scores, iou_threshold, max_output_size, valid, class_ids):
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
  kernel = _greedy_keep if backend.cpu_tuned() else _tiled_keep
  positions, kept = kernel(boxes, areas, valid, classes, iou_threshold, max_output_size)
  out_valid = jnp.arange(max_output_size) < kept
  indices = jnp.where(out_valid, order[positions], 0).astype(jnp.int32)
  return NmsResult(indices, out_valid)


def nms(boxes: jax.Array, scores: jax.Array, iou_threshold: float, max_output_size: int, *,
        valid: Optional[jax.Array] = None) -> NmsResult:
  """Greedy NMS, as torchvision.ops.nms, with a static number of outputs.

  Visits boxes by decreasing score and keeps a box unless a kept box overlaps it with
  IoU > iou_threshold; stops after `max_output_size` kept boxes. O(M^2) work in a
  sequential loop (of M vector steps on CPU, of M / 512 tile steps elsewhere; see the
  module doc): pre-select the top few thousand boxes by score first.

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
  return _nms(boxes, scores, iou_threshold, max_output_size, valid, None)


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
  return _nms(boxes, scores, iou_threshold, max_output_size, valid, class_ids)


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


class SoftNmsResult(NamedTuple):
  indices: jax.Array  # [max_output_size] int32 box index into M; 0 on padding
  scores: jax.Array  # [max_output_size] float rescored (decayed) score; -inf on padding
  valid: jax.Array  # [max_output_size] bool


def soft_nms(boxes: jax.Array, scores: jax.Array, max_output_size: int, *,
             method: str = 'gaussian', sigma: float = 0.5, iou_threshold: float = 0.3,
             score_threshold: float = 0.001,
             valid: Optional[jax.Array] = None) -> SoftNmsResult:
  """Soft-NMS (Bodla et al. 2017) with a static number of outputs.

  Repeats `max_output_size` times: take the live box with the highest current score
  (equal scores: the lowest index), output it with that score, and decay every other live
  box b by its IoU with the taken box t:

    'linear':   s_b *= 1 - IoU(t, b)  if IoU(t, b) > iou_threshold, else unchanged
    'gaussian': s_b *= exp(-IoU(t, b)^2 / sigma)

  A box dies when taken or when its score is below `score_threshold`; when no live box is
  left the remaining outputs are padding. Output scores never increase along the list.
  This is the reference's (`soft_nms` in CornerNet / CenterNet's external/nms.pyx, used
  with method 2 = 'gaussian'): the same decay and the same `score < threshold` discard,
  sigma without the factor 2 of a normal density. Differences: IoU is the continuous one
  of `box_iou` (the reference adds 1 pixel to widths and heights); boxes scoring below
  `score_threshold` from the start are dropped (the reference keeps them unless some
  taken box overlaps them); ties go to the lowest index; only the first `max_output_size`
  boxes of the reference's (full) list are returned.

  One `lax.fori_loop` step per output, each an [M] IoU row: O(M * max_output_size).
  Works under jit and vmap (a leading batch axis).

  Args:
    boxes: [M, 4] float (x1, y1, x2, y2).
    scores: [M] float.
    max_output_size: static number of outputs.
    method: 'linear' or 'gaussian'.
    sigma: gaussian decay parameter.
    iou_threshold: 'linear' decays only boxes with IoU strictly above this.
    score_threshold: boxes whose (decayed) score falls below this are discarded.
    valid: optional [M] bool; invalid (padding) boxes are never taken and decay nothing.

  Returns:
    `SoftNmsResult(indices, scores, valid)` of [max_output_size] arrays in the order taken.
  """
  if method not in ('linear', 'gaussian'):
    raise ValueError(f"method must be 'linear' or 'gaussian', got {method!r}")
  boxes = jnp.asarray(boxes)
  boxes = boxes.astype(jnp.promote_types(boxes.dtype, jnp.float32))
  scores = jnp.asarray(scores).astype(boxes.dtype)
  num = boxes.shape[0]
  if num == 0:
    return SoftNmsResult(jnp.zeros((max_output_size,), jnp.int32),
                         jnp.full((max_output_size,), -jnp.inf, boxes.dtype),
                         jnp.zeros((max_output_size,), bool))
  alive = scores >= score_threshold
  if valid is not None:
    alive &= jnp.asarray(valid, bool)
  areas = box_ops.box_area(boxes)

  def step(k, state):
    scores, alive, out_index, out_score, out_valid = state
    current = jnp.where(alive, scores, -jnp.inf)
    t = jnp.argmax(current)  # first maximum: ties to the lowest index
    took = alive[t]
    iou = _iou(boxes[t], areas[t], boxes, areas)
    # 0/0 for two empty boxes: no overlap.
    iou = jnp.where(jnp.isnan(iou), 0.0, iou)
    if method == 'linear':
      decay = jnp.where(iou > iou_threshold, 1.0 - iou, 1.0)
    else:
      decay = jnp.exp(-(iou * iou) / sigma)
    decayed = jnp.where(took & alive, scores * decay, scores)
    alive = alive & (decayed >= score_threshold) & (jnp.arange(num) != t)
    out_index = out_index.at[k].set(jnp.where(took, t, 0).astype(jnp.int32))
    out_score = out_score.at[k].set(jnp.where(took, scores[t], -jnp.inf))
    out_valid = out_valid.at[k].set(took)
    return decayed, alive, out_index, out_score, out_valid

  init = (scores, alive, jnp.zeros((max_output_size,), jnp.int32),
          jnp.full((max_output_size,), -jnp.inf, scores.dtype),
          jnp.zeros((max_output_size,), bool))
  _, _, indices, out_scores, out_valid = jax.lax.fori_loop(0, max_output_size, step, init)
  return SoftNmsResult(indices, out_scores, out_valid)


def vote(kept_boxes: jax.Array, boxes: jax.Array, scores: jax.Array, values: jax.Array,
         iou_threshold: float, *, valid: Optional[jax.Array] = None) -> jax.Array:
  """Voting after NMS (Gidaris & Komodakis 2015's box voting, for any per-box values):
  each kept box's value is the score-weighted mean of the values of every candidate
  that overlaps it at IoU >= iou_threshold (the kept box itself among them).

  Args:
    kept_boxes: [D, 4] boxes kept by NMS (x1, y1, x2, y2).
    boxes: [M, 4] the candidates NMS chose from.
    scores: [M] their scores (the weights; >= 0).
    values: [M, ...] what each candidate predicts (boxes, decoded landmarks, ...).
    iou_threshold: the overlap that lets a candidate vote.
    valid: [M] bool, candidates allowed to vote (e.g. above the score threshold); None:
      all.

  Returns:
    [D, ...] float32: the voted values. A kept box no valid candidate overlaps (a padded
    slot) gets zeros.
  """
  iou = box_ops.box_iou(jnp.asarray(kept_boxes, jnp.float32), jnp.asarray(boxes, jnp.float32))
  weights = jnp.where(iou >= iou_threshold, jnp.asarray(scores, jnp.float32)[None], 0.0)
  if valid is not None:
    weights = jnp.where(valid[None], weights, 0.0)
  total = jnp.sum(weights, axis=1, keepdims=True)
  weights = weights / jnp.where(total > 0, total, 1.0)
  flat = jnp.asarray(values, jnp.float32).reshape(values.shape[0], -1)
  return (weights @ flat).reshape((kept_boxes.shape[0],) + values.shape[1:])
