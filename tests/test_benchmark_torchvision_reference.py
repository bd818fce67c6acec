"""torchvision's reference train step runs at a tiny size (speed itself is not asserted)."""
import pytest

from vision_jax.benchmarks import torchvision_reference


def test_module_imports_without_torch_and_reports_availability():
  assert isinstance(torchvision_reference.available(), bool)
  assert (torchvision_reference.import_error() is None) == torchvision_reference.available()


def _check(results, model):
  for key in ('seconds_per_step', 'steps_per_s', 'images_per_s', 'torch_threads'):
    assert results[key] > 0, key
  assert results['torch_version'] and results['torchvision_version']
  assert results['model'] == model
  assert results['image_size'] == (128, 128) and results['batch_size'] == 1
  # lr 0 keeps the random weights: the timed steps stay finite and do the real work.
  assert results['losses_finite']
  assert results['box_head_rois_per_image'] > results['head_rois_per_image'] > 0


def test_mask_rcnn_train_step_at_a_tiny_size():
  pytest.importorskip('torchvision')
  results = torchvision_reference.mask_rcnn_train_step_seconds(
      image_size=(128, 128), batch_size=1, num_classes=3, rpn_pre_nms_top_n_train=64,
      rpn_post_nms_top_n_train=32, rpn_batch_size_per_image=64, box_batch_size_per_image=16,
      box_positive_fraction=0.25, max_instances=2, steps=2, warmup=1)
  _check(results, 'maskrcnn_resnet50_fpn')
  assert results['trainable_backbone_layers'] == 5  # torchvision's default without weights
  assert results['backbone_norm'] == 'BatchNorm2d'
  assert results['objects_per_image'] == 2


def test_keypoint_rcnn_with_a_frozen_backbone_at_a_tiny_size():
  pytest.importorskip('torchvision')
  results = torchvision_reference.mask_rcnn_train_step_seconds(
      image_size=(128, 128), batch_size=1, num_classes=1, rpn_pre_nms_top_n_train=64,
      rpn_post_nms_top_n_train=32, box_batch_size_per_image=16, max_instances=8,
      keypoints=4, trainable_backbone_layers=3, steps=1, warmup=0)
  _check(results, 'keypointrcnn_resnet50_fpn')
  assert results['trainable_backbone_layers'] == 3
  assert results['backbone_norm'] == 'FrozenBatchNorm2d'
  with pytest.raises(ValueError, match='steps'):
    torchvision_reference.mask_rcnn_train_step_seconds(
        image_size=(128, 128), batch_size=1, num_classes=1, steps=0)
