"""COCO evaluation of contract batches with pycocotools."""
import json
import os

import numpy as np
import pytest
from pycocotools import coco as coco_api
from pycocotools import mask as mask_api

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
  evaluator.evaluate()
  evaluator.write(str(tmp_path))
  # eval_results.json is the trainer's, written once with the step.
  assert sorted(os.listdir(tmp_path)) == ['coco_detections.json', 'coco_ground_truth.json']
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


def test_numpy_paste_equals_the_models_paste():
  from vision_jax.models import rcnn_inference  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  probs = rng.uniform(size=(6, 28, 28)).astype(np.float32)
  xy = rng.uniform(-10, 70, size=(6, 2))
  wh = rng.uniform(0.5, 40, size=(6, 2))
  boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
  device = np.asarray(rcnn_inference.paste_masks(probs, boxes, (48, 64))) >= 0.5
  for k in range(6):
    host = coco.paste_mask(probs[k], boxes[k], (48, 64))
    # Equal up to float32 vs float64 rounding exactly at the threshold.
    assert np.mean(host != device[k]) < 1e-3, k


def _original_set(num_instances=5):
  """One 100 x 200 image with `num_instances` integer boxes (polygon masks)."""
  annotations = []
  for k in range(num_instances):
    x, y = 10 + 36 * k, 10 + 12 * k
    annotations.append({'id': k + 1, 'image_id': 7, 'category_id': 2, 'iscrowd': 0,
                        'bbox': [x, y, 30, 40], 'area': 1200.0,
                        'segmentation': [[x, y, x + 30, y, x + 30, y + 40, x, y + 40]]})
  return {'images': [{'id': 7, 'height': 100, 'width': 200}], 'annotations': annotations,
          'categories': [{'id': 1, 'name': 'circle'}, {'id': 2, 'name': 'square'},
                         {'id': 3, 'name': 'triangle'}]}


def test_original_ground_truth_scores_every_annotation_at_original_resolution():
  original = _original_set()
  scale = 0.32  # 200 x 100 into a 64 x 64 letterbox.
  boxes = np.array([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + 30, a['bbox'][1] + 40]
                    for a in original['annotations']], np.float32) * scale
  # A batch whose own ground truth was cut to 2 instances (max_instances): not used.
  batch = {'image_id': np.array([7, 0]), 'scale': np.array([scale, 1.0], np.float32),
           'orig_size': np.array([[100, 200], [0, 0]], np.int32),
           'example_valid': np.array([True, False])}
  predictions = {'boxes': np.stack([boxes, boxes]), 'scores': np.full((2, 5), 0.9),
                 'classes': np.ones((2, 5), np.int32), 'valid': np.ones((2, 5), bool),
                 'mask_probs': np.ones((2, 5, 28, 28), np.float32)}
  evaluator = coco.CocoEvaluator(NAMES, iou_types=('bbox', 'segm'), ground_truth=original,
                                 mask_key='mask_probs')
  assert 'masks' not in evaluator.batch_keys and 'boxes' not in evaluator.batch_keys
  assert evaluator.prediction_keys == ('boxes', 'scores', 'classes', 'valid', 'mask_probs')
  evaluator.add(batch, predictions)
  results = evaluator.evaluate()
  assert len(evaluator.ground_truth()['annotations']) == 5
  assert original == _original_set()  # Scoring left the caller's json as it was.
  json.dumps(evaluator.ground_truth())
  # Integer boxes pasted at the original size give exactly the polygons' masks.
  assert results['box/AP'] == pytest.approx(1.0) and results['mask/AP'] == pytest.approx(1.0)
  detections = evaluator.detections()
  np.testing.assert_allclose(detections[0]['bbox'], original['annotations'][0]['bbox'],
                             atol=1e-4)
  assert mask_api.area(detections[0]['segmentation']) == 1200


def test_original_ground_truth_must_hold_the_evaluated_images():
  evaluator = coco.CocoEvaluator(NAMES, ground_truth=_original_set())
  batch = {'image_id': np.array([8]), 'scale': np.array([1.0], np.float32),
           'orig_size': np.array([[100, 200]], np.int32)}
  evaluator.add(batch, {'boxes': np.zeros((1, 1, 4)), 'scores': np.zeros((1, 1)),
                        'classes': np.zeros((1, 1), np.int32)})
  with pytest.raises(ValueError, match=r'image ids \[8\].*not in the original ground truth'):
    evaluator.evaluate()


def test_summary_equals_pycocotools_and_reads_ap_at_the_configured_max_detections():
  """coco_stats is pycocotools' summary at maxDets 100; with 20 it still has AP (where
  pycocotools' own summary prints -1) and, when no image has more than 20 detections,
  the same numbers."""
  import contextlib
  import copy
  import io
  from pycocotools import cocoeval
  rng = np.random.default_rng(5)
  evaluator = coco.CocoEvaluator(NAMES)
  for batch in _batches(seed=3):
    predictions = _perfect(batch)
    predictions['boxes'] = predictions['boxes'] + rng.normal(0, 2, predictions['boxes'].shape)
    predictions['scores'] = rng.uniform(0.1, 1.0, predictions['scores'].shape)
    evaluator.add(batch, predictions)
  truth, detections = evaluator.ground_truth(), evaluator.detections()
  ours = coco.coco_stats(truth, detections, 'bbox', max_detections=100)
  with contextlib.redirect_stdout(io.StringIO()):
    gt = coco_api.COCO()
    gt.dataset = copy.deepcopy(truth)
    gt.createIndex()
    reference = cocoeval.COCOeval(gt, gt.loadRes(copy.deepcopy(detections)), 'bbox')
    reference.evaluate()
    reference.accumulate()
    reference.summarize()
  np.testing.assert_allclose(ours, reference.stats, atol=1e-12)
  assert max(sum(1 for d in detections if d['image_id'] == i)
             for i in {d['image_id'] for d in detections}) <= 20
  np.testing.assert_allclose(coco.coco_stats(truth, detections, 'bbox', max_detections=20),
                             ours, atol=1e-12)


def _fdr_case():
  """One 100 x 100 image at scale 1; ground truth: a class-0 box A and a class-1 box B.

  Detections (class, box, score) and their outcome at the default threshold 0.3:
    0, A,                 0.9   true positive (takes A)
    0, A shifted by 1 px, 0.8   duplicate of A (IoU 0.9 with the taken A): false
    1, A,                 0.7   wrong class (no class-1 object there): false
    1, 27 x 15 inside B,  0.6   IoU 405 / 900 = 0.45 with B: false
    1, B,                 0.2   below 0.3: ignored (it would have matched B)
  -> 3 false discoveries of 4 detections; at threshold 0.1, 3 of 5.
  """
  a, b = [10, 10, 50, 50], [60, 60, 90, 90]
  batch = {'image_id': np.array([1]), 'scale': np.ones(1, np.float32),
           'orig_size': np.array([[100, 100]], np.int32),
           'boxes': np.array([[a, b]], np.float32), 'classes': np.array([[0, 1]], np.int32),
           'valid': np.ones((1, 2), bool), 'is_crowd': np.zeros((1, 2), bool)}
  detections = [(0, a, 0.9), (0, [11, 11, 51, 51], 0.8), (1, a, 0.7),
                (1, [60, 60, 87, 75], 0.6), (1, b, 0.2)]
  predictions = {'boxes': np.array([[box for _, box, _ in detections]], np.float32),
                 'scores': np.array([[score for _, _, score in detections]], np.float32),
                 'classes': np.array([[cls for cls, _, _ in detections]], np.int32),
                 'valid': np.ones((1, 5), bool)}
  return batch, predictions


def test_false_discovery_rate_of_a_hand_made_case():
  batch, predictions = _fdr_case()
  evaluator = coco.CocoEvaluator(NAMES)
  evaluator.add(batch, predictions)
  results = evaluator.evaluate()
  assert results['box/false_discovery_rate'] == pytest.approx(3 / 4)
  # The threshold is the constructor's: at 0.1 the low-score detection counts (and
  # matches B, which the IoU-0.45 one did not take).
  lower = coco.CocoEvaluator(NAMES, fdr_score_threshold=0.1)
  lower.add(batch, predictions)
  assert lower.evaluate()['box/false_discovery_rate'] == pytest.approx(3 / 5)
  # Duplicates are the greedy matching's: alone, the first two give 1 of 2.
  truth, detections = evaluator.ground_truth(), evaluator.detections()
  assert coco.false_discovery_rate(truth, detections[:2]) == pytest.approx(1 / 2)
  assert coco.false_discovery_rate(truth, detections[:1]) == 0.0


def test_false_discovery_rate_ignores_crowds_and_is_zero_without_detections():
  batch, predictions = _fdr_case()
  # Class 0's duplicate lies on a crowd region: ignored (3 - 1 false of 4 - 1).
  crowd = dict(batch, boxes=np.array([[[10, 10, 50, 50], [60, 60, 90, 90],
                                       [11, 11, 51, 51]]], np.float32),
               classes=np.array([[0, 1, 0]], np.int32), valid=np.ones((1, 3), bool),
               is_crowd=np.array([[False, False, True]]))
  evaluator = coco.CocoEvaluator(NAMES)
  evaluator.add(crowd, predictions)
  assert evaluator.evaluate()['box/false_discovery_rate'] == pytest.approx(2 / 3)
  # Only detections below the threshold (or none at all): 0.0, reported for every bbox
  # evaluation.
  low = dict(predictions, scores=np.full((1, 5), 0.29, np.float32))
  for preds in (low, dict(predictions, valid=np.zeros((1, 5), bool))):
    evaluator = coco.CocoEvaluator(NAMES, iou_types=('bbox', 'segm'))
    evaluator.add(dict(batch, masks=np.zeros((1, 2, 100, 100), np.uint8)),
                  dict(preds, masks=np.zeros((1, 5, 100, 100), np.float32)))
    results = evaluator.evaluate()
    assert results['box/false_discovery_rate'] == 0.0
    assert 'mask/false_discovery_rate' not in results


def test_false_discovery_rate_matches_like_pycocotools():
  """At IoU 0.5 each counted detection is false exactly where pycocotools' own matching
  (evaluateImg, every detection, area 'all') leaves it unmatched and not ignored."""
  import contextlib
  import copy
  import io
  from pycocotools import cocoeval
  rng = np.random.default_rng(7)
  evaluator = coco.CocoEvaluator(NAMES)
  for batch in _batches(seed=4):
    batch['is_crowd'] = batch['valid'] & (rng.uniform(size=batch['valid'].shape) < 0.2)
    predictions = _perfect(batch)
    # Each object twice (duplicates), jittered, some with the wrong class.
    predictions = {k: np.concatenate([v, v], 1) for k, v in predictions.items()
                   if k in ('boxes', 'scores', 'classes', 'valid')}
    boxes = predictions['boxes'] + rng.normal(0, 3, predictions['boxes'].shape)
    # Not inverted: pycocotools drops a box of negative area from area range 'all'.
    predictions['boxes'] = np.concatenate([np.minimum(boxes[..., :2], boxes[..., 2:]),
                                           np.maximum(boxes[..., :2], boxes[..., 2:])], -1)
    predictions['scores'] = rng.uniform(0.0, 1.0, predictions['scores'].shape)
    predictions['classes'] = np.where(rng.uniform(size=predictions['classes'].shape) < 0.2,
                                      (predictions['classes'] + 1) % 3, predictions['classes'])
    evaluator.add(batch, predictions)
  truth, detections = evaluator.ground_truth(), evaluator.detections()
  kept = [d for d in detections if d['score'] >= 0.3]
  with contextlib.redirect_stdout(io.StringIO()):
    gt = coco_api.COCO()
    gt.dataset = copy.deepcopy(truth)
    gt.createIndex()
    reference = cocoeval.COCOeval(gt, gt.loadRes(copy.deepcopy(kept)), 'bbox')
    reference.params.iouThrs = np.array([0.5])
    reference.params.areaRng, reference.params.areaRngLbl = [[0, 1e10]], ['all']
    reference.params.maxDets = [10**6]
    reference.evaluate()
  false = counted = 0
  for record in reference.evalImgs:
    if record is not None:
      matched, ignored = record['dtMatches'][0] > 0, record['dtIgnore'][0].astype(bool)
      false += int(np.sum(~matched & ~ignored))
      counted += int(np.sum(~ignored))
  assert counted > 0 and 0 < false < counted
  assert any(a['iscrowd'] for a in truth['annotations'])
  assert coco.false_discovery_rate(truth, detections) == pytest.approx(false / counted)
