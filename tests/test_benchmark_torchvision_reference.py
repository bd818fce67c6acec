"""torchvision's reference train step runs at a tiny size (speed itself is not asserted)."""
import numpy as np
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


def _our_batch(rng, *, size=128, instances=(2, 1), max_instances=4):
  """One batch of vision_jax.data's detection contract (numpy), masks included."""
  b = len(instances)
  batch = {'image': rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8),
           'boxes': np.zeros((b, max_instances, 4), np.float32),
           'classes': np.full((b, max_instances), -1, np.int32),
           'valid': np.zeros((b, max_instances), bool),
           'is_crowd': np.zeros((b, max_instances), bool),
           'masks': np.zeros((b, max_instances, size, size), np.uint8)}
  for i, n in enumerate(instances):
    for j in range(n):
      x1, y1 = rng.integers(0, size // 2, 2)
      x2, y2 = x1 + rng.integers(8, size // 2), y1 + rng.integers(8, size // 2)
      batch['boxes'][i, j] = (x1, y1, x2, y2)
      batch['classes'][i, j] = rng.integers(0, 3)
      batch['valid'][i, j] = True
      batch['masks'][i, j, y1:y2, x1:x2] = 1
  return batch


def test_images_and_targets_of_our_batch():
  torch = pytest.importorskip('torch')
  batch = _our_batch(np.random.default_rng(0), instances=(3, 1))
  batch['is_crowd'][0, 2] = True  # left out, as our losses leave it out
  images, targets = torchvision_reference.images_and_targets(torch, batch)
  assert len(images) == 2 and tuple(images[0].shape) == (3, 128, 128)
  assert float(images[0].max()) <= 1.0
  assert np.allclose(images[1].numpy().transpose(1, 2, 0) * 255, batch['image'][1], atol=1e-3)
  assert [len(t['boxes']) for t in targets] == [2, 1]
  assert targets[0]['labels'].tolist() == (batch['classes'][0, :2] + 1).tolist()
  assert tuple(targets[0]['masks'].shape) == (2, 128, 128)
  assert np.array_equal(targets[1]['boxes'].numpy(), batch['boxes'][1, :1])


def test_train_step_on_given_batches_one_per_step():
  pytest.importorskip('torchvision')
  rng = np.random.default_rng(0)
  batches = [_our_batch(rng, instances=n) for n in ((1, 1), (2, 1), (1, 3))]
  results = torchvision_reference.mask_rcnn_train_step_seconds(
      image_size=(128, 128), batch_size=2, num_classes=3, rpn_pre_nms_top_n_train=64,
      rpn_post_nms_top_n_train=32, rpn_batch_size_per_image=64, box_batch_size_per_image=16,
      steps=2, warmup=1, batches=batches, threads=1)
  assert results['data'] == 'the given batches' and results['distinct_batches'] == 2
  assert results['objects_per_image'] == (1.5 + 2.0) / 2  # the last two batches are timed
  assert results['torch_threads'] == 1
  assert results['losses_finite'] and results['cpu_per_wall'] >= 0
  assert results['cpu_s_per_step'] > 0
  with pytest.raises(ValueError, match='batches'):
    torchvision_reference.mask_rcnn_train_step_seconds(
        image_size=(128, 128), batch_size=2, num_classes=3, steps=4, batches=batches)
