"""Max pooling over NHWC maps from strided slices, with torch's / XLA's gradient.

  y = max_pool(x, window=3, stride=2, padding=1)     # ResNet's stem pool

Equal to `flax.linen.max_pool` (padding with -inf) in value and gradient: the gradient
of each output goes to the first maximum of its window in row-major order, as XLA's
select-and-scatter and torch's max_pool2d backward do. The forward is XLA's
`reduce_window`; the backward is k * k strided compares and interior-padded adds,
elementwise work that XLA fuses: on XLA:CPU the ResNet stem pool's forward + backward
(2 x 256 x 256 x 64) takes 25 ms this way against 95 ms with select-and-scatter.
"""
import functools

import jax
import jax.numpy as jnp
from jax import lax


def _taps(x, window, stride, padding):
  """The window's k * k strided views of x padded with -inf: list of [N, OH, OW, C]."""
  n, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
               constant_values=-jnp.inf)
  oh = (h + 2 * padding - window) // stride + 1
  ow = (w + 2 * padding - window) // stride + 1
  views = []
  for i in range(window):
    for j in range(window):
      views.append(lax.slice(xp, (0, i, j, 0),
                             (n, i + stride * (oh - 1) + 1, j + stride * (ow - 1) + 1, c),
                             (1, stride, stride, 1)))
  return views, xp.shape


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
  """x [N, H, W, C] -> [N, (H + 2p - k) // s + 1, (W + 2p - k) // s + 1, C]."""
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1),
                           (1, stride, stride, 1),
                           ((0, 0), (padding, padding), (padding, padding), (0, 0)))


def _max_pool_fwd(x, window, stride, padding):
  y = max_pool(x, window, stride, padding)
  return y, (x, y)


def _max_pool_bwd(window, stride, padding, residuals, g):
  x, y = residuals
  views, padded_shape = _taps(x, window, stride, padding)
  _, hp, wp, _ = padded_shape
  oh, ow = y.shape[1:3]
  taken = jnp.zeros(y.shape, bool)
  grad = jnp.zeros(padded_shape, g.dtype)
  zero = jnp.zeros((), g.dtype)
  for tap, view in enumerate(views):
    i, j = divmod(tap, window)
    winner = (view == y) & ~taken  # the first maximum in row-major window order
    taken = taken | winner
    # Put the output grid back at rows i, i + s, ... and columns j, j + s, ...
    grad = grad + lax.pad(jnp.where(winner, g, zero), zero,
                          ((0, 0, 0), (i, hp - i - stride * (oh - 1) - 1, stride - 1),
                           (j, wp - j - stride * (ow - 1) - 1, stride - 1), (0, 0, 0)))
  h, w = x.shape[1:3]
  return (grad[:, padding:padding + h, padding:padding + w],)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
