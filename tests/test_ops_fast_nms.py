"""ops.fast_nms against a from-scratch numpy Fast NMS (YOLACT, Bolya et al. 2019).

Definition checked (YOLACT's `fast_nms` with `second_threshold=True`): per class, the
`top_k` highest-scoring boxes in decreasing score order; their IoU matrix; its strict upper
triangle (entry (i, j), i < j: box j against the higher-scoring box i); box j survives when
its column max is <= iou_threshold (suppressed by any higher-scoring box of its class,
kept or not) and its score is > score_threshold. Survivors of all classes are ranked by
score and the first `max_output_size` returned; the rest is padding (index 0, class 0,
score -inf, valid False). The IoU here is computed independently in float64, and each
problem is checked to sit away from the thresholds so float32 rounding cannot flip a
decision; scores are all distinct (no ties in any ranking).
"""
import jax
import numpy as np
import pytest

from vision_jax import ops


def _iou64(a, b):
  a, b = a.astype(np.float64), b.astype(np.float64)
  area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
  area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  lt = np.maximum(a[:, None, :2], b[None, :, :2])
  rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
  wh = np.clip(rb - lt, 0.0, None)
  inter = wh[..., 0] * wh[..., 1]
  return inter / (area_a[:, None] + area_b[None, :] - inter)


def _reference(boxes, scores, iou_threshold, top_k, max_output_size, score_threshold):
  """Returns (detections [(score, box index, class)] best first, min margin to thresholds)."""
  detections, margin = [], np.inf
  for c in range(scores.shape[1]):
    order = np.argsort(-scores[:, c])[:top_k]  # scores distinct: no tie order needed
    iou = np.triu(_iou64(boxes[order], boxes[order]), k=1)
    column_max = iou.max(axis=0)
    margin = min(margin, np.abs(column_max - iou_threshold).min(),
                 np.abs(scores[order, c].astype(np.float64) - score_threshold).min())
    for j, index in enumerate(order):
      if column_max[j] <= iou_threshold and scores[index, c] > score_threshold:
        detections.append((float(scores[index, c]), int(index), c))
  detections.sort(key=lambda d: -d[0])
  return detections[:max_output_size], margin


def _random_problem(rng, num, classes, extent=100.0, clustered=False):
  if clustered:  # a few clusters of heavily overlapping boxes: lots of suppression
    centres = rng.uniform(20.0, extent - 20.0, (4, 2))
    xy = centres[rng.integers(0, 4, num)] + rng.normal(0.0, 4.0, (num, 2))
  else:
    xy = rng.uniform(0.0, extent, (num, 2))
  wh = rng.uniform(5.0, 40.0, (num, 2))
  boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
  # All num * classes scores distinct, skewed towards 0 like softmax outputs.
  scores = (rng.permutation(num * classes).reshape(num, classes) + 0.5) / (num * classes)
  return boxes, (scores ** 2).astype(np.float32)


def _check(result, want, max_output_size):
  count = len(want)
  indices, classes = np.asarray(result.indices), np.asarray(result.classes)
  scores, valid = np.asarray(result.scores), np.asarray(result.valid)
  for array in (indices, classes, scores, valid):
    assert array.shape == (max_output_size,)
  assert indices.dtype == np.int32 and classes.dtype == np.int32 and valid.dtype == bool
  np.testing.assert_array_equal(valid, np.arange(max_output_size) < count)
  np.testing.assert_array_equal(indices[:count], [d[1] for d in want])
  np.testing.assert_array_equal(classes[:count], [d[2] for d in want])
  np.testing.assert_array_equal(scores[:count], np.asarray([d[0] for d in want], np.float32))
  # Padding convention of FastNmsResult.
  np.testing.assert_array_equal(indices[count:], 0)
  np.testing.assert_array_equal(classes[count:], 0)
  assert np.all(np.isneginf(scores[count:]))


# (seed, boxes, classes, iou_threshold, top_k, max_output_size, score_threshold, clustered)
CASES = [
    (0, 60, 3, 0.5, 20, 30, 0.05, False),   # truncated to max_output_size
    (1, 120, 6, 0.5, 40, 100, 0.05, True),  # clustered: heavy suppression
    (2, 40, 1, 0.3, 200, 100, 0.0, False),  # top_k > boxes; fewer detections than outputs
    (3, 30, 2, 0.6, 10, 50, 0.0, True),     # max_output_size > classes * top_k (pad path)
    (4, 80, 4, 0.45, 25, 60, 0.5, False),   # score threshold cuts most candidates
    (5, 50, 5, 0.5, 15, 7, 0.1, True),      # small max_output_size
    (6, 25, 3, 0.7, 25, 40, 0.95, False),   # almost nothing survives the score threshold
]


@pytest.mark.parametrize('case', CASES, ids=[f'seed{c[0]}' for c in CASES])
def test_fast_nms_matches_numpy_definition(case):
  seed, num, classes, thr, top_k, max_out, score_thr, clustered = case
  rng = np.random.default_rng(seed)
  boxes, scores = _random_problem(rng, num, classes, clustered=clustered)
  want, margin = _reference(boxes, scores, thr, top_k, max_out, score_thr)
  assert margin > 1e-5, 'problem too close to a threshold for a float32 comparison'
  fn = jax.jit(lambda b, s: ops.fast_nms(b, s, thr, top_k=top_k, max_output_size=max_out,
                                         score_threshold=score_thr))
  _check(fn(boxes, scores), want, max_out)


def test_fast_nms_suppresses_through_a_suppressed_box():
  """A > B > C; A overlaps B, B overlaps C, A and C are apart. Greedy NMS keeps A and C;
  Fast NMS drops C as well, because B (itself suppressed) still counts as a suppressor."""
  boxes = np.asarray([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10], [40, 40, 50, 50]],
                     np.float32)  # IoU(A, B) = IoU(B, C) = 1/3, IoU(A, C) = 0
  scores = np.asarray([[0.9], [0.8], [0.7], [0.6]], np.float32)
  result = ops.fast_nms(boxes, scores, 0.3, top_k=4, max_output_size=5, score_threshold=0.0)
  want, _ = _reference(boxes, scores, 0.3, 4, 5, 0.0)
  assert [d[1] for d in want] == [0, 3]
  _check(result, want, 5)
  # Same boxes in another class with the middle box B first: B suppresses both A and C.
  scores2 = np.concatenate([scores, np.asarray([[0.5], [0.95], [0.4], [0.3]], np.float32)], 1)
  result = ops.fast_nms(boxes, scores2, 0.3, top_k=4, max_output_size=8, score_threshold=0.0)
  want, _ = _reference(boxes, scores2, 0.3, 4, 8, 0.0)
  assert [(d[1], d[2]) for d in want] == [(1, 1), (0, 0), (3, 0), (3, 1)]
  _check(result, want, 8)


def test_fast_nms_vmaps_over_images():
  rng = np.random.default_rng(7)
  problems = [_random_problem(rng, 40, 3, clustered=bool(i % 2)) for i in range(3)]
  boxes = np.stack([p[0] for p in problems])
  scores = np.stack([p[1] for p in problems])
  result = jax.jit(jax.vmap(lambda b, s: ops.fast_nms(b, s, 0.5, top_k=15,
                                                      max_output_size=20)))(boxes, scores)
  for i in range(3):
    want, margin = _reference(boxes[i], scores[i], 0.5, 15, 20, 0.05)
    assert margin > 1e-5
    _check(jax.tree_util.tree_map(lambda a: a[i], result), want, 20)
