"""ops.warp: bilinear backward warping by a pixel flow (YolactEdge), and resize_flow.

The required reference is a plain numpy loop; an optional check against
torch.nn.functional.grid_sample / interpolate runs where torch imports, e.g.
  PYTHONPATH=$PWD:$PWD/.venv/lib/python3.11/site-packages /work/tv_venv/bin/python \
      -m pytest tests/test_ops_warp.py
"""
import math

import jax
import jax.numpy as jnp
from jax import test_util as jtu
import numpy as np
import pytest

from vision_jax.ops import warp as warp_ops


def _reference_warp(features, flow):
  """Bilinear sample at (x + dx, y + dy), pixel centres at integers; outside corners add 0."""
  b, h, w, c = features.shape
  out = np.zeros((b, h, w, c), np.float64)
  for n in range(b):
    for y in range(h):
      for x in range(w):
        sx = x + float(flow[n, y, x, 0])
        sy = y + float(flow[n, y, x, 1])
        x0, y0 = math.floor(sx), math.floor(sy)
        fx, fy = sx - x0, sy - y0
        for cy, wy in ((y0, 1.0 - fy), (y0 + 1, fy)):
          for cx, wx in ((x0, 1.0 - fx), (x0 + 1, fx)):
            if 0 <= cx < w and 0 <= cy < h:
              out[n, y, x] += wy * wx * features[n, cy, cx].astype(np.float64)
  return out


def _reference_resize(field, new_h, new_w):
  """Half-pixel-centre bilinear resize with edge clamping (torch align_corners=False)."""
  b, h, w, c = field.shape
  out = np.zeros((b, new_h, new_w, c), np.float64)

  def taps(i, size, new_size):
    s = max((i + 0.5) * size / new_size - 0.5, 0.0)
    lo = min(int(math.floor(s)), size - 1)
    hi = min(lo + 1, size - 1)
    return lo, hi, s - lo

  for i in range(new_h):
    y0, y1, fy = taps(i, h, new_h)
    for j in range(new_w):
      x0, x1, fx = taps(j, w, new_w)
      out[:, i, j] = ((1 - fy) * ((1 - fx) * field[:, y0, x0] + fx * field[:, y0, x1]) +
                      fy * ((1 - fx) * field[:, y1, x0] + fx * field[:, y1, x1]))
  return out


def _problem(seed, shape=(2, 5, 7, 3), spread=4.0):
  rng = np.random.default_rng(seed)
  features = rng.normal(size=shape).astype(np.float32)
  flow = rng.uniform(-spread, spread, shape[:3] + (2,)).astype(np.float32)
  return features, flow


@pytest.mark.parametrize('seed,shape', [(0, (2, 5, 7, 3)), (1, (1, 6, 4, 5)),
                                        (2, (3, 1, 6, 2)), (3, (1, 4, 1, 1))])
def test_matches_numpy_reference_with_out_of_bounds_samples(seed, shape):
  features, flow = _problem(seed, shape)
  # A few samples far outside, and a few exactly on the border lines.
  flow[0, 0, 0] = (50.0, -50.0)
  flow[-1, -1, -1] = (-(shape[2] - 1), -(shape[1] - 1))
  got = warp_ops.warp(features, flow)
  want = _reference_warp(features, flow)
  assert got.shape == features.shape and got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  assert np.all(np.asarray(got)[0, 0, 0] == 0.0)
  # The problem really samples outside the map for part of the pixels.
  b, h, w, _ = shape
  sx = np.arange(w)[None, None, :] + flow[..., 0]
  sy = np.arange(h)[None, :, None] + flow[..., 1]
  outside = (sx < 0) | (sx > w - 1) | (sy < 0) | (sy > h - 1)
  assert outside.any() and (~outside).any()


def test_zero_flow_is_identity():
  features, _ = _problem(4)
  got = warp_ops.warp(features, np.zeros(features.shape[:3] + (2,), np.float32))
  np.testing.assert_array_equal(np.asarray(got), features)


@pytest.mark.parametrize('dx,dy', [(2, -1), (-3, 2), (0, 4), (7, 0)])
def test_integer_shift_moves_the_map_and_lets_zeros_in(dx, dy):
  features, _ = _problem(5)
  b, h, w, c = features.shape
  flow = np.broadcast_to(np.asarray([dx, dy], np.float32), (b, h, w, 2))
  got = np.asarray(warp_ops.warp(features, flow))
  want = np.zeros_like(features)
  for y in range(h):
    for x in range(w):
      if 0 <= x + dx < w and 0 <= y + dy < h:
        want[:, y, x] = features[:, y + dy, x + dx]
  np.testing.assert_array_equal(got, want)
  # Integer flow dtypes are accepted too.
  np.testing.assert_array_equal(np.asarray(warp_ops.warp(features, flow.astype(np.int32))), want)


def test_gradients_are_exact_float64():
  rng = np.random.default_rng(6)
  with jax.enable_x64(True):
    features = jnp.asarray(rng.normal(size=(2, 4, 5, 3)), jnp.float64)
    # Integer parts in [-3, 3] (some samples partly or wholly outside), fractional parts
    # in [0.2, 0.8]: away from the kinks at integer positions.
    whole = rng.integers(-3, 4, (2, 4, 5, 2))
    flow = jnp.asarray(whole + rng.uniform(0.2, 0.8, (2, 4, 5, 2)), jnp.float64)
    # jit: check_grads evaluates and differentiates each function many times.
    warp = jax.jit(warp_ops.warp)
    assert warp(features, flow).dtype == jnp.float64
    jtu.check_grads(warp, (features, flow), order=1, modes=['rev', 'fwd'],
                    atol=1e-6, rtol=1e-6)
    jtu.check_grads(jax.jit(lambda f: warp_ops.resize_flow(f, (7, 3))), (flow,), order=1,
                    modes=['rev', 'fwd'], atol=1e-6, rtol=1e-6)


def test_flow_gradient_at_integer_positions_is_the_right_derivative():
  features, _ = _problem(7)
  b, h, w, c = features.shape
  flow = np.zeros((b, h, w, 2), np.float32)
  tangent = np.zeros_like(flow)
  tangent[..., 0] = 1.0  # d/d(dx) at dx = 0
  _, dout = jax.jvp(warp_ops.warp, (features, flow), (np.zeros_like(features), tangent))
  right = np.concatenate([features[:, :, 1:], np.zeros((b, h, 1, c), np.float32)], 2)
  np.testing.assert_allclose(np.asarray(dout), right - features, atol=1e-6)


def test_jit_vmap_and_bfloat16():
  features, flow = _problem(8)
  eager = warp_ops.warp(features, flow)
  np.testing.assert_allclose(np.asarray(jax.jit(warp_ops.warp)(features, flow)),
                             np.asarray(eager), rtol=1e-6, atol=1e-6)
  per_image = jax.vmap(lambda f, d: warp_ops.warp(f[None], d[None])[0])(features, flow)
  np.testing.assert_allclose(np.asarray(per_image), np.asarray(eager), rtol=1e-6, atol=1e-6)
  half = jnp.asarray(features, jnp.bfloat16)
  got = jax.jit(warp_ops.warp)(half, flow)
  assert got.dtype == jnp.bfloat16
  # float32 weights and sum over the bf16 values, one rounding at the end.
  want = warp_ops.warp(half.astype(jnp.float32), flow).astype(jnp.bfloat16)
  np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                             rtol=1e-2, atol=1e-2)
  np.testing.assert_allclose(np.asarray(got, np.float32),
                             _reference_warp(np.asarray(half, np.float32), flow),
                             rtol=2e-2, atol=2e-2)


def test_bad_shapes_raise_value_error_naming_the_expected_shapes():
  features, flow = _problem(9)
  with pytest.raises(ValueError, match=r'features must be \[B, H, W, C\]'):
    warp_ops.warp(features[0], flow[0])
  with pytest.raises(ValueError, match=r'flow must be \[B, H, W, 2\] = \(2, 5, 7, 2\)'):
    warp_ops.warp(features, np.concatenate([flow, flow[..., :1]], -1))
  with pytest.raises(ValueError, match=r'flow must be \[B, H, W, 2\]'):
    warp_ops.warp(features, flow[:, :4])
  with pytest.raises(ValueError, match=r'flow must be \[B, H, W, 2\]'):
    warp_ops.resize_flow(flow[..., :1], (3, 3))
  with pytest.raises(ValueError, match=r'size must be \(h, w\)'):
    warp_ops.resize_flow(flow, (3,))
  with pytest.raises(TypeError, match='floating'):
    warp_ops.warp(features.astype(np.int32), flow)


@pytest.mark.parametrize('size', [(10, 14), (3, 4), (5, 7), (8, 3)])
def test_resize_flow_rescales_displacements(size):
  _, flow = _problem(10)
  h, w = flow.shape[1:3]
  got = np.asarray(warp_ops.resize_flow(flow, size))
  want = _reference_resize(flow.astype(np.float64), *size)
  want *= np.asarray([size[1] / w, size[0] / h])
  assert got.shape == (flow.shape[0],) + size + (2,) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  constant = np.broadcast_to(np.asarray([1.5, -2.0], np.float32), flow.shape)
  np.testing.assert_allclose(np.asarray(warp_ops.resize_flow(constant, size)),
                             np.broadcast_to([1.5 * size[1] / w, -2.0 * size[0] / h],
                                             got.shape), rtol=1e-6)


def test_matches_torch_grid_sample_and_interpolate():
  torch = pytest.importorskip('torch')
  functional = torch.nn.functional
  features, flow = _problem(11, (2, 6, 9, 4))
  b, h, w, _ = features.shape
  grid = np.stack([np.arange(w)[None, None, :] + flow[..., 0],
                   np.arange(h)[None, :, None] + flow[..., 1]], -1).astype(np.float64)
  grid = 2.0 * grid / np.asarray([w - 1, h - 1]) - 1.0
  want = functional.grid_sample(torch.tensor(features, dtype=torch.float64).permute(0, 3, 1, 2),
                                torch.tensor(grid), mode='bilinear', padding_mode='zeros',
                                align_corners=True).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(np.asarray(warp_ops.warp(features, flow)), want,
                             rtol=1e-5, atol=1e-5)
  resized = functional.interpolate(torch.tensor(flow).permute(0, 3, 1, 2), size=(4, 13),
                                   mode='bilinear', align_corners=False)
  want = resized.permute(0, 2, 3, 1).numpy() * np.asarray([13 / w, 4 / h], np.float32)
  np.testing.assert_allclose(np.asarray(warp_ops.resize_flow(flow, (4, 13))), want,
                             rtol=1e-5, atol=1e-5)
