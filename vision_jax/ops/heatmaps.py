"""Keypoint heatmap primitives (CenterNet, CornerNet), in pure jnp (static shapes, jit-able).

Gaussian radii (CenterNet's and CornerNet's rules), gaussians drawn per object class into
a heatmap, and reading feature vectors at flat positions. The CenterNet target assembly
built from them lives with its loss (`vision_jax.losses.centernet`).

Conventions
  * Boxes are (x1, y1, x2, y2) float32 in input-image pixels, pixel-edge convention
    (a box covering pixel columns c0..c1 spans x in [c0, c1 + 1)).
  * The output grid has stride `stride`: output cell (i, j) covers input pixels
    [stride*j, stride*(j+1)) x [stride*i, stride*(i+1)). "Output units" are input pixels
    divided by `stride`; a continuous output coordinate u lies in cell floor(u).
  * Maps are NHWC: heatmap [B, h, w, num_classes].
  * Points and sizes are (x, y) and (w, h) ordered, like boxes.

What follows the official CenterNet code (xingyizhou/CenterNet, ctdet dataset):
  * radius = max(0, floor(gaussian_radius(ceil(h_out), ceil(w_out), 0.7))) on the box
    size in output units; the gaussian has sigma = (2 * radius + 1) / 6 and is
    truncated to the (2r+1) x (2r+1) window around the integer center;
  * overlapping gaussians of one class combine by element-wise maximum;
  * the peak value is exactly 1.0 at the integer center floor(center / stride);
  * size targets (w, h) are in OUTPUT units; offset = center / stride - int center.
One deliberate difference: official code clips boxes to [0, out - 1] output units,
which shrinks boxes touching the right/bottom edge by up to one cell; here boxes are
clipped to the image [0, out] and only the integer center is clamped to out - 1.
"""
import functools

import jax
import jax.numpy as jnp


def gaussian_radius(height, width, min_overlap: float = 0.7):
  """CornerNet / CenterNet's gaussian radius for a box of (height, width).

  The smallest of the three quadratic-case solutions of the official code
  (`gaussian_radius` in CenterNet's image.py), including its quirk of dividing each
  solution by 2 rather than 2a. Elementwise over broadcastable arrays.

  Args:
    height, width: box size (any units; CenterNet uses output units, ceil'ed).
    min_overlap: the IoU a box displaced by the radius must keep.

  Returns:
    float32 radius, same broadcast shape. Not floored.
  """
  h = jnp.asarray(height, jnp.float32)
  w = jnp.asarray(width, jnp.float32)
  # Case 1: the displaced box is shifted by r (partial overlap with the ground truth).
  b1 = h + w
  c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
  r1 = (b1 + jnp.sqrt(jnp.maximum(b1 * b1 - 4 * c1, 0.0))) / 2
  # Case 2: the displaced box lies inside the ground truth (both corners moved in).
  a2 = 4.0
  b2 = 2 * (h + w)
  c2 = (1 - min_overlap) * w * h
  r2 = (b2 + jnp.sqrt(jnp.maximum(b2 * b2 - 4 * a2 * c2, 0.0))) / 2
  # Case 3: the displaced box encloses the ground truth (both corners moved out).
  a3 = 4 * min_overlap
  b3 = -2 * min_overlap * (h + w)
  c3 = (min_overlap - 1) * w * h
  sq3 = jnp.sqrt(jnp.maximum(b3 * b3 - 4 * a3 * c3, 0.0))
  # (b3 + sq3) / 2 with b3 < 0 cancels badly in float32; this equal form does not.
  den3 = sq3 - b3
  r3 = jnp.where(den3 > 0, (-4 * a3 * c3) / jnp.where(den3 > 0, den3, 1.0) / 2, 0.0)
  return jnp.minimum(jnp.minimum(r1, r2), r3)


def cornernet_gaussian_radius(height, width, min_overlap: float = 0.7):
  """CornerNet's gaussian radius for a box of (height, width): the exact quadratic roots.

  `gaussian_radius` in CornerNet's sample/utils.py (princeton-vl/CornerNet), which solves
  the same three quadratics as `gaussian_radius` above with the textbook roots: the
  smaller root in cases 1 and 2, and every root divided by 2a (CenterNet: the larger
  root, divided by 2): r1 = (b1 - sq1) / 2, r2 = (b2 - sq2) / 8,
  r3 = (b3 + sq3) / (8 * min_overlap). Its radii are about 3x smaller than CenterNet's
  for the same box. (Duankaiwen/CenterNet, keypoint triplets, kept
  CenterNet's formula: use `gaussian_radius` there.) Both CornerNet and CenterNet floor the
  result and clamp it at 0 before drawing.

  Args:
    height, width: box size in output units (CornerNet ceils them first).
    min_overlap: the IoU a box with corners displaced by the radius must keep.

  Returns:
    float32 radius, the broadcast shape of height and width. Not floored.
  """
  h = jnp.asarray(height, jnp.float32)
  w = jnp.asarray(width, jnp.float32)

  def small_root(a, b, c):
    # (b - sqrt(b^2 - 4ac)) / 2a == 2c / (b + sqrt(b^2 - 4ac)), without the cancellation.
    den = b + jnp.sqrt(jnp.maximum(b * b - 4 * a * c, 0.0))
    return jnp.where(den > 0, 2 * c / jnp.where(den > 0, den, 1.0), 0.0)

  r1 = small_root(1.0, h + w, w * h * (1 - min_overlap) / (1 + min_overlap))
  r2 = small_root(4.0, 2 * (h + w), (1 - min_overlap) * w * h)
  # (b3 + sq3) / 2a3 with b3 < 0, c3 <= 0: the root -2 c3 / (sq3 - b3).
  a3 = 4 * min_overlap
  b3 = -2 * min_overlap * (h + w)
  c3 = (min_overlap - 1) * w * h
  den3 = jnp.sqrt(jnp.maximum(b3 * b3 - 4 * a3 * c3, 0.0)) - b3
  r3 = jnp.where(den3 > 0, -2 * c3 / jnp.where(den3 > 0, den3, 1.0), 0.0)
  return jnp.minimum(jnp.minimum(r1, r2), r3)


def draw_gaussians(centers, radii, classes, mask, *, output_size, num_classes):
  """Element-wise max of truncated gaussians, one per object, into class channels.

  Args:
    centers: [B, M, 2] int32 (x, y) integer centers in output cells.
    radii: [B, M] int32 radii r >= 0; sigma = (2r + 1) / 6, window |dx|, |dy| <= r.
    classes: [B, M] int32 class of each object in [0, num_classes).
    mask: [B, M] bool, objects to draw (others contribute nothing).
    output_size: static (h, w) of the output grid.
    num_classes: static number of heatmap channels.

  Returns:
    [B, h, w, num_classes] float32 in [0, 1]; exactly 1.0 at each drawn center.
  """
  return _draw_gaussians(centers, radii, classes, mask,
                         output_size=tuple(int(s) for s in output_size),
                         num_classes=int(num_classes))


@functools.partial(jax.jit, static_argnames=('output_size', 'num_classes'))
def _draw_gaussians(centers, radii, classes, mask, *, output_size, num_classes):
  h, w = output_size
  batch, m = classes.shape
  radii = jnp.where(mask, radii, 0).astype(jnp.int32)
  sigma = (2 * radii.astype(jnp.float32) + 1) / 6
  dx = jnp.arange(w, dtype=jnp.int32)[None, None, :] - centers[..., 0:1]  # [B, M, w]
  dy = jnp.arange(h, dtype=jnp.int32)[None, None, :] - centers[..., 1:2]  # [B, M, h]
  inv = (1.0 / (2 * sigma * sigma))[..., None]
  # The gaussian is separable: exp(-(dx^2 + dy^2) / 2s^2) = gx * gy.
  gx = jnp.where(jnp.abs(dx) <= radii[..., None],
                 jnp.exp(-(dx * dx).astype(jnp.float32) * inv), 0.0)
  gy = jnp.where(jnp.abs(dy) <= radii[..., None],
                 jnp.exp(-(dy * dy).astype(jnp.float32) * inv), 0.0)
  g = gy[:, :, :, None] * gx[:, :, None, :]  # [B, M, h, w]
  g = jnp.where(mask[:, :, None, None], g, 0.0)
  # Scatter-max each object's map into its class channel: O(B*M*h*w), not *C.
  cls = jnp.clip(classes, 0, num_classes - 1).astype(jnp.int32)
  b_idx = jnp.broadcast_to(jnp.arange(batch)[:, None, None, None], g.shape)
  y_idx = jnp.broadcast_to(jnp.arange(h)[None, None, :, None], g.shape)
  x_idx = jnp.broadcast_to(jnp.arange(w)[None, None, None, :], g.shape)
  c_idx = jnp.broadcast_to(cls[:, :, None, None], g.shape)
  heatmap = jnp.zeros((batch, h, w, num_classes), jnp.float32)
  return heatmap.at[b_idx, y_idx, x_idx, c_idx].max(g, mode='drop')


def local_peaks(heat, kernel: int = 3):
  """Keypoint heatmap peaks: `heat` where it equals the maximum of its kernel x kernel
  window (per channel; plateaus keep all their pixels, as the official CenterNet and
  CornerNet `_nms`), 0 elsewhere. heat: [B, h, w, C] float probabilities."""
  pooled = jax.lax.reduce_window(heat, -jnp.inf, jax.lax.max, (1, kernel, kernel, 1),
                                 (1, 1, 1, 1), 'SAME')
  return jnp.where(pooled == heat, heat, 0.0)


def gather_features(feature_map, indices):
  """Reads feature vectors at flat spatial indices (CenterNet's _transpose_and_gather_feat).

  Args:
    feature_map: [B, h, w, C].
    indices: [B, K] int, flat index y * w + x.

  Returns:
    [B, K, C], same dtype as feature_map.
  """
  batch, h, w, c = feature_map.shape
  flat = feature_map.reshape(batch, h * w, c)
  return jnp.take_along_axis(flat, indices[..., None].astype(jnp.int32), axis=1,
                             mode='clip')

