"""Focal losses on logits.

`penalty_reduced_focal_loss` is the pixel-wise logistic regression with focal loss of
CornerNet / CenterNet ("Objects as Points", eq. 1), with the official code's
normalization (`_neg_loss`): the sum over the whole batch divided by the number of
positive locations in the batch, max(1, num_pos).
"""
from typing import Optional

import jax
import jax.numpy as jnp


def penalty_reduced_focal_loss(logits, targets, *, alpha: float = 2.0, beta: float = 4.0,
                               weights=None, clip: Optional[float] = None,
                               num_objects=None):
  """CenterNet's penalty-reduced focal loss, from logits, numerically stable.

    p = sigmoid(logits); positives are targets == 1 (the gaussian peaks):
    loss = -1/max(1, N_pos) * sum[ (1-p)^alpha log(p)                    if y == 1
                                   (1-y)^beta p^alpha log(1-p)          otherwise ]

  By default log(p) and log(1-p) come from log_sigmoid(+-logits), so there is no clamp
  and no NaN/inf for large logits. The official code (CornerNet's and CenterNet's
  `_sigmoid`) clamps p to [1e-4, 1 - 1e-4] and takes logs of the clamped p, which caps the
  per-pixel loss and zeroes the gradient of saturated logits: `clip=1e-4` reproduces it.

  Args:
    logits: [B, h, w, C] heatmap logits (any float dtype; computed in float32).
    targets: [B, h, w, C] float32 gaussian heatmap in [0, 1] with exact 1.0 peaks.
    alpha: focusing exponent (2).
    beta: penalty-reduction exponent around peaks (4).
    weights: optional [B] per-example weights (e.g. example_valid as float), applied to
      both the loss and the positive count.
    clip: None (exact logs) or c: p = clip(sigmoid(logits), c, 1 - c) as the official code.
    num_objects: optional normaliser in place of the positive count (summed if an
      array); the loss is divided by max(1, num_objects).

  Returns:
    scalar float32 loss.
  """
  x = jnp.asarray(logits, jnp.float32)
  y = jnp.asarray(targets, jnp.float32)
  if clip is None:
    log_p = jax.nn.log_sigmoid(x)
    log_1mp = jax.nn.log_sigmoid(-x)
    p = jnp.exp(log_p)
  else:
    p = jnp.clip(jax.nn.sigmoid(x), clip, 1.0 - clip)
    log_p = jnp.log(p)
    log_1mp = jnp.log(1.0 - p)
  pos = (y == 1.0).astype(jnp.float32)
  pos_loss = pos * jnp.power(1.0 - p, alpha) * log_p
  neg_loss = (1.0 - pos) * jnp.power(1.0 - y, beta) * jnp.power(p, alpha) * log_1mp
  per_pixel = pos_loss + neg_loss
  if weights is not None:
    w = jnp.asarray(weights, jnp.float32).reshape((-1,) + (1,) * (x.ndim - 1))
    per_pixel = per_pixel * w
    pos = pos * w
  num_pos = jnp.sum(pos) if num_objects is None else jnp.sum(
      jnp.asarray(num_objects, jnp.float32))
  return -jnp.sum(per_pixel) / jnp.maximum(num_pos, 1.0)
