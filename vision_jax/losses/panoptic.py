"""UPSNet's semantic and panoptic losses, static shapes (see `vision_jax.models.upsnet`).

Semantic classes are numbered things first (0..K-1, the detection classes), then stuff
(K..K+S-1); -1 marks pixels without a label (padding, void). Panoptic targets index
the head's channels [S stuff, M instance slots, unknown]; -1 is ignored.
"""
import jax
import jax.numpy as jnp

IGNORE = -1


def masked_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy over the pixels with a label >= 0.

  Args:
    logits: [..., C] float.
    labels: [...] int32 in [0, C) or -1 (ignored).

  Returns:
    scalar float32 (0 when every pixel is ignored).
  """
  logits = logits.astype(jnp.float32)
  labelled = labels >= 0
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(log_probs, jnp.maximum(labels, 0)[..., None], axis=-1)[..., 0]
  count = jnp.sum(labelled)
  return -jnp.sum(jnp.where(labelled, picked, 0.0)) / jnp.maximum(count, 1)


def semantic_loss(semantic_logits: jax.Array, semantic: jax.Array) -> jax.Array:
  """Cross-entropy of the semantic head at full resolution (the reference's `fcn_loss`).

  Args:
    semantic_logits: [B, H, W, K + S] already at the labels' resolution.
    semantic: [B, H, W] int32 classes, -1 ignored.
  """
  return masked_cross_entropy(semantic_logits, semantic)


def keep_instances(rng: jax.Array, valid: jax.Array, drop_fraction: float) -> jax.Array:
  """Which ground-truth instances feed the panoptic head while training.

  Per image, max(floor(n (1 - drop_fraction)), 1) of its n valid instances are kept,
  chosen uniformly at random (the reference's `panoptic_box_keep_fraction`); the pixels
  of the dropped ones become the unknown channel's targets.

  Args:
    rng: PRNG key.
    valid: [B, M] bool.
    drop_fraction: in [0, 1).

  Returns:
    [B, M] bool, a subset of valid.
  """
  n = jnp.sum(valid, axis=1, keepdims=True)
  count = jnp.maximum(jnp.floor(n * (1.0 - drop_fraction)), 1.0)
  priority = jnp.where(valid, jax.random.uniform(rng, valid.shape), 2.0)
  rank = jnp.argsort(jnp.argsort(priority, axis=1), axis=1)
  return valid & (rank < count)


def panoptic_targets(semantic: jax.Array, masks: jax.Array, instances: jax.Array,
                     crowd: jax.Array, *, num_things: int, num_stuff: int,
                     unknown_channel: bool) -> jax.Array:
  """Per-pixel targets of the panoptic head (the reference's `MaskMatching`).

  Args:
    semantic: [B, H, W] int32 semantic classes (things first), -1 unlabelled.
    masks: [B, M, H, W] instance masks (nonzero inside).
    instances: [B, M] bool: the instance slots the head was given (kept, not crowd).
    crowd: [B, M] bool: crowd regions (their pixels are ignored).
    num_things, num_stuff: K and S.
    unknown_channel: thing pixels of no given instance target the unknown channel
      S + M; without it they are ignored.

  Returns:
    [B, H, W] int32 in [0, S + M] or -1 (ignored).
  """
  k, s = num_things, num_stuff
  m = masks.shape[1]
  inside = masks > 0
  slot = jnp.arange(m, dtype=jnp.int32)[None, :, None, None]
  # Visible masks are disjoint; where they are not, the later instance wins as in the
  # reference's loop.
  instance_id = jnp.max(jnp.where(inside & instances[:, :, None, None], slot, -1), axis=1)
  in_crowd = jnp.any(inside & crowd[:, :, None, None], axis=1)
  is_stuff = (semantic >= k) & (semantic < k + s)
  is_thing = (semantic >= 0) & (semantic < k)
  leftover = s + m if unknown_channel else IGNORE
  target = jnp.where(is_stuff, semantic - k, IGNORE)
  target = jnp.where(is_thing, leftover, target)
  target = jnp.where(instance_id >= 0, s + instance_id, target)
  return jnp.where(in_crowd & (instance_id < 0), IGNORE, target).astype(jnp.int32)


def subsample(labels: jax.Array, stride: int) -> jax.Array:
  """[B, H, W] labels -> [B, H / stride, W / stride]: the pixel nearest each cell's
  centre (nearest-neighbour downsampling).

  Cell i of a stride-s map covers input pixels s i .. s i + s - 1; its centre is at
  s i + (s - 1) / 2, whose nearest pixel (rounding down) is s i + (s - 1) // 2.
  """
  if stride == 1:
    return labels
  start = (stride - 1) // 2
  return labels[:, start::stride, start::stride]
