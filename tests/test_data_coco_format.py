"""Local COCO-format folders (`coco_format`) through the real detection pipeline.

The test writes a tiny COCO-format set (4 images, one without annotations; polygon,
compressed RLE, uncompressed crowd RLE and box-only annotations; a keypoint variant)
into tmp_path, the COCO 2017 layout: <root>/annotations/<kind>_val2017.json and
<root>/val2017/<file_name>.
"""
import json
import re
import os

import ml_collections
import numpy as np
from PIL import Image
from pycocotools import coco as coco_api
from pycocotools import mask as mask_api
import pytest
import tensorflow as tf

from vision_jax.data import coco_format
from vision_jax.data import datasets
from vision_jax.data import detection_pipeline
from vision_jax.data import landmark_pipeline
from vision_jax.evaluation import coco

SIZE = (64, 64)
SPLIT = 'val2017'
# id, file_name, (height, width): 12 and 30 are JPEG, 30 has no annotations.
IMAGES = ((11, 'a.png', (40, 60)), (12, 'b.jpg', (50, 40)), (17, 'c.png', (30, 36)),
          (30, 'd.jpg', (48, 64)))
# Listed out of id order: class 0 is 'cat' (id 3), class 1 'dog' (id 7).
CATEGORIES = [{'id': 7, 'name': 'dog', 'supercategory': 'animal'},
              {'id': 3, 'name': 'cat', 'supercategory': 'animal'}]
PERSON = {'id': 1, 'name': 'person', 'keypoints': ['nose', 'left_eye', 'right_eye'],
          'skeleton': [[1, 2], [1, 3]]}


def _rect(h, w, y0, y1, x0, x1):
  mask = np.zeros((h, w), np.uint8)
  mask[y0:y1, x0:x1] = 1
  return mask


def _uncompressed_rle(mask):
  """COCO's uncompressed RLE: column-major run lengths, starting with zeros."""
  flat = np.asfortranarray(mask).ravel(order='F')
  changes = np.flatnonzero(np.diff(flat)) + 1
  bounds = np.concatenate([[0], changes, [flat.size]])
  counts = np.diff(bounds).tolist()
  if flat[0]:
    counts = [0] + counts
  return {'size': list(mask.shape), 'counts': counts}


def _mask_bbox(mask):
  rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
  return [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]),
          float(rows[-1] + 1 - rows[0])]


def _instances():
  rle = mask_api.encode(np.asfortranarray(_rect(40, 60, 10, 35, 35, 55)))
  rle['counts'] = rle['counts'].decode('ascii')
  crowd = _rect(50, 40, 20, 48, 5, 38)
  return [
      {'id': 101, 'image_id': 11, 'category_id': 3, 'bbox': [5, 5, 25, 20], 'area': 500.0,
       'iscrowd': 0, 'segmentation': [[5, 5, 30, 5, 30, 25, 5, 25]]},
      {'id': 102, 'image_id': 11, 'category_id': 7, 'bbox': [35, 10, 20, 25],
       'area': 500.0, 'iscrowd': 0, 'segmentation': rle},
      {'id': 103, 'image_id': 12, 'category_id': 7, 'bbox': _mask_bbox(crowd),
       'area': float(crowd.sum()), 'iscrowd': 1, 'segmentation': _uncompressed_rle(crowd)},
      {'id': 104, 'image_id': 12, 'category_id': 3, 'bbox': [2, 2, 28, 38], 'area': 530.0,
       'iscrowd': 0, 'segmentation': [[2, 2, 30, 4, 10, 40]]},
      {'id': 105, 'image_id': 17, 'category_id': 7, 'bbox': [1, 1, 33, 27], 'area': 308.0,
       'iscrowd': 0, 'segmentation': [[1, 1, 15, 1, 15, 15, 1, 15],
                                      [20, 20, 34, 20, 34, 28, 20, 28]]},
      # Box only: its mask is the filled box.
      {'id': 106, 'image_id': 17, 'category_id': 3, 'bbox': [3, 18, 10, 10], 'area': 100.0,
       'iscrowd': 0, 'segmentation': []},
  ]


def _person_keypoints():
  anns = [a for a in _instances() if a['id'] in (101, 103, 105)]
  keypoints = {101: [10, 10, 2, 8, 8, 1, 0, 0, 0], 103: [0] * 9, 105: [5, 5, 2, 3, 3, 2, 7, 3, 2]}
  for ann in anns:
    ann['category_id'] = 1
    ann['keypoints'] = keypoints[ann['id']]
    ann['num_keypoints'] = int(np.count_nonzero(keypoints[ann['id']][2::3]))
  return anns


def _write_set(root, kind='instances', categories=None, annotations=None, images=IMAGES):
  """Writes <root>/annotations/<kind>_val2017.json and the images; returns the json path."""
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(root, SPLIT), exist_ok=True)
  os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
  for _, name, (h, w) in images:
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(os.path.join(root, SPLIT, name))
  data = {
      'info': {'description': 'tiny'},
      'images': [{'id': i, 'file_name': name, 'height': h, 'width': w}
                 for i, name, (h, w) in images],
      'annotations': _instances() if annotations is None else annotations,
      'categories': CATEGORIES if categories is None else categories,
  }
  path = os.path.join(root, 'annotations', f'{kind}_{SPLIT}.json')
  with open(path, 'w') as f:
    json.dump(data, f)
  return path


def _config(root, data_dir, **kwargs):
  config = ml_collections.ConfigDict({
      'dataset': 'coco_format', 'data_dir': data_dir, 'coco_root': root,
      'image_size': SIZE, 'max_instances': 4, 'with_masks': True})
  config.update(kwargs)
  return config


def _eval_batches(config):
  return list(detection_pipeline.make_detection_dataset_from_config(
      config, split=SPLIT, batch_size=2, training=False))


def _resized(array, scale, method):
  """[h, w, C] original -> [h', w', C] at `scale`, as the pipeline resizes."""
  h, w = array.shape[:2]
  new_size = (max(1, round(h * scale)), max(1, round(w * scale)))
  return tf.image.resize(array, new_size, method=method).numpy()


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='module')
def instances(tmp_path_factory, data_dir):
  """(root, json path, source, evaluation batches) of the instances set."""
  root = str(tmp_path_factory.mktemp('coco'))
  path = _write_set(root)
  config = _config(root, data_dir)
  source = detection_pipeline.get_detection_source_from_config(config)
  return root, path, source, _eval_batches(config)


def test_source_metadata_from_the_json(instances, data_dir):
  root, _, source, _ = instances
  assert source.class_names == ('cat', 'dog')
  assert source.category_ids == (3, 7)
  assert source.has_masks and source.num_keypoints == 0
  assert source.semantic_names is None
  assert list(source.builder.info.splits.keys()) == [SPLIT]
  # Prepared under the data_dir, keyed by the root's name and a hash of its path.
  config_name = source.builder.builder_config.name
  assert config_name.startswith(os.path.basename(root).lower().replace('-', '_') + '_')
  assert os.path.isdir(os.path.join(data_dir, 'coco_format', config_name))


def test_evaluation_batches_match_the_json(instances):
  root, path, _, batches = instances
  assert len(batches) == 2  # 4 images, batch 2, no padding.
  batch = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  assert 'keypoints' not in batch and batch['masks'].shape == (4, 4) + SIZE
  assert batch['example_valid'].all()
  with open(path) as f:
    data = json.load(f)
  index = coco_api.COCO(path)
  labels = {3: 0, 7: 1}
  for b, (image_id, name, (h, w)) in enumerate(IMAGES):  # Records in image id order.
    scale = min(SIZE[0] / h, SIZE[1] / w)
    assert batch['image_id'][b] == image_id
    np.testing.assert_array_equal(batch['orig_size'][b], [h, w])
    np.testing.assert_allclose(batch['scale'][b], scale, rtol=1e-6)
    with open(os.path.join(root, SPLIT, name), 'rb') as f:  # Bytes kept as they are.
      pixels = tf.io.decode_image(f.read(), channels=3).numpy().astype(np.float32)
    expected_image = np.clip(np.round(_resized(pixels, scale, 'bilinear')), 0, 255)
    nh, nw = expected_image.shape[:2]
    np.testing.assert_array_equal(batch['image'][b][:nh, :nw], expected_image)
    anns = [a for a in data['annotations'] if a['image_id'] == image_id]
    assert batch['valid'][b].sum() == len(anns)
    for m, ann in enumerate(anns):
      x, y, bw, bh = ann['bbox']
      np.testing.assert_allclose(batch['boxes'][b, m], np.array([x, y, x + bw, y + bh]) * scale,
                                 atol=1e-3)
      assert batch['classes'][b, m] == labels[ann['category_id']]
      assert batch['is_crowd'][b, m] == bool(ann['iscrowd'])
      np.testing.assert_allclose(batch['areas'][b, m], ann['area'])
      if ann['segmentation']:
        mask = index.annToMask(ann)
      else:
        mask = _rect(h, w, int(y), int(y + bh), int(x), int(x + bw))
      expected = _resized(mask[..., None], scale, 'nearest')[..., 0]
      np.testing.assert_array_equal(batch['masks'][b, m][:nh, :nw], expected, err_msg=m)
      assert not batch['masks'][b, m][nh:].any() and not batch['masks'][b, m][:, nw:].any()
  assert not batch['valid'][3].any()  # Image 30: no annotations, kept.
  assert batch['is_crowd'].sum() == 1


def test_ground_truth_as_predictions_scores_ap_one(instances):
  _, path, source, batches = instances
  evaluator = coco.CocoEvaluator(source.class_names, iou_types=('bbox', 'segm'),
                                 category_ids=source.category_ids)
  for batch in batches:
    evaluator.add(batch, {'boxes': batch['boxes'], 'scores': np.ones_like(batch['areas']),
                          'classes': np.maximum(batch['classes'], 0),
                          'valid': batch['valid'], 'masks': batch['masks']})
  metrics = evaluator.evaluate()
  assert metrics['box/AP'] == pytest.approx(1.0) and metrics['mask/AP'] == pytest.approx(1.0)
  # Category ids round-trip: the evaluator's ground truth has the json's ids.
  with open(path) as f:
    data = json.load(f)
  expected = sorted((a['image_id'], a['category_id'], a['iscrowd'])
                    for a in data['annotations'])
  got = sorted((a['image_id'], a['category_id'], a['iscrowd'])
               for a in evaluator.ground_truth()['annotations'])
  assert got == expected
  assert [c['id'] for c in evaluator.ground_truth()['categories']] == [3, 7]


def test_keypoints_variant(tmp_path, data_dir):
  root = str(tmp_path / 'coco')
  path = _write_set(root, kind='person_keypoints', categories=[PERSON],
                    annotations=_person_keypoints())
  config = _config(root, data_dir, coco_annotations='person_keypoints', with_masks=False)
  source = detection_pipeline.get_detection_source_from_config(config)
  assert source.class_names == ('person',) and source.category_ids == (1,)
  assert source.keypoint_names == ('nose', 'left_eye', 'right_eye')
  assert source.keypoint_flip_perm == (0, 2, 1)
  assert source.keypoint_skeleton == ((0, 1), (0, 2))
  batches = _eval_batches(config)
  batch = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  assert batch['keypoints'].shape == (4, 4, 3, 3)
  with open(path) as f:
    data = json.load(f)
  for b, (image_id, _, (h, w)) in enumerate(IMAGES):
    scale = min(SIZE[0] / h, SIZE[1] / w)
    anns = [a for a in data['annotations'] if a['image_id'] == image_id]
    assert batch['valid'][b].sum() == len(anns)
    for m, ann in enumerate(anns):
      kp = np.reshape(np.asarray(ann['keypoints'], np.float32), (3, 3))
      expected = np.where(kp[:, 2:] > 0, np.concatenate([kp[:, :2] * scale, kp[:, 2:]], 1), 0)
      np.testing.assert_allclose(batch['keypoints'][b, m], expected, atol=1e-3)
  evaluator = coco.CocoEvaluator(source.class_names, iou_types=('keypoints',),
                                 category_ids=source.category_ids,
                                 keypoint_names=source.keypoint_names)
  for batch in batches:
    evaluator.add(batch, {'boxes': batch['boxes'], 'scores': np.ones_like(batch['areas']),
                          'classes': np.maximum(batch['classes'], 0),
                          'valid': batch['valid'], 'keypoints': batch['keypoints']})
  assert evaluator.evaluate()['keypoints/AP'] == pytest.approx(1.0)


def test_training_stream_flips_boxes_and_keypoints(tmp_path, data_dir):
  """The in-memory training stream (flip always, no scale jitter) on the keypoint set."""
  root = str(tmp_path / 'coco')
  path = _write_set(root, kind='person_keypoints', categories=[PERSON],
                    annotations=_person_keypoints())
  config = _config(root, data_dir, coco_annotations='person_keypoints', hflip_prob=1.0)
  batch = next(detection_pipeline.make_detection_dataset_from_config(
      config, split=SPLIT, batch_size=4, training=True))
  with open(path) as f:
    data = json.load(f)
  sizes = {image_id: hw for image_id, _, hw in IMAGES}
  assert sorted(batch['image_id']) == [i for i, _, _ in IMAGES]  # One epoch: each once.
  for b, image_id in enumerate(batch['image_id']):
    (h, w), scale = sizes[image_id], min(SIZE[0] / sizes[image_id][0],
                                         SIZE[1] / sizes[image_id][1])
    anns = [a for a in data['annotations'] if a['image_id'] == image_id]
    assert batch['valid'][b].sum() == len(anns)
    for m, ann in enumerate(anns):
      x, y, bw, bh = ann['bbox']
      np.testing.assert_allclose(batch['boxes'][b, m],
                                 np.array([w - x - bw, y, w - x, y + bh]) * scale, atol=1e-3)
      kp = np.reshape(np.asarray(ann['keypoints'], np.float32), (3, 3))[[0, 2, 1]]
      flipped = np.stack([(w - kp[:, 0]) * scale, kp[:, 1] * scale, kp[:, 2]], 1)
      np.testing.assert_allclose(batch['keypoints'][b, m],
                                 np.where(kp[:, 2:] > 0, flipped, 0), atol=1e-3)


def test_keypoint_flip_perm_from_names():
  assert coco_format.keypoint_flip_perm(coco_format.COCO_PERSON_KEYPOINT_NAMES) == (
      0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
  names = ('head', 'l_hand', 'r_hand', 'LeftFoot', 'RightFoot', 'knee_R', 'knee_L', 'tail')
  assert coco_format.keypoint_flip_perm(names) == (0, 2, 1, 4, 3, 6, 5, 7)
  assert coco_format.keypoint_flip_perm(('left_only', 'nose')) == (0, 1)


def test_folders_with_the_same_name_do_not_collide(tmp_path):
  names = []
  for parent in ('a', 'b'):
    root = str(tmp_path / parent / 'coco')
    _write_set(root, images=IMAGES[:1], annotations=[])
    names.append(coco_format.resolve('coco_format', SPLIT, coco_root=root))
  assert names[0] != names[1]
  assert all(name.startswith('coco_format/coco_') for name in names)


def test_missing_root_names_the_path_and_the_layout(tmp_path, data_dir):
  root = str(tmp_path / 'nowhere')
  with pytest.raises(datasets.DatasetNotFoundError) as info:
    _eval_batches(_config(root, data_dir))
  message = str(info.value)
  assert root in message
  assert os.path.join(root, 'annotations', 'instances_val2017.json') in message
  assert os.path.join(root, 'val2017') in message and 'data.coco_root' in message
  with pytest.raises(datasets.DatasetNotFoundError, match='set data.coco_root'):
    detection_pipeline.get_detection_source('coco_format', data_dir)


def test_missing_split_names_the_missing_files(tmp_path, data_dir):
  root = str(tmp_path / 'coco')
  _write_set(root, images=IMAGES[:1], annotations=[])
  with pytest.raises(datasets.DatasetNotFoundError) as info:
    detection_pipeline.make_detection_dataset_from_config(
        _config(root, data_dir), split='train2017', batch_size=2, training=False)
  message = str(info.value)
  assert os.path.join(root, 'annotations', 'instances_train2017.json') in message
  assert os.path.join(root, 'train2017') in message
  with pytest.raises(datasets.DatasetNotFoundError, match='person_keypoints_val2017.json'):
    _eval_batches(_config(root, data_dir, coco_annotations='person_keypoints'))


@pytest.mark.parametrize('problem', ['missing_image', 'unknown_category', 'missing_key',
                                     'bad_json'])
def test_bad_annotations_name_the_file_and_the_problem(tmp_path, data_dir, problem):
  root = str(tmp_path / 'coco')
  anns = [a for a in _instances() if a['image_id'] == 11]
  images = IMAGES[:1]
  if problem == 'unknown_category':
    anns[1]['category_id'] = 99
  elif problem == 'missing_key':
    del anns[0]['bbox']
  path = _write_set(root, annotations=anns, images=images)
  if problem == 'missing_image':
    os.remove(os.path.join(root, SPLIT, 'a.png'))
  elif problem == 'bad_json':
    with open(path, 'w') as f:
      f.write('{"images": [')
  expected_error, pattern = {
      'missing_image': (datasets.DatasetNotFoundError,
                        re.escape(os.path.join(root, SPLIT, 'a.png'))),
      'unknown_category': (coco_format.CocoFormatError, 'category_id 99'),
      'missing_key': (coco_format.CocoFormatError,
                      re.escape("annotation #0 (id 101) lacks key(s) ['bbox']")),
      'bad_json': (coco_format.CocoFormatError, 'not valid JSON'),
  }[problem]
  with pytest.raises(expected_error, match=pattern) as info:
    _eval_batches(_config(root, data_dir))
  if problem != 'missing_image':
    assert path in str(info.value)


def test_evaluation_scores_the_original_annotations_beyond_max_instances(instances,
                                                                         data_dir):
  """Images hold up to 2 annotations; the batches keep 1 (max_instances=1). Scored
  against the original json, predictions of every annotation are perfect; scored
  against the truncated batches they are not."""
  root, path, _, _ = instances
  config = _config(root, data_dir, max_instances=1)
  source = detection_pipeline.get_detection_source_from_config(config)
  with open(path) as f:
    data = json.load(f)
  original = source.original_ground_truth(SPLIT)
  assert len(original['annotations']) == len(data['annotations']) == 6
  box_only = [a for a in original['annotations'] if a['id'] == 106][0]
  assert box_only['segmentation'] == [[3.0, 18.0, 13.0, 18.0, 13.0, 28.0, 3.0, 28.0]]
  labels = {3: 0, 7: 1}

  def perfect(batch):
    d = 2
    out = {'boxes': np.zeros((2, d, 4), np.float32), 'scores': np.zeros((2, d)),
           'classes': np.zeros((2, d), np.int32), 'valid': np.zeros((2, d), bool)}
    for b in range(2):
      anns = [a for a in data['annotations']
              if a['image_id'] == batch['image_id'][b] and not a['iscrowd']]
      for k, ann in enumerate(anns):
        x, y, w, h = ann['bbox']
        out['boxes'][b, k] = np.array([x, y, x + w, y + h]) * batch['scale'][b]
        out['scores'][b, k] = 0.9
        out['classes'][b, k] = labels[ann['category_id']]
        out['valid'][b, k] = True
    return out

  scores = {}
  for name, truth in (('original', original), ('batches', None)):
    evaluator = coco.CocoEvaluator(source.class_names, category_ids=source.category_ids,
                                   ground_truth=truth)
    batches = _eval_batches(config)
    assert max(int(b['valid'].sum(1).max()) for b in batches) == 1
    for batch in batches:
      evaluator.add(batch, perfect(batch))
    scores[name] = evaluator.evaluate()['box/AP']
    if truth is not None:
      written = evaluator.ground_truth()
      assert len(written['annotations']) == 6 and len(written['images']) == 4
  assert scores['original'] == pytest.approx(1.0)
  assert scores['batches'] < 0.9


def test_keypoints_as_landmark_crops(tmp_path, data_dir):
  """The landmark contract: one person per image (the most labelled keypoints), its box
  centring the crop; images without a labelled person give unlabelled points."""
  root = str(tmp_path / 'coco')
  _write_set(root, kind='person_keypoints', categories=[PERSON],
             annotations=_person_keypoints())
  batch = next(iter(landmark_pipeline.make_landmark_dataset(
      'coco_format', SPLIT, points='keypoints', data_dir=data_dir, coco_root=root,
      coco_annotations='person_keypoints', batch_size=4, training=False,
      image_size=(32, 32), crop_scale=1.25)))
  assert batch['landmarks'].shape == (4, 3, 3)
  # Image 11, person 101: box (5, 5, 25 x 20) -> side 31.25 centred on (17.5, 15).
  scale = 32 / 31.25
  np.testing.assert_allclose(batch['landmarks'][0, 0],
                             [(10 - 17.5) * scale + 16, (10 - 15) * scale + 16, 2], atol=1e-3)
  np.testing.assert_allclose(batch['landmarks'][0, 1:, 2], [1, 0])
  assert (batch['landmarks'][1, :, 2] == 0).all()  # image 12: only a crowd region
  assert (batch['landmarks'][2, :, 2] == 2).all()  # image 17: person 105
  assert (batch['landmarks'][3, :, 2] == 0).all()  # image 30: nobody
  source = landmark_pipeline.get_landmark_source_from_config(
      {'dataset': 'coco_format', 'coco_root': root, 'coco_annotations': 'person_keypoints',
       'data_dir': data_dir})
  assert source.point_set('keypoints').flip_permutation == (0, 2, 1)
