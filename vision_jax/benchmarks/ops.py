"""Speed of single ops, side by side with torchvision's CPU kernels when torch is importable.

  python -m launch.benchmark --op=roi_align  # also nms, conv3x3, deform_conv2d, corner_pool
  python -c "from vision_jax.benchmarks import ops; print(ops.run('roi_align'))"
  python -c "...; print(ops.run('roi_align', sampling_ratio=0))"   # detectron2's ROIAlignV2

The torchvision columns appear when torch and torchvision import next to jax (e.g. a
separate reference venv with PYTHONPATH pointing at this checkout); otherwise only ours.

`roi_align` times, on an FPN-sized case (2 images, 256 channels, P2..P5 of an 800x1088
input, 512 boxes per image, 7x7 output, sampling ratio 2):

* `roi_align` of every box on P2 (the largest map), aligned, forward and forward+backward
  (the gradient with respect to the features), against `torchvision.ops.roi_align`;
* `multilevel_roi_align` over P2..P5, each box from its FPN level, against torchvision's
  `MultiScaleRoIAlign` on identical inputs (which always uses aligned=False, so this
  comparison does too; our aligned=True time is reported as well);
* the bytes each op must move (read the distinct feature pixels its samples touch, write
  the output; the backward reads the cotangent and writes the dense feature gradient) and
  the time that takes at this machine's measured copy bandwidth (`*_bound_s`), with our
  time as a multiple of it (`*_of_bound`); `*_corner_gathers_MB` is what the kernel
  streams through the caches (every bilinear corner of every sample).

`nms` times greedy NMS of 2000 boxes (RPN-sized) against torchvision.ops.nms, both
computing the full kept list (ours with max_output_size = the number of boxes, so it
cannot stop earlier than torchvision does); it reports both kept counts and whether the
kept lists are identical.
`conv3x3` times a 3x3 256 -> 256 convolution at FPN P2 size, forward and backward, as a
ratio to the matmul rate and against torch's conv2d (the XLA flag check of
`vision_jax.xla_flags`).
`deform_conv2d` times `vision_jax.ops.deform_conv2d` against `torchvision.ops.deform_conv2d`
on an FPN P2-sized map (1 image, 128 -> 128 channels, 100x136, 3x3, padding 1, one offset
group, offsets ~ N(0, 2^2) pixels; DCN v1 by default, `modulated=True` for v2 with a mask):
forward, and forward+backward with the gradients of the input, offsets, kernel (and mask),
identical inputs on both sides (no bias). It reports the sampled-columns size
(`deform_conv2d_columns_MB`, [N, Ho, Wo, 9, C] float32), the forward's matmul FLOP rate as a
ratio to this machine's, and ours minus torchvision's forward (`max_abs_diff`).
`corner_pool` times `vision_jax.ops.corner_pool` at CornerNet's Hourglass-104 feature size
(2 images, 128x128, 256 channels, NHWC float32), all four directions summed as the
top-left and bottom-right modules use them (top + left + bottom + right): forward, and
forward+backward (the input gradient of a random cotangent). Torchvision has no corner
pool, so the other side is plain torch: `torch.cummax` on the same values in NCHW,
`torch.flip` before and after for the reverse directions (top, left), the same sum and
the same cotangent; it needs torch only, and its results are labelled 'torch'. It
reports ours minus torch's forward output (`max_abs_diff_fwd`) and input gradient
(`max_abs_diff_grad`); the random inputs have no ties, where the two would route
gradients differently (`vision_jax.ops.corner_pooling`'s module doc).
All results are medians of `repeats` runs after a warm-up, measured in the same process;
timings on a shared machine are noisy, so compare ratios from one quiet run. Each timed
loop also reports its CPU use (`<name>_cpu_per_wall`: cores kept busy on average;
`<name>_busy_threads`; `<name>_cpu_s`: mean CPU seconds per call), and the results say
how many threads each side was given (`jax_threads`, `torch_threads`). To hold both sides to one thread, run in a fresh process
(`vision_jax.benchmarks.threads.run_isolated`, or `python -m launch.benchmark
--op=roi_align --threads=all,1`, which prints the side-by-side table).

torchvision's CPU RoIAlign kernel is single-threaded at any torch thread count (a plain
loop over RoIs, forward and backward; pytorch/vision#4935), and so is the suppression loop
of its CPU NMS kernel: at 'all' threads only our side can use more than one core. Its CPU
deform_conv2d samples (im2col, col2im and the offset / mask gradient) in single-threaded
loops too; only its matmuls use torch's threads.
"""
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax import ops as vops
from vision_jax.benchmarks import machine
from vision_jax.benchmarks import threads
from vision_jax.ops import pooling


def _torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None, None
  return torch, torchvision


def _skipped(use_torch: bool) -> str:
  """Why the torchvision side did not run."""
  if not use_torch:
    return 'skipped: use_torch=False'
  from vision_jax.benchmarks import torchvision_reference  # pylint: disable=g-import-not-at-top
  return f'skipped: not importable ({torchvision_reference.import_error()})'


def _proposals(rng, num_images, per_image, image_size):
  """Random proposal-like boxes: log-uniform sizes 16..600 px, aspect 1/e..e, clipped."""
  height, width = image_size
  cx = rng.uniform(0, width, (num_images, per_image))
  cy = rng.uniform(0, height, (num_images, per_image))
  size = np.exp(rng.uniform(np.log(16), np.log(600), (num_images, per_image)))
  aspect = np.exp(rng.uniform(-1, 1, (num_images, per_image)))
  w, h = size * np.sqrt(aspect), size / np.sqrt(aspect)
  boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
  return np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)


ROI_ALIGN_NOTE = ("torchvision's CPU RoIAlign kernel is single-threaded (forward and "
                  'backward loop over RoIs; pytorch/vision#4935): its time does not depend on '
                  "torch's thread count")
DEFORM_CONV2D_NOTE = ("torchvision's CPU deform_conv2d samples in single-threaded loops (im2col "
                      'forward; col2im and the offset / mask gradient backward); only its '
                      "matmuls use torch's threads; both sides compute the same gradients")
NMS_NOTE = ("torchvision's CPU NMS suppression loop is single-threaded; both sides compute "
            'the full kept list')


def _time_torch(fn: Callable[[], Any], repeats: int, usage: dict | None = None) -> float:
  fn()
  times = []
  with threads.CpuUsage(calls=repeats) as meter:
    for _ in range(repeats):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
  if usage is not None:
    usage.update(meter.result)
  return float(np.median(times))


def _timed(results: dict, key: str, fn, *args, repeats: int) -> None:
  """results[key] = our median time of fn(*args); its CPU use next to it."""
  usage: dict = {}
  results[key] = machine.time_fn(fn, *args, repeats=repeats, usage=usage)
  threads.record_usage(results, key, usage)


def _timed_torch(results: dict, key: str, fn, *, repeats: int) -> None:
  """results[key] = torch's median time of fn(); its CPU use next to it."""
  usage: dict = {}
  results[key] = _time_torch(fn, repeats, usage)
  threads.record_usage(results, key, usage)


def _torch_threads(torch) -> dict:
  return {'torch_threads': torch.get_num_threads(), 'torch_version': torch.__version__}


def _touched_rows(plan, level=None) -> int:
  """Distinct feature pixels (per level) with a non-zero bilinear weight in `plan`."""
  rows = np.asarray(pooling._rows(plan)).astype(np.int64)  # pylint: disable=protected-access
  if level is not None:
    rows += (np.asarray(level).astype(np.int64) << 40)[:, None, None]
  cols = np.asarray(plan.x.index)
  wy, wx = np.asarray(plan.y.weight), np.asarray(plan.x.weight)
  index = rows[:, :, None, :, None] + cols[:, None, :, None, :]
  used = (wy[:, :, None, :, None] != 0) & (wx[:, None, :, None, :] != 0)
  return int(np.unique(index[used]).size)


def _roi_align(num_images=2, channels=256, image_size=(800, 1088), boxes_per_image=512,
               output_size=7, sampling_ratio=2, aligned=True, min_level=2, max_level=5,
               repeats=10, seed=0, use_torch=True, bandwidth_probe_bytes=256 * 2**20) -> dict:
  levels = list(range(min_level, max_level + 1))
  shapes = [(-(-image_size[0] // 2**l), -(-image_size[1] // 2**l)) for l in levels]
  rng = np.random.default_rng(seed)
  features = [jnp.asarray(rng.standard_normal((num_images, h, w, channels), np.float32))
              for h, w in shapes]
  boxes_np = _proposals(rng, num_images, boxes_per_image, image_size)
  boxes = jnp.asarray(boxes_np)
  out_shape = (num_images, boxes_per_image, output_size, output_size, channels)
  cotangent = jnp.asarray(rng.standard_normal(out_shape, np.float32))
  scale = 2.0**-min_level
  kw = dict(sampling_ratio=sampling_ratio)
  ml_kw = dict(min_level=min_level, max_level=max_level, sampling_ratio=sampling_ratio)

  single = lambda f, b: vops.roi_align(f, b, output_size, spatial_scale=scale,
                                       aligned=aligned, **kw)
  multi = lambda fs, b, al: vops.multilevel_roi_align(fs, b, output_size, aligned=al, **ml_kw)

  def forward_backward(fn):
    def run(f, b, g):
      out, vjp = jax.vjp(lambda f: fn(f, b), f)
      return out, vjp(g)[0]
    return jax.jit(run)

  single_fwd = jax.jit(single)
  single_fb = forward_backward(single)
  multi_fwd = jax.jit(multi, static_argnums=2)
  multi_fb = forward_backward(lambda fs, b: multi(fs, b, False))

  results: dict[str, Any] = {
      'case': (f'{num_images} images, {channels} ch, P{min_level}..P{max_level} of '
               f'{image_size[0]}x{image_size[1]}, {boxes_per_image} boxes/image, '
               f'{output_size}x{output_size}, sampling_ratio {sampling_ratio}'),
      'jax_backend': jax.default_backend(),
      'jax_threads': threads.jax_threads(),
      'note': ROI_ALIGN_NOTE,
  }
  start = time.perf_counter()
  single_fb.lower(features[0], boxes, cotangent).compile()
  results['compile_roi_align_fwd_bwd_s'] = time.perf_counter() - start

  _timed(results, 'roi_align_p2_fwd_s', single_fwd, features[0], boxes, repeats=repeats)
  _timed(results, 'roi_align_p2_fwd_bwd_s', single_fb, features[0], boxes, cotangent,
         repeats=repeats)
  _timed(results, 'multilevel_fwd_s', multi_fwd, features, boxes, False, repeats=repeats)
  _timed(results, 'multilevel_fwd_bwd_s', multi_fb, features, boxes, cotangent,
         repeats=repeats)
  _timed(results, 'multilevel_aligned_fwd_s', multi_fwd, features, boxes, True,
         repeats=repeats)

  # Bytes that must move, and the time at the measured copy bandwidth.
  bandwidth = machine.copy_bytes_per_second(bandwidth_probe_bytes, repeats=repeats)
  results['copy_bandwidth_GBps'] = bandwidth / 1e9
  out_bytes = 4 * int(np.prod(out_shape))
  n, k = num_images, boxes_per_image
  make_plan = jax.jit(pooling._plan,  # pylint: disable=protected-access
                      static_argnums=(5, 6, 7, 8))
  plan_single = make_plan(
      boxes.reshape(-1, 4), jnp.repeat(jnp.arange(n) * shapes[0][0] * shapes[0][1], k),
      shapes[0][0], shapes[0][1], scale, (output_size, output_size), sampling_ratio, aligned, 8)
  touched = _touched_rows(plan_single)
  feature_bytes_p2 = 4 * num_images * shapes[0][0] * shapes[0][1] * channels
  fwd_bytes = touched * channels * 4 + out_bytes
  bwd_bytes = out_bytes + feature_bytes_p2
  gathered = plan_single.y.index.shape[-1] * plan_single.x.index.shape[-1] * out_bytes
  results['roi_align_p2_fwd_must_move_MB'] = fwd_bytes / 1e6
  results['roi_align_p2_fwd_bound_s'] = fwd_bytes / bandwidth
  results['roi_align_p2_fwd_of_bound'] = results['roi_align_p2_fwd_s'] / (fwd_bytes / bandwidth)
  results['roi_align_p2_fwd_bwd_must_move_MB'] = (fwd_bytes + bwd_bytes) / 1e6
  results['roi_align_p2_fwd_bwd_bound_s'] = (fwd_bytes + bwd_bytes) / bandwidth
  results['roi_align_p2_fwd_bwd_of_bound'] = (results['roi_align_p2_fwd_bwd_s']
                                              / ((fwd_bytes + bwd_bytes) / bandwidth))
  results['roi_align_p2_corner_gathers_MB'] = gathered / 1e6

  all_feature_bytes = sum(4 * num_images * h * w * channels for h, w in shapes)
  level = vops.assign_fpn_levels(boxes.reshape(-1, 4), min_level=min_level,
                                 max_level=max_level) - min_level
  heights = jnp.asarray([h for h, _ in shapes])[level]
  widths = jnp.asarray([w for _, w in shapes])[level]
  image = jnp.repeat(jnp.arange(n), k)
  plan_multi = make_plan(
      boxes.reshape(-1, 4), image * heights * widths, heights, widths,
      2.0**-(level + min_level).astype(jnp.float32), (output_size, output_size),
      sampling_ratio, False, 8)
  ml_fwd_bytes = _touched_rows(plan_multi, level) * channels * 4 + out_bytes
  ml_bwd_bytes = out_bytes + all_feature_bytes
  results['boxes_per_level'] = str(np.bincount(np.asarray(level), minlength=len(levels)))
  results['multilevel_fwd_must_move_MB'] = ml_fwd_bytes / 1e6
  results['multilevel_fwd_bound_s'] = ml_fwd_bytes / bandwidth
  results['multilevel_fwd_of_bound'] = results['multilevel_fwd_s'] / (ml_fwd_bytes / bandwidth)
  results['multilevel_fwd_bwd_must_move_MB'] = (ml_fwd_bytes + ml_bwd_bytes) / 1e6
  results['multilevel_fwd_bwd_bound_s'] = (ml_fwd_bytes + ml_bwd_bytes) / bandwidth
  results['multilevel_fwd_bwd_of_bound'] = (results['multilevel_fwd_bwd_s']
                                            / ((ml_fwd_bytes + ml_bwd_bytes) / bandwidth))

  torch, torchvision = _torch() if use_torch else (None, None)
  if torch is None:
    results['torchvision'] = _skipped(use_torch)
    return results
  results.update(_torch_threads(torch))
  rois = torch.tensor(np.concatenate(
      [np.repeat(np.arange(n, dtype=np.float32), k)[:, None], boxes_np.reshape(-1, 4)], 1))
  f_torch = [torch.tensor(np.asarray(f).transpose(0, 3, 1, 2).copy()) for f in features]
  g_torch = torch.tensor(np.asarray(cotangent).reshape(n * k, output_size, output_size,
                                                       channels).transpose(0, 3, 1, 2).copy())

  def tv_single():
    return torchvision.ops.roi_align(f_torch[0], rois, output_size, scale, sampling_ratio,
                                     aligned)

  p2_grad = f_torch[0].clone().requires_grad_()

  def tv_single_fb():
    p2_grad.grad = None
    out = torchvision.ops.roi_align(p2_grad, rois, output_size, scale, sampling_ratio, aligned)
    out.backward(g_torch)
    return p2_grad.grad

  pooler = torchvision.ops.MultiScaleRoIAlign([f'p{l}' for l in levels], output_size,
                                              sampling_ratio)
  sizes = [tuple(image_size)] * n
  box_list = [torch.tensor(b) for b in boxes_np]
  named = {f'p{l}': f for l, f in zip(levels, f_torch)}
  named_grad = {name: f.clone().requires_grad_() for name, f in named.items()}

  def tv_multi():
    return pooler(named, box_list, sizes)

  def tv_multi_fb():
    for f in named_grad.values():
      f.grad = None
    out = pooler(named_grad, box_list, sizes)
    out.backward(g_torch)
    return [f.grad for f in named_grad.values()]

  with torch.no_grad():
    want = tv_single().numpy().transpose(0, 2, 3, 1)
    want_multi = tv_multi().numpy().transpose(0, 2, 3, 1)
  got = np.asarray(single_fwd(features[0], boxes)).reshape(want.shape)
  got_multi = np.asarray(multi_fwd(features, boxes, False)).reshape(want_multi.shape)
  if sampling_ratio <= 0:
    # Boxes whose adaptive grid exceeds max_sampling_ratio (8) are sampled more coarsely
    # than torchvision's (the documented deviation); count them, per comparison.
    sizes = boxes_np.reshape(-1, 4)[:, 2:] - boxes_np.reshape(-1, 4)[:, :2]
    level_scale = 2.0**-(np.asarray(level) + min_level)
    results['boxes_beyond_max_grid_p2'] = int(np.sum(np.ceil(sizes * scale / output_size) > 8))
    results['boxes_beyond_max_grid_multilevel'] = int(np.sum(
        np.ceil(sizes * level_scale[:, None] / output_size) > 8))
  results['max_abs_diff_roi_align_p2'] = float(np.abs(got - want).max())
  results['max_abs_diff_multilevel'] = float(np.abs(got_multi - want_multi).max())

  with torch.no_grad():
    _timed_torch(results, 'torchvision_roi_align_p2_fwd_s', tv_single, repeats=repeats)
    _timed_torch(results, 'torchvision_multilevel_fwd_s', tv_multi, repeats=repeats)
  _timed_torch(results, 'torchvision_roi_align_p2_fwd_bwd_s', tv_single_fb, repeats=repeats)
  _timed_torch(results, 'torchvision_multilevel_fwd_bwd_s', tv_multi_fb, repeats=repeats)
  for name in ('roi_align_p2_fwd', 'roi_align_p2_fwd_bwd', 'multilevel_fwd',
               'multilevel_fwd_bwd'):
    results[f'speedup_{name}'] = results[f'torchvision_{name}_s'] / results[f'{name}_s']
  return results


def _nms(num_boxes=2000, iou_threshold=0.7, max_output_size=None, repeats=10, seed=0,
         use_torch=True) -> dict:
  """Greedy NMS of `num_boxes` random proposals, ours against torchvision.ops.nms.

  torchvision always computes the full kept list, so by default ours does too
  (max_output_size = num_boxes: it cannot stop before the last box). A smaller
  max_output_size lets ours stop at that many kept boxes: `equal_work` is then False and
  the kept lists are compared up to that count.
  """
  rng = np.random.default_rng(seed)
  boxes_np = _proposals(rng, 1, num_boxes, (800, 1088))[0]
  scores_np = rng.uniform(size=num_boxes).astype(np.float32)
  cap = num_boxes if max_output_size is None else int(max_output_size)
  run = jax.jit(lambda b, s: vops.nms(b, s, iou_threshold, cap))
  results: dict[str, Any] = {
      'case': f'{num_boxes} boxes, IoU {iou_threshold}, max_output_size {cap}',
      'jax_threads': threads.jax_threads(),
      'note': NMS_NOTE,
      'equal_work': cap >= num_boxes,
  }
  _timed(results, 'nms_s', run, boxes_np, scores_np, repeats=repeats)
  result = run(boxes_np, scores_np)
  ours = np.asarray(result.indices)[np.asarray(result.valid)]
  results['kept_ours'] = int(ours.size)
  torch, torchvision = _torch() if use_torch else (None, None)
  if torch is None:
    results['torchvision'] = _skipped(use_torch)
    return results
  results.update(_torch_threads(torch))
  b, s = torch.tensor(boxes_np), torch.tensor(scores_np)
  keep = torchvision.ops.nms(b, s, iou_threshold).numpy()
  results['kept_torchvision'] = int(keep.size)
  results['same_kept_list'] = bool(np.array_equal(ours, keep[:cap]))
  _timed_torch(results, 'torchvision_nms_s', lambda: torchvision.ops.nms(b, s, iou_threshold),
               repeats=repeats)
  results['speedup_nms'] = results['torchvision_nms_s'] / results['nms_s']
  return results


def _conv3x3(batch=2, size=128, channels=256, repeats=5, seed=0, use_torch=True) -> dict:
  """A 3x3 stride-1 convolution at FPN P2 size (the FPN / RPN convs), NHWC, float32.

  Forward and forward+backward (gradients w.r.t. input and kernel); FLOP/s as a ratio to
  this machine's matmul rate, side by side with torch's conv2d. XLA:CPU's speed here
  depends on XLA_FLAGS (`vision_jax.xla_flags`): run once with and once without a flag to
  compare it.
  """
  rng = np.random.default_rng(seed)
  x_np = rng.normal(size=(batch, size, size, channels)).astype(np.float32)
  k_np = (rng.normal(size=(3, 3, channels, channels)) * 0.01).astype(np.float32)

  def conv(x, k):
    return jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  forward = jax.jit(conv)
  both = jax.jit(jax.grad(lambda x, k: jnp.sum(conv(x, k) ** 2), argnums=(0, 1)))
  flops = 2.0 * batch * size * size * channels * channels * 9  # forward; backward is 2x
  matmul = machine.matmul_flops_per_second()
  results: dict[str, Any] = {
      'case': f'{batch}x{size}x{size}x{channels} -> {channels}, 3x3',
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'jax_threads': threads.jax_threads(),
      'matmul_flops_per_s': matmul,
  }
  _timed(results, 'conv_fwd_s', forward, x_np, k_np, repeats=repeats)
  _timed(results, 'conv_fwd_bwd_s', both, x_np, k_np, repeats=repeats)
  results['conv_fwd_ratio_to_matmul'] = flops / results['conv_fwd_s'] / matmul
  results['conv_fwd_bwd_ratio_to_matmul'] = 3 * flops / results['conv_fwd_bwd_s'] / matmul
  torch, _ = _torch() if use_torch else (None, None)
  if torch is None:
    results['torchvision'] = _skipped(use_torch)
    return results
  results.update(_torch_threads(torch))
  x = torch.tensor(x_np).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
  k = torch.tensor(k_np).permute(3, 2, 0, 1).contiguous().requires_grad_(True)

  def torch_both():
    x.grad = k.grad = None
    (torch.nn.functional.conv2d(x, k, padding=1) ** 2).sum().backward()

  with torch.no_grad():
    _timed_torch(results, 'torch_conv_fwd_s',
                 lambda: torch.nn.functional.conv2d(x, k, padding=1), repeats=repeats)
  _timed_torch(results, 'torch_conv_fwd_bwd_s', torch_both, repeats=repeats)
  results['ratio_ours_to_torch_fwd'] = results['conv_fwd_s'] / results['torch_conv_fwd_s']
  results['ratio_ours_to_torch_fwd_bwd'] = (results['conv_fwd_bwd_s']
                                            / results['torch_conv_fwd_bwd_s'])
  return results


# The side-by-side table's pairs for ops the comparison module does not list itself
# (`compare.measurements` reads them from the results).
DEFORM_CONV2D_MEASUREMENTS = tuple(
    {'name': f'deform_conv2d_{part}',
     'sides': [('ours', f'deform_conv2d_{part}_s', 'jax'),
               ('torchvision', f'torchvision_deform_conv2d_{part}_s', 'torch')]}
    for part in ('fwd', 'fwd_bwd'))


def _deform_conv2d(num_images=1, channels=128, size=(100, 136), kernel_size=3,
                   offset_groups=1, modulated=False, offset_scale=2.0, repeats=5, seed=0,
                   use_torch=True, matmul_probe_size=2048) -> dict:
  """A 3x3 deformable convolution (stride 1, padding k // 2) at FPN P2 size, ours against
  torchvision.ops.deform_conv2d on the same float32 inputs: forward, and forward+backward
  (gradients of the input, offsets, kernel and, with `modulated`, the mask; no bias)."""
  rng = np.random.default_rng(seed)
  height, width = size
  k, c, g = kernel_size, channels, offset_groups
  pad = k // 2
  x_np = rng.standard_normal((num_images, height, width, c), np.float32)
  offset_np = (rng.standard_normal((num_images, height, width, 2 * g * k * k))
               * offset_scale).astype(np.float32)
  mask_np = (rng.uniform(size=(num_images, height, width, g * k * k)).astype(np.float32)
             if modulated else None)
  weight_np = (rng.standard_normal((k, k, c, c)) / np.sqrt(k * k * c)).astype(np.float32)
  cotangent_np = rng.standard_normal((num_images, height, width, c), np.float32)
  inputs = [jnp.asarray(a) for a in (x_np, offset_np, weight_np)]
  if modulated:
    inputs.append(jnp.asarray(mask_np))

  def conv(x, offset, weight, mask=None):
    return vops.deform_conv2d(x, offset, weight, mask=mask, padding=pad)

  def both(cotangent, *args):
    out, vjp = jax.vjp(conv, *args)
    return out, vjp(cotangent)

  forward = jax.jit(conv)
  forward_backward = jax.jit(both)
  cotangent = jnp.asarray(cotangent_np)
  flops = 2.0 * num_images * height * width * k * k * c * c
  results: dict[str, Any] = {
      'case': (f'{num_images} image(s), {c} -> {c} ch, {height}x{width}, {k}x{k} padding '
               f'{pad}, {g} offset group(s), {"v2 (mask)" if modulated else "v1"}, offsets '
               f'~ N(0, {offset_scale:g}^2) px'),
      'jax_backend': jax.default_backend(),
      'jax_threads': threads.jax_threads(),
      'note': DEFORM_CONV2D_NOTE,
      'measurements': DEFORM_CONV2D_MEASUREMENTS,
      'deform_conv2d_columns_MB': 4 * num_images * height * width * k * k * c / 1e6,
  }
  start = time.perf_counter()
  forward_backward.lower(cotangent, *inputs).compile()
  results['compile_deform_conv2d_fwd_bwd_s'] = time.perf_counter() - start
  _timed(results, 'deform_conv2d_fwd_s', forward, *inputs, repeats=repeats)
  _timed(results, 'deform_conv2d_fwd_bwd_s', forward_backward, cotangent, *inputs,
         repeats=repeats)
  results['deform_conv2d_fwd_ratio_to_matmul'] = (
      flops / results['deform_conv2d_fwd_s']
      / machine.matmul_flops_per_second(matmul_probe_size, repeats=repeats))

  torch, torchvision = _torch() if use_torch else (None, None)
  if torch is None:
    results['torchvision'] = _skipped(use_torch)
    return results
  results.update(_torch_threads(torch))
  nchw = lambda a: torch.tensor(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
  x_t, offset_t = nchw(x_np), nchw(offset_np)
  mask_t = nchw(mask_np) if modulated else None
  weight_t = torch.tensor(np.ascontiguousarray(weight_np.transpose(3, 2, 0, 1)))
  cotangent_t = nchw(cotangent_np)
  leaves = [t.clone().requires_grad_() for t in (x_t, offset_t, weight_t)]
  if modulated:
    leaves.append(mask_t.clone().requires_grad_())

  def tv_forward():
    return torchvision.ops.deform_conv2d(x_t, offset_t, weight_t, None, padding=pad,
                                         mask=mask_t)

  def tv_forward_backward():
    for t in leaves:
      t.grad = None
    out = torchvision.ops.deform_conv2d(leaves[0], leaves[1], leaves[2], None, padding=pad,
                                        mask=leaves[3] if modulated else None)
    out.backward(cotangent_t)
    return [t.grad for t in leaves]

  with torch.no_grad():
    want = tv_forward().numpy().transpose(0, 2, 3, 1)
    results['max_abs_diff'] = float(np.abs(np.asarray(forward(*inputs)) - want).max())
    _timed_torch(results, 'torchvision_deform_conv2d_fwd_s', tv_forward, repeats=repeats)
  _timed_torch(results, 'torchvision_deform_conv2d_fwd_bwd_s', tv_forward_backward,
               repeats=repeats)
  for name in ('deform_conv2d_fwd', 'deform_conv2d_fwd_bwd'):
    results[f'speedup_{name}'] = results[f'torchvision_{name}_s'] / results[f'{name}_s']
  return results


CORNER_POOL_DIRECTIONS = ('top', 'left', 'bottom', 'right')
CORNER_POOL_NOTE = ('torch side: torch.cummax on NCHW (torch.flip for top and left); no '
                    'torchvision op exists; both sides sum the four pools and compute the '
                    'input gradient of the same cotangent')
CORNER_POOL_MEASUREMENTS = tuple(
    {'name': f'corner_pool_{part}',
     'sides': [('ours', f'corner_pool_{part}_s', 'jax'),
               ('torch', f'torch_corner_pool_{part}_s', 'torch')]}
    for part in ('fwd', 'fwd_bwd'))


def _torch_alone():
  """torch, or None when it does not import (the corner pool side needs no torchvision)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return torch


def _four_corner_pools(x: jax.Array) -> jax.Array:
  """top(x) + left(x) + bottom(x) + right(x) of `vops.corner_pool`; [N, H, W, C] both."""
  return sum(vops.corner_pool(x, direction) for direction in CORNER_POOL_DIRECTIONS)


# direction -> (dim of an NCHW tensor, running max from the end of that dim?)
_TORCH_CORNER_SCANS = {'top': (2, True), 'left': (3, True), 'bottom': (2, False),
                       'right': (3, False)}


def _torch_corner_pool(torch, x, direction: str):
  """`vops.corner_pool` with torch.cummax on x [N, C, H, W]: 'top' / 'left' are running
  maxima from the bottom row / right column (flip, cummax, flip back), 'bottom' / 'right'
  from the top row / left column."""
  dim, reverse = _TORCH_CORNER_SCANS[direction]
  if reverse:
    return torch.flip(torch.cummax(torch.flip(x, (dim,)), dim).values, (dim,))
  return torch.cummax(x, dim).values


def _torch_four_corner_pools(torch, x):
  """`_four_corner_pools` in torch: x and the result [N, C, H, W]."""
  return sum(_torch_corner_pool(torch, x, d) for d in CORNER_POOL_DIRECTIONS)


def _corner_pool(batch=2, size=128, channels=256, repeats=10, seed=0,
                 use_torch=True) -> dict:
  """CornerNet's corner pooling at Hourglass-104 feature size ([batch, size, size,
  channels] float32 NHWC): the four pools summed (top + left + bottom + right, as the
  top-left and bottom-right modules together), forward and forward+backward (the input
  gradient of a random cotangent), ours against torch.cummax on the same values in NCHW.
  Normal random inputs have no ties, so both sides route every gradient alike."""
  rng = np.random.default_rng(seed)
  x_np = rng.standard_normal((batch, size, size, channels), np.float32)
  cotangent_np = rng.standard_normal((batch, size, size, channels), np.float32)
  x, cotangent = jnp.asarray(x_np), jnp.asarray(cotangent_np)

  def both(x, cotangent):
    out, vjp = jax.vjp(_four_corner_pools, x)
    return out, vjp(cotangent)[0]

  forward = jax.jit(_four_corner_pools)
  forward_backward = jax.jit(both)
  results: dict[str, Any] = {
      'case': (f'{batch}x{size}x{size}x{channels} float32 NHWC, top + left + bottom + '
               'right pools summed'),
      'jax_backend': jax.default_backend(),
      'jax_threads': threads.jax_threads(),
      'note': CORNER_POOL_NOTE,
      'measurements': CORNER_POOL_MEASUREMENTS,
      'corner_pool_map_MB': 4 * x_np.size / 1e6,
  }
  start = time.perf_counter()
  forward_backward.lower(x, cotangent).compile()
  results['compile_corner_pool_fwd_bwd_s'] = time.perf_counter() - start
  _timed(results, 'corner_pool_fwd_s', forward, x, repeats=repeats)
  _timed(results, 'corner_pool_fwd_bwd_s', forward_backward, x, cotangent, repeats=repeats)

  torch = _torch_alone() if use_torch else None
  if torch is None:  # under 'torchvision', where the table reads any op's reference status
    results['torchvision'] = ('skipped: use_torch=False' if not use_torch
                              else 'skipped: torch not importable')
    return results
  results.update(_torch_threads(torch))
  nchw = lambda a: torch.tensor(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
  x_t, cotangent_t = nchw(x_np), nchw(cotangent_np)
  leaf = x_t.clone().requires_grad_()

  def torch_forward_backward():
    leaf.grad = None
    out = _torch_four_corner_pools(torch, leaf)
    out.backward(cotangent_t)
    return out, leaf.grad

  ours_out, ours_grad = (np.asarray(a) for a in forward_backward(x, cotangent))
  torch_out, torch_grad = (t.detach().numpy().transpose(0, 2, 3, 1)
                           for t in torch_forward_backward())
  results['max_abs_diff_fwd'] = float(np.abs(ours_out - torch_out).max())
  results['max_abs_diff_grad'] = float(np.abs(ours_grad - torch_grad).max())
  with torch.no_grad():
    _timed_torch(results, 'torch_corner_pool_fwd_s',
                 lambda: _torch_four_corner_pools(torch, x_t), repeats=repeats)
  _timed_torch(results, 'torch_corner_pool_fwd_bwd_s', torch_forward_backward,
               repeats=repeats)
  for name in ('corner_pool_fwd', 'corner_pool_fwd_bwd'):
    results[f'speedup_{name}'] = results[f'torch_{name}_s'] / results[f'{name}_s']
  return results


_OPS = {'roi_align': _roi_align, 'nms': _nms, 'conv3x3': _conv3x3,
        'deform_conv2d': _deform_conv2d, 'corner_pool': _corner_pool}


def run(op: str, **kwargs) -> dict:
  """Benchmarks `op` ('roi_align', 'nms', 'conv3x3', 'deform_conv2d', 'corner_pool');
  kwargs override the case (see the functions)."""
  if op not in _OPS:
    raise ValueError(f'unknown op {op!r}; benchmarked ops: {sorted(_OPS)}')
  return _OPS[op](**kwargs)
