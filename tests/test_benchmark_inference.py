"""The predict-step comparison (YOLACT vs our Mask R-CNN vs torchvision's) at tiny sizes.

What it reports is checked: both sides with their thread counts, seconds, images/s and
ratio, the target, torchvision's side run or reported as skipped. Speed itself is never
asserted. Where torch and torchvision import (the reference venv:
  PYTHONPATH=$PWD:$PWD/.venv/lib/python3.11/site-packages /work/tv_venv/bin/python \
      -m pytest tests/test_benchmark_inference.py
) the torchvision side runs too.
"""
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from vision_jax.benchmarks import compare
from vision_jax.benchmarks import inference
from vision_jax.benchmarks import torchvision_reference
from vision_jax.tasks import base as tasks_base
from vision_jax.train import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, 'experiments', 'yolact_coco.py') + ':bench'
# Small networks, 32 proposals and 10 detections: the comparison's plumbing, not its speed.
TINY_MASK_RCNN = ['model.backbone=resnet18', 'model.width=8', 'model.fpn_channels=16',
                  'model.rpn_pre_nms_top_n_test=64', 'model.rpn_post_nms_top_n_test=32',
                  'model.box_fc_dim=32', 'model.mask_conv_dim=16',
                  'model.detections_per_image=10', 'model.inference_candidates=64']
TINY = ['data.dataset=synthetic_shapes/tiny', 'data.image_size=(64, 64)',
        'model.backbone=resnet18', 'model.width=8', 'model.fpn_channels=16',
        'model.num_prototypes=8', 'model.proto_channels=16', 'model.head_channels=16',
        'model.top_k=20', 'model.detections_per_image=10', 'benchmark.batch_size=1',
        f'benchmark.inference_against_overrides={TINY_MASK_RCNN!r}']


def test_the_bench_config_compares_predict_steps():
  config = config_lib.load_config(SPEC)
  assert compare.benchmark_mode(config) == 'predict'
  assert compare.benchmark_mode(config, 'train_step') == 'train_step'  # --mode wins
  assert config.benchmark.inference_against == 'mask_rcnn_coco'
  assert config.benchmark.target_speedup == 2.0
  assert config.benchmark.torchvision_reference == 'mask_rcnn'
  plain = config_lib.load_config(os.path.join(ROOT, 'experiments', 'centernet_shapes.py'))
  assert compare.benchmark_mode(plain) == 'train_step'
  with pytest.raises(config_lib.ConfigError, match='benchmark mode'):
    compare.benchmark_mode(plain, 'infer')


def test_the_against_experiment_takes_our_data_and_batch():
  config = config_lib.load_config(SPEC, TINY)
  against, spec = inference.against_config(config, SPEC)
  assert spec == os.path.join(ROOT, 'experiments', 'mask_rcnn_coco.py')
  assert against.task == 'mask_rcnn' and against.model.backbone == 'resnet18'
  assert against.model.rpn_post_nms_top_n_test == 32
  assert against.data.to_dict() == config.data.to_dict()
  assert inference.experiment_spec('mask_rcnn_coco.py:bench', SPEC) == (
      os.path.join(ROOT, 'experiments', 'mask_rcnn_coco.py') + ':bench')
  assert inference.experiment_spec('other/dir/x', SPEC) == 'other/dir/x.py'
  # The untiny bench: R50-FPN on both sides, detectron2's 1000 proposals at test.
  full, _ = inference.against_config(config_lib.load_config(SPEC), SPEC)
  assert full.model.backbone == 'resnet50' and full.model.rpn_post_nms_top_n_test == 1000
  assert tuple(full.data.image_size) == (544, 544)


def test_a_task_names_the_functions_to_time():
  class Default:
    predict_step = staticmethod(lambda state, batch: {'x': batch['image'] * state})

  class TwoSteps:
    def benchmark_predict_functions(self):
      keyframe = lambda state, batch: batch['image'] + state
      return {'keyframe': (keyframe, lambda state, batch: (state, batch)),
              'non_keyframe': (lambda carry: carry * 2,
                               lambda state, batch: (keyframe(state, batch),))}

  default = inference.predict_functions(Default())
  assert list(default) == ['predict']
  fn, make_args = default['predict']
  state, inputs = make_args(2, {'image': np.ones((1, 4, 4, 3), np.uint8), 'masks': 0})
  assert state == 2 and list(inputs) == ['image']  # what a predict step reads, on device
  assert isinstance(inputs['image'], jax.Array)
  functions = inference.predict_functions(TwoSteps())
  assert list(functions) == ['keyframe', 'non_keyframe']
  fn, make_args = functions['non_keyframe']
  args = [make_args(np.float32(1), {'image': np.ones((2, 3), np.float32) * i}) for i in range(3)]
  timed = inference.time_function(fn, args, batch_size=2)
  assert timed['timed_batches'] == 2 and timed['s'] > 0 and timed['finite']
  assert math.isclose(timed['images_per_s'], 2 / timed['s'])
  assert timed['detections_per_image'] is None  # no 'valid' output


def test_torchvision_side_is_skipped_with_the_reason(monkeypatch):
  config = config_lib.load_config(SPEC, TINY)
  against, _ = inference.against_config(config, SPEC)
  task = tasks_base.create_task(against)
  monkeypatch.setattr(torchvision_reference, 'import_error',
                      lambda: "ModuleNotFoundError: No module named 'torch'")
  skipped = inference._torchvision('mask_rcnn', (task, 'mask_rcnn'), {}, [])
  assert skipped == {'torchvision': "skipped: not importable (ModuleNotFoundError: No module "
                                    "named 'torch')"}
  nobody = inference._torchvision('mask_rcnn', None, {}, [])
  assert nobody['torchvision'].startswith('skipped') and 'mask_rcnn' in nobody['torchvision']
  # Its settings mirror our Mask R-CNN's test settings; the config's kwargs replace them.
  kwargs = inference.torchvision_kwargs(task, {'torchvision_predict_kwargs': {
      'box_score_thresh': 0.1}})
  assert kwargs == dict(num_classes=task.source.num_classes, rpn_pre_nms_top_n_test=64,
                        rpn_post_nms_top_n_test=32, rpn_nms_thresh=0.7,
                        box_score_thresh=0.1, box_nms_thresh=0.5, box_detections_per_img=10)
  assert any('resnet18' in d for d in inference.architecture_differences(task))


@pytest.fixture(scope='module')
def launched(tmp_path_factory):
  """`launch.benchmark` on the tiny bench at one thread: (stdout, results JSON)."""
  output = tmp_path_factory.mktemp('predict') / 'predict.json'
  # Both sides initialise their random weights from RBG keys: XLA:CPU compiles threefry
  # for every parameter shape, which was most of this launch's time (CI). What is
  # asserted does not depend on which random values the weights take.
  env = dict(os.environ, JAX_DEFAULT_PRNG_IMPL='rbg')
  proc = subprocess.run(
      [sys.executable, '-m', 'launch.benchmark', f'--config={SPEC}', '--threads=1',
       '--steps=1', f'--output={output}'] + [f'--config.{o}' for o in TINY],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout, json.loads(output.read_text())


@pytest.mark.slow(seconds=87)
def test_the_launcher_reports_both_sides_threads_and_the_ratio(launched):
  stdout, output = launched
  assert output['benchmark'] == 'predict'
  results = output['threads=1']
  assert results['threads']['jax_threads'] == 1 and results['jax_threads'] == 1
  assert results['batch_size'] == 1 and results['image_size'] == [64, 64]
  assert results['timed_batches'] == 1 and results['distinct_batches'] == 2
  for side in ('yolact', 'mask_rcnn'):
    assert results[f'{side}_s'] > 0 and results[f'{side}_compile_s'] > 0
    assert math.isclose(results[f'{side}_images_per_s'], 1 / results[f'{side}_s'])
    assert results[f'{side}_flops'] > 0 and results[f'{side}_finite']
    assert 0 <= results[f'{side}_detections_per_image'] <= 10
    assert results[f'{side}_cpu_s'] >= 0
  assert results['sides']['yolact']['role'] == 'ours'
  assert results['sides']['mask_rcnn']['experiment'] == 'mask_rcnn_coco.py'
  summary = output['summary']
  ratio = summary['ratio_yolact_to_mask_rcnn@threads=1']
  assert math.isclose(ratio, results['yolact_s'] / results['mask_rcnn_s'])
  assert math.isclose(summary['speedup_yolact_over_mask_rcnn@threads=1'], 1 / ratio)
  assert summary['target_speedup_yolact_over_mask_rcnn'] == 2.0
  assert summary['target_met_yolact_over_mask_rcnn@threads=1'] == (1 / ratio >= 2.0)
  assert summary['one_thread_holds'], summary['one_thread_evidence']
  # The table: each side's row with its thread count, the ratio columns and the target.
  assert 'side threads' in stdout and 'images/s' in stdout
  assert 'yolact/mask_rcnn' in stdout and 'mask_rcnn/tv' in stdout
  assert 'target: yolact at least 2x as fast as mask_rcnn at threads=1' in stdout
  assert 'one thread holds' in stdout
  rows = compare.rows('predict', {'1': results})
  assert [(r['measurement'], r['side'], r['threads']) for r in rows][:2] == [
      ('yolact_vs_mask_rcnn', 'yolact', 1), ('yolact_vs_mask_rcnn', 'mask_rcnn', 1)]


def test_the_launcher_runs_or_skips_torchvision(launched):
  stdout, output = launched
  results = output['threads=1']
  if results['threads']['torch_threads'] is None:  # torch not importable there
    assert results['torchvision'].startswith('skipped: not importable')
    assert 'skipped: not importable' in stdout
    assert 'ratio_mask_rcnn_to_torchvision@threads=1' not in output['summary']
    return
  assert results['torch_threads'] == 1
  assert results['torchvision_s'] > 0 and results['torchvision_finite']
  assert results['torchvision_kwargs']['rpn_post_nms_top_n_test'] == 32
  assert 0 < results['torchvision_box_head_rois_per_image'] <= 32
  assert 0 <= results['torchvision_detections_per_image'] <= 10
  assert output['summary']['ratio_mask_rcnn_to_torchvision@threads=1'] > 0
  assert 'torchvision ran its box head on' in stdout


def test_a_lone_side_gets_a_row_without_ratios():
  results = {'jax_threads': 2, 'centernet_s': 0.5, 'centernet_images_per_s': 4.0,
             'centernet_cpu_s': 0.9, 'centernet_cpu_per_wall': 1.8,
             'centernet_busy_threads': 2, 'sides': {'centernet': {}}, 'batch_size': 2,
             'measurements': [{'name': 'centernet',
                               'sides': [['centernet', 'centernet_s', 'jax']],
                               'target_speedup': None}]}
  (row,) = compare.rows('predict', {'all': results})
  assert row['side'] == 'centernet' and row['threads'] == 2 and 'ratio' not in row
  assert compare.summary('predict', {'all': results}) == {}
  assert 'centernet' in compare.table('predict', {'all': results})


def test_train_step_mode_refuses_a_torchvision_mask_rcnn_beside_yolact():
  from vision_jax.benchmarks import train_step  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(SPEC)
  assert train_step.torchvision_comparison(config, {}, [], steps=1)[
      'torchvision_reference'].startswith('skipped')


def test_torchvision_inference_at_a_tiny_size():
  pytest.importorskip('torchvision')
  rng = np.random.default_rng(0)
  batches = [rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8) for _ in range(3)]
  results = torchvision_reference.mask_rcnn_inference_seconds(
      batches=batches, num_classes=3, rpn_pre_nms_top_n_test=64, rpn_post_nms_top_n_test=32,
      box_detections_per_img=10, threads=1)
  assert results['timed_batches'] == 2 and results['batch_size'] == 2
  assert results['image_size'] == (64, 64) and results['torch_threads'] == 1
  assert results['seconds_per_batch'] > 0 and results['cpu_s_per_batch'] > 0
  assert math.isclose(results['images_per_s'], 2 / results['seconds_per_batch'])
  assert 0 < results['box_head_rois_per_image'] <= 32
  assert 0 <= results['detections_per_image'] <= 10
  assert results['outputs_finite']
  with pytest.raises(ValueError, match='one shape'):
    torchvision_reference.mask_rcnn_inference_seconds(
        batches=[batches[0], batches[0][:1]], num_classes=3)
