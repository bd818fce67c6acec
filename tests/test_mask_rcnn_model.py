"""Mask R-CNN pieces: FPN, heads, anchors, targets, losses and post-processing."""
import dataclasses
import functools

import flax.linen as flax_nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import jitted
from vision_jax.losses import rcnn
from vision_jax.models import mask_rcnn
from vision_jax.models import rcnn_inference
from vision_jax.nn import conv
from vision_jax.nn import fpn
from vision_jax.nn import upsample
from vision_jax.ops import pooling

SMALL = mask_rcnn.MaskRCNNConfig(
    num_classes=3, backbone='resnet18', width=8, norm='batch', fpn_channels=16,
    anchor_sizes=((16,), (32,), (64,), (128,), (256,)), rpn_pre_nms_top_n_train=64,
    rpn_post_nms_top_n_train=32, rpn_pre_nms_top_n_test=64, rpn_post_nms_top_n_test=32,
    roi_batch_size_per_image=16, box_fc_dim=32, mask_conv_dim=8, keypoint_head=True,
    num_keypoints=4, keypoint_conv_dim=8, keypoint_num_convs=2, detections_per_image=10)

# 'rbg' keys: same tests, much faster init compiles on CPU than threefry.
KEY = jax.random.key(0, impl='rbg')


def test_fpn_levels_and_strides():
  feats = {f'C{i}': jnp.ones((2, 64 // 2**i, 96 // 2**i, 4 * i)) for i in range(2, 6)}
  _, out = jitted.init_apply(fpn.FPN(channels=8), KEY, feats)
  assert [o.shape for o in out] == [(2, 16, 24, 8), (2, 8, 12, 8), (2, 4, 6, 8),
                                    (2, 2, 3, 8), (2, 1, 2, 8)]


def test_fpn_rejects_sizes_that_do_not_halve():
  feats = {'C2': jnp.ones((1, 10, 10, 4)), 'C3': jnp.ones((1, 4, 4, 4)),
           'C4': jnp.ones((1, 2, 2, 4)), 'C5': jnp.ones((1, 1, 1, 4))}
  with pytest.raises(ValueError, match='multiples of 32'):
    fpn.FPN(channels=8).init(jax.random.key(0), feats)


def test_conv_transpose_2x2_matches_the_definition():
  x = np.random.default_rng(0).normal(size=(1, 3, 2, 5)).astype(np.float32)
  layer = upsample.ConvTranspose2x2(4)
  variables = layer.init(jax.random.key(1), x)
  kernel = np.asarray(variables['params']['kernel'])  # [2, 2, out, in]
  y = np.asarray(layer.apply(variables, x))
  expected = np.zeros((1, 6, 4, 4), np.float32)
  for m in range(3):
    for n in range(2):
      for i in range(2):
        for j in range(2):
          expected[0, 2 * m + i, 2 * n + j] = kernel[i, j] @ x[0, m, n]
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_model_outputs_and_anchor_counts():
  model = mask_rcnn.MaskRCNN(SMALL)
  images = jnp.zeros((2, 64, 96, 3))
  # Shapes only (test_predict_has_static_shapes_under_jit runs the model).
  out = jax.eval_shape(lambda k, x: model.apply(model.init(k, x), x), KEY, images)
  num_anchors = sum(a.shape[0] for a in mask_rcnn.anchors(SMALL, (64, 96)))
  assert num_anchors == 3 * (16 * 24 + 8 * 12 + 4 * 6 + 2 * 3 + 1 * 2)
  assert out['rpn_logits'].shape == (2, num_anchors)
  assert out['rpn_deltas'].shape == (2, num_anchors, 4)
  assert out['class_logits'].shape == (2, 1, 4)
  assert out['box_deltas'].shape == (2, 1, 4, 4)
  assert out['mask_logits'].shape == (2, 1, 28, 28, 4)
  assert out['keypoint_logits'].shape == (2, 1, 56, 56, 4)


def test_model_rejects_inputs_not_multiple_of_32():
  model = mask_rcnn.MaskRCNN(SMALL)
  with pytest.raises(ValueError, match='multiples of 32'):
    model.init(jax.random.key(0), jnp.zeros((1, 48, 64, 3)))


def test_from_config_dict_rejects_unknown_keys():
  with pytest.raises(ValueError, match="unknown Mask R-CNN model keys \\['fpn_width'\\]"):
    mask_rcnn.from_config_dict({'fpn_width': 3}, num_classes=3)


def test_torchvision_anchors_are_rounded():
  config = mask_rcnn.MaskRCNNConfig.torchvision()
  cells = mask_rcnn.anchors(config, (64, 64))[0][:3]
  # torchvision's cell anchors for size 32: round([-w, -h, w, h] / 2) for ratios .5, 1, 2.
  np.testing.assert_array_equal(np.asarray(cells), [[-23, -11, 23, 11], [-16, -16, 16, 16],
                                                    [-11, -23, 11, 23]])


def test_crop_masks_equals_roi_align():
  rng = np.random.default_rng(0)
  masks = (rng.random((2, 3, 40, 50)) > 0.5).astype(np.uint8)
  corners = rng.uniform(-5, 55, (2, 4, 2, 2)).astype(np.float32)
  boxes = np.concatenate([corners.min(2), corners.max(2)], -1)
  gt_index = rng.integers(0, 3, (2, 4)).astype(np.int32)
  ours = jax.jit(rcnn.crop_masks, static_argnums=3)(jnp.asarray(masks), gt_index, boxes, 7)
  pooled = jax.jit(lambda f, b: pooling.roi_align(f, b, 7, sampling_ratio=2, aligned=True))(
      jnp.asarray(masks.transpose(0, 2, 3, 1), jnp.float32), boxes)
  expected = np.take_along_axis(np.asarray(pooled), gt_index[:, :, None, None, None], -1)
  np.testing.assert_allclose(ours, expected[..., 0], atol=1e-5)


def test_paste_masks_fills_the_box():
  boxes = jnp.array([[8.0, 4.0, 24.0, 20.0]])
  pasted = rcnn_inference.paste_masks(jnp.ones((1, 28, 28)), boxes, (32, 32))[0]
  inside = np.zeros((32, 32), bool)
  inside[4:20, 8:24] = True
  binary = np.asarray(pasted) >= 0.5
  np.testing.assert_array_equal(binary, inside)
  assert float(pasted[12, 16]) == pytest.approx(1.0)
  assert float(pasted[3, 8]) == 0.0
  # Zero padding beyond the mask: a pixel whose center samples before the first cell fades.
  shifted = rcnn_inference.paste_masks(jnp.ones((1, 28, 28)), boxes + 0.3, (32, 32))[0]
  assert 0.5 < float(shifted[4, 8]) < 1.0


def test_keypoint_targets_and_decode_are_inverse():
  boxes = jnp.array([[10.0, 20.0, 66.0, 48.0]])
  keypoints = jnp.array([[[10.0, 20.0, 2.0], [40.3, 30.1, 2.0], [66.0, 48.0, 1.0],
                          [5.0, 30.0, 2.0], [30.0, 30.0, 0.0]]])
  index, valid = rcnn.keypoint_targets(keypoints, boxes, 56)
  np.testing.assert_array_equal(valid, [[True, True, True, False, False]])
  heatmaps = jax.nn.one_hot(index, 56 * 56).reshape(1, 5, 56, 56).transpose(0, 2, 3, 1)
  decoded = rcnn_inference.decode_keypoints(heatmaps, boxes)
  cell = np.array([56.0 / 56, 28.0 / 56])  # box size / heatmap size
  err = np.abs(np.asarray(decoded[0, :3, :2]) - np.asarray(keypoints[0, :3, :2]))
  assert np.all(err <= cell)


def test_rpn_losses_prefer_the_right_anchors_and_ignore_padding():
  anchors = jnp.array([[0.0, 0.0, 16.0, 16.0], [32.0, 32.0, 48.0, 48.0], [0.0, 32.0, 16, 48]])
  gt = jnp.array([[[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 0.0, 0.0]]])
  valid = jnp.array([[True, False]])
  right = jnp.array([[10.0, -10.0, -10.0]])
  wrong = -right
  deltas = jnp.zeros((1, 3, 4))
  key = jax.random.key(0)
  losses = jax.jit(lambda logits, d: rcnn.rpn_losses(SMALL, anchors, logits, d, gt, valid,
                                                     key))
  good, bad = losses(right, deltas), losses(wrong, deltas)
  assert float(good[0]) < 1e-3 < float(bad[0])
  assert float(good[1]) == 0.0  # zero deltas on an exact anchor
  grads = jax.jit(jax.grad(lambda d: losses(right, d)[1]))(deltas + 0.1)
  assert np.all(np.isfinite(grads)) and float(jnp.abs(grads[0, 0]).sum()) > 0
  assert float(jnp.abs(grads[0, 1:]).sum()) == 0.0


def test_sample_rois_appends_ground_truth_and_puts_positives_first():
  proposals = jnp.array([[[50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 10.0, 11.0],
                          [0.0, 0.0, 0.0, 0.0]]])
  proposal_valid = jnp.array([[True, True, False]])
  gt = jnp.array([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]]])
  config = dataclasses.replace(SMALL, roi_batch_size_per_image=4, roi_positive_fraction=0.5)
  sample = jax.jit(functools.partial(rcnn.sample_rois, config))(
      jax.random.key(0), proposals, proposal_valid, gt, jnp.array([[2, -1]]),
      jnp.array([[True, False]]))
  np.testing.assert_array_equal(sample.positive, [[True, True, False, False]])
  np.testing.assert_array_equal(sample.valid, [[True, True, True, False]])
  np.testing.assert_array_equal(sample.labels[0, :3], [3, 3, 0])
  assert np.all(np.isfinite(sample.box_targets))


def test_detect_keeps_confident_boxes_and_suppresses_duplicates():
  config = dataclasses.replace(SMALL, detections_per_image=4, num_classes=2)
  proposals = jnp.array([[[0.0, 0.0, 10.0, 10.0], [0.5, 0.0, 10.0, 10.0],
                          [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 5.0, 5.0]]])
  logits = jnp.array([[[0.0, 8.0, 0.0], [0.0, 7.0, 0.0], [0.0, 0.0, 9.0], [9.0, 0.0, 0.0]]])
  out = jax.jit(functools.partial(rcnn_inference.detect, config))(
      proposals, jnp.array([[True, True, True, False]]), logits, jnp.zeros((1, 4, 3, 4)),
      jnp.array([[64, 64]]))
  assert int(out['valid'].sum()) == 2  # the duplicate is suppressed, the padding ignored
  np.testing.assert_array_equal(out['classes'][0, :2], [1, 0])
  np.testing.assert_allclose(out['boxes'][0, :2], proposals[0, [2, 0]])
  assert float(out['scores'][0, 0]) > 0.99


def test_predict_has_static_shapes_under_jit():
  model = mask_rcnn.MaskRCNN(SMALL)
  images = jnp.zeros((2, 64, 64, 3))
  out = jax.jit(lambda k, x: rcnn_inference.predict(model, model.init(k, x), x))(KEY, images)
  assert out['boxes'].shape == (2, 10, 4)
  assert out['masks'].shape == (2, 10, 64, 64) and out['masks'].dtype == jnp.uint8
  assert out['keypoints'].shape == (2, 10, 4, 3)


def test_head_rois_per_image_caps_the_positive_slots():
  assert rcnn.num_positive_slots(SMALL) == 4  # 16 RoIs x 0.25
  assert rcnn.num_positive_slots(dataclasses.replace(SMALL, head_rois_per_image=3)) == 3
  assert rcnn.num_positive_slots(dataclasses.replace(SMALL, head_rois_per_image=99)) == 4


def test_strided_1x1_conv_equals_flax_conv():
  x = np.random.default_rng(0).normal(size=(2, 5, 7, 6)).astype(np.float32)
  flax_conv = flax_nn.Conv(4, (1, 1), strides=(2, 2), padding='VALID')
  variables = flax_conv.init(jax.random.key(0), x)
  ours = conv.Conv(4, 1, strides=2).apply(variables, x)  # dots on XLA:CPU
  np.testing.assert_allclose(ours, flax_conv.apply(variables, x), rtol=1e-5, atol=1e-5)
