"""Local COCO-format folders (`vision_jax.data.coco_format`) for the detection and
landmark contracts.

Detection: classes are the json categories sorted by id, `category_ids` the json ids;
instance masks always exist. The original ground truth is the split's annotation json
itself.

Landmarks (folders with keypoints, e.g. COCO person_keypoints): one object per image,
the non-crowd instance with the most labelled keypoints (ties: the larger area), as a
single-person pose benchmark; its box centres the crop. The point set is 'keypoints'
(the json's names, flipped by their left_/right_ prefixes); an image without a labelled
instance gives a crop whose points are all unlabelled (no loss, not scored).
"""
import functools

import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import coco_format
from vision_jax.data import detection_sources
from vision_jax.data import landmark_pipeline


def detection_source(builder) -> detection_sources.DetectionSource:
  config = builder.builder_config
  num_keypoints = len(config.keypoint_names)

  def canonical(example, with_masks, with_semantic):
    if with_semantic:
      raise ValueError('coco_format data has no semantic maps: use with_semantic=False')
    objects = example['objects']
    image = tf.io.decode_image(example['image'], channels=3, expand_animations=False)
    n = tf.shape(objects['label'])[0]
    out = {
        'image': image,
        **detection_sources.object_fields(objects),
        'keypoints': (tf.cast(objects['keypoints'], tf.float32) if num_keypoints
                      else tf.zeros([n, 0, 3], tf.float32)),
        'image_id': tf.cast(example['image/id'], tf.int64),
    }
    if with_masks:
      h, w = tf.shape(image)[0], tf.shape(image)[1]
      # Images without annotations: map_fn cannot stack zero masks.
      out['masks'] = tf.cond(n > 0, lambda: detection_sources.decode_masks(objects['mask']),
                             lambda: tf.zeros([0, h, w], tf.uint8))
      out['masks'] = tf.reshape(out['masks'], [-1, h, w])
    return out

  return detection_sources.DetectionSource(
      builder=builder,
      class_names=config.class_names,
      category_ids=config.category_ids,
      keypoint_names=config.keypoint_names,
      keypoint_flip_perm=coco_format.keypoint_flip_perm(config.keypoint_names),
      keypoint_skeleton=config.keypoint_skeleton,
      semantic_names=None,
      has_masks=True,
      decoders={'image': tfds.decode.SkipDecoding(),
                'objects': {'mask': tfds.decode.SkipDecoding()}},
      canonical=canonical,
      original_ground_truth=functools.partial(coco_format.original_ground_truth, config),
  )


def landmark_source(builder) -> landmark_pipeline.LandmarkSource:
  config = builder.builder_config
  names = tuple(config.keypoint_names)
  if not names:
    raise ValueError(f'{config.name} has no keypoints: landmark localization needs a '
                     "COCO-format folder with keypoints (coco_annotations='person_keypoints')")
  detection = detection_source(builder)

  def canonical(example):
    found = detection.canonical(example, False, False)
    image = found['image']
    size = tf.cast(tf.shape(image)[:2], tf.float32)  # (h, w)
    keypoints = found['keypoints']  # [n, K, 3] relative
    labelled = tf.reduce_sum(tf.cast(keypoints[..., 2] > 0, tf.float32), axis=1)
    score = tf.where(found['is_crowd'], -1.0, labelled * 1e9 + found['areas'])
    best = tf.argmax(tf.concat([score, [-2.0]], 0), output_type=tf.int32)
    n = tf.shape(score)[0]
    points = tf.concat([keypoints, tf.zeros([1, len(names), 3])], 0)[best]
    boxes = tf.concat([found['boxes'], [[0.0, 0.0, 1.0, 1.0]]], 0)[best]
    points = tf.where(best < n, points, tf.zeros_like(points))
    ymin, xmin, ymax, xmax = tf.unstack(boxes)
    return {'image': image,
            'points': {'keypoints': tf.concat(
                [points[:, :2] * tf.stack([size[1], size[0]]), points[:, 2:]], 1)},
            'box': tf.stack([xmin * size[1], ymin * size[0], xmax * size[1],
                             ymax * size[0]])}

  return landmark_pipeline.LandmarkSource(
      builder=builder,
      point_sets={'keypoints': landmark_pipeline.PointSet(
          names, coco_format.keypoint_flip_perm(names), ocular_indices=None,
          skeleton=tuple(config.keypoint_skeleton))},
      decoders=detection.decoders, canonical=canonical)

