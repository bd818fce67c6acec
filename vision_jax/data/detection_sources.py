"""The detection contract's dataset adapters: what a `DetectionSource` is.

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

The adapters themselves live in `vision_jax.data.sources.<TFDS builder name>`, each as
a function `detection_source(builder) -> DetectionSource` (found by that name; see
`vision_jax.data.sources`); `get_detection_source` finds one.

Finding a source and reading its metadata imports no TensorFlow (prediction from a file
needs the class names, not the pipeline): TF is imported by the functions that build
tf.data graphs.
"""
import dataclasses
from typing import TYPE_CHECKING, Callable

import tensorflow_datasets as tfds

from vision_jax.data import coco_format
from vision_jax.data import datasets
from vision_jax.data import sources

if TYPE_CHECKING:
  import tensorflow as tf

# config.data keys that locate a local COCO-format folder (`coco_format.resolve`).
COCO_FORMAT_KEYS = ('coco_root', 'coco_annotations', 'coco_images', 'coco_splits')


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
    original_ground_truth: for datasets with original annotations, `(split) -> COCO json
      dict` of the split's ground truth at original resolution, every annotation kept
      (evaluation then reproduces COCO's own numbers); None: evaluators build the
      ground truth from the evaluation batches.
    semantic_category_ids: the panoptic category id of each semantic class (COCO
      panoptic's official ids for coco/2017_panoptic); None: class + 1.
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
  original_ground_truth: Callable[[str], dict] | None = None
  semantic_category_ids: tuple[int, ...] | None = None

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def num_keypoints(self) -> int:
    return len(self.keypoint_names)


def get_detection_source(dataset: str, data_dir: str | None = None, *,
                         download: bool = False, **coco_options) -> DetectionSource:
  """The prepared dataset's adapter and metadata (class names, keypoints, ...).

  `coco_options` (coco_root, coco_annotations, coco_images, coco_splits) locate the
  folder of dataset 'coco_format' (see `coco_format.resolve`).
  """
  dataset = coco_format.resolve(dataset, **coco_options)
  return sources.find(datasets.get_builder(dataset, data_dir, download=download), 'detection')


def get_detection_source_from_config(data_config) -> DetectionSource:
  """`get_detection_source` from `config.data` (dataset, data_dir, coco_* keys)."""
  coco_options = {key: data_config[key] for key in COCO_FORMAT_KEYS if key in data_config}
  return get_detection_source(data_config['dataset'], data_config.get('data_dir'),
                              **coco_options)


def decode_masks(encoded: 'tf.Tensor') -> 'tf.Tensor':
  """[n] PNG strings -> [n, h, w] uint8 (n may be 0: then h = w = 0)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top,redefined-outer-name
  return tf.map_fn(lambda s: tf.io.decode_png(s, channels=1)[..., 0], encoded,
                   fn_output_signature=tf.TensorSpec([None, None], tf.uint8))


def object_fields(objects: dict) -> dict:
  """The canonical per-object fields shared by TFDS detection features: boxes (relative
  ymin, xmin, ymax, xmax), classes, is_crowd and areas of an example's `objects`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top,redefined-outer-name
  return {'boxes': tf.cast(objects['bbox'], tf.float32),
          'classes': tf.cast(objects['label'], tf.int32),
          'is_crowd': tf.cast(objects['is_crowd'], tf.bool),
          'areas': tf.cast(objects['area'], tf.float32)}
