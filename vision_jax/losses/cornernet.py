"""CornerNet's losses (Law & Deng 2018), as the official code computes them.

* `corner_focal_loss`: the corner heatmaps' penalty-reduced focal loss with the official
  clamped sigmoid (`losses.focal.penalty_reduced_focal_loss` with clip=1e-4).
* `embedding_pull_push`: the associative-embedding pull / push losses that group a
  top-left with a bottom-right corner (princeton-vl/CornerNet `_ae_loss`, which
  Duankaiwen/CenterNet reuses unchanged).

Gaussian radii for the corner heatmaps: CornerNet's rule is
`ops.heatmaps.cornernet_gaussian_radius`; keypoint-triplet CenterNet uses CenterNet's
`ops.heatmaps.gaussian_radius`.
"""
import jax
import jax.numpy as jnp

from vision_jax.losses import focal

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
