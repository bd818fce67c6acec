"""Gram matrix: the Johnson et al. normalisation, batched, differentiable."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from vision_jax import ops


def test_gram_matrix_matches_per_image_definition():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(3, 5, 7, 4)).astype(np.float32)
  gram = np.asarray(jax.jit(ops.gram_matrix)(features))
  assert gram.shape == (3, 4, 4)
  for n in range(3):
    flat = features[n].reshape(-1, 4).astype(np.float64)  # [H*W, C]
    np.testing.assert_allclose(gram[n], flat.T @ flat / (5 * 7 * 4), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(gram, np.swapaxes(gram, 1, 2), rtol=1e-6)


def test_gram_matrix_is_one_batched_contraction_and_vmaps():
  features = jnp.ones((2, 3, 3, 2))
  text = jax.jit(ops.gram_matrix).lower(features).as_text()
  assert text.count('dot_general') == 1
  stacked = jnp.stack([features, 2 * features])
  np.testing.assert_allclose(jax.vmap(ops.gram_matrix)(stacked)[1],
                             ops.gram_matrix(2 * features), rtol=1e-6)


def test_gram_matrix_gradients():
  rng = np.random.default_rng(1)
  features = rng.normal(size=(2, 3, 4, 3))
  check_grads(ops.gram_matrix, (features,), order=2, modes=['rev'], atol=1e-2, rtol=1e-2)
