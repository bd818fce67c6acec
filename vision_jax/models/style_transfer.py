"""Johnson et al. 2016's image transformation network for feed-forward style transfer
("Perceptual Losses for Real-Time Style Transfer and Super-Resolution", supplementary
material), layer for layer as pytorch/examples' fast_neural_style TransformerNet, NHWC.

  net = TransformNet()                                      # 1,679,235 params
  variables = net.init(key, x)
  y = net.apply(variables, x)                               # losses see this (unclipped)
  image = net.apply(variables, x, clip=True)                # for display / saving
  tiny = TransformNet(features=8, num_residual=1)           # cheap variant for tests

Shapes and ranges
  x   [B, H, W, 3] float RGB in [0, 1]; H and W divisible by 4 (two stride-2 convs).
  y   [B, H, W, 3] float32 RGB on the [0, 1] scale, whatever the compute dtype:
      output='linear' (default): unbounded, as pytorch/examples (which works in 0..255
        and clamps only when saving); `clip=True` clamps to [0, 1].
      output='tanh': (1 + tanh) / 2 in (0, 1), the paper's "scaled tanh".
Why linear by default: the perceptual, Gram-style and TV losses then see the raw output,
so a pixel that overshoots still gets a gradient pulling it back, whereas a tanh output
saturates and its gradient vanishes for near-black and near-white pixels; pytorch/examples
trains this way and its released models are linear.

Architecture (f = features = 32; every conv is reflection padding k // 2 then a VALID
conv with a bias, torch's ReflectionPad2d + Conv2d; IN = instance norm with a learned
per-channel affine, torch's InstanceNorm2d(affine=True), eps 1e-5):
  conv1 9x9 -> f -> in1 -> ReLU
  conv2 3x3 stride 2 -> 2f -> in2 -> ReLU
  conv3 3x3 stride 2 -> 4f -> in3 -> ReLU
  res1 .. res{num_residual}: x + [conv 3x3 -> IN -> ReLU -> conv 3x3 -> IN](x)  (4f wide;
      `nn.resnet_generator.ResnetBlock` with norm 'instance_affine'; no ReLU after the sum)
  deconv1: nearest x2 -> conv 3x3 -> 2f -> in4 -> ReLU      (resize-conv, no checkerboard
  deconv2: nearest x2 -> conv 3x3 -> f -> in5 -> ReLU        as a transposed conv has)
  deconv3: conv 9x9 -> 3                                     (no norm, no activation)

Converting pytorch/examples weights (e.g. its released candy / mosaic models): the names
follow torch's (conv1.conv2d.weight -> conv1/conv2d/kernel as weight.transpose(2, 3, 1, 0),
in1.weight / bias -> in1/scale / bias, deconv1.conv2d -> deconv1/conv2d, but
res1.conv1.conv2d -> res1/conv1 and res1.in1 -> res1/norm1, the reused block's names).
Those models take and give 0..255: since conv1 is followed by an instance
norm (and reflection padding keeps a constant offset constant), scaling the input by 255
changes nothing up to eps, so only deconv3's weight and bias are divided by 255.

Initialisation: kernels N(0, 0.02) (as the reused ResnetBlock), biases 0 except
deconv3's in 'linear' mode, 0.5, so that both modes start around mid-grey; norm scales
N(1, 0.02). Params float32; `dtype` is the compute dtype. No batch statistics: `train`
changes nothing and exists for a call signature shared with the other generators.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.nn import norms
from vision_jax.nn import resnet_generator
from vision_jax.nn import unet

OUTPUTS = ('linear', 'tanh')
NORM = 'instance_affine'


class ReflectConv(nn.Module):
  """pytorch/examples' ConvLayer / UpsampleConvLayer: [nearest x upsample] -> reflection
  pad k // 2 -> conv k x k, stride s, VALID, with a bias.

  x [B, H, W, C] -> [B, ceil(u H / s), ceil(u W / s), features] (u = upsample, k odd).
  Params: 'kernel' [k, k, C, features], 'bias' [features], float32.
  """
  features: int
  kernel_size: int
  strides: int = 1
  upsample: int = 1
  dtype: Any = None
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    if self.upsample > 1:
      # == torch's interpolate(mode='nearest', scale_factor=u) for an integer u.
      x = jnp.repeat(jnp.repeat(x, self.upsample, axis=1), self.upsample, axis=2)
    k = self.kernel_size
    return nn.Conv(self.features, (k, k), strides=self.strides, padding='VALID',
                   dtype=self.dtype, kernel_init=unet.KERNEL_INIT, bias_init=self.bias_init,
                   name='conv2d')(resnet_generator.reflect_pad(x, k // 2))


class TransformNet(nn.Module):
  """Johnson's transformation network, x [B, H, W, 3] in [0, 1] -> [B, H, W, 3] float32.

  See the module docstring for the layers and the output range.

  Attributes:
    features: width of the first and last stages (32); the bottleneck is 4x wider.
    num_residual: residual blocks at the bottleneck (5).
    output: 'linear' (unbounded, [0, 1] scale) | 'tanh' ((1 + tanh) / 2).
    out_channels: channels of the output image.
    dtype: compute dtype (None: float32 / the inputs'); params stay float32.
  """
  features: int = 32
  num_residual: int = 5
  output: str = 'linear'
  out_channels: int = 3
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool = False, clip: bool = False):
    """x: [B, H, W, C] in [0, 1] -> [B, H, W, out_channels] float32 (see the module doc).

    Args:
      x: images, H and W divisible by 4.
      train: no effect (instance norm has no running statistics).
      clip: clamp the output to [0, 1] (for display, saving, metrics; not for losses).
    Raises:
      ValueError: an unknown `output`, or a side not divisible by 4.
    """
    del train
    if self.output not in OUTPUTS:
      raise ValueError(f'TransformNet: output must be one of {OUTPUTS}, not {self.output!r}')
    unet.check_divisible('TransformNet', x.shape, 4, '2 (its two stride-2 convs)')
    norm = norms.make_norm(NORM, dtype=self.dtype)
    f = self.features

    def conv_norm_relu(h, width, k, stride, upsample, i):
      conv_name = f'conv{i}' if upsample == 1 else f'deconv{i - 3}'
      h = ReflectConv(width, k, stride, upsample, self.dtype, name=conv_name)(h)
      return nn.relu(norm(name=f'in{i}', scale_init=unet.norm_scale_init)(h))

    h = conv_norm_relu(x, f, 9, 1, 1, 1)
    h = conv_norm_relu(h, 2 * f, 3, 2, 1, 2)
    h = conv_norm_relu(h, 4 * f, 3, 2, 1, 3)
    for i in range(self.num_residual):
      h = resnet_generator.ResnetBlock(NORM, dtype=self.dtype, name=f'res{i + 1}')(
          h, train=False, dropout=False)
    h = conv_norm_relu(h, 2 * f, 3, 1, 2, 4)
    h = conv_norm_relu(h, f, 3, 1, 2, 5)
    bias_init = nn.initializers.constant(0.5 if self.output == 'linear' else 0.0)
    h = ReflectConv(self.out_channels, 9, dtype=self.dtype, bias_init=bias_init,
                    name='deconv3')(h)
    y = h.astype(jnp.float32)
    if self.output == 'tanh':
      y = 0.5 * (1.0 + jnp.tanh(y))
    return jnp.clip(y, 0.0, 1.0) if clip else y
