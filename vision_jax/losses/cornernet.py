"""CornerNet's losses (Law & Deng 2018), as the official code computes them.

* `corner_focal_loss`: the corner heatmaps' penalty-reduced focal loss with the official
  clamped sigmoid (`losses.focal.penalty_reduced_focal_loss` with clip=1e-4).
* `embedding_pull_push`: the associative-embedding pull / push losses that group a
  top-left with a bottom-right corner (princeton-vl/CornerNet `_ae_loss`, which
  Duankaiwen/CenterNet reuses unchanged).
* `cornernet_targets`: gaussian heatmaps, cells and offsets of the corners (and centers)
  from the padded detection batch; `offset_loss` (`_regr_loss`); `cornernet_loss`, the
  whole loss over the stacks (`AELoss`).

Gaussian radii for the corner heatmaps: CornerNet's rule is
`ops.heatmaps.cornernet_gaussian_radius`; keypoint-triplet CenterNet uses CenterNet's
`ops.heatmaps.gaussian_radius`.
"""
import jax
import jax.numpy as jnp

from vision_jax.losses import focal
from vision_jax.losses import regression
from vision_jax.ops import heatmaps

# The official `_ae_loss` adds this to every object count it divides by.
AE_EPS = 1e-4


def corner_focal_loss(logits, targets, num_objects=None, *, weights=None):
  """CornerNet's focal loss on one corner heatmap (top-left or bottom-right).

    p = clip(sigmoid(logits), 1e-4, 1 - 1e-4)
    loss = -1/max(1, n) * sum over the batch [ (1-p)^2 log(p)            where y == 1
                                               (1-y)^4 p^2 log(1-p)      elsewhere ]

  `_neg_loss` of the official code: n is the number of pixels with y == 1 in the whole
  batch (with no positive at all the sum is divided by 1). Pass `num_objects` to divide
  by the number of objects instead (they differ only where two objects' corners share a
  pixel of one class map).

  Args:
    logits: [B, h, w, C] heatmap logits.
    targets: [B, h, w, C] float gaussian heatmap, exact 1.0 at the corners.
    num_objects: optional scalar or [B] count of objects (summed).
    weights: optional [B] per-example weights (`penalty_reduced_focal_loss`).

  Returns:
    scalar float32 loss.
  """
  return focal.penalty_reduced_focal_loss(logits, targets, alpha=2.0, beta=4.0,
                                          weights=weights, clip=1e-4,
                                          num_objects=num_objects)


def embedding_pull_push(tl_embed, br_embed, valid, margin: float = 1.0):
  """CornerNet's associative-embedding losses, per image and summed over the batch.

  With e_tl, e_br the embeddings read at object k's two ground-truth corners,
  e_k = (e_tl + e_br) / 2, and n the number of valid objects OF THAT IMAGE:

    pull = sum_k [(e_tl - e_k)^2 + (e_br - e_k)^2] / (n + eps)
    push = sum_{k, j valid} [relu(margin - |e_k - e_j|) - margin / (n + eps)]
                            / (n (n - 1) + eps)

  eps = 1e-4 (`AE_EPS`). The push sum runs over ordered pairs INCLUDING k == j: each
  diagonal term is relu(margin) = margin, and the `- margin / (n + eps)` spread over the
  n^2 pairs cancels them up to eps. So push = sum_{k != j} relu(margin - |e_k - e_j|) /
  (n (n - 1) + eps) + r, a constant residue r = margin * n * eps / ((n + eps)
  (n (n - 1) + eps)) without gradient: about margin / (1 + eps) for n = 1 (an image with
  one object reports push ~ margin), about margin * eps / (n (n - 1)) for n >= 2, and 0
  for n = 0. This is the official `_ae_loss` to the letter (margin 1 is hard-coded there),
  including the residue; both losses are sums over the images, not means.

  Args:
    tl_embed: [B, K] float embeddings at the top-left corners of K (padded) objects.
    br_embed: [B, K] float embeddings at their bottom-right corners.
    valid: [B, K] bool, real objects.
    margin: the push margin (Delta = 1 in the paper).

  Returns:
    (pull, push): scalar float32 losses.
  """
  tl = jnp.asarray(tl_embed, jnp.float32)
  br = jnp.asarray(br_embed, jnp.float32)
  valid = jnp.asarray(valid, bool)
  if tl.ndim != 2 or tl.shape != br.shape or valid.shape != tl.shape:
    raise ValueError(f'expected equal [B, K] shapes, got {tl.shape}, {br.shape}, {valid.shape}')
  n = jnp.sum(valid, axis=1, dtype=jnp.float32)[:, None]  # [B, 1]
  mean = (tl + br) / 2
  spread = (jnp.square(tl - mean) + jnp.square(br - mean)) / (n + AE_EPS)
  pull = jnp.sum(jnp.where(valid, spread, 0.0))

  pairs = valid[:, :, None] & valid[:, None, :]  # [B, K, K], diagonal included
  n = n[:, :, None]
  gap = jax.nn.relu(margin - jnp.abs(mean[:, :, None] - mean[:, None, :]))
  dist = (gap - margin / (n + AE_EPS)) / (n * (n - 1) + AE_EPS)
  push = jnp.sum(jnp.where(pairs, dist, 0.0))
  return pull, push


def cornernet_targets(boxes, classes, valid, *, output_size, stride: int, num_classes: int,
                      radius_rule: str = 'cornernet', min_overlap: float = 0.3,
                      centers: bool = False) -> dict:
  """CornerNet (and keypoint-triplet) training targets for a padded batch of boxes.

  Each box (x1, y1, x2, y2) in input pixels is clipped to the image and divided by the
  stride; its top-left keypoint is (x1, y1), its bottom-right (x2, y2) and, with
  `centers`, its center ((x1 + x2) / 2, (y1 + y2) / 2), all in output units. A keypoint
  lies in cell floor(point) (clamped to the grid) and its offset is point - cell. Every
  keypoint of an object gets a gaussian of the same radius, from its size in output
  units, ceil'ed: `radius_rule` 'cornernet' (`ops.heatmaps.cornernet_gaussian_radius`) or
  'centernet' (`ops.heatmaps.gaussian_radius`), floored and clamped at 0.

  Args:
    boxes: [B, M, 4] float32 input-pixel boxes.
    classes: [B, M] int32 0-based classes.
    valid: [B, M] bool, real objects.
    output_size: static (h, w) of the heatmaps.
    stride: input pixels per output cell.
    num_classes: heatmap channels.
    radius_rule: 'cornernet' | 'centernet'.
    min_overlap: the radius rule's IoU.
    centers: also the center keypoints ('ct_*').

  Returns:
    {'<kind>_heat' [B, h, w, C] float32 (exact 1.0 at the keypoints), '<kind>_index'
     [B, M] int32 flat cell y * w + x, '<kind>_offset' [B, M, 2] float32, for kind in tl,
     br (and ct), 'mask' [B, M] bool: valid with a non-empty clipped box}; zero where
    mask is False.
  """
  out_h, out_w = (int(s) for s in output_size)
  b = jnp.asarray(boxes, jnp.float32) / stride
  b = jnp.clip(b, 0.0, jnp.array([out_w, out_h, out_w, out_h], jnp.float32))
  bw, bh = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
  mask = jnp.asarray(valid, bool) & (bw > 0) & (bh > 0)
  rule = {'cornernet': heatmaps.cornernet_gaussian_radius,
          'centernet': heatmaps.gaussian_radius}[radius_rule]
  radius = jnp.maximum(0, jnp.floor(rule(jnp.ceil(bh), jnp.ceil(bw), min_overlap)))
  radius = jnp.where(mask, radius, 0).astype(jnp.int32)
  points = {'tl': b[..., :2], 'br': b[..., 2:]}
  if centers:
    points['ct'] = (b[..., :2] + b[..., 2:]) / 2
  max_cell = jnp.array([out_w - 1, out_h - 1], jnp.int32)
  targets = {'mask': mask}
  for kind, point in points.items():
    cell = jnp.clip(jnp.floor(point).astype(jnp.int32), 0, max_cell)
    targets[f'{kind}_heat'] = heatmaps.draw_gaussians(
        cell, radius, classes, mask, output_size=(out_h, out_w), num_classes=num_classes)
    targets[f'{kind}_index'] = jnp.where(mask, cell[..., 1] * out_w + cell[..., 0], 0)
    targets[f'{kind}_offset'] = jnp.where(mask[..., None], point - cell, 0.0)
  return targets


def offset_loss(offsets, indices, targets, mask):
  """CornerNet's `_regr_loss`: smooth-L1 (beta 1) of the offsets read at the keypoints,
  summed over objects and (dx, dy), divided by (number of objects + 1e-4).

  offsets [B, h, w, 2]; indices [B, M] flat cells; targets [B, M, 2]; mask [B, M].
  """
  pred = heatmaps.gather_features(offsets, indices).astype(jnp.float32)
  m = jnp.asarray(mask, jnp.float32)
  per = regression.smooth_l1(pred, targets, beta=1.0) * m[..., None]
  return jnp.sum(per) / (jnp.sum(m) + AE_EPS)


DEFAULT_WEIGHTS = {'heatmap': 1.0, 'pull': 0.1, 'push': 0.1, 'offset': 1.0}


def cornernet_loss(stacks, targets: dict, weights=None) -> tuple[jax.Array, dict]:
  """The CornerNet / keypoint-triplet loss, averaged over the stacks (intermediate
  supervision), as the references' `AELoss`:

    per stack: heatmap (focal loss of every keypoint type, `corner_focal_loss`, each
               divided by the number of objects) + pull + push (`embedding_pull_push`)
               + offset (`offset_loss` of every keypoint type), each with its weight.

  Args:
    stacks: the model's list of per-stack output dicts.
    targets: `cornernet_targets` (with 'ct_*' when the outputs have a center head).
    weights: {'heatmap', 'pull', 'push', 'offset'} weights (DEFAULT_WEIGHTS).

  Returns:
    (total, {'loss', 'heatmap_loss', 'pull_loss', 'push_loss', 'offset_loss'}) where the
    terms are the unweighted stack averages.
  """
  weights = {**DEFAULT_WEIGHTS, **(weights or {})}
  mask = targets['mask']
  num = jnp.sum(mask, dtype=jnp.float32)
  kinds = [kind for kind in ('tl', 'br', 'ct') if f'{kind}_heat' in stacks[0]]
  terms = {'heatmap': 0.0, 'pull': 0.0, 'push': 0.0, 'offset': 0.0}
  for kind in kinds:
    if f'{kind}_heat' not in targets:
      raise ValueError(f"the outputs have '{kind}_heat' but the targets do not "
                       '(cornernet_targets(..., centers=True) for the triplet model)')
  for out in stacks:
    for kind in kinds:
      terms['heatmap'] += corner_focal_loss(out[f'{kind}_heat'], targets[f'{kind}_heat'], num)
      terms['offset'] += offset_loss(out[f'{kind}_offset'], targets[f'{kind}_index'],
                                     targets[f'{kind}_offset'], mask)
    tl = heatmaps.gather_features(out['tl_embed'], targets['tl_index'])[..., 0]
    br = heatmaps.gather_features(out['br_embed'], targets['br_index'])[..., 0]
    pull, push = embedding_pull_push(tl, br, mask)
    terms['pull'] += pull
    terms['push'] += push
  terms = {name: value / len(stacks) for name, value in terms.items()}
  loss = sum(weights[name] * value for name, value in terms.items())
  return loss, {'loss': loss, **{f'{name}_loss': value for name, value in terms.items()}}
