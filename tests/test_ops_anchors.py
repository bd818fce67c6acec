"""Anchors: detectron2's DefaultAnchorGenerator procedure and the documented order."""
import math

import numpy as np
import pytest

from vision_jax import ops


def _reference_level(grid, stride, sizes, ratios, offset):
  """detectron2's procedure spelled out one anchor at a time, in float64."""
  rows = []
  for y in range(grid[0]):
    for x in range(grid[1]):
      cx, cy = (x + offset) * stride, (y + offset) * stride
      for size in sizes:
        for ratio in ratios:
          w = math.sqrt(size * size / ratio)
          h = ratio * w
          rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
  return np.array(rows)


@pytest.mark.parametrize('offset', [0.0, 0.5])
def test_multilevel_anchors_follow_detectron2(offset):
  grids = [(5, 7), (3, 4), (2, 2)]
  strides = [8, 16, 32]
  sizes = [[32.0, 40.3], [64.0], [128.0]]
  ratios = [[0.5, 1.0, 2.0]]  # broadcast to every level
  anchors = ops.multilevel_anchors(grids, strides, sizes, ratios, offset=offset)
  assert ops.num_cell_anchors(sizes, ratios, 3) == [6, 3, 3]
  for level, (grid, stride, size) in enumerate(zip(grids, strides, sizes)):
    got = np.asarray(anchors[level])
    assert got.dtype == np.float32
    assert got.shape == (grid[0] * grid[1] * len(size) * 3, 4)
    np.testing.assert_allclose(got, _reference_level(grid, stride, size, ratios[0], offset),
                               rtol=1e-6, atol=1e-4)


def test_anchor_shapes_and_order():
  (anchors,) = ops.multilevel_anchors([(2, 3)], [10], [[20.0, 40.0]], [[0.5, 2.0]], offset=0.5)
  anchors = np.asarray(anchors).reshape(2, 3, 2, 2, 4)  # y, x, size, ratio
  centers = (anchors[..., :2] + anchors[..., 2:]) / 2
  widths = anchors[..., 2] - anchors[..., 0]
  heights = anchors[..., 3] - anchors[..., 1]
  # Row-major locations with centres at (index + offset) * stride.
  np.testing.assert_allclose(centers[..., 0], np.broadcast_to(
      (np.arange(3) + 0.5)[None, :, None, None] * 10, centers.shape[:-1]), atol=1e-5)
  np.testing.assert_allclose(centers[..., 1], np.broadcast_to(
      (np.arange(2) + 0.5)[:, None, None, None] * 10, centers.shape[:-1]), atol=1e-5)
  # Sizes outer (area = size^2), aspect ratios (h / w) inner.
  np.testing.assert_allclose(np.sqrt(widths * heights)[0, 0], [[20, 20], [40, 40]], rtol=1e-6)
  np.testing.assert_allclose((heights / widths)[0, 0], [[0.5, 2.0], [0.5, 2.0]], rtol=1e-6)


def test_anchor_argument_errors():
  with pytest.raises(ValueError):
    ops.multilevel_anchors([(2, 2), (1, 1)], [8, 16], [[32], [64], [128]], [[1.0]])
  with pytest.raises(ValueError):
    ops.multilevel_anchors([(2, 2)], [8, 16], [[32]], [[1.0]])
  with pytest.raises(ValueError):
    ops.multilevel_anchors([(2, 2)], [8], [[32]], [[1.0]], offset=1.0)
