"""The CPU-tuned and the plain kernels (`vision_jax.ops.backend`) compute the same thing.

Every check traces the same function once under `use_kernels('cpu')` and once under
`use_kernels('plain')` (fresh jit wrappers each time: the choice is read at trace time)
and compares outputs and gradients: convolutions (1x1 strided, 3x3, inside lax.switch),
RoIAlign (single and multilevel), NMS (identical indices and valid masks) and a whole
tiny Mask R-CNN loss with its gradient.
"""
import functools

import flax.linen as flax_nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.losses import rcnn
from vision_jax.models import mask_rcnn
from vision_jax.models import rcnn_inference
from vision_jax.nn import conv
from vision_jax.nn import upsample
from vision_jax.ops import backend
from vision_jax.ops import pooling
from vision_jax.ops import suppression
from vision_jax.ops import switch

KINDS = ('cpu', 'plain')


def _both(make_fn, *args):
  """{kind: jax.jit(make_fn())(*args)} traced under each kernel choice (each run once:
  `backend.run_once`, the same compile options for both)."""
  out = {}
  for kind in KINDS:
    with backend.use_kernels(kind):
      out[kind] = backend.run_once(make_fn(), *args)
  return out


def _assert_trees_close(a, b, rtol=1e-5, atol_scale=1e-5):
  """Leafwise: |a - b| <= rtol |b| + atol_scale * max|b| (gradients vary in scale)."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    assert x.shape == y.shape
    scale = float(np.max(np.abs(y))) if y.size else 0.0
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol_scale * scale + 1e-7)


# --- the setting itself ------------------------------------------------------------------

def test_unknown_kernels_are_a_clear_error():
  with pytest.raises(ValueError, match=r"'gpu'.*\('auto', 'cpu', 'plain'\)"):
    backend.set_kernels('gpu')
  with pytest.raises(ValueError, match="'gpu'"):
    with backend.use_kernels('gpu'):
      pass


def test_auto_is_cpu_here_and_use_kernels_restores():
  assert jax.default_backend() == 'cpu'
  with backend.use_kernels('auto'):
    assert backend.kernels() == 'cpu' and backend.cpu_tuned()
    with backend.use_kernels('plain'):
      assert backend.kernels() == 'plain' and not backend.cpu_tuned()
    assert backend.kernels() == 'cpu'
  assert backend.KERNELS == ('auto', 'cpu', 'plain')


# --- convolutions -------------------------------------------------------------------------

CONVS = {
    '1x1_stride2': dict(features=6, kernel_size=1, strides=2),
    '1x1_stride_2x1': dict(features=6, kernel_size=1, strides=(2, 1), use_bias=False),
    '3x3': dict(features=6, kernel_size=3),
    '3x3_in_switch': dict(features=6, kernel_size=3, in_switch=True),
    '3x3_stride2_in_switch': dict(features=6, kernel_size=3, strides=2, in_switch=True),
    '7x7_stride2': dict(features=4, kernel_size=7, strides=2),
}


def _conv_setup(settings):
  x = np.random.default_rng(0).normal(size=(2, 9, 12, 5)).astype(np.float32)
  layer = conv.Conv(**settings)
  params = layer.init(jax.random.key(1), x)['params']
  params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias
  return layer, params, x


@pytest.mark.parametrize('name', sorted(CONVS))
def test_conv_paths_agree_with_each_other_and_flax(name):
  settings = CONVS[name]
  layer, params, x = _conv_setup(settings)
  k, s = settings['kernel_size'], settings.get('strides', 1)
  s = (s, s) if isinstance(s, int) else s
  pad = (k - 1) // 2
  flax_layer = flax_nn.Conv(settings['features'], (k, k), strides=s,
                            padding=((pad, pad), (pad, pad)),
                            use_bias=settings.get('use_bias', True))
  # Same parameter tree and initial values as flax.linen.Conv (checkpoints, conversion).
  flax_params = flax_layer.init(jax.random.key(1), x)['params']
  assert jax.tree.map(jnp.shape, flax_params) == jax.tree.map(jnp.shape, params)
  _assert_trees_close(layer.init(jax.random.key(1), x)['params'], flax_params, 0, 0)

  def loss(p, x):
    y = layer.apply({'params': p}, x)
    return jnp.sum(jnp.sin(y)), y

  out = _both(lambda: jax.value_and_grad(loss, argnums=(0, 1), has_aux=True), params, x)
  expected = flax_layer.apply({'params': params}, x)
  for kind in KINDS:
    (_, y), _ = out[kind]
    _assert_trees_close(y, expected)
  _assert_trees_close(out['cpu'], out['plain'])


def _switch_loss_fn(apply):
  """Gradient of a 2-branch lax.switch over `apply(params, x)` (branch 1 is taken)."""

  def loss(params, x):
    branches = [lambda p, x, scale=scale: jnp.sum(jnp.sin(apply(p, x))) * scale
                for scale in (1.0, 2.0)]
    return jax.lax.switch(jnp.int32(1), branches, params, x)

  return lambda: jax.value_and_grad(loss, argnums=(0, 1))


@pytest.mark.parametrize('name', ['1x1_stride2', '3x3', '3x3_in_switch'])
def test_conv_inside_lax_switch(name):
  layer, params, x = _conv_setup(CONVS[name])
  out = _both(_switch_loss_fn(lambda p, x: layer.apply({'params': p}, x)), params, x)
  _assert_trees_close(out['cpu'], out['plain'])


def test_conv_transpose_4x4_inside_lax_switch():
  x = np.random.default_rng(0).normal(size=(3, 5, 6, 4)).astype(np.float32)
  layer = upsample.ConvTranspose4x4(3, use_bias=True, in_switch=True)
  params = layer.init(jax.random.key(0), x)['params']
  out = _both(_switch_loss_fn(lambda p, x: layer.apply({'params': p}, x)), params, x)
  _assert_trees_close(out['cpu'], out['plain'])


def _traces_conv(fn, *args):
  return 'conv_general_dilated' in str(jax.make_jaxpr(lambda *a: fn(*a))(*args))


def test_each_path_traces_the_kernel_it_documents():
  x = np.zeros((1, 8, 8, 5), np.float32)
  for name, dots_on_cpu in [('1x1_stride2', True), ('3x3_in_switch', True), ('3x3', False),
                            ('3x3_stride2_in_switch', False)]:
    layer, params, _ = _conv_setup(CONVS[name])
    apply = functools.partial(layer.apply, {'params': params})
    with backend.use_kernels('cpu'):
      assert _traces_conv(apply, x) != dots_on_cpu, name
    with backend.use_kernels('plain'):
      assert _traces_conv(apply, x), name


# --- RoIAlign -----------------------------------------------------------------------------

def _random_boxes(rng, shape, extent):
  corners = rng.uniform(-8.0, extent + 8.0, shape + (2, 2)).astype(np.float32)
  return np.concatenate([corners.min(-2), corners.max(-2)], -1)


def _pool_value_and_vjp(pool, features, boxes, cotangent):
  out, vjp = jax.vjp(lambda f: pool(f, boxes), features)
  return out, vjp(cotangent)[0]


@pytest.mark.parametrize('sampling_ratio,aligned', [(2, True), (2, False), (0, True), (6, False)])
def test_roi_align_paths_agree(sampling_ratio, aligned):
  rng = np.random.default_rng(sampling_ratio)
  features = rng.normal(size=(2, 20, 24, 5)).astype(np.float32)
  boxes = _random_boxes(rng, (2, 37), 96.0)
  cotangent = rng.normal(size=(2, 37, 7, 7, 5)).astype(np.float32)
  pool = functools.partial(pooling.roi_align, output_size=7, spatial_scale=0.25,
                           sampling_ratio=sampling_ratio, aligned=aligned)
  out = _both(lambda: lambda *args: _pool_value_and_vjp(pool, *args), features, boxes,
              cotangent)
  _assert_trees_close(out['cpu'], out['plain'])


@pytest.mark.parametrize('sampling_ratio', [2, 0])
def test_multilevel_roi_align_paths_agree(sampling_ratio):
  rng = np.random.default_rng(10 + sampling_ratio)
  pyramid = [rng.normal(size=(2, 128 // 2**l, 96 // 2**l, 4)).astype(np.float32)
             for l in range(2, 6)]
  boxes = _random_boxes(rng, (2, 45), 480.0)
  cotangent = rng.normal(size=(2, 45, 7, 7, 4)).astype(np.float32)
  pool = functools.partial(pooling.multilevel_roi_align, output_size=7, min_level=2,
                           max_level=5, sampling_ratio=sampling_ratio)
  levels = pooling.assign_fpn_levels(boxes, min_level=2, max_level=5)
  assert len(np.unique(levels)) >= 3  # several levels really are used
  out = _both(lambda: lambda *args: _pool_value_and_vjp(pool, *args), pyramid, boxes,
              cotangent)
  _assert_trees_close(out['cpu'], out['plain'])


# --- NMS ----------------------------------------------------------------------------------

def _nms_problem(seed, num, classes=None):
  """Boxes on a coarse grid (exact duplicates, equal IoUs), tied scores, 20% invalid."""
  rng = np.random.default_rng(seed)
  xy = rng.integers(0, 25, (num, 2)) * 4.0
  wh = rng.integers(2, 10, (num, 2)) * 4.0
  boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
  scores = rng.integers(0, 12, num).astype(np.float32) / 12  # many equal scores
  valid = rng.random(num) > 0.2
  class_ids = None if classes is None else rng.integers(0, classes, num).astype(np.int32)
  return boxes, scores, valid, class_ids


# (boxes, classes, iou threshold, max_output_size): several tiles (> 512 boxes), outputs
# truncated mid-tile, more outputs than boxes.
NMS_CASES = [(40, None, 0.5, 64), (700, None, 0.5, 1000), (1300, None, 0.3, 150),
             (600, 4, 0.5, 600), (1100, 7, 0.7, 90), (300, 3, 0.0, 20)]


@pytest.mark.parametrize('num,classes,threshold,max_output', NMS_CASES)
def test_nms_paths_return_identical_results(num, classes, threshold, max_output):
  boxes, scores, valid, class_ids = _nms_problem(num, num, classes)
  if classes is None:
    out = _both(lambda: lambda b, s, v: suppression.nms(b, s, threshold, max_output, valid=v),
                boxes, scores, valid)
  else:
    out = _both(lambda: lambda b, s, c, v: suppression.batched_nms(
        b, s, c, threshold, max_output, valid=v), boxes, scores, class_ids, valid)
  greedy, tiled = out['cpu'], out['plain']
  assert 0 < int(greedy.valid.sum()) < num  # the case suppresses something
  np.testing.assert_array_equal(tiled.indices, greedy.indices)
  np.testing.assert_array_equal(tiled.valid, greedy.valid)


def test_batched_nms_paths_agree_under_vmap():
  problems = [_nms_problem(seed, 400, 5) for seed in range(3)]
  boxes, scores, valid, class_ids = (np.stack(a) for a in zip(*problems))
  out = _both(lambda: jax.vmap(lambda b, s, c, v: suppression.batched_nms(
      b, s, c, 0.6, 120, valid=v)), boxes, scores, class_ids, valid)
  np.testing.assert_array_equal(out['plain'].indices, out['cpu'].indices)
  np.testing.assert_array_equal(out['plain'].valid, out['cpu'].valid)


# --- a whole tiny Mask R-CNN --------------------------------------------------------------

TINY = mask_rcnn.MaskRCNNConfig(
    num_classes=3, backbone='resnet18', width=8, norm='batch', fpn_channels=16,
    anchor_sizes=((16,), (32,), (64,), (128,), (256,)), rpn_pre_nms_top_n_train=64,
    rpn_post_nms_top_n_train=32, roi_batch_size_per_image=64, box_fc_dim=32,
    mask_conv_dim=8, mask_num_convs=2, keypoint_head=True, num_keypoints=4,
    keypoint_conv_dim=8, keypoint_num_convs=1)
IMAGE = 64


def _tiny_batch():
  rng = np.random.default_rng(0)
  boxes = np.array([[[4, 6, 30, 40], [30, 20, 60, 50], [0, 0, 0, 0]],
                    [[10, 10, 50, 34], [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
  valid = np.array([[True, True, False], [True, False, False]])
  masks = np.zeros((2, 3, IMAGE, IMAGE), np.uint8)
  keypoints = np.zeros((2, 3, 4, 3), np.float32)
  for b in range(2):
    for m in range(3):
      if valid[b, m]:
        x1, y1, x2, y2 = boxes[b, m].astype(int)
        masks[b, m, y1 + 2:y2 - 2, x1 + 3:x2 - 3] = 1
        keypoints[b, m, :, 0] = rng.uniform(x1, x2, 4)
        keypoints[b, m, :, 1] = rng.uniform(y1, y2, 4)
        keypoints[b, m, :, 2] = 2.0
  return {'image': rng.uniform(size=(2, IMAGE, IMAGE, 3)).astype(np.float32),
          'boxes': boxes, 'classes': np.array([[0, 2, 0], [1, 0, 0]], np.int32),
          'valid': valid, 'masks': masks, 'keypoints': keypoints}


def _tiny_losses(model, params, batch_stats, batch, key):
  """Mask R-CNN's training losses, the mask / keypoint heads inside `switch_loss`.

  The composition of `vision_jax.tasks.mask_rcnn`, kept here so the test depends on the
  models, losses and ops only.
  """
  variables = {'params': params, 'batch_stats': batch_stats}
  rpn_key, roi_key = jax.random.split(key)
  pyramid, _ = model.apply(variables, batch['image'], train=True,
                           method=mask_rcnn.MaskRCNN.features, mutable=['batch_stats'])
  rpn_logits, rpn_deltas = model.apply(variables, pyramid, method=mask_rcnn.MaskRCNN.rpn)
  anchors = mask_rcnn.anchors(TINY, (IMAGE, IMAGE))
  gt_boxes, gt_valid = batch['boxes'], batch['valid']
  terms = {}
  terms['rpn_objectness'], terms['rpn_box'] = rcnn.rpn_losses(
      TINY, jnp.concatenate(anchors), rpn_logits, rpn_deltas, gt_boxes, gt_valid, rpn_key)
  image_sizes = jnp.full((2, 2), IMAGE, jnp.int32)
  proposals, _, proposal_valid = rcnn_inference.propose(TINY, anchors, rpn_logits, rpn_deltas,
                                                        image_sizes, train=True)
  sample = rcnn.sample_rois(TINY, roi_key, proposals, proposal_valid, gt_boxes,
                            batch['classes'], gt_valid)
  class_logits, box_deltas = model.apply(variables, pyramid, sample.boxes,
                                         method=mask_rcnn.MaskRCNN.box_head)
  terms['box_cls'], terms['box_reg'] = rcnn.box_head_losses(TINY, class_logits, box_deltas,
                                                            sample)

  def head_losses(head_inputs, data, *, slots):
    (head_params, pyramid), (batch, sample) = head_inputs, data
    rois = sample.boxes[:, :slots]
    positive, gt_index = sample.positive[:, :slots], sample.gt_index[:, :slots]
    head_vars = {'params': head_params}
    mask_logits = model.apply(head_vars, pyramid, rois, method=mask_rcnn.MaskRCNN.mask_head)
    targets = rcnn.crop_masks(batch['masks'], gt_index, rois, mask_logits.shape[2])
    mask = rcnn.mask_loss(mask_logits, sample.labels[:, :slots],
                          (targets >= 0.5).astype(jnp.float32), positive)
    heatmaps = model.apply(head_vars, pyramid, rois, method=mask_rcnn.MaskRCNN.keypoint_head)
    keypoints = jnp.take_along_axis(batch['keypoints'], gt_index[:, :, None, None], axis=1)
    index, valid = rcnn.keypoint_targets(keypoints, rois, heatmaps.shape[2])
    keypoint = rcnn.keypoint_loss(heatmaps, index, valid & positive[..., None])
    return mask + keypoint, {'mask': mask, 'keypoint': keypoint}

  buckets = rcnn.positive_slot_buckets(TINY)
  branch = jnp.searchsorted(jnp.asarray(buckets), jnp.max(jnp.sum(sample.positive, axis=1)))
  branches = [functools.partial(head_losses, slots=k) for k in buckets]
  head_params = {name: params[name] for name in ('mask_predictor', 'keypoint_predictor')}
  head_loss, head_terms = switch.switch_loss(branch, branches, (head_params, pyramid),
                                             (batch, sample))
  terms.update(head_terms)
  loss = sum(terms[name] for name in ('rpn_objectness', 'rpn_box', 'box_cls', 'box_reg'))
  return loss + head_loss, (terms, proposals, proposal_valid, sample.positive, branch)


@pytest.mark.extended  # each kernel pair is compared above; this is the whole-model check
@pytest.mark.slow(seconds=59)
def test_tiny_mask_rcnn_loss_and_gradient_agree():
  assert len(rcnn.positive_slot_buckets(TINY)) == 2  # the heads run in a real lax.switch
  model = mask_rcnn.MaskRCNN(TINY)
  batch = _tiny_batch()
  # Compiled: an eager init runs the whole model op by op, far slower on CPU. 'rbg' key:
  # same test, much faster init compile on CPU than threefry.
  variables = backend.run_once(model.init, jax.random.key(0, impl='rbg'),
                               jnp.asarray(batch['image']))
  loss_fn = functools.partial(_tiny_losses, model)
  out = _both(lambda: jax.value_and_grad(lambda *a: loss_fn(*a), has_aux=True),
              variables['params'], variables['batch_stats'], batch, jax.random.key(1))
  (loss, aux), grads = out['cpu']
  (plain_loss, plain_aux), plain_grads = out['plain']
  terms, proposals, proposal_valid, positive, branch = aux
  assert np.isfinite(float(loss)) and int(positive.sum()) > 0
  assert float(terms['mask']) > 0 and float(terms['keypoint']) > 0
  # Same proposals (NMS), sampled RoIs and head branch on both paths.
  np.testing.assert_array_equal(plain_aux[2], proposal_valid)
  np.testing.assert_array_equal(plain_aux[3], positive)
  assert int(plain_aux[4]) == int(branch)
  np.testing.assert_allclose(plain_aux[1], proposals, rtol=1e-5, atol=1e-3)
  _assert_trees_close(plain_aux[0], terms, rtol=1e-5, atol_scale=1e-5)
  np.testing.assert_allclose(plain_loss, loss, rtol=1e-5)
  # Every parameter gets a gradient, the same on both paths.
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
  _assert_trees_close(plain_grads, grads, rtol=1e-3, atol_scale=1e-4)
