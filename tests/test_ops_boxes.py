"""Box ops: IoU parity with torchvision, GIoU, clipping, conversions, the box coder."""
import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from vision_jax import ops

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'torchvision_ops.npz'


@functools.lru_cache(maxsize=None)
def _fixtures():
  with np.load(FIXTURES) as data:
    return {k: data[k] for k in data.files}


def _random_boxes(rng, shape, extent=100.0, min_size=1.0, max_size=60.0):
  xy = rng.uniform(0.0, extent, shape + (2,))
  wh = rng.uniform(min_size, max_size, shape + (2,))
  return np.concatenate([xy, xy + wh], -1).astype(np.float32)


def _reference_iou_giou(a, b):
  """Per-pair float64 loops of the definitions."""
  iou = np.zeros((len(a), len(b)))
  giou = np.zeros((len(a), len(b)))
  for i, p in enumerate(np.asarray(a, np.float64)):
    for j, q in enumerate(np.asarray(b, np.float64)):
      iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
      ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
      union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - iw * ih
      hull = (max(p[2], q[2]) - min(p[0], q[0])) * (max(p[3], q[3]) - min(p[1], q[1]))
      iou[i, j] = iw * ih / union
      giou[i, j] = iou[i, j] - (hull - union) / hull
  return iou, giou


@pytest.mark.parametrize('case', ['00', '01', '02'])
def test_box_iou_matches_torchvision_fixture(case):
  data = _fixtures()
  got = ops.box_iou(data[f'box_iou/{case}/a'], data[f'box_iou/{case}/b'])
  np.testing.assert_allclose(got, data[f'box_iou/{case}/expected'], rtol=1e-6, atol=1e-7)


def test_iou_and_giou_match_the_definitions_with_batch_dims():
  rng = np.random.default_rng(0)
  a, b = _random_boxes(rng, (2, 5)), _random_boxes(rng, (2, 7))
  iou, giou = jax.jit(ops.box_iou)(a, b), jax.jit(ops.generalized_box_iou)(a, b)
  assert iou.shape == giou.shape == (2, 5, 7)
  for i in range(2):
    want_iou, want_giou = _reference_iou_giou(a[i], b[i])
    np.testing.assert_allclose(iou[i], want_iou, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(giou[i], want_giou, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ops.paired_box_iou(a[:, :5], b[:, :5]),
                             np.diagonal(iou[:, :5, :5], axis1=1, axis2=2), rtol=1e-6)
  np.testing.assert_allclose(ops.paired_generalized_box_iou(a[:, :5], b[:, :5]),
                             np.diagonal(giou[:, :5, :5], axis1=1, axis2=2), rtol=1e-6)


def test_iou_properties_and_padding_boxes():
  rng = np.random.default_rng(1)
  a = _random_boxes(rng, (6,))
  np.testing.assert_allclose(np.diagonal(ops.box_iou(a, a)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(np.diagonal(ops.generalized_box_iou(a, a)), 1.0, rtol=1e-6)
  far = a + 1000.0
  assert np.all(np.asarray(ops.box_iou(a, far)) == 0.0)
  assert np.all(np.asarray(ops.generalized_box_iou(a, far)) < 0.0)
  # Two all-zero padding boxes: 0, not NaN, and finite gradients.
  pad = np.zeros((2, 4), np.float32)
  np.testing.assert_array_equal(ops.box_iou(pad, pad), 0.0)
  np.testing.assert_array_equal(ops.generalized_box_iou(pad, pad), 0.0)
  grad = jax.grad(lambda x: ops.generalized_box_iou(x, x).sum())(jnp.asarray(pad))
  assert np.all(np.isfinite(grad))


def test_giou_matches_live_torchvision():
  torch = pytest.importorskip('torch')
  torchvision = pytest.importorskip('torchvision')
  rng = np.random.default_rng(2)
  a, b = _random_boxes(rng, (9,)), _random_boxes(rng, (8,))
  want = torchvision.ops.generalized_box_iou(torch.tensor(a), torch.tensor(b)).numpy()
  np.testing.assert_allclose(ops.generalized_box_iou(a, b), want, rtol=1e-5, atol=1e-6)
  want = torchvision.ops.box_iou(torch.tensor(a), torch.tensor(b)).numpy()
  np.testing.assert_allclose(ops.box_iou(a, b), want, rtol=1e-6, atol=1e-7)


def test_box_function_gradients():
  rng = np.random.default_rng(3)
  a = _random_boxes(rng, (3,)).astype(np.float64)
  b = a + rng.uniform(-5.0, 5.0, a.shape)  # overlapping pairs
  check_grads(ops.box_iou, (a, b), order=2, modes=['rev'], atol=1e-2, rtol=1e-2)
  check_grads(ops.generalized_box_iou, (a, b), order=2, modes=['rev'], atol=1e-2, rtol=1e-2)
  anchors = _random_boxes(rng, (3,)).astype(np.float64)
  deltas = rng.normal(scale=0.3, size=(3, 4))
  check_grads(lambda d, a: ops.decode_boxes(d, a, (10.0, 10.0, 5.0, 5.0)), (deltas, anchors),
              order=2, modes=['rev'], atol=1e-2, rtol=1e-2)
  check_grads(ops.encode_boxes, (b, anchors), order=1, modes=['rev'], atol=1e-2, rtol=1e-2)


def test_clip_and_nonempty():
  boxes = np.array([[[-5.0, -3.0, 20.0, 50.0], [30.0, 1.0, 40.0, 2.0]],
                    [[-5.0, -3.0, 20.0, 50.0], [30.0, 1.0, 40.0, 2.0]]], np.float32)
  clipped = np.asarray(ops.clip_boxes(boxes, (jnp.array([10.0, 40.0]), jnp.array([35.0, 25.0]))))
  for i, (h, w) in enumerate([(10.0, 35.0), (40.0, 25.0)]):
    np.testing.assert_array_equal(clipped[i, :, 0::2], np.clip(boxes[i, :, 0::2], 0, w))
    np.testing.assert_array_equal(clipped[i, :, 1::2], np.clip(boxes[i, :, 1::2], 0, h))
  np.testing.assert_array_equal(ops.clip_boxes(boxes[0], (10, 35)), clipped[0])
  # The second image clips box 2 to zero width.
  np.testing.assert_array_equal(ops.nonempty(clipped), [[True, True], [True, False]])
  np.testing.assert_array_equal(ops.nonempty(clipped, min_size=5.0), [[True, False],
                                                                      [True, False]])


def test_format_conversions_round_trip_and_agree():
  rng = np.random.default_rng(4)
  xyxy = _random_boxes(rng, (4, 3))
  for fmt in ('xywh', 'cxcywh', 'xyxy'):
    back = ops.box_convert(ops.box_convert(xyxy, 'xyxy', fmt), fmt, 'xyxy')
    np.testing.assert_allclose(back, xyxy, rtol=1e-6, atol=1e-4)
  cxcywh = np.asarray(ops.xyxy_to_cxcywh(xyxy))
  np.testing.assert_allclose(cxcywh[..., :2], (xyxy[..., :2] + xyxy[..., 2:]) / 2, rtol=1e-6)
  np.testing.assert_allclose(cxcywh[..., 2:], xyxy[..., 2:] - xyxy[..., :2], rtol=1e-6)
  relative_yxyx = np.array([[0.1, 0.2, 0.5, 0.9]], np.float32)
  np.testing.assert_allclose(ops.yxyx_to_xyxy(relative_yxyx, (100, 200)),
                             [[40.0, 10.0, 180.0, 50.0]], rtol=1e-6)
  with pytest.raises(ValueError):
    ops.box_convert(xyxy, 'xyxy', 'yxyx')


def test_box_coder_round_trip_and_clamp():
  rng = np.random.default_rng(5)
  anchors = _random_boxes(rng, (50,), min_size=4.0)
  boxes = _random_boxes(rng, (50,), min_size=4.0)
  coder = ops.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
  deltas = jax.jit(coder.encode)(boxes, anchors)
  np.testing.assert_allclose(jax.jit(coder.decode)(deltas, anchors), boxes, rtol=1e-5, atol=1e-3)
  # Against the formula, in float64.
  a, b = anchors.astype(np.float64), boxes.astype(np.float64)
  aw, ah, bw, bh = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
  want = np.stack([10 * ((b[:, 0] + bw / 2) - (a[:, 0] + aw / 2)) / aw,
                   10 * ((b[:, 1] + bh / 2) - (a[:, 1] + ah / 2)) / ah,
                   5 * np.log(bw / aw), 5 * np.log(bh / ah)], -1)
  np.testing.assert_allclose(deltas, want, rtol=1e-4, atol=1e-4)
  # dw, dh are clamped at log(1000 / 16) after removing the weights.
  huge = np.array([[0.0, 0.0, 100.0, 100.0]], np.float32)
  anchor = np.array([[0.0, 0.0, 10.0, 10.0]], np.float32)
  decoded = np.asarray(ops.decode_boxes(huge, anchor, (1.0, 1.0, 1.0, 1.0)))
  width = decoded[0, 2] - decoded[0, 0]
  np.testing.assert_allclose(width, 10.0 * 1000.0 / 16.0, rtol=1e-5)
  assert math.isclose(ops.BoxCoder().scale_clamp, math.log(1000.0 / 16.0))


def test_decode_matches_live_torchvision_box_coder():
  torch = pytest.importorskip('torch')
  det_utils = pytest.importorskip('torchvision.models.detection._utils')
  rng = np.random.default_rng(6)
  anchors = _random_boxes(rng, (40,), min_size=4.0)
  boxes = _random_boxes(rng, (40,), min_size=4.0)
  weights = (10.0, 10.0, 5.0, 5.0)
  coder = det_utils.BoxCoder(weights)
  want = coder.encode_single(torch.tensor(boxes), torch.tensor(anchors)).numpy()
  np.testing.assert_allclose(ops.encode_boxes(boxes, anchors, weights), want, rtol=1e-4,
                             atol=1e-4)
  deltas = rng.normal(size=(40, 4)).astype(np.float32) * 3
  want = coder.decode_single(torch.tensor(deltas), torch.tensor(anchors)).numpy()
  np.testing.assert_allclose(ops.decode_boxes(deltas, anchors, weights), want, rtol=1e-5,
                             atol=1e-3)


def test_box_ops_under_vmap_equal_leading_batch_dims():
  rng = np.random.default_rng(7)
  a, b = _random_boxes(rng, (3, 4)), _random_boxes(rng, (3, 4))
  for fn in (ops.box_iou, ops.generalized_box_iou, ops.encode_boxes, ops.xyxy_to_cxcywh,
             lambda x, y: ops.clip_boxes(x, (50.0, 70.0)) + y):
    args = (a, b) if fn is not ops.xyxy_to_cxcywh else (a,)
    np.testing.assert_allclose(jax.jit(jax.vmap(fn))(*args), fn(*args), rtol=1e-6, atol=1e-6)
