"""YOLACT's training targets and losses, static shapes (Bolya et al. 2019, the reference's
`MultiBoxLoss`).

Targets (`match_anchors`, per image, vmapped):
  * each anchor takes the ground truth of highest IoU; then, as the reference's loop,
    the (ground truth, anchor) pair of highest IoU overall is forced positive, both are
    taken out, and so on until every valid ground truth owns an anchor of its own;
  * label c + 1 (thing class c) at IoU >= positive_iou, 0 (background) below
    negative_iou, -1 (ignored) in between; background anchors that a crowd box covers
    by more than crowd_iou of the anchor's area are ignored too.

Losses of a batch (`yolact_losses`), each a scalar; N = positives in the whole batch:
  class     softmax cross-entropy on the positives and the hardest negatives (OHEM:
            ranked by background loss, `negatives_per_positive` per positive, per
            image), summed / N.
  box       smooth-L1 (beta 1) of the SSD-coded deltas on the positives, summed / N.
  mask      per positive (at most `masks_per_image` per image, picked at random):
            BCE of P c^T (logits) against the ground-truth mask at prototype
            resolution, inside the ground-truth box (cropped with 1 prototype pixel of
            padding), summed and divided by the box area in prototype pixels (at least
            1: a guard for tiny boxes that the reference lacks); an image with more
            positives than the cap has its sum scaled by positives / cap (as the
            reference); summed / N.
  semantic  sigmoid BCE of the 1x1 semantic conv on P3 against per-class masks at P3
            resolution, summed over pixels and classes / (h w), averaged over images.
The reference's weights (class 1, box 1.5, mask 6.125, semantic 1) are the task's.
Ground-truth masks are downsampled by area averaging and binarised at 0.5 (the
reference interpolates bilinearly).
"""

import jax
import jax.numpy as jnp

from vision_jax.losses import single_shot
from vision_jax.ops import masks as mask_ops

IGNORE = single_shot.IGNORE
LOSS_NAMES = ('class', 'box', 'mask', 'semantic')
DEFAULT_WEIGHTS = {'class': 1.0, 'box': 1.5, 'mask': 6.125, 'semantic': 1.0}


# Shared with the other single-shot detectors (vision_jax.losses.single_shot).
AnchorTargets = single_shot.AnchorTargets
match_anchors = single_shot.match_anchors
ohem_class_loss = single_shot.ohem_class_loss
box_loss = single_shot.box_loss


def _sigmoid_bce(logits, targets):
  """Elementwise BCE with logits, stable: softplus(x) - x t."""
  return jax.nn.softplus(logits) - logits * targets


def mask_loss(key: jax.Array, prototypes: jax.Array, coefficients: jax.Array,
              targets: AnchorTargets, gt_boxes: jax.Array, gt_masks: jax.Array, *,
              stride: int, masks_per_image: int) -> jax.Array:
  """Summed box-area-normalised mask BCE of at most `masks_per_image` positives per image.

  Args:
    key: PRNG key choosing the positives when there are more than the cap.
    prototypes: [B, h, w, k]; coefficients [B, A, k].
    targets: the batch's `AnchorTargets` ([B, A] ...).
    gt_boxes: [B, G, 4] input pixels; gt_masks [B, G, h, w] 0/1 at prototype resolution.
    stride: input pixels per prototype pixel.
    masks_per_image: static cap M.

  Returns:
    scalar: the sum over the chosen positives (divide by the number of positives).
  """
  positive = targets.labels > 0
  noise = jax.random.uniform(key, positive.shape)
  order, chosen_index = jax.lax.top_k(jnp.where(positive, noise, -1.0),
                                      min(masks_per_image, positive.shape[1]))
  chosen = order >= 0.0  # [B, M]
  coefficients = jnp.take_along_axis(coefficients, chosen_index[..., None], axis=1)
  gt_index = jnp.take_along_axis(targets.gt_index, chosen_index, axis=1)
  logits = mask_ops.assemble_masks(prototypes, coefficients)  # [B, M, h, w]
  h, w = logits.shape[2:]
  mask_targets = jnp.take_along_axis(gt_masks, gt_index[:, :, None, None], axis=1)
  boxes = jnp.take_along_axis(gt_boxes, gt_index[..., None], axis=1)
  region = mask_ops.box_region(boxes, (h, w), stride, padding=1.0)
  area = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])) / stride**2
  per_mask = jnp.sum(jnp.where(region, _sigmoid_bce(logits, mask_targets), 0.0), axis=(2, 3))
  per_image = jnp.sum(jnp.where(chosen, per_mask / jnp.maximum(area, 1.0), 0.0), axis=1)
  # A capped image stands for all its positives (the reference's old_num_pos / num_pos).
  scale = jnp.sum(positive, axis=1) / jnp.maximum(jnp.sum(chosen, axis=1), 1)
  return jnp.sum(per_image * scale)


def semantic_loss(logits: jax.Array, gt_masks: jax.Array, gt_classes: jax.Array,
                  gt_valid: jax.Array) -> jax.Array:
  """Sigmoid BCE of [B, h, w, K] logits vs per-class union masks, / (h w), mean over B.

  Args:
    logits: [B, h, w, K].
    gt_masks: [B, G, h, w] 0/1 at the logits' resolution.
    gt_classes: [B, G] 0-based; gt_valid [B, G] bool (crowds included).
  """
  b, h, w, k = logits.shape
  one_hot = jax.nn.one_hot(gt_classes, k) * gt_valid[..., None]  # [B, G, K]
  targets = jnp.max(gt_masks[..., None] * one_hot[:, :, None, None, :], axis=1)
  return jnp.sum(_sigmoid_bce(logits.astype(jnp.float32), targets)) / (h * w * b)


def binary_masks_at(masks: jax.Array, stride: int) -> jax.Array:
  """[B, G, H, W] input-resolution masks -> [B, G, H / s, W / s] float32 0/1 (coverage >= 0.5)."""
  return (mask_ops.downsample_masks(masks, stride) >= 0.5).astype(jnp.float32)


def yolact_losses(config, anchors: jax.Array, outputs: dict, batch: dict, key: jax.Array
                  ) -> tuple[dict, jax.Array]:
  """Every YOLACT loss of a batch, unweighted.

  Args:
    config: a `vision_jax.models.yolact.YolactConfig`.
    anchors: [A, 4].
    outputs: the model's training outputs (`Yolact.__call__(train=True)`).
    batch: the detection contract: boxes [B, G, 4], classes, valid, is_crowd [B, G],
      masks [B, G, H, W].
    key: PRNG key (mask positives).

  Returns:
    ({'class', 'box', 'mask'[, 'semantic']} scalars, number of positives).
  """
  crowd = batch['is_crowd'] & batch['valid']
  targets = jax.vmap(lambda b, c, v, cr: match_anchors(
      anchors, b, c, v, cr, positive_iou=config.positive_iou,
      negative_iou=config.negative_iou, crowd_iou=config.crowd_iou,
      box_weights=config.box_weights))(batch['boxes'], batch['classes'], batch['valid'], crowd)
  positive = targets.labels > 0
  num_positive = jnp.sum(positive)
  normaliser = jnp.maximum(num_positive, 1).astype(jnp.float32)
  terms = {
      'class': ohem_class_loss(outputs['class_logits'], targets.labels,
                               config.negatives_per_positive) / normaliser,
      'box': box_loss(outputs['box_deltas'], targets.box_targets, positive) / normaliser,
      'mask': mask_loss(key, outputs['prototypes'], outputs['coefficients'], targets,
                        batch['boxes'], binary_masks_at(batch['masks'], config.proto_stride),
                        stride=config.proto_stride,
                        masks_per_image=config.masks_per_image) / normaliser,
  }
  if 'semantic_logits' in outputs:
    stride = batch['masks'].shape[-1] // outputs['semantic_logits'].shape[2]
    terms['semantic'] = semantic_loss(outputs['semantic_logits'],
                                      binary_masks_at(batch['masks'], stride),
                                      batch['classes'], batch['valid'] & ~batch['is_crowd'])
  return terms, num_positive
