"""`synthetic_shapes` (vision_jax's procedural builder) for the detection contract."""
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import detection_sources
from vision_jax.data import synthetic_shapes


def detection_source(builder) -> detection_sources.DetectionSource:
  features = builder.info.features

  def canonical(example, with_masks, with_semantic):
    objects = example['objects']
    image = tf.io.decode_png(example['image'], channels=3)
    out = {
        'image': image,
        **detection_sources.object_fields(objects),
        'keypoints': tf.cast(objects['keypoints'], tf.float32),
        'image_id': tf.cast(example['image/id'], tf.int64),
    }
    if with_masks:
      masks = detection_sources.decode_masks(objects['mask'])
      # With zero instances map_fn cannot know the image size.
      out['masks'] = tf.reshape(masks, [-1, tf.shape(image)[0], tf.shape(image)[1]])
    if with_semantic:
      out['semantic'] = tf.cast(tf.io.decode_png(example['semantic'], channels=1)[..., 0],
                                tf.int32)
    return out

  return detection_sources.DetectionSource(
      builder=builder,
      class_names=tuple(features['objects']['label'].names),
      category_ids=tuple(range(1, features['objects']['label'].num_classes + 1)),
      keypoint_names=synthetic_shapes.KEYPOINT_NAMES,
      keypoint_flip_perm=synthetic_shapes.KEYPOINT_FLIP_PERM,
      keypoint_skeleton=synthetic_shapes.KEYPOINT_SKELETON,
      semantic_names=synthetic_shapes.SEMANTIC_NAMES,
      has_masks=True,
      decoders={'image': tfds.decode.SkipDecoding(), 'semantic': tfds.decode.SkipDecoding(),
                'objects': {'mask': tfds.decode.SkipDecoding()}},
      canonical=canonical,
  )
