"""The op benchmark runs end to end on a tiny case (speed itself is not asserted)."""
import pytest

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
  assert 'torchvision' in results


def test_nms_benchmark_and_unknown_op():
  results = ops_benchmark.run('nms', num_boxes=50, max_output_size=20, repeats=1,
                              use_torch=False)
  assert results['nms_s'] > 0.0
  with pytest.raises(ValueError, match='roi_align'):
    ops_benchmark.run('no_such_op')


def test_conv3x3_benchmark_reports_times_and_ratios():
  results = ops_benchmark.run('conv3x3', batch=1, size=16, channels=8, repeats=1,
                              use_torch=False)
  for key in ('conv_fwd_s', 'conv_fwd_bwd_s', 'matmul_flops_per_s',
              'conv_fwd_ratio_to_matmul', 'conv_fwd_bwd_ratio_to_matmul'):
    assert results[key] > 0.0, key
  assert 'xla_flags' in results and 'torchvision' in results
