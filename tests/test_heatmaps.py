"""Tests for vision_jax.ops.heatmaps against loop-based references of the official code."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.losses import centernet as centernet_losses
from vision_jax.ops import heatmaps


def ref_gaussian_radius(height, width, min_overlap=0.7):
  """CenterNet's image.py gaussian_radius, scalar, written out plainly."""
  a1, b1 = 1, height + width
  c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
  r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
  a2, b2 = 4, 2 * (height + width)
  c2 = (1 - min_overlap) * width * height
  r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
  a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
  c3 = (min_overlap - 1) * width * height
  r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
  return min(r1, r2, r3)


def ref_targets(boxes, classes, valid, output_size, stride, num_classes):
  """Per-object loops as CenterNet's ctdet dataset + draw_umich_gaussian (our clipping)."""
  h, w = output_size
  batch, m = classes.shape
  hm = np.zeros((batch, h, w, num_classes), np.float64)
  ind = np.zeros((batch, m), np.int64)
  wh = np.zeros((batch, m, 2))
  reg = np.zeros((batch, m, 2))
  mask = np.zeros((batch, m), bool)
  for b in range(batch):
    for k in range(m):
      x1, y1, x2, y2 = np.clip(boxes[b, k] / stride, 0, [w, h, w, h])
      bw, bh = x2 - x1, y2 - y1
      if not valid[b, k] or bw <= 0 or bh <= 0:
        continue
      r = max(0, int(ref_gaussian_radius(math.ceil(bh), math.ceil(bw))))
      sigma = (2 * r + 1) / 6
      yy, xx = np.ogrid[-r:r + 1, -r:r + 1]
      g = np.exp(-(xx * xx + yy * yy) / (2 * sigma * sigma))
      ct = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
      x, y = min(int(ct[0]), w - 1), min(int(ct[1]), h - 1)
      left, right = min(x, r), min(w - x, r + 1)
      top, bottom = min(y, r), min(h - y, r + 1)
      view = hm[b, y - top:y + bottom, x - left:x + right, classes[b, k]]
      np.maximum(view, g[r - top:r + bottom, r - left:r + right], out=view)
      ind[b, k] = y * w + x
      wh[b, k] = bw, bh
      reg[b, k] = ct - [x, y]
      mask[b, k] = True
  return dict(heatmap=hm, indices=ind, size=wh, offset=reg, mask=mask)


def random_boxes(rng, batch, m, image, min_size=2.0, max_size=60.0):
  xy = rng.uniform(-8, image, size=(batch, m, 2))
  wh = rng.uniform(min_size, max_size, size=(batch, m, 2))
  return np.concatenate([xy, xy + wh], -1).astype(np.float32)


def test_gaussian_radius_matches_reference():
  hs, ws = np.meshgrid(np.arange(1, 40, 3.0), np.arange(1, 60, 7.0))
  for overlap in (0.3, 0.7, 0.9):
    got = np.asarray(heatmaps.gaussian_radius(hs, ws, overlap))
    want = np.vectorize(lambda a, b, o=overlap: ref_gaussian_radius(a, b, o))(hs, ws)
    np.testing.assert_allclose(got, want, rtol=1e-5)
  # Larger boxes get larger radii; a 1x1 box gets radius < 1.
  assert heatmaps.gaussian_radius(1, 1) < 1
  assert heatmaps.gaussian_radius(20, 20) > heatmaps.gaussian_radius(10, 10)


def test_targets_match_loop_reference():
  rng = np.random.default_rng(0)
  batch, m, image, stride, c = 3, 7, 64, 4, 3
  boxes = random_boxes(rng, batch, m, image)
  classes = rng.integers(0, c, size=(batch, m)).astype(np.int32)
  valid = rng.uniform(size=(batch, m)) < 0.8
  got = centernet_losses.centernet_targets(boxes, classes, valid, output_size=(16, 16),
                                   stride=stride, num_classes=c)
  want = ref_targets(boxes, classes, valid, (16, 16), stride, c)
  assert got['heatmap'].shape == (batch, 16, 16, c)
  assert got['heatmap'].dtype == jnp.float32
  np.testing.assert_array_equal(got['mask'], want['mask'])
  np.testing.assert_allclose(got['heatmap'], want['heatmap'], atol=2e-6)
  np.testing.assert_array_equal(got['indices'], want['indices'])
  np.testing.assert_allclose(got['size'], want['size'], atol=1e-5)
  np.testing.assert_allclose(got['offset'], want['offset'], atol=1e-5)
  assert got['indices'].dtype == jnp.int32 and got['centers'].dtype == jnp.int32
  centers = np.asarray(got['centers'])
  np.testing.assert_array_equal(centers[..., 1] * 16 + centers[..., 0], want['indices'])


def test_single_box_peak_and_truncation():
  # Box of 40x24 pixels centred at (30, 18) -> output units 10x6, center (7.5, 4.5).
  boxes = np.array([[[10, 6, 50, 30]]], np.float32)
  t = centernet_losses.centernet_targets(boxes, np.array([[1]]), np.array([[True]]),
                                 output_size=(16, 16), stride=4, num_classes=3)
  hm = np.asarray(t['heatmap'])[0]
  assert hm[4, 7, 1] == 1.0  # exactly 1 at the integer center (y=4, x=7)
  assert (hm == 1.0).sum() == 1
  assert hm[..., 0].max() == 0 and hm[..., 2].max() == 0
  r = int(np.asarray(t['radius'])[0, 0])
  assert r == int(ref_gaussian_radius(6, 10)) and r >= 1
  sigma = (2 * r + 1) / 6
  np.testing.assert_allclose(hm[4, 7 + r, 1], math.exp(-r * r / (2 * sigma**2)), rtol=1e-5)
  assert hm[4, 7 + r + 1, 1] == 0.0  # truncated outside the (2r+1) window
  assert (hm[..., 1] > 0).sum() == (2 * r + 1)**2
  np.testing.assert_allclose(t['offset'][0, 0], [0.5, 0.5])
  np.testing.assert_allclose(t['size'][0, 0], [10.0, 6.0])


def test_overlapping_objects_take_max_per_class():
  boxes = np.array([[[8, 8, 48, 48], [16, 8, 56, 48], [16, 8, 56, 48]]], np.float32)
  classes = np.array([[0, 0, 1]], np.int32)
  valid = np.ones((1, 3), bool)
  kw = dict(output_size=(16, 16), stride=4, num_classes=2)
  both = np.asarray(centernet_losses.centernet_targets(boxes, classes, valid, **kw)['heatmap'])
  first = np.asarray(centernet_losses.centernet_targets(
      boxes, classes, np.array([[True, False, False]]), **kw)['heatmap'])
  second = np.asarray(centernet_losses.centernet_targets(
      boxes, classes, np.array([[False, True, False]]), **kw)['heatmap'])
  np.testing.assert_array_equal(both[..., 0], np.maximum(first[..., 0], second[..., 0]))
  assert both[..., 0].max() == 1.0 and (both[..., 0] == 1.0).sum() == 2
  # Object 3 (class 1) equals object 2's map, in its own channel.
  np.testing.assert_array_equal(both[..., 1], second[..., 0])


def test_mask_for_invalid_degenerate_and_outside_boxes():
  boxes = np.array([[[10, 10, 30, 30],     # fine
                     [10, 10, 10, 30],     # zero width
                     [70, 70, 90, 90],     # entirely outside a 64x64 image
                     [10, 10, 30, 30],     # valid=False
                     [50, 50, 100, 100]]],  # clipped to the image: center (57, 57)
                   np.float32)
  valid = np.array([[True, True, True, False, True]])
  t = centernet_losses.centernet_targets(boxes, np.zeros((1, 5), np.int32), valid,
                                 output_size=(16, 16), stride=4, num_classes=1)
  np.testing.assert_array_equal(t['mask'], [[True, False, False, False, True]])
  assert np.isfinite(np.asarray(t['heatmap'])).all()
  np.testing.assert_array_equal(t['indices'][0, 1:4], 0)
  np.testing.assert_array_equal(t['size'][0, 1:4], 0)
  np.testing.assert_allclose(t['size'][0, 4], [14 / 4, 14 / 4])
  np.testing.assert_array_equal(t['centers'][0, 4], [14, 14])
  assert np.asarray(t['heatmap'])[0, 14, 14, 0] == 1.0
  assert (np.asarray(t['heatmap']) == 1.0).sum() == 2


def test_edge_center_is_clamped():
  # A box against the right edge whose center falls exactly on the last cell boundary.
  boxes = np.array([[[60, 0, 64, 64]]], np.float32)  # 1 x 16 output units
  t = centernet_losses.centernet_targets(boxes, np.zeros((1, 1), np.int32), np.ones((1, 1), bool),
                                 output_size=(16, 16), stride=4, num_classes=1)
  np.testing.assert_array_equal(t['centers'][0, 0], [15, 8])
  np.testing.assert_allclose(t['offset'][0, 0], [0.5, 0.0])


def test_jit_and_vmap_clean():
  rng = np.random.default_rng(1)
  boxes = random_boxes(rng, 4, 5, 64)
  classes = rng.integers(0, 2, size=(4, 5)).astype(np.int32)
  valid = np.ones((4, 5), bool)
  fn = lambda b, c, v: centernet_losses.centernet_targets(b, c, v, output_size=(16, 16), stride=4,
                                                  num_classes=2)
  eager = fn(boxes, classes, valid)
  jitted = jax.jit(fn)(boxes, classes, valid)
  # vmap over an extra leading axis of size 2 with batches of 2.
  vm = jax.vmap(fn)(boxes.reshape(2, 2, 5, 4), classes.reshape(2, 2, 5),
                    valid.reshape(2, 2, 5))
  for k in eager:
    np.testing.assert_allclose(jitted[k], eager[k], atol=1e-6)
    np.testing.assert_allclose(np.asarray(vm[k]).reshape(eager[k].shape), eager[k],
                               atol=1e-6)


def test_gather_features():
  fmap = jnp.arange(2 * 3 * 4 * 5, dtype=jnp.float32).reshape(2, 3, 4, 5)
  idx = jnp.array([[0, 5, 11], [7, 7, 1]], jnp.int32)
  got = heatmaps.gather_features(fmap, idx)
  assert got.shape == (2, 3, 5)
  np.testing.assert_array_equal(got[0, 1], fmap[0, 1, 1])
  np.testing.assert_array_equal(got[1, 0], fmap[1, 1, 3])
  np.testing.assert_array_equal(got[0, 2], fmap[0, 2, 3])


@pytest.mark.parametrize('num_classes', [1, 4])
def test_heatmap_range(num_classes):
  rng = np.random.default_rng(2)
  boxes = random_boxes(rng, 2, 8, 128)
  classes = rng.integers(0, num_classes, size=(2, 8)).astype(np.int32)
  t = centernet_losses.centernet_targets(
      boxes, classes,
      np.ones((2, 8), bool), output_size=(32, 32), stride=4, num_classes=num_classes)
  hm = np.asarray(t['heatmap'])
  assert hm.min() >= 0 and hm.max() <= 1
  # Every kept object has a 1.0 at its center, in its class channel.
  m = np.asarray(t['mask'])
  assert m.any()
  flat = hm.reshape(2, 32 * 32, num_classes)
  for b, k in zip(*np.nonzero(m)):
    assert flat[b, t['indices'][b, k], classes[b, k]] == 1.0
