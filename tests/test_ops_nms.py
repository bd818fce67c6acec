"""NMS: parity with torchvision's nms / batched_nms, static outputs, vmap; YOLACT Fast NMS."""
import functools
import pathlib

import jax
import numpy as np
import pytest

from vision_jax import ops

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'torchvision_ops.npz'
CASES = [f'{i:02d}' for i in range(6)]


@functools.lru_cache(maxsize=None)
def _fixtures():
  with np.load(FIXTURES) as data:
    return {k: data[k] for k in data.files}


def _kept(result):
  return np.asarray(result.indices)[np.asarray(result.valid)]


def _random_problem(rng, num, extent=100.0, classes=None):
  xy = rng.uniform(0.0, extent, (num, 2))
  wh = rng.uniform(5.0, 40.0, (num, 2))
  boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
  scores = rng.permutation(num).astype(np.float32) / num  # distinct scores
  class_ids = None if classes is None else rng.integers(0, classes, num)
  return boxes, scores, class_ids


def _reference_nms(boxes, scores, threshold, class_ids=None):
  """Greedy NMS, one box at a time."""
  order = np.argsort(-scores, kind='stable')
  iou = np.asarray(ops.box_iou(boxes, boxes))
  keep, suppressed = [], np.zeros(len(boxes), bool)
  for i in order:
    if suppressed[i]:
      continue
    keep.append(i)
    same = np.ones(len(boxes), bool) if class_ids is None else class_ids == class_ids[i]
    suppressed |= (iou[i] > threshold) & same
  return np.array(keep, np.int64)


@pytest.mark.parametrize('case', CASES)
def test_nms_matches_torchvision_fixture(case):
  data = _fixtures()
  p = f'nms/{case}/'
  boxes = data[p + 'boxes']
  result = jax.jit(ops.nms, static_argnums=(3,))(boxes, data[p + 'scores'],
                                                  float(data[p + 'iou_threshold']), len(boxes))
  np.testing.assert_array_equal(_kept(result), data[p + 'keep'])


@pytest.mark.parametrize('case', CASES)
def test_batched_nms_matches_torchvision_fixture(case):
  data = _fixtures()
  p = f'batched_nms/{case}/'
  boxes = data[p + 'boxes']
  result = jax.jit(ops.batched_nms, static_argnums=(4,))(
      boxes, data[p + 'scores'], data[p + 'idxs'], float(data[p + 'iou_threshold']), len(boxes))
  np.testing.assert_array_equal(_kept(result), data[p + 'keep'])


def test_static_output_size_truncates_in_score_order_and_pads():
  rng = np.random.default_rng(0)
  boxes, scores, _ = _random_problem(rng, 60)
  want = _reference_nms(boxes, scores, 0.5)
  assert len(want) > 10
  short = ops.nms(boxes, scores, 0.5, 10)
  np.testing.assert_array_equal(short.indices, want[:10])
  assert np.all(short.valid)
  long = ops.nms(boxes, scores, 0.5, len(want) + 7)
  np.testing.assert_array_equal(_kept(long), want)
  np.testing.assert_array_equal(long.valid, np.arange(len(want) + 7) < len(want))
  np.testing.assert_array_equal(np.asarray(long.indices)[len(want):], 0)
  assert np.all(np.diff(scores[_kept(long)]) < 0)


def test_invalid_boxes_neither_kept_nor_suppress():
  rng = np.random.default_rng(1)
  boxes, scores, _ = _random_problem(rng, 40)
  valid = rng.uniform(size=40) > 0.3
  got = _kept(ops.nms(boxes, scores, 0.4, 40, valid=valid))
  want = np.flatnonzero(valid)[_reference_nms(boxes[valid], scores[valid], 0.4)]
  np.testing.assert_array_equal(got, want)


def test_batched_nms_is_per_class_nms_and_vmaps():
  rng = np.random.default_rng(2)
  problems = [_random_problem(rng, 50, classes=3) for _ in range(3)]
  boxes, scores, classes = (np.stack(x) for x in zip(*problems))
  run = jax.jit(jax.vmap(lambda b, s, c: ops.batched_nms(b, s, c, 0.3, 50)))
  result = run(boxes, scores, classes)
  plain = jax.jit(jax.vmap(lambda b, s: ops.nms(b, s, 0.3, 50)))(boxes, scores)
  for i in range(3):
    kept = np.asarray(result.indices[i])[np.asarray(result.valid[i])]
    np.testing.assert_array_equal(kept, _reference_nms(boxes[i], scores[i], 0.3, classes[i]))
    np.testing.assert_array_equal(_kept(jax.tree.map(lambda a: a[i], plain)),
                                  _reference_nms(boxes[i], scores[i], 0.3))


def test_empty_input():
  result = ops.nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5, 4)
  assert result.indices.shape == (4,) and not np.any(result.valid)


@pytest.mark.parametrize('threshold', [0.3, 0.7])
def test_random_parity_with_live_torchvision(threshold):
  torch = pytest.importorskip('torch')
  torchvision = pytest.importorskip('torchvision')
  rng = np.random.default_rng(int(threshold * 10))
  boxes, scores, classes = _random_problem(rng, 300, extent=200.0, classes=5)
  want = torchvision.ops.nms(torch.tensor(boxes), torch.tensor(scores), threshold).numpy()
  np.testing.assert_array_equal(_kept(ops.nms(boxes, scores, threshold, 300)), want)
  want = torchvision.ops.batched_nms(torch.tensor(boxes), torch.tensor(scores),
                                     torch.tensor(classes), threshold).numpy()
  np.testing.assert_array_equal(_kept(ops.batched_nms(boxes, scores, classes, threshold, 300)),
                                want)


def test_vote_is_the_score_weighted_mean_of_overlapping_candidates():
  kept = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 0, 0]], np.float32)
  boxes = np.array([[0, 0, 10, 10],     # the first kept box itself
                    [1, 0, 11, 10],     # IoU 9/11 with it
                    [5, 0, 15, 10],     # IoU 1/3: does not vote at 0.5
                    [50, 50, 60, 60],   # the second kept box
                    [50, 51, 60, 61],   # IoU 0.82, but not valid
                    ], np.float32)
  scores = np.array([0.9, 0.3, 0.8, 0.7, 0.9], np.float32)
  valid = np.array([True, True, True, True, False])
  values = np.arange(10, dtype=np.float32).reshape(5, 2)  # e.g. one point per box
  voted = jax.jit(functools.partial(ops.vote, iou_threshold=0.5))(
      kept, boxes, scores, values, valid=valid)
  np.testing.assert_allclose(voted[0], (0.9 * values[0] + 0.3 * values[1]) / 1.2, rtol=1e-6)
  np.testing.assert_allclose(voted[1], values[3], rtol=1e-6)
  np.testing.assert_array_equal(voted[2], [0, 0])  # an empty slot: nothing overlaps it
  # Without the validity mask the fifth candidate votes for the second box.
  unmasked = ops.vote(kept, boxes, scores, values, 0.5)
  np.testing.assert_allclose(unmasked[1], (0.7 * values[3] + 0.9 * values[4]) / 1.6,
                             rtol=1e-6)
