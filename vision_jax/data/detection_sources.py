"""Per-dataset adapters: a TFDS example -> the canonical detection example.

A `DetectionSource` knows one builder's feature layout and metadata (class names,
keypoints, flip permutation). Its `canonical` function turns one example, read with the
source's `decoders` (images and masks left encoded so that records can be skipped or
held in memory cheaply), into the canonical example that `detection_transforms` works on:

  image       [h, w, 3] uint8   the original image.
  boxes       [n, 4]    float32 TFDS relative (ymin, xmin, ymax, xmax).
  classes     [n]       int32   0-based thing class.
  is_crowd    [n]       bool
  areas       [n]       float32 object area in original pixels.
  keypoints   [n, K, 3] float32 (x, y, visibility) with x, y relative to the image
                                width/height (K = 0 when the dataset has none).
  masks       [n, h, w] uint8   0/1 visible masks (only with with_masks).
  semantic    [h, w]    int32   semantic classes (only with with_semantic).
  image_id    []        int64
"""
import dataclasses
from typing import Callable

import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import coco_format
from vision_jax.data import synthetic_shapes

# COCO 2014/2017 detection: the 80 official category ids in TFDS label order, and names.
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77,
    78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)
COCO_CLASS_NAMES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
    'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse',
    'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier',
    'toothbrush')


@dataclasses.dataclass(frozen=True)
class DetectionSource:
  """What the detection pipeline and evaluators need to know about one dataset.

  Attributes:
    builder: the prepared TFDS builder.
    class_names: thing class names, index = 0-based class id.
    category_ids: id written to COCO json for each class (COCO's official ids for
      coco/*, the json's ids for coco_format, class + 1 otherwise).
    keypoint_names: K names (empty when the dataset has no keypoints).
    keypoint_flip_perm: [K] new index -> old index under a horizontal flip.
    keypoint_skeleton: pairs of keypoint indices (for drawing / COCO categories).
    semantic_names: names of the semantic map's classes, or None without a map.
    has_masks: whether instance masks exist.
    decoders: TFDS decoders that leave images and masks encoded.
    canonical: (example, with_masks, with_semantic) -> canonical example (module doc).
  """
  builder: tfds.core.DatasetBuilder
  class_names: tuple[str, ...]
  category_ids: tuple[int, ...]
  keypoint_names: tuple[str, ...]
  keypoint_flip_perm: tuple[int, ...]
  keypoint_skeleton: tuple[tuple[int, int], ...]
  semantic_names: tuple[str, ...] | None
  has_masks: bool
  decoders: dict
  canonical: Callable[[dict, bool, bool], dict]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def num_keypoints(self) -> int:
    return len(self.keypoint_names)


def detection_source(builder: tfds.core.DatasetBuilder) -> DetectionSource:
  """The adapter for a prepared builder; ValueError for datasets without one."""
  if builder.name == 'synthetic_shapes':
    return _synthetic_shapes_source(builder)
  config = builder.builder_config.name if builder.builder_config else ''
  if builder.name == 'coco' and config in ('2014', '2017'):
    return _coco_source(builder)
  if builder.name == coco_format.NAME:
    return _coco_format_source(builder)
  raise ValueError(
      f'no detection adapter for TFDS dataset {builder.name}/{config}: supported are '
      f'synthetic_shapes, coco/2014, coco/2017 and coco_format (add one in {__name__})')


def _decode_masks(encoded: tf.Tensor) -> tf.Tensor:
  """[n] PNG strings -> [n, h, w] uint8 (n may be 0: then h = w = 0)."""
  return tf.map_fn(lambda s: tf.io.decode_png(s, channels=1)[..., 0], encoded,
                   fn_output_signature=tf.TensorSpec([None, None], tf.uint8))


def _synthetic_shapes_source(builder) -> DetectionSource:
  features = builder.info.features

  def canonical(example, with_masks, with_semantic):
    objects = example['objects']
    image = tf.io.decode_png(example['image'], channels=3)
    out = {
        'image': image,
        'boxes': tf.cast(objects['bbox'], tf.float32),
        'classes': tf.cast(objects['label'], tf.int32),
        'is_crowd': tf.cast(objects['is_crowd'], tf.bool),
        'areas': tf.cast(objects['area'], tf.float32),
        'keypoints': tf.cast(objects['keypoints'], tf.float32),
        'image_id': tf.cast(example['image/id'], tf.int64),
    }
    if with_masks:
      masks = _decode_masks(objects['mask'])
      # With zero instances map_fn cannot know the image size.
      out['masks'] = tf.reshape(masks, [-1, tf.shape(image)[0], tf.shape(image)[1]])
    if with_semantic:
      out['semantic'] = tf.cast(tf.io.decode_png(example['semantic'], channels=1)[..., 0],
                                tf.int32)
    return out

  return DetectionSource(
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


def _coco_source(builder) -> DetectionSource:
  label = builder.info.features['objects']['label']
  names = tuple(label.names)
  if len(names) == len(COCO_CLASS_NAMES) and all(n.isdigit() for n in names):
    names = COCO_CLASS_NAMES  # Builder info from code only (not prepared / mocked).

  def canonical(example, with_masks, with_semantic):
    if with_masks or with_semantic:
      raise ValueError('TFDS coco/2014 and coco/2017 hold boxes only: no instance masks '
                       'or semantic maps (use with_masks=False, with_semantic=False)')
    objects = example['objects']
    return {
        'image': tf.io.decode_image(example['image'], channels=3, expand_animations=False),
        'boxes': tf.cast(objects['bbox'], tf.float32),
        'classes': tf.cast(objects['label'], tf.int32),
        'is_crowd': tf.cast(objects['is_crowd'], tf.bool),
        'areas': tf.cast(objects['area'], tf.float32),
        'keypoints': tf.zeros([tf.shape(objects['label'])[0], 0, 3], tf.float32),
        'image_id': tf.cast(example['image/id'], tf.int64),
    }

  return DetectionSource(
      builder=builder,
      class_names=names,
      category_ids=COCO_CATEGORY_IDS,
      keypoint_names=(),
      keypoint_flip_perm=(),
      keypoint_skeleton=(),
      semantic_names=None,
      has_masks=False,
      decoders={'image': tfds.decode.SkipDecoding()},
      canonical=canonical,
  )


def _coco_format_source(builder) -> DetectionSource:
  """A local COCO-format folder (`coco_format`): classes are the json categories sorted
  by id, `category_ids` the json ids; instance masks always exist."""
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
        'boxes': tf.cast(objects['bbox'], tf.float32),
        'classes': tf.cast(objects['label'], tf.int32),
        'is_crowd': tf.cast(objects['is_crowd'], tf.bool),
        'areas': tf.cast(objects['area'], tf.float32),
        'keypoints': (tf.cast(objects['keypoints'], tf.float32) if num_keypoints
                      else tf.zeros([n, 0, 3], tf.float32)),
        'image_id': tf.cast(example['image/id'], tf.int64),
    }
    if with_masks:
      h, w = tf.shape(image)[0], tf.shape(image)[1]
      # Images without annotations: map_fn cannot stack zero masks.
      out['masks'] = tf.cond(n > 0, lambda: _decode_masks(objects['mask']),
                             lambda: tf.zeros([0, h, w], tf.uint8))
      out['masks'] = tf.reshape(out['masks'], [-1, h, w])
    return out

  return DetectionSource(
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
  )
