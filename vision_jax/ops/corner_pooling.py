"""Corner and center pooling (CornerNet; CenterNet with keypoint triplets), in plain jnp.

The reference repos build these as custom C++/CUDA extensions; here they are running
maxima (`lax.cummax`) and full-axis maxima, so they run on every backend and under jit,
vmap and grad.

Conventions: x [N, H, W, C] (NHWC). Row index i runs down the image (H), column index
j runs right (W). CornerNet's pools, all with out.shape == x.shape:

  'top'     out[:, i, j] = max_{i' >= i} x[:, i', j]   (running max from the bottom row up)
  'bottom'  out[:, i, j] = max_{i' <= i} x[:, i', j]
  'left'    out[:, i, j] = max_{j' >= j} x[:, i, j']   (running max from the right column)
  'right'   out[:, i, j] = max_{j' <= j} x[:, i, j']

A top-left corner sums a 'top' and a 'left' pool; a bottom-right corner 'bottom' + 'right'.

Gradients. Each output's cotangent goes, whole, to one input: the arg-max of its running
max. On ties it goes to the tied input met FIRST in scan order, i.e. the one farthest from
the output position (for 'top' the lowest tied row). This is CornerNet's own C++ backward
(`_cpools/src/*_pool.cpp`: it updates the arg-max on `input > max_val`, strictly).
torch.cummax routes ties to the nearest tied input instead, and `lax.cummax`'s built-in
gradient splits them in halves along its scan tree, which is why `corner_pool` defines
its own JVP. Without ties all three agree. The JVP is a gather-free segmented scan, so
forward- and reverse-mode both work and the backward has a fixed summation order
(deterministic on every backend).
"""
import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp

# direction -> (axis of the NHWC map, scan from the end of the axis?)
_SCANS = {'top': (1, True), 'bottom': (1, False), 'left': (2, True), 'right': (2, False)}
# Cascade corner pooling: the outer pool's partner at the same corner (top-left, bottom-right).
_CROSS = {'top': 'left', 'left': 'top', 'bottom': 'right', 'right': 'bottom'}


def _previous(y, axis, reverse):
  """y shifted one step along the scan (the running max before each element); -inf first."""
  n = y.shape[axis]
  first = jnp.full_like(jax.lax.slice_in_dim(y, 0, 1, axis=axis), -jnp.inf)
  if reverse:
    return jnp.concatenate([jax.lax.slice_in_dim(y, 1, n, axis=axis), first], axis=axis)
  return jnp.concatenate([first, jax.lax.slice_in_dim(y, 0, n - 1, axis=axis)], axis=axis)


def _carry_forward(values, starts, axis, reverse):
  """out[i] = values[s], s the last position with starts[s] at or before i in scan order.

  The first position in scan order must be a start. Linear in `values` (selects with fixed
  predicates, slices, pads), so JAX transposes it without a scatter.
  """

  def combine(a, b):  # a precedes b in scan order
    (va, fa), (vb, fb) = a, b
    return jnp.where(fb, vb, va), fa | fb

  out, _ = jax.lax.associative_scan(combine, (values, starts), reverse=reverse, axis=axis)
  return out


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _running_max(x, axis, reverse):
  return jax.lax.cummax(x, axis=axis, reverse=reverse)


@_running_max.defjvp
def _running_max_jvp(axis, reverse, primals, tangents):
  (x,), (dx,) = primals, tangents
  y = jax.lax.cummax(x, axis=axis, reverse=reverse)
  # Where the running max is set anew (strictly greater: ties keep the earlier arg-max).
  starts = x > _previous(y, axis, reverse)
  return y, _carry_forward(dx, starts, axis, reverse)


def corner_pool(x: jax.Array, direction: str) -> jax.Array:
  """CornerNet's TopPool / BottomPool / LeftPool / RightPool (see the module doc).

  Args:
    x: [N, H, W, C] float feature map.
    direction: 'top', 'bottom', 'left' or 'right'.

  Returns:
    [N, H, W, C], same dtype: the running max of `x` in `direction`. Gradients go to the
    arg-max; ties to the tied input farthest from the output (CornerNet's C++ rule).
  """
  if direction not in _SCANS:
    raise ValueError(f'direction must be one of {sorted(_SCANS)}, got {direction!r}')
  x = jnp.asarray(x)
  if x.ndim != 4:
    raise ValueError(f'x must be [N, H, W, C], got shape {x.shape}')
  axis, reverse = _SCANS[direction]
  return _running_max(x, axis, reverse)


def center_pool(x: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
  """Center pooling (Duan et al. 2019): column max of `x` + row max of `y`.

    out[n, i, j, c] = max_{i'} x[n, i', j, c] + max_{j'} y[n, i, j', c]

  CenterNet (Duankaiwen/CenterNet, `pool_cross`) computes the two halves on two different
  3x3-conv outputs, as Bottom(Top(p1)) + Right(Left(p2)), which is the above with x = p1,
  y = p2; pass both. With `y` omitted both maxima are taken over `x`.

  Gradients: `jnp.max`'s, which splits a cotangent evenly among tied maxima (as torch's
  `amax`); the reference's cascaded C++ pools would route it to one of them instead.

  Args:
    x: [N, H, W, C] float, maximised over H (the vertical line through each position).
    y: optional [N, H, W, C] float, maximised over W (the horizontal line); default x.

  Returns:
    [N, H, W, C].
  """
  x = jnp.asarray(x)
  y = x if y is None else jnp.asarray(y)
  if x.ndim != 4 or x.shape != y.shape:
    raise ValueError(f'x and y must be equal [N, H, W, C] shapes, got {x.shape}, {y.shape}')
  return jnp.max(x, axis=1, keepdims=True) + jnp.max(y, axis=2, keepdims=True)


def cascade_corner_pool(x: jax.Array, look: jax.Array, direction: str, *,
                        mix: Optional[Callable[[jax.Array], jax.Array]] = None) -> jax.Array:
  """One branch of cascade corner pooling (Duan et al. 2019, CenterNet: Keypoint Triplets).

    out = corner_pool(mix(x + corner_pool(look, cross)), direction)

  with cross the other pool of the same corner: top <-> left, bottom <-> right. The inner
  pool first finds the maximum along the object's boundary line (e.g. 'left' looks right
  along a row), the outer pool then looks from it into the object. A corner's pooled map
  is the sum of its two branches with their own maps; for the top-left corner:

    tl = cascade_corner_pool(p1, look1, 'top', mix=conv_a)
         + cascade_corner_pool(p2, look2, 'left', mix=conv_b)

  This is Duankaiwen/CenterNet's `pool.forward` (models/CenterNet-104.py), with
  p1 = p1_conv1(x), look1 = look_conv1(x), conv_a = P1_look_conv (a bias-free 3x3
  convolution, applied to the sum before the outer pool), and the same for branch 2. The
  convolutions are the model's: pass them (e.g. bound flax submodules) as `mix`; without
  `mix` the branch is the paper's plain formula (no convolution in between).

  Args:
    x: [N, H, W, C] float, the branch's own features (p1_conv1 / p2_conv1 output).
    look: [N, H, W, C] float, the features the inner pool looks along (look_conv output).
    direction: the outer pool: 'top', 'left' (top-left corner), 'bottom' or 'right'.
    mix: optional function [N, H, W, C] -> [N, H, W, C'] applied before the outer pool.

  Returns:
    [N, H, W, C'] (C' = C without `mix`).
  """
  if direction not in _CROSS:
    raise ValueError(f'direction must be one of {sorted(_CROSS)}, got {direction!r}')
  inner = x + corner_pool(look, _CROSS[direction])
  if mix is not None:
    inner = mix(inner)
  return corner_pool(inner, direction)
