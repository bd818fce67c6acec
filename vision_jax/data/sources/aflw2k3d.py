"""TFDS `aflw2k3d` (AFLW2000-3D, 450 x 450 images) for the landmark contract: the
68-point iBUG layout ('mesh68'), all points visible (the 3D fit labels occluded ones).

Its only split is `train` (2,000 images): slice it, e.g. train[:1800] / train[1800:].
The points come relative to the image ((x, y) / 450); the crop is centred on their box.
"""
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import landmark_pipeline
from vision_jax.data import synthetic_faces


def landmark_source(builder) -> landmark_pipeline.LandmarkSource:
  height, width = builder.info.features['image'].shape[:2]

  def canonical(example):
    xy = tf.cast(example['landmarks_68_3d_xy_normalized'], tf.float32) * [width, height]
    return {'image': tf.io.decode_jpeg(example['image'], channels=3),
            'points': {'mesh68': tf.concat([xy, tf.fill([68, 1], 2.0)], axis=1)}}

  return landmark_pipeline.LandmarkSource(
      builder=builder,
      point_sets={'mesh68': landmark_pipeline.PointSet(
          synthetic_faces.MESH68_NAMES, synthetic_faces.MESH68_FLIP_PERM,
          ocular_indices=(36, 45), skeleton=synthetic_faces.MESH68_SKELETON)},
      decoders={'image': tfds.decode.SkipDecoding()},
      canonical=canonical)
