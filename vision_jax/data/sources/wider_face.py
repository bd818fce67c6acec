"""TFDS `wider_face` (WIDER FACE) for the detection contract: face boxes only.

One class, 'face'. WIDER's `invalid` faces (too small or unrecognisable) become crowd
regions: never matched in training, and detections on them are ignored in evaluation,
as WIDER's own protocol ignores them. No landmarks (RetinaFace's 5-point annotations are
a separate release TFDS does not hold), so RetinaFace trains its box-only model on it.
Image ids are hashes of the file names (the records have no numeric id).
"""
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import detection_sources


def detection_source(builder) -> detection_sources.DetectionSource:

  def canonical(example, with_masks, with_semantic):
    if with_masks or with_semantic:
      raise ValueError('wider_face holds face boxes only: no instance masks or semantic '
                       'maps (use with_masks=False, with_semantic=False)')
    image = tf.io.decode_jpeg(example['image'], channels=3)
    faces = example['faces']
    boxes = tf.cast(faces['bbox'], tf.float32)
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    n = tf.shape(boxes)[0]
    return {
        'image': image,
        'boxes': boxes,
        'classes': tf.zeros([n], tf.int32),
        'is_crowd': tf.cast(faces['invalid'], tf.bool),
        'areas': (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) * size[0] * size[1],
        'keypoints': tf.zeros([n, 0, 3], tf.float32),
        'image_id': tf.strings.to_hash_bucket_fast(example['image/filename'], 2**62),
    }

  return detection_sources.DetectionSource(
      builder=builder, class_names=('face',), category_ids=(1,), keypoint_names=(),
      keypoint_flip_perm=(), keypoint_skeleton=(), semantic_names=None, has_masks=False,
      decoders={'image': tfds.decode.SkipDecoding()}, canonical=canonical)
