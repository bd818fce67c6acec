"""Landmark heatmaps (Stacked Hourglass): Gaussian targets and decoding, in pure jnp.

All functions are jit-able with static shapes (map sizes are Python ints).

Conventions
  * Maps are [..., h, w, K] (NHWC, one channel per landmark); points are [..., K, 2]
    float32 (x, y) in HEATMAP PIXELS, the pixel-edge convention of
    `vision_jax.ops.heatmaps` and of boxes: heatmap cell (i, j) covers [j, j + 1) x
    [i, i + 1), so its centre is (j + 0.5, i + 0.5), a continuous coordinate u lies in
    cell floor(u), and a map of stride s (4 for the hourglass) relates to input pixels
    by x_input = s * x_heatmap exactly (cell j covers input pixels [s j, s (j + 1))).
    The reference (pytorch_stacked_hourglass) uses the same one: it decodes
    argmax + 0.5 (+- 0.25) and multiplies by 4.
  * `visible` [..., K] bool: whether a landmark is drawn; the others get all-zero target
    maps and should carry no loss weight. With COCO-style visibility v (2 visible,
    1 occluded, 0 unlabelled, as `vision_jax.data.synthetic_faces`) pass v > 0: 300-W
    and WFLW train and score occluded points too.
  * Horizontal flip of an input of width W = s * w: x -> W - x for points, column
    j -> w - 1 - j for maps (exact in this convention: no one-pixel shift as in code
    that puts cell centres at integers), plus a left/right permutation of the landmarks.

Targets (`gaussian_heatmaps`): exp(-((X - x)^2 + (Y - y)^2) / (2 sigma^2)) at the cell
centres (X, Y). With `subpixel=True` the gaussian is centred on the point itself, so the
peak is 1 only when the point sits on a cell centre; `subpixel=False` centres it on the
centre of the point's cell (the reference's `int(pt)`), peak exactly 1 there. Points
outside the map draw nothing (as the reference). The reference uses sigma = 1 for
64 x 64 maps (output_res / 64) and cuts the gaussian at |dx|, |dy| > 3 sigma + 1
(`radius=3 * sigma + 1`); the default here does not cut it.

Decoding (`decode_heatmaps`): the argmax cell's centre moved a quarter pixel toward the
higher of its two neighbours along x and along y (the paper's rule; no move on a tie,
nor along an axis where the argmax is on the border: one neighbour is missing). For a
gaussian at a sub-pixel point away from the border the result is within 0.25 px of the
point. `refine_dark` (Zhang et al. 2020, "Distribution-Aware Coordinate Representation
for Human Pose Estimation", DARK) instead smooths the map with the training gaussian,
takes its log and moves the argmax by one Newton step (-H^-1 g from central differences):
exact for a gaussian map (its log is quadratic) up to the smoothing's border effects.
`soft_argmax` is the differentiable alternative (integral regression).
"""
from typing import Sequence

import jax
import jax.numpy as jnp


def _cell_centres(n: int):
  return jnp.arange(n, dtype=jnp.float32) + 0.5


def points_in_map(points, size):
  """Whether each point lies on the map: 0 <= x < w and 0 <= y < h.

  Args:
    points: [..., K, 2] (x, y) in heatmap pixels.
    size: static (h, w).

  Returns:
    [..., K] bool.
  """
  h, w = (int(s) for s in size)
  x, y = points[..., 0], points[..., 1]
  return (x >= 0) & (x < w) & (y >= 0) & (y < h)


def gaussian_heatmaps(points, visible, size, sigma, *, subpixel: bool = True,
                      radius: float | None = None):
  """Gaussian target maps, one channel per landmark.

  Args:
    points: [..., K, 2] float (x, y) in heatmap pixels (module conventions).
    visible: [..., K] bool; invisible points give all-zero maps.
    size: static (h, w) of the maps.
    sigma: gaussian std in heatmap pixels, a scalar or broadcastable to [..., K].
    subpixel: centre the gaussian on the point (True) or on the centre of its cell
      (False, the reference's; the peak is then exactly 1.0 at that cell).
    radius: zero the map where |X - cx| > radius or |Y - cy| > radius (a square window,
      as the reference with radius = 3 sigma + 1); None: no cut.

  Returns:
    [..., h, w, K] float32 in [0, 1]. Points outside the map (`points_in_map`) give
    all-zero maps, like invisible ones.
  """
  h, w = (int(s) for s in size)
  points = jnp.asarray(points, jnp.float32)
  centres = points if subpixel else jnp.floor(points) + 0.5
  sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), points.shape[:-1])
  inv = (0.5 / (sigma * sigma))[..., None]
  dx = _cell_centres(w) - centres[..., 0:1]  # [..., K, w]
  dy = _cell_centres(h) - centres[..., 1:2]  # [..., K, h]
  gx = jnp.exp(-dx * dx * inv)
  gy = jnp.exp(-dy * dy * inv)
  if radius is not None:
    gx = jnp.where(jnp.abs(dx) <= radius, gx, 0.0)
    gy = jnp.where(jnp.abs(dy) <= radius, gy, 0.0)
  draw = jnp.asarray(visible, bool) & points_in_map(points, (h, w))
  gy = jnp.where(draw[..., None], gy, 0.0)
  # The gaussian is separable: g(X, Y) = gx(X) * gy(Y).
  return jnp.einsum('...kh,...kw->...hwk', gy, gx)


def decode_heatmaps(heatmaps, *, quarter_offset: bool = True):
  """Argmax decoding with the paper's quarter-pixel shift.

  Args:
    heatmaps: [..., h, w, K].
    quarter_offset: move the argmax cell's centre 0.25 px toward the higher neighbour
      along each axis (module doc); False: the argmax cell's centre.

  Returns:
    points: [..., K, 2] float32 (x, y) in heatmap pixels.
    maxvals: [..., K] the maps' maxima (heatmaps' dtype): a confidence.
  """
  h, w, k = heatmaps.shape[-3:]
  flat = jnp.moveaxis(heatmaps.reshape(heatmaps.shape[:-3] + (h * w, k)), -1, -2)
  index = jnp.argmax(flat, axis=-1)  # [..., K]
  maxvals = jnp.take_along_axis(flat, index[..., None], axis=-1)[..., 0]
  ix, iy = index % w, index // w
  x = ix.astype(jnp.float32) + 0.5
  y = iy.astype(jnp.float32) + 0.5
  if quarter_offset:
    def at(offset):
      i = jnp.clip(index + offset, 0, h * w - 1)
      return jnp.take_along_axis(flat, i[..., None], axis=-1)[..., 0].astype(jnp.float32)
    shift_x = jnp.where((ix > 0) & (ix < w - 1), 0.25 * jnp.sign(at(1) - at(-1)), 0.0)
    shift_y = jnp.where((iy > 0) & (iy < h - 1), 0.25 * jnp.sign(at(w) - at(-w)), 0.0)
    x, y = x + shift_x, y + shift_y
  return jnp.stack([x, y], axis=-1), maxvals


def _blur_matrix(n: int, sigma: float):
  """[n, n] float32: 1-D gaussian smoothing with zero padding, as a matrix."""
  d = jnp.arange(n, dtype=jnp.float32)
  return jnp.exp(-(d[:, None] - d[None, :])**2 / (2.0 * sigma * sigma))


def refine_dark(heatmaps, points, sigma: float, *, max_shift: float = 1.0):
  """DARK sub-pixel refinement (module doc) of argmax-decoded points.

  Args:
    heatmaps: [..., h, w, K] predicted maps.
    points: [..., K, 2] the argmax cells' centres (x, y) in heatmap pixels, e.g.
      `decode_heatmaps(heatmaps, quarter_offset=False)[0]`.
    sigma: the smoothing gaussian's std in heatmap pixels (the training targets').
    max_shift: the Newton step is clipped to +-max_shift pixels per axis.

  Returns:
    [..., K, 2] float32 refined points. Where the log-map is not concave at the argmax
    (a flat or saddle-shaped peak) the point is left where it was.
  """
  h, w, _ = heatmaps.shape[-3:]
  maps = jnp.asarray(heatmaps, jnp.float32)
  peak = jnp.max(maps, axis=(-3, -2), keepdims=True)
  blurred = jnp.einsum('ih,...hwk,jw->...ijk', _blur_matrix(h, sigma), maps,
                       _blur_matrix(w, sigma))
  # Rescaled to the original peak as DARK does; the log needs positive values.
  blurred = blurred * peak / jnp.maximum(jnp.max(blurred, axis=(-3, -2), keepdims=True),
                                         1e-12)
  log_map = jnp.log(jnp.maximum(blurred, 1e-10))
  padded = jnp.pad(log_map, [(0, 0)] * (log_map.ndim - 3) + [(1, 1), (1, 1), (0, 0)],
                   mode='edge')
  flat = jnp.moveaxis(padded.reshape(padded.shape[:-3] + (-1, padded.shape[-1])), -1, -2)
  ix = jnp.floor(points[..., 0]).astype(jnp.int32) + 1  # padded coordinates
  iy = jnp.floor(points[..., 1]).astype(jnp.int32) + 1

  def at(dx, dy):
    index = jnp.clip(iy + dy, 0, h + 1) * (w + 2) + jnp.clip(ix + dx, 0, w + 1)
    return jnp.take_along_axis(flat, index[..., None], axis=-1)[..., 0]

  centre = at(0, 0)
  gx = 0.5 * (at(1, 0) - at(-1, 0))
  gy = 0.5 * (at(0, 1) - at(0, -1))
  hxx = at(1, 0) - 2.0 * centre + at(-1, 0)
  hyy = at(0, 1) - 2.0 * centre + at(0, -1)
  hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
  det = hxx * hyy - hxy * hxy
  concave = (hxx < 0) & (det > 1e-12)
  safe_det = jnp.where(concave, det, 1.0)
  shift_x = -(hyy * gx - hxy * gy) / safe_det
  shift_y = -(hxx * gy - hxy * gx) / safe_det
  shift = jnp.stack([shift_x, shift_y], axis=-1)
  shift = jnp.where(concave[..., None], jnp.clip(shift, -max_shift, max_shift), 0.0)
  return jnp.asarray(points, jnp.float32) + shift


def soft_argmax(heatmaps, beta: float = 1.0):
  """Integral regression (Sun et al. 2018): the expected cell centre under
  softmax(beta * heatmap) over each map. Differentiable everywhere.

  A large beta approaches the argmax cell's centre; with beta = 1 on unnormalised maps
  the uniform background pulls the estimate toward the map's centre, so train with it
  (as integral regression does) or use a sharp beta on target-like maps.

  Args:
    heatmaps: [..., h, w, K] logits.
    beta: inverse temperature.

  Returns:
    [..., K, 2] float32 (x, y) in heatmap pixels.
  """
  h, w, k = heatmaps.shape[-3:]
  logits = beta * jnp.asarray(heatmaps, jnp.float32)
  flat = logits.reshape(logits.shape[:-3] + (h * w, k))
  probs = jax.nn.softmax(flat, axis=-2).reshape(logits.shape)
  x = jnp.einsum('...hwk,w->...k', probs, _cell_centres(w))
  y = jnp.einsum('...hwk,h->...k', probs, _cell_centres(h))
  return jnp.stack([x, y], axis=-1)


def flip_permutation(num_points: int, pairs: Sequence[tuple[int, int]]) -> tuple[int, ...]:
  """The left/right permutation of `num_points` landmarks swapping each of `pairs`.

  E.g. 5 face points (left eye, right eye, nose, left mouth, right mouth):
  flip_permutation(5, [(0, 1), (3, 4)]) == (1, 0, 2, 4, 3).
  """
  perm = list(range(num_points))
  for a, b in pairs:
    perm[a], perm[b] = b, a
  return tuple(perm)


def flip_points(points, width, permutation):
  """Landmarks of the horizontally flipped image: x -> width - x, and re-labelled.

  Args:
    points: [..., K, 2] (x, y) in pixels of an image (or map) `width` wide; or
      [..., K, D] with (x, y) first, the rest (visibility, ...) carried along.
    width: the image's width, same units.
    permutation: [K] ints, `flip_permutation`'s.

  Returns:
    Same shape: out[..., k, :] = flipped point permutation[k].
  """
  points = jnp.asarray(points)
  flipped = points.at[..., 0].set(width - points[..., 0])
  return jnp.take(flipped, jnp.asarray(permutation, jnp.int32), axis=-2)


def unflip_heatmaps(flipped_heatmaps, permutation):
  """Maps predicted for the flipped image, brought back to the original image.

  Args:
    flipped_heatmaps: [..., h, w, K] predicted on the horizontally flipped input.
    permutation: [K] ints (`flip_permutation`).

  Returns:
    [..., h, w, K]: column j from column w - 1 - j, channel k from channel
    permutation[k].
  """
  maps = jnp.flip(flipped_heatmaps, axis=-2)
  return jnp.take(maps, jnp.asarray(permutation, jnp.int32), axis=-1)


def flip_average(heatmaps, flipped_heatmaps, permutation):
  """Test-time flip augmentation (the reference's test.py): the mean of the maps of the
  image and the un-flipped maps of its mirror image, [..., h, w, K] each."""
  return 0.5 * (heatmaps + unflip_heatmaps(flipped_heatmaps, permutation))
