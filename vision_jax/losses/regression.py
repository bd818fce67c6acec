"""Regression losses: masked L1 at object centers (CenterNet), smooth-L1.

Normalization of `masked_l1_loss` (document it when you pick a loss weight):
  normalize='objects' (default, the paper's 1/N sum_k |pred_k - target_k|_1): the L1
    norm of each object's vector, summed, divided by max(1, number of valid objects).
  normalize='elements' (the official code's RegL1Loss: sum / (mask.sum() * C + 1e-4)):
    divided by the number of valid scalar entries, i.e. 'objects' / C (1/2 for (w, h)).
The paper's weights (size 0.1, offset 1) were tuned with the official code, i.e.
'elements'.
"""
import jax.numpy as jnp

from vision_jax.ops import heatmaps


def masked_l1_loss(predictions, indices, targets, mask, *, normalize: str = 'objects'):
  """L1 between a dense prediction map read at object centers and per-object targets.

  Args:
    predictions: [B, h, w, C] dense map (e.g. CenterNet 'size' or 'offset').
    indices: [B, M] int32 flat center indices y * w + x (`losses.centernet.centernet_targets`).
    targets: [B, M, C] float32.
    mask: [B, M] bool (or float weights) of objects that count.
    normalize: 'objects' or 'elements', see the module docstring.

  Returns:
    scalar float32; 0 when no object is valid.
  """
  pred = heatmaps.gather_features(predictions, indices).astype(jnp.float32)
  m = jnp.asarray(mask, jnp.float32)
  diff = jnp.abs(pred - jnp.asarray(targets, jnp.float32)) * m[..., None]
  if normalize == 'objects':
    denom = jnp.sum(m)
  elif normalize == 'elements':
    denom = jnp.sum(m) * pred.shape[-1]
  else:
    raise ValueError(f"normalize must be 'objects' or 'elements', not {normalize!r}")
  return jnp.sum(diff) / jnp.maximum(denom, 1.0)


def smooth_l1(predictions, targets, *, beta: float = 1.0):
  """Element-wise smooth-L1 (Huber / beta), as torch.nn.functional.smooth_l1_loss.

    0.5 * d^2 / beta   if |d| < beta,   |d| - 0.5 * beta   otherwise  (d = pred - target);
  beta = 0 gives plain L1. No reduction: weight and normalize at the call site.

  Args:
    predictions, targets: broadcastable float arrays.
    beta: transition point.

  Returns:
    float32 array of the broadcast shape.
  """
  d = jnp.abs(jnp.asarray(predictions, jnp.float32) - jnp.asarray(targets, jnp.float32))
  if beta <= 0:
    return d
  return jnp.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)
