"""YOLACT pieces: the FPN switches, networks, anchors, targets, losses and inference."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import jitted
from vision_jax.losses import yolact as losses
from vision_jax.models import yolact
from vision_jax.nn import fpn
from vision_jax.ops import boxes as box_ops
from vision_jax.ops import masks as mask_ops

SMALL = yolact.YolactConfig(
    num_classes=3, backbone='resnet18', width=8, fpn_channels=16, num_prototypes=8,
    proto_channels=8, head_channels=8, anchor_scales=(12.0, 24.0, 48.0, 96.0, 192.0),
    anchor_reference_size=128, masks_per_image=16, detections_per_image=10)

# 'rbg' keys: same tests, much faster init compiles on CPU than threefry.
KEY = jax.random.key(0, impl='rbg')


# Networks and anchors.

def test_yolact_fpn_has_p3_to_p7_with_relu_and_conv_levels():
  feats = {f'C{i}': jnp.ones((2, 128 // 2**i, 64 // 2**i, 4 * i)) for i in range(3, 6)}
  model = fpn.FPN(8, in_levels=('C3', 'C4', 'C5'), extra_levels=2, extra_kind='conv',
                  upsample='bilinear', relu_outputs=True)
  variables, out = jitted.init_apply(model, KEY, feats)
  assert [o.shape[1:3] for o in out] == [(16, 8), (8, 4), (4, 2), (2, 1), (1, 1)]
  assert all(float(jnp.min(o)) >= 0 for o in out[:3])  # ReLU'd outputs
  assert {'extra0', 'extra1'} <= set(variables['params'])


def test_bilinear_upsampling_is_torch_half_pixel():
  x = jnp.arange(6, dtype=jnp.float32).reshape(1, 2, 3, 1)
  up = np.asarray(fpn.upsample2x(x, 'bilinear'))[0, :, :, 0]
  # torch.nn.functional.interpolate(scale_factor=2, mode='bilinear', align_corners=False)
  row = np.array([0.0, 0.25, 0.75, 1.25, 1.75, 2.0])
  np.testing.assert_allclose(up[0], row, atol=1e-6)
  np.testing.assert_allclose(up[1], row + 0.75, atol=1e-6)
  np.testing.assert_allclose(up[3], row + 3.0, atol=1e-6)


@pytest.mark.parametrize('proto_stride', [4, 2])
def test_outputs_line_up_with_the_anchors(proto_stride):
  config = dataclasses.replace(SMALL, proto_stride=proto_stride)
  model = yolact.Yolact(config)
  images = jnp.zeros((2, 64, 96, 3), jnp.uint8)
  variables, (out, _) = jitted.init_apply(model, KEY, images, train=True,
                                          mutable=['batch_stats'])
  num = yolact.anchors(config, (64, 96)).shape[0]
  assert num == 3 * (8 * 12 + 4 * 6 + 2 * 3 + 1 * 2 + 1 * 1)
  assert out['class_logits'].shape == (2, num, 4)
  assert out['box_deltas'].shape == (2, num, 4)
  assert out['coefficients'].shape == (2, num, 8)
  assert float(jnp.max(jnp.abs(out['coefficients']))) <= 1.0
  assert out['prototypes'].shape == (2, 64 // proto_stride, 96 // proto_stride, 8)
  assert out['semantic_logits'].shape == (2, 8, 12, 3)
  assert 'semantic_logits' not in jax.eval_shape(model.apply, variables, images)  # training only
  # One head for every level: its parameters do not depend on the number of levels.
  head = variables['params']['head']
  assert set(head) == {'upfeature', 'class_logits', 'box_deltas', 'coefficients'}


def test_anchors_scale_with_the_input_and_keep_area():
  config = yolact.YolactConfig(num_classes=1)  # scales given at 550
  a = np.asarray(yolact.anchors(config, (320, 320)))
  w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
  first = 24.0 * 320 / 550
  np.testing.assert_allclose(np.sqrt(w[:3] * h[:3]), first, rtol=1e-5)
  np.testing.assert_allclose(h[:3] / w[:3], [1.0, 0.5, 2.0], rtol=1e-5)
  # Cell centres: the first location of P3 is centred at (4, 4).
  np.testing.assert_allclose((a[0, :2] + a[0, 2:]) / 2, [4.0, 4.0], atol=1e-5)


def test_config_errors_name_the_problem():
  with pytest.raises(ValueError, match='proto_stride'):
    yolact.YolactConfig(num_classes=1, proto_stride=3)
  with pytest.raises(ValueError, match='unknown YOLACT model keys'):
    yolact.from_config_dict({'prototype_count': 3}, num_classes=2)
  with pytest.raises(ValueError, match='one scale per level'):
    yolact.YolactConfig(num_classes=1, anchor_scales=(1.0, 2.0))


# Targets and losses against numpy.

def _numpy_match(anchors, gt, classes, valid, crowd, pos=0.5, neg=0.4, crowd_iou=0.7):
  """The reference's `match`, in numpy."""
  iou = np.asarray(box_ops.box_iou(gt, anchors), np.float64)
  real = valid & ~crowd
  overlap = np.where(real[:, None], iou, -1.0)
  best, index = overlap.max(0), overlap.argmax(0)
  for _ in range(real.sum()):  # the strongest remaining pair, then remove both
    g, a = np.unravel_index(overlap.argmax(), overlap.shape)
    best[a], index[a] = 2.0, g
    overlap[:, a] = -1.0
    overlap[g, :] = -1.0
  labels = np.where(best >= pos, classes[index] + 1, np.where(best < neg, 0, -1))
  inter = np.asarray(box_ops.box_iou(gt, anchors)) * 0  # intersection over anchor area:
  for g in range(len(gt)):
    w = np.clip(np.minimum(gt[g, 2], anchors[:, 2]) - np.maximum(gt[g, 0], anchors[:, 0]), 0, None)
    h = np.clip(np.minimum(gt[g, 3], anchors[:, 3]) - np.maximum(gt[g, 1], anchors[:, 1]), 0, None)
    inter[g] = w * h / ((anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1]))
  crowd_best = np.where((valid & crowd)[:, None], inter, 0.0).max(0)
  labels[(labels == 0) & (crowd_best > crowd_iou)] = -1
  return labels, index


def test_anchor_matching_follows_the_reference():
  rng = np.random.default_rng(0)
  anchors = np.asarray(yolact.anchors(SMALL, (64, 64)))
  xy = rng.uniform(0, 48, size=(6, 2))
  gt = np.concatenate([xy, xy + rng.uniform(6, 30, size=(6, 2))], 1).astype(np.float32)
  classes = np.array([0, 1, 2, 1, 0, 2])
  valid = np.array([True, True, True, True, False, True])
  crowd = np.array([False, False, False, False, False, True])
  gt[5] = [0, 0, 40, 40]  # a large crowd region covering many small anchors
  targets = losses.match_anchors(jnp.asarray(anchors), gt, classes, valid, crowd)
  labels, index = _numpy_match(anchors, gt, classes, valid, crowd)
  np.testing.assert_array_equal(targets.labels, labels)
  positive = labels > 0
  np.testing.assert_array_equal(np.asarray(targets.gt_index)[positive], index[positive])
  assert positive.sum() >= 4  # every real box claims at least its best anchor
  assert (labels == -1).any() and (labels == 0).any()
  decoded = box_ops.decode_boxes(targets.box_targets, anchors, (10.0, 10.0, 5.0, 5.0))
  np.testing.assert_allclose(np.asarray(decoded)[positive], gt[index[positive]], atol=1e-3)


def test_ohem_keeps_three_hardest_negatives_per_positive():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 40, 4)).astype(np.float32)
  labels = np.zeros((2, 40), np.int32)
  labels[0, [3, 7]] = [1, 3]
  labels[0, [5, 9]] = -1
  labels[1, 11] = 2
  got = float(losses.ohem_class_loss(jnp.asarray(logits), jnp.asarray(labels), 3))
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  want = 0.0
  for b in range(2):
    pos = labels[b] > 0
    want -= logp[b, pos, labels[b, pos]].sum()
    negatives = np.flatnonzero(labels[b] == 0)
    hardest = negatives[np.argsort(logp[b, negatives, 0])][:3 * pos.sum()]
    want -= logp[b, hardest, 0].sum()
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_mask_loss_is_box_normalised_bce_inside_the_box():
  rng = np.random.default_rng(2)
  b, a, k, h, w, g, stride = 1, 12, 4, 8, 8, 2, 4
  protos = rng.uniform(0, 1, size=(b, h, w, k)).astype(np.float32)
  coefs = rng.uniform(-1, 1, size=(b, a, k)).astype(np.float32)
  labels = np.zeros((b, a), np.int32)
  labels[0, [1, 4, 6]] = [1, 2, 1]
  gt_index = np.zeros((b, a), np.int32)
  gt_index[0, [1, 4, 6]] = [0, 1, 0]
  gt_boxes = np.array([[[4, 4, 20, 16], [8, 12, 30, 30]]], np.float32)
  gt_masks = (rng.uniform(size=(b, g, h, w)) > 0.5).astype(np.float32)
  targets = losses.AnchorTargets(jnp.asarray(labels), jnp.asarray(gt_index),
                                 jnp.zeros((b, a, 4)))
  mask_loss = jax.jit(functools.partial(losses.mask_loss, stride=stride),
                      static_argnames='masks_per_image')
  got = float(mask_loss(jax.random.key(0), protos, coefs, targets, gt_boxes, gt_masks,
                        masks_per_image=8))
  want, each = 0.0, []
  for i in (1, 4, 6):
    logits = protos[0] @ coefs[0, i]
    t = gt_masks[0, gt_index[0, i]]
    bce = np.logaddexp(0, logits) - logits * t
    x1, y1, x2, y2 = gt_boxes[0, gt_index[0, i]] / stride
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    inside = (cols >= max(x1 - 1, 0)) & (cols < min(x2 + 1, w)) & (rows >= max(y1 - 1, 0)) & (
        rows < min(y2 + 1, h))
    each.append(bce[inside].sum() / ((x2 - x1) * (y2 - y1)))
    want += each[-1]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # The cap trains on a random positive, which stands for all 3 (the reference's scaling).
  capped = float(mask_loss(jax.random.key(0), protos, coefs, targets, gt_boxes, gt_masks,
                           masks_per_image=1))
  assert min(abs(capped - 3 * e) for e in each) < 1e-4 * capped


def test_semantic_loss_against_numpy():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
  masks = (rng.uniform(size=(2, 2, 4, 4)) > 0.6).astype(np.float32)
  classes = np.array([[0, 0], [2, 1]])
  valid = np.array([[True, True], [True, False]])
  got = float(losses.semantic_loss(logits, masks, classes, valid))
  target = np.zeros_like(logits)
  for b in range(2):
    for g in range(2):
      if valid[b, g]:
        target[b, :, :, classes[b, g]] = np.maximum(target[b, :, :, classes[b, g]], masks[b, g])
  want = (np.logaddexp(0, logits) - logits * target).sum() / (4 * 4 * 2)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_losses_are_finite_without_any_object():
  model = yolact.Yolact(SMALL)
  images = jnp.zeros((2, 64, 64, 3), jnp.uint8)
  batch = {'boxes': jnp.zeros((2, 3, 4)), 'classes': jnp.zeros((2, 3), jnp.int32),
           'valid': jnp.zeros((2, 3), bool), 'is_crowd': jnp.zeros((2, 3), bool),
           'masks': jnp.zeros((2, 3, 64, 64), jnp.uint8)}

  @jax.jit
  def init_and_losses(key, images, batch):
    out, _ = model.apply(model.init(key, images), images, train=True, mutable=['batch_stats'])
    return losses.yolact_losses(SMALL, yolact.anchors(SMALL, (64, 64)), out, batch,
                                jax.random.key(1))

  terms, num_positive = init_and_losses(KEY, images, batch)
  assert int(num_positive) == 0
  assert all(np.isfinite(float(v)) for v in terms.values())
  assert float(terms['box']) == 0.0 and float(terms['mask']) == 0.0


# Inference.

def test_detect_crops_masks_to_their_boxes():
  config = dataclasses.replace(SMALL, score_threshold=0.0)
  model = yolact.Yolact(config)
  images = jax.random.randint(jax.random.key(1), (1, 64, 64, 3), 0, 255).astype(jnp.uint8)
  out = jax.jit(lambda k, x: yolact.predict(model, model.init(k, x), x))(KEY, images)
  assert out['masks'].shape == (1, 10, 64, 64) and out['masks'].dtype == jnp.uint8
  valid = np.asarray(out['valid'][0])
  assert valid.any()
  # A pixel far outside a detection's (padded) box is never in its mask.
  region = np.asarray(mask_ops.box_region(out['boxes'][0], (64, 64), 1.0,
                                          padding=config.proto_stride * 1.5))
  masks = np.asarray(out['masks'][0]).astype(bool)
  assert not (masks & ~region).any()
  assert not masks[~valid].any()
  scores = np.asarray(out['scores'][0])[valid]
  assert (np.diff(scores) <= 0).all()
