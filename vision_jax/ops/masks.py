"""Instance-mask helpers on dense grids: downsampling, box crops, prototype assembly.

Masks are [..., H, W] on a pixel grid whose pixel (r, c) covers [c, c + 1) x [r, r + 1) in
its own units; boxes are (x1, y1, x2, y2) in input-image pixels and are mapped onto a
grid of stride s (one grid pixel = s input pixels) by dividing by s.
"""
import jax
import jax.numpy as jnp


def downsample_masks(masks: jax.Array, factor: int) -> jax.Array:
  """Area-average downsampling by an integer factor.

  Args:
    masks: [..., H, W] (any dtype; 0/1 masks give coverage fractions), H and W multiples
      of `factor`.
    factor: static integer stride.

  Returns:
    [..., H / factor, W / factor] float32: the mean of each factor x factor block.
  """
  h, w = masks.shape[-2:]
  if h % factor or w % factor:
    raise ValueError(f'mask size {(h, w)} is not a multiple of the factor {factor}')
  x = masks.astype(jnp.float32)
  if factor == 1:
    return x
  x = x.reshape(*masks.shape[:-2], h // factor, factor, w // factor, factor)
  return jnp.mean(x, axis=(-3, -1))


def box_region(boxes: jax.Array, size, stride: float = 1.0, padding: float = 0.0
               ) -> jax.Array:
  """Which grid pixels lie in each box: YOLACT's `crop`, as a boolean mask.

  Grid pixel (r, c) is inside when x1 / stride - padding <= c < x2 / stride + padding and
  likewise for rows, with the bounds clamped to the grid (the reference's sanitised
  coordinates, padding in grid pixels).

  Args:
    boxes: [..., 4] (x1, y1, x2, y2) input pixels.
    size: (h, w) of the grid.
    stride: input pixels per grid pixel.
    padding: grid pixels added on every side.

  Returns:
    [..., h, w] bool.
  """
  h, w = size
  b = boxes.astype(jnp.float32) / stride
  x1 = jnp.maximum(jnp.minimum(b[..., 0], b[..., 2]) - padding, 0.0)
  x2 = jnp.minimum(jnp.maximum(b[..., 0], b[..., 2]) + padding, w)
  y1 = jnp.maximum(jnp.minimum(b[..., 1], b[..., 3]) - padding, 0.0)
  y2 = jnp.minimum(jnp.maximum(b[..., 1], b[..., 3]) + padding, h)
  cols = jnp.arange(w, dtype=jnp.float32)
  rows = jnp.arange(h, dtype=jnp.float32)
  in_x = (cols >= x1[..., None]) & (cols < x2[..., None])  # [..., w]
  in_y = (rows >= y1[..., None]) & (rows < y2[..., None])  # [..., h]
  return in_y[..., :, None] & in_x[..., None, :]


def assemble_masks(prototypes: jax.Array, coefficients: jax.Array) -> jax.Array:
  """YOLACT's linear combination: mask logits P C^T, one map per coefficient vector.

  Args:
    prototypes: [B, h, w, k].
    coefficients: [B, N, k].

  Returns:
    [B, N, h, w] float32 logits (apply a sigmoid for probabilities).
  """
  if prototypes.shape[-1] != coefficients.shape[-1] or prototypes.shape[0] != coefficients.shape[0]:
    raise ValueError(f'prototypes {prototypes.shape} and coefficients {coefficients.shape} '
                     'must share the batch and k')
  return jnp.einsum('bhwk,bnk->bnhw', prototypes.astype(jnp.float32),
                    coefficients.astype(jnp.float32))
