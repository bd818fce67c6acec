"""The op benchmark runs end to end on a tiny case (speed itself is not asserted)."""
import numpy as np
import pytest

from vision_jax import ops as vops
from vision_jax.benchmarks import ops as ops_benchmark


def test_roi_align_benchmark_reports_times_and_bounds():
  results = ops_benchmark.run('roi_align', num_images=1, channels=8, image_size=(64, 96),
                              boxes_per_image=16, repeats=1, use_torch=False,
                              bandwidth_probe_bytes=2**20)
  for key in ('roi_align_p2_fwd_s', 'roi_align_p2_fwd_bwd_s', 'multilevel_fwd_s',
              'multilevel_fwd_bwd_s', 'roi_align_p2_fwd_bound_s', 'multilevel_fwd_bwd_bound_s',
              'copy_bandwidth_GBps'):
    assert results[key] > 0.0, key
  assert results['roi_align_p2_fwd_bwd_must_move_MB'] > results['roi_align_p2_fwd_must_move_MB']
  assert results['torchvision'] == 'skipped: use_torch=False'
  assert results['jax_threads'] >= 1 and 'roi_align_p2_fwd_busy_threads' in results


def test_nms_benchmark_does_torchvisions_work_by_default_and_unknown_op():
  results = ops_benchmark.run('nms', num_boxes=50, repeats=1, use_torch=False)
  assert results['nms_s'] > 0.0
  # torchvision computes the full kept list: ours may not stop earlier.
  assert results['equal_work'] and 'max_output_size 50' in results['case']
  assert 0 < results['kept_ours'] <= 50
  assert results['nms_cpu_per_wall'] >= 0.0
  assert results['torchvision'].startswith('skipped')
  capped = ops_benchmark.run('nms', num_boxes=50, max_output_size=5, repeats=1,
                             use_torch=False)
  assert not capped['equal_work'] and capped['kept_ours'] <= 5
  with pytest.raises(ValueError, match='roi_align'):
    ops_benchmark.run('no_such_op')


def test_nms_against_torchvision_keeps_the_same_list():
  pytest.importorskip('torchvision')
  results = ops_benchmark.run('nms', num_boxes=200, repeats=1)
  assert results['equal_work'] and results['same_kept_list']
  assert results['kept_ours'] == results['kept_torchvision'] > 0
  assert results['torchvision_nms_s'] > 0 and results['torch_threads'] >= 1


def test_roi_align_against_torchvision_at_a_tiny_size():
  pytest.importorskip('torchvision')
  results = ops_benchmark.run('roi_align', num_images=1, channels=4, image_size=(64, 64),
                              boxes_per_image=8, repeats=1, bandwidth_probe_bytes=2**20)
  assert results['max_abs_diff_roi_align_p2'] < 1e-4
  assert results['max_abs_diff_multilevel'] < 1e-4
  for name in ('roi_align_p2_fwd', 'roi_align_p2_fwd_bwd', 'multilevel_fwd',
               'multilevel_fwd_bwd'):
    assert results[f'speedup_{name}'] > 0, name
    assert f'torchvision_{name}_cpu_per_wall' in results and f'{name}_cpu_per_wall' in results
  assert results['torch_threads'] >= 1 and results['jax_threads'] >= 1
  assert 'single-threaded' in results['note']


def test_conv3x3_benchmark_reports_times_and_ratios():
  results = ops_benchmark.run('conv3x3', batch=1, size=16, channels=8, repeats=1,
                              use_torch=False)
  for key in ('conv_fwd_s', 'conv_fwd_bwd_s', 'matmul_flops_per_s',
              'conv_fwd_ratio_to_matmul', 'conv_fwd_bwd_ratio_to_matmul'):
    assert results[key] > 0.0, key
  assert 'xla_flags' in results and 'torchvision' in results


def test_corner_pool_benchmark_reports_times_and_its_torch_side():
  results = ops_benchmark.run('corner_pool', batch=1, size=8, channels=4, repeats=1,
                              use_torch=False)
  for key in ('corner_pool_fwd_s', 'corner_pool_fwd_bwd_s', 'compile_corner_pool_fwd_bwd_s'):
    assert results[key] > 0.0, key
  assert results['jax_threads'] >= 1 and 'corner_pool_fwd_busy_threads' in results
  assert results['torchvision'] == 'skipped: use_torch=False'
  assert [m['name'] for m in results['measurements']] == ['corner_pool_fwd',
                                                          'corner_pool_fwd_bwd']


def test_corner_pool_against_torch_cummax_at_a_tiny_size():
  torch = pytest.importorskip('torch')
  # Each direction alone (the sum would hide a swapped top / bottom).
  x = np.random.default_rng(1).standard_normal((2, 5, 7, 3), np.float32)
  for direction in ops_benchmark.CORNER_POOL_DIRECTIONS:
    theirs = ops_benchmark._torch_corner_pool(  # pylint: disable=protected-access
        torch, torch.tensor(x.transpose(0, 3, 1, 2).copy()), direction)
    np.testing.assert_array_equal(np.asarray(vops.corner_pool(x, direction)),
                                  theirs.numpy().transpose(0, 2, 3, 1), err_msg=direction)
  results = ops_benchmark.run('corner_pool', batch=2, size=9, channels=3, repeats=1)
  assert results['max_abs_diff_fwd'] < 1e-5 and results['max_abs_diff_grad'] < 1e-5
  for name in ('corner_pool_fwd', 'corner_pool_fwd_bwd'):
    assert results[f'torch_{name}_s'] > 0 and results[f'speedup_{name}'] > 0, name
  assert results['torch_threads'] >= 1
