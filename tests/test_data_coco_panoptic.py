"""The coco/2017_panoptic detection pipeline (things + semantic map) on mocked TFDS data
(no real COCO here), its category mapping (80 things first, then 53 stuff), its bad input
errors, and experiments/upsnet_coco.py."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests import catalog_metadata
from vision_jax.data import detection_pipeline
from vision_jax.data.sources import coco as coco_source
from vision_jax.tasks import upsnet as upsnet_task
from vision_jax.train import config as config_lib

NAME = 'coco/2017_panoptic'
NAMES = coco_source.COCO_PANOPTIC_NAMES
K = 80  # things
PERSON, CAR = 0, 2  # detection classes (TFDS labels in the json's order)
ROAD = NAMES.index('road')  # 100: a stuff class
SKY = NAMES.index('sky-other-merged')  # 119


def _rgb(segment_id: int) -> tuple[int, int, int]:
  return segment_id % 256, segment_id // 256 % 256, segment_id // 65536


# Segment ids that use all three PNG channels (id = R + 256 G + 256^2 B).
SKY_ID, PERSON_ID, CAR_ID, CROWD_ID, ROAD_ID = (
    5 + 256 * 7 + 65536 * 1, 9 + 256 * 2 + 65536 * 3, 200 + 256 * 255 + 65536 * 4,
    17 + 65536 * 9, 255 + 256 * 255 + 65536 * 255)

# Per image: (height, width), and segments (id, label, is_crowd, rows, cols), in the
# order of TFDS' panoptic_objects; pixels of no segment are void.
IMAGES = [
    ((48, 64), [(SKY_ID, SKY, False, (0, 4), (0, 64)),
                (PERSON_ID, PERSON, False, (4, 20), (8, 28)),
                (CAR_ID, CAR, False, (20, 36), (30, 56)),
                (ROAD_ID, ROAD, False, (40, 48), (0, 64)),
                (CROWD_ID, PERSON, True, (10, 16), (40, 51))]),
    ((32, 32), [(ROAD_ID, ROAD, False, (16, 32), (0, 32))]),   # stuff only
    ((40, 60), [(CAR_ID, CAR, False, (0, 40), (0, 30)),
                (SKY_ID, SKY, False, (0, 20), (30, 60))]),
]
NUM_EXAMPLES = len(IMAGES)


def _id_map(i: int) -> np.ndarray:
  (h, w), segments = IMAGES[i]
  ids = np.zeros((h, w), np.int64)
  for segment_id, _, _, (r0, r1), (c0, c1) in segments:
    ids[r0:r1, c0:c1] = segment_id
  return ids


def _fake_example(i: int, names=NAMES, png_extra_id: int = 0) -> dict:
  """Image i: a constant image of value 20 i and its panoptic PNG (module IMAGES);
  `names` is the label order of the builder's metadata."""
  (h, w), segments = IMAGES[i]
  ids = _id_map(i)
  if png_extra_id:
    ids[h - 1, w - 1] = png_extra_id
  png = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
  bbox = [(r0 / h, c0 / w, r1 / h, c1 / w) for _, _, _, (r0, r1), (c0, c1) in segments]
  return {
      'image': np.full((h, w, 3), 20 * i, np.uint8),
      'image/filename': f'{i:012d}.jpg',
      'image/id': 500 + i,
      'panoptic_image': png,
      'panoptic_image/filename': f'{i:012d}.png',
      'panoptic_objects': {
          'id': np.array([s[0] for s in segments], np.int64),
          'area': np.array([(s[3][1] - s[3][0]) * (s[4][1] - s[4][0]) for s in segments],
                           np.int64),
          'bbox': np.array(bbox, np.float32).reshape(-1, 4),
          'label': np.array([names.index(NAMES[s[1]]) for s in segments], np.int64),
          'is_crowd': np.array([s[2] for s in segments], np.bool_)},
  }


def _as_dataset_fn(names=NAMES, png_extra_id=0, label_offset=0):
  """Replaces TFDS' reading: serialized fake examples, decoded like real records
  (mock_data's random examples cannot hold consistent segments and PNGs)."""

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False,
                 **kwargs):
    del split, read_config, shuffle_files, kwargs
    features = self.info.features
    serialized = [features.serialize_example(_fake_example(i, names, png_extra_id))
                  for i in range(NUM_EXAMPLES)]
    ds = tf.data.Dataset.from_tensor_slices(serialized)
    ds = ds.map(lambda s: features.deserialize_example(s, decoders=decoders))
    if label_offset:  # A record whose labels lie beyond the category list.

      def corrupt(ex):
        objects = dict(ex['panoptic_objects'])
        objects['label'] = objects['label'] + label_offset
        return {**ex, 'panoptic_objects': objects}

      ds = ds.map(corrupt)
    return ds

  return as_dataset


def _metadata_dir(root: str, names) -> str:
  """A data_dir holding coco/2017_panoptic's metadata only (as after `tfds build`,
  minus the records), with label names `names`."""

  def set_names(info):
    info.features['panoptic_objects']['label'].names = list(names)

  return catalog_metadata.write_metadata(root, NAME, num_examples=NUM_EXAMPLES,
                                         edit=set_names)


@pytest.fixture(scope='module')
def metadata_dir(tmp_path_factory):
  return _metadata_dir(str(tmp_path_factory.mktemp('coco_panoptic_meta')), NAMES)


def _batches(data_dir, as_dataset_fn, **kwargs):
  options = dict(data_dir=None, batch_size=2, image_size=(64, 64), max_instances=3,
                 training=False, with_masks=True, with_semantic=True)
  options.update(kwargs)
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, data_dir=data_dir,
                              as_dataset_fn=as_dataset_fn):
    return list(detection_pipeline.make_detection_dataset(NAME, 'validation', **options))


def test_category_constants_are_cocos_panoptic_categories():
  ids = coco_source.COCO_PANOPTIC_CATEGORY_IDS
  assert len(ids) == len(NAMES) == len(coco_source.COCO_PANOPTIC_ISTHING) == 133
  assert sum(coco_source.COCO_PANOPTIC_ISTHING) == K
  assert list(ids) == sorted(ids) and len(set(NAMES)) == 133
  assert ids[:K] == coco_source.COCO_CATEGORY_IDS and NAMES[:K] == coco_source.COCO_CLASS_NAMES
  stuff = dict(zip(ids[K:], NAMES[K:]))
  assert len(stuff) == 53 and min(stuff) == 92 and max(stuff) == 200
  for category_id, name in ((92, 'banner'), (118, 'floor-wood'), (149, 'road'),
                            (184, 'tree-merged'), (187, 'sky-other-merged'),
                            (200, 'rug-merged')):
    assert stuff[category_id] == name


def test_panoptic_batches_hold_things_and_the_semantic_map(metadata_dir):
  batches = _batches(metadata_dir, _as_dataset_fn())
  assert len(batches) == 2
  assert set(batches[0]) == {'image', 'boxes', 'classes', 'valid', 'is_crowd', 'areas',
                             'masks', 'semantic', 'image_id', 'scale', 'orig_size',
                             'example_valid'}
  assert batches[0]['masks'].shape == (2, 3, 64, 64)
  assert batches[0]['semantic'].shape == (2, 64, 64)
  assert batches[0]['semantic'].dtype == np.int32
  batch = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
  np.testing.assert_array_equal(batch['example_valid'], [True, True, True, False])
  np.testing.assert_array_equal(batch['image_id'][:3], [500, 501, 502])

  # Image 0 (48 x 64, scale 1): the three thing segments (crowd one included), in
  # TFDS' order; the stuff segments are no instances.
  np.testing.assert_array_equal(batch['valid'][0], [True, True, True])
  np.testing.assert_array_equal(batch['classes'][0], [PERSON, CAR, PERSON])
  np.testing.assert_array_equal(batch['is_crowd'][0], [False, False, True])
  np.testing.assert_allclose(batch['areas'][0], [16 * 20, 16 * 26, 6 * 11])
  np.testing.assert_allclose(batch['boxes'][0], [[8, 4, 28, 20], [30, 20, 56, 36],
                                                 [40, 10, 51, 16]], atol=1e-3)
  ids = np.pad(_id_map(0), ((0, 16), (0, 0)))
  for j, segment_id in enumerate((PERSON_ID, CAR_ID, CROWD_ID)):
    np.testing.assert_array_equal(batch['masks'][0, j], ids == segment_id)
  # Semantic: things first (detection class), then stuff (80 + stuff index), -1 on void
  # and on the letterbox padding.
  expected = np.full((64, 64), -1)
  for segment_id, semantic in ((SKY_ID, SKY), (PERSON_ID, PERSON), (CAR_ID, CAR),
                               (ROAD_ID, ROAD), (CROWD_ID, PERSON)):
    expected[ids == segment_id] = semantic
  np.testing.assert_array_equal(batch['semantic'][0], expected)
  assert ROAD == K + 20 and SKY == K + 39
  assert (batch['semantic'][0] == -1).sum() == 64 * 64 - (4 * 64 + 16 * 20 + 16 * 26 +
                                                          8 * 64 + 6 * 11)

  # Image 1 (32 x 32, scale 2): stuff only, so no instances.
  assert not batch['valid'][1].any() and not batch['masks'][1].any()
  np.testing.assert_array_equal(batch['classes'][1], -1)
  expected = np.full((64, 64), -1)
  expected[32:] = ROAD
  np.testing.assert_array_equal(batch['semantic'][1], expected)

  # Image 2 (40 x 60, scale 16 / 15): one car on the left, sky on the top right.
  np.testing.assert_array_equal(batch['classes'][2], [CAR, -1, -1])
  np.testing.assert_allclose(batch['boxes'][2, 0], np.array([0, 0, 30, 40]) * 16 / 15,
                             atol=1e-3)
  assert batch['masks'][2, 0, :42, :32].all() and not batch['masks'][2, 0, :, 33:].any()
  assert (batch['semantic'][2, :42, :32] == CAR).all()
  assert (batch['semantic'][2, :21, 33:] == SKY).all()
  assert (batch['semantic'][2, 22:42, 33:] == -1).all()

  # The evaluation padding example: no instances, semantic all -1.
  assert not batch['valid'][3].any() and (batch['semantic'][3] == -1).all()


def test_panoptic_source_metadata_and_original_ground_truth(metadata_dir):
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, data_dir=metadata_dir,
                              as_dataset_fn=_as_dataset_fn()):
    source = detection_pipeline.get_detection_source(NAME)
    truth = source.original_ground_truth('validation')
  assert source.class_names == coco_source.COCO_CLASS_NAMES and source.has_masks
  assert source.semantic_names == NAMES
  assert source.semantic_names[:source.num_classes] == source.class_names
  assert source.category_ids == coco_source.COCO_CATEGORY_IDS
  assert [image['id'] for image in truth['images']] == [500, 501, 502]
  # The thing segments only (crowd included), at original resolution, with RLE masks.
  annotations = truth['annotations']
  assert [a['id'] for a in annotations] == [PERSON_ID, CAR_ID, CROWD_ID, CAR_ID]
  assert [a['category_id'] for a in annotations] == [1, 3, 1, 3]
  assert [a['iscrowd'] for a in annotations] == [0, 0, 1, 0]
  np.testing.assert_allclose(annotations[1]['bbox'], [30, 20, 26, 16], atol=1e-3)
  from pycocotools import mask as mask_api  # pylint: disable=g-import-not-at-top
  for a, image in zip(annotations, (0, 0, 0, 2)):
    np.testing.assert_array_equal(mask_api.decode(a['segmentation']),
                                  _id_map(image) == a['id'])
    assert a['area'] == mask_api.area(a['segmentation'])


def test_labels_map_by_name_in_any_builder_order(tmp_path):
  """A builder whose label list is in another order still maps things first."""
  names = NAMES[::-1]
  data_dir = _metadata_dir(str(tmp_path), names)
  batches = _batches(data_dir, _as_dataset_fn(names=names), with_masks=False)
  assert 'masks' not in batches[0]
  np.testing.assert_array_equal(batches[0]['classes'][0], [PERSON, CAR, PERSON])
  ids = np.pad(_id_map(0), ((0, 16), (0, 0)))
  assert (batches[0]['semantic'][0][ids == ROAD_ID] == ROAD).all()
  assert (batches[0]['semantic'][0][ids == CAR_ID] == CAR).all()


def test_training_masks_and_semantic_map_stay_aligned(metadata_dir):
  """Under flips, scale jitter and crops each instance's mask pixels keep its class in
  the semantic map."""
  options = dict(data_dir=None, batch_size=3, image_size=(40, 40), max_instances=3,
                 training=True, seed=1, hflip_prob=0.5, scale_range=(0.7, 1.5),
                 with_masks=True, with_semantic=True)
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, data_dir=metadata_dir,
                              as_dataset_fn=_as_dataset_fn()):
    data = detection_pipeline.make_detection_dataset(NAME, 'train', **options)
    batches = [next(data) for _ in range(3)]
  seen = 0
  for batch in batches:
    for b in range(3):
      for j in np.flatnonzero(batch['valid'][b]):
        pixels = batch['semantic'][b][batch['masks'][b, j] > 0]
        assert (pixels == batch['classes'][b, j]).all()
        seen += pixels.size > 0
      labelled = batch['semantic'][b]
      assert labelled.min() >= -1 and labelled.max() < len(NAMES)
  assert seen


def test_a_category_list_with_unknown_names_is_an_error(tmp_path):
  names = list(NAMES)
  names[100] = 'lawn'  # not a COCO panoptic category
  data_dir = _metadata_dir(str(tmp_path), names)
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, data_dir=data_dir,
                              as_dataset_fn=_as_dataset_fn()):
    with pytest.raises(ValueError, match=r"\(100, 'lawn'\).*not in the COCO panoptic"):
      detection_pipeline.get_detection_source(NAME)


def test_a_segment_label_beyond_the_category_list_is_an_error(metadata_dir):
  message = r'(?s)outside the category list.*image id.*500.*segment ids.*labels.*200'
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    _batches(metadata_dir, _as_dataset_fn(label_offset=200), with_semantic=False,
             with_masks=False)


def test_a_png_segment_missing_from_the_objects_is_an_error(metadata_dir):
  stray = 3 + 256 * 3
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=rf'(?s)absent from its panoptic_objects.*{stray}'):
    _batches(metadata_dir, _as_dataset_fn(png_extra_id=stray), with_masks=False)


EXPERIMENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'experiments',
                          'upsnet_coco.py')


def test_upsnet_coco_config_is_the_reference_recipe(metadata_dir):
  config = config_lib.load_config(EXPERIMENT)
  assert config.task == 'upsnet' and config.data.dataset == NAME
  assert config.data.data_dir is None  # a placeholder to set from the shell
  assert dict(config.loss) == {'semantic_weight': 0.2, 'panoptic_weight': 0.1,
                               'drop_fraction': 0.3}
  model = config.model
  assert model.backbone == 'resnet50' and model.semantic_channels == 128
  assert model.min_stuff_area == 4096 and model.panoptic_score_threshold == 0.6
  assert config.train.steps == 90000 and config.train.batch_size == 16
  assert config.optimizers.model.learning_rate == 0.02
  with pytest.raises(ValueError, match='variant'):
    config_lib.load_config(EXPERIMENT + ':tiny')
  # The task builds from the mocked dataset: 80 things + 53 stuff, the reference's
  # loss weights, masks and semantic maps requested from the pipeline.
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, data_dir=metadata_dir,
                              as_dataset_fn=_as_dataset_fn()):
    task = upsnet_task.create(config)
  cfg = task.model_config
  assert (cfg.num_classes, cfg.num_stuff, cfg.num_semantic) == (80, 53, 133)
  assert task.loss_weights['semantic'] == 0.2 and task.loss_weights['panoptic'] == 0.1
  assert task.drop_fraction == 0.3
  assert task.data_options()['with_masks'] and task.data_options()['with_semantic']
