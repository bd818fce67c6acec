"""Image values on device: uint8 in, the float ranges and normalisations models expect.

Pipelines send images as uint8 (`vision_jax.data.streams`); models call these first.
Float input is taken as already in [0, 1] (what the torchvision weight-parity tests and
user code pass), so a model accepts both.

  x = image.normalize(batch['image'])            # ImageNet mean / std, float32
  x = image.to_signed_unit(batch['image'])        # [-1, 1], GAN generators' range
"""
import jax
import jax.numpy as jnp

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
