"""TFDS `coco/2014` and `coco/2017` (boxes only) for the detection contract.

Labels are TFDS' 0..79; class c is COCO category `COCO_CATEGORY_IDS[c]`. The original
ground truth (for evaluation at original resolution, every annotation kept) is rebuilt
from the records: TFDS stores each annotation's box (relative), area, crowd flag and id.
"""
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import detection_sources

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
_DECODERS = {'image': tfds.decode.SkipDecoding()}


def _image_size(encoded: tf.Tensor) -> tf.Tensor:
  """(height, width) of an encoded image, without decoding JPEG pixels."""
  return tf.cond(tf.io.is_jpeg(encoded), lambda: tf.io.extract_jpeg_shape(encoded)[:2],
                 lambda: tf.shape(tf.io.decode_image(encoded, channels=3,
                                                     expand_animations=False))[:2])


def _original_ground_truth(builder, class_names):

  def ground_truth(split: str) -> dict:
    ds = builder.as_dataset(split=split, decoders=_DECODERS, shuffle_files=False)
    ds = ds.map(lambda ex: {'size': _image_size(ex['image']), 'image/id': ex['image/id'],
                            'objects': ex['objects']})
    images, annotations = [], []
    for example in ds.as_numpy_iterator():
      h, w = (int(v) for v in example['size'])
      image_id = int(example['image/id'])
      images.append({'id': image_id, 'height': h, 'width': w})
      objects = example['objects']
      for k in range(len(objects['label'])):
        ymin, xmin, ymax, xmax = (float(v) for v in objects['bbox'][k])
        annotations.append({
            'id': int(objects['id'][k]) if 'id' in objects else len(annotations) + 1,
            'image_id': image_id,
            'category_id': COCO_CATEGORY_IDS[int(objects['label'][k])],
            'bbox': [xmin * w, ymin * h, (xmax - xmin) * w, (ymax - ymin) * h],
            'area': float(objects['area'][k]),
            'iscrowd': int(bool(objects['is_crowd'][k]))})
    return {'info': {'description': f'{builder.name}/{builder.builder_config.name} {split}'},
            'images': images, 'annotations': annotations,
            'categories': [{'id': i, 'name': n, 'supercategory': 'object'}
                           for i, n in zip(COCO_CATEGORY_IDS, class_names)]}

  return ground_truth


def detection_source(builder) -> detection_sources.DetectionSource:
  config = builder.builder_config.name if builder.builder_config else ''
  if config not in ('2014', '2017'):
    raise ValueError(f'coco/{config} has no detection adapter: use coco/2014 or coco/2017')
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
        **detection_sources.object_fields(objects),
        'keypoints': tf.zeros([tf.shape(objects['label'])[0], 0, 3], tf.float32),
        'image_id': tf.cast(example['image/id'], tf.int64),
    }

  return detection_sources.DetectionSource(
      builder=builder,
      class_names=names,
      category_ids=COCO_CATEGORY_IDS,
      keypoint_names=(),
      keypoint_flip_perm=(),
      keypoint_skeleton=(),
      semantic_names=None,
      has_masks=False,
      decoders=_DECODERS,
      canonical=canonical,
      original_ground_truth=_original_ground_truth(builder, names),
  )

