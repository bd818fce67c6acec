"""vision_jax.ops.image: value ranges and integer-factor linear upsampling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.ops import image


def _numpy_linear_upsample(x, factor, axis):
  """The definition: output j samples input position (j + 0.5) / f - 0.5, clamped."""
  n = x.shape[axis]
  pos = np.clip((np.arange(n * factor) + 0.5) / factor - 0.5, 0.0, n - 1)
  lo = np.floor(pos).astype(int)
  hi = np.minimum(lo + 1, n - 1)
  t = pos - lo
  shape = [1] * x.ndim
  shape[axis] = -1
  return (np.take(x, lo, axis=axis) * (1 - t).reshape(shape)
          + np.take(x, hi, axis=axis) * t.reshape(shape))


@pytest.mark.parametrize('factor', [1, 2, 3, 4, 8])
def test_upsample_linear_matches_the_definition_and_jax_resize(factor):
  x = np.random.RandomState(factor).randn(2, 5, 7, 3).astype(np.float32)
  out = np.asarray(image.upsample_linear(jnp.asarray(x), factor))
  expected = _numpy_linear_upsample(_numpy_linear_upsample(x, factor, 1), factor, 2)
  assert out.shape == (2, 5 * factor, 7 * factor, 3)
  np.testing.assert_allclose(out, expected, atol=1e-5)
  resized = jax.image.resize(x, out.shape, 'linear')
  np.testing.assert_allclose(out, np.asarray(resized), atol=1e-5)


def test_upsample_linear_on_other_axes_and_its_gradient():
  x = jnp.asarray(np.random.RandomState(0).randn(1, 3, 4, 6).astype(np.float32))
  out = image.upsample_linear(x, 4, axes=(2, 3))
  np.testing.assert_allclose(np.asarray(out),
                             np.asarray(jax.image.resize(x, (1, 3, 16, 24), 'linear')),
                             atol=1e-5)
  # Linear in x: the gradient of sum(out * c) is the transpose applied to c.
  c = jnp.asarray(np.random.RandomState(1).randn(*out.shape).astype(np.float32))
  grad = jax.grad(lambda v: jnp.sum(image.upsample_linear(v, 4, axes=(2, 3)) * c))(x)
  expected = jax.grad(lambda v: jnp.sum(jax.image.resize(v, out.shape, 'linear') * c))(x)
  np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), atol=1e-4)


@pytest.mark.parametrize('factor', [0, 1.5])
def test_upsample_linear_rejects_non_integer_factors(factor):
  with pytest.raises(ValueError, match='integer factor'):
    image.upsample_linear(jnp.zeros((1, 2, 2, 1)), factor)


def test_normalize_takes_uint8_and_unit_floats_alike():
  u8 = jnp.asarray([[[0, 128, 255]]], jnp.uint8)
  np.testing.assert_allclose(np.asarray(image.normalize(u8)),
                             np.asarray(image.normalize(u8.astype(jnp.float32) / 255.0)),
                             atol=1e-6)
