"""Convolutions computed as matmuls, for the places where XLA:CPU's convolutions are slow.

`DotConv` has exactly the parameters of `flax.linen.Conv` (kernel [kh, kw, in, out],
bias [out]), so checkpoints and weight conversions do not change.

* 1x1 convolutions (`DotConv(features, 1, strides)`): XLA:CPU runs a [N, C] x [C, O]
  dot several times faster than the same 1x1 `conv_general_dilated` (measured 4-5x
  forward, 2-5x forward + backward on ResNet-50 shapes); other backends lose nothing.
* k x k stride-1 convolutions (`DotConv(features, k)`, `conv_by_dots`): k*k shifted
  dots. At top level XLA's own convolution is as fast, but the gradient of a
  convolution inside a `lax.cond` / `lax.switch` branch runs ~100x slower on XLA:CPU,
  while dots keep their speed there; the R-CNN heads run in such branches
  (`vision_jax.tasks.mask_rcnn`).
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


def conv_by_dots(x, kernel, padding):
  """Stride-1 convolution as kh * kw shifted matmuls (== lax.conv_general_dilated).

  Args:
    x: [N, H, W, C].
    kernel: [kh, kw, C, O] (HWIO).
    padding: ((top, bottom), (left, right)) zero padding.

  Returns:
    [N, H + top + bottom - kh + 1, W + left + right - kw + 1, O].
  """
  n, h, w, c = x.shape
  kh, kw, _, o = kernel.shape
  (top, bottom), (left, right) = padding
  x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  oh, ow = h + top + bottom - kh + 1, w + left + right - kw + 1
  y = None
  for i in range(kh):
    for j in range(kw):
      term = jnp.dot(x[:, i:i + oh, j:j + ow].reshape(-1, c), kernel[i, j])
      y = term if y is None else y + term
  return y.reshape(n, oh, ow, o)


class DotConv(nn.Module):
  """`flax.linen.Conv(features, (k, k))` with torch's symmetric padding (odd k) as dots.

  Stride 1 for any k (`conv_by_dots`); k = 1 also takes a stride (torch's
  Conv2d(in, out, 1, stride) reads pixels 0, s, 2s, ...).

  Attributes:
    features: output channels.
    kernel_size: k (odd).
    strides: int or (sy, sx); only with kernel_size 1.
    use_bias: add a bias.
    dtype: compute dtype (params stay float32).
  """
  features: int
  kernel_size: int = 1
  strides: Any = 1
  use_bias: bool = True
  dtype: Any = None
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    """x: [N, H, W, C] -> [N, ceil(H / sy), ceil(W / sx), features]."""
    k = self.kernel_size
    sy, sx = (self.strides, self.strides) if isinstance(self.strides, int) else self.strides
    if (sy > 1 or sx > 1) and k != 1:
      raise ValueError(f'DotConv takes strides only with kernel_size 1, got {k}')
    kernel = self.param('kernel', self.kernel_init, (k, k, x.shape[-1], self.features),
                        jnp.float32)
    dtype = jnp.dtype(self.dtype) if self.dtype is not None else x.dtype
    x = x[:, ::sy, ::sx, :]
    pad = (k - 1) // 2
    y = conv_by_dots(x.astype(dtype), kernel.astype(dtype), ((pad, pad), (pad, pad)))
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,), jnp.float32).astype(dtype)
    return y
