"""Feature warping by a dense flow field (YolactEdge's keyframe feature transfer).

Conventions
-----------
* Features are NHWC: `[B, H, W, C]`.
* A flow field is `[B, H, W, 2]`, channel order `(dx, dy)` (x along the width first),
  in pixels of the feature map it is applied to. It is a *backward* flow: the warped map
  at pixel `(x, y)` reads the source map at `(x + dx, y + dy)`.
* Pixel centres sit at integer coordinates: pixel `(x, y)` is the point `(x, y)`, the
  map spans `[0, W - 1] x [0, H - 1]` (torch's `align_corners=True` geometry).

`warp` is written in plain `jnp`: four gathers (one per bilinear corner) at flat indices
into the `[B, H * W, C]` table of C-vectors, weighted and summed. Static shapes, no host
round-trips; it runs under jit / vmap / grad / jvp on every backend.
"""
from typing import Sequence

import jax
import jax.numpy as jnp


def _check(features, flow):
  if features.ndim != 4:
    raise ValueError(
        f'warp: features must be [B, H, W, C] (NHWC), got shape {tuple(features.shape)}')
  want = tuple(features.shape[:3]) + (2,)
  if tuple(flow.shape) != want:
    raise ValueError(
        f'warp: flow must be [B, H, W, 2] = {want} (dx, dy) to match features [B, H, W, C] '
        f'= {tuple(features.shape)}, got flow shape {tuple(flow.shape)}')
  if not jnp.issubdtype(features.dtype, jnp.floating):
    raise TypeError(f'warp: features must be floating point, got {features.dtype}')


def _compute_dtype(*arrays):
  """float32, or float64 where an input is float64 (weights never in bf16 / f16)."""
  dtype = jnp.float32
  for a in arrays:
    if jnp.issubdtype(a.dtype, jnp.floating):
      dtype = jnp.promote_types(dtype, a.dtype)
  return dtype


def _corners(lo, frac, size, dtype):
  """The two neighbours along one axis: [(index int32, weight)] for `lo` and `lo + 1`.

  A neighbour outside `[0, size - 1]` gets weight 0 (zero padding) and a safe index 0.
  The mask multiplies the weight, so a NaN position still gives a NaN weight.
  """
  out = []
  for offset, weight in ((0.0, 1.0 - frac), (1.0, frac)):
    pos = lo + offset
    inside = (pos >= 0) & (pos <= size - 1)
    index = jnp.where(inside, pos, 0).astype(jnp.int32)
    out.append((index, weight * inside.astype(dtype)))
  return out


def warp(features: jax.Array, flow: jax.Array) -> jax.Array:
  """Bilinearly samples `features` at every pixel displaced by `flow` (backward warping).

  `out[b, y, x] = bilinear(features[b], x + flow[b, y, x, 0], y + flow[b, y, x, 1])`, pixel
  centres at integer coordinates. Each of the four bilinear corners that falls outside the
  map contributes zero (zero padding per corner), so samples near the border fade to zero
  and samples more than one pixel outside are exactly zero.

  This equals `torch.nn.functional.grid_sample(x, grid, mode='bilinear',
  padding_mode='zeros', align_corners=True)` with the pixel flow converted to normalised
  coordinates, `grid_x = 2 * (x + dx) / (W - 1) - 1`, `grid_y = 2 * (y + dy) / (H - 1) - 1`
  (for W, H > 1; this op also handles W or H == 1). Non-finite flow gives NaN outputs
  (where grid_sample gives 0), so a diverged flow net is visible, not silently masked.

  Gradients are exact with respect to both `features` (a scatter-add of the corner
  weights) and `flow` (the bilinear weights are linear in the fractional position; the
  corner indices are piecewise constant). The sample is a piecewise-bilinear function of
  the position, differentiable except where `x + dx` or `y + dy` is an integer; there
  the flow gradient is the one-sided derivative from the right (the cell `[k, k + 1]`
  starting at that integer), as in grid_sample's backward.

  Args:
    features: [B, H, W, C] float (float32, bfloat16, float16 or float64), NHWC.
    flow: [B, H, W, 2] float (or int) `(dx, dy)` in pixels of this feature map.

  Returns:
    [B, H, W, C] in `features.dtype`. Weights and the weighted sum are computed in float32
    (float64 if an input is float64) and cast back once at the end.

  Raises:
    ValueError: features not rank 4, or flow not [B, H, W, 2] matching features.
    TypeError: features not floating point.
  """
  features, flow = jnp.asarray(features), jnp.asarray(flow)
  _check(features, flow)
  b, h, w, c = features.shape
  dtype = _compute_dtype(features, flow)
  flow = flow.astype(dtype)
  x = jnp.arange(w, dtype=dtype)[None, None, :] + flow[..., 0]  # [B, H, W]
  y = jnp.arange(h, dtype=dtype)[:, None][None] + flow[..., 1]
  x0, y0 = jnp.floor(x), jnp.floor(y)
  xs = _corners(x0, x - x0, w, dtype)
  ys = _corners(y0, y - y0, h, dtype)
  table = features.reshape(b, h * w, c)
  batch = jnp.arange(b)[:, None]
  out = jnp.zeros((b, h * w, c), dtype)
  for iy, wy in ys:
    for ix, wx in xs:
      index = (iy * w + ix).reshape(b, h * w)
      weight = (wy * wx).reshape(b, h * w, 1)
      out = out + table[batch, index].astype(dtype) * weight
  return out.reshape(b, h, w, c).astype(features.dtype)


def resize_flow(flow: jax.Array, size: Sequence[int]) -> jax.Array:
  """Carries a pixel flow field to a feature map of another size (e.g. another FPN level).

  Bilinearly resizes the field with half-pixel centres (`align_corners=False`, as
  `torch.nn.functional.interpolate(mode='bilinear', align_corners=False)` and
  `tf.image.resize(method='bilinear', antialias=False)`: no antialiasing when shrinking,
  edge values repeat), then rescales the displacements to the new pixel size:
  `dx *= w / W`, `dy *= h / H`. A constant flow of (dx, dy) at [H, W] becomes the constant
  (dx * w / W, dy * h / H) at [h, w].

  Args:
    flow: [B, H, W, 2] float `(dx, dy)` in pixels of an [H, W] map.
    size: `(h, w)` static target size.

  Returns:
    [B, h, w, 2] `(dx, dy)` in pixels of an [h, w] map, in `flow.dtype` (computed in
    float32, or float64 for float64 input).

  Raises:
    ValueError: flow not [B, H, W, 2] or size not two positive ints.
  """
  flow = jnp.asarray(flow)
  if flow.ndim != 4 or flow.shape[-1] != 2:
    raise ValueError(f'resize_flow: flow must be [B, H, W, 2] (dx, dy), got shape '
                     f'{tuple(flow.shape)}')
  size = tuple(size)
  if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
    raise ValueError(f'resize_flow: size must be (h, w), two positive ints, got {size}')
  new_h, new_w = int(size[0]), int(size[1])
  b, h, w, _ = flow.shape
  dtype = _compute_dtype(flow)
  out = flow.astype(dtype)
  if (new_h, new_w) != (h, w):
    out = jax.image.resize(out, (b, new_h, new_w, 2), 'linear', antialias=False)
  out = out * jnp.asarray([new_w / w, new_h / h], dtype)
  return out.astype(flow.dtype if jnp.issubdtype(flow.dtype, jnp.floating) else dtype)
