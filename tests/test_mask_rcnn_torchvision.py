"""torchvision R-CNN weight conversion (vision_jax.models.mask_rcnn_torchvision): parity.

Two sources of truth:

* a stored fixture (tests/fixtures/mask_rcnn_torchvision_small.npz, written by
  tests/fixtures/make_mask_rcnn_torchvision_fixture.py): a small torchvision MaskRCNN
  (narrow resnet18 BasicBlock body, FPN 32, box head 64, mask head and a keypoint head)
  with its state dict, an input and its outputs; checked without torch;
* live torchvision (skipped without it): maskrcnn_resnet50_fpn and
  keypointrcnn_resnet50_fpn with random weights, randomized biases and BN statistics
  (calibrated on the input image, then perturbed, so that the activations stay O(1)).

Criterion for every compared tensor (`assert_close`): elementwise
|ours - ref| <= RTOL * |ref| + RTOL * max|ref|, RTOL = 1e-4, i.e.
np.testing.assert_allclose(rtol=1e-4, atol=1e-4 * max|ref|); the reported "relative
error" is max|ours - ref| / max|ref|.

Detections (when `vision_jax.models.rcnn_inference.predict` exists): each of the top 20
torchvision detections must have a valid detection of ours with the same label, box IoU
> 0.99 and |score difference| <= 1e-4. Masks and keypoints of the matched detections are
checked against torchvision's head outputs on its own final boxes, pasted / decoded with
our conventions (detectron2's paste: mask IoU >= 0.97; arg-max cell centres: >= 98% of
the keypoints within 0.01 px), because torchvision's paste (1-cell padding, integer
boxes) and bicubic keypoint decode differ from them by about a pixel; the agreement
with torchvision's final masks / keypoints is printed, not asserted (random-weight masks
are high-frequency, so a pixel of shift costs a lot of IoU).

All our computations run with jax.default_matmul_precision('highest') (no TF32 on GPUs).
Run the live part with torch and the project's packages, e.g.
  PYTHONPATH=$PWD:$PWD/.venv/lib/python3.11/site-packages /work/tv_venv/bin/python \
      -m pytest -s tests/test_mask_rcnn_torchvision.py
"""
import ast
import dataclasses
import functools
import importlib.util
import pathlib
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

# The project's own modules are imported plainly: if one fails to import, the parity
# tests fail (only a missing torch / torchvision skips the live ones).
from tests import jitted
from vision_jax.models import mask_rcnn  # pylint: disable=g-bad-import-order
from vision_jax.models import mask_rcnn_torchvision as mt
from vision_jax.models import rcnn_inference
from vision_jax.models.mask_rcnn import MaskRCNN

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
FIXTURE = FIXTURES / 'mask_rcnn_torchvision_small.npz'
GENERATOR = FIXTURES / 'make_mask_rcnn_torchvision_fixture.py'
RTOL = 1e-4
TOP_DETECTIONS = 20
INTERMEDIATE_KEYS = ('features_p2', 'features_p3', 'features_p4', 'features_p5',
                     'features_p6', 'rpn_logits', 'rpn_deltas', 'anchors', 'class_logits',
                     'box_deltas', 'mask_logits', 'keypoint_logits')


def assert_close(ours, ref, name, rtol=RTOL) -> float:
  """The module doc's criterion; returns max|ours - ref| / max|ref|."""
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  assert ours.shape == ref.shape, f'{name}: shape {ours.shape} != reference {ref.shape}'
  scale = float(np.abs(ref).max())
  assert scale > 0, f'{name}: the reference is all zeros, the comparison proves nothing'
  np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * scale, err_msg=name)
  return float(np.abs(ours - ref).max() / scale)


@functools.lru_cache(maxsize=None)
def _fixture():
  with np.load(FIXTURE) as data:
    return {k: data[k] for k in data.files}


def _state_dict(data):
  return {k[len('sd/'):]: v for k, v in data.items() if k.startswith('sd/')}


@functools.lru_cache(maxsize=None)
def _fixture_converted():
  return mt.from_torchvision(_state_dict(_fixture()))


def our_outputs(config, variables, image, boxes) -> dict:
  """Our intermediate outputs for one [H, W, 3] image and [R, 4] boxes (fixture layouts)."""
  model = MaskRCNN(config)

  @jax.jit
  def run(variables, images, boxes):
    pyramid = model.apply(variables, images, method=MaskRCNN.features)
    out = {f'features_p{i + 2}': p for i, p in enumerate(pyramid)}
    out['rpn_logits'], out['rpn_deltas'] = model.apply(variables, pyramid,
                                                       method=MaskRCNN.rpn)
    logits, deltas = model.apply(variables, pyramid, boxes, method=MaskRCNN.box_head)
    out['class_logits'], out['box_deltas'] = logits[0], deltas[0]
    if config.mask_head:
      out['mask_logits'] = model.apply(variables, pyramid, boxes,
                                       method=MaskRCNN.mask_head)[0]
    if config.keypoint_head:
      out['keypoint_logits'] = model.apply(variables, pyramid, boxes,
                                           method=MaskRCNN.keypoint_head)[0]
    return out

  with jax.default_matmul_precision('highest'):  # no TF32 / bf16 passes on accelerators
    out = jax.device_get(run(variables, jnp.asarray(image)[None],
                             jnp.asarray(boxes)[None]))
  out['anchors'] = np.concatenate(
      [np.asarray(a) for a in mask_rcnn.anchors(config, image.shape[:2])])
  return out


def compare_intermediates(ours, ref) -> dict:
  errors = {}
  for key in INTERMEDIATE_KEYS:
    if key in ref:
      errors[key] = assert_close(ours[key], ref[key], key)
  print('max relative errors:', {k: f'{v:.1e}' for k, v in errors.items()})
  return errors


def _iou(box, boxes):
  lt = np.maximum(box[:2], boxes[:, :2])
  rb = np.minimum(box[2:], boxes[:, 2:])
  inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
  area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  return inter / (area(box) + area(boxes) - inter)


def paste_reference(probs, boxes, image_hw):
  """detectron2's paste_masks_in_image in numpy: [n, M, M] probabilities in boxes [n, 4]
  -> [n, H, W]; pixel x samples the mask at (x + 0.5 - x1) / (x2 - x1) * M - 0.5,
  bilinearly, zero outside the mask."""
  m = probs.shape[-1]

  def weights(lo, hi, size):
    u = (np.arange(size) + 0.5 - lo[:, None]) / (hi - lo)[:, None] * m - 0.5
    return np.maximum(0.0, 1.0 - np.abs(u[:, :, None] - np.arange(m)))  # [n, size, M]

  wy = weights(boxes[:, 1], boxes[:, 3], image_hw[0])
  wx = weights(boxes[:, 0], boxes[:, 2], image_hw[1])
  return np.einsum('nyi,nij,nxj->nyx', wy, probs.astype(np.float64), wx)


def compare_detections(ours, ref, image_hw, top=TOP_DETECTIONS, score_atol=1e-4) -> dict:
  """Matches each of torchvision's `top` first detections to one of ours (module doc).

  Masks and keypoints of the matched pairs, when both sides have them, are compared to
  torchvision's head outputs on its final boxes, decoded with our conventions
  (detectron2's paste, arg-max cell centres): mask IoU >= 0.97, keypoints within
  0.01 px (and logits at RTOL) for >= 98% of them. Their agreement with torchvision's
  own paste / bicubic decode is returned as statistics only: those conventions differ.
  """
  valid = np.asarray(ours['valid'][0])
  boxes = np.asarray(ours['boxes'][0])[valid]
  scores = np.asarray(ours['scores'][0])[valid]
  classes = np.asarray(ours['classes'][0])[valid]
  count = min(top, len(ref['det_scores']))
  assert count == top, f'torchvision gave only {count} detections'
  stats = {'ious': [], 'score_diffs': [], 'matched': []}
  for i in range(count):
    label = int(ref['det_labels'][i]) - 1
    iou = np.where(classes == label, _iou(ref['det_boxes'][i], boxes), 0.0)
    candidates = np.flatnonzero(iou > 0.99)
    assert len(candidates), (
        f'torchvision detection {i} (label {label}, score {ref["det_scores"][i]:.5f}, box '
        f'{ref["det_boxes"][i]}) has no match; best IoU {iou.max() if len(iou) else 0:.4f}')
    j = candidates[np.argmin(np.abs(scores[candidates] - ref['det_scores'][i]))]
    diff = abs(float(scores[j]) - float(ref['det_scores'][i]))
    assert diff <= score_atol, f'detection {i}: score {scores[j]} vs {ref["det_scores"][i]}'
    stats['ious'].append(float(iou[j]))
    stats['score_diffs'].append(diff)
    stats['matched'].append(int(np.flatnonzero(valid)[j]))
  summary = (f'detections: worst IoU {min(stats["ious"]):.6f}, worst score diff '
             f'{max(stats["score_diffs"]):.1e}')
  matched = np.array(stats['matched'])

  def mask_iou(a, b):
    union = np.sum(a | b, axis=(-2, -1))
    return np.where(union > 0, np.sum(a & b, axis=(-2, -1)) / np.maximum(union, 1), 1.0)

  if 'masks' in ours and 'det_mask_probs' in ref:
    n = min(count, len(ref['det_mask_probs']))
    masks = np.asarray(ours['masks'][0])[matched[:n]].astype(bool)
    want = paste_reference(ref['det_mask_probs'][:n], ref['det_boxes'][:n], image_hw) >= 0.5
    stats['mask_ious'] = mask_iou(masks, want)
    stats['mask_ious_torchvision_paste'] = mask_iou(masks, ref['det_masks'][:n].astype(bool))
    summary += (f'; mask IoU vs detectron2-paste of torchvision probs: min '
                f'{stats["mask_ious"].min():.4f}, vs torchvision masks: mean '
                f'{stats["mask_ious_torchvision_paste"].mean():.3f}')
    assert stats['mask_ious'].min() >= 0.97, stats['mask_ious']
  if 'keypoints' in ours and 'det_keypoint_argmax' in ref:
    keypoints = np.asarray(ours['keypoints'][0])[matched]  # [top, K, 3]
    index = ref['det_keypoint_argmax'][:count]
    box = ref['det_boxes'][:count, None, :]
    want_x = box[..., 0] + (index % 56 + 0.5) * (box[..., 2] - box[..., 0]) / 56
    want_y = box[..., 1] + (index // 56 + 0.5) * (box[..., 3] - box[..., 1]) / 56
    close = ((np.abs(keypoints[..., 0] - want_x) <= 1e-2)
             & (np.abs(keypoints[..., 1] - want_y) <= 1e-2))
    stats['keypoints_equal'] = float(close.mean())
    logits = ref['det_keypoint_max_logit'][:count]
    stats['keypoint_logit_error'] = float(
        np.abs(keypoints[..., 2] - logits).max() / np.abs(logits).max())
    dist = np.linalg.norm(keypoints[..., :2] - ref['det_keypoints'][:count, :, :2], axis=-1)
    stats['keypoint_dist_torchvision_decode'] = dist
    summary += (f'; keypoints equal to the cell-centre decode: '
                f'{100 * stats["keypoints_equal"]:.1f}%, logit rel. error '
                f'{stats["keypoint_logit_error"]:.1e}, distance to torchvision\'s '
                f'bicubic decode: median {np.median(dist):.2f} px')
    assert stats['keypoints_equal'] >= 0.98
    assert stats['keypoint_logit_error'] <= RTOL
  print(summary)
  return stats


def run_predict(predict, config, variables, image):
  config = dataclasses.replace(config, score_threshold=0.0)
  model = MaskRCNN(config)
  fn = jax.jit(lambda v, x: predict(model, v, x))
  with jax.default_matmul_precision('highest'):
    return jax.device_get(fn(variables, jnp.asarray(image)[None]))


# ---------------------------------------------------------------- stored fixture (no torch)


def test_fixture_config_is_inferred_from_shapes():
  config, variables = _fixture_converted()
  assert config == mask_rcnn.MaskRCNNConfig.torchvision(
      num_classes=5, backbone='resnet18', width=8, fpn_channels=32, box_fc_dim=64,
      mask_head=True, mask_conv_dim=32, mask_num_convs=2, keypoint_head=True,
      num_keypoints=5, keypoint_conv_dim=32, keypoint_num_convs=2)
  want = jax.eval_shape(MaskRCNN(config).init, jax.random.PRNGKey(0),
                        jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  assert jax.tree.structure(variables) == jax.tree.structure(want)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(lambda x: x.shape, want)
  # BasicBlock names: conv1/bn1/conv2/bn2 and a downsample on the first block of 2..4.
  layer2 = variables['params']['backbone']['layer2']['0']
  assert set(layer2) == {'conv1', 'conv2', 'downsample'}
  assert set(variables['batch_stats']['backbone']['layer2']['0']) == {
      'bn1', 'bn2', 'downsample'}
  assert 'downsample' not in variables['params']['backbone']['layer1']['0']


def test_fixture_parity_without_torch():
  data = _fixture()
  config, variables = _fixture_converted()
  ours = our_outputs(config, variables, data['image'], data['boxes'])
  errors = compare_intermediates(ours, data)
  assert set(errors) == set(INTERMEDIATE_KEYS)


def test_fixture_detections_without_torch():
  predict = rcnn_inference.predict
  data = _fixture()
  config, variables = _fixture_converted()
  ours = run_predict(predict, config, variables, data['image'])
  stats = compare_detections(ours, data, data['image'].shape[:2])
  assert 'mask_ious' in stats and 'keypoints_equal' in stats


def test_legacy_names_and_module_prefix_convert_the_same():
  sd = _state_dict(_fixture())
  legacy = {}
  for key, value in sd.items():
    key = re.sub(r'^rpn\.head\.conv\.0\.0\.', 'rpn.head.conv.', key)
    key = re.sub(r'^backbone\.fpn\.(inner|layer)_blocks\.(\d)\.0\.',
                 r'backbone.fpn.\1_blocks.\2.', key)
    key = re.sub(r'^roi_heads\.mask_head\.(\d)\.0\.',
                 lambda m: f'roi_heads.mask_head.mask_fcn{int(m.group(1)) + 1}.', key)
    legacy['module.' + key] = value
  assert 'module.rpn.head.conv.weight' in legacy
  assert 'module.roi_heads.mask_head.mask_fcn2.bias' in legacy
  legacy['module.backbone.body.bn1.num_batches_tracked'] = np.array(7)
  _, want = _fixture_converted()
  _, got = mt.from_torchvision(legacy)
  jax.tree.map(np.testing.assert_array_equal, got, want)


def test_mismatches_name_the_path():
  sd = _state_dict(_fixture())
  config, _ = _fixture_converted()
  bad = dict(sd)
  bad['roi_heads.box_head.fc7.weight'] = np.zeros((64, 65), np.float32)
  with pytest.raises(ValueError, match=r'params/box_predictor/fc7/kernel'):
    mt.from_torchvision(bad, config)
  missing = dict(sd)
  del missing['backbone.body.layer3.1.bn2.running_var']
  with pytest.raises(ValueError, match=r'batch_stats/backbone/layer3/1/bn2/var'):
    mt.from_torchvision(missing, config)
  extra = dict(sd, **{'roi_heads.extra.weight': np.zeros(3, np.float32)})
  with pytest.raises(ValueError, match=r'roi_heads\.extra\.weight'):
    mt.from_torchvision(extra)
  # A config without the keypoint head leaves the keypoint tensors unused.
  with pytest.raises(ValueError, match=r'roi_heads\.keypoint_head\.0\.weight'):
    mt.from_torchvision(sd, dataclasses.replace(config, keypoint_head=False))
  with pytest.raises(ValueError, match=r'params/fpn/lateral0/kernel'):
    mt.from_torchvision(sd, dataclasses.replace(config, fpn_channels=16))


def test_coco_category_ids_copy_matches_the_data_module():
  # Read from the source, not imported: vision_jax.data loads TensorFlow, after which
  # importing torchvision (the live tests) crashes.
  source = (pathlib.Path(__file__).parents[1] / 'vision_jax' / 'data' / 'sources' /
            'coco.py').read_text()
  for node in ast.parse(source).body:
    if (isinstance(node, ast.Assign) and len(node.targets) == 1 and
        getattr(node.targets[0], 'id', None) == 'COCO_CATEGORY_IDS'):
      assert mt.COCO_CATEGORY_IDS == ast.literal_eval(node.value)
      break
  else:
    pytest.fail('COCO_CATEGORY_IDS not found in vision_jax/data/sources/coco.py')
  assert len(mt.COCO_CATEGORY_IDS) == 80 and len(set(mt.COCO_CATEGORY_IDS)) == 80


def test_coco_contiguous_keeps_background_and_the_80_ids():
  sd = _state_dict(_fixture())
  rng = np.random.default_rng(0)
  heads = {'roi_heads.box_predictor.cls_score': 1, 'roi_heads.box_predictor.bbox_pred': 4,
           'roi_heads.mask_predictor.mask_fcn_logits': 1}
  for prefix, rows in heads.items():
    for leaf in ('weight', 'bias'):
      shape = sd[f'{prefix}.{leaf}'].shape
      sd[f'{prefix}.{leaf}'] = rng.normal(size=(91 * rows,) + shape[1:]).astype(np.float32)
  full_config, full = mt.from_torchvision(sd)
  config, contiguous = mt.from_torchvision(sd, coco_contiguous=True)
  assert full_config.num_classes == 90 and config.num_classes == 80
  keep = np.array((0,) + mt.COCO_CATEGORY_IDS)
  box = lambda v: v['params']['box_predictor']
  np.testing.assert_array_equal(box(contiguous)['cls_score']['kernel'],
                                box(full)['cls_score']['kernel'][:, keep])
  np.testing.assert_array_equal(box(contiguous)['cls_score']['bias'],
                                box(full)['cls_score']['bias'][keep])
  np.testing.assert_array_equal(
      box(contiguous)['bbox_pred']['kernel'].reshape(-1, 81, 4),
      box(full)['bbox_pred']['kernel'].reshape(-1, 91, 4)[:, keep])
  mask = lambda v: v['params']['mask_predictor']['mask_fcn_logits']
  np.testing.assert_array_equal(mask(contiguous)['kernel'], mask(full)['kernel'][..., keep])
  np.testing.assert_array_equal(mask(contiguous)['bias'], mask(full)['bias'][keep])
  with pytest.raises(ValueError, match='91 class slots'):
    mt.from_torchvision(_state_dict(_fixture()), coco_contiguous=True)


def test_checkpoint_file_errors(tmp_path):
  missing = tmp_path / 'nowhere.pth'
  with pytest.raises(FileNotFoundError, match='nowhere.pth'):
    mt.load_torchvision_checkpoint(missing)


def test_init_from_torchvision_whole_model_and_imagenet_backbone():
  config, converted = _fixture_converted()
  fresh = jitted.init(MaskRCNN(config), jax.random.key(3), jnp.zeros((1, 64, 64, 3)))
  state = _state_dict(_fixture())
  whole = mt.init_from_torchvision(fresh, state, config)
  for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(converted)):
    np.testing.assert_array_equal(a, b)

  # An ImageNet classification ResNet: conv1, bn1, layer1..4 and fc; backbone only.
  body = {k[len('backbone.body.'):]: v for k, v in state.items()
          if k.startswith('backbone.body.')}
  body['fc.weight'] = np.zeros((10, 4), np.float32)
  started = mt.init_from_torchvision(fresh, body, config)
  for collection in started:
    for path, leaf in flax.traverse_util.flatten_dict(started[collection]).items():
      want = converted if path[0] == 'backbone' else fresh
      expected = flax.traverse_util.flatten_dict(want[collection])[path]
      np.testing.assert_array_equal(leaf, expected, err_msg=str(path))
  del body['layer1.0.conv1.weight']
  with pytest.raises(ValueError, match="layer1.0.conv1.weight' missing"):
    mt.init_from_torchvision(fresh, body, config)


# ---------------------------------------------------------------------- live torchvision


def _torch_modules():
  torch = pytest.importorskip('torch')
  pytest.importorskip('torchvision')
  spec = importlib.util.spec_from_file_location('_mask_rcnn_fixture_generator', GENERATOR)
  generator = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(generator)
  return torch, generator


def test_load_torchvision_checkpoint_reads_wrapped_state_dicts(tmp_path):
  torch, _ = _torch_modules()
  sd = {k: torch.from_numpy(v) for k, v in _state_dict(_fixture()).items()}
  path = tmp_path / 'model.pth'
  torch.save({'model': sd, 'epoch': 3}, path)
  config, got = mt.load_torchvision_checkpoint(path)
  want_config, want = _fixture_converted()
  assert config == want_config
  jax.tree.map(np.testing.assert_array_equal, got, want)


LIVE_SIZE = 320  # a multiple of 64: torchvision's P6 anchor stride (S // grid) is exact
LIVE_BOXES = 64
LIVE_KEYPOINT_BOXES = 16


def _live_model(builder, *, seed, image_seed, num_boxes, boxes_seed, **kwargs):
  """A random torchvision R-CNN at LIVE_SIZE, its image and boxes.

  Returns (torch, generator module, model in eval mode, image, boxes). Random BN
  statistics blow a random ResNet-50 up (all proposals degenerate): they are calibrated
  on the image, then perturbed; logits stay unscaled (else softmax saturates).
  """
  torch, generator = _torch_modules()
  from torchvision.models import detection  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  model = getattr(detection, builder)(
      weights=None, weights_backbone=None, min_size=LIVE_SIZE, max_size=LIVE_SIZE,
      box_score_thresh=0.0, **kwargs).eval()
  image = generator.random_image(LIVE_SIZE, seed=image_seed)
  generator.randomize_(model, seed=seed, logit_scale=1.0)
  generator.calibrate_batch_norms_(model, image, seed=seed)
  boxes = generator.random_boxes(num_boxes, LIVE_SIZE, seed=boxes_seed)
  return torch, generator, model, image, boxes


@pytest.fixture(scope='module')
def live_maskrcnn():
  """torchvision maskrcnn_resnet50_fpn (random, randomized) and both sides' outputs."""
  torch, generator, model, image, boxes = _live_model(
      'maskrcnn_resnet50_fpn', num_classes=91, seed=0, image_seed=3, num_boxes=LIVE_BOXES,
      boxes_seed=4)
  ref = generator.reference_outputs(model, image, boxes)
  config, variables = mt.from_torchvision(model.state_dict())
  return dict(torch=torch, generator=generator, model=model, image=image, boxes=boxes,
              ref=ref, config=config, variables=variables)


def test_live_maskrcnn_resnet50_parity(live_maskrcnn):
  lm = live_maskrcnn
  assert lm['config'] == mask_rcnn.MaskRCNNConfig.torchvision(num_classes=90)
  ours = our_outputs(lm['config'], lm['variables'], lm['image'], lm['boxes'])
  errors = compare_intermediates(ours, lm['ref'])
  assert set(errors) == set(INTERMEDIATE_KEYS) - {'keypoint_logits'}


def test_live_maskrcnn_resnet50_detections(live_maskrcnn):
  predict = rcnn_inference.predict
  lm = live_maskrcnn
  ref = lm['generator'].reference_detections(lm['model'], lm['image'])
  ours = run_predict(predict, lm['config'], lm['variables'], lm['image'])
  stats = compare_detections(ours, ref, lm['image'].shape[:2])
  assert 'mask_ious' in stats


def test_live_keypointrcnn_resnet50_parity():
  torch, generator, model, image, boxes = _live_model(
      'keypointrcnn_resnet50_fpn', num_keypoints=17, seed=1, image_seed=5,
      num_boxes=LIVE_KEYPOINT_BOXES, boxes_seed=6)
  with torch.no_grad():
    x = generator.normalize(model, image)
    features = model.backbone(x)
    heads = model.roi_heads
    pooled = heads.keypoint_roi_pool(features, [torch.from_numpy(boxes)],
                                     [(LIVE_SIZE, LIVE_SIZE)])
    want = heads.keypoint_predictor(heads.keypoint_head(pooled)).permute(0, 2, 3, 1).numpy()
  config, variables = mt.from_torchvision(model.state_dict())
  assert config == mask_rcnn.MaskRCNNConfig.torchvision(
      num_classes=1, mask_head=False, keypoint_head=True, num_keypoints=17)
  # The head alone, on torchvision's own FPN features (the backbone conversion is the
  # one checked on Mask R-CNN above): saves a second ResNet-50 compile.
  pyramid = [jnp.asarray(f.permute(0, 2, 3, 1).numpy()) for f in features.values()]
  with jax.default_matmul_precision('highest'):
    got = jax.jit(lambda v, p, b: MaskRCNN(config).apply(
        v, p, b, method=MaskRCNN.keypoint_head))(variables, pyramid,
                                                 jnp.asarray(boxes)[None])
  error = assert_close(got[0], want, 'keypoint_logits')
  print(f'keypoint_logits max relative error {error:.1e}')
