"""CornerNet's losses against hand-computed values (official `_neg_loss`, `_sigmoid` clamp,
`_ae_loss`) and CornerNet's gaussian radius against its sample/utils.py formula."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.losses import cornernet
from vision_jax.losses import focal
from vision_jax.ops import heatmaps

EPS = 1e-4
sigmoid = lambda v: 1.0 / (1.0 + math.exp(-v))


def test_corner_focal_loss_small_case():
  logits = np.array([0.0, 2.0, -1.0], np.float32).reshape(1, 1, 3, 1)
  targets = np.array([1.0, 0.5, 0.0], np.float32).reshape(1, 1, 3, 1)
  p0, p1, p2 = sigmoid(0.0), sigmoid(2.0), sigmoid(-1.0)
  total = ((1 - p0) ** 2 * math.log(p0)  # the corner
           + (1 - 0.5) ** 4 * p1 ** 2 * math.log(1 - p1)  # near it, penalty-reduced
           + p2 ** 2 * math.log(1 - p2))  # background
  got = cornernet.corner_focal_loss(logits, targets)
  assert float(got) == pytest.approx(-total, rel=1e-6)  # one positive pixel
  got = cornernet.corner_focal_loss(logits, targets, num_objects=np.array([2, 1]))
  assert float(got) == pytest.approx(-total / 3, rel=1e-6)
  # No positive: the sum divided by 1 (num_objects 0 -> max(0, 1)).
  no_pos = targets * 0.5
  got = cornernet.corner_focal_loss(logits, no_pos, num_objects=0)
  want = -sum((1 - y) ** 4 * p ** 2 * math.log(1 - p)
              for y, p in zip((0.5, 0.25, 0.0), (p0, p1, p2)))
  assert float(got) == pytest.approx(want, rel=1e-6)


def test_corner_focal_loss_clamps_like_the_reference():
  # A confident false positive: the reference clamps p at 1 - 1e-4, capping the loss at
  # -log(1e-4) and zeroing the gradient; the unclamped loss would be ~20.
  logits = np.array([20.0, 0.0], np.float32).reshape(1, 1, 2, 1)
  targets = np.array([0.0, 1.0], np.float32).reshape(1, 1, 2, 1)
  loss, grad = jax.value_and_grad(cornernet.corner_focal_loss)(jnp.asarray(logits), targets)
  want = -((1 - EPS) ** 2 * math.log(EPS) + 0.25 * math.log(0.5))
  assert float(loss) == pytest.approx(want, rel=1e-4)
  assert float(grad[0, 0, 0, 0]) == 0.0 and float(grad[0, 0, 1, 0]) != 0.0
  unclamped = focal.penalty_reduced_focal_loss(logits, targets)
  assert float(unclamped) == pytest.approx(20.0 + 0.25 * math.log(2.0), rel=1e-4)


def test_focal_defaults_unchanged_for_existing_callers():
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 3, (2, 4, 5, 3)).astype(np.float32)
  targets = rng.uniform(0, 0.99, (2, 4, 5, 3)).astype(np.float32)
  targets[0, 1, 2, 0] = targets[1, 3, 3, 2] = 1.0
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  pos = targets == 1
  per = np.where(pos, (1 - p) ** 2 * np.log(p), (1 - targets) ** 4 * p ** 2 * np.log(1 - p))
  got = focal.penalty_reduced_focal_loss(logits, targets)
  assert float(got) == pytest.approx(-per.sum() / 2, rel=1e-5)


def test_pull_push_two_objects():
  tl = np.array([[0.0, 0.4]], np.float32)
  br = np.array([[1.0, 0.8]], np.float32)
  valid = np.array([[True, True]])
  pull, push = cornernet.embedding_pull_push(tl, br, valid)
  # Means 0.5 and 0.6; spreads 0.5^2 + 0.5^2 and 0.2^2 + 0.2^2.
  assert float(pull) == pytest.approx((0.5 + 0.08) / (2 + EPS), rel=1e-6)
  # Ordered pairs incl. the diagonal: 2 x relu(1 - 0) + 2 x relu(1 - 0.1), less 4 x 1/n.
  want_push = (2 * 1.0 + 2 * 0.9 - 4 / (2 + EPS)) / (2 * 1 + EPS)
  assert float(push) == pytest.approx(want_push, rel=1e-5)
  assert float(push) == pytest.approx(1.8 / 2, abs=1e-4)  # the paper's formula, up to eps
  # Far apart: no push beyond the residue.
  _, far = cornernet.embedding_pull_push(tl, br + np.array([[0.0, 5.0]], np.float32), valid)
  assert float(far) == pytest.approx(2 * EPS / ((2 + EPS) * (2 + EPS)), rel=1e-2)


def test_pull_push_three_objects_with_masking_summed_over_images():
  # Image 0: objects in slots 0, 2, 3; slot 1 is padding with wild values. Image 1: none.
  tl = np.array([[0.0, 9.0, 1.0, 2.0], [3.0, -4.0, 5.0, 6.0]], np.float32)
  br = np.array([[0.2, -9.0, 1.4, 2.0], [7.0, 8.0, -5.0, 1.0]], np.float32)
  valid = np.array([[True, False, True, True], [False] * 4])
  pull, push = jax.jit(cornernet.embedding_pull_push)(tl, br, valid)
  # Means 0.1, 1.2, 2.0; spreads 2 x 0.1^2, 2 x 0.2^2, 0.
  assert float(pull) == pytest.approx((0.02 + 0.08) / (3 + EPS), rel=1e-5)
  # |0.1 - 1.2| = 1.1 and |0.1 - 2.0| = 1.9 push nothing; |1.2 - 2.0| = 0.8 pushes 0.2, twice.
  want = (3 * 1.0 + 2 * 0.2 - 9 / (3 + EPS)) / (3 * 2 + EPS)
  assert float(push) == pytest.approx(want, rel=1e-4)
  # margin 2: gaps 0.9, 0.1, 1.2 (twice each) and 2 on the diagonal, less 9 x 2/n.
  _, push2 = cornernet.embedding_pull_push(tl, br, valid, margin=2.0)
  want2 = (3 * 2.0 + 2 * (0.9 + 0.1 + 1.2) - 9 * 2 / (3 + EPS)) / (3 * 2 + EPS)
  assert float(push2) == pytest.approx(want2, rel=1e-4)
  # Image 1 contributes nothing; with image 0 twice, both losses double.
  twice = cornernet.embedding_pull_push(tl[[0, 0]], br[[0, 0]], valid[[0, 0]])
  np.testing.assert_allclose(twice, (2 * float(pull), 2 * float(push)), rtol=1e-6)


def test_pull_push_single_object_residue_and_gradients():
  tl = jnp.array([[0.3, 0.0]])
  br = jnp.array([[0.7, 0.0]])
  valid = jnp.array([[True, False]])
  pull, push = cornernet.embedding_pull_push(tl, br, valid)
  assert float(pull) == pytest.approx(2 * 0.2 ** 2 / (1 + EPS), rel=1e-5)
  # The reference's constant for n = 1: 1 - 1/(1 + eps) over eps.
  assert float(push) == pytest.approx(1 / (1 + EPS), rel=2e-3)  # float32 residue
  grads = jax.grad(lambda a, b: cornernet.embedding_pull_push(a, b, valid)[1], (0, 1))(tl, br)
  assert all(np.all(np.asarray(g) == 0) for g in grads)
  # Pull pulls the two corners together; push drives two close means apart.
  g_tl, g_br = jax.grad(lambda a, b: cornernet.embedding_pull_push(a, b, valid)[0],
                        (0, 1))(tl, br)
  assert float(g_tl[0, 0]) < 0 < float(g_br[0, 0])
  both = jnp.array([[True, True]])
  g = jax.grad(lambda a: cornernet.embedding_pull_push(a, a, both)[1])(jnp.array([[0.0, 0.5]]))
  assert float(g[0, 0]) > 0 > float(g[0, 1])  # descent moves them apart


def _cornernet_radius(height, width, min_overlap=0.7):
  """CornerNet's sample/utils.py gaussian_radius, written out plainly."""
  a1, b1 = 1, height + width
  c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
  r1 = (b1 - math.sqrt(b1 ** 2 - 4 * a1 * c1)) / (2 * a1)
  a2, b2 = 4, 2 * (height + width)
  c2 = (1 - min_overlap) * width * height
  r2 = (b2 - math.sqrt(b2 ** 2 - 4 * a2 * c2)) / (2 * a2)
  a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
  c3 = (min_overlap - 1) * width * height
  r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / (2 * a3)
  return min(r1, r2, r3)


def test_cornernet_gaussian_radius_matches_reference():
  hs, ws = np.meshgrid(np.arange(1, 200, 13.0), np.array([1, 2, 5, 17, 60, 150.0]))
  for overlap in (0.3, 0.7, 0.9):
    got = np.asarray(heatmaps.cornernet_gaussian_radius(hs, ws, overlap))
    want = np.vectorize(lambda a, b, o=overlap: _cornernet_radius(a, b, o))(hs, ws)
    np.testing.assert_allclose(got, want, rtol=1e-5)
  assert float(heatmaps.cornernet_gaussian_radius(0, 0)) == 0.0
  # Not CenterNet's rule: about 3x smaller.
  ratio = heatmaps.gaussian_radius(40, 40) / heatmaps.cornernet_gaussian_radius(40, 40)
  assert 3 < float(ratio) < 3.5
