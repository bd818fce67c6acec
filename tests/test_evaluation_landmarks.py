"""Tests for vision_jax.evaluation.landmarks against hand-computed values."""
import math

import numpy as np
import pytest

from vision_jax.evaluation import landmarks


def _offset(dist):
  """A displacement of length `dist` in a (3, 4, 5) direction."""
  return np.array([0.6, 0.8]) * dist


def two_faces():
  """Two 5-point faces with known normalised errors (eyes are points 0 and 1).

  Face A: eyes (10, 10) and (20, 10) -> d = 10; pixel errors 0, 0.5, 1.5, 3 on the
    visible points 0..3 -> e = 0, .05, .15, .3 -> NME .125 (a failure); point 4 is
    invisible with a huge error.
  Face B: eyes (0, 0) and (0, 20) -> d = 20; every point 1 px off -> e = .05, NME .05.
  """
  gt = np.zeros((2, 5, 3))
  gt[..., 2] = 1
  gt[0, :, :2] = [[10, 10], [20, 10], [15, 15], [12, 20], [18, 20]]
  gt[0, 4, 2] = 0
  gt[1, :, :2] = [[0, 0], [0, 20], [5, 10], [3, 15], [-3, 15]]
  pred = gt[..., :2].copy()
  for k, dist in enumerate([0, 0.5, 1.5, 3, 100]):
    pred[0, k] += _offset(dist)
  pred[1] += _offset(1.0)
  return gt, pred


def test_metrics_match_hand_computed_values():
  gt, pred = two_faces()
  visible = gt[..., 2] > 0
  d = landmarks.normalizers(gt[..., :2], visible, 'inter_ocular', (0, 1))
  np.testing.assert_allclose(d, [10, 20])
  errors = landmarks.normalized_errors(pred, gt[..., :2], visible, d)
  np.testing.assert_allclose(errors[0, :4], [0, .05, .15, .3])
  assert np.isnan(errors[0, 4])
  np.testing.assert_allclose(landmarks.face_nme(errors), [.125, .05])
  metrics = landmarks.landmark_metrics(pred, gt[..., :2], visible, d)
  assert metrics == pytest.approx({
      'landmarks/NME': (.125 + .05) / 2,
      'landmarks/PCK@0.1': 7 / 9,  # A: 2 of 4 visible points, B: 5 of 5
      'landmarks/failure_rate': 0.5,
      'landmarks/AUC@0.1': (0.0 + 0.5) / 2,  # max(0, 1 - NME / 0.1) per face
      'landmarks/num_faces': 2.0,
  })


def test_auc_on_a_known_error_distribution_and_the_ced_curve():
  nmes = np.array([0.0, 0.02, 0.05, 0.08, 0.2])
  # integral_0^0.1 CED / 0.1 = mean(max(0, 1 - e / 0.1)) = (1 + .8 + .5 + .2 + 0) / 5.
  assert landmarks.ced_auc(nmes, 0.1) == pytest.approx(0.5)
  assert landmarks.failure_rate(nmes, 0.1) == pytest.approx(0.2)
  # The 300-W / WFLW scripts' way: CED sampled every 1e-4, integrated numerically.
  xs, ys = landmarks.ced_curve(nmes, 0.1, 1e-4)
  assert xs[0] == 0 and xs[-1] == pytest.approx(0.1) and ys[0] == pytest.approx(0.2)
  assert ys[-1] == pytest.approx(0.8)
  numeric = np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)) / 0.1
  assert numeric == pytest.approx(0.5, abs=1e-3)
  assert landmarks.ced_auc(np.array([0.3]), 0.1) == 0.0
  assert landmarks.ced_auc(np.zeros(3), 0.1) == 1.0


def test_evaluator_accumulates_masks_padding_and_uses_prefix():
  gt, pred = two_faces()
  ev = landmarks.LandmarkEvaluator(ocular_indices=(0, 1), prefix='landmarks5/')
  assert set(ev.batch_keys) == {'landmarks', 'example_valid'}
  assert ev.prediction_keys == ('landmarks',)
  # Batch 1: face A and a padding row with garbage; batch 2: face B (no example_valid).
  garbage = np.full((1, 5, 3), 7.0)
  ev.add({'landmarks': np.concatenate([gt[:1], garbage]),
          'example_valid': np.array([True, False])},
         {'landmarks': np.concatenate([pred[:1], np.zeros((1, 5, 2))])})
  ev.add({'landmarks': gt[1:]}, {'landmarks': np.concatenate(
      [pred[1:], np.ones((1, 5, 1))], -1)})  # (x, y, score): the score is ignored
  metrics = ev.evaluate()
  want = landmarks.landmark_metrics(pred, gt[..., :2], gt[..., 2] > 0,
                                    np.array([10.0, 20.0]), prefix='landmarks5/')
  assert metrics == pytest.approx(want)
  assert set(metrics) == {'landmarks5/NME', 'landmarks5/PCK@0.1', 'landmarks5/failure_rate',
                          'landmarks5/AUC@0.1', 'landmarks5/num_faces'}
  ev.reset()
  empty = ev.evaluate()
  assert empty['landmarks5/num_faces'] == 0 and math.isnan(empty['landmarks5/NME'])


def test_invisible_points_and_undefined_normalisers_are_excluded():
  gt, pred = two_faces()
  # Moving an invisible point's prediction changes nothing.
  moved = pred.copy()
  moved[0, 4] += 1000
  ev = landmarks.LandmarkEvaluator(ocular_indices=(0, 1))
  ev.add({'landmarks': gt}, {'landmarks': moved})
  base = ev.evaluate()
  assert base['landmarks/NME'] == pytest.approx(0.0875)
  # A face whose eye is invisible has no inter-ocular distance: skipped.
  gt2 = gt.copy()
  gt2[1, 1, 2] = 0
  ev = landmarks.LandmarkEvaluator(ocular_indices=(0, 1))
  ev.add({'landmarks': gt2}, {'landmarks': pred})
  metrics = ev.evaluate()
  assert metrics['landmarks/num_faces'] == 1
  assert metrics['landmarks/NME'] == pytest.approx(0.125)
  assert metrics['landmarks/PCK@0.1'] == pytest.approx(0.5)
  # A face with no visible point is skipped too.
  gt3 = gt.copy()
  gt3[1, :, 2] = 0
  d = landmarks.normalizers(gt3[..., :2], gt3[..., 2] > 0, 'box_diagonal')
  assert np.isnan(d[1])


def test_box_diagonal_normalisation():
  gt, pred = two_faces()
  boxes = np.array([[0, 0, 30, 40], [5, 5, 11, 13]], np.float64)  # diagonals 50 and 10
  visible = gt[..., 2] > 0
  np.testing.assert_allclose(
      landmarks.normalizers(gt[..., :2], visible, 'box_diagonal', boxes=boxes), [50, 10])
  # Without boxes: the box of the visible ground-truth points.
  # A: x 10..20, y 10..20 (point 4 invisible) -> sqrt(200); B: x -3..5, y 0..20.
  np.testing.assert_allclose(landmarks.normalizers(gt[..., :2], visible, 'box_diagonal'),
                             [math.sqrt(200), math.sqrt(64 + 400)])
  np.testing.assert_allclose(
      landmarks.normalizers(gt[..., :2], visible, 'box_size', boxes=boxes),
      [math.sqrt(1200), math.sqrt(48)])
  ev = landmarks.LandmarkEvaluator(normalization='box_diagonal', threshold=0.05)
  assert 'box' in ev.batch_keys
  ev.add({'landmarks': gt, 'box': boxes}, {'landmarks': pred})
  metrics = ev.evaluate()
  nme_a = np.mean([0, 0.5, 1.5, 3]) / 50
  assert metrics['landmarks/NME'] == pytest.approx((nme_a + 0.1) / 2)
  assert metrics['landmarks/failure_rate'] == pytest.approx(0.5)  # B: 0.1 > 0.05
  assert metrics['landmarks/PCK@0.05'] == pytest.approx(3 / 9)  # A: e = 0, .01, .03
  assert metrics['landmarks/AUC@0.05'] == pytest.approx((1 - nme_a / 0.05) / 2)


def test_default_ocular_indices_and_errors():
  gt = np.zeros((1, 68, 2))
  gt[0, 36], gt[0, 45] = [10, 50], [40, 50]
  d = landmarks.normalizers(gt, np.ones((1, 68), bool), 'inter_ocular')
  np.testing.assert_allclose(d, [30])
  with pytest.raises(ValueError, match='ocular_indices'):
    landmarks.normalizers(np.zeros((1, 7, 2)), np.ones((1, 7), bool))
  with pytest.raises(ValueError, match='normalization'):
    landmarks.LandmarkEvaluator(normalization='pupil')
  ev = landmarks.LandmarkEvaluator()
  with pytest.raises(ValueError, match='does not match'):
    ev.add({'landmarks': np.zeros((2, 5, 3))}, {'landmarks': np.zeros((2, 4, 2))})
