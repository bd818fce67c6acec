"""Per-example detection transforms in TF: canonical example -> one element of the batch contract.

Geometry (all in pixels once converted): the original image (h, w) is flipped
(training), resized by `scale` = min(H / h, W / w) * jitter, cropped at a random offset
when larger than (H, W) (training) and zero-padded at the bottom/right to (H, W).
Boxes become (x1, y1, x2, y2) input pixels with pixel-edge convention, so an original
box maps to `box * scale - crop_offset` and, without a crop, back with `/ scale`.
Randomness is stateless: it comes only from the `rng` seed passed in, so the output is
a pure function of (example, rng).
"""
from typing import Sequence

import tensorflow as tf

from vision_jax.data import streams

# Ignore value of padded pixels in the semantic map.
SEMANTIC_PAD = -1


def _pad_first_dim(x: tf.Tensor, size: int) -> tf.Tensor:
  """Truncates or zero-pads the first dimension of x to `size`."""
  x = x[:size]
  padding = [[0, size - tf.shape(x)[0]]] + [[0, 0]] * (len(x.shape) - 1)
  return tf.ensure_shape(tf.pad(x, padding), [size] + list(x.shape[1:]))


def pad_instances(example: dict, max_instances: int) -> dict:
  """Truncates/pads the per-instance fields of a canonical example to `max_instances`.

  Adds `valid` [M] bool. Padding has zeros (classes -1 is applied later).
  """
  out = dict(example)
  n = tf.shape(example['classes'])[0]
  for key in ('boxes', 'classes', 'is_crowd', 'areas', 'keypoints', 'masks'):
    if key in example:
      out[key] = _pad_first_dim(example[key], max_instances)
  out['valid'] = tf.range(max_instances) < n
  return out


def _flip(parts: dict, width: tf.Tensor, flip_perm: Sequence[int]) -> dict:
  """Mirrors left-right: image [h, w, 3], boxes [M, 4] (x1, y1, x2, y2) pixels, optional
  keypoints [M, K, 3] (x, y, v) pixels (reordered by flip_perm), masks [M, h, w],
  semantic [h, w]."""
  out = dict(parts)
  out['image'] = parts['image'][:, ::-1]
  x1, y1, x2, y2 = tf.unstack(parts['boxes'], axis=-1)
  out['boxes'] = tf.stack([width - x2, y1, width - x1, y2], axis=-1)
  if 'keypoints' in parts:
    keypoints = parts['keypoints']
    flipped_x = tf.where(keypoints[..., 2] > 0, width - keypoints[..., 0], 0.0)
    keypoints = tf.concat([flipped_x[..., None], keypoints[..., 1:]], axis=-1)
    out['keypoints'] = tf.gather(keypoints, tf.constant(flip_perm, tf.int32), axis=1)
  if 'masks' in parts:
    out['masks'] = parts['masks'][:, :, ::-1]
  if 'semantic' in parts:
    out['semantic'] = parts['semantic'][:, ::-1]
  return out


def _resize_crop_pad(x: tf.Tensor, new_size, offset, out_size, method: str) -> tf.Tensor:
  """[h, w, C] -> resized to new_size, cropped at offset to <= out_size, padded to out_size."""
  x = tf.image.resize(x, new_size, method=method)
  x = x[offset[0]:offset[0] + out_size[0], offset[1]:offset[1] + out_size[1]]
  return tf.image.pad_to_bounding_box(x, 0, 0, out_size[0], out_size[1])


def preprocess(example: dict, *, image_size: tuple[int, int], max_instances: int,
               training: bool, rng: tf.Tensor | None = None, hflip_prob: float = 0.0,
               scale_range: Sequence[float] = (1.0, 1.0), min_box_fraction: float = 0.25,
               keypoint_flip_perm: Sequence[int] = (), with_keypoints: bool = True
               ) -> dict:
  """Canonical example -> one example of the batch contract (no batch dimension).

  Args:
    example: canonical example (see `detection_sources`); `masks` / `semantic` are
      carried through when present.
    image_size: (H, W).
    max_instances: M.
    training: augment (flip, scale jitter + random crop) and drop instances whose box
      keeps less than `min_box_fraction` of its area inside the crop (the rest are
      clipped). Without training the geometry is only resize + pad, nothing dropped.
    rng: [2] int64 stateless seed (training only).
    hflip_prob: probability of a horizontal flip.
    scale_range: (lo, hi) factor applied on top of the fit-to-(H, W) scale.
    min_box_fraction: see `training`.
    keypoint_flip_perm: new keypoint index -> old index under a flip.
    with_keypoints: emit `keypoints` (only meaningful when K > 0).
  Returns:
    dict with the contract's per-example shapes: image [H, W, 3] uint8, boxes [M, 4],
    classes [M] int32, valid [M] bool, is_crowd [M], areas [M], keypoints [M, K, 3]
    (when with_keypoints), masks [M, H, W] uint8, semantic [H, W] int32 (when given),
    image_id, scale, orig_size [2] int32, example_valid.
  """
  out_h, out_w = image_size
  ex = pad_instances(example, max_instances)
  image = ex['image']
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
  ymin, xmin, ymax, xmax = tf.unstack(ex['boxes'], axis=-1)
  boxes = tf.stack([xmin * wf, ymin * hf, xmax * wf, ymax * hf], axis=-1)
  parts = {'image': image, 'boxes': boxes}
  if with_keypoints and 'keypoints' in ex:
    keypoints = ex['keypoints']
    parts['keypoints'] = tf.concat(
        [keypoints[..., :2] * tf.stack([wf, hf]), keypoints[..., 2:]], -1)
  for key in ('masks', 'semantic'):
    if key in ex:
      parts[key] = ex[key]

  factor = tf.constant(1.0)
  if training:
    flip_seed, scale_seed, crop_seed = tf.unstack(
        tf.random.experimental.stateless_split(rng, 3))
    do_flip = tf.random.stateless_uniform([], flip_seed) < hflip_prob
    parts = tf.cond(do_flip, lambda: _flip(parts, wf, keypoint_flip_perm), lambda: parts)
    lo, hi = scale_range
    factor = tf.random.stateless_uniform([], scale_seed, lo, hi)
  scale = tf.minimum(out_h / hf, out_w / wf) * factor
  new_h = tf.maximum(1, tf.cast(tf.round(hf * scale), tf.int32))
  new_w = tf.maximum(1, tf.cast(tf.round(wf * scale), tf.int32))
  offset = tf.zeros([2], tf.int32)
  if training:
    slack = tf.maximum(tf.stack([new_h - out_h, new_w - out_w]), 0)
    u = tf.random.stateless_uniform([2], crop_seed)
    offset = tf.minimum(tf.cast(u * tf.cast(slack + 1, tf.float32), tf.int32), slack)
  new_size = tf.stack([new_h, new_w])
  boxes, keypoints = parts['boxes'], parts.get('keypoints')
  masks, semantic = parts.get('masks'), parts.get('semantic')
  image = streams.to_uint8(
      _resize_crop_pad(parts['image'], new_size, offset, image_size, 'bilinear'))

  # Boxes: scale, shift by the crop, clip to the image content inside the output.
  off_x, off_y = tf.cast(offset[1], tf.float32), tf.cast(offset[0], tf.float32)
  limit_x = tf.cast(tf.minimum(new_w - offset[1], out_w), tf.float32)
  limit_y = tf.cast(tf.minimum(new_h - offset[0], out_h), tf.float32)
  moved = boxes * scale - tf.stack([off_x, off_y, off_x, off_y])
  lower = tf.zeros([4])
  upper = tf.stack([limit_x, limit_y, limit_x, limit_y])
  clipped = tf.clip_by_value(moved, lower, upper)
  valid = ex['valid']
  if training:
    def area(b):
      return tf.maximum(b[:, 2] - b[:, 0], 0.0) * tf.maximum(b[:, 3] - b[:, 1], 0.0)
    inside = area(clipped)
    valid &= (inside > 0) & (inside >= min_box_fraction * area(moved))

  result = {
      'image': image,
      'boxes': clipped,
      'classes': ex['classes'],
      'is_crowd': ex['is_crowd'],
      'areas': ex['areas'],
  }
  if keypoints is not None:
    xy = keypoints[..., :2] * scale - tf.stack([off_x, off_y])
    vis = keypoints[..., 2]
    inside = ((xy[..., 0] >= 0) & (xy[..., 0] <= limit_x) &
              (xy[..., 1] >= 0) & (xy[..., 1] <= limit_y) & (vis > 0))
    vis = tf.where(inside, vis, 0.0)
    xy = tf.where(inside[..., None], xy, 0.0)
    result['keypoints'] = tf.concat([xy, vis[..., None]], -1)
  if masks is not None:
    masks = tf.transpose(masks, [1, 2, 0])  # [h, w, M]
    masks = _resize_crop_pad(masks, new_size, offset, image_size, 'nearest')
    result['masks'] = tf.cast(tf.transpose(masks, [2, 0, 1]), tf.uint8)

  # Valid instances first (stable), padding zeroed.
  order = tf.argsort(tf.cast(~valid, tf.int32), stable=True)
  valid = tf.gather(valid, order)
  for key, value in result.items():
    if key != 'image':
      value = tf.gather(value, order)
      mask = tf.reshape(valid, [-1] + [1] * (len(value.shape) - 1))
      result[key] = tf.where(mask, value, tf.zeros_like(value))
  result['classes'] = tf.where(valid, result['classes'], -1)
  result['valid'] = valid

  if semantic is not None:
    semantic = _resize_crop_pad(semantic[..., None] - SEMANTIC_PAD, new_size, offset,
                                image_size, 'nearest')
    result['semantic'] = tf.cast(semantic[..., 0], tf.int32) + SEMANTIC_PAD
  result['image_id'] = tf.cast(ex['image_id'], tf.int64)
  result['scale'] = tf.cast(scale, tf.float32)
  result['orig_size'] = tf.stack([h, w])
  result['example_valid'] = tf.constant(True)
  return result
