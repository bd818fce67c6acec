"""Local COCO-format folders (`vision_jax.data.coco_format`) for the detection contract.

Classes are the json categories sorted by id, `category_ids` the json ids; instance masks
always exist. The original ground truth is the split's annotation json itself.
"""
import functools

import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import coco_format
from vision_jax.data import detection_sources


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
