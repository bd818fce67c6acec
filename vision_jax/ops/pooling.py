"""RoIAlign, single- and multi-level, hand-written and vectorized; exact to torchvision.

Semantics follow `torchvision.ops.roi_align` (and detectron2's ROIAlign / ROIAlignV2):

* a box (x1, y1, x2, y2) in input-image pixels maps to feature coordinates
  `x * spatial_scale - offset`, with `offset = 0.5` when `aligned` (the half-pixel shift
  of ROIAlignV2) and 0 otherwise; without `aligned` the roi width/height is clamped to
  >= 1 feature pixel;
* the roi is split into `output_size` bins; each bin averages a `grid_h x grid_w` grid of
  bilinear samples at `start + bin * (p + (i + 0.5) / grid)`;
* `sampling_ratio > 0` fixes the grid; `sampling_ratio <= 0` is torchvision's adaptive
  grid `ceil(roi_size / output_size)` per box and axis (computed exactly for grids up to
  `max_sampling_ratio`; larger grids are clamped to it, the one deviation);
* a sample with y outside [-1, H] or x outside [-1, W] contributes zero; other samples
  are clamped into the map (coordinates < 0 to 0, the last row/column repeats);
* the bin value is the sum of its samples divided by `grid_h * grid_w`.

How it runs
-----------
Two kernels, picked by `vision_jax.ops.backend` at trace time, compute the same values
(up to float summation order in the gradient): 'cpu' (XLA:CPU) works through the boxes in
chunks, as described below, to keep its working set in cache and to skip work per level;
'plain' (GPU / TPU) treats the pyramid as one concatenated table and does every box at
once: one fused gather expression forward and one scatter-add backward (for adaptive /
large ratios, one loop over the used slots, each step covering all boxes).

Features are viewed channels-last as tables of rows `[N * H * W, C]` (one per level), so
every bilinear corner is one gather of a contiguous C-vector at a precomputed flat index,
weighted by a precomputed scalar. The weights are separable (a corner's weight is
`w_y * w_x`; the validity mask and the `1 / grid` normalisation factor the same way), so a
box stores per axis only `[out, S]` row (column) indices and weights, its "slots": the
two neighbours of each sample, or, when samples are at most a pixel apart (always for the
adaptive grid), the `grid + 1` consecutive rows they touch with summed weights.

* Forward, fixed `sampling_ratio <= 4`: the `S_y x S_x` weighted gathers of a bin (16 for
  ratio 2) are unrolled into one expression over `[boxes, out_h, out_w, C]`; XLA fuses the
  gathers and the weighted sum into a single loop, so the corners are never materialized.
* Forward otherwise (adaptive grids, larger ratios): boxes are sorted by slot count and
  processed in chunks, each looping over the slots its boxes use (dynamic trip counts), so
  cost follows the grids actually needed, not `max_sampling_ratio`.
* Multi-level ('cpu'): boxes are grouped by level; each level's chunks gather only from
  that level's table (dynamic chunk ranges), so there is no concatenated copy of the
  pyramid and no box is pooled on a level other than its own. ('plain': the level tables
  are concatenated and each box's base row points into its level's part.)
* Backward (`jax.custom_vjp`): the transpose of a gather is a scatter-add. On 'cpu',
  chunks of 16 boxes are scattered one after another into each level's gradient, so a
  chunk's weighted updates (slots x C per bin) stay in cache instead of materializing for
  all boxes at once (measured on XLA:CPU: materializing them costs more than the scatter
  itself). On 'plain' all boxes' updates go into one scatter-add (one parallel op on
  GPU / TPU instead of a serial loop). The scatter and the gather are each other's VJPs,
  so gradients of any order stay exact.

Gradients flow to the features exactly; boxes get a zero gradient (as in torchvision,
where rois are not differentiated). Forward-mode differentiation (jvp) is not provided.
"""
import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.ops import backend

# Fixed sampling ratios up to this value use the fully unrolled forward.
_MAX_UNROLLED_SAMPLING_RATIO = 4
# Boxes per chunk in the looped forward and in the backward scatter.
_FORWARD_CHUNK = 64
_BACKWARD_CHUNK = 16
# x slots per loop iteration of the looped (adaptive / large ratio) kernels.
_X_BLOCK = 4


class _AxisPlan(NamedTuple):
  """Bilinear sampling of every bin along one axis, as weighted rows (or columns).

  A bin's value along this axis is `sum_s weight[b, p, s] * feature[index[b, p, s]]` over
  its first `count[b]` slots (later slots have zero weight). The weights include the
  bilinear factors, the validity mask and the `1 / grid` normalisation. With `S = 2 * G`
  slots (G the static grid) there is room for both forms used:

  * corners: slots `[lo_0 .. lo_{G-1}, hi_0 .. hi_{G-1}]`, the two neighbours of each
    sample, count `2 * grid`;
  * window: when samples are at most one pixel apart (always true for the adaptive grid),
    the bin touches only the `grid + 1` consecutive rows from the first sample's lower
    neighbour; slot t is row `r0 + t` with the summed weight of all samples on it.
    This needs `grid + 1` instead of `2 * grid` gathers per axis.
  """
  index: jax.Array  # [B, out, S] int32 rows/columns, inside the map
  weight: jax.Array  # [B, out, S] float32
  count: jax.Array  # [B] int32, number of leading slots that may be non-zero


class _Plan(NamedTuple):
  """Everything the gather kernel needs; no dependence on the feature values."""
  base: jax.Array  # [B] int32, flat table row of pixel (0, 0) of the box's image/level
  width: jax.Array  # [B] int32, row stride (feature width) of the box's map
  y: _AxisPlan
  x: _AxisPlan


def _axis_plan(start, length, size, out, sampling_ratio, max_grid):
  """Sample rows (or columns) and weights along one axis, as torchvision computes them.

  Args:
    start: [B] float32 roi start in feature pixels (scale and offset applied).
    length: [B] float32 roi length in feature pixels (clamped for non-aligned).
    size: [B] int32 or int, feature map extent along this axis.
    out: static number of output bins along this axis.
    sampling_ratio: static; > 0 fixed grid, <= 0 adaptive.
    max_grid: static grid size bound for the adaptive case.

  Returns:
    An `_AxisPlan` with `2 * G` slots, G the fixed ratio or `max_grid`.
  """
  bin_size = length / out
  if sampling_ratio > 0:
    grid_size = sampling_ratio
    grid = jnp.full(start.shape, sampling_ratio, jnp.int32)
  else:
    grid_size = max_grid
    grid = jnp.clip(jnp.ceil(length / out), 0, max_grid).astype(jnp.int32)
  grid_f = jnp.maximum(grid, 1).astype(jnp.float32)
  size = jnp.broadcast_to(jnp.asarray(size, jnp.int32), start.shape)
  size_f = size.astype(jnp.float32)[:, None, None]
  last = (size - 1)[:, None, None]
  p = jnp.arange(out, dtype=jnp.float32)[None, :, None]
  i = jnp.arange(grid_size, dtype=jnp.float32)[None, None, :]
  bin3 = bin_size[:, None, None]
  # Same association as torchvision: start + p * bin + (i + .5) * bin / grid.
  raw = start[:, None, None] + p * bin3 + (i + 0.5) * bin3 / grid_f[:, None, None]
  valid = (raw >= -1.0) & (raw <= size_f) & (i < grid[:, None, None])
  pos = jnp.where(valid, jnp.clip(raw, 0.0, size_f), 0.0)
  lo = jnp.floor(pos).astype(jnp.int32)
  at_edge = lo >= last
  lo = jnp.where(at_edge, last, lo)
  hi = jnp.where(at_edge, last, lo + 1)
  frac = jnp.where(at_edge, 0.0, pos - lo.astype(jnp.float32))
  norm = jnp.where(valid, 1.0 / grid_f[:, None, None], 0.0)
  w_lo, w_hi = (1.0 - frac) * norm, frac * norm

  corner_index = jnp.concatenate([lo, hi], -1)
  corner_weight = jnp.concatenate([w_lo, w_hi], -1)
  # Window form: samples ascending and at most one pixel apart, so every used row is in
  # [r0, r0 + grid] with r0 the first sample's lower neighbour.
  first = raw[..., :1]
  r0 = jnp.floor(jnp.where(first > 0.0, jnp.minimum(first, size_f - 1.0), 0.0))
  r0 = r0.astype(jnp.int32)  # [B, out, 1]
  t = jnp.arange(2 * grid_size, dtype=jnp.int32)
  slot_lo = (lo - r0)[..., None] == t  # [B, out, G, S]
  slot_hi = (hi - r0)[..., None] == t
  window_weight = (jnp.sum(jnp.where(slot_lo, w_lo[..., None], 0.0), axis=-2)
                   + jnp.sum(jnp.where(slot_hi, w_hi[..., None], 0.0), axis=-2))
  window_index = jnp.minimum(r0 + t, last)
  is_window = ((bin_size >= 0.0) & (bin_size <= grid_f))[:, None, None]
  index = jnp.where(is_window, window_index, corner_index)
  weight = jnp.where(is_window, window_weight, corner_weight)
  count = jnp.where(is_window[:, 0, 0], grid + 1, 2 * grid)
  count = jnp.where(grid > 0, count, 0)
  return _AxisPlan(index, weight, count)


def _plan(boxes, base, height, width, scale, output_size, sampling_ratio, aligned,
          max_sampling_ratio):
  """Builds the `_Plan` of [B, 4] boxes; height/width/scale/base are [B] or scalars."""
  boxes = jax.lax.stop_gradient(boxes.astype(jnp.float32))
  offset = 0.5 if aligned else 0.0
  scaled = boxes * jnp.asarray(scale, jnp.float32)[..., None] - offset
  x1, y1, x2, y2 = (scaled[:, i] for i in range(4))
  roi_w, roi_h = x2 - x1, y2 - y1
  if not aligned:
    roi_w, roi_h = jnp.maximum(roi_w, 1.0), jnp.maximum(roi_h, 1.0)
  out_h, out_w = output_size
  y = _axis_plan(y1, roi_h, height, out_h, sampling_ratio, max_sampling_ratio)
  x = _axis_plan(x1, roi_w, width, out_w, sampling_ratio, max_sampling_ratio)
  num = boxes.shape[0]
  base = jnp.broadcast_to(jnp.asarray(base, jnp.int32), (num,))
  width = jnp.broadcast_to(jnp.asarray(width, jnp.int32), (num,))
  return _Plan(base, width, y, x)


def _rows(plan):
  """Flat table offsets of the y slots: [B, oh, S] int32."""
  return plan.base[:, None, None] + plan.y.index * plan.width[:, None, None]


def _slot_gather(table, rows, cols, wy, wx):
  """`wy * wx * table[rows + cols]` for one (y, x) slot of every bin: [B, oh, ow, C]."""
  index = rows[:, :, None] + cols[:, None, :]
  weight = wy[:, :, None] * wx[:, None, :]
  return weight[..., None] * table[index].astype(jnp.float32)


def _take(a, i):
  return jax.lax.dynamic_index_in_dim(a, i, axis=a.ndim - 1, keepdims=False)


class _Layout(NamedTuple):
  """Boxes in processing order: grouped by level (then by cost), padded with empty boxes.

  Level `l`'s boxes are positions [start[l], end[l]); they only index table `l`.
  """
  plan: _Plan  # [P] boxes
  level: jax.Array  # [P] int32, the box's level; num_levels on padding
  start: jax.Array  # [L] int32
  end: jax.Array  # [L] int32


def _padded_size(num):
  """Box count padded to whole chunks (of 16 up to one forward chunk, else of 64)."""
  multiple = _BACKWARD_CHUNK if num <= _FORWARD_CHUNK else _FORWARD_CHUNK
  return -(-num // multiple) * multiple


def _layout(plan, level, num_levels, sort_by_cost):
  """Orders (if needed) and pads the boxes; returns the layout and the order (or None)."""
  num = level.shape[0]
  order = None
  if num_levels > 1 or sort_by_cost:
    key = level
    if sort_by_cost:
      # Boxes of similar cost share a chunk, so chunks loop about as long as their boxes need.
      cost = plan.y.count * plan.x.count
      key = level * (plan.y.index.shape[-1] * plan.x.index.shape[-1] + 1) + cost
    order = jnp.argsort(key, stable=True)
    plan = jax.tree.map(lambda a: a[order], plan)
    level = level[order]
  counts = jnp.sum(level[:, None] == jnp.arange(num_levels), axis=0).astype(jnp.int32)
  end = jnp.cumsum(counts).astype(jnp.int32)
  pad = _padded_size(num) - num
  plan = jax.tree.map(lambda a: jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)), plan)
  level = jnp.pad(level, (0, pad), constant_values=num_levels)
  return _Layout(plan, level, end - counts, end), order


def _chunk(tree, c, size):
  return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, c * size, size, axis=0), tree)


def _restrict(plan, mine):
  """Empties the boxes of `plan` that are not `mine` (other levels): zero weights, row 0."""
  m2 = mine[:, None, None]
  axis = lambda p: _AxisPlan(jnp.where(m2, p.index, 0), jnp.where(m2, p.weight, 0.0),
                             jnp.where(mine, p.count, 0))
  return _Plan(jnp.where(mine, plan.base, 0), jnp.where(mine, plan.width, 0), axis(plan.y),
               axis(plan.x))


def _level_chunks(layout, level, size):
  """Dynamic [first, last) chunk range (chunks of `size`) holding level `level`'s boxes."""
  return layout.start[level] // size, (layout.end[level] + size - 1) // size


def _forward_unrolled(table, plan):
  """Every (y slot, x slot) pair of a bin in one fused expression (fixed small ratios)."""
  rows, cols = _rows(plan), plan.x.index
  acc = None
  for a in range(rows.shape[-1]):
    for b in range(cols.shape[-1]):
      term = _slot_gather(table, rows[..., a], cols[..., b], plan.y.weight[..., a],
                          plan.x.weight[..., b])
      acc = term if acc is None else acc + term
  return acc


def _padded_x(plan):
  """x slot indices and weights padded with empty slots to whole blocks of _X_BLOCK."""
  pad = -plan.x.index.shape[-1] % _X_BLOCK
  return (jnp.pad(plan.x.index, ((0, 0), (0, 0), (0, pad))),
          jnp.pad(plan.x.weight, ((0, 0), (0, 0), (0, pad))))


def _block_loops(plan, body, init):
  """Runs `body(a, cols, wx, carry)` for every used y slot a and block of x slots."""
  x_index, x_weight = _padded_x(plan)

  def block(a, j, carry):
    cols = jax.lax.dynamic_slice_in_dim(x_index, j * _X_BLOCK, _X_BLOCK, axis=2)
    wx = jax.lax.dynamic_slice_in_dim(x_weight, j * _X_BLOCK, _X_BLOCK, axis=2)
    return body(a, cols, wx, carry)

  def y_slot(a, carry):
    blocks = (jnp.max(plan.x.count) + _X_BLOCK - 1) // _X_BLOCK
    return jax.lax.fori_loop(0, blocks, functools.partial(block, a), carry)

  return jax.lax.fori_loop(0, jnp.max(plan.y.count), y_slot, init)


def _forward_slots(table, plan):
  """The used slots of a chunk of boxes: a y slot and a block of x slots per iteration."""
  rows = _rows(plan)

  def body(a, cols, wx, acc):
    for b in range(_X_BLOCK):
      acc = acc + _slot_gather(table, _take(rows, a), cols[..., b], _take(plan.y.weight, a),
                               wx[..., b])
    return acc

  num, oh, ow = plan.y.index.shape[0], plan.y.index.shape[1], plan.x.index.shape[1]
  return _block_loops(plan, body, jnp.zeros((num, oh, ow, table.shape[-1]), jnp.float32))


def _forward(tables, layout, unrolled, chunked):
  """Pools every box of `layout` from its level's [R_l, C] table: [P, oh, ow, C] float32.

  Without `chunked` there is one table and all boxes are pooled at once.
  """
  plan = layout.plan
  num, oh, ow = plan.y.index.shape[0], plan.y.index.shape[1], plan.x.index.shape[1]
  if not chunked:
    (table,) = tables
    return _forward_unrolled(table, plan) if unrolled else _forward_slots(table, plan)
  if unrolled and len(tables) == 1:
    return _forward_unrolled(tables[0], plan)  # all boxes in one fused loop
  size = min(_FORWARD_CHUNK, num)
  out = jnp.zeros((num, oh, ow, tables[0].shape[-1]), jnp.float32)
  for level, table in enumerate(tables):

    def one_chunk(c, out, level=level, table=table):
      p = _restrict(_chunk(plan, c, size), _chunk(layout.level, c, size) == level)
      part = _forward_unrolled(table, p) if unrolled else _forward_slots(table, p)
      start = c * size
      done = jax.lax.dynamic_slice_in_dim(out, start, size, axis=0)
      return jax.lax.dynamic_update_slice_in_dim(out, done + part, start, axis=0)

    out = jax.lax.fori_loop(*_level_chunks(layout, level, size), one_chunk, out)
  return out


def _scatter_boxes(grad, plan, cotangent, unrolled):
  """Adds the weighted cotangents [b, oh, ow, C] of `plan`'s b boxes into grad [R, C]."""
  channels = grad.shape[-1]

  def scatter(grad, index, weight):
    # index, weight: [b, oh, ow, slots]; cotangent: [b, oh, ow, C].
    updates = weight[..., None] * cotangent[:, :, :, None, :]
    return grad.at[index.reshape(-1)].add(updates.reshape(-1, channels),
                                          mode='promise_in_bounds')

  rows = _rows(plan)
  if unrolled:
    index = rows[:, :, None, :, None] + plan.x.index[:, None, :, None, :]
    weight = plan.y.weight[:, :, None, :, None] * plan.x.weight[:, None, :, None, :]
    b, oh, ow = cotangent.shape[:3]
    return scatter(grad, index.reshape(b, oh, ow, -1), weight.reshape(b, oh, ow, -1))

  def body(a, cols, wx, grad):
    index = _take(rows, a)[:, :, None, None] + cols[:, None, :, :]
    weight = _take(plan.y.weight, a)[:, :, None, None] * wx[:, None, :, :]
    return scatter(grad, index, weight)

  return _block_loops(plan, body, grad)


def _backward(table_shapes, layout, unrolled, chunked, cotangent):
  """Scatter-adds weighted cotangents [P, oh, ow, C] into zero [R_l, C] tables (float32).

  `chunked` ('cpu'): chunks of boxes are scattered one after another so that the weighted
  updates of a chunk (slots x C per bin) stay in cache instead of being materialized for
  all boxes at once. Otherwise (one table): all boxes in one scatter-add (per used slot
  block for the looped kernels).
  """
  plan = layout.plan
  cotangent = cotangent.astype(jnp.float32)
  if not chunked:
    (shape,) = table_shapes
    return (_scatter_boxes(jnp.zeros(shape, jnp.float32), plan, cotangent, unrolled),)
  num = plan.y.index.shape[0]
  size = min(_BACKWARD_CHUNK, num)
  grads = []
  for level, shape in enumerate(table_shapes):

    def one_chunk(c, grad, level=level):
      p = _restrict(_chunk(plan, c, size), _chunk(layout.level, c, size) == level)
      return _scatter_boxes(grad, p, _chunk(cotangent, c, size), unrolled)

    grad = jnp.zeros(shape, jnp.float32)
    grads.append(jax.lax.fori_loop(*_level_chunks(layout, level, size), one_chunk, grad))
  return tuple(grads)


def _zero_cotangent(x):
  if jnp.issubdtype(x.dtype, jnp.floating):
    return jnp.zeros_like(x)
  return np.zeros(x.shape, jax.dtypes.float0)


# `_pool` (gather) and `_pool_transpose` (scatter-add) are linear in the features and
# in the cotangent respectively and are each other's transposes; defining each one's VJP
# as the other makes gradients of any order exact and cheap.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _pool(tables, layout, unrolled, chunked):
  """Tuple of [R_l, C] tables, layout of P boxes -> [P, oh, ow, C] float32."""
  return _forward(tables, layout, unrolled, chunked)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _pool_transpose(cotangent, layout, unrolled, chunked, table_shapes):
  """[P, oh, ow, C] cotangent -> tuple of [R_l, C] float32 gradient tables."""
  return _backward(table_shapes, layout, unrolled, chunked, cotangent)


def _pool_fwd(tables, layout, unrolled, chunked):
  # Zero-size arrays carry the tables' static shapes and dtypes to the backward pass.
  likes = tuple(jnp.zeros((0,) + t.shape, t.dtype) for t in tables)
  return _pool(tables, layout, unrolled, chunked), (layout, likes)


def _pool_bwd(unrolled, chunked, residuals, cotangent):
  layout, likes = residuals
  shapes = tuple(like.shape[1:] for like in likes)
  grads = _pool_transpose(cotangent.astype(jnp.float32), layout, unrolled, chunked, shapes)
  grads = tuple(g.astype(like.dtype) for g, like in zip(grads, likes))
  return grads, jax.tree.map(_zero_cotangent, layout)


def _pool_transpose_fwd(cotangent, layout, unrolled, chunked, table_shapes):
  cot_like = jnp.zeros((0,) + cotangent.shape, cotangent.dtype)
  return (_pool_transpose(cotangent, layout, unrolled, chunked, table_shapes),
          (layout, cot_like))


def _pool_transpose_bwd(unrolled, chunked, table_shapes, residuals, grads):
  del table_shapes
  layout, cot_like = residuals
  out = _pool(tuple(g.astype(jnp.float32) for g in grads), layout, unrolled, chunked)
  return out.astype(cot_like.dtype), jax.tree.map(_zero_cotangent, layout)


_pool.defvjp(_pool_fwd, _pool_bwd)
_pool_transpose.defvjp(_pool_transpose_fwd, _pool_transpose_bwd)


def _run(tables, plan, level, sampling_ratio):
  """Pools box b of `plan` from `tables[level[b]]`: [B, oh, ow, C] float32.

  'cpu' kernels: boxes grouped by level (and by cost for the looped kernels) into
  chunks. 'plain': the tables concatenated into one, every box at once, in input order.
  """
  num = level.shape[0]
  unrolled = 0 < sampling_ratio <= _MAX_UNROLLED_SAMPLING_RATIO
  if not backend.cpu_tuned():
    if len(tables) > 1:
      offsets = np.cumsum([0] + [t.shape[0] for t in tables[:-1]]).astype(np.int32)
      plan = plan._replace(base=plan.base + jnp.asarray(offsets)[level])
    table = jnp.concatenate(tables) if len(tables) > 1 else tables[0]
    zero = jnp.zeros((1,), jnp.int32)
    layout = _Layout(plan, jnp.zeros_like(level), zero, zero + num)
    return _pool((table,), layout, unrolled, False)
  layout, order = _layout(plan, level, len(tables), sort_by_cost=not unrolled)
  out = _pool(tuple(tables), layout, unrolled, True)[:num]
  if order is None:
    return out
  inverse = jnp.zeros_like(order).at[order].set(jnp.arange(num, dtype=order.dtype))
  return out[inverse]


def _check_sampling(sampling_ratio, max_sampling_ratio):
  if sampling_ratio <= 0 and max_sampling_ratio < 1:
    raise ValueError(f'max_sampling_ratio must be >= 1, got {max_sampling_ratio}')


def _output_hw(output_size):
  if isinstance(output_size, int):
    return output_size, output_size
  out_h, out_w = output_size
  return int(out_h), int(out_w)


def roi_align(features: jax.Array, boxes: jax.Array, output_size, *,
              spatial_scale: float = 1.0, sampling_ratio: int = 2, aligned: bool = True,
              max_sampling_ratio: int = 8) -> jax.Array:
  """RoIAlign of per-image padded boxes, exactly torchvision.ops.roi_align.

  Args:
    features: [N, H, W, C] float (NHWC).
    boxes: [N, K, 4] float32, (x1, y1, x2, y2) in input-image pixels, K boxes per image
      (pad with any box; padded outputs are simply ignored by the caller).
    output_size: int or (out_h, out_w), static.
    spatial_scale: feature pixels per input pixel (1 / stride), static.
    sampling_ratio: samples per bin along each axis; <= 0 for the adaptive
      `ceil(roi_size / output_size)` grid per box, static.
    aligned: half-pixel offset (ROIAlignV2), static.
    max_sampling_ratio: static bound of the adaptive grid (exact below it, clamped above).

  Returns:
    [N, K, out_h, out_w, C] in the dtype of `features` (accumulated in float32).
  """
  _check_sampling(sampling_ratio, max_sampling_ratio)
  features, boxes = jnp.asarray(features), jnp.asarray(boxes)
  n, h, w, c = features.shape
  k = boxes.shape[1]
  out_h, out_w = _output_hw(output_size)
  if n * k == 0:
    return jnp.zeros((n, k, out_h, out_w, c), features.dtype)
  base = jnp.repeat(jnp.arange(n, dtype=jnp.int32) * (h * w), k)
  plan = _plan(boxes.reshape(n * k, 4), base, h, w, spatial_scale, (out_h, out_w),
               sampling_ratio, aligned, max_sampling_ratio)
  out = _run([features.reshape(n * h * w, c)], plan, jnp.zeros((n * k,), jnp.int32),
             sampling_ratio)
  return out.reshape(n, k, out_h, out_w, c).astype(features.dtype)


def assign_fpn_levels(boxes: jax.Array, *, min_level: int, max_level: int,
                      canonical_level: int = 4, canonical_box_size: float = 224.0) -> jax.Array:
  """FPN level of each box, as detectron2's `assign_boxes_to_levels` / torchvision's mapper.

  `floor(canonical_level + log2(sqrt(area) / canonical_box_size + 1e-8))` clamped to
  [min_level, max_level] (eq. 1 of the FPN paper).

  Args:
    boxes: [..., 4] float32 (x1, y1, x2, y2) in input-image pixels.

  Returns:
    [...] int32 levels (absolute, e.g. 2..5 for P2..P5).
  """
  area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
  size = jnp.sqrt(jnp.maximum(area, 0.0))
  level = jnp.floor(canonical_level + jnp.log2(size / canonical_box_size + 1e-8))
  return jnp.clip(level, min_level, max_level).astype(jnp.int32)


def multilevel_roi_align(features_by_level: Sequence[jax.Array], boxes: jax.Array,
                         output_size, *, min_level: int, max_level: int,
                         canonical_level: int = 4, canonical_box_size: float = 224.0,
                         sampling_ratio: int = 2, aligned: bool = True,
                         max_sampling_ratio: int = 8) -> jax.Array:
  """FPN RoIAlign: every box is pooled from its own level only.

  Level `l` has stride `2**l` (spatial scale `2**-l`). Boxes are grouped by level and each
  group gathers only from its own map, so the work is that of one RoIAlign over all
  boxes, not one per level, and the pyramid is never copied.

  Args:
    features_by_level: `max_level - min_level + 1` arrays [N, H_l, W_l, C], finest first
      (P{min_level} .. P{max_level}), NHWC, same N, C and dtype.
    boxes: [N, K, 4] float32, (x1, y1, x2, y2) in input-image pixels.
    output_size: int or (out_h, out_w), static.
    min_level, max_level: the levels of the first and last feature map.
    canonical_level, canonical_box_size: level assignment, see `assign_fpn_levels`.
    sampling_ratio, aligned, max_sampling_ratio: as in `roi_align`.

  Returns:
    [N, K, out_h, out_w, C] in the dtype of the features.
  """
  _check_sampling(sampling_ratio, max_sampling_ratio)
  features_by_level = [jnp.asarray(f) for f in features_by_level]
  boxes = jnp.asarray(boxes)
  num_levels = max_level - min_level + 1
  if len(features_by_level) != num_levels:
    raise ValueError(f'expected {num_levels} feature maps for levels {min_level}..'
                     f'{max_level}, got {len(features_by_level)}')
  n, c = features_by_level[0].shape[0], features_by_level[0].shape[-1]
  k = boxes.shape[1]
  out_h, out_w = _output_hw(output_size)
  dtype = features_by_level[0].dtype
  if n * k == 0:
    return jnp.zeros((n, k, out_h, out_w, c), dtype)
  heights = np.array([f.shape[1] for f in features_by_level], np.int32)
  widths = np.array([f.shape[2] for f in features_by_level], np.int32)
  scales = np.array([2.0**-l for l in range(min_level, max_level + 1)], np.float32)

  boxes = boxes.reshape(n * k, 4)
  level = assign_fpn_levels(boxes, min_level=min_level, max_level=max_level,
                            canonical_level=canonical_level,
                            canonical_box_size=canonical_box_size) - min_level
  image = jnp.repeat(jnp.arange(n, dtype=jnp.int32), k)
  height, width = jnp.asarray(heights)[level], jnp.asarray(widths)[level]
  plan = _plan(boxes, image * height * width, height, width, jnp.asarray(scales)[level],
               (out_h, out_w), sampling_ratio, aligned, max_sampling_ratio)
  tables = [f.reshape(-1, c) for f in features_by_level]
  out = _run(tables, plan, level, sampling_ratio)
  return out.reshape(n, k, out_h, out_w, c).astype(dtype)
