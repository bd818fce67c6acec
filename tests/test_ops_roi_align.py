"""RoIAlign: parity with torchvision (stored fixtures, a float64 reference, live torchvision)."""
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from vision_jax import ops

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'torchvision_ops.npz'
ROI_CASES = [f'{i:02d}' for i in range(11)]
_STATIC = ('output_size', 'spatial_scale', 'sampling_ratio', 'aligned', 'max_sampling_ratio')
roi_align = jax.jit(ops.roi_align, static_argnames=_STATIC)
multilevel_roi_align = jax.jit(
    ops.multilevel_roi_align,
    static_argnames=('output_size', 'sampling_ratio', 'aligned', 'max_sampling_ratio',
                     'min_level', 'max_level', 'canonical_box_size'))


@functools.lru_cache(maxsize=None)
def _fixtures():
  with np.load(FIXTURES) as data:
    return {k: data[k] for k in data.files}


def _pad_rois(rois, num_images):
  """torchvision rois [K, 5] (batch, x1, y1, x2, y2) -> padded [N, Kmax, 4] + positions."""
  image = rois[:, 0].astype(np.int64)
  per_image = np.bincount(image, minlength=num_images)
  boxes = np.zeros((num_images, max(per_image.max(), 1), 4), np.float32)
  slot = np.zeros(len(rois), np.int64)
  for i in range(num_images):
    where = np.flatnonzero(image == i)
    slot[where] = np.arange(len(where))
    boxes[i, :len(where)] = rois[where, 1:]
  return boxes, image, slot


def _reference_roi_align(features, boxes, output_size, spatial_scale, sampling_ratio,
                         aligned, max_sampling_ratio=None):
  """A direct float64 transcription of torchvision's CPU kernel (one box, bin, sample at a
  time). features [N, H, W, C], boxes [N, K, 4] -> [N, K, oh, ow, C]. `max_sampling_ratio`
  clamps the adaptive grid, the documented deviation."""
  features = np.asarray(features, np.float64)
  n, height, width, c = features.shape
  out_h, out_w = output_size
  out = np.zeros(boxes.shape[:2] + (out_h, out_w, c))

  def bilinear(img, y, x):
    if y < -1.0 or y > height or x < -1.0 or x > width:
      return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
      y_high = y_low = height - 1
      y = float(y_low)
    else:
      y_high = y_low + 1
    if x_low >= width - 1:
      x_high = x_low = width - 1
      x = float(x_low)
    else:
      x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * img[y_low, x_low] + hy * lx * img[y_low, x_high]
            + ly * hx * img[y_high, x_low] + ly * lx * img[y_high, x_high])

  offset = 0.5 if aligned else 0.0
  for i in range(boxes.shape[0]):
    for k in range(boxes.shape[1]):
      x1, y1, x2, y2 = (float(v) * spatial_scale - offset for v in boxes[i, k])
      roi_w, roi_h = x2 - x1, y2 - y1
      if not aligned:
        roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
      bin_h, bin_w = roi_h / out_h, roi_w / out_w
      grid_h = sampling_ratio if sampling_ratio > 0 else int(np.ceil(roi_h / out_h))
      grid_w = sampling_ratio if sampling_ratio > 0 else int(np.ceil(roi_w / out_w))
      if sampling_ratio <= 0 and max_sampling_ratio:
        grid_h, grid_w = min(grid_h, max_sampling_ratio), min(grid_w, max_sampling_ratio)
      count = max(grid_h * grid_w, 1)
      for ph in range(out_h):
        for pw in range(out_w):
          acc = np.zeros(c)
          for iy in range(grid_h):
            y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
            for ix in range(grid_w):
              x = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
              acc = acc + bilinear(features[i], y, x)
          out[i, k, ph, pw] = acc / count
  return out


@pytest.mark.parametrize('case', ROI_CASES)
def test_matches_torchvision_fixture_forward_and_feature_gradient(case):
  data = _fixtures()
  p = f'roi_align/{case}/'
  features = data[p + 'features_nchw'].transpose(0, 2, 3, 1)
  boxes, image, slot = _pad_rois(data[p + 'rois'], features.shape[0])
  kwargs = dict(spatial_scale=float(data[p + 'spatial_scale']),
                sampling_ratio=int(data[p + 'sampling_ratio']),
                aligned=bool(data[p + 'aligned']))
  output_size = tuple(int(v) for v in data[p + 'output_size'])
  pool = jax.jit(lambda f: roi_align(f, boxes, output_size, **kwargs))
  out, vjp = jax.vjp(pool, jnp.asarray(features))
  got = np.asarray(out)[image, slot].transpose(0, 3, 1, 2)
  np.testing.assert_allclose(got, data[p + 'expected'], rtol=1e-5, atol=1e-5)
  # Padding slots get a zero cotangent; real slots torchvision's.
  cotangent = np.zeros(out.shape, np.float32)
  cotangent[image, slot] = data[p + 'cotangent'].transpose(0, 2, 3, 1)
  (grad,) = vjp(jnp.asarray(cotangent))
  np.testing.assert_allclose(np.asarray(grad).transpose(0, 3, 1, 2), data[p + 'grad_features'],
                             rtol=1e-5, atol=1e-5)


def _random_boxes(rng, shape, extent, min_size=0.0, max_size=None):
  max_size = max_size or extent
  xy = rng.uniform(-0.2 * extent, extent, shape + (2,))
  wh = rng.uniform(min_size, max_size, shape + (2,))
  return np.concatenate([xy, xy + wh], -1).astype(np.float32)


@pytest.mark.parametrize('sampling_ratio,aligned,max_ratio', [
    (0, True, 3),  # adaptive with grids both below and above max_sampling_ratio
    (-1, False, 2),
    (5, True, 8),  # a fixed ratio beyond the unrolled kernel
    (2, False, 8),
])
def test_matches_float64_reference_on_random_boxes(sampling_ratio, aligned, max_ratio):
  rng = np.random.default_rng(abs(sampling_ratio) + 10 * aligned)
  features = rng.normal(size=(2, 11, 14, 3)).astype(np.float32)
  boxes = _random_boxes(rng, (2, 9), 28.0, max_size=30.0)
  boxes[0, 0] = [4.0, 4.0, 4.0, 4.0]  # zero size
  boxes[1, 0] = [20.0, 20.0, 10.0, 12.0]  # inverted
  kwargs = dict(spatial_scale=0.5, sampling_ratio=sampling_ratio, aligned=aligned)
  got = roi_align(features, boxes, (3, 4), max_sampling_ratio=max_ratio, **kwargs)
  want = _reference_roi_align(features, boxes, (3, 4), max_sampling_ratio=max_ratio, **kwargs)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('sampling_ratio', [2, 0])
def test_feature_gradients_pass_check_grads(sampling_ratio):
  rng = np.random.default_rng(0)
  features = rng.normal(size=(2, 6, 7, 2))
  boxes = _random_boxes(rng, (2, 3), 12.0, min_size=1.0, max_size=10.0)
  pool = lambda f: roi_align(f, boxes, 2, spatial_scale=0.5, sampling_ratio=sampling_ratio)
  check_grads(pool, (features,), order=2, modes=['rev'], atol=1e-2, rtol=1e-2)


def test_gradient_is_the_transpose_of_the_forward():
  # <roi_align(f), g> == <f, vjp(g)> for random f, g, including the adaptive path.
  rng = np.random.default_rng(1)
  features = rng.normal(size=(2, 9, 10, 4)).astype(np.float32)
  boxes = _random_boxes(rng, (2, 6), 20.0, max_size=25.0)
  for ratio in (3, 0):
    pool = lambda f: roi_align(f, boxes, 3, spatial_scale=0.5, sampling_ratio=ratio)
    out, vjp = jax.vjp(pool, jnp.asarray(features))
    g = rng.normal(size=out.shape).astype(np.float32)
    lhs = np.sum(np.asarray(out, np.float64) * g)
    rhs = np.sum(np.asarray(vjp(jnp.asarray(g))[0], np.float64) * features)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5)


def test_boxes_get_zero_gradient_and_features_any_dtype():
  features = jnp.ones((1, 5, 5, 2), jnp.bfloat16)
  boxes = jnp.array([[[0.0, 0.0, 4.0, 4.0]]])
  out = roi_align(features, boxes, 2)
  assert out.dtype == jnp.bfloat16 and out.shape == (1, 1, 2, 2, 2)
  np.testing.assert_allclose(np.asarray(out, np.float32), 1.0)
  grad = jax.grad(lambda b: roi_align(features, b, 2).astype(jnp.float32).sum())(boxes)
  np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize('sampling_ratio', [2, 0])
def test_vmap_and_jit_equal_per_example_calls(sampling_ratio):
  rng = np.random.default_rng(2)
  features = rng.normal(size=(3, 2, 8, 9, 3)).astype(np.float32)
  boxes = _random_boxes(rng, (3, 2, 4), 16.0, max_size=20.0)
  pool = lambda f, b: roi_align(f, b, (2, 3), spatial_scale=0.5,
                                    sampling_ratio=sampling_ratio)
  batched = jax.jit(jax.vmap(pool))(features, boxes)
  grad = jax.jit(jax.vmap(jax.grad(lambda f, b: jnp.sum(pool(f, b)**2))))(features, boxes)
  for i in range(3):
    np.testing.assert_allclose(batched[i], pool(features[i], boxes[i]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad[i], jax.grad(lambda f: jnp.sum(pool(f, boxes[i])**2))(
        features[i]), rtol=1e-5, atol=1e-5)


def test_no_boxes():
  out = roi_align(jnp.zeros((2, 4, 4, 3)), jnp.zeros((2, 0, 4)), 7)
  assert out.shape == (2, 0, 7, 7, 3)


def test_fpn_level_assignment_follows_the_formula():
  sizes = np.array([10.0, 111.9, 112.0, 223.9, 224.0, 447.0, 448.0, 2000.0], np.float32)
  boxes = np.stack([np.zeros_like(sizes), np.zeros_like(sizes), sizes, sizes], -1)
  levels = np.asarray(ops.assign_fpn_levels(boxes, min_level=2, max_level=5))
  want = np.clip(np.floor(4 + np.log2(sizes / 224.0 + 1e-8)), 2, 5)
  np.testing.assert_array_equal(levels, want)
  assert list(levels) == [2, 2, 3, 3, 4, 4, 5, 5]


@pytest.mark.parametrize('sampling_ratio', [2, 0])
def test_multilevel_pools_each_box_from_its_own_level(sampling_ratio):
  rng = np.random.default_rng(3)
  image = (64, 96)
  levels = range(2, 6)
  features = [rng.normal(size=(2, image[0] >> l, image[1] >> l, 3)).astype(np.float32)
              for l in levels]
  boxes = _random_boxes(rng, (2, 12), 60.0, min_size=2.0, max_size=90.0)
  pooled = multilevel_roi_align(features, boxes, 3, min_level=2, max_level=5,
                                    canonical_box_size=32.0, sampling_ratio=sampling_ratio)
  assigned = np.asarray(ops.assign_fpn_levels(boxes, min_level=2, max_level=5,
                                              canonical_box_size=32.0))
  assert len(np.unique(assigned)) >= 3  # the case exercises several levels
  for level, f in zip(levels, features):
    single = roi_align(f, boxes, 3, spatial_scale=2.0**-level, sampling_ratio=sampling_ratio)
    mask = assigned == level
    np.testing.assert_allclose(np.asarray(pooled)[mask], np.asarray(single)[mask], rtol=1e-6,
                               atol=1e-6)
  # The gradient is the forward's transpose: <ML(f), g> == sum_l <f_l, vjp(g)_l>.
  out, vjp = jax.vjp(lambda fs: multilevel_roi_align(
      fs, boxes, 3, min_level=2, max_level=5, canonical_box_size=32.0,
      sampling_ratio=sampling_ratio), [jnp.asarray(f) for f in features])
  g = rng.normal(size=out.shape).astype(np.float32)
  (grads,) = vjp(jnp.asarray(g))
  lhs = np.sum(np.asarray(out, np.float64) * g)
  rhs = sum(np.sum(np.asarray(d, np.float64) * f) for d, f in zip(grads, features))
  np.testing.assert_allclose(lhs, rhs, rtol=1e-5)


def _torch():
  torch = pytest.importorskip('torch')
  torchvision = pytest.importorskip('torchvision')
  return torch, torchvision


@pytest.mark.parametrize('sampling_ratio,aligned', [(2, True), (0, True), (3, False), (0, False)])
def test_random_parity_with_live_torchvision(sampling_ratio, aligned):
  torch, torchvision = _torch()
  rng = np.random.default_rng(sampling_ratio + 7 * aligned)
  features = rng.normal(size=(2, 17, 23, 6)).astype(np.float32)
  boxes = _random_boxes(rng, (2, 20), 90.0, max_size=80.0)
  rois = np.concatenate([np.repeat(np.arange(2.0), 20)[:, None], boxes.reshape(-1, 4)], 1)
  f_torch = torch.tensor(features.transpose(0, 3, 1, 2), dtype=torch.float64,
                         requires_grad=True)
  want = torchvision.ops.roi_align(f_torch, torch.tensor(rois, dtype=torch.float64), (5, 4),
                                   0.25, sampling_ratio, aligned)
  cot = rng.normal(size=want.shape)
  want.backward(torch.tensor(cot))
  pool = lambda f: roi_align(f, boxes, (5, 4), spatial_scale=0.25,
                                 sampling_ratio=sampling_ratio, aligned=aligned,
                                 max_sampling_ratio=16)
  out, vjp = jax.vjp(pool, jnp.asarray(features))
  np.testing.assert_allclose(np.asarray(out).reshape(40, 5, 4, 6),
                             want.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
  (grad,) = vjp(jnp.asarray(cot.transpose(0, 2, 3, 1).reshape(out.shape), jnp.float32))
  np.testing.assert_allclose(np.asarray(grad), f_torch.grad.numpy().transpose(0, 2, 3, 1),
                             rtol=1e-5, atol=1e-5)


def test_multilevel_parity_with_live_torchvision_pooler():
  torch, torchvision = _torch()
  from torchvision.ops import MultiScaleRoIAlign  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(4)
  image = (128, 160)
  features = [rng.normal(size=(2, image[0] >> l, image[1] >> l, 4)).astype(np.float32)
              for l in range(2, 6)]
  boxes = _random_boxes(rng, (2, 30), 120.0, min_size=4.0, max_size=150.0)
  pooler = MultiScaleRoIAlign(['p2', 'p3', 'p4', 'p5'], 7, 2)  # aligned=False inside
  want = pooler({f'p{l + 2}': torch.tensor(f.transpose(0, 3, 1, 2))
                 for l, f in enumerate(features)},
                [torch.tensor(b) for b in boxes], [image, image])
  got = multilevel_roi_align(features, boxes, 7, min_level=2, max_level=5,
                                 sampling_ratio=2, aligned=False)
  np.testing.assert_allclose(np.asarray(got).reshape(60, 7, 7, 4),
                             want.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
