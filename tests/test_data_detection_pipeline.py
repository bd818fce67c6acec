"""The detection input pipeline on synthetic_shapes/tiny: contract, geometry, determinism."""
import itertools

import numpy as np
import pytest

from vision_jax.data import detection_pipeline
from vision_jax.data import synthetic_shapes

DATASET = 'synthetic_shapes/tiny'
SIZE = (128, 128)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def _train(data_dir, **kwargs):
  args = dict(data_dir=data_dir, batch_size=4, image_size=SIZE, max_instances=8,
              training=True, seed=0, hflip_prob=0.5, scale_range=(0.7, 1.4))
  args.update(kwargs)
  return detection_pipeline.make_detection_dataset(DATASET, 'train', **args)


def _take(iterator, n):
  return list(itertools.islice(iterator, n))


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def _mask_box(mask):
  rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
  return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def test_contract_shapes_and_dtypes(data_dir):
  batch = next(_train(data_dir, with_masks=True, with_semantic=True))
  b, (h, w), m = 4, SIZE, 8
  expected = {
      'image': ((b, h, w, 3), np.uint8), 'boxes': ((b, m, 4), np.float32),
      'classes': ((b, m), np.int32), 'valid': ((b, m), np.bool_),
      'is_crowd': ((b, m), np.bool_), 'areas': ((b, m), np.float32),
      'keypoints': ((b, m, 4, 3), np.float32), 'masks': ((b, m, h, w), np.uint8),
      'semantic': ((b, h, w), np.int32), 'image_id': ((b,), np.int64),
      'scale': ((b,), np.float32), 'orig_size': ((b, 2), np.int32),
      'example_valid': ((b,), np.bool_)}
  assert set(batch) == set(expected)
  for key, (shape, dtype) in expected.items():
    assert batch[key].shape == shape, key
    assert batch[key].dtype == dtype, key
  assert batch['image'].max() > 100  # uint8 pixels, not floats in [0, 1]
  assert np.all(batch['classes'][~batch['valid']] == -1)
  assert np.all(batch['classes'][batch['valid']] >= 0)
  # Valid instances come first.
  assert np.all(np.diff(batch['valid'].astype(int), axis=1) <= 0)
  assert batch['semantic'].min() >= -1 and batch['semantic'].max() < len(
      synthetic_shapes.SEMANTIC_NAMES)


def test_evaluation_geometry_matches_the_drawn_examples(data_dir):
  config = synthetic_shapes.SyntheticShapes.builder_configs['tiny']
  batches = list(detection_pipeline.make_detection_dataset(
      DATASET, 'validation', data_dir=data_dir, batch_size=5, image_size=SIZE,
      max_instances=8, training=False, with_masks=True, with_semantic=True))
  batch = batches[0]
  for b in range(5):
    drawn = synthetic_shapes.render_example(b, 'validation', config)
    n = len(drawn['labels'])
    assert batch['image_id'][b] == drawn['image_id']
    np.testing.assert_array_equal(batch['image'][b], drawn['image'])
    np.testing.assert_array_equal(batch['valid'][b], np.arange(8) < n)
    np.testing.assert_allclose(batch['boxes'][b, :n], drawn['boxes'], atol=1e-4)
    np.testing.assert_array_equal(batch['classes'][b, :n], drawn['labels'])
    np.testing.assert_array_equal(batch['masks'][b, :n], drawn['masks'])
    np.testing.assert_array_equal(batch['areas'][b, :n], drawn['areas'])
    np.testing.assert_allclose(batch['keypoints'][b, :n], drawn['keypoints'], atol=1e-4)
    np.testing.assert_array_equal(batch['semantic'][b], drawn['semantic'])
    assert batch['scale'][b] == 1.0
    np.testing.assert_array_equal(batch['orig_size'][b], [128, 128])


def test_evaluation_pads_last_batch_with_invalid_examples(data_dir):
  # 16 validation examples, batch 6 -> 3 batches, the last with 4 real examples.
  batches = list(detection_pipeline.make_detection_dataset(
      DATASET, 'validation', data_dir=data_dir, batch_size=6, image_size=(96, 64),
      max_instances=4, training=False))
  assert len(batches) == 3
  assert all(b['image'].shape == (6, 96, 64, 3) for b in batches)
  valid = np.concatenate([b['example_valid'] for b in batches])
  np.testing.assert_array_equal(valid, np.arange(18) < 16)
  ids = np.concatenate([b['image_id'] for b in batches])[:16]
  assert len(set(ids)) == 16
  last = batches[-1]
  assert not last['valid'][4:].any() and np.all(last['classes'][4:] == -1)
  assert np.all(last['image'][4:] == 0) and np.all(last['scale'][4:] == 1)
  # Aspect kept: 128x128 -> 64x64 content at the top-left, zero padding below.
  assert np.all(batches[0]['scale'] == 0.5)
  assert np.all(batches[0]['image'][:, 64:] == 0)
  assert np.all(batches[0]['boxes'][..., 2] <= 64) and np.all(batches[0]['boxes'][..., 3] <= 64)


def test_evaluation_process_shards_gather_to_the_single_process_batches(data_dir):
  kwargs = dict(data_dir=data_dir, batch_size=6, image_size=SIZE, max_instances=8,
                training=False)
  single = list(detection_pipeline.make_detection_dataset(DATASET, 'validation', **kwargs))
  shards = [list(detection_pipeline.make_detection_dataset(
      DATASET, 'validation', process_index=p, process_count=2, **kwargs)) for p in range(2)]
  assert len(shards[0]) == len(shards[1]) == len(single)
  for k, batch in enumerate(single):
    for key in ('image_id', 'example_valid', 'boxes'):
      gathered = np.concatenate([shards[0][k][key], shards[1][k][key]])
      np.testing.assert_array_equal(gathered, batch[key])


@pytest.mark.parametrize('in_memory', [True, False])
def test_training_stream_is_deterministic_and_resumable(data_dir, in_memory):
  # 64 examples / batch 4 = 16 batches per epoch: batches 14..19 cross an epoch.
  full = _take(_train(data_dir, in_memory=in_memory), 20)
  again = _take(_train(data_dir, in_memory=in_memory), 20)
  _assert_batches_equal(full, again)
  resumed = _take(_train(data_dir, in_memory=in_memory, start_batch=14), 6)
  _assert_batches_equal(full[14:], resumed)
  other = _take(_train(data_dir, in_memory=in_memory, seed=1), 2)
  assert not np.array_equal(other[0]['image'], full[0]['image'])


def test_training_epochs_cover_every_record_in_a_new_order(data_dir):
  batches = _take(_train(data_dir, hflip_prob=0.0, scale_range=(1, 1)), 32)
  ids = np.concatenate([b['image_id'] for b in batches]).reshape(2, 64)
  assert sorted(ids[0]) == sorted(ids[1]) == list(range(1, 65))
  assert not np.array_equal(ids[0], ids[1])
  assert not np.array_equal(ids[0], np.arange(1, 65))


def test_training_process_shards_partition_the_global_batch(data_dir):
  single = _take(_train(data_dir, start_batch=3), 2)
  shards = [_take(_train(data_dir, start_batch=3, process_index=p, process_count=2), 2)
            for p in range(2)]
  for k in range(2):
    assert shards[0][k]['image'].shape[0] == 2
    for key in single[k]:
      gathered = np.concatenate([shards[0][k][key], shards[1][k][key]])
      np.testing.assert_array_equal(gathered, single[k][key], err_msg=key)


def test_flip_moves_boxes_masks_and_swaps_left_right_keypoints(data_dir):
  kwargs = dict(scale_range=(1.0, 1.0), with_masks=True, with_semantic=True)
  plain = next(_train(data_dir, hflip_prob=0.0, **kwargs))
  flipped = next(_train(data_dir, hflip_prob=1.0, **kwargs))
  np.testing.assert_array_equal(plain['image_id'], flipped['image_id'])
  np.testing.assert_allclose(flipped['image'], plain['image'][:, :, ::-1])
  np.testing.assert_array_equal(flipped['masks'], plain['masks'][..., ::-1])
  np.testing.assert_array_equal(flipped['semantic'], plain['semantic'][..., ::-1])
  valid = plain['valid']
  np.testing.assert_array_equal(flipped['valid'], valid)
  x1, y1, x2, y2 = np.moveaxis(plain['boxes'], -1, 0)
  np.testing.assert_allclose(flipped['boxes'][valid],
                             np.stack([128 - x2, y1, 128 - x1, y2], -1)[valid], atol=1e-4)
  kp, fkp = plain['keypoints'][valid], flipped['keypoints'][valid]
  top, right, bottom, left = range(4)
  for new, old in ((top, top), (right, left), (bottom, bottom), (left, right)):
    np.testing.assert_allclose(fkp[:, new, 0], 128 - kp[:, old, 0], atol=1e-4)
    np.testing.assert_allclose(fkp[:, new, 1:], kp[:, old, 1:], atol=1e-4)
  # The flipped 'right' point is still the right-most point: on the box's right edge.
  np.testing.assert_allclose(fkp[:, right, 0], flipped['boxes'][valid][:, 2], atol=1e-4)


def test_scale_jitter_keeps_boxes_and_keypoints_on_their_masks(data_dir):
  batches = _take(_train(data_dir, scale_range=(0.6, 1.6), with_masks=True), 6)
  scales = np.concatenate([b['scale'] for b in batches])
  assert scales.min() < 0.8 and scales.max() > 1.2
  for batch in batches:
    for b, m in zip(*np.nonzero(batch['valid'])):
      mask = batch['masks'][b, m]
      if not mask.any():  # Thin instance lost by nearest-neighbour resizing.
        continue
      box = batch['boxes'][b, m]
      assert 0 <= box[0] < box[2] <= 128 and 0 <= box[1] < box[3] <= 128
      # The mask lies in the box, up to resampling (2 px at scale 1.6) ...
      mask_box = _mask_box(mask)
      assert np.all(mask_box[:2] >= box[:2] - 2.5) and np.all(mask_box[2:] <= box[2:] + 2.5)
      # ... and the box is tight unless the crop cut the instance.
      if box.min() > 1 and box.max() < 127:
        np.testing.assert_allclose(mask_box, box, atol=2.5)
      for x, y, v in batch['keypoints'][b, m]:
        if v:
          assert box[0] - 1e-3 <= x <= box[2] + 1e-3 and box[1] - 1e-3 <= y <= box[3] + 1e-3


def test_errors_for_bad_arguments(data_dir):
  with pytest.raises(ValueError, match='divisible'):
    _train(data_dir, batch_size=5, process_count=2)
  with pytest.raises(ValueError, match='keypoints'):
    _train(data_dir, num_keypoints=17)
  # num_keypoints=0 drops the key.
  assert 'keypoints' not in next(_train(data_dir, num_keypoints=0))


def test_from_experiment_config(data_dir):
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict({
      'dataset': DATASET, 'data_dir': data_dir, 'image_size': (64, 64), 'max_instances': 6,
      'hflip_prob': 0.5, 'scale_range': (0.8, 1.25)})
  batch = next(detection_pipeline.make_detection_dataset_from_config(
      config, split='train', batch_size=2, training=True, seed=0, start_batch=1))
  expected = _take(_train(data_dir, batch_size=2, image_size=(64, 64), max_instances=6,
                          hflip_prob=0.5, scale_range=(0.8, 1.25)), 2)[1]
  for key in expected:
    np.testing.assert_array_equal(batch[key], expected[key], err_msg=key)


def test_evaluation_batches_through_the_coco_evaluator(data_dir, tmp_path):
  from vision_jax.evaluation import coco  # pylint: disable=g-import-not-at-top
  source = detection_pipeline.get_detection_source(DATASET, data_dir)
  evaluator = coco.CocoEvaluator(
      source.class_names, iou_types=('bbox', 'segm', 'keypoints'),
      category_ids=source.category_ids, keypoint_names=source.keypoint_names,
      keypoint_skeleton=source.keypoint_skeleton)
  for batch in detection_pipeline.make_detection_dataset(
      DATASET, 'validation', data_dir=data_dir, batch_size=6, image_size=(96, 96),
      max_instances=8, training=False, with_masks=True):
    evaluator.add(batch, {'boxes': batch['boxes'], 'scores': batch['valid'] * 0.9,
                          'classes': np.maximum(batch['classes'], 0), 'valid': batch['valid'],
                          'masks': batch['masks'], 'keypoints': batch['keypoints']})
  results = evaluator.evaluate()
  assert results['box/AP'] == pytest.approx(1.0)
  assert results['mask/AP'] == pytest.approx(1.0)
  assert results['keypoints/AP'] == pytest.approx(1.0)
  gt = evaluator.ground_truth()
  assert len(gt['images']) == 16
  assert {(i['height'], i['width']) for i in gt['images']} == {(128, 128)}
  # Boxes are back in original pixels: the drawn example's boxes.
  config = synthetic_shapes.SyntheticShapes.builder_configs['tiny']
  drawn = synthetic_shapes.render_example(0, 'validation', config)
  first = [a for a in gt['annotations'] if a['image_id'] == drawn['image_id']]
  x1, y1, x2, y2 = drawn['boxes'][0]
  np.testing.assert_allclose(first[0]['bbox'], [x1, y1, x2 - x1, y2 - y1], atol=1e-3)
  assert first[0]['area'] == drawn['areas'][0]
  evaluator.write(str(tmp_path))


def test_semantic_ids_beyond_the_class_count_are_a_clear_error(data_dir, monkeypatch):
  # The maps hold 0..4 (circle .. ground); a source listing 3 semantic classes is wrong.
  monkeypatch.setattr(synthetic_shapes, 'SEMANTIC_NAMES', synthetic_shapes.THING_NAMES)
  with pytest.raises(Exception, match='semantic map holds class ids outside -1..2'):
    next(_train(data_dir, with_masks=True, with_semantic=True))
