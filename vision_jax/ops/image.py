"""Image values on device: uint8 in, the float ranges and normalisations models expect.

Pipelines send images as uint8 (`vision_jax.data.streams`); models call these first.
Float input is taken as already in [0, 1] (what the torchvision weight-parity tests and
user code pass), so a model accepts both.

  x = image.normalize(batch['image'])            # ImageNet mean / std, float32
  x = image.to_signed_unit(batch['image'])        # [-1, 1], GAN generators' range
"""
import jax
import jax.numpy as jnp
import numpy as np

# ImageNet statistics of RGB values in [0, 1] (torchvision's and timm's).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_unit_float(images: jax.Array, dtype=jnp.float32) -> jax.Array:
  """[..., C] uint8 in [0, 255] (or float in [0, 1]) -> `dtype` in [0, 1]."""
  images = jnp.asarray(images)
  if images.dtype == jnp.uint8:
    return images.astype(dtype) / 255.0
  return images.astype(dtype)


def normalize(images: jax.Array, mean=IMAGENET_MEAN, std=IMAGENET_STD,
              dtype=jnp.float32) -> jax.Array:
  """[..., C] uint8 (or float in [0, 1]) -> (x - mean) / std per channel, `dtype`."""
  x = to_unit_float(images, dtype)
  return (x - jnp.asarray(mean, dtype)) / jnp.asarray(std, dtype)


def to_signed_unit(images: jax.Array, dtype=jnp.float32) -> jax.Array:
  """[..., C] uint8 (or float in [0, 1]) -> `dtype` in [-1, 1]."""
  return to_unit_float(images, dtype) * 2.0 - 1.0


def signed_unit_to_uint8(images: jax.Array) -> jax.Array:
  """[-1, 1] floats (e.g. a tanh generator's output) -> uint8 in [0, 255], rounded."""
  return jnp.round(jnp.clip((images + 1.0) * 127.5, 0.0, 255.0)).astype(jnp.uint8)


def upsample_linear(x: jax.Array, factor: int, axes=(1, 2)) -> jax.Array:
  """Linear upsampling by an integer `factor` along `axes` (separable, so bilinear on
  two axes): half-pixel centres and clamped edges, i.e. torch's
  `interpolate(mode='bilinear', align_corners=False)` and `jax.image.resize(...,
  'linear')` for integer upscales.

  Each output sample mixes two neighbouring inputs with one of `factor` fixed weight
  pairs, so the cost is a few multiply-adds per output value; `jax.image.resize`
  instead contracts with a dense [out, in] weight matrix per axis (O(in) per output),
  which dominates e.g. resizing 100 YOLACT masks from 136^2 to 544^2.

  Args:
    x: any float array.
    factor: integer >= 1.
    axes: the axes to upsample (each becomes `factor` times longer).

  Returns:
    x's dtype, the shape of x with each of `axes` multiplied by `factor`.
  """
  if int(factor) != factor or factor < 1:
    raise ValueError(f'upsample_linear needs an integer factor >= 1, got {factor}')
  factor = int(factor)
  if factor == 1:
    return x
  offsets = (np.arange(factor) + 0.5) / factor - 0.5  # output f*m + r sits at m + offsets[r]
  for axis in axes:
    axis = axis % x.ndim
    n = x.shape[axis]
    padded = jnp.concatenate([jax.lax.slice_in_dim(x, 0, 1, axis=axis), x,
                              jax.lax.slice_in_dim(x, n - 1, n, axis=axis)], axis=axis)
    previous = jax.lax.slice_in_dim(padded, 0, n, axis=axis)
    following = jax.lax.slice_in_dim(padded, 2, n + 2, axis=axis)
    # Repeat-and-weight (broadcasts XLA fuses into one pass), not interleaving phases.
    shape = [1] * x.ndim
    shape[axis] = n * factor
    weight = lambda w: jnp.asarray(np.tile(w, n).reshape(shape), x.dtype)
    x = (jnp.repeat(x, factor, axis=axis) * weight(1.0 - np.abs(offsets))
         + jnp.repeat(previous, factor, axis=axis) * weight(np.maximum(-offsets, 0.0))
         + jnp.repeat(following, factor, axis=axis) * weight(np.maximum(offsets, 0.0)))
  return x
