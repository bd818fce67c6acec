"""Multi-level anchor generation, matching detectron2's DefaultAnchorGenerator.

Anchors depend only on static shapes, so they are computed with numpy (in float32, the
same arithmetic as detectron2) and returned as constant jnp arrays.

Order (the contract every head and target assigner relies on): per level, location-major
in row-major order over the feature map (y outer, x inner), then cell anchors, sizes outer
and aspect ratios inner. Level l's anchors are `[H_l * W_l * A_l, 4]` with row
`(y * W_l + x) * A_l + s * len(aspect_ratios) + r`. A head whose NHWC output at level l is
reshaped from `[N, H_l, W_l, A_l * D]` to `[N, H_l * W_l * A_l, D]` lines up with them.
"""
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _per_level(params, num_levels, name):
  """detectron2's broadcasting: one list for all levels, or one list per level."""
  params = [list(p) if isinstance(p, (list, tuple)) else [p] for p in params]
  if len(params) == 1:
    return params * num_levels
  if len(params) != num_levels:
    raise ValueError(f'{name} has {len(params)} entries for {num_levels} levels')
  return params


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
  """Anchors centred at (0, 0): [len(sizes) * len(aspect_ratios), 4] float32 (x1, y1, x2, y2).

  An anchor of size s and aspect ratio r (height / width) has area s^2, width
  sqrt(s^2 / r) and height r * width; sizes outer, aspect ratios inner.
  """
  anchors = []
  for size in sizes:
    area = float(size)**2
    for ratio in aspect_ratios:
      w = math.sqrt(area / ratio)
      h = ratio * w
      anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
  return np.asarray(anchors, np.float32).reshape(-1, 4)


def grid_anchors(grid_size: Sequence[int], stride: float, cells: np.ndarray,
                 offset: float = 0.0) -> np.ndarray:
  """Cell anchors shifted to every location of one feature map.

  Args:
    grid_size: (H_l, W_l) of the feature map.
    stride: input pixels per feature pixel.
    cells: [A, 4] cell anchors (`cell_anchors`).
    offset: location of the anchor centre inside a cell, in [0, 1): 0 puts the first centre
      at pixel (0, 0) (detectron2's default), 0.5 at the cell centre.

  Returns:
    [H_l * W_l * A, 4] float32 anchors (x1, y1, x2, y2) in input pixels, in the module's order.
  """
  height, width = grid_size
  # torch.arange(offset * stride, size * stride, stride) in float32: computed in float64.
  shift_x = (offset * stride + np.arange(width, dtype=np.float64) * stride).astype(np.float32)
  shift_y = (offset * stride + np.arange(height, dtype=np.float64) * stride).astype(np.float32)
  shift_y, shift_x = np.meshgrid(shift_y, shift_x, indexing='ij')
  shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
  shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=1)
  return (shifts[:, None, :] + cells[None, :, :]).reshape(-1, 4).astype(np.float32)


def num_cell_anchors(sizes, aspect_ratios, num_levels: int) -> list[int]:
  """Anchors per location of each level, e.g. [3, 3, 3, 3, 3] for one size and 3 ratios."""
  sizes = _per_level(sizes, num_levels, 'sizes')
  ratios = _per_level(aspect_ratios, num_levels, 'aspect_ratios')
  return [len(s) * len(r) for s, r in zip(sizes, ratios)]


def multilevel_anchors(grid_sizes: Sequence[Sequence[int]], strides: Sequence[float],
                       sizes, aspect_ratios, offset: float = 0.0,
                       round_cells: bool = False) -> list[jax.Array]:
  """Anchors of every level, as detectron2's DefaultAnchorGenerator.

  Args:
    grid_sizes: (H_l, W_l) per level, finest first.
    strides: input pixels per feature pixel, per level.
    sizes: per-level lists of anchor sizes (sqrt of area, input pixels), e.g.
      [[32], [64], [128], [256], [512]]; a single list is used for every level.
    aspect_ratios: height / width ratios, e.g. [[0.5, 1.0, 2.0]]; one list is broadcast.
    offset: anchor centre within a cell, see `grid_anchors`.
    round_cells: round the cell anchors to integers (torchvision's AnchorGenerator).

  Returns:
    One [H_l * W_l * A_l, 4] float32 array per level (x1, y1, x2, y2) in input pixels.
  """
  num_levels = len(grid_sizes)
  if len(strides) != num_levels:
    raise ValueError(f'{len(strides)} strides for {num_levels} levels')
  if not 0.0 <= offset < 1.0:
    raise ValueError(f'offset must be in [0, 1), got {offset}')
  sizes = _per_level(sizes, num_levels, 'sizes')
  ratios = _per_level(aspect_ratios, num_levels, 'aspect_ratios')
  out = []
  for grid, stride, level_sizes, level_ratios in zip(grid_sizes, strides, sizes, ratios):
    cells = cell_anchors(level_sizes, level_ratios)
    if round_cells:
      cells = np.round(cells)
    out.append(jnp.asarray(grid_anchors(grid, stride, cells, offset)))
  return out
