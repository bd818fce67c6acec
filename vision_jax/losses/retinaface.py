"""RetinaFace's multi-task loss, static shapes (Deng et al. 2020, Pytorch_Retinaface's
MultiBoxLoss with the paper's weights).

Per image (vmapped), anchors are matched to faces (`single_shot.match_anchors`:
positive at IoU >= positive_iou, background below negative_iou, ignored in between,
every face forced onto its best anchor). Over the batch, with N = positives and
N_pts = positives whose matched face has labelled landmarks:
  class   2-way softmax cross-entropy on positives and OHEM negatives (3 per positive,
          hardest by background loss), / N.
  box     smooth-L1 (beta 1) of the coded box deltas on positives, / N.
  points  smooth-L1 of the coded 5 landmarks ((p - anchor centre) / (0.1 anchor size)),
          on labelled points of positives, summed over coordinates, / N_pts. Its
          transition `points_beta` is 1 code unit as in the reference: a tenth of the
          anchor's side, so 4-10 pixels on anchors of 40-100 and every sub-pixel error
          sits in the quadratic part, whose gradient vanishes with the error; a smaller
          beta (0: plain L1) keeps pulling sub-pixel errors in.
  mesh    the same for the dense mesh points, / N_pts.
A face's landmarks are labelled when any of its L points has visibility > 0 (WIDER
FACE's unlabelled faces have none); occluded points (visibility 1) count, as RetinaFace
annotates them too. Total = class + 0.25 box + 0.1 points + 0.01 mesh (the paper's
weights; the task's `config.loss`).
"""
import functools

import jax
import jax.numpy as jnp

from vision_jax.losses import regression
from vision_jax.losses import single_shot
from vision_jax.ops import boxes as box_ops

LOSS_NAMES = ('class', 'box', 'points', 'mesh')
DEFAULT_WEIGHTS = {'class': 1.0, 'box': 0.25, 'points': 0.1, 'mesh': 0.01}
DEFAULT_POINTS_BETA = 1.0  # the reference's smooth-L1 transition (module doc)


def _point_loss(predicted, targets, weights, beta):
  """Summed smooth-L1 (transition `beta`) of [B, N, K, 2] codes on [B, N, K] weights."""
  per = jnp.sum(regression.smooth_l1(predicted, targets, beta=beta), axis=-1)
  return jnp.sum(per * weights)


def retinaface_losses(config, anchors, outputs: dict, batch: dict, *,
                      points_beta: float = DEFAULT_POINTS_BETA) -> tuple[dict, dict]:
  """The four loss terms (unweighted) and statistics of one batch.

  Args:
    config: `models.retinaface.RetinaFaceConfig`.
    anchors: [N, 4] input-pixel anchors.
    outputs: the model's outputs.
    batch: the detection contract: boxes [B, G, 4], classes [B, G], valid [B, G],
      is_crowd [B, G], and keypoints [B, G, L + M, 3] (landmarks first, then the mesh)
      when the model has point branches.
    points_beta: smooth-L1 transition of the point and mesh codes (module doc).

  Returns:
    ({'class', 'box', 'points', 'mesh'} scalars, {'positives', 'labelled_positives'}).
  """
  match = functools.partial(single_shot.match_anchors, positive_iou=config.positive_iou,
                            negative_iou=config.negative_iou,
                            box_weights=config.box_weights)
  targets = jax.vmap(match, in_axes=(None, 0, 0, 0, 0))(
      anchors, batch['boxes'], batch['classes'], batch['valid'], batch['is_crowd'])
  positive = targets.labels > 0
  num_pos = jnp.maximum(jnp.sum(positive), 1).astype(jnp.float32)
  losses = {
      'class': single_shot.ohem_class_loss(outputs['class_logits'], targets.labels,
                                           config.negatives_per_positive) / num_pos,
      'box': single_shot.box_loss(outputs['box_deltas'], targets.box_targets,
                                  positive) / num_pos,
  }
  num_l, num_m = config.num_landmarks, config.num_mesh_points
  stats = {'positives': jnp.sum(positive).astype(jnp.float32)}
  if num_l or num_m:
    points = batch['keypoints']  # [B, G, L + M, 3]
    matched = jnp.take_along_axis(points, targets.gt_index[..., None, None], axis=1)
    labelled = jnp.any(matched[..., :num_l, 2] > 0, axis=-1) & positive  # [B, N]
    num_labelled = jnp.maximum(jnp.sum(labelled), 1).astype(jnp.float32)
    stats['labelled_positives'] = jnp.sum(labelled).astype(jnp.float32)
    for name, key, lo, hi in (('points', 'landmarks', 0, num_l),
                              ('mesh', 'mesh', num_l, num_l + num_m)):
      if hi == lo:
        losses[name] = jnp.zeros((), jnp.float32)
        continue
      part = matched[..., lo:hi, :]
      codes = box_ops.encode_points(part[..., :2], anchors[None],
                                     weight=config.point_weight)
      weights = (part[..., 2] > 0) & labelled[..., None]
      total = _point_loss(outputs[key], codes, weights.astype(jnp.float32), points_beta)
      losses[name] = total / num_labelled
  else:
    losses['points'] = losses['mesh'] = jnp.zeros((), jnp.float32)
  return losses, stats
