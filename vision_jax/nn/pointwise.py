"""Convolutions computed as matmuls, for the places where XLA:CPU's convolutions are slow.

* `PointwiseConv`: XLA:CPU runs a [N, C] x [C, O] dot several times faster than the
  same 1x1 `conv_general_dilated` (measured 4-5x forward, 2-5x forward + backward on
  ResNet-50 shapes); other backends lose nothing.
* `conv_by_dots` / `DotConv`: a k x k stride-1 convolution as k*k shifted dots. At top
  level XLA's own convolution is as fast, but the gradient of a convolution inside a
  `lax.cond` / `lax.switch` branch runs ~100x slower on XLA:CPU, while dots keep their
  speed there; the R-CNN heads run in such branches (`vision_jax.tasks.mask_rcnn`).
Both have exactly the parameters of `flax.linen.Conv` (kernel [kh, kw, in, out], bias
[out]), so checkpoints and weight conversions do not change.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class PointwiseConv(nn.Module):
  """A 1x1 convolution with stride (torch: Conv2d(in, out, 1, stride)), NHWC.

  Attributes:
    features: output channels.
    strides: int or (sy, sx); a 1x1 conv with stride s reads pixels 0, s, 2s, ...
    use_bias: add a bias.
    dtype: compute dtype (params stay float32).
  """
  features: int
  strides: Any = 1
  use_bias: bool = True
  dtype: Any = None
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    """x: [..., H, W, C] -> [..., ceil(H / sy), ceil(W / sx), features]."""
    c = x.shape[-1]
    kernel = self.param('kernel', self.kernel_init, (1, 1, c, self.features), jnp.float32)
    sy, sx = (self.strides, self.strides) if isinstance(self.strides, int) else self.strides
    if sy > 1 or sx > 1:
      x = x[..., ::sy, ::sx, :]
    dtype = jnp.dtype(self.dtype) if self.dtype is not None else x.dtype
    lead = x.shape[:-1]
    y = jnp.dot(x.reshape(-1, c).astype(dtype), kernel[0, 0].astype(dtype))
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,), jnp.float32).astype(dtype)
    return y.reshape(*lead, self.features)


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
  """`flax.linen.Conv(features, (k, k), padding=SAME)` (odd k, stride 1) via `conv_by_dots`."""
  features: int
  kernel_size: int = 3
  use_bias: bool = True
  dtype: Any = None
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    """x: [N, H, W, C] -> [N, H, W, features]."""
    k = self.kernel_size
    kernel = self.param('kernel', self.kernel_init, (k, k, x.shape[-1], self.features),
                        jnp.float32)
    dtype = jnp.dtype(self.dtype) if self.dtype is not None else x.dtype
    pad = (k - 1) // 2
    y = conv_by_dots(x.astype(dtype), kernel.astype(dtype), ((pad, pad), (pad, pad)))
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,), jnp.float32).astype(dtype)
    return y

