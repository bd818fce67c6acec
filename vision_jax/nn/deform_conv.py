"""Deformable convolution layer (DCN v1 / v2), NHWC, over `vision_jax.ops.deform_conv2d`.

  y = DeformConv(256, 3, name='dcn')(x)                       # DCN v1, 3x3, padding 1
  y = DeformConv(256, 3, modulated=True, offset_groups=4)(x)  # DCN v2 (modulated)
  y = DeformConv(512, 3, dilation=2, use_bias=False)(x)       # UPSNet's res5 3x3 convs

The layer owns its offset branch, as DCN / DCNv2 (and mmcv's `DeformConv2dPack` /
`ModulatedDeformConv2dPack`) do: a plain convolution `offset_conv` on the same input with
the same kernel size, stride, padding and dilation, producing `2 * G * kh * kw` offset
channels (torchvision's order, see `vision_jax.ops.deform_conv`) followed, when
`modulated`, by `G * kh * kw` mask logits; the mask is `sigmoid(logits)` (the DCNv2
convention). `offset_conv` starts at zero weights and zero bias, so at init the offsets are
0 and the layer is exactly a plain convolution with its own kernel and bias (v1), or, v2,
that convolution's output before the bias scaled by the initial mask sigmoid(0) = 0.5
(`INITIAL_MASK`), plus the bias.

Parameters: 'kernel' [kh, kw, in // groups, features] (HWIO) and 'bias' [features] of the
deformable convolution (float32, like `flax.linen.Conv`), and 'offset_conv' {'kernel'
[kh, kw, in, (2 or 3) * G * kh * kw], 'bias'}. `offset_conv` is
`vision_jax.nn.conv.Conv` (the library's conv, with its CPU-tuned paths) where that computes
the same geometry (square kernel, padding (k - 1) // 2, dilation 1: every default 'SAME'
layer without dilation), otherwise `flax.linen.Conv` with the layer's padding and dilation;
both have the same parameters, so checkpoints do not depend on which one runs.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.nn import conv as conv_lib
from vision_jax.ops import deform_conv as deform_ops

# The v2 mask at init: sigmoid of the zero-initialised logits.
INITIAL_MASK = 0.5


def _pair(v):
  return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class DeformConv(nn.Module):
  """Deformable 2-D convolution with its own offset (and mask) conv; see the module doc.

  Attributes:
    features: output channels.
    kernel_size: k or (kh, kw).
    stride: int or (sh, sw).
    padding: int or (ph, pw) zeros on both sides of each axis; None (default) =
      dilation * (k - 1) // 2 per axis: 'SAME' for odd k at stride 1 (k // 2 for
      dilation 1), torch's usual `padding=k // 2`.
    dilation: int or (dh, dw), spacing of the kernel taps (and of the offset conv's).
    groups: weight groups (`feature_group_count`); must divide the input channels and
      `features`.
    offset_groups: G, groups of input channels that share one set of offsets (and mask);
      must divide the input channels.
    modulated: DCN v2: a per-sample mask sigmoid(logits) from the offset conv multiplies
      every sample (0.5 at init, `INITIAL_MASK`).
    use_bias: add a bias after the deformable convolution.
    dtype: compute dtype; None = the promotion of the input's and the params' dtypes
      (as flax). Params stay float32; the sampling runs in float32 inside the op.
    kernel_init, bias_init: initializers of the deformable convolution's kernel and bias
      (the offset conv always starts at zero).
  """
  features: int
  kernel_size: Any = 3
  stride: Any = 1
  padding: Any = None
  dilation: Any = 1
  groups: int = 1
  offset_groups: int = 1
  modulated: bool = False
  use_bias: bool = True
  dtype: Any = None
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros

  def geometry(self):
    """((kh, kw), stride, padding, dilation) as (h, w) pairs, padding default resolved."""
    kh, kw = _pair(self.kernel_size)
    dh, dw = _pair(self.dilation)
    padding = ((dh * (kh - 1) // 2, dw * (kw - 1) // 2) if self.padding is None
               else _pair(self.padding))
    return (kh, kw), _pair(self.stride), padding, (dh, dw)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [N, H, W, Cin] -> [N, Ho, Wo, features], Ho = (H + 2ph - dh (kh - 1) - 1) // sh + 1."""
    if x.ndim != 4:
      raise ValueError(f'DeformConv: x must be [N, H, W, C] (NHWC), got shape {tuple(x.shape)}')
    (kh, kw), stride, padding, dilation = self.geometry()
    cin = x.shape[-1]
    if cin % self.groups or self.features % self.groups:
      raise ValueError(f'DeformConv: groups = {self.groups} must divide the input channels '
                       f'({cin}, x shape {tuple(x.shape)}) and features ({self.features})')
    if self.offset_groups < 1 or cin % self.offset_groups:
      raise ValueError(f'DeformConv: offset_groups = {self.offset_groups} must divide the '
                       f'input channels ({cin}, x shape {tuple(x.shape)})')
    taps = self.offset_groups * kh * kw
    outputs = (3 if self.modulated else 2) * taps
    zeros = nn.initializers.zeros
    if kh == kw and dilation == (1, 1) and padding == ((kh - 1) // 2,) * 2:
      offset_conv = conv_lib.Conv(outputs, kh, strides=stride, dtype=self.dtype,
                                  kernel_init=zeros, bias_init=zeros, name='offset_conv')
    else:
      offset_conv = nn.Conv(outputs, (kh, kw), strides=stride,
                            padding=((padding[0],) * 2, (padding[1],) * 2),
                            kernel_dilation=dilation, dtype=self.dtype, kernel_init=zeros,
                            bias_init=zeros, name='offset_conv')
    branch = offset_conv(x)
    offset = branch[..., :2 * taps]
    mask = jax.nn.sigmoid(branch[..., 2 * taps:].astype(jnp.float32)) if self.modulated else None

    kernel = self.param('kernel', self.kernel_init,
                        (kh, kw, cin // self.groups, self.features), jnp.float32)
    bias = (self.param('bias', self.bias_init, (self.features,), jnp.float32)
            if self.use_bias else None)
    dtype = (jnp.dtype(self.dtype) if self.dtype is not None
             else jnp.promote_types(x.dtype, kernel.dtype))
    y = deform_ops.deform_conv2d(x.astype(dtype), offset, kernel.astype(dtype), mask=mask,
                                 stride=stride, padding=padding, dilation=dilation,
                                 groups=self.groups)
    if bias is not None:
      y = y + bias.astype(dtype)
    return y
