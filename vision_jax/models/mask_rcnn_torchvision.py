"""torchvision Mask R-CNN / Keypoint R-CNN / Faster R-CNN (FPN, v1) weights -> MaskRCNN.

  state_dict = torch.load('maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth', weights_only=True)
  config, variables = from_torchvision(state_dict)          # config inferred
  # or, reading the file (needs torch, never downloads):
  config, variables = load_torchvision_checkpoint('maskrcnn_resnet50_fpn_coco.pth')
  pyramid = MaskRCNN(config).apply(variables, images, method=MaskRCNN.features)

Supported: torchvision's `maskrcnn_resnet50_fpn`, `keypointrcnn_resnet50_fpn`,
`fasterrcnn_resnet50_fpn` (v1, not the *_v2 models whose heads have norms) and
`MaskRCNN` / `KeypointRCNN` / `FasterRCNN` built on a ResNet-FPN backbone of any depth
(BasicBlock or Bottleneck) and width, FPN width, box-head representation size, mask /
keypoint head widths and depths: all are read from the tensor shapes. Pre-0.13 key
names (`rpn.head.conv.weight`, `backbone.fpn.inner_blocks.0.weight`,
`roi_heads.mask_head.mask_fcn1.weight`) are accepted too, as torchvision accepts them.
Batch norms (BatchNorm2d or FrozenBatchNorm2d, eps 1e-5) become the config's
'frozen_batch' norm; `num_batches_tracked` entries are ignored.

Layout conversions: conv weights [out, in, kh, kw] -> kernels [kh, kw, in, out];
transposed-conv weights [in, out, kh, kw] -> [kh, kw, out, in] (`vision_jax.nn.upsample`);
linear weights [out, in] -> [in, out]; fc6 additionally has its input rows permuted from
torchvision's (C, H, W) flattening of the pooled 7x7 map to ours (H, W, C).

Classes: torchvision's COCO models have 91 box / mask outputs indexed by COCO category
id (0 = background, 11 ids unused); they convert to `num_classes=90` as they are, or,
with `coco_contiguous=True`, to the 80 official categories in the order of
`vision_jax.data.sources.coco.COCO_CATEGORY_IDS` (class c <-> model output c + 1;
copied here as `COCO_CATEGORY_IDS`).

`init_backbone_from_torchvision` starts the ResNet backbone of any family (YOLACT, ...)
from a torchvision ImageNet classification checkpoint.

Only numpy is needed for `from_torchvision` (torch tensors are accepted, converted with
`.detach().cpu().numpy()`); `load_torchvision_checkpoint` imports torch lazily.
"""
import os
import re
from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.models.mask_rcnn import MaskRCNN
from vision_jax.models.mask_rcnn import MaskRCNNConfig
from vision_jax.nn import resnet

_BODY = 'backbone.body.'
_FPN = 'backbone.fpn.'
# Flax leaf name -> torch suffix, for the norm layers.
_NORM_LEAVES = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
                'var': 'running_var'}
_POOLED = 7  # the box head's RoIAlign output size
# A copy of vision_jax.data.sources.coco.COCO_CATEGORY_IDS (the 80 official COCO
# category ids in contiguous class order; tests check they are equal): importing
# vision_jax.data loads TensorFlow, and torchvision imported after TensorFlow crashes.
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77,
    78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)


def _to_numpy(value) -> np.ndarray:
  if hasattr(value, 'detach'):
    value = value.detach().cpu()
    if str(value.dtype) == 'torch.bfloat16':
      value = value.float()
    value = value.numpy()
  return np.asarray(value)


def _rename_legacy(state: dict) -> dict:
  """Pre-0.13 torchvision key names -> current ones (as its _load_from_state_dict)."""
  out = {}
  for key, value in state.items():
    key = re.sub(r'^rpn\.head\.conv\.(weight|bias)$', r'rpn.head.conv.0.0.\1', key)
    key = re.sub(r'^backbone\.fpn\.(inner_blocks|layer_blocks)\.(\d+)\.(weight|bias)$',
                 r'backbone.fpn.\1.\2.0.\3', key)
    m = re.match(r'^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$', key)
    if m:
      key = f'roi_heads.mask_head.{int(m.group(1)) - 1}.0.{m.group(2)}'
    if key in out:
      raise ValueError(f'torchvision state dict has both the legacy and the current name '
                       f'of {key!r}')
    out[key] = value
  return out


def _count(state, pattern) -> int:
  """1 + the largest integer captured by `pattern` over the keys (0 if none match)."""
  found = [int(m.group(1)) for m in map(re.compile(pattern).match, state) if m]
  return max(found) + 1 if found else 0


def _require(state, key) -> np.ndarray:
  if key not in state:
    raise ValueError(f'torchvision state dict has no {key!r}; is it a torchvision '
                     '(Mask/Keypoint/Faster) R-CNN with a ResNet-FPN backbone?')
  return state[key]


def _infer_config(state: dict, num_classes: int) -> MaskRCNNConfig:
  """MaskRCNNConfig.torchvision(...) with the sizes read from the tensor shapes."""
  kind = 'bottleneck' if f'{_BODY}layer1.0.conv3.weight' in state else 'basic'
  blocks = tuple(_count(state, rf'^{re.escape(_BODY)}layer{i}\.(\d+)\.conv1\.weight$')
                 for i in range(1, 5))
  names = [n for n, arch in resnet.ARCHITECTURES.items() if arch == (kind, blocks)]
  if not names:
    raise ValueError(f'torchvision backbone with {kind} blocks {blocks} per stage is not '
                     f'one of {sorted(resnet.ARCHITECTURES)}')
  settings = dict(
      backbone=names[0],
      width=_require(state, f'{_BODY}conv1.weight').shape[0],
      fpn_channels=_require(state, f'{_FPN}inner_blocks.0.0.weight').shape[0],
      box_fc_dim=_require(state, 'roi_heads.box_head.fc6.weight').shape[0])
  num_mask_convs = _count(state, r'^roi_heads\.mask_head\.(\d+)\.0\.weight$')
  settings['mask_head'] = num_mask_convs > 0
  if num_mask_convs:
    settings['mask_num_convs'] = num_mask_convs
    settings['mask_conv_dim'] = state['roi_heads.mask_head.0.0.weight'].shape[0]
  num_keypoint_layers = _count(state, r'^roi_heads\.keypoint_head\.(\d+)\.weight$')
  settings['keypoint_head'] = num_keypoint_layers > 0
  if num_keypoint_layers:
    settings['keypoint_num_convs'] = (num_keypoint_layers + 1) // 2  # conv, ReLU, ...
    settings['keypoint_conv_dim'] = state['roi_heads.keypoint_head.0.weight'].shape[0]
    settings['num_keypoints'] = _require(
        state, 'roi_heads.keypoint_predictor.kps_score_lowres.weight').shape[1]
  return MaskRCNNConfig.torchvision(num_classes=num_classes, **settings)


def _coco_contiguous(state: dict) -> dict:
  """Keeps background + the 80 official COCO ids of the 91-slot class outputs."""
  keep = np.array((0,) + COCO_CATEGORY_IDS)
  state = dict(state)
  heads = {'roi_heads.box_predictor.cls_score': 1, 'roi_heads.box_predictor.bbox_pred': 4,
           'roi_heads.mask_predictor.mask_fcn_logits': 1}
  for prefix, rows_per_class in heads.items():
    for leaf in ('weight', 'bias'):
      key = f'{prefix}.{leaf}'
      if key not in state:
        if prefix.startswith('roi_heads.mask'):
          continue
        _require(state, key)
      value = state[key]
      if value.shape[0] != 91 * rows_per_class:
        raise ValueError(f'coco_contiguous needs 91 class slots (torchvision COCO '
                         f'heads), {key} has {value.shape[0] // rows_per_class}')
      value = value.reshape(91, rows_per_class, *value.shape[1:])[keep]
      state[key] = value.reshape(len(keep) * rows_per_class, *value.shape[2:])
  return state


def _torch_source(path: tuple[str, ...], c_pooled: int | None):
  """Our (collection-less) leaf path -> (torch key, conversion), or None if unknown."""
  module, leaf = path[:-1], path[-1]
  top = module[0] if module else ''

  def conv(x):
    return x.transpose(2, 3, 1, 0)

  def dense(x):
    return x.T

  def same(x):
    return x

  weight = {'kernel': 'weight', 'bias': 'bias'}
  if top == 'backbone':
    prefix = _BODY + '.'.join(module[1:])
    if leaf == 'kernel':
      return f'{prefix}.weight', conv
    if leaf in _NORM_LEAVES:
      return f'{prefix}.{_NORM_LEAVES[leaf]}', same
    return None
  if leaf not in weight:
    return None
  suffix = weight[leaf]
  fn = conv if leaf == 'kernel' else same
  name = module[1] if len(module) == 2 else None
  if top == 'fpn' and name:
    m = re.fullmatch(r'(lateral|output)(\d+)', name)
    if m:
      block = 'inner_blocks' if m.group(1) == 'lateral' else 'layer_blocks'
      return f'{_FPN}{block}.{m.group(2)}.0.{suffix}', fn
  if top == 'rpn_head' and name:
    torch_name = {'conv': 'conv.0.0', 'objectness': 'cls_logits',
                  'deltas': 'bbox_pred'}.get(name)
    if torch_name:
      return f'rpn.head.{torch_name}.{suffix}', fn
  if top == 'box_predictor' and name:
    fn = dense if leaf == 'kernel' else same
    if name == 'fc6' and leaf == 'kernel':
      def fc6(x):  # [out, C * 7 * 7] in (C, H, W) order -> [7 * 7 * C, out] in (H, W, C)
        out = x.shape[0]
        c = c_pooled if c_pooled else x.shape[1] // _POOLED**2
        x = x.reshape(out, c, _POOLED, _POOLED).transpose(2, 3, 1, 0)
        return x.reshape(_POOLED * _POOLED * c, out)
      return f'roi_heads.box_head.fc6.{suffix}', fc6
    if name in ('fc6', 'fc7'):
      return f'roi_heads.box_head.{name}.{suffix}', fn
    if name in ('cls_score', 'bbox_pred'):
      return f'roi_heads.box_predictor.{name}.{suffix}', fn
  if top == 'mask_predictor' and name:
    m = re.fullmatch(r'mask_fcn(\d+)', name)
    if m:
      return f'roi_heads.mask_head.{int(m.group(1)) - 1}.0.{suffix}', fn
    if name == 'deconv':  # ConvTranspose2d [in, out, 2, 2] -> [2, 2, out, in]: same axes
      return f'roi_heads.mask_predictor.conv5_mask.{suffix}', fn
    if name == 'mask_fcn_logits':
      return f'roi_heads.mask_predictor.mask_fcn_logits.{suffix}', fn
  if top == 'keypoint_predictor' and name:
    m = re.fullmatch(r'conv_fcn(\d+)', name)
    if m:
      return f'roi_heads.keypoint_head.{2 * (int(m.group(1)) - 1)}.{suffix}', fn
    if name == 'kps_score_lowres':  # ConvTranspose2d [in, out, 4, 4] -> [4, 4, out, in]
      return f'roi_heads.keypoint_predictor.kps_score_lowres.{suffix}', fn
  return None


def expected_variable_shapes(config: MaskRCNNConfig) -> dict:
  """{collection: {flat path tuple: shape}} of `MaskRCNN(config).init` (no compute)."""
  images = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  shapes = jax.eval_shape(MaskRCNN(config).init, jax.random.PRNGKey(0), images)
  return {collection: {path: tuple(leaf.shape) for path, leaf in
                       flax.traverse_util.flatten_dict(tree).items()}
          for collection, tree in flax.core.unfreeze(shapes).items()}


def from_torchvision(state_dict: Mapping[str, Any], config: MaskRCNNConfig | None = None,
                     *, coco_contiguous: bool = False) -> tuple[MaskRCNNConfig, dict]:
  """Converts a torchvision R-CNN state dict to `MaskRCNN` variables.

  Args:
    state_dict: name -> numpy array or torch tensor (a torchvision `model.state_dict()`
      or a checkpoint file's content); a DistributedDataParallel 'module.' prefix on
      every key is removed.
    config: the target MaskRCNNConfig. None: `MaskRCNNConfig.torchvision(...)` with the
      backbone (depth, block, width), FPN width, box head size, number of classes,
      mask head and keypoint head (presence, depth, width, number of keypoints) read
      from the tensor shapes.
    coco_contiguous: keep only background + the 80 official COCO category ids of
      torchvision's 91-slot COCO heads (cls_score, bbox_pred, mask_fcn_logits), so that
      model class c + 1 is contiguous COCO class c (`COCO_CATEGORY_IDS[c]`).

  Returns:
    (config, variables): variables {'params': ..., 'batch_stats': ...} (jax arrays,
    float32) with exactly the tree and shapes of `MaskRCNN(config).init`.

  Raises:
    ValueError: naming the variable path (and torchvision key) of any missing tensor or
      shape mismatch, or listing the torchvision keys left unused (other than
      num_batches_tracked), or if the architecture cannot be inferred.
  """
  state = {k: v for k, v in state_dict.items() if not k.endswith('num_batches_tracked')}
  if state and all(k.startswith('module.') for k in state):
    state = {k[len('module.'):]: v for k, v in state.items()}
  state = _rename_legacy({k: _to_numpy(v) for k, v in state.items()})
  if coco_contiguous:
    state = _coco_contiguous(state)
  if config is None:
    num_classes = _require(state, 'roi_heads.box_predictor.cls_score.weight').shape[0] - 1
    config = _infer_config(state, num_classes)
  if config.norm not in ('frozen_batch', 'batch'):
    raise ValueError(f"torchvision's ResNet has batch norms: config.norm must be "
                     f"'frozen_batch' (or 'batch'), not {config.norm!r}")

  expected = expected_variable_shapes(config)
  used = set()
  problems = []  # every missing tensor / shape mismatch, reported together
  variables = {}
  for collection, leaves in expected.items():
    flat = {}
    for path, shape in leaves.items():
      where = '/'.join((collection,) + path)
      source = _torch_source(path, config.fpn_channels)
      if source is None:
        problems.append(f'{where} {shape}: no torchvision equivalent')
        continue
      key, convert = source
      if key not in state:
        problems.append(f'{where} {shape}: torchvision state dict lacks {key!r}')
        continue
      used.add(key)
      try:
        value = np.asarray(convert(state[key]), np.float32)
      except ValueError:  # a reshape that cannot work (fc6)
        value = None
      if value is None or value.shape != shape:
        problems.append(f'{where}: shape mismatch, expected {shape}, torchvision {key!r} '
                        f'has {tuple(state[key].shape)}'
                        + (f' -> {value.shape}' if value is not None else ''))
        continue
      flat[path] = jnp.asarray(value)
    variables[collection] = flax.traverse_util.unflatten_dict(flat)
  if problems:
    raise ValueError(f'torchvision state dict does not fit MaskRCNN({config}): '
                     f'{len(problems)} problems:\n  ' + '\n  '.join(problems[:30])
                     + ('\n  ...' if len(problems) > 30 else ''))
  unused = sorted(set(state) - used)
  if unused:
    raise ValueError(f'{len(unused)} torchvision tensors have no MaskRCNN variable: '
                     f'{unused[:20]}{" ..." if len(unused) > 20 else ""} (config {config})')
  return config, variables


def read_torchvision_state_dict(path: str | os.PathLike) -> dict:
  """A torchvision `.pth` state dict from disk (torch needed; never downloads).

  The file holds a state dict (torchvision's released weights), or a dict with it under
  'model' or 'state_dict' (torchvision's reference training scripts). Loaded with
  `torch.load(..., weights_only=True)` on the CPU.

  Raises:
    FileNotFoundError: no file at `path`.
    ImportError: torch is not installed.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'torchvision checkpoint {path!r} not found (this function '
                            'reads a local file and never downloads)')
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f'reading the torchvision checkpoint {path!r} needs torch '
                      '(pip install torch); or load the state dict elsewhere and pass '
                      'name -> numpy arrays to from_torchvision') from e
  checkpoint = torch.load(path, map_location='cpu', weights_only=True)
  if isinstance(checkpoint, Mapping):
    for key in ('model', 'state_dict'):
      if isinstance(checkpoint.get(key), Mapping):
        checkpoint = checkpoint[key]
        break
  if not isinstance(checkpoint, Mapping):
    raise ValueError(f'{path!r} holds a {type(checkpoint).__name__}, not a state dict')
  return dict(checkpoint)


def load_torchvision_checkpoint(path: str | os.PathLike,
                                config: MaskRCNNConfig | None = None, *,
                                coco_contiguous: bool = False
                                ) -> tuple[MaskRCNNConfig, dict]:
  """Reads a torchvision R-CNN `.pth` file (`read_torchvision_state_dict`) and converts it."""
  return from_torchvision(read_torchvision_state_dict(path), config,
                          coco_contiguous=coco_contiguous)


def init_from_torchvision(variables: dict, state_dict: Mapping[str, Any],
                          config: MaskRCNNConfig) -> dict:
  """Starts freshly initialized `MaskRCNN(config)` variables from a torchvision checkpoint.

  * A whole torchvision R-CNN state dict (has `roi_heads.*`) replaces every variable
    (`from_torchvision` with `config`); torchvision's 91-slot COCO heads meet an
    80-class config through `coco_contiguous`.
  * An ImageNet classification ResNet state dict (`conv1`, `bn1`, `layer1..4`, `fc`)
    replaces the backbone only; the FPN and the heads keep their initialization.

  Returns:
    The new variables (same tree and shapes). Raises ValueError naming what does not fit.
  """
  state = {k: v for k, v in state_dict.items() if not k.endswith('num_batches_tracked')}
  if state and all(k.startswith('module.') for k in state):
    state = {k[len('module.'):]: v for k, v in state.items()}
  if any(k.startswith('roi_heads.') for k in state):
    classes = state.get('roi_heads.box_predictor.cls_score.weight')
    contiguous = (classes is not None and classes.shape[0] == 91
                  and config.num_classes == len(COCO_CATEGORY_IDS))
    return from_torchvision(state, config, coco_contiguous=contiguous)[1]
  return init_backbone_from_torchvision(variables, state, config.backbone, config.width)


def init_backbone_from_torchvision(variables: dict, state_dict: Mapping[str, Any],
                                   backbone: str, width: int = 64) -> dict:
  """Replaces the `backbone` subtree of any family's variables by an ImageNet ResNet.

  Args:
    variables: freshly initialised variables whose 'backbone' entries are a
      `vision_jax.nn.resnet.ResNet` (Mask R-CNN, YOLACT, ...).
    state_dict: a torchvision classification ResNet state dict (`conv1`, `bn1`,
      `layer1..4`, `fc`; `fc` is ignored).
    backbone, width: the ResNet's name and base width, for error messages.

  Returns:
    The new variables (same tree and shapes). Raises ValueError naming what does not fit.
  """
  state = {k: v for k, v in state_dict.items() if not k.endswith('num_batches_tracked')}
  if state and all(k.startswith('module.') for k in state):
    state = {k[len('module.'):]: v for k, v in state.items()}
  if 'conv1.weight' not in state:
    raise ValueError('not a torchvision R-CNN or classification ResNet state dict (no '
                     f"'roi_heads.*' or 'conv1.weight' keys; first keys: {sorted(state)[:5]})")
  state = {_BODY + k: _to_numpy(v) for k, v in state.items() if not k.startswith('fc.')}
  used, problems = set(), []
  out = {}
  for collection, tree in variables.items():
    flat = dict(flax.traverse_util.flatten_dict(flax.core.unfreeze(tree)))
    for path, leaf in flat.items():
      if path[0] != 'backbone':
        continue
      key, convert = _torch_source(path, None) or (None, None)
      value = np.asarray(convert(state[key]), np.float32) if key in state else None
      if value is None or value.shape != tuple(leaf.shape):
        problems.append(f'{collection}/{"/".join(path)} {tuple(leaf.shape)}: torchvision '
                        f'{key!r} ' + ('missing' if value is None else f'is {value.shape}'))
        continue
      used.add(key)
      flat[path] = jnp.asarray(value)
    out[collection] = flax.traverse_util.unflatten_dict(flat)
  unused = sorted(set(state) - used)
  if problems or unused:
    raise ValueError(f'torchvision ResNet does not fit the {backbone} (width '
                     f'{width}) backbone: ' + '; '.join(problems[:10])
                     + (f'; unused torchvision tensors {unused[:10]}' if unused else ''))
  return out
