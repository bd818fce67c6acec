"""R-CNN post-processing with static shapes: proposals, detections, masks and keypoints.

All functions take batched, padded arrays and work under jit. Boxes are
(x1, y1, x2, y2) in input pixels; `image_sizes` [B, 2] holds each image's (height,
width) inside the padded input (boxes are clipped to it).

  propose          RPN outputs -> top proposals per image (detectron2 / torchvision's
                   find_top_rpn_proposals / filter_proposals)
  detect           box-head outputs -> final detections (fast_rcnn_inference)
  paste_masks      28x28 mask probabilities -> image-space masks (detectron2's
                   paste_masks_in_image, bilinear with zero padding), separably
  decode_keypoints 56x56 heatmaps -> (x, y, score) per keypoint
  predict          the whole inference path of a MaskRCNN module
"""
from typing import Sequence

import jax
import jax.numpy as jnp

from vision_jax.models import mask_rcnn
from vision_jax.ops import boxes as box_ops
from vision_jax.ops import suppression


def full_image_sizes(images: jax.Array) -> jax.Array:
  """[B, 2] int32 (H, W) of the whole input, for images without padding."""
  b, h, w = images.shape[:3]
  return jnp.broadcast_to(jnp.array([h, w], jnp.int32), (b, 2))


def _clip(boxes, image_size):
  """Clips [..., 4] boxes to one image's (height, width) [2]."""
  hw = jnp.asarray(image_size, boxes.dtype)
  upper = jnp.stack([hw[1], hw[0], hw[1], hw[0]])
  return jnp.clip(boxes, 0.0, upper)


def _nonempty(boxes, min_size):
  w = boxes[..., 2] - boxes[..., 0]
  h = boxes[..., 3] - boxes[..., 1]
  if min_size > 0:
    return (w >= min_size) & (h >= min_size)
  return (w > 0) & (h > 0)


def propose(config: mask_rcnn.MaskRCNNConfig, anchors: Sequence[jax.Array],
            logits: jax.Array, deltas: jax.Array, image_sizes: jax.Array, *,
            train: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
  """RPN proposals: per-level top-k, decode, clip, drop empty, per-level NMS, top-n.

  Args:
    config: pre/post NMS counts, NMS threshold and min size (train or test values).
    anchors: per level [A_l, 4] (`mask_rcnn.anchors`).
    logits: [B, sum A_l] objectness logits; deltas [B, sum A_l, 4] (levels in order).
    image_sizes: [B, 2] (height, width) to clip to.
    train: pick the *_train counts.

  Returns:
    boxes [B, P, 4], logits [B, P] (decreasing), valid [B, P] with
    P = rpn_post_nms_top_n_{train,test}. Gradients are stopped.
  """
  pre = config.rpn_pre_nms_top_n_train if train else config.rpn_pre_nms_top_n_test
  post = config.rpn_post_nms_top_n_train if train else config.rpn_post_nms_top_n_test
  logits = jax.lax.stop_gradient(logits)
  deltas = jax.lax.stop_gradient(deltas)

  def one_image(logits, deltas, image_size):
    boxes, scores, levels = [], [], []
    start = 0
    for level, level_anchors in enumerate(anchors):
      n = level_anchors.shape[0]
      k = min(pre, n)
      top, index = jax.lax.top_k(logits[start:start + n], k)
      boxes.append(box_ops.decode_boxes(deltas[start:start + n][index], level_anchors[index]))
      scores.append(top)
      levels.append(jnp.full((k,), level, jnp.int32))
      start += n
    boxes = _clip(jnp.concatenate(boxes), image_size)
    scores, levels = jnp.concatenate(scores), jnp.concatenate(levels)
    valid = _nonempty(boxes, config.rpn_min_size) & jnp.isfinite(scores)
    kept = suppression.batched_nms(boxes, scores, levels, config.rpn_nms_threshold, post,
                                   valid=valid)
    return boxes[kept.indices], jnp.where(kept.valid, scores[kept.indices], -jnp.inf), kept.valid

  return jax.vmap(one_image)(logits, deltas, image_sizes)


def detect(config: mask_rcnn.MaskRCNNConfig, proposals: jax.Array, proposal_valid: jax.Array,
           class_logits: jax.Array, box_deltas: jax.Array, image_sizes: jax.Array) -> dict:
  """Final detections from the box head (torchvision's RoIHeads.postprocess_detections).

  softmax -> class-specific decode, clip -> drop background, scores <= score_threshold
  and boxes smaller than 0.01 px -> per-class NMS -> top `detections_per_image`.

  Args:
    proposals: [B, R, 4]; proposal_valid [B, R].
    class_logits: [B, R, K + 1] (index 0 = background); box_deltas [B, R, K + 1, 4].
    image_sizes: [B, 2] (height, width).

  Returns:
    {'boxes' [B, D, 4], 'scores' [B, D] (decreasing; 0 on padding), 'classes' [B, D]
     int32 0-based thing classes, 'valid' [B, D] bool}, D = detections_per_image.
  """
  num_det = config.detections_per_image

  def one_image(proposals, proposal_valid, logits, deltas, image_size):
    r, k1 = logits.shape
    k = k1 - 1
    scores = jax.nn.softmax(logits, axis=-1)[:, 1:]  # [R, K]
    boxes = box_ops.decode_boxes(deltas[:, 1:], proposals[:, None, :], config.box_weights)
    boxes = _clip(boxes, image_size)
    valid = (proposal_valid[:, None] & (scores > config.score_threshold)
             & _nonempty(boxes, 1e-2))
    scores, boxes, valid = scores.reshape(-1), boxes.reshape(-1, 4), valid.reshape(-1)
    classes = jnp.tile(jnp.arange(k, dtype=jnp.int32), r)
    num = min(config.inference_candidates, r * k)
    _, top = jax.lax.top_k(jnp.where(valid, scores, -jnp.inf), num)
    kept = suppression.batched_nms(boxes[top], scores[top], classes[top],
                                   config.nms_threshold, num_det, valid=valid[top])
    index = top[kept.indices]
    return {'boxes': jnp.where(kept.valid[:, None], boxes[index], 0.0),
            'scores': jnp.where(kept.valid, scores[index], 0.0),
            'classes': jnp.where(kept.valid, classes[index], 0),
            'valid': kept.valid}

  return jax.vmap(one_image)(proposals, proposal_valid, class_logits, box_deltas,
                             image_sizes)


def _paste_weights(lo, hi, size, mask_size):
  """[..., size, mask_size] bilinear weights of mask cells for output pixel centers.

  Pixel p samples the mask at u = (p + 0.5 - lo) / (hi - lo) * mask_size - 0.5 (the
  grid_sample(align_corners=False) of detectron2's paste); cells outside the mask
  contribute zero (zero padding).
  """
  p = jnp.arange(size, dtype=jnp.float32) + 0.5
  extent = jnp.maximum(hi - lo, 1e-6)[..., None]
  u = (p - lo[..., None]) / extent * mask_size - 0.5  # [..., size]
  cells = jnp.arange(mask_size, dtype=jnp.float32)
  return jnp.maximum(0.0, 1.0 - jnp.abs(u[..., :, None] - cells))


def paste_masks(masks: jax.Array, boxes: jax.Array, image_hw: Sequence[int]) -> jax.Array:
  """Mask probabilities in box frames -> image-space probabilities.

  Args:
    masks: [..., M, M] probabilities (or logits: the paste is linear) per box.
    boxes: [..., 4] the boxes the masks live in.
    image_hw: static (H, W) of the output.

  Returns:
    [..., H, W] float32: bilinear resampling with zero padding outside the mask.
  """
  h, w = image_hw
  m = masks.shape[-1]
  wy = _paste_weights(boxes[..., 1], boxes[..., 3], h, m)  # [..., H, M]
  wx = _paste_weights(boxes[..., 0], boxes[..., 2], w, m)  # [..., W, M]
  return jnp.einsum('...yi,...ij,...xj->...yx', wy, masks.astype(jnp.float32), wx)


def decode_keypoints(heatmaps: jax.Array, boxes: jax.Array) -> jax.Array:
  """Keypoint heatmap logits [..., S, S, K] in boxes [..., 4] -> [..., K, 3] (x, y, logit).

  Each keypoint is the arg-max cell's center mapped into the box:
  x = x1 + (i + 0.5) * (x2 - x1) / S (the inverse of the training discretization).
  """
  s_h, s_w, k = heatmaps.shape[-3:]
  flat = jnp.moveaxis(heatmaps.reshape(*heatmaps.shape[:-3], s_h * s_w, k), -1, -2)
  index = jnp.argmax(flat, axis=-1)  # [..., K]
  score = jnp.max(flat, axis=-1)
  iy, ix = (index // s_w).astype(jnp.float32), (index % s_w).astype(jnp.float32)
  x1, y1 = boxes[..., 0:1], boxes[..., 1:2]
  bw, bh = boxes[..., 2:3] - x1, boxes[..., 3:4] - y1
  x = x1 + (ix + 0.5) * bw / s_w
  y = y1 + (iy + 0.5) * bh / s_h
  return jnp.stack([x, y, score], axis=-1)


def _take(values, index):
  """values [B, R, ...], index [B, D] -> [B, D, ...]."""
  return jax.vmap(lambda v, i: v[i])(values, index)


def predict(model: mask_rcnn.MaskRCNN, variables, images: jax.Array,
            image_sizes: jax.Array | None = None, *, mask_threshold: float = 0.5) -> dict:
  """The full inference path: features, proposals, detections, masks, keypoints.

  Args:
    model: a MaskRCNN module; variables its variables.
    images: [B, H, W, 3] uint8 (or float in [0, 1]).
    image_sizes: [B, 2] (height, width) of the real image in each padded input; None
      for the whole input.
    mask_threshold: masks are returned binarized at this probability.

  Returns:
    `detect`'s dict, plus, with the mask head, 'masks' [B, D, H, W] uint8 (pasted into
    the input) and 'mask_probs' [B, D, S, S] float32 (the detected class's mask
    probabilities in each box's frame, for pasting at another resolution; 0 on invalid
    detections), and with the keypoint head 'keypoints' [B, D, K, 3] (x, y, logit).
  """
  return predict_with_internals(model, variables, images, image_sizes,
                                mask_threshold=mask_threshold)[0]


def predict_with_internals(model: mask_rcnn.MaskRCNN, variables, images: jax.Array,
                           image_sizes: jax.Array | None = None, *,
                           mask_threshold: float = 0.5):
  """`predict`, also returning what heads built on top of it read: (`predict`'s dict,
  the FPN pyramid, the detected classes' mask logits [B, D, S, S] or None without the
  mask head)."""
  config = model.config
  if image_sizes is None:
    image_sizes = full_image_sizes(images)
  pyramid = model.apply(variables, images, method=mask_rcnn.MaskRCNN.features)
  logits, deltas = model.apply(variables, pyramid, method=mask_rcnn.MaskRCNN.rpn)
  level_anchors = mask_rcnn.anchors(config, images.shape[1:3])
  proposals, _, proposal_valid = propose(config, level_anchors, logits, deltas, image_sizes,
                                         train=False)
  class_logits, box_deltas = model.apply(variables, pyramid, proposals,
                                         method=mask_rcnn.MaskRCNN.box_head)
  out = detect(config, proposals, proposal_valid, class_logits, box_deltas, image_sizes)
  chosen = None
  if config.mask_head:
    mask_logits = model.apply(variables, pyramid, out['boxes'],
                              method=mask_rcnn.MaskRCNN.mask_head)
    chosen = jnp.take_along_axis(mask_logits, (out['classes'] + 1)[:, :, None, None, None],
                                 axis=-1)[..., 0]
    box_probs = jnp.where(out['valid'][:, :, None, None], jax.nn.sigmoid(chosen), 0.0)
    out['mask_probs'] = box_probs
    probs = paste_masks(box_probs, out['boxes'], images.shape[1:3])
    out['masks'] = ((probs >= mask_threshold) & out['valid'][:, :, None, None]).astype(jnp.uint8)
  if config.keypoint_head:
    heatmaps = model.apply(variables, pyramid, out['boxes'],
                           method=mask_rcnn.MaskRCNN.keypoint_head)
    out['keypoints'] = decode_keypoints(heatmaps, out['boxes'])
  return out, pyramid, chosen
