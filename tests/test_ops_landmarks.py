"""Tests for vision_jax.ops.landmarks (Gaussian targets, decoding, flips, soft-argmax)."""
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.ops import landmarks


def test_gaussian_peak_is_one_at_the_point_and_has_width_sigma():
  sigma = 2.0
  # Points on cell centres (j + 0.5): the peak is exactly 1 at that cell.
  points = jnp.array([[3.5, 5.5], [10.5, 1.5], [7.5, 7.5], [4.0, 4.0]])
  visible = jnp.array([True, True, False, True])
  hm = np.asarray(landmarks.gaussian_heatmaps(points, visible, (12, 16), sigma))
  assert hm.shape == (12, 16, 4) and hm.dtype == np.float32
  np.testing.assert_allclose(hm[5, 3, 0], 1.0)
  assert np.unravel_index(hm[..., 0].argmax(), (12, 16)) == (5, 3)
  np.testing.assert_allclose(hm[..., 0].max(), 1.0)
  np.testing.assert_allclose(hm[1, 10, 1], 1.0)
  # One sigma away along x or y: exp(-1/2); along the diagonal: exp(-1).
  np.testing.assert_allclose(hm[5, 5, 0], np.exp(-0.5), rtol=1e-6)
  np.testing.assert_allclose(hm[3, 3, 0], np.exp(-0.5), rtol=1e-6)
  np.testing.assert_allclose(hm[7, 5, 0], np.exp(-1.0), rtol=1e-6)
  # Empirical std of the (untruncated, far from the border) map is sigma.
  big = np.asarray(landmarks.gaussian_heatmaps(jnp.array([[20.5, 20.5]]), jnp.array([True]),
                                               (41, 41), sigma))[..., 0]
  yy, xx = np.mgrid[0:41, 0:41] + 0.5
  mass = big.sum()
  np.testing.assert_allclose(np.sqrt((big * (xx - 20.5)**2).sum() / mass), sigma, rtol=1e-4)
  # Invisible point: an all-zero map.
  assert not hm[..., 2].any()
  # A sub-pixel point on a cell corner: four equal maxima below 1.
  corner = hm[..., 3]
  np.testing.assert_allclose(corner[3:5, 3:5], np.exp(-0.25 / (2 * sigma**2)) ** 2 *
                             np.ones((2, 2)), rtol=1e-6)


def test_gaussian_options_batching_and_outside_points():
  points = jnp.array([[[3.9, 5.2], [-0.5, 2.0], [15.9, 11.9]],
                      [[0.1, 0.1], [8.0, 12.0], [2.2, 2.7]]])  # [2, 3, 2]
  visible = jnp.ones((2, 3), bool)
  hm = jax.jit(lambda p, v: landmarks.gaussian_heatmaps(p, v, (12, 16), 1.0,
                                                         subpixel=False, radius=2.0)
               )(points, visible)
  hm = np.asarray(hm)
  assert hm.shape == (2, 12, 16, 3)
  # subpixel=False: the peak is 1 at the point's cell.
  np.testing.assert_allclose(hm[0, 5, 3, 0], 1.0)
  np.testing.assert_allclose(hm[0, 11, 15, 2], 1.0)
  np.testing.assert_allclose(hm[1, 0, 0, 0], 1.0)
  np.testing.assert_allclose(hm[1, 2, 2, 2], 1.0)
  # radius: nothing beyond 2 px from the centre along either axis.
  assert hm[0, 5, 6, 0] == 0 and hm[0, 8, 3, 0] == 0 and hm[0, 5, 5, 0] > 0
  # Points outside the map (x < 0, y >= h) draw nothing.
  assert not hm[0, ..., 1].any() and not hm[1, ..., 1].any()
  np.testing.assert_array_equal(
      landmarks.points_in_map(points, (12, 16)), [[True, False, True], [True, False, True]])


def test_decode_recovers_subpixel_points_within_a_quarter_pixel():
  rng = np.random.default_rng(0)
  h, w, k = 24, 32, 40
  # Away from the border, where both neighbours exist.
  points = np.stack([rng.uniform(1, w - 1, k), rng.uniform(1, h - 1, k)], -1)
  for sigma in (1.0, 2.0):
    hm = landmarks.gaussian_heatmaps(jnp.asarray(points), jnp.ones(k, bool), (h, w), sigma)
    decoded, maxvals = jax.jit(landmarks.decode_heatmaps)(hm[None])
    assert decoded.shape == (1, k, 2) and maxvals.shape == (1, k)
    err = np.abs(np.asarray(decoded[0]) - points)
    assert err.max() <= 0.25 + 1e-5
    np.testing.assert_allclose(maxvals[0], np.asarray(hm).reshape(-1, k).max(0))
    # Without the shift the error is up to half a pixel.
    plain, _ = landmarks.decode_heatmaps(hm, quarter_offset=False)
    assert np.abs(np.asarray(plain) - points).max() <= 0.5 + 1e-5
    assert np.abs(np.asarray(plain) - points).mean() > err.mean()


def test_dark_refinement_recovers_exact_subpixel_points():
  rng = np.random.default_rng(3)
  h, w, k = 24, 32, 60
  # At least 3 sigma from the border, where the smoothing sees the whole gaussian.
  points = np.stack([rng.uniform(3, w - 3, k), rng.uniform(3, h - 3, k)], -1)
  hm = landmarks.gaussian_heatmaps(jnp.asarray(points), jnp.ones(k, bool), (h, w), 1.0)
  argmax, _ = landmarks.decode_heatmaps(hm, quarter_offset=False)
  refined = jax.jit(landmarks.refine_dark, static_argnums=2)(hm[None], argmax[None], 1.0)
  assert refined.shape == (1, k, 2)
  np.testing.assert_allclose(refined[0], points, atol=2e-3)
  # Noise: still well below the quarter rule's error.
  noisy = hm + 0.05 * rng.normal(size=hm.shape).astype(np.float32)
  argmax, _ = landmarks.decode_heatmaps(noisy, quarter_offset=False)
  dark = np.linalg.norm(landmarks.refine_dark(noisy, argmax, 1.0) - points, axis=-1)
  quarter = np.linalg.norm(landmarks.decode_heatmaps(noisy)[0] - points, axis=-1)
  assert dark.mean() < 0.6 * quarter.mean()


def test_dark_refinement_leaves_flat_peaks_alone():
  hm = np.zeros((8, 8, 2), np.float32)
  hm[3:5, 3:5, 0] = 1.0   # a flat plateau: the log-map is not strictly concave there
  points = jnp.asarray([[3.5, 3.5], [2.5, 6.5]])
  refined = landmarks.refine_dark(jnp.asarray(hm), points, 1.0, max_shift=0.5)
  assert np.all(np.abs(np.asarray(refined) - np.asarray(points)) <= 0.5 + 1e-6)
  np.testing.assert_allclose(refined[1], points[1])  # an all-zero map: unchanged


def test_quarter_pixel_rule_on_a_hand_built_map():
  hm = np.zeros((6, 7, 3), np.float32)
  # Channel 0: peak at (x=3, y=2); right > left, up == down -> x + 0.25, y unchanged.
  hm[2, 3, 0], hm[2, 4, 0], hm[2, 2, 0], hm[1, 3, 0], hm[3, 3, 0] = 1, .5, .2, .3, .3
  # Channel 1: peak at (x=4, y=4); left > right, down > up -> x - 0.25, y + 0.25.
  hm[4, 4, 1], hm[4, 3, 1], hm[4, 5, 1], hm[3, 4, 1], hm[5, 4, 1] = 2, .6, .1, .1, .4
  # Channel 2: peak on the left border (x=0, y=3): no shift along x; up > down.
  hm[3, 0, 2], hm[3, 1, 2], hm[2, 0, 2], hm[4, 0, 2] = 1, .9, .5, .1
  points, maxvals = landmarks.decode_heatmaps(jnp.asarray(hm))
  np.testing.assert_allclose(points, [[3.75, 2.5], [4.25, 4.75], [0.5, 3.25]])
  np.testing.assert_allclose(maxvals, [1, 2, 1])


def test_flip_round_trip_and_average():
  perm = landmarks.flip_permutation(5, [(0, 1), (3, 4)])
  assert perm == (1, 0, 2, 4, 3)
  rng = np.random.default_rng(1)
  h, w = 16, 20
  points = jnp.asarray(np.stack([rng.uniform(1, w - 1, 5), rng.uniform(1, h - 1, 5)], -1))
  vis = jnp.array([True, True, True, False, True])
  hm = landmarks.gaussian_heatmaps(points, vis, (h, w), 1.5)
  # Maps of the mirrored image, drawn from the mirrored (and re-labelled) points.
  flipped = landmarks.flip_points(jnp.concatenate([points, vis[:, None]], -1), w, perm)
  np.testing.assert_allclose(flipped[0, 0], w - points[1, 0])
  np.testing.assert_allclose(landmarks.flip_points(flipped, w, perm)[:, :2], points, atol=1e-5)
  hm_flipped = landmarks.gaussian_heatmaps(flipped[:, :2], flipped[:, 2] > 0, (h, w), 1.5)
  np.testing.assert_allclose(landmarks.unflip_heatmaps(hm_flipped, perm), hm, atol=1e-6)
  np.testing.assert_allclose(landmarks.flip_average(hm, hm_flipped, perm), hm, atol=1e-6)
  # A map only in the flipped prediction contributes half, at the mirrored column.
  extra = jnp.zeros((2, h, w, 5)).at[:, 3, 2, 4].set(1.0)  # batched, channel 4, x=2
  avg = landmarks.flip_average(jnp.zeros_like(extra), extra, perm)
  assert avg[0, 3, w - 1 - 2, 3] == 0.5 and float(avg.sum()) == 1.0


def test_soft_argmax_sharp_map_subpixel_and_gradients():
  h, w = 10, 12
  sharp = jnp.zeros((2, h, w, 2)).at[0, 4, 7, 0].set(1.0).at[1, 0, 11, 1].set(1.0)
  out = landmarks.soft_argmax(sharp, beta=100.0)
  assert out.shape == (2, 2, 2)
  np.testing.assert_allclose(out[0, 0], [7.5, 4.5], atol=1e-4)
  np.testing.assert_allclose(out[1, 1], [11.5, 0.5], atol=1e-4)
  # Log-gaussian logits: the softmax is the sampled gaussian, whose mean is the point.
  point = jnp.array([5.3, 4.8])
  xs, ys = jnp.arange(w) + 0.5, jnp.arange(h) + 0.5
  logits = -((xs[None, :] - point[0])**2 + (ys[:, None] - point[1])**2) / (2 * 1.2**2)
  np.testing.assert_allclose(landmarks.soft_argmax(logits[..., None])[0], point, atol=1e-3)
  grad = jax.grad(lambda m: landmarks.soft_argmax(m, beta=2.0)[..., 0].sum())(logits[..., None])
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
  # d x / d logit is positive right of the expected x and negative left of it.
  assert grad[4, 10, 0] > 0 and grad[4, 1, 0] < 0
