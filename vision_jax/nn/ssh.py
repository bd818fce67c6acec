"""SSH context module (Najibi et al. 2017, "SSH: Single Stage Headless Face Detector"), as
RetinaFace uses it on each pyramid level. flax.linen, NHWC.

  y = SSH(features=64)(x, train=False)      # [B, h, w, C] -> [B, h, w, 64]

Three branches of 3x3 convs with growing receptive fields, concatenated:
  conv3x3 (C/2)                                            3x3 context
  conv5x5_1 (C/4, leaky) -> conv5x5_2 (C/4)                 5x5 context
  conv5x5_1 -> conv7x7_2 (C/4, leaky) -> conv7x7_3 (C/4)    7x7 context (shares conv5x5_1)
then ReLU. Every conv is 3x3, stride 1, without bias, followed by a norm; "leaky" is a
LeakyReLU of slope 0.1 when C <= 64 and a plain ReLU otherwise (Pytorch_Retinaface's
rule, which the MobileNet-0.25 model needs).
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.nn import conv as conv_lib
from vision_jax.nn import norms


class SSH(nn.Module):
  """Attributes: features (C, a multiple of 4), norm (a `nn.norms` kind), dtype."""
  features: int
  norm: str = 'batch'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if self.features % 4:
      raise ValueError(f'SSH features must be a multiple of 4, got {self.features}')
    dtype = jnp.dtype(self.dtype)
    norm = norms.make_norm(self.norm, train=train, dtype=dtype)
    slope = 0.1 if self.features <= 64 else 0.0

    def conv_norm(y, features, name):
      y = conv_lib.Conv(features, 3, use_bias=False, dtype=dtype, name=name)(y)
      return norm(name=f'{name}_norm')(y)

    quarter = self.features // 4
    branch3 = conv_norm(x, self.features // 2, 'conv3x3')
    mid = nn.leaky_relu(conv_norm(x, quarter, 'conv5x5_1'), slope)
    branch5 = conv_norm(mid, quarter, 'conv5x5_2')
    mid = nn.leaky_relu(conv_norm(mid, quarter, 'conv7x7_2'), slope)
    branch7 = conv_norm(mid, quarter, 'conv7x7_3')
    return nn.relu(jnp.concatenate([branch3, branch5, branch7], axis=-1))
