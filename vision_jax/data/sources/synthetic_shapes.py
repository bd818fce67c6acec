"""`synthetic_shapes` (vision_jax's procedural builder) for the detection, paired-image
and unpaired-image contracts.

Paired (pix2pix, every config): input = the semantic map coloured with
`synthetic_shapes.LABEL_PALETTE`, target = the style-A image, semantic = the map.
Unpaired (CycleGAN, configs with style B: `styles`, `styles_tiny`): domain a = style A
(`image`) of the scenes with even `image/id`, domain b = style B (`image_b`) of the
scenes with odd `image/id`, so training never shows one scene in both domains;
evaluation passes keep each scene's pair (a, b, semantic).

The detection source (class names for prediction) imports no TensorFlow: TF and the
image-pair pipelines are imported by the functions that build tf.data graphs.
"""
from typing import TYPE_CHECKING

import tensorflow_datasets as tfds

from vision_jax.data import datasets
from vision_jax.data import detection_sources
from vision_jax.data import synthetic_shapes

if TYPE_CHECKING:
  import tensorflow as tf
  from vision_jax.data import image_pairs


def detection_source(builder) -> detection_sources.DetectionSource:
  features = builder.info.features

  def canonical(example, with_masks, with_semantic):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top,redefined-outer-name
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


def _image_shape(builder) -> tuple[int, int, int]:
  return tuple(int(s) for s in builder.info.features['image'].shape)


def _decode_semantic(example) -> 'tf.Tensor':
  import tensorflow as tf  # pylint: disable=g-import-not-at-top,redefined-outer-name
  return tf.io.decode_png(example['semantic'], channels=1)[..., 0]


def paired_image_source(builder) -> 'image_pairs.PairedImageSource':
  import tensorflow as tf  # pylint: disable=g-import-not-at-top,redefined-outer-name
  from vision_jax.data import image_pairs  # pylint: disable=g-import-not-at-top,redefined-outer-name

  def canonical(example):
    semantic = _decode_semantic(example)
    return {'input': image_pairs.colour_labels(semantic, synthetic_shapes.LABEL_PALETTE),
            'target': tf.io.decode_png(example['image'], channels=3),
            'semantic': semantic}

  skip = tfds.decode.SkipDecoding()
  return image_pairs.PairedImageSource(
      builder=builder, image_shape=_image_shape(builder),
      decoders=tfds.decode.PartialDecoding({'image': True, 'semantic': True},
                                           decoders={'image': skip, 'semantic': skip}),
      canonical=canonical, input_is_label_map=True,
      semantic_names=synthetic_shapes.SEMANTIC_NAMES,
      label_palette=synthetic_shapes.LABEL_PALETTE)


def unpaired_image_source(builder) -> 'image_pairs.UnpairedImageSource':
  import tensorflow as tf  # pylint: disable=g-import-not-at-top,redefined-outer-name
  from vision_jax.data import image_pairs  # pylint: disable=g-import-not-at-top,redefined-outer-name
  if 'image_b' not in builder.info.features:
    raise ValueError(
        f'{datasets.full_name(builder)} has no style-B images (image_b) for unpaired '
        'translation: use synthetic_shapes/styles or synthetic_shapes/styles_tiny')
  keys = {'a': 'image', 'b': 'image_b'}
  parity = {'a': 0, 'b': 1}

  def domain_records(split, domain):
    return split, lambda example: tf.equal(example['image/id'] % 2, parity[domain])

  def canonical(example, domain):
    return tf.io.decode_png(example[keys[domain]], channels=3)

  def scene_pairs(example):
    return {'a': canonical(example, 'a'), 'b': canonical(example, 'b'),
            'semantic': _decode_semantic(example)}

  skip = tfds.decode.SkipDecoding()
  return image_pairs.UnpairedImageSource(
      builder=builder, domain_names=('style_a', 'style_b'), image_shape=_image_shape(builder),
      decoders=tfds.decode.PartialDecoding(
          {'image': True, 'image_b': True, 'semantic': True, 'image/id': True},
          decoders={'image': skip, 'image_b': skip, 'semantic': skip}),
      domain_records=domain_records, canonical=canonical, scene_pairs=scene_pairs,
      semantic_names=synthetic_shapes.SEMANTIC_NAMES)
