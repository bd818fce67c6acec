"""COCO evaluation of contract batches with pycocotools."""
import json
import os

import numpy as np
import pytest
from pycocotools import coco as coco_api

from vision_jax.evaluation import coco

NAMES = ('circle', 'square', 'triangle')
BOX_KEYS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100')


def _batch(rng, batch_size=4, max_instances=5, size=64, num_padding=1):
  """A contract batch with random instances; the last `num_padding` examples are padding."""
  boxes = np.zeros((batch_size, max_instances, 4), np.float32)
  valid = np.zeros((batch_size, max_instances), bool)
  masks = np.zeros((batch_size, max_instances, size, size), np.uint8)
  keypoints = np.zeros((batch_size, max_instances, 4, 3), np.float32)
  for b in range(batch_size - num_padding):
    for m in range(rng.integers(1, max_instances + 1)):
      x1, y1 = rng.integers(0, size - 20, 2)
      w, h = rng.integers(6, 20, 2)
      boxes[b, m] = [x1, y1, x1 + w, y1 + h]
      valid[b, m] = True
      masks[b, m, y1:y1 + h, x1:x1 + w] = 1
      keypoints[b, m] = [[x1 + w / 2, y1, 2], [x1 + w, y1 + h / 2, 2],
                         [x1 + w / 2, y1 + h, 2], [x1, y1 + h / 2, 2]]
  scale = np.full(batch_size, 0.5, np.float32)
  return {
      'image': np.zeros((batch_size, size, size, 3), np.float32),
      'boxes': boxes, 'valid': valid,
      'classes': np.where(valid, rng.integers(0, 3, valid.shape), -1).astype(np.int32),
      'is_crowd': np.zeros_like(valid),
      'areas': ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
                / scale[:, None] ** 2).astype(np.float32),
      'masks': masks, 'keypoints': keypoints,
      'image_id': np.arange(batch_size, dtype=np.int64) + 100 * int(rng.integers(1, 1000)),
      'scale': scale,
      'orig_size': np.full((batch_size, 2), size * 2, np.int32),
      'example_valid': np.arange(batch_size) < batch_size - num_padding,
  }


def _perfect(batch):
  return {'boxes': batch['boxes'], 'scores': np.where(batch['valid'], 0.9, 0.0),
          'classes': np.maximum(batch['classes'], 0), 'valid': batch['valid'],
          'masks': batch['masks'].astype(np.float32), 'keypoints': batch['keypoints']}


def _batches(seed=0, n=3):
  rng = np.random.default_rng(seed)
  return [_batch(rng) for _ in range(n)]


def test_perfect_predictions_score_one(tmp_path):
  evaluator = coco.CocoEvaluator(NAMES, iou_types=('bbox', 'segm', 'keypoints'),
                                 keypoint_names=('top', 'right', 'bottom', 'left'),
                                 keypoint_skeleton=((0, 1), (1, 2), (2, 3), (3, 0)))
  for batch in _batches():
    evaluator.add(batch, _perfect(batch))
  results = evaluator.evaluate()
  for key in BOX_KEYS:
    assert f'box/{key}' in results and f'mask/{key}' in results
  for key in ('box/AP', 'box/AP50', 'box/AP75', 'box/AR100', 'mask/AP', 'keypoints/AP'):
    assert results[key] == pytest.approx(1.0), key


def test_shifted_boxes_score_lower():
  batches = _batches()
  scores = []
  for shift in (0.0, 2.0, 6.0):
    evaluator = coco.CocoEvaluator(NAMES)
    for batch in batches:
      predictions = _perfect(batch)
      predictions['boxes'] = predictions['boxes'] + shift
      evaluator.add(batch, predictions)
    scores.append(evaluator.evaluate()['box/AP'])
  assert scores[0] == pytest.approx(1.0)
  assert scores[0] > scores[1] > scores[2]


def test_wrong_classes_and_padding_examples_are_handled():
  batch = _batches(n=1)[0]
  evaluator = coco.CocoEvaluator(NAMES)
  predictions = _perfect(batch)
  predictions['classes'] = (predictions['classes'] + 1) % 3
  evaluator.add(batch, predictions)
  assert evaluator.evaluate()['box/AP'] < 0.1  # Only chance overlaps with other instances.
  # Padding examples (example_valid False) contribute neither images nor detections.
  ids = {image['id'] for image in evaluator.ground_truth()['images']}
  assert ids == set(batch['image_id'][batch['example_valid']].tolist())
  assert {d['image_id'] for d in evaluator.detections()} <= ids


def test_no_detections_gives_zero_without_crashing(tmp_path):
  batch = _batches(n=1)[0]
  evaluator = coco.CocoEvaluator(NAMES, iou_types=('bbox', 'segm'))
  none = {'boxes': np.zeros((4, 10, 4), np.float32), 'scores': np.zeros((4, 10)),
          'classes': np.zeros((4, 10), np.int32), 'valid': np.zeros((4, 10), bool)}
  evaluator.add(batch, none)
  results = evaluator.evaluate()
  assert results['box/AP'] == 0.0 and results['mask/AR100'] == 0.0
  evaluator.write(str(tmp_path))


def test_boxes_are_mapped_to_original_pixels():
  batch = _batches(n=1)[0]
  ground_truth, = [coco.ground_truth_from_batch(batch, [1, 2, 3])[1][0]]
  b, m = 0, 0
  x1, y1, x2, y2 = batch['boxes'][b, m] / batch['scale'][b]
  np.testing.assert_allclose(ground_truth['bbox'], [x1, y1, x2 - x1, y2 - y1])
  images = coco.ground_truth_from_batch(batch, [1, 2, 3])[0]
  assert images[0] == {'id': int(batch['image_id'][0]), 'height': 128, 'width': 128}


def test_written_files_are_valid_coco(tmp_path):
  evaluator = coco.CocoEvaluator(NAMES, iou_types=('bbox', 'segm'), category_ids=(5, 7, 9))
  for batch in _batches():
    evaluator.add(batch, _perfect(batch))
  results = evaluator.evaluate()
  evaluator.write(str(tmp_path))
  with open(os.path.join(str(tmp_path), 'eval_results.json')) as f:
    assert json.load(f) == pytest.approx(results)
  ground_truth = coco_api.COCO(os.path.join(str(tmp_path), 'coco_ground_truth.json'))
  assert sorted(ground_truth.getCatIds()) == [5, 7, 9]
  assert [c['name'] for c in ground_truth.loadCats([5, 7, 9])] == list(NAMES)
  annotation = ground_truth.loadAnns(ground_truth.getAnnIds())[0]
  assert ground_truth.annToMask(annotation).shape == (128, 128)
  detections = ground_truth.loadRes(os.path.join(str(tmp_path), 'coco_detections.json'))
  assert len(detections.getAnnIds()) == len(ground_truth.getAnnIds())


def test_ground_truth_json_of_a_split():
  batches = _batches(n=2)
  gt = coco.ground_truth_json(batches, NAMES, keypoint_names=('a', 'b', 'c', 'd'))
  assert len(gt['images']) == 6
  assert len(gt['annotations']) == sum(int(b['valid'].sum()) for b in batches)
  assert len({a['id'] for a in gt['annotations']}) == len(gt['annotations'])
  assert gt['annotations'][0]['num_keypoints'] == 4
  assert gt['categories'][0]['keypoints'] == ['a', 'b', 'c', 'd']


def test_pycocotools_output_is_silenced(capsys):
  batch = _batches(n=1)[0]
  evaluator = coco.CocoEvaluator(NAMES)
  evaluator.add(batch, _perfect(batch))
  evaluator.evaluate()
  assert capsys.readouterr().out == ''
