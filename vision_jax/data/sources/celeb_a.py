"""TFDS `celeb_a` (aligned 178 x 218 crops) for the landmark contract: 5 points.

CelebA's landmark columns are integer pixel indices of the eye centres, nose tip and
mouth corners, 'left' being the viewer's left (as `synthetic_faces`); here they become
pixel-edge coordinates (index + 0.5), all visible. CelebA has no face boxes: the crop is
centred on the box of the 5 points (use a `crop_scale` around 2.5 to include the face).
"""
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import landmark_pipeline
from vision_jax.data import synthetic_faces

_COLUMNS = ('lefteye', 'righteye', 'nose', 'leftmouth', 'rightmouth')


def landmark_source(builder) -> landmark_pipeline.LandmarkSource:

  def canonical(example):
    marks = example['landmarks']
    xy = tf.cast(tf.stack([tf.stack([marks[f'{name}_x'], marks[f'{name}_y']])
                           for name in _COLUMNS]), tf.float32) + 0.5
    return {'image': tf.io.decode_jpeg(example['image'], channels=3),
            'points': {'landmarks5': tf.concat([xy, tf.fill([5, 1], 2.0)], axis=1)}}

  return landmark_pipeline.LandmarkSource(
      builder=builder,
      point_sets={'landmarks5': landmark_pipeline.PointSet(
          synthetic_faces.LANDMARK5_NAMES, synthetic_faces.LANDMARK5_FLIP_PERM,
          ocular_indices=(0, 1), skeleton=synthetic_faces.LANDMARK5_SKELETON)},
      decoders={'image': tfds.decode.SkipDecoding()},
      canonical=canonical)
