"""Targets and losses of Faster / Mask / Keypoint R-CNN, static shapes, batched.

Everything takes the padded ground truth of the detection batch contract (boxes
[B, M, 4] in input pixels, classes [B, M] 0-based, a validity mask [B, M]) and explicit
PRNG keys for the samplers. Conventions of `vision_jax.models.mask_rcnn`: box-head class
0 is background, thing class c is c + 1.

  rpn_losses        anchor matching (IoU 0.3 / 0.7 + low-quality matches), 256
                    balanced samples per image, BCE + smooth-L1, both divided by the
                    number of sampled anchors (detectron2's normalizer)
  sample_rois       proposals + ground-truth boxes -> matched (IoU 0.5), 512 samples per
                    image with at most 25% foreground; positives come first
  box_head_losses   softmax CE over sampled RoIs + class-specific smooth-L1 on positives,
                    divided by the number of sampled RoIs
  crop_masks        RoIAlign (aligned, 2x2 samples per bin) of the matched ground-truth
                    mask, as a gather: the 0/1 mask targets of the mask head
  positive_slot_buckets  the static RoI counts the mask / keypoint heads are compiled for
  mask_loss         per-pixel BCE on the ground-truth class channel, mean over positives
  keypoint_targets  torchvision's keypoints_to_heatmap: the flat heatmap cell of each
                    visible keypoint inside its RoI
  keypoint_loss     softmax CE over the S x S cells per visible keypoint, mean over them
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from vision_jax.losses import regression
from vision_jax.ops import boxes as box_ops
from vision_jax.ops import matching


def _safe_targets(targets, mask):
  """Zeroes targets where `mask` is False (padding gt gives log(0) deltas there)."""
  return jnp.where(mask[..., None], targets, 0.0)


def rpn_losses(config, anchors: jax.Array, logits: jax.Array, deltas: jax.Array,
               gt_boxes: jax.Array, gt_valid: jax.Array, key: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
  """RPN objectness and box losses.

  Args:
    config: a MaskRCNNConfig (rpn_* settings).
    anchors: [A, 4] all levels concatenated, in the RPN output order.
    logits: [B, A] objectness logits; deltas [B, A, 4].
    gt_boxes: [B, M, 4]; gt_valid [B, M] (False for padding and crowd boxes).
    key: PRNG key of the anchor sampler.

  Returns:
    (objectness loss, box loss), float32 scalars.
  """
  batch = logits.shape[0]
  keys = jax.random.split(key, batch)

  def one_image(key, logits, deltas, gt_boxes, gt_valid):
    iou = box_ops.box_iou(gt_boxes, anchors)  # [M, A]
    matches = matching.match(iou, gt_valid, thresholds=config.rpn_iou_thresholds,
                             labels=(0, matching.IGNORE, 1), allow_low_quality_matches=True)
    sample = matching.sample_balanced(key, matches.labels, config.rpn_batch_size_per_image,
                                      config.rpn_positive_fraction)
    chosen = anchors[sample.indices]
    target_boxes = gt_boxes[matches.gt_index[sample.indices]]
    targets = _safe_targets(box_ops.encode_boxes(target_boxes, chosen), sample.positive)
    bce = optax.sigmoid_binary_cross_entropy(logits[sample.indices],
                                             sample.positive.astype(jnp.float32))
    objectness = jnp.sum(jnp.where(sample.valid, bce, 0.0))
    reg = regression.smooth_l1(deltas[sample.indices], targets, beta=config.rpn_box_loss_beta)
    box = jnp.sum(jnp.where(sample.positive[:, None], reg, 0.0))
    return objectness, box, jnp.sum(sample.valid)

  objectness, box, count = jax.vmap(one_image)(keys, logits, deltas, gt_boxes, gt_valid)
  denom = jnp.maximum(jnp.sum(count), 1).astype(jnp.float32)
  return jnp.sum(objectness) / denom, jnp.sum(box) / denom


class RoiSample(NamedTuple):
  """Sampled RoIs per image, positives first: every field [B, S, ...]."""
  boxes: jax.Array  # [B, S, 4] proposal (or ground-truth) boxes
  labels: jax.Array  # [B, S] int32 box-head class: 0 background, c + 1 thing class c
  gt_index: jax.Array  # [B, S] int32 matched ground truth (meaningful on positives)
  positive: jax.Array  # [B, S] bool
  valid: jax.Array  # [B, S] bool (False: padding slot)
  box_targets: jax.Array  # [B, S, 4] encoded deltas to the matched gt (0 off positives)


def sample_rois(config, key: jax.Array, proposals: jax.Array, proposal_valid: jax.Array,
                gt_boxes: jax.Array, gt_classes: jax.Array, gt_valid: jax.Array) -> RoiSample:
  """Matches proposals (with the ground truth appended) to ground truth and samples them.

  Args:
    config: a MaskRCNNConfig (roi_* settings, box_weights).
    key: PRNG key of the sampler.
    proposals: [B, P, 4]; proposal_valid [B, P].
    gt_boxes: [B, M, 4]; gt_classes [B, M] 0-based; gt_valid [B, M].

  Returns:
    `RoiSample` with S = roi_batch_size_per_image, gradients stopped.
  """
  keys = jax.random.split(key, proposals.shape[0])

  def one_image(key, proposals, proposal_valid, gt_boxes, gt_classes, gt_valid):
    boxes = jnp.concatenate([proposals, gt_boxes])
    valid = jnp.concatenate([proposal_valid, gt_valid])
    iou = box_ops.box_iou(gt_boxes, boxes)
    matches = matching.match(iou, gt_valid, thresholds=(config.roi_iou_threshold,),
                             labels=(0, 1))
    labels = jnp.where(matches.labels == 1, gt_classes[matches.gt_index] + 1, 0)
    labels = jnp.where(valid, labels, matching.IGNORE)
    sample = matching.sample_balanced(key, labels, config.roi_batch_size_per_image,
                                      config.roi_positive_fraction, bg_label=0)
    chosen = boxes[sample.indices]
    gt_index = matches.gt_index[sample.indices]
    targets = box_ops.encode_boxes(gt_boxes[gt_index], chosen, config.box_weights)
    return RoiSample(boxes=chosen,
                     labels=jnp.where(sample.valid, labels[sample.indices], 0),
                     gt_index=gt_index, positive=sample.positive, valid=sample.valid,
                     box_targets=_safe_targets(targets, sample.positive))

  sample = jax.vmap(one_image)(keys, proposals, proposal_valid, gt_boxes, gt_classes,
                               gt_valid)
  return jax.tree.map(jax.lax.stop_gradient, sample)


def num_positive_slots(config) -> int:
  """Static count of leading RoI slots the mask / keypoint heads train on.

  All slots that can hold positives (`roi_batch_size_per_image * roi_positive_fraction`),
  capped by `config.head_rois_per_image` when that is set.
  """
  slots = max(1, int(config.roi_batch_size_per_image * config.roi_positive_fraction))
  cap = config.head_rois_per_image
  return min(slots, cap) if cap else slots


def positive_slot_buckets(config) -> tuple[int, ...]:
  """Static RoI counts the mask / keypoint heads are compiled for: 8, 16, ... up to n.

  n = `num_positive_slots`. The train step runs the smallest count that holds every
  image's positives, so the heads cost what the positives present need.
  """
  n = num_positive_slots(config)
  sizes = {n}
  size = 8
  while size < n:
    sizes.add(size)
    size *= 2
  return tuple(sorted(sizes))


def box_head_losses(config, class_logits: jax.Array, box_deltas: jax.Array,
                    sample: RoiSample) -> tuple[jax.Array, jax.Array]:
  """(classification loss, box regression loss) of the box head, float32 scalars.

  Args:
    class_logits: [B, S, K + 1]; box_deltas [B, S, K + 1, 4] for `sample`'s RoIs.
  """
  weight = sample.valid.astype(jnp.float32)
  denom = jnp.maximum(jnp.sum(weight), 1.0)
  ce = optax.softmax_cross_entropy_with_integer_labels(class_logits, sample.labels)
  cls_loss = jnp.sum(ce * weight) / denom
  chosen = jnp.take_along_axis(box_deltas, sample.labels[:, :, None, None], axis=2)[:, :, 0]
  reg = regression.smooth_l1(chosen, sample.box_targets, beta=config.box_loss_beta)
  box_loss = jnp.sum(jnp.where(sample.positive[..., None], reg, 0.0)) / denom
  return cls_loss, box_loss


def crop_masks(masks: jax.Array, gt_index: jax.Array, boxes: jax.Array, size: int, *,
               sampling_ratio: int = 2) -> jax.Array:
  """Ground-truth mask crops: RoIAlign (aligned) of mask `gt_index` inside each box.

  Args:
    masks: [B, M, H, W] 0/1 (any dtype) instance masks in input pixels.
    gt_index: [B, R] int32 mask of each box.
    boxes: [B, R, 4] (x1, y1, x2, y2) input pixels.
    size: output S (28 for the mask head).
    sampling_ratio: bilinear samples per bin and axis, averaged.

  Returns:
    [B, R, S, S] float32 in [0, 1] (threshold at 0.5 for binary targets). A sample
    outside [-1, H] x [-1, W] counts 0; others are clamped into the mask (roi_align's rule).
  """
  b, m, h, w = masks.shape
  r = boxes.shape[1]
  flat = jnp.asarray(masks).reshape(-1)
  offsets = (jnp.arange(size)[:, None] + (jnp.arange(sampling_ratio) + 0.5)[None, :]
             / sampling_ratio).reshape(-1) / size  # [S * n] fractions of the box

  def axis_samples(lo, hi, limit):
    """Sample positions along one axis -> (low index, high index, low weight, high weight)."""
    pos = lo[..., None] - 0.5 + offsets * (hi - lo)[..., None]  # [B, R, S n]
    inside = (pos >= -1.0) & (pos <= limit)
    pos = jnp.clip(pos, 0.0, None)
    low = jnp.minimum(jnp.floor(pos).astype(jnp.int32), limit - 1)
    high = jnp.minimum(low + 1, limit - 1)
    frac = jnp.where(low >= limit - 1, 0.0, pos - low)
    valid = inside.astype(jnp.float32)
    return low, high, (1.0 - frac) * valid, frac * valid

  y0, y1, wy0, wy1 = axis_samples(boxes[..., 1], boxes[..., 3], h)
  x0, x1, wx0, wx1 = axis_samples(boxes[..., 0], boxes[..., 2], w)
  base = ((jnp.arange(b)[:, None] * m + gt_index) * h * w)[..., None, None]  # [B, R, 1, 1]

  def corner(ys, xs):
    return flat[base + ys[..., :, None] * w + xs[..., None, :]].astype(jnp.float32)

  values = (wy0[..., :, None] * wx0[..., None, :] * corner(y0, x0)
            + wy0[..., :, None] * wx1[..., None, :] * corner(y0, x1)
            + wy1[..., :, None] * wx0[..., None, :] * corner(y1, x0)
            + wy1[..., :, None] * wx1[..., None, :] * corner(y1, x1))  # [B, R, Sn, Sn]
  n = sampling_ratio
  return values.reshape(b, r, size, n, size, n).mean(axis=(3, 5))


def mask_loss(mask_logits: jax.Array, labels: jax.Array, targets: jax.Array,
              positive: jax.Array) -> jax.Array:
  """Per-pixel BCE on each RoI's ground-truth class channel, mean over positive RoIs.

  Args:
    mask_logits: [B, R, S, S, K + 1]; labels [B, R] box-head classes (c + 1).
    targets: [B, R, S, S] 0/1; positive [B, R] bool.
  """
  chosen = jnp.take_along_axis(mask_logits, labels[:, :, None, None, None], axis=-1)[..., 0]
  bce = optax.sigmoid_binary_cross_entropy(chosen, targets).mean(axis=(2, 3))
  return jnp.sum(jnp.where(positive, bce, 0.0)) / jnp.maximum(jnp.sum(positive), 1)


def keypoint_targets(keypoints: jax.Array, boxes: jax.Array, size: int
                     ) -> tuple[jax.Array, jax.Array]:
  """torchvision's keypoints_to_heatmap: flat cell index and validity per keypoint.

  Args:
    keypoints: [..., K, 3] (x, y, visibility) input pixels of each RoI's matched gt.
    boxes: [..., 4] the RoIs.
    size: heatmap side S (56).

  Returns:
    (index [..., K] int32 = y * S + x, valid [..., K] bool: visible and inside the box).
  """
  x1, y1 = boxes[..., 0:1], boxes[..., 1:2]
  x2, y2 = boxes[..., 2:3], boxes[..., 3:4]
  sx = size / jnp.maximum(x2 - x1, 1e-6)
  sy = size / jnp.maximum(y2 - y1, 1e-6)
  kx, ky = keypoints[..., 0], keypoints[..., 1]
  x = jnp.floor((kx - x1) * sx).astype(jnp.int32)
  y = jnp.floor((ky - y1) * sy).astype(jnp.int32)
  # Points exactly on the right / bottom edge belong to the last cell.
  x = jnp.where(kx == x2, size - 1, x)
  y = jnp.where(ky == y2, size - 1, y)
  valid = (x >= 0) & (y >= 0) & (x < size) & (y < size) & (keypoints[..., 2] > 0)
  return jnp.where(valid, y * size + x, 0), valid


def keypoint_loss(heatmap_logits: jax.Array, index: jax.Array, valid: jax.Array) -> jax.Array:
  """Softmax CE over the S x S cells of each valid keypoint, averaged over them.

  Args:
    heatmap_logits: [B, R, S, S, K]; index [B, R, K] flat cells; valid [B, R, K].
  """
  b, r, s_h, s_w, k = heatmap_logits.shape
  logits = jnp.moveaxis(heatmap_logits.reshape(b, r, s_h * s_w, k), -1, -2)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, index)
  return jnp.sum(jnp.where(valid, ce, 0.0)) / jnp.maximum(jnp.sum(valid), 1)
