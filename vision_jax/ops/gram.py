"""Gram matrices of feature maps, for the style loss of Gatys et al. / Johnson et al."""
from typing import Optional

import jax
import jax.numpy as jnp


def gram_matrix(features: jax.Array, *,
                precision: Optional[jax.lax.PrecisionLike] = jax.lax.Precision.HIGHEST
                ) -> jax.Array:
  """Channel co-activation matrices, normalised by the number of elements.

  `G[n, c, d] = sum_{h, w} F[n, h, w, c] F[n, h, w, d] / (H * W * C)`, the normalisation of
  Johnson et al. (2016) and pytorch/examples' fast_neural_style, as one batched contraction.

  Args:
    features: [N, H, W, C] float (NHWC).
    precision: matmul precision; HIGHEST by default so that the float32 statistics of
      style losses are not computed at bfloat16 matmul precision on accelerators.

  Returns:
    [N, C, C] in the (promoted) dtype of `features`.
  """
  n, h, w, c = features.shape
  flat = features.reshape(n, h * w, c)
  gram = jnp.einsum('npc,npd->ncd', flat, flat, precision=precision)
  return gram / jnp.asarray(h * w * c, gram.dtype)
