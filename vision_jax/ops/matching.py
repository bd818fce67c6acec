"""Assigning ground truth to anchors/proposals, and balanced sampling, with static shapes.

`match` is detectron2's `Matcher`; `sample_balanced` is detectron2's `subsample_labels`
with a fixed output size and an explicit PRNG key. Both take padded inputs with validity
masks and work under jit and vmap (add a leading batch axis with `jax.vmap`).
"""
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

IGNORE = -1


class Matches(NamedTuple):
  """Result of `match` for P predictions."""
  gt_index: jax.Array  # [..., P] int32, best ground truth per prediction (0 if none)
  labels: jax.Array  # [..., P] int32, from `labels`, e.g. 1 fg, 0 bg, -1 ignore


def match(quality: jax.Array, gt_valid: Optional[jax.Array] = None, *,
          thresholds: Sequence[float] = (0.3, 0.7), labels: Sequence[int] = (0, IGNORE, 1),
          allow_low_quality_matches: bool = False) -> Matches:
  """detectron2's Matcher on a padded [G, P] quality (IoU) matrix.

  Each prediction takes its best ground truth; its label is `labels[i]` for the interval
  `[thresholds[i-1], thresholds[i])` its best quality falls in (with -inf and +inf added
  at the ends). With `allow_low_quality_matches`, every prediction that attains some
  ground truth's highest quality (ties included) is labelled 1 (Faster R-CNN's RPN rule),
  keeping its own best ground truth as the match, as detectron2 does.

  Args:
    quality: [..., G, P] float, e.g. `box_iou(gt_boxes, anchors)`.
    gt_valid: [..., G] bool, False for padding rows; None means all valid.
    thresholds: increasing, len(labels) - 1 values.
    labels: the label of each interval, each in {-1, 0, 1}.
    allow_low_quality_matches: the RPN rule above.

  Returns:
    `Matches` of shape [..., P]. Without any valid ground truth: gt_index 0 and `labels[0]`.
  """
  thresholds, labels = list(thresholds), list(labels)
  if len(labels) != len(thresholds) + 1:
    raise ValueError(f'{len(labels)} labels for {len(thresholds)} thresholds')
  if any(a > b for a, b in zip(thresholds[:-1], thresholds[1:])):
    raise ValueError(f'thresholds must increase: {thresholds}')
  if gt_valid is None:
    gt_valid = jnp.ones(quality.shape[:-1], bool)
  masked = jnp.where(gt_valid[..., None], quality, -jnp.inf)
  best = jnp.max(masked, axis=-2)
  gt_index = jnp.argmax(masked, axis=-2).astype(jnp.int32)
  # Intervals [-inf, t0), [t0, t1), ... [t_last, inf): the label of the interval index.
  interval = jnp.sum(best[..., None] >= jnp.asarray(thresholds, quality.dtype), axis=-1)
  out = jnp.asarray(labels, jnp.int32)[interval]
  if allow_low_quality_matches:
    highest = jnp.max(masked, axis=-1, keepdims=True)  # [..., G, 1]
    attains = (masked == highest) & gt_valid[..., None]
    out = jnp.where(jnp.any(attains, axis=-2), 1, out)
  return Matches(gt_index, out)


class Sample(NamedTuple):
  """`num_samples` chosen elements: positives first, then negatives, then padding."""
  indices: jax.Array  # [..., num_samples] int32 into the labels' last axis
  positive: jax.Array  # [..., num_samples] bool
  valid: jax.Array  # [..., num_samples] bool, False for padding slots (index 0)


def sample_balanced(key: jax.Array, labels: jax.Array, num_samples: int,
                    positive_fraction: float, bg_label: int = 0) -> Sample:
  """detectron2's `subsample_labels` with a static output size.

  Positives are labels other than -1 (ignore) and `bg_label`; negatives equal `bg_label`.
  Takes `min(#pos, int(num_samples * positive_fraction))` positives and then
  `min(#neg, num_samples - taken)` negatives, uniformly at random without replacement.

  Args:
    key: a PRNG key.
    labels: [P] int labels (e.g. `Matches.labels`, or class ids with `bg_label` for
      background in the box head).
    num_samples: static total to sample (e.g. 256 for the RPN, 512 for the box head).
    positive_fraction: at most this fraction positives.
    bg_label: label of the negatives.

  Returns:
    A `Sample` of [num_samples] arrays; use vmap for a batch of label vectors.
  """
  if labels.ndim != 1:
    raise ValueError(f'labels must be [P], got {labels.shape}; vmap over batches')
  positive = (labels != IGNORE) & (labels != bg_label)
  negative = labels == bg_label
  num_pos = jnp.minimum(jnp.sum(positive), int(num_samples * positive_fraction))
  num_neg = jnp.minimum(jnp.sum(negative), num_samples - num_pos)
  # A random order within each group: rank elements by uniform noise.
  noise = jax.random.uniform(key, labels.shape)
  pos_rank = _rank_within(positive, noise)
  neg_rank = _rank_within(negative, noise)
  take_pos = positive & (pos_rank < num_pos)
  take_neg = negative & (neg_rank < num_neg)
  # Chosen positives first (in their random order), then chosen negatives.
  size = labels.shape[0]
  priority = jnp.where(take_pos, pos_rank, jnp.where(take_neg, size + neg_rank, 2 * size))
  count = min(num_samples, size)
  order = jnp.argsort(priority)[:count].astype(jnp.int32)
  valid = jnp.arange(count) < num_pos + num_neg
  pad = num_samples - count
  indices = jnp.pad(jnp.where(valid, order, 0), (0, pad))
  valid = jnp.pad(valid, (0, pad))
  is_pos = valid & (jnp.arange(num_samples) < num_pos)
  return Sample(indices, is_pos, valid)


def _rank_within(member, noise):
  """Rank of each member by `noise` among members (0-based); non-members get large ranks."""
  order = jnp.argsort(jnp.where(member, noise, 2.0))
  return jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0], dtype=order.dtype))
