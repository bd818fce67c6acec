"""Tests for vision_jax.losses.focal and vision_jax.losses.regression."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.losses import focal
from vision_jax.losses import regression
from vision_jax.losses import centernet as centernet_losses


def ref_neg_loss(logits, gt, alpha=2.0, beta=4.0):
  """CenterNet's _neg_loss in float64 numpy (without its 1e-4 probability clamp)."""
  pred = 1 / (1 + np.exp(-logits.astype(np.float64)))
  pos = gt == 1
  neg = gt < 1
  pos_loss = (np.log(pred) * (1 - pred)**alpha)[pos].sum()
  neg_loss = (np.log(1 - pred) * pred**alpha * (1 - gt)**beta)[neg].sum()
  num_pos = pos.sum()
  return -neg_loss if num_pos == 0 else -(pos_loss + neg_loss) / num_pos


def make_heatmap(seed=0):
  rng = np.random.default_rng(seed)
  xy = rng.uniform(0, 48, size=(2, 4, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(6, 16, size=(2, 4, 2))], -1)
  return centernet_losses.centernet_targets(
      boxes.astype(np.float32), rng.integers(0, 3, size=(2, 4)).astype(np.int32),
      np.ones((2, 4), bool), output_size=(16, 16), stride=4, num_classes=3)


def test_focal_matches_reference():
  t = make_heatmap()
  gt = np.asarray(t['heatmap'])
  logits = np.random.default_rng(1).normal(size=gt.shape).astype(np.float32) * 3
  got = focal.penalty_reduced_focal_loss(logits, gt)
  np.testing.assert_allclose(got, ref_neg_loss(logits, gt), rtol=1e-5)
  # No positives: the sum itself (normalizer max(1, 0) = 1).
  zeros = np.zeros_like(gt)
  np.testing.assert_allclose(focal.penalty_reduced_focal_loss(logits, zeros),
                             ref_neg_loss(logits, zeros), rtol=1e-5)


def test_focal_perfect_vs_wrong():
  gt = np.asarray(make_heatmap()['heatmap'])
  perfect = np.where(gt == 1, 30.0, -30.0).astype(np.float32)
  wrong = -perfect
  lp = float(focal.penalty_reduced_focal_loss(perfect, gt))
  lw = float(focal.penalty_reduced_focal_loss(wrong, gt))
  init = float(focal.penalty_reduced_focal_loss(np.full_like(gt, -2.19), gt))
  assert lp < 1e-6
  assert init > 0.5
  assert lw > 10 * init
  # Normalized by the number of positives: duplicating the batch keeps the value.
  gt2 = np.concatenate([gt, gt])
  l2 = focal.penalty_reduced_focal_loss(np.concatenate([wrong, wrong]), gt2)
  np.testing.assert_allclose(l2, lw, rtol=1e-5)


def test_focal_stable_for_huge_logits():
  gt = np.asarray(make_heatmap()['heatmap'])
  logits = np.where(gt == 1, -1e4, 1e4).astype(np.float32)
  loss, grad = jax.value_and_grad(focal.penalty_reduced_focal_loss)(jnp.asarray(logits),
                                                                    gt)
  assert np.isfinite(loss) and loss > 100
  assert np.isfinite(np.asarray(grad)).all()


def test_focal_example_weights():
  gt = np.asarray(make_heatmap()['heatmap'])
  logits = np.random.default_rng(2).normal(size=gt.shape).astype(np.float32)
  only_first = focal.penalty_reduced_focal_loss(logits, gt, weights=np.array([1.0, 0.0]))
  np.testing.assert_allclose(only_first,
                             focal.penalty_reduced_focal_loss(logits[:1], gt[:1]),
                             rtol=1e-5)


def test_masked_l1():
  rng = np.random.default_rng(3)
  pred = rng.normal(size=(2, 4, 5, 2)).astype(np.float32)
  idx = np.array([[0, 7, 19], [3, 3, 12]], np.int32)
  target = rng.normal(size=(2, 3, 2)).astype(np.float32)
  mask = np.array([[True, True, False], [True, False, False]])
  flat = pred.reshape(2, 20, 2)
  err = [np.abs(flat[b, idx[b, k]] - target[b, k]).sum() for b, k in [(0, 0), (0, 1),
                                                                      (1, 0)]]
  got = regression.masked_l1_loss(pred, idx, target, mask)
  np.testing.assert_allclose(got, sum(err) / 3, rtol=1e-6)
  got_el = regression.masked_l1_loss(pred, idx, target, mask, normalize='elements')
  np.testing.assert_allclose(got_el, sum(err) / 6, rtol=1e-6)
  none = regression.masked_l1_loss(pred, idx, target, np.zeros_like(mask))
  assert float(none) == 0.0
  # Gradient only reaches the gathered, masked pixels.
  g = jax.grad(regression.masked_l1_loss)(jnp.asarray(pred), idx, target, mask)
  nz = np.argwhere(np.abs(np.asarray(g)).reshape(2, 20, 2).sum(-1) > 0)
  assert sorted(map(tuple, nz)) == [(0, 0), (0, 7), (1, 3)]
  with pytest.raises(ValueError):
    regression.masked_l1_loss(pred, idx, target, mask, normalize='pixels')


def test_smooth_l1():
  d = np.array([-3.0, -0.5, 0.0, 0.2, 1.0, 2.5], np.float32)
  got = regression.smooth_l1(d, 0.0, beta=1.0)
  want = np.where(np.abs(d) < 1, 0.5 * d * d, np.abs(d) - 0.5)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(regression.smooth_l1(d, 0.0, beta=0.0), np.abs(d))
  np.testing.assert_allclose(regression.smooth_l1(d, 1.0, beta=1 / 9),
                             np.where(np.abs(d - 1) < 1 / 9, 4.5 * (d - 1)**2,
                                      np.abs(d - 1) - 1 / 18), rtol=1e-6)
