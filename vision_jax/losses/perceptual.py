"""Perceptual losses of Johnson et al. (2016) on a frozen loss network's features.

Pure functions of feature dicts: the loss network (`nn.vgg`) maps images to
{tap name: [N, h, w, C]} (NHWC, e.g. 'relu1_2', 'relu2_2', 'relu3_3', 'relu4_3'); these
functions only read the taps they are told to. Every loss is a float32 scalar (features
of any float dtype are cast to float32 first); the experiment applies the global weights.

  feature_reconstruction_loss  sum_l w_l mean((phi_l(y) - phi_l(x))^2): mean squared error
                               over all N h w C elements of each layer (torch's MSELoss, as
                               pytorch/examples' content loss on relu2_2).
  style_reconstruction_loss    sum_l w_l mean((G_l(y) - G_l(s))^2), G = `ops.gram_matrix`
                               ([N, C, C], normalised by h w C): exactly pytorch/examples
                               fast_neural_style's style loss, mse_loss(gram(y), gram_s).
  total_variation_loss         a smoothness prior on the output image (see its docstring).

Layers are given as one name, a sequence of names (weight 1 each) or a mapping
{name: weight}; a missing tap is a KeyError that lists the taps there are.

  grams = style_grams(vgg(style_image), STYLE_LAYERS)      # once, [1, C, C] each
  loss = (content_weight * feature_reconstruction_loss(f_y, f_x, 'relu2_2')
          + style_weight * style_reconstruction_loss(f_y, grams, STYLE_LAYERS)
          + tv_weight * total_variation_loss(y))
"""
from typing import Mapping, Sequence, Union

import jax
import jax.numpy as jnp

from vision_jax.ops.gram import gram_matrix

Layers = Union[str, Sequence[str], Mapping[str, float]]
TV_KINDS = ('l2', 'l1')


def _weighted(layers: Layers) -> list[tuple[str, float]]:
  """[(name, weight)] from a name, a sequence of names or a {name: weight} mapping."""
  if isinstance(layers, str):
    return [(layers, 1.0)]
  if isinstance(layers, Mapping):
    return [(name, float(weight)) for name, weight in layers.items()]
  return [(name, 1.0) for name in layers]


def _tap(features: Mapping[str, jax.Array], name: str, what: str) -> jax.Array:
  if name not in features:
    raise KeyError(f'layer {name!r} is not among the {what} taps: {sorted(features)}')
  return jnp.asarray(features[name], jnp.float32)


def feature_reconstruction_loss(features_out: Mapping[str, jax.Array],
                                features_target: Mapping[str, jax.Array],
                                layers: Layers) -> jax.Array:
  """Johnson's feature reconstruction ("content") loss.

  sum over layers l of w_l * mean((features_out[l] - features_target[l])^2), the mean over
  all N h w C elements.

  Args:
    features_out: {tap: [N, h, w, C]} of the generated images.
    features_target: {tap: [N, h, w, C]} of the content targets (same shapes).
    layers: 'relu2_2', a sequence of taps, or {tap: weight}.
  Returns:
    scalar float32.
  Raises:
    KeyError: a tap is missing; ValueError: shapes differ at a layer.
  """
  total = jnp.zeros((), jnp.float32)
  for name, weight in _weighted(layers):
    out, target = _tap(features_out, name, 'output'), _tap(features_target, name, 'target')
    if out.shape != target.shape:
      raise ValueError(f'layer {name!r}: output features {out.shape} and target features '
                       f'{target.shape} differ')
    total = total + weight * jnp.mean(jnp.square(out - target))
  return total


def style_grams(features: Mapping[str, jax.Array], layers: Layers) -> dict[str, jax.Array]:
  """The style targets: {tap: gram_matrix(features[tap])} ([B, C, C] float32) for the taps
  of `layers` (weights ignored); compute once from the style image's features ([1, ...])."""
  return {name: gram_matrix(_tap(features, name, 'style'))
          for name, _ in _weighted(layers)}


# pylint: disable-next=redefined-outer-name
def style_reconstruction_loss(features_out: Mapping[str, jax.Array],
                              style_grams: Mapping[str, jax.Array],
                              layer_weights: Layers) -> jax.Array:
  """Johnson's style reconstruction loss on Gram matrices.

  sum over layers l of w_l * mean((G(features_out[l]) - style_grams[l])^2), G the
  `ops.gram_matrix` ([N, C, C], sum over positions / (h w C)), the mean over N C C. A
  [1, C, C] style Gram is broadcast over the batch (equal to pytorch/examples' repeated
  style image, `gm_s[:n_batch]`).

  Args:
    features_out: {tap: [N, h, w, C]} of the generated images.
    style_grams: {tap: [1, C, C] or [N, C, C]} (`style_grams`).
    layer_weights: {tap: weight}, or a sequence of taps (weight 1 each, pytorch/examples'
      relu1_2, relu2_2, relu3_3, relu4_3), or one tap.
  Returns:
    scalar float32.
  Raises:
    KeyError: a tap is missing; ValueError: a Gram's shape does not fit its features.
  """
  total = jnp.zeros((), jnp.float32)
  for name, weight in _weighted(layer_weights):
    gram = gram_matrix(_tap(features_out, name, 'output'))
    target = _tap(style_grams, name, 'style Gram')
    n, c = gram.shape[:2]
    if target.ndim != 3 or target.shape[0] not in (1, n) or target.shape[1:] != (c, c):
      raise ValueError(f'layer {name!r}: style Gram {target.shape} does not fit output '
                       f'Grams {gram.shape} (want [1 or {n}, {c}, {c}])')
    total = total + weight * jnp.mean(jnp.square(gram - target))
  return total


def total_variation_loss(images: jax.Array, kind: str = 'l2') -> jax.Array:
  """Total variation of images, a mean so that its weight does not depend on image size.

  With dx = x[:, i, j + 1] - x[:, i, j] and dy = x[:, i + 1, j] - x[:, i, j] on the
  (H - 1) x (W - 1) grid of pixels that have both neighbours (Johnson's TotalVariation.lua):

    'l2'  mean over N, H - 1, W - 1, C of dx^2 + dy^2. Johnson's module's gradient is that
          of strength * 0.5 * sum(dx^2 + dy^2), i.e. of this loss times
          strength * 0.5 * N (H - 1) (W - 1) C.
    'l1'  mean of |dx| + |dy| (the anisotropic TV of Gatys-style implementations and of
          tf.image.total_variation, which sums instead and also counts the last row and
          column's one-sided differences).

  Args:
    images: [N, H, W, C] float (any range; H, W >= 2).
    kind: one of TV_KINDS.
  Returns:
    scalar float32.
  """
  if kind not in TV_KINDS:
    raise ValueError(f'unknown total variation kind {kind!r}; known kinds: '
                     f'{", ".join(TV_KINDS)}')
  x = jnp.asarray(images, jnp.float32)
  if x.ndim != 4 or x.shape[1] < 2 or x.shape[2] < 2:
    raise ValueError(f'total_variation_loss needs [N, H, W, C] with H, W >= 2, got {x.shape}')
  corner = x[:, :-1, :-1]
  dx, dy = x[:, :-1, 1:] - corner, x[:, 1:, :-1] - corner
  if kind == 'l2':
    return jnp.mean(jnp.square(dx) + jnp.square(dy))
  return jnp.mean(jnp.abs(dx) + jnp.abs(dy))
