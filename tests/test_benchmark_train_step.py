"""The train-step benchmark on a tiny experiment: what it reports (speed is not asserted)."""
import math
import os

import jax
import ml_collections
import numpy as np
import pytest

from vision_jax.benchmarks import torchvision_reference
from vision_jax.benchmarks import train_step
from vision_jax.train import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rbg_keys():
  """Random weights from RBG keys: XLA:CPU compiles threefry for every parameter shape of
  the jit'd init, which was most of these tests' time (CI). What is asserted does not
  depend on which random values the weights take."""
  return jax.default_prng_impl('rbg')


def test_reports_speed_flops_and_the_last_steps_metrics(tmp_path):
  config = config_lib.load_config('experiments/centernet_shapes.py:tiny')
  used = []
  with _rbg_keys():
    results = train_step.run(config, str(tmp_path), steps=2, pipeline_batches=2,
                             used_batches=used)
  for key in ('compile_s', 'train_steps_per_s', 'train_images_per_s', 'flops_per_step',
              'achieved_flops_per_s', 'matmul_flops_per_s', 'pipeline_images_per_s',
              'step_s', 'jax_threads'):
    assert results[key] > 0, key
  assert results['batch_size'] == config.train.batch_size
  assert math.isclose(results['train_images_per_s'],
                      results['train_steps_per_s'] * config.train.batch_size)
  assert math.isclose(results['step_s'], 1.0 / results['train_steps_per_s'])
  assert results['step_cpu_per_wall'] >= 0 and results['step_cpu_s'] >= 0
  assert 'step_busy_threads' in results
  assert results['flops_count'].startswith('exact')  # CenterNet's step has no conditional
  # The last timed step's scalar metrics, a finite loss among them, and their means.
  assert math.isfinite(results['final_loss']) and math.isfinite(results['mean_loss'])
  assert all(math.isfinite(v) for k, v in results.items() if k.startswith('final_'))
  # Timed as in training: the warm-up and each timed step on a batch of its own.
  assert results['timed_batches'] == 2 and len(used) == 3
  assert not np.array_equal(used[1]['image'], used[2]['image'])
  assert not np.array_equal(used[0]['image'], used[1]['image'])


def test_an_experiment_without_a_reference_asks_for_no_torchvision_step():
  config = config_lib.load_config('experiments/centernet_shapes.py:tiny')
  assert train_step.torchvision_comparison(config, {}, [], steps=1) == {}


def _mask_rcnn_with_reference():
  config = config_lib.load_config(os.path.join(ROOT, 'experiments', 'mask_rcnn_shapes.py')
                                  + ':tiny')
  with config.unlocked():
    config.train.batch_size = 2
    config.benchmark = ml_collections.ConfigDict(dict(
        torchvision_reference='mask_rcnn',
        torchvision_kwargs=dict(num_classes=3, rpn_pre_nms_top_n_train=64,
                                rpn_post_nms_top_n_train=32, rpn_batch_size_per_image=64,
                                box_batch_size_per_image=16)))
  return config


def test_without_torchvision_the_reference_is_reported_skipped(monkeypatch):
  monkeypatch.setattr(torchvision_reference, 'import_error', lambda: 'No module named torch')
  results = train_step.torchvision_comparison(_mask_rcnn_with_reference(), {}, [], steps=1)
  assert results == {'torchvision_reference': 'skipped: No module named torch'}


@pytest.mark.slow(seconds=42)
def test_mask_rcnn_with_torchvisions_step_on_the_same_batches(tmp_path):
  if not torchvision_reference.available():  # its absence: the test above
    pytest.skip('torch / torchvision not installed')
  with _rbg_keys():
    results = train_step.run_with_reference(_mask_rcnn_with_reference(), str(tmp_path),
                                            steps=2, pipeline_batches=1)
  assert results['timed_batches'] == 2 and math.isfinite(results['final_loss'])
  assert results['torchvision_data'] == 'the given batches'
  assert results['torchvision_distinct_batches'] == 2
  # The same objects on both sides (the timed batches' valid, non-crowd instances).
  assert math.isclose(results['torchvision_objects_per_image'],
                      results['instances_per_image'])
  assert results['torchvision_losses_finite']
  assert results['ratio_ours_to_torchvision_step_time'] > 0
  assert results['torchvision_torch_threads'] >= 1
  assert results['torchvision_step_cpu_s'] > 0 and results['torchvision_step_s'] > 0
