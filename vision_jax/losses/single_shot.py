"""Single-shot detector targets and losses (SSD lineage: YOLACT, RetinaFace), static shapes.

Targets (`match_anchors`, per image, vmapped):
  * each anchor takes the ground truth of highest IoU; then, as YOLACT's and
    RetinaFace's reference loops, the (ground truth, anchor) pair of highest IoU overall
    is forced positive, both are taken out, and so on until every valid ground truth
    owns an anchor of its own;
  * label c + 1 (class c) at IoU >= positive_iou, 0 (background) below negative_iou,
    -1 (ignored) in between; background anchors that a crowd box covers by more than
    crowd_iou of the anchor's area are ignored too.
Losses, summed (divide by the number of positives):
  * `ohem_class_loss`: softmax cross-entropy on the positives and the hardest negatives
    (ranked by background loss, `negatives_per_positive` per positive, per image);
  * `box_loss`: smooth-L1 (beta 1) of the coded deltas on the positives.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vision_jax.losses import regression
from vision_jax.ops import boxes as box_ops

IGNORE = -1


class AnchorTargets(NamedTuple):
  labels: jax.Array  # [..., A] int32: -1 ignored, 0 background, c + 1 thing class c
  gt_index: jax.Array  # [..., A] int32 matched ground truth (meaningful where labels > 0)
  box_targets: jax.Array  # [..., A, 4] float32 coded deltas of the matched box


def match_anchors(anchors: jax.Array, gt_boxes: jax.Array, gt_classes: jax.Array,
                  gt_valid: jax.Array, gt_crowd: jax.Array, *, positive_iou: float = 0.5,
                  negative_iou: float = 0.4, crowd_iou: float = 0.7,
                  box_weights=(10.0, 10.0, 5.0, 5.0)) -> AnchorTargets:
  """One image's anchor targets (see the module docstring).

  Args:
    anchors: [A, 4] (x1, y1, x2, y2).
    gt_boxes: [G, 4] padded ground truth; gt_classes [G] int 0-based.
    gt_valid: [G] bool, False on padding.
    gt_crowd: [G] bool, crowd regions (never matched; they only ignore background).
    positive_iou, negative_iou, crowd_iou: thresholds.
    box_weights: box coder weights.

  Returns:
    `AnchorTargets` of one image ([A] and [A, 4]).
  """
  matchable = gt_valid & ~gt_crowd
  iou = box_ops.box_iou(gt_boxes, anchors)  # [G, A]
  masked = jnp.where(matchable[:, None], iou, -1.0)
  best = jnp.max(masked, axis=0)
  gt_index = jnp.argmax(masked, axis=0).astype(jnp.int32)
  num_gt, num_anchors = masked.shape

  def force(_, carry):
    """The reference's loop: the best remaining pair is forced, its row and column removed."""
    overlap, best, gt_index = carry
    flat = jnp.argmax(overlap)
    g, a = flat // num_anchors, flat % num_anchors
    ok = overlap[g, a] >= 0.0  # a real ground truth is left
    best = jnp.where(ok, best.at[a].set(2.0), best)
    gt_index = jnp.where(ok, gt_index.at[a].set(g.astype(jnp.int32)), gt_index)
    overlap = overlap.at[:, a].set(-1.0).at[g, :].set(-1.0)
    return overlap, best, gt_index

  _, best, gt_index = jax.lax.fori_loop(0, num_gt, force, (masked, best, gt_index))
  labels = jnp.where(best >= positive_iou, gt_classes[gt_index] + 1,
                     jnp.where(best < negative_iou, 0, IGNORE)).astype(jnp.int32)
  covered = box_ops.box_ioa(gt_boxes, anchors)
  crowd_overlap = jnp.max(jnp.where((gt_valid & gt_crowd)[:, None], covered, 0.0), axis=0)
  labels = jnp.where((labels == 0) & (crowd_overlap > crowd_iou), IGNORE, labels)
  coder = box_ops.BoxCoder(tuple(box_weights))
  matched = gt_boxes[gt_index]
  # Unmatched anchors get a harmless box so the log in the coder stays finite.
  matched = jnp.where((labels > 0)[:, None], matched, anchors)
  return AnchorTargets(labels, gt_index, coder.encode(matched, anchors))


def ohem_class_loss(logits: jax.Array, labels: jax.Array, negatives_per_positive: int
                    ) -> jax.Array:
  """Summed softmax CE over positives and the hardest negatives of each image.

  Args:
    logits: [B, A, K + 1]; labels [B, A] (-1 ignored, 0 background, c + 1).
    negatives_per_positive: negatives kept per positive of the same image (at most A - 1).

  Returns:
    scalar: the sum (divide by the number of positives).
  """
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  positive = labels > 0
  candidate = labels == 0
  background_loss = jax.lax.stop_gradient(-log_probs[..., 0])
  num_neg = jnp.minimum(negatives_per_positive * jnp.sum(positive, axis=1),
                        labels.shape[1] - 1)
  ranked = jnp.where(candidate, background_loss, -jnp.inf)
  order = jnp.argsort(-ranked, axis=1)
  rank = jnp.argsort(order, axis=1)
  negative = candidate & (rank < num_neg[:, None])
  ce = -jnp.take_along_axis(log_probs, jnp.maximum(labels, 0)[..., None], axis=-1)[..., 0]
  return jnp.sum(jnp.where(positive | negative, ce, 0.0))


def box_loss(deltas: jax.Array, targets: jax.Array, positive: jax.Array) -> jax.Array:
  """Summed smooth-L1 (beta 1) over the positives' 4 coordinates: [B, A, 4] x2, [B, A]."""
  per = jnp.sum(regression.smooth_l1(deltas, targets, beta=1.0), axis=-1)
  return jnp.sum(jnp.where(positive, per, 0.0))
