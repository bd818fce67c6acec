"""`synthetic_faces` (vision_jax's procedural builder) for the detection and landmark
contracts.

Detection: faces are one class ('face', category id 1); the keypoints are the 5
landmarks `synthetic_faces.LANDMARK5_NAMES` followed by the 68 mesh points
`MESH68_NAMES` (73 per face: RetinaFace's points and dense branches read the two parts),
each (x, y relative, visibility 2 visible / 1 occluded / 0 unlabelled). The contract has
no per-instance "labelled" flag: a face whose landmarks are not labelled has all its
visibilities 0 (a labelled face always has every point at visibility >= 1 until a
training crop cuts points away), so `any(visibility > 0)` tells the two apart.

The landmark contract (`landmark_source`, configs `crops` / `crops_tiny`) reads the one
face of each image with both point sets, 'landmarks5' and 'mesh68'.
"""
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import detection_sources
from vision_jax.data import landmark_pipeline
from vision_jax.data import synthetic_faces


def detection_source(builder) -> detection_sources.DetectionSource:
  features = builder.info.features

  def canonical(example, with_masks, with_semantic):
    if with_masks or with_semantic:
      raise ValueError('synthetic_faces holds face boxes and landmarks only: no instance '
                       'masks or semantic maps (use with_masks=False, with_semantic=False)')
    faces = example['faces']
    return {
        'image': tf.io.decode_png(example['image'], channels=3),
        **detection_sources.object_fields(faces),
        'keypoints': tf.concat([tf.cast(faces['landmarks5'], tf.float32),
                               tf.cast(faces['mesh68'], tf.float32)], axis=1),
        'image_id': tf.cast(example['image/id'], tf.int64),
    }

  return detection_sources.DetectionSource(
      builder=builder,
      class_names=tuple(features['faces']['label'].names),
      category_ids=tuple(range(1, features['faces']['label'].num_classes + 1)),
      keypoint_names=synthetic_faces.LANDMARK5_NAMES + synthetic_faces.MESH68_NAMES,
      keypoint_flip_perm=synthetic_faces.LANDMARK5_FLIP_PERM + tuple(
          5 + i for i in synthetic_faces.MESH68_FLIP_PERM),
      keypoint_skeleton=synthetic_faces.LANDMARK5_SKELETON + tuple(
          (5 + a, 5 + b) for a, b in synthetic_faces.MESH68_SKELETON),
      semantic_names=None,
      has_masks=False,
      decoders={'image': tfds.decode.SkipDecoding()},
      canonical=canonical,
  )


def landmark_source(builder):
  """The landmark contract for the `crops` / `crops_tiny` configs (one face each):
  point sets 'landmarks5' and 'mesh68', the crop centred on the face box."""
  config = builder.builder_config
  if not config.crops:
    raise ValueError(
        f'synthetic_faces/{config.name} has several faces per image: landmark '
        'localization reads one face per example, from synthetic_faces/crops (or '
        'crops_tiny)')
  size = float(config.image_size)

  def canonical(example):
    faces = example['faces']
    box = tf.cast(faces['bbox'][0], tf.float32) * size  # (ymin, xmin, ymax, xmax)

    def pixels(points):
      points = tf.cast(points[0], tf.float32)
      return tf.concat([points[:, :2] * size, points[:, 2:]], axis=1)

    return {'image': tf.io.decode_png(example['image'], channels=3),
            'points': {'landmarks5': pixels(faces['landmarks5']),
                       'mesh68': pixels(faces['mesh68'])},
            'box': tf.stack([box[1], box[0], box[3], box[2]])}

  return landmark_pipeline.LandmarkSource(
      builder=builder,
      point_sets={
          'landmarks5': landmark_pipeline.PointSet(
              synthetic_faces.LANDMARK5_NAMES, synthetic_faces.LANDMARK5_FLIP_PERM,
              ocular_indices=(0, 1), skeleton=synthetic_faces.LANDMARK5_SKELETON),
          'mesh68': landmark_pipeline.PointSet(
              synthetic_faces.MESH68_NAMES, synthetic_faces.MESH68_FLIP_PERM,
              ocular_indices=(36, 45), skeleton=synthetic_faces.MESH68_SKELETON),
      },
      decoders={'image': tfds.decode.SkipDecoding()},
      canonical=canonical)
