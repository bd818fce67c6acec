"""Learned x2 upsampling layers with torch's ConvTranspose2d semantics, NHWC.

Both keep torch's weight layout up to a transpose: param 'kernel' is
[kh, kw, out, in] (torch: [in, out, kh, kw]), not flipped, so converted torch weights
drop in with `weight.transpose(2, 3, 1, 0)`.

  ConvTranspose2x2   kernel 2, stride 2, padding 0 (Mask R-CNN's mask deconv): every
                     input pixel becomes one 2x2 output block, i.e. one matmul.
  ConvTranspose4x4   kernel 4, stride 2, padding 1 (CenterNet's neck, Keypoint R-CNN's
                     predictor): 4 sub-pixel 2x2 convolutions interleaved.

and the parameter-free rearrangement of sub-pixel convolution (Shi et al. 2016):

  pixel_shuffle      torch.nn.PixelShuffle(r): [B, H, W, C r^2] -> [B, rH, rW, C] (SRResNet).
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.nn import conv as conv_lib
from vision_jax.ops import backend

_FAN_OUT_RELU = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def pixel_shuffle(x, r: int):
  """torch.nn.PixelShuffle(r) on NHWC: x [B, H, W, C * r * r] -> [B, H * r, W * r, C].

    y[b, h * r + i, w * r + j, c] = x[b, h, w, c * r * r + i * r + j]

  torch's channel-major order, so a converted torch conv that feeds a PixelShuffle keeps
  its output-channel order. Not tf.nn.depth_to_space's order, which reads channel
  (i * r + j) * C + c.

  Raises:
    ValueError: the channels are not a multiple of r * r.
  """
  b, h, w, channels = x.shape
  if channels % (r * r):
    raise ValueError(f'pixel_shuffle: {channels} channels is not a multiple of r*r = {r * r}')
  c = channels // (r * r)
  y = x.reshape(b, h, w, c, r, r).transpose(0, 1, 4, 2, 5, 3)  # [B, H, i, W, j, C]
  return y.reshape(b, h * r, w * r, c)



def stride2_phases(x, kernel, phases, conv=conv_lib.conv2d):
  """A stride-2 transposed convolution as four stride-1 convs, one per output phase.

  Args:
    x: [B, h, w, in].
    kernel: [k, k, out, in], the transposed conv's kernel in torch's layout.
    phases: per output phase (even, odd) along one axis: (the kernel taps it uses,
      (low, high) zero padding of its conv); the same for rows and columns.
    conv: `conv(x, kernel [kh, kw, in, out], padding=((lo, hi), (lo, hi)))`.
  Returns:
    [B, 2h, 2w, out]: row 2m + r, column 2n + q from phase (r, q) at (m, n).
  """
  rows = []
  for taps_y, pad_y in phases:
    cols = []
    for taps_x, pad_x in phases:
      k = kernel[jnp.array(taps_y)][:, jnp.array(taps_x)]  # [ty, tx, out, in]
      cols.append(conv(x, k.transpose(0, 1, 3, 2), padding=(pad_y, pad_x)))
    rows.append(jnp.stack(cols, axis=3))  # [B, h, w, 2 (x phase), out]
  y = jnp.stack(rows, axis=2)  # [B, h, 2 (y phase), w, 2 (x phase), out]
  b, h, w = x.shape[:3]
  return y.reshape(b, 2 * h, 2 * w, kernel.shape[2])

class ConvTranspose2x2(nn.Module):
  """torch.nn.ConvTranspose2d(in, features, kernel_size=2, stride=2) as one matmul.

  out[2m + i, 2n + j, o] = sum_c x[m, n, c] * kernel[i, j, o, c] + bias[o].
  """
  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32
  kernel_init: Any = _FAN_OUT_RELU

  @nn.compact
  def __call__(self, x):
    """x: [B, h, w, in] -> [B, 2h, 2w, features]."""
    cin = x.shape[-1]
    kernel = self.param('kernel', self.kernel_init, (2, 2, self.features, cin), jnp.float32)
    dtype = jnp.dtype(self.dtype)
    y = jnp.einsum('bhwc,ijoc->bhiwjo', x.astype(dtype), kernel.astype(dtype))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,),
                         jnp.float32).astype(dtype)
    b, h, _, w, _, o = y.shape
    return y.reshape(b, 2 * h, 2 * w, o)


class ConvTranspose4x4(nn.Module):
  """torch.nn.ConvTranspose2d(in, features, kernel_size=4, stride=2, padding=1).

  `use_bias` adds torch's bias (off by default: CenterNet's neck has a norm after it).

  Param 'kernel' [4, 4, features, in] float32: torch's weight [in, out, kh, kw]
  transposed to (kh, kw, out, in), not flipped (the layout of flax's ConvTranspose
  with transpose_kernel=True). Computed as 4 sub-pixel 2x2 convolutions (one per output
  phase) interleaved into the 2x upsampled map: the same function and FLOPs as
  lax.conv_transpose (no multiplications by inserted zeros), on every backend; its
  backward pass is >10x faster than lax.conv_transpose's on XLA:CPU.

  `in_switch=True` (Keypoint R-CNN's predictor, which trains inside a lax.switch): on
  XLA:CPU (`vision_jax.ops.backend.cpu_tuned()`) the 2x2 convolutions are shifted dots
  (`vision_jax.nn.conv.conv_by_dots`), since convolution gradients inside a switch branch
  are ~100x slower there. No effect on other backends.
  """
  features: int
  dtype: Any = jnp.float32
  use_bias: bool = False
  kernel_init: Any = _FAN_OUT_RELU
  in_switch: bool = False  # runs inside a lax.switch / cond: dots on XLA:CPU

  # Output phase r (even / odd row or column) -> (kernel taps, padding) of its 2x2 conv:
  # out[2m] = x[m-1] W[3] + x[m] W[1];  out[2m+1] = x[m] W[2] + x[m+1] W[0].
  _PHASES = (((3, 1), (1, 0)), ((2, 0), (0, 1)))

  @nn.compact
  def __call__(self, x):
    """x: [B, h, w, in] -> [B, 2h, 2w, features]."""
    cin = x.shape[-1]
    kernel = self.param('kernel', self.kernel_init, (4, 4, self.features, cin), jnp.float32)
    dtype = jnp.dtype(self.dtype)
    x = x.astype(dtype)
    kernel = kernel.astype(dtype)
    by_dots = self.in_switch and backend.cpu_tuned()
    y = stride2_phases(x, kernel, self._PHASES,
                       conv_lib.conv_by_dots if by_dots else conv_lib.conv2d)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,),
                         jnp.float32).astype(dtype)
    return y
