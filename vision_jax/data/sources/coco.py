"""TFDS `coco/2014`, `coco/2017` (boxes only) and `coco/2017_panoptic` for the detection
contract.

Detection configs: labels are TFDS' 0..79; class c is COCO category
`COCO_CATEGORY_IDS[c]`.

`coco/2017_panoptic` (TFDS features: 'image', 'image/id', 'panoptic_image' an RGB PNG
whose pixel holds segment id R + 256 G + 256^2 B (0: void), and 'panoptic_objects', one
entry per segment: 'id', 'area', 'bbox', 'is_crowd', 'label' over the 133 COCO panoptic
categories). The 80 thing categories are the detection classes 0..79 (COCO ids
`COCO_CATEGORY_IDS`), the 53 stuff categories (COCO ids 92..200,
`COCO_STUFF_CATEGORY_IDS`) follow as semantic classes 80..132: `semantic_names` =
`COCO_PANOPTIC_NAMES`, things first, as UPSNet needs. TFDS labels are matched to these
categories by name (a builder whose label names are not all COCO panoptic categories is
an error naming them; unprepared builder info, whose names are '0'..'132', is taken in
the order of COCO's panoptic json, ids ascending). The canonical example has
  instances  the thing segments (crowd ones with is_crowd): boxes and areas of the
             segments, classes 0..79; with_masks: masks = (panoptic id == segment id).
             Stuff segments are no instances.
  semantic   (with_semantic) per pixel the semantic class of its segment, -1 on void
             (id 0).
A segment label outside the category list, or a PNG segment id absent from
'panoptic_objects', stops the pipeline with an InvalidArgumentError naming the image
and the ids.

The original ground truth (for evaluation at original resolution, every annotation
kept) is rebuilt from the records: TFDS stores each annotation's box (relative), area,
crowd flag and id; for coco/2017_panoptic the thing segments, with RLE masks cut from
the panoptic PNG.
"""
import numpy as np
from pycocotools import mask as mask_api
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

# COCO panoptic 2017 (panopticapi's panoptic_coco_categories.json): the 53 stuff
# categories, ids ascending, and their names ('-merged': merged COCO-Stuff classes).
COCO_STUFF_CATEGORY_IDS = (
    92, 93, 95, 100, 107, 109, 112, 118, 119, 122, 125, 128, 130, 133, 138, 141, 144, 145,
    147, 148, 149, 151, 154, 155, 156, 159, 161, 166, 168, 171, 175, 176, 177, 178, 180,
    181, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196, 197, 198, 199,
    200)
COCO_STUFF_NAMES = (
    'banner', 'blanket', 'bridge', 'cardboard', 'counter', 'curtain', 'door-stuff',
    'floor-wood', 'flower', 'fruit', 'gravel', 'house', 'light', 'mirror-stuff', 'net',
    'pillow', 'platform', 'playingfield', 'railroad', 'river', 'road', 'roof', 'sand', 'sea',
    'shelf', 'snow', 'stairs', 'tent', 'towel', 'wall-brick', 'wall-stone', 'wall-tile',
    'wall-wood', 'water-other', 'window-blind', 'window-other', 'tree-merged',
    'fence-merged', 'ceiling-merged', 'sky-other-merged', 'cabinet-merged', 'table-merged',
    'floor-other-merged', 'pavement-merged', 'mountain-merged', 'grass-merged',
    'dirt-merged', 'paper-merged', 'food-other-merged', 'building-other-merged',
    'rock-merged', 'wall-other-merged', 'rug-merged')
# The 133 panoptic categories as semantic classes: index = semantic class (things first,
# in detection class order, then stuff); the json's order (ids ascending) is the same.
COCO_PANOPTIC_CATEGORY_IDS = COCO_CATEGORY_IDS + COCO_STUFF_CATEGORY_IDS
COCO_PANOPTIC_NAMES = COCO_CLASS_NAMES + COCO_STUFF_NAMES
COCO_PANOPTIC_ISTHING = ((True,) * len(COCO_CATEGORY_IDS)
                         + (False,) * len(COCO_STUFF_CATEGORY_IDS))

_DECODERS = {'image': tfds.decode.SkipDecoding()}
_PANOPTIC_DECODERS = {'image': tfds.decode.SkipDecoding(),
                      'panoptic_image': tfds.decode.SkipDecoding()}
_VOID = -1  # semantic class of unlabelled pixels (detection_transforms.SEMANTIC_PAD)


def _image_size(encoded: tf.Tensor) -> tf.Tensor:
  """(height, width) of an encoded image, without decoding JPEG pixels."""
  return tf.cond(tf.io.is_jpeg(encoded), lambda: tf.io.extract_jpeg_shape(encoded)[:2],
                 lambda: tf.shape(tf.io.decode_image(encoded, channels=3,
                                                     expand_animations=False))[:2])


def panoptic_ids(encoded_png: tf.Tensor) -> tf.Tensor:
  """A COCO panoptic PNG -> [h, w] int32 segment ids R + 256 G + 256^2 B (0: void)."""
  rgb = tf.cast(tf.io.decode_png(encoded_png, channels=3, dtype=tf.uint8), tf.int32)
  return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def panoptic_label_table(label_names) -> np.ndarray:
  """[len(label_names)] int32: TFDS label index -> semantic class (index into
  `COCO_PANOPTIC_NAMES`), matching by name.

  Names that are all digits (builder info from code only: not prepared, or mocked)
  are taken in the json's order, which is `COCO_PANOPTIC_NAMES`' order.
  Raises ValueError naming the labels that are no COCO panoptic category.
  """
  names = tuple(label_names)
  if len(names) == len(COCO_PANOPTIC_NAMES) and all(n.isdigit() for n in names):
    return np.arange(len(names), dtype=np.int32)
  index = {name: i for i, name in enumerate(COCO_PANOPTIC_NAMES)}
  missing = [(i, n) for i, n in enumerate(names) if n not in index]
  if missing:
    raise ValueError(
        f'coco/2017_panoptic: TFDS labels (index, name) {missing} are not in the COCO '
        f'panoptic category list ({len(COCO_PANOPTIC_NAMES)} categories: the 80 things '
        f'{COCO_CATEGORY_IDS[0]}..{COCO_CATEGORY_IDS[-1]} and the 53 stuff '
        f'{COCO_STUFF_CATEGORY_IDS[0]}..{COCO_STUFF_CATEGORY_IDS[-1]} of panopticapi\'s '
        'panoptic_coco_categories.json); is the data_dir\'s dataset_info from another '
        'category list?')
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(f'coco/2017_panoptic: TFDS label names {repeated} repeat')
  return np.array([index[n] for n in names], np.int32)


def _checked_segments(example: dict, table: tf.Tensor):
  """The example's `panoptic_objects` with 'semantic' (class of each segment), after
  asserting that every label is in the table."""
  objects = example['panoptic_objects']
  labels = tf.cast(objects['label'], tf.int32)
  num_labels = tf.shape(table)[0]
  outside = (labels < 0) | (labels >= num_labels)
  check = tf.debugging.Assert(~tf.reduce_any(outside), [
      'coco/2017_panoptic: segment labels outside the category list of', num_labels,
      'COCO panoptic categories; image id', example['image/id'], 'segment ids',
      tf.boolean_mask(objects['id'], outside), 'labels', tf.boolean_mask(labels, outside)],
                              summarize=64)
  with tf.control_dependencies([check]):
    semantic = tf.gather(table, tf.clip_by_value(labels, 0, num_labels - 1))
  return objects, semantic


def _semantic_map(ids: tf.Tensor, segment_ids: tf.Tensor, segment_semantic: tf.Tensor,
                  image_id: tf.Tensor) -> tf.Tensor:
  """[h, w] segment ids -> [h, w] int32 semantic classes (-1 on void, id 0), asserting
  that every non-zero id is one of `segment_ids`."""
  order = tf.argsort(segment_ids)
  # A sentinel above every 24-bit id keeps searchsorted's positions in range.
  sorted_ids = tf.concat([tf.gather(segment_ids, order), [tf.int32.max]], 0)
  sorted_semantic = tf.concat([tf.gather(segment_semantic, order), [_VOID]], 0)
  flat = tf.reshape(ids, [-1])
  position = tf.searchsorted(sorted_ids, flat, side='left')
  found = tf.gather(sorted_ids, position) == flat
  unknown = tf.boolean_mask(flat, ~found & (flat != 0))
  check = tf.debugging.Assert(tf.size(unknown) == 0, [
      'coco/2017_panoptic: panoptic_image of image id', image_id,
      'holds segment ids absent from its panoptic_objects:', tf.unique(unknown)[0],
      'listed ids:', segment_ids], summarize=32)
  with tf.control_dependencies([check]):
    semantic = tf.where(found, tf.gather(sorted_semantic, position), _VOID)
  return tf.reshape(semantic, tf.shape(ids))


def _panoptic_canonical(table: np.ndarray, num_things: int):
  table = tf.constant(table, tf.int32)

  def canonical(example, with_masks, with_semantic):
    objects, semantic = _checked_segments(example, table)
    image = tf.io.decode_image(example['image'], channels=3, expand_animations=False)
    thing = semantic < num_things
    things = {key: tf.boolean_mask(value, thing)
              for key, value in detection_sources.object_fields(objects).items()}
    things['classes'] = tf.boolean_mask(semantic, thing)
    out = {
        'image': image,
        **things,
        'keypoints': tf.zeros([tf.shape(things['classes'])[0], 0, 3], tf.float32),
        'image_id': tf.cast(example['image/id'], tf.int64),
    }
    if with_masks or with_semantic:
      ids = panoptic_ids(example['panoptic_image'])
      size_check = tf.debugging.assert_equal(
          tf.shape(ids), tf.shape(image)[:2],
          message='coco/2017_panoptic: panoptic_image and image sizes differ')
      with tf.control_dependencies([size_check]):
        ids = tf.identity(ids)
      segment_ids = tf.cast(objects['id'], tf.int32)
      if with_masks:
        thing_ids = tf.boolean_mask(segment_ids, thing)
        out['masks'] = tf.cast(ids[None] == thing_ids[:, None, None], tf.uint8)
      if with_semantic:
        out['semantic'] = _semantic_map(ids, segment_ids, semantic, example['image/id'])
    return out

  return canonical


def _original_ground_truth(builder, class_names, *, panoptic_table=None):
  """`(split) -> COCO json dict`; with `panoptic_table` (coco/2017_panoptic) the thing
  segments with RLE masks."""
  objects_key = 'objects' if panoptic_table is None else 'panoptic_objects'
  decoders = _DECODERS if panoptic_table is None else _PANOPTIC_DECODERS

  def read(ex):
    out = {'size': _image_size(ex['image']), 'image/id': ex['image/id'],
           'objects': ex[objects_key]}
    if panoptic_table is not None:
      out['ids'] = panoptic_ids(ex['panoptic_image'])
    return out

  def ground_truth(split: str) -> dict:
    ds = builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)
    ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE)  # order kept
    images, annotations = [], []
    for example in ds.as_numpy_iterator():
      h, w = (int(v) for v in example['size'])
      image_id = int(example['image/id'])
      images.append({'id': image_id, 'height': h, 'width': w})
      objects = example['objects']
      for k in range(len(objects['label'])):
        label = int(objects['label'][k])
        if panoptic_table is not None:
          if not 0 <= label < len(panoptic_table):
            raise ValueError(f'coco/2017_panoptic {split}: image id {image_id}, segment id '
                             f'{int(objects["id"][k])}: label {label} is outside the '
                             f'{len(panoptic_table)} COCO panoptic categories')
          label = int(panoptic_table[label])
          if label >= len(class_names):
            continue  # stuff
        ymin, xmin, ymax, xmax = (float(v) for v in objects['bbox'][k])
        annotation = {
            'id': int(objects['id'][k]) if 'id' in objects else len(annotations) + 1,
            'image_id': image_id,
            'category_id': COCO_CATEGORY_IDS[label],
            'bbox': [xmin * w, ymin * h, (xmax - xmin) * w, (ymax - ymin) * h],
            'area': float(objects['area'][k]),
            'iscrowd': int(bool(objects['is_crowd'][k]))}
        if panoptic_table is not None:
          mask = np.asfortranarray((example['ids'] == objects['id'][k]).astype(np.uint8))
          rle = mask_api.encode(mask)
          annotation['segmentation'] = {'size': [int(s) for s in rle['size']],
                                        'counts': rle['counts'].decode('ascii')}
        annotations.append(annotation)
    config = builder.builder_config.name
    return {'info': {'description': f'{builder.name}/{config} {split}'},
            'images': images, 'annotations': annotations,
            'categories': [{'id': i, 'name': n, 'supercategory': 'object'}
                           for i, n in zip(COCO_CATEGORY_IDS, class_names)]}

  return ground_truth


def _panoptic_source(builder) -> detection_sources.DetectionSource:
  table = panoptic_label_table(builder.info.features['panoptic_objects']['label'].names)
  return detection_sources.DetectionSource(
      builder=builder,
      class_names=COCO_CLASS_NAMES,
      category_ids=COCO_CATEGORY_IDS,
      keypoint_names=(),
      keypoint_flip_perm=(),
      keypoint_skeleton=(),
      semantic_names=COCO_PANOPTIC_NAMES,
      has_masks=True,
      decoders=_PANOPTIC_DECODERS,
      canonical=_panoptic_canonical(table, len(COCO_CLASS_NAMES)),
      original_ground_truth=_original_ground_truth(builder, COCO_CLASS_NAMES,
                                                   panoptic_table=table),
      semantic_category_ids=COCO_PANOPTIC_CATEGORY_IDS,
  )


def detection_source(builder) -> detection_sources.DetectionSource:
  config = builder.builder_config.name if builder.builder_config else ''
  if config == '2017_panoptic':
    return _panoptic_source(builder)
  if config not in ('2014', '2017'):
    raise ValueError(f'coco/{config} has no detection adapter: use coco/2014, coco/2017 '
                     'or coco/2017_panoptic')
  label = builder.info.features['objects']['label']
  names = tuple(label.names)
  if len(names) == len(COCO_CLASS_NAMES) and all(n.isdigit() for n in names):
    names = COCO_CLASS_NAMES  # Builder info from code only (not prepared / mocked).

  def canonical(example, with_masks, with_semantic):
    if with_masks or with_semantic:
      raise ValueError('TFDS coco/2014 and coco/2017 hold boxes only: no instance masks '
                       'or semantic maps (use with_masks=False, with_semantic=False; '
                       'coco/2017_panoptic has both)')
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
