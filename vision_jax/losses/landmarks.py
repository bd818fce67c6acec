"""Landmark localization losses: heatmap MSE over stacks, and coordinate L1.

Both take per-point weights (1 for labelled points, 0 for unlabelled ones and padding)
so unlabelled points carry no gradient.
"""
import jax.numpy as jnp


def heatmap_mse(heatmaps, targets, weights):
  """Stacked Hourglass's loss: per-stack MSE to the targets, summed over stacks.

  Args:
    heatmaps: [num_stacks, B, h, w, K] predicted maps (intermediate supervision: every
      stack is compared with the same targets).
    targets: [B, h, w, K] Gaussian targets (`vision_jax.ops.landmarks.gaussian_heatmaps`).
    weights: [B, K] per-map weights.

  Returns:
    scalar float32: sum over stacks of mean over (B, h, w, K) of w (pred - target)^2,
    i.e. the reference's per-stack mean squared error with unlabelled maps zeroed.
  """
  diff = heatmaps.astype(jnp.float32) - targets[None].astype(jnp.float32)
  w = jnp.asarray(weights, jnp.float32)[None, :, None, None, :]
  per_stack = jnp.mean(w * diff * diff, axis=(1, 2, 3, 4))
  return jnp.sum(per_stack)


def coordinate_l1(points, targets, weights):
  """Mean L1 over weighted coordinates.

  Args:
    points: [..., B, K, 2] predictions (leading axes, e.g. stacks, are summed over).
    targets: [B, K, 2], in the same units (e.g. normalised (x, y) / S).
    weights: [B, K].

  Returns:
    scalar float32: sum over leading axes of sum_bk w |p - t|_1 / (2 max(1, sum w)).
  """
  points = jnp.asarray(points, jnp.float32)
  w = jnp.asarray(weights, jnp.float32)
  diff = jnp.abs(points - jnp.asarray(targets, jnp.float32)) * w[..., None]
  return jnp.sum(diff) / (2.0 * jnp.maximum(jnp.sum(w), 1.0))
