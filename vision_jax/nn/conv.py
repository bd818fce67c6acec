"""The one 2-D convolution layer of the library, NHWC, with a CPU-tuned and a plain path.

  y = Conv(features, 3, name='conv')(x)                   # torch Conv2d(in, f, 3, padding=1)
  y = Conv(features, 1, strides=2, use_bias=False)(x)     # torch Conv2d(in, f, 1, stride=2)
  y = Conv(features, 3, in_switch=True)(x)                # a layer of an R-CNN RoI head

`Conv` has exactly the parameters of `flax.linen.Conv(features, (k, k))`: 'kernel'
[k, k, in, features] (HWIO) and 'bias' [features], float32, created in that order with
the same initializers, so checkpoints and torchvision weight conversion
(`vision_jax.models.mask_rcnn_torchvision`) do not depend on the path taken. Padding is
torch's symmetric `(k - 1) // 2` on every side.

Which computation runs is decided by `vision_jax.ops.backend` at trace time:

* 'plain' (GPU, TPU): `lax.conv_general_dilated`, what `flax.linen.Conv` runs.
* 'cpu' (XLA:CPU):
  - 1x1 convolutions are a [N * H' * W', C] x [C, O] dot on the strided pixels (torch's
    Conv2d(in, out, 1, stride) reads pixels 0, s, 2s, ...): XLA:CPU runs that dot several
    times faster than the same 1x1 `conv_general_dilated` (measured 4-5x forward, 2-5x
    forward + backward on ResNet-50 shapes).
  - k x k stride-1 convolutions of a layer built with `in_switch=True` are k*k shifted
    dots (`conv_by_dots`). At top level XLA's own convolution is as fast, but the
    gradient of a convolution inside a `lax.cond` / `lax.switch` branch runs ~100x slower
    on XLA:CPU, while dots keep their speed there; the R-CNN mask / keypoint heads train
    in such a branch (`vision_jax.ops.switch`), so they build their convs with
    `in_switch=True`.
  - everything else (k x k at top level, strided k x k) is `lax.conv_general_dilated`.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.ops import backend


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
  if top or bottom or left or right:
    x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  oh, ow = h + top + bottom - kh + 1, w + left + right - kw + 1
  y = None
  for i in range(kh):
    for j in range(kw):
      term = jnp.dot(x[:, i:i + oh, j:j + ow].reshape(-1, c), kernel[i, j])
      y = term if y is None else y + term
  return y.reshape(n, oh, ow, o)


def conv2d(x, kernel, strides=(1, 1), padding=((0, 0), (0, 0))):
  """`lax.conv_general_dilated` in NHWC / HWIO: x [N, H, W, C], kernel [kh, kw, C, O]."""
  return jax.lax.conv_general_dilated(x, kernel, tuple(strides), tuple(padding),
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _pair(v):
  return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class Conv(nn.Module):
  """`flax.linen.Conv(features, (k, k), strides, padding=(k - 1) // 2)`; see module doc.

  Attributes:
    features: output channels.
    kernel_size: k (square kernel, padding (k - 1) // 2 on every side).
    strides: int or (sy, sx).
    use_bias: add a bias.
    dtype: compute dtype; None = the promotion of the input's and the params' dtypes
      (as flax). Params stay float32.
    kernel_init, bias_init: initializers.
    in_switch: the layer runs inside a lax.switch / cond branch (R-CNN RoI heads): on
      XLA:CPU its k x k stride-1 convolution becomes dots. No effect on other backends.
  """
  features: int
  kernel_size: int = 1
  strides: Any = 1
  use_bias: bool = True
  dtype: Any = None
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros
  in_switch: bool = False

  @nn.compact
  def __call__(self, x):
    """x: [N, H, W, C] -> [N, H', W', features], H' = (H + 2p - k) // sy + 1 (p = (k-1)//2)."""
    k = self.kernel_size
    sy, sx = _pair(self.strides)
    kernel = self.param('kernel', self.kernel_init, (k, k, x.shape[-1], self.features),
                        jnp.float32)
    bias = (self.param('bias', self.bias_init, (self.features,), jnp.float32)
            if self.use_bias else None)
    dtype = (jnp.dtype(self.dtype) if self.dtype is not None
             else jnp.promote_types(x.dtype, kernel.dtype))
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    pad = (k - 1) // 2
    padding = ((pad, pad), (pad, pad))
    cpu = backend.cpu_tuned()
    if cpu and k == 1:
      y = conv_by_dots(x[:, ::sy, ::sx, :], kernel, padding)
    elif cpu and self.in_switch and sy == sx == 1:
      y = conv_by_dots(x, kernel, padding)
    else:
      y = conv2d(x, kernel, (sy, sx), padding)
    if bias is not None:
      y = y + bias.astype(dtype)
    return y
