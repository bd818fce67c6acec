"""Deformable convolution (DCN v1, and v2 with a modulation mask) in plain JAX; exact to
`torchvision.ops.deform_conv2d`.

Conventions
-----------
* NHWC features `[N, H, W, Cin]`, HWIO kernels `[kh, kw, Cin // groups, Cout]`.
* Offsets `[N, Ho, Wo, 2 * G * kh * kw]` are torchvision's offset channels moved last, in
  torchvision's order: offset group `g`, then kernel position `k = i * kw + j` (row-major),
  then `(dy, dx)`, so channel `2 * (g * kh * kw + k) + {0: dy, 1: dx}`. They are in pixels
  of the input map. `G` (offset groups) is inferred from the last dimension; input channel
  `c` is sampled with the offsets of group `c // (Cin // G)`.
* The mask (v2) is `[N, Ho, Wo, G * kh * kw]`, channel `g * kh * kw + k`, multiplying
  each sample (any real value; DCNv2 feeds sigmoid outputs).
* Kernel tap `(i, j)` of output pixel `(oy, ox)` samples the input at
  `y = oy * sh - ph + i * dh + dy`, `x = ox * sw - pw + j * dw + dx`: pixel centres at
  integer coordinates, zero padding.
* Bilinear sampling as in torchvision's kernel: each of the four corners of a sample that
  lies outside the map contributes 0, so samples fade to zero within one pixel of the
  border and a sample with `y <= -1`, `y >= H`, `x <= -1` or `x >= W` is 0. Non-finite
  offsets give NaN outputs (a diverged offset branch shows, it is not silently masked).

How it runs
-----------
The input is viewed as a table of rows `[N * H * W * G, Cin // G]` (one row per pixel and
offset group), so every bilinear corner is one gather of a contiguous channel vector at a
flat index, weighted by a scalar (bilinear factor x validity x mask). The four weighted
gathers form the sampled columns `[N, Ho, Wo, kh * kw, Cin]` (one fused expression; the
corners are not materialised separately), and the convolution is one matmul (einsum) of
the columns with the kernel, `[N * Ho * Wo, kh * kw * Cin] x [kh * kw * Cin, Cout]` (a
plain dot for groups == 1, an einsum batched over the weight groups otherwise). No loop over output positions; static shapes; runs under jit / vmap / grad
on every backend.

Gradients are JAX's autodiff of this forward, which equals torchvision's backward:
the input gradient is the scatter-add of the corner weights (col2im), the mask gradient the
sampled value times the column cotangent, and the offset gradient the derivative of the
piecewise-bilinear sample, corner by corner (torchvision's `get_coordinate_weight`). The
corner indices are piecewise constant, so at an integer coordinate the offset gradient is
the one-sided derivative from the right (the cell starting there); in particular a sample at
exactly `y = -1` (or `x = -1`) is 0 but has torchvision's non-zero derivative towards the
map, and samples further out have zero gradient. The sampling is wrapped in
`jax.checkpoint`, so the backward recomputes the gathered corners instead of keeping four
column-sized residuals alive between forward and backward.
"""
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp

IntOrPair = Union[int, Sequence[int]]


def _pair(name: str, value: IntOrPair, minimum: int) -> tuple[int, int]:
  if isinstance(value, int):
    pair = (value, value)
  else:
    pair = tuple(value)
    if len(pair) != 2:
      raise ValueError(f'deform_conv2d: {name} must be an int or an (h, w) pair, got {value!r}')
  if any(int(v) != v or v < minimum for v in pair):
    raise ValueError(f'deform_conv2d: {name} must be ints >= {minimum}, got {value!r}')
  return int(pair[0]), int(pair[1])


def _compute_dtype(*arrays):
  """float32, or float64 where an input is float64 (never bf16 / f16 inside)."""
  dtype = jnp.float32
  for a in arrays:
    if a is not None and jnp.issubdtype(a.dtype, jnp.floating):
      dtype = jnp.promote_types(dtype, a.dtype)
  return dtype


def output_size(height: int, width: int, kernel_size: IntOrPair, *, stride: IntOrPair = 1,
                padding: IntOrPair = 0, dilation: IntOrPair = 1) -> tuple[int, int]:
  """`(Ho, Wo)` of a (deformable) convolution: `(H + 2p - d * (k - 1) - 1) // s + 1` per axis."""
  (kh, kw) = _pair('kernel_size', kernel_size, 1)
  (sh, sw), (ph, pw) = _pair('stride', stride, 1), _pair('padding', padding, 0)
  (dh, dw) = _pair('dilation', dilation, 1)
  return ((height + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
          (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


def _check(x, offset, weight, mask, stride, padding, dilation, groups):
  """Validates shapes; returns (offset groups G, Ho, Wo)."""
  for name, a, layout in (('x', x, '[N, H, W, Cin]'), ('offset', offset,
                                                       '[N, Ho, Wo, 2 * G * kh * kw]'),
                          ('weight', weight, '[kh, kw, Cin // groups, Cout] (HWIO)'),
                          ('mask', mask, '[N, Ho, Wo, G * kh * kw]')):
    if a is not None and a.ndim != 4:
      raise ValueError(f'deform_conv2d: {name} must be rank 4, {layout}, got shape '
                       f'{tuple(a.shape)}')
  n, h, w, cin = x.shape
  kh, kw, wcin, cout = weight.shape
  if isinstance(groups, bool) or int(groups) != groups or groups < 1:
    raise ValueError(f'deform_conv2d: groups must be a positive int, got {groups!r}')
  if cin % groups:
    raise ValueError(f'deform_conv2d: Cin = {cin} (x shape {tuple(x.shape)}) is not divisible '
                     f'by groups = {groups}')
  if wcin != cin // groups or cout % groups:
    raise ValueError(
        f'deform_conv2d: weight must be [kh, kw, Cin // groups, Cout] = [{kh}, {kw}, '
        f'{cin // groups}, Cout] with Cout divisible by groups = {groups} for x shape '
        f'{tuple(x.shape)}, got weight shape {tuple(weight.shape)}')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f'deform_conv2d: x must be floating point, got {x.dtype}')
  ho, wo = output_size(h, w, (kh, kw), stride=stride, padding=padding, dilation=dilation)
  if ho < 1 or wo < 1:
    raise ValueError(
        f'deform_conv2d: empty output {ho}x{wo} for input {h}x{w}, kernel {kh}x{kw}, '
        f'stride {stride}, padding {padding}, dilation {dilation}')
  taps = kh * kw
  last = offset.shape[-1]
  num_groups = last // (2 * taps)
  if last % (2 * taps) or num_groups < 1 or cin % num_groups:
    raise ValueError(
        f'deform_conv2d: offset last dim must be 2 * G * kh * kw = 2 * G * {taps} with G '
        f'(offset groups) >= 1 dividing Cin = {cin}, got offset shape {tuple(offset.shape)}')
  want = (n, ho, wo, last)
  if tuple(offset.shape) != want:
    raise ValueError(
        f'deform_conv2d: offset must be [N, Ho, Wo, 2 * G * kh * kw] = {want} (the output '
        f'size for x {tuple(x.shape)}, kernel {kh}x{kw}, stride {stride}, padding '
        f'{padding}, dilation {dilation}), got offset shape {tuple(offset.shape)}')
  if mask is not None and tuple(mask.shape) != (n, ho, wo, num_groups * taps):
    raise ValueError(
        f'deform_conv2d: mask must be [N, Ho, Wo, G * kh * kw] = '
        f'{(n, ho, wo, num_groups * taps)} (G = {num_groups} from the offset shape '
        f'{tuple(offset.shape)}), got mask shape {tuple(mask.shape)}')
  return num_groups, ho, wo


def _sample(x, offset, mask, kernel_size, stride, padding, dilation, num_groups):
  """Sampled columns [N, Ho, Wo, kh * kw, Cin] (bilinear, mask applied)."""
  n, h, w, cin = x.shape
  _, ho, wo, _ = offset.shape
  kh, kw = kernel_size
  (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
  dtype = x.dtype
  taps = kh * kw
  # [N, Ho, Wo, G, K, 2] -> [N, Ho, Wo, K, G] per coordinate: the columns come out in
  # [K, Cin] order (channel c = g * Cin // G + c') without moving the large tensor.
  offset = jnp.swapaxes(offset.reshape(n, ho, wo, num_groups, taps, 2), 3, 4)
  tap_y = jnp.repeat(jnp.arange(kh) * dh, kw).astype(dtype)  # [K], row-major taps
  tap_x = jnp.tile(jnp.arange(kw) * dw, kh).astype(dtype)
  base_y = (jnp.arange(ho) * sh - ph).astype(dtype)
  base_x = (jnp.arange(wo) * sw - pw).astype(dtype)
  y = base_y[None, :, None, None, None] + tap_y[:, None] + offset[..., 0]  # [N, Ho, Wo, K, G]
  x_pos = base_x[None, None, :, None, None] + tap_x[:, None] + offset[..., 1]
  # Per-sample factor: the mask (1 without one), NaN at a non-finite position so that it
  # reaches the output (XLA turns `value * (corner valid)` into a select that would drop it).
  scale = (jnp.ones((), dtype) if mask is None
           else jnp.swapaxes(mask.reshape(n, ho, wo, num_groups, taps), 3, 4))
  scale = jnp.where(jnp.isfinite(y) & jnp.isfinite(x_pos), scale, jnp.nan)
  y0, x0 = jnp.floor(y), jnp.floor(x_pos)
  fy, fx = y - y0, x_pos - x0
  # Row of pixel p, offset group g of image b in the [N * H * W * G, Cin // G] table.
  row0 = (jnp.arange(n, dtype=jnp.int32) * (h * w * num_groups))[:, None, None, None, None]
  row0 = row0 + jnp.arange(num_groups, dtype=jnp.int32)
  table = x.reshape(n * h * w * num_groups, cin // num_groups)
  cols = None
  for dy, wy in ((0.0, 1.0 - fy), (1.0, fy)):
    for dx, wx in ((0.0, 1.0 - fx), (1.0, fx)):
      yy, xx = y0 + dy, x0 + dx
      valid = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
      pixel = jnp.where(valid, yy * w + xx, 0).astype(jnp.int32)
      weight = wy * wx * valid.astype(dtype) * scale
      term = table.at[row0 + pixel * num_groups].get(mode='promise_in_bounds')
      term = term * weight[..., None]
      cols = term if cols is None else cols + term
  return cols.reshape(n, ho, wo, taps, cin)  # [N, Ho, Wo, K, G, Cin // G] -> [.., K, Cin]


def deform_conv2d(x: jax.Array, offset: jax.Array, weight: jax.Array, *,
                  mask: Optional[jax.Array] = None, stride: IntOrPair = 1,
                  padding: IntOrPair = 0, dilation: IntOrPair = 1,
                  groups: int = 1) -> jax.Array:
  """Deformable 2-D convolution, NHWC; `torchvision.ops.deform_conv2d` without the bias.

  `out[b, oy, ox, o] = sum_{i, j, c} weight[i, j, c, o] * m * bilinear(x[b, :, :, c], y, x)`
  with `y = oy * sh - ph + i * dh + dy`, `x = ox * sw - pw + j * dw + dx`, `(dy, dx)` the
  offset and `m` the mask (1 without one) of kernel tap `k = i * kw + j` and the offset
  group of channel `c` at `(b, oy, ox)`; `c` runs over the input channels of output channel
  `o`'s weight group. See the module docstring for the layouts and the border rule (a
  sample at or beyond one pixel outside the map is 0, corners outside the map are 0).
  With zero offsets and no mask it equals `lax.conv_general_dilated(x, weight, stride,
  padding, rhs_dilation=dilation, feature_group_count=groups)`.

  Args:
    x: [N, H, W, Cin] float (float32, bfloat16, float16 or float64), NHWC.
    offset: [N, Ho, Wo, 2 * G * kh * kw] float, `(dy, dx)` in input pixels; channel
      `2 * (g * kh * kw + i * kw + j) + {0: dy, 1: dx}` (torchvision's order, moved last).
      G (offset groups) = last dim / (2 * kh * kw) must divide Cin.
    weight: [kh, kw, Cin // groups, Cout] (HWIO), Cout divisible by groups.
    mask: None (DCN v1) or [N, Ho, Wo, G * kh * kw] modulation (DCN v2), channel
      `g * kh * kw + i * kw + j`.
    stride: int or (sh, sw) >= 1.
    padding: int or (ph, pw) >= 0, zeros on both sides of each axis.
    dilation: int or (dh, dw) >= 1, kernel tap spacing.
    groups: weight groups (`feature_group_count`): input channel block `g` of
      Cin // groups channels feeds output channel block `g` of Cout // groups.

  Returns:
    [N, Ho, Wo, Cout] in `x.dtype`, `Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1`
    (likewise Wo). Sampling and the matmul run in float32 (float64 if an input is
    float64) and the result is cast back once.

  Raises:
    ValueError: a rank other than 4, Cin not divisible by groups, weight not
      [kh, kw, Cin // groups, Cout] with groups dividing Cout, offset last dim not
      2 * G * kh * kw with G dividing Cin, offset not at the output size [N, Ho, Wo, .],
      mask not [N, Ho, Wo, G * kh * kw], bad stride / padding / dilation, empty output.
    TypeError: x not floating point.
  """
  x, offset, weight = jnp.asarray(x), jnp.asarray(offset), jnp.asarray(weight)
  mask = None if mask is None else jnp.asarray(mask)
  stride = _pair('stride', stride, 1)
  padding = _pair('padding', padding, 0)
  dilation = _pair('dilation', dilation, 1)
  num_groups, ho, wo = _check(x, offset, weight, mask, stride, padding, dilation, groups)
  out_dtype = x.dtype
  dtype = _compute_dtype(x, offset, weight, mask)
  n, _, _, cin = x.shape
  kh, kw, _, cout = weight.shape
  sample = jax.checkpoint(_sample, static_argnums=(3, 4, 5, 6, 7))
  cols = sample(x.astype(dtype), offset.astype(dtype),
                None if mask is None else mask.astype(dtype), (kh, kw), stride, padding,
                dilation, num_groups)
  kernel = weight.astype(dtype)
  if groups == 1:  # one [N * Ho * Wo, K * Cin] x [K * Cin, Cout] matmul
    out = jnp.dot(cols.reshape(n * ho * wo, kh * kw * cin), kernel.reshape(-1, cout))
  else:
    cols = cols.reshape(n, ho, wo, kh * kw, groups, cin // groups)
    kernel = kernel.reshape(kh * kw, cin // groups, groups, cout // groups)
    out = jnp.einsum('nhwkgc,kcgo->nhwgo', cols, kernel)
  return out.reshape(n, ho, wo, cout).astype(out_dtype)
