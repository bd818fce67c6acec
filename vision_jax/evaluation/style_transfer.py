"""Perceptual style-transfer objective (Johnson et al. 2016) and the Gatys et al. (2016)
baseline that optimises an image's pixels directly, both jit-compilable.

  objective = PerceptualObjective.create(style_image, weights)   # style Grams once
  parts = objective.per_image(outputs, contents)   # {'content', 'style', 'tv', 'total'}: [N]
  images, history = gatys(objective, contents, iterations=100, learning_rate=0.03)

Images are [N, H, W, 3] float32 on the [0, 1] scale (the transform net's output scale,
unclipped while training); contents are the same shape.

Losses (`vision_jax.losses.perceptual`, on the frozen VGG16's features with torchvision's
ImageNet normalisation inside, `nn.vgg`):

  total = content_weight * mean((phi_relu2_2(y) - phi_relu2_2(x))^2)
        + style_weight * sum_l w_l mean((G_l(y) - G_l(s))^2)      l in style layers
        + tv_weight * mean(dx^2 + dy^2)                           (`total_variation_loss`)

`per_image` gives each image's own value of each term (the batch-mean losses of a batch
of one), so a batch's mean of `per_image(...)['total']` is the training loss of the batch.

Gatys: the pixels y of every content image, initialised to the content image, are
updated by Adam on `total` (each image's own loss: Adam is element-wise, so optimising
the batch's sum is optimising each image alone), clipped to [0, 1] after every update
(the image stays an image). `gatys` runs in one `lax.scan` and returns the loss of every
image before each update and after the last.
"""
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vision_jax.losses import perceptual
from vision_jax.nn import vgg as vgg_lib

CONTENT_LAYER = 'relu2_2'
STYLE_LAYERS = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3')
PARTS = ('content', 'style', 'tv', 'total')


class LossWeights(NamedTuple):
  """content: on the relu2_2 feature MSE; style: global, times `style_layers` {tap:
  weight}; tv: on the mean squared total variation (kind 'l2')."""
  content: float
  style: float
  tv: float
  style_layers: Mapping[str, float]
  content_layer: str = CONTENT_LAYER


class PerceptualObjective(NamedTuple):
  """The frozen VGG16 (module and variables, never trained) and the style Grams."""
  vgg: Any
  vgg_variables: Any
  grams: dict
  weights: LossWeights

  @classmethod
  def create(cls, style_image: np.ndarray, weights: LossWeights, vgg_variables,
             vgg_module=None) -> 'PerceptualObjective':
    """style_image: [h, w, 3] uint8 (or float in [0, 1]); its Grams are computed here,
    once. vgg_variables: `nn.vgg_weights.vgg16_variables()` (numpy or jax arrays)."""
    vgg = vgg_module or vgg_lib.vgg16()
    variables = jax.tree.map(jnp.asarray, vgg_variables)
    style = np.asarray(style_image)
    style = (style.astype(np.float32) / 255.0 if style.dtype == np.uint8
             else style.astype(np.float32))
    features = jax.jit(lambda v, s: vgg.apply(v, s, taps=tuple(weights.style_layers)))(
        variables, jnp.asarray(style)[None])
    grams = perceptual.style_grams(features, tuple(weights.style_layers))
    return cls(vgg, variables, grams, weights)

  @property
  def taps(self) -> tuple[str, ...]:
    return tuple(dict.fromkeys((self.weights.content_layer, *self.weights.style_layers)))

  def features(self, images: jax.Array, taps=None) -> dict:
    return self.vgg.apply(self.vgg_variables, images, taps=taps or self.taps)

  def content_features(self, contents: jax.Array) -> dict:
    """{content layer: [N, h, w, C]} of the content images (the targets)."""
    layer = self.weights.content_layer
    return {layer: self.features(contents, (layer,))[layer]}

  def per_image(self, outputs: jax.Array, contents: jax.Array | None = None, *,
                content_features: dict | None = None) -> dict[str, jax.Array]:
    """{part: [N] float32} for part in PARTS (weighted terms; 'total' their sum).

    outputs: [N, H, W, 3] on the [0, 1] scale; the content targets as images
    (`contents`) or as their features (`content_features`, computed once).
    """
    if content_features is None:
      content_features = self.content_features(contents)
    w = self.weights
    feats = self.features(outputs)

    def one(f, c, y):
      f = {k: v[None] for k, v in f.items()}
      c = {k: v[None] for k, v in c.items()}
      content = perceptual.feature_reconstruction_loss(f, c, w.content_layer)
      style = perceptual.style_reconstruction_loss(f, self.grams, dict(w.style_layers))
      tv = perceptual.total_variation_loss(y[None], 'l2')
      parts = {'content': w.content * content, 'style': w.style * style, 'tv': w.tv * tv}
      parts['total'] = parts['content'] + parts['style'] + parts['tv']
      return parts

    return jax.vmap(one)(feats, content_features, jnp.asarray(outputs, jnp.float32))

  def mean_total(self, outputs, *, content_features) -> tuple[jax.Array, dict]:
    """(batch mean of the total, {part: batch mean}): the training loss."""
    parts = self.per_image(outputs, content_features=content_features)
    means = {k: jnp.mean(v) for k, v in parts.items()}
    return means['total'], means


def gatys(objective: PerceptualObjective, contents: jax.Array, *, iterations: int,
          learning_rate: float, init: str = 'content',
          rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Gatys et al.'s optimisation of each content image's pixels (module doc).

  Args:
    contents: [N, H, W, 3] float32 in [0, 1]: the content targets (and the start).
    iterations: Adam updates.
    learning_rate: Adam's step on [0, 1] pixels.
    init: 'content' (start from the content image, the common choice) or 'noise'
      (uniform [0, 1] white noise from `rng`, as Gatys et al.'s paper).
  Returns:
    (images [N, H, W, 3] in [0, 1] after `iterations` updates,
     history [iterations + 1, N] float32: history[t] = each image's total loss after t
     updates).
  """
  contents = jnp.asarray(contents, jnp.float32)
  content_features = objective.content_features(contents)
  tx = optax.adam(learning_rate)

  def loss(images):
    totals = objective.per_image(images, content_features=content_features)['total']
    return jnp.sum(totals), totals

  def step(carry, _):
    images, opt_state = carry
    (_, totals), grads = jax.value_and_grad(loss, has_aux=True)(images)
    updates, opt_state = tx.update(grads, opt_state, images)
    images = jnp.clip(optax.apply_updates(images, updates), 0.0, 1.0)
    return (images, opt_state), totals

  if init == 'content':
    start = contents
  elif init == 'noise':
    start = jax.random.uniform(jax.random.key(0) if rng is None else rng, contents.shape)
  else:
    raise ValueError(f"gatys init={init!r}: 'content' or 'noise'")
  (images, _), history = jax.lax.scan(step, (start, tx.init(start)), None,
                                      length=iterations)
  final = loss(images)[1]
  return images, jnp.concatenate([history, final[None]], axis=0)


def gatys_until(objective: PerceptualObjective, contents: jax.Array, targets: jax.Array, *,
                max_iterations: int, learning_rate: float
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Gatys' optimisation until every image's total loss is at most its target, or
  `max_iterations` updates (one `lax.while_loop`; for the speed benchmark).

  Each iteration is one forward and backward pass: the loss it computes on the current
  images is also the stopping test, so the images that reach the target are returned
  without a further update.

  Returns (images, updates done (int32 scalar), the total losses [N] of the last
  images whose loss was computed: those returned, unless the budget ran out, when they
  are one update behind).
  """
  contents = jnp.asarray(contents, jnp.float32)
  targets = jnp.asarray(targets, jnp.float32)
  content_features = objective.content_features(contents)
  tx = optax.adam(learning_rate)

  def loss(images):
    totals = objective.per_image(images, content_features=content_features)['total']
    return jnp.sum(totals), totals

  def cond(carry):
    _, _, done, reached, _ = carry
    return jnp.logical_and(done < max_iterations, jnp.logical_not(reached))

  def body(carry):
    images, opt_state, done, _, _ = carry
    (_, totals), grads = jax.value_and_grad(loss, has_aux=True)(images)
    reached = jnp.all(totals <= targets)
    updates, new_opt_state = tx.update(grads, opt_state, images)
    stepped = jnp.clip(optax.apply_updates(images, updates), 0.0, 1.0)
    keep = lambda old, new: jax.tree.map(lambda a, b: jnp.where(reached, a, b), old, new)
    return (keep(images, stepped), keep(opt_state, new_opt_state),
            jnp.where(reached, done, done + 1), reached, totals)

  n = contents.shape[0]
  start = (contents, tx.init(contents), jnp.zeros((), jnp.int32), jnp.zeros((), bool),
           jnp.full((n,), jnp.inf, jnp.float32))
  images, _, done, _, totals = jax.lax.while_loop(cond, body, start)
  return images, done, totals
