"""max_pool: flax's max_pool value and gradient (first maximum wins), ties included."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.nn import max_pool


@pytest.mark.parametrize('shape,window,stride,padding', [
    ((2, 16, 16, 3), 3, 2, 1),   # ResNet stem
    ((1, 9, 7, 2), 3, 2, 1),     # odd sizes
    ((1, 8, 8, 2), 2, 2, 0),
    ((1, 10, 10, 1), 3, 1, 1),   # overlapping windows, stride 1
])
def test_equals_flax_max_pool_with_ties(shape, window, stride, padding):
  x = jax.random.normal(jax.random.key(0), shape)
  x = jnp.round(jax.nn.relu(x) * 2) / 2  # ReLU zeros and rounding: many tied maxima

  def reference(x):
    return nn.max_pool(x, (window, window), strides=(stride, stride),
                       padding=((padding, padding), (padding, padding)))

  def ours(x):
    return max_pool.max_pool(x, window, stride, padding)

  want = reference(x)
  got = jax.jit(ours)(x)
  assert got.shape == want.shape
  np.testing.assert_array_equal(got, want)
  cotangent = jax.random.normal(jax.random.key(1), want.shape)
  want_grad = jax.grad(lambda x: jnp.sum(reference(x) * cotangent))(x)
  got_grad = jax.jit(jax.grad(lambda x: jnp.sum(ours(x) * cotangent)))(x)
  np.testing.assert_allclose(got_grad, want_grad, rtol=1e-6, atol=1e-6)
  # Each output's gradient lands on exactly one input: the totals agree.
  np.testing.assert_allclose(jnp.sum(got_grad), jnp.sum(cotangent), rtol=1e-5)
