"""ops.soft_nms against a plain numpy Soft-NMS (Bodla et al. 2017) of the same definition.

Definition checked: repeat max_output_size times: take the live box with the highest
current score (equal scores: the lowest index) and output it with that score; decay
every other live box b by IoU(t, b): 'linear' s *= 1 - IoU when IoU > iou_threshold,
'gaussian' s *= exp(-IoU^2 / sigma); a box dies when taken, invalid, or scoring below
score_threshold (from the start too). IoU is continuous (no +1), 0 for empty boxes.
The reference runs in float64; problems are random with boxes clustered so that decays
matter, and with tied scores.
"""
import functools

import jax
import numpy as np
import pytest

from vision_jax import ops


def _iou_row(box, boxes):
  lt = np.maximum(box[:2], boxes[:, :2])
  rb = np.minimum(box[2:], boxes[:, 2:])
  inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
  area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  union = area(box) + area(boxes) - inter
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(union > 0, inter / union, 0.0)


def _reference(boxes, scores, max_output, method, sigma, iou_threshold, score_threshold,
               valid):
  boxes, scores = boxes.astype(np.float64), scores.astype(np.float64).copy()
  alive = valid & (scores >= score_threshold)
  out = []
  for _ in range(max_output):
    if not alive.any():
      break
    t = int(np.argmax(np.where(alive, scores, -np.inf)))  # first maximum
    out.append((t, scores[t]))
    alive[t] = False
    iou = _iou_row(boxes[t], boxes)
    if method == 'linear':
      decay = np.where(iou > iou_threshold, 1.0 - iou, 1.0)
    else:
      decay = np.exp(-iou ** 2 / sigma)
    scores = np.where(alive, scores * decay, scores)
    alive &= scores >= score_threshold
  return out


def _problem(rng, num, tie=False):
  centers = rng.uniform(10, 60, size=(4, 2))[rng.integers(0, 4, num)]
  centers += rng.normal(0, 4, size=(num, 2))
  wh = rng.uniform(8, 24, size=(num, 2))
  boxes = np.concatenate([centers - wh / 2, centers + wh / 2], 1).astype(np.float32)
  scores = rng.uniform(0.0, 1.0, num).astype(np.float32)
  if tie:  # a few groups of exactly equal scores, one with identical boxes too
    scores[1:4] = scores[0]
    scores[7:9] = scores[6]
    boxes[8] = boxes[7]
  valid = rng.uniform(size=num) > 0.15
  return boxes, scores, valid


def _check(result, want, max_output):
  got_valid = np.asarray(result.valid)
  assert got_valid.sum() == len(want)
  np.testing.assert_array_equal(got_valid, np.arange(max_output) < len(want))
  np.testing.assert_array_equal(np.asarray(result.indices)[:len(want)], [t for t, _ in want])
  np.testing.assert_allclose(np.asarray(result.scores)[:len(want)], [s for _, s in want],
                             rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(result.indices)[len(want):] == 0)
  assert np.all(np.asarray(result.scores)[len(want):] == -np.inf)
  assert np.all(np.diff(np.asarray(result.scores)[:len(want)]) <= 0)


@pytest.mark.parametrize('method', ['linear', 'gaussian'])
@pytest.mark.parametrize('seed', range(6))
def test_matches_numpy_reference(method, seed):
  rng = np.random.default_rng(seed)
  num, max_output = 40, 25
  boxes, scores, valid = _problem(rng, num, tie=seed % 2 == 0)
  kwargs = dict(method=method, sigma=0.5, iou_threshold=0.3, score_threshold=0.05)
  fn = jax.jit(functools.partial(ops.soft_nms, max_output_size=max_output, **kwargs))
  got = fn(boxes, scores, valid=valid)
  want = _reference(boxes, scores, max_output, kwargs['method'], kwargs['sigma'],
                    kwargs['iou_threshold'], kwargs['score_threshold'], valid)
  _check(got, want, max_output)


def test_ties_go_to_the_lowest_index_and_invalid_boxes_do_nothing():
  boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10]],
                   np.float32)
  scores = np.array([0.5, 0.9, 0.9, 0.99], np.float32)
  valid = np.array([True, True, True, False])
  got = ops.soft_nms(boxes, scores, 4, method='linear', iou_threshold=0.5,
                     score_threshold=0.0, valid=valid)
  # 3 is invalid (it would suppress 0 and 1); 1 and 2 tie: 1 first. Box 0 is identical to
  # 1 (IoU 1): decayed to 0 and kept, since 0 >= score_threshold 0.
  np.testing.assert_array_equal(got.indices, [1, 2, 0, 0])
  np.testing.assert_allclose(got.scores, [0.9, 0.9, 0.0, -np.inf])
  np.testing.assert_array_equal(got.valid, [True, True, True, False])


def test_gaussian_decay_and_empty_boxes():
  # Boxes 0 and 1 overlap with IoU 1/3 (the gaussian decays without a threshold); 2 and 3
  # are identical empty boxes (IoU 0/0, taken as 0).
  boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [3, 3, 3, 3], [3, 3, 3, 3]], np.float32)
  scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
  got = ops.soft_nms(boxes, scores, 4, method='gaussian', sigma=0.5, score_threshold=0.0)
  # Box 1 decays to 0.8 * exp(-1/4.5) = 0.64, below the empty boxes (their IoU is 0).
  np.testing.assert_array_equal(got.indices, [0, 2, 1, 3])
  np.testing.assert_allclose(got.scores, [0.9, 0.7, 0.8 * np.exp(-(1 / 3) ** 2 / 0.5), 0.6],
                             rtol=1e-6)


def test_vmap_and_small_inputs():
  rng = np.random.default_rng(7)
  problems = [_problem(rng, 30) for _ in range(3)]
  boxes, scores, valid = (np.stack(a) for a in zip(*problems))
  fn = jax.jit(jax.vmap(functools.partial(ops.soft_nms, max_output_size=12,
                                          method='linear', score_threshold=0.1)))
  got = fn(boxes, scores, valid=valid)
  for b in range(3):
    want = _reference(boxes[b], scores[b], 12, 'linear', 0.5, 0.3, 0.1, valid[b])
    _check(jax.tree.map(lambda a, b=b: a[b], got), want, 12)
  # More outputs than boxes, and no boxes at all.
  few = ops.soft_nms(boxes[0, :3], scores[0, :3], 5, score_threshold=0.0)
  assert few.valid.shape == (5,) and int(few.valid.sum()) == 3
  none = ops.soft_nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 4)
  assert none.indices.shape == (4,) and not none.valid.any()
  with pytest.raises(ValueError, match='method'):
    ops.soft_nms(boxes[0], scores[0], 4, method='hard')
