"""Mask R-CNN (He et al. 2017) with FPN, and its Keypoint R-CNN variant, for flax.linen.

  config = MaskRCNNConfig(num_classes=80)              # R50-FPN, detectron2 defaults
  model = MaskRCNN(config)
  variables = model.init(key, images)                  # images [B, H, W, 3] uint8
  pyramid = model.apply(variables, images, method=MaskRCNN.features)
  rpn_logits, rpn_deltas = model.apply(variables, pyramid, method=MaskRCNN.rpn)
  class_logits, box_deltas = model.apply(variables, pyramid, boxes, method=MaskRCNN.box_head)

The module holds the networks only; what surrounds them is plain jnp, static-shape code:
anchors (`anchors`), proposals and detections (`vision_jax.models.rcnn_inference`),
targets and losses (`vision_jax.losses.rcnn`), the train / predict steps
(`vision_jax.tasks.mask_rcnn`), and torchvision weight conversion
(`vision_jax.models.mask_rcnn_torchvision.from_torchvision`).

Networks (names in the parameter tree; torchvision's in brackets)
  backbone      ResNet C2..C5 (`vision_jax.nn.resnet`)              [backbone.body]
  fpn           P2..P6, `fpn_channels` wide (`vision_jax.nn.fpn`)   [backbone.fpn]
  rpn_head      3x3 conv + ReLU, then 1x1 `objectness` (A) and 1x1 `deltas` (4A),
                shared by all levels                                 [rpn.head]
  box_head      multilevel RoIAlign 7x7 on P2..P5 -> flatten (H, W, C order) -> fc6,
                fc7 (`box_fc_dim`, ReLU) -> `cls_score` (K + 1) and `bbox_pred`
                (4 (K + 1), class-specific)                          [roi_heads.box_*]
  mask_head     RoIAlign 14x14 -> `mask_fcn1..4` (3x3 conv + ReLU) -> `deconv` 2x2/2 +
                ReLU -> `mask_fcn_logits` 1x1 (K + 1) at 28x28      [roi_heads.mask_*]
  keypoint_head RoIAlign 14x14 -> `conv_fcn1..8` (3x3 conv + ReLU) -> `kps_score_lowres`
                4x4/2 deconv -> bilinear x2: 56x56 logits per keypoint
                                                                     [roi_heads.keypoint_*]
Class index convention inside the model (torchvision's): 0 is background, thing class
c (0-based in the data) is c + 1, so box logits and mask channels have K + 1 entries.

Images are [B, H, W, 3] RGB, uint8 (or float in [0, 1]), H and W multiples of 32,
normalized inside with the ImageNet mean / std (torchvision's GeneralizedRCNNTransform).
Box coordinates are (x1, y1, x2, y2) in input pixels everywhere.
"""
import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models import model_config
from vision_jax.nn import conv as conv_lib
from vision_jax.nn import fpn as fpn_lib
from vision_jax.nn import resnet
from vision_jax.nn import upsample
from vision_jax.ops import anchors as anchor_ops
from vision_jax.ops import image as image_ops
from vision_jax.ops import pooling

MIN_LEVEL, MAX_LEVEL = 2, 6  # P2..P6 for the RPN
ROI_MAX_LEVEL = 5  # RoI heads pool from P2..P5


@dataclasses.dataclass(frozen=True)
class MaskRCNNConfig:
  """Everything that fixes the networks and the static sizes around them.

  Defaults are detectron2's R50-FPN 1x (mask_rcnn_R_50_FPN_1x.yaml); `torchvision()`
  returns the settings of torchvision's maskrcnn_resnet50_fpn.

  Attributes:
    num_classes: K thing classes (background excluded).
    backbone, width, norm: the ResNet (`vision_jax.nn.resnet.get_resnet`).
    fpn_channels, fpn_norm: the FPN.
    anchor_sizes: one tuple of sizes per level P2..P6.
    aspect_ratios: height / width ratios, shared by all levels.
    anchor_round: round cell anchors to integers (torchvision) or not (detectron2).
    rpn_pre_nms_top_n_train/test: proposals kept per LEVEL before NMS.
    rpn_post_nms_top_n_train/test: proposals kept per IMAGE after NMS (static count).
    rpn_nms_threshold: NMS IoU, applied within each level.
    rpn_min_size: proposals narrower or shorter than this are dropped (torchvision
      1e-3; detectron2 0: only empty boxes).
    rpn_batch_size_per_image, rpn_positive_fraction: anchor sampling of the RPN loss.
    rpn_iou_thresholds: (background below, foreground at or above).
    rpn_box_loss_beta: smooth-L1 beta of the RPN box loss (0 = L1, detectron2).
    roi_batch_size_per_image, roi_positive_fraction, roi_iou_threshold: RoI sampling.
    box_loss_beta: smooth-L1 beta of the box head loss (0 = L1).
    head_rois_per_image: static number of leading (positive) sampled RoIs the mask /
      keypoint heads train on; 0 = all `roi_batch_size_per_image * roi_positive_fraction`
      positive slots (detectron2). Smaller values cap the positives per image, as TF
      Model Garden's `num_sampled_masks`, and cost proportionally less.
    pooler_sampling_ratio, pooler_aligned: RoIAlign of all heads (detectron2
      ROIAlignV2 = aligned; torchvision: not aligned, ratio 2).
    box_fc_dim: width of fc6 / fc7.
    box_weights: Fast R-CNN box coder weights.
    mask_head: build the mask branch.
    mask_conv_dim, mask_num_convs: the mask head's convs.
    keypoint_head: build the keypoint branch (Keypoint R-CNN) with `num_keypoints`.
    keypoint_conv_dim, keypoint_num_convs: the keypoint head's convs.
    score_threshold, nms_threshold, detections_per_image: inference.
    inference_candidates: (class, box) pairs kept by score before the final NMS (the
      kept detections equal those of an NMS over all pairs whenever at least
      `detections_per_image` survive among them).
    dtype: compute dtype name; params stay float32.
  """
  num_classes: int
  backbone: str = 'resnet50'
  width: int = 64
  norm: str = 'frozen_batch'
  fpn_channels: int = 256
  fpn_norm: str = 'none'
  anchor_sizes: tuple = ((32,), (64,), (128,), (256,), (512,))
  aspect_ratios: tuple = (0.5, 1.0, 2.0)
  anchor_round: bool = False
  rpn_pre_nms_top_n_train: int = 2000
  rpn_pre_nms_top_n_test: int = 1000
  rpn_post_nms_top_n_train: int = 1000
  rpn_post_nms_top_n_test: int = 1000
  rpn_nms_threshold: float = 0.7
  rpn_min_size: float = 0.0
  rpn_batch_size_per_image: int = 256
  rpn_positive_fraction: float = 0.5
  rpn_iou_thresholds: tuple = (0.3, 0.7)
  rpn_box_loss_beta: float = 0.0
  roi_batch_size_per_image: int = 512
  roi_positive_fraction: float = 0.25
  roi_iou_threshold: float = 0.5
  box_loss_beta: float = 0.0
  head_rois_per_image: int = 0
  pooler_sampling_ratio: int = 2
  pooler_aligned: bool = True
  box_fc_dim: int = 1024
  box_weights: tuple = (10.0, 10.0, 5.0, 5.0)
  mask_head: bool = True
  mask_conv_dim: int = 256
  mask_num_convs: int = 4
  keypoint_head: bool = False
  num_keypoints: int = 17
  keypoint_conv_dim: int = 512
  keypoint_num_convs: int = 8
  score_threshold: float = 0.05
  nms_threshold: float = 0.5
  detections_per_image: int = 100
  inference_candidates: int = 1000
  dtype: str = 'float32'

  @classmethod
  def torchvision(cls, num_classes: int = 90, **overrides) -> 'MaskRCNNConfig':
    """torchvision's maskrcnn_resnet50_fpn / keypointrcnn_resnet50_fpn settings.

    num_classes excludes background: torchvision's COCO models have 91 outputs
    (background + 90 category-id slots), i.e. num_classes=90 here.
    """
    settings = dict(
        num_classes=num_classes, backbone='resnet50', width=64, norm='frozen_batch',
        anchor_round=True, rpn_pre_nms_top_n_train=2000, rpn_post_nms_top_n_train=2000,
        rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=1000, rpn_min_size=1e-3,
        rpn_box_loss_beta=1.0 / 9, box_loss_beta=1.0 / 9, pooler_aligned=False,
        pooler_sampling_ratio=2)
    settings.update(overrides)
    return cls(**settings)

  @property
  def num_anchors(self) -> int:
    """Anchors per location (the same on every level)."""
    counts = set(anchor_ops.num_cell_anchors(self.anchor_sizes, [self.aspect_ratios],
                                             MAX_LEVEL - MIN_LEVEL + 1))
    if len(counts) != 1:
      raise ValueError(f'the shared RPN head needs the same number of anchors per level, '
                       f'got anchor_sizes={self.anchor_sizes}')
    return counts.pop()


# Fields set from the dataset, not from the experiment's `config.model`.
_DATA_FIELDS = ('num_classes', 'num_keypoints')


def config_dict(**overrides) -> dict:
  """Every MaskRCNNConfig field an experiment sets (`config.model`), at its default.

  Experiment configs start from this so that any field can be overridden from the
  shell; num_classes and num_keypoints come from the dataset.
  """
  return model_config.config_dict(MaskRCNNConfig, 'Mask R-CNN', data_fields=_DATA_FIELDS,
                                  **overrides)


def from_config_dict(values, num_classes: int, num_keypoints: int = 0) -> MaskRCNNConfig:
  """A MaskRCNNConfig from an experiment's `config.model` (unknown keys are errors)."""
  keypoints = num_keypoints if dict(values).get('keypoint_head') else None
  return model_config.from_config_dict(MaskRCNNConfig, 'Mask R-CNN', values,
                                       data_fields=_DATA_FIELDS, num_classes=num_classes,
                                       num_keypoints=keypoints)


def anchors(config: MaskRCNNConfig, image_size: Sequence[int]) -> list[jax.Array]:
  """Anchors of P2..P6 for an (H, W) input: one [H_l * W_l * A, 4] array per level.

  Their order matches the RPN outputs (`vision_jax.ops.anchors` module doc).
  """
  h, w = image_size
  grids = [(-(-h // 2**l), -(-w // 2**l)) for l in range(MIN_LEVEL, MAX_LEVEL + 1)]
  strides = [2**l for l in range(MIN_LEVEL, MAX_LEVEL + 1)]
  return anchor_ops.multilevel_anchors(grids, strides, config.anchor_sizes,
                                       [config.aspect_ratios], round_cells=config.anchor_round)


# Initializers (detectron2's): RPN and classifier normal(0.01), box regressor
# normal(0.001), fc layers xavier (c2_xavier_fill), head convs kaiming fan_out.
_normal = nn.initializers.normal
_XAVIER_FILL = nn.initializers.variance_scaling(1.0, 'fan_in', 'uniform')
_MSRA_FILL = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _roi_conv_stack(pooled, num_convs, conv_dim, prefix, dtype):
  """Pooled [B, R, S, S, C] -> [B * R, S, S, conv_dim]: `num_convs` x (3x3 conv + ReLU).

  The heads train inside a lax.switch (`vision_jax.ops.switch`), so the convs are built
  with `in_switch=True`: dots on XLA:CPU, where convolution gradients inside a switch
  branch are slow (see `vision_jax.nn.conv`). Called inside a compact module, the convs
  are its children `{prefix}1 .. {prefix}{num_convs}`.
  """
  b, r = pooled.shape[:2]
  x = pooled.reshape(b * r, *pooled.shape[2:]).astype(dtype)
  for i in range(num_convs):
    x = nn.relu(conv_lib.Conv(conv_dim, 3, dtype=dtype, kernel_init=_MSRA_FILL,
                              in_switch=True, name=f'{prefix}{i + 1}')(x))
  return x


class RPNHead(nn.Module):
  """Shared 3x3 conv + ReLU, then objectness logits (A) and box deltas (4A) per level."""
  num_anchors: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pyramid):
    """pyramid: list of [B, H_l, W_l, C] -> list of ([B, H_l W_l A], [B, H_l W_l A, 4])."""
    dtype = jnp.dtype(self.dtype)
    conv = conv_lib.Conv(pyramid[0].shape[-1], 3, dtype=dtype, kernel_init=_normal(0.01),
                         name='conv')
    objectness = conv_lib.Conv(self.num_anchors, 1, dtype=dtype, kernel_init=_normal(0.01),
                               name='objectness')
    deltas = conv_lib.Conv(4 * self.num_anchors, 1, dtype=dtype, kernel_init=_normal(0.01),
                           name='deltas')
    outputs = []
    for x in pyramid:
      t = nn.relu(conv(x))
      b = x.shape[0]
      outputs.append((objectness(t).reshape(b, -1).astype(jnp.float32),
                      deltas(t).reshape(b, -1, 4).astype(jnp.float32)))
    return outputs


class BoxHead(nn.Module):
  """Pooled [B, R, 7, 7, C] -> (class logits [B, R, K + 1], deltas [B, R, K + 1, 4])."""
  num_classes: int
  fc_dim: int = 1024
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled):
    dtype = jnp.dtype(self.dtype)
    b, r = pooled.shape[:2]
    x = pooled.reshape(b, r, -1).astype(dtype)
    x = nn.relu(nn.Dense(self.fc_dim, dtype=dtype, kernel_init=_XAVIER_FILL, name='fc6')(x))
    x = nn.relu(nn.Dense(self.fc_dim, dtype=dtype, kernel_init=_XAVIER_FILL, name='fc7')(x))
    k1 = self.num_classes + 1
    logits = nn.Dense(k1, dtype=dtype, kernel_init=_normal(0.01), name='cls_score')(x)
    deltas = nn.Dense(4 * k1, dtype=dtype, kernel_init=_normal(0.001), name='bbox_pred')(x)
    return logits.astype(jnp.float32), deltas.reshape(b, r, k1, 4).astype(jnp.float32)


class MaskHead(nn.Module):
  """Pooled [B, R, 14, 14, C] -> mask logits [B, R, 28, 28, K + 1]."""
  num_classes: int
  conv_dim: int = 256
  num_convs: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled):
    dtype = jnp.dtype(self.dtype)
    b, r = pooled.shape[:2]
    x = _roi_conv_stack(pooled, self.num_convs, self.conv_dim, 'mask_fcn', dtype)
    x = nn.relu(upsample.ConvTranspose2x2(self.conv_dim, dtype=dtype, name='deconv')(x))
    x = conv_lib.Conv(self.num_classes + 1, 1, dtype=dtype, kernel_init=_normal(0.001),
                      in_switch=True, name='mask_fcn_logits')(x)
    return x.reshape(b, r, *x.shape[1:]).astype(jnp.float32)


class KeypointHead(nn.Module):
  """Pooled [B, R, 14, 14, C] -> keypoint heatmap logits [B, R, 56, 56, num_keypoints]."""
  num_keypoints: int
  conv_dim: int = 512
  num_convs: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled):
    dtype = jnp.dtype(self.dtype)
    b, r = pooled.shape[:2]
    x = _roi_conv_stack(pooled, self.num_convs, self.conv_dim, 'conv_fcn', dtype)
    x = upsample.ConvTranspose4x4(self.num_keypoints, dtype=dtype, use_bias=True,
                                  in_switch=True, name='kps_score_lowres')(x)
    n, h, w, k = x.shape
    x = image_ops.upsample_linear(x.astype(jnp.float32), 2)
    return x.reshape(b, r, 2 * h, 2 * w, k)


class MaskRCNN(nn.Module):
  """The networks of Mask R-CNN / Keypoint R-CNN; see the module docstring."""
  config: MaskRCNNConfig

  def setup(self):
    c = self.config
    dtype = jnp.dtype(c.dtype)
    self.backbone = resnet.get_resnet(c.backbone, width=c.width, norm=c.norm, dtype=dtype)
    self.fpn = fpn_lib.FPN(c.fpn_channels, norm=c.fpn_norm, dtype=dtype)
    self.rpn_head = RPNHead(c.num_anchors, dtype=dtype)
    self.box_predictor = BoxHead(c.num_classes, c.box_fc_dim, dtype=dtype)
    if c.mask_head:
      self.mask_predictor = MaskHead(c.num_classes, c.mask_conv_dim, c.mask_num_convs,
                                     dtype=dtype)
    if c.keypoint_head:
      self.keypoint_predictor = KeypointHead(c.num_keypoints, c.keypoint_conv_dim,
                                             c.keypoint_num_convs, dtype=dtype)

  def features(self, images, *, train: bool = False) -> list[jax.Array]:
    """images [B, H, W, 3] uint8 (or float in [0, 1]) -> [P2, .., P6], [B, H / 2**l, W / 2**l, C]."""
    h, w = images.shape[1:3]
    if h % 32 or w % 32:
      raise ValueError(f'Mask R-CNN input H, W must be multiples of 32, got {(h, w)}')
    x = image_ops.normalize(images)
    return self.fpn(self.backbone(x, train=train), train=train)

  def rpn(self, pyramid) -> tuple[jax.Array, jax.Array]:
    """Objectness logits [B, A_total] and deltas [B, A_total, 4], levels concatenated."""
    outputs = self.rpn_head(pyramid)
    return (jnp.concatenate([o[0] for o in outputs], axis=1),
            jnp.concatenate([o[1] for o in outputs], axis=1))

  def _pool(self, pyramid, boxes, size):
    c = self.config
    return pooling.multilevel_roi_align(
        pyramid[:ROI_MAX_LEVEL - MIN_LEVEL + 1], jax.lax.stop_gradient(boxes), size,
        min_level=MIN_LEVEL, max_level=ROI_MAX_LEVEL,
        sampling_ratio=c.pooler_sampling_ratio, aligned=c.pooler_aligned)

  def box_head(self, pyramid, boxes) -> tuple[jax.Array, jax.Array]:
    """boxes [B, R, 4] -> class logits [B, R, K + 1], class deltas [B, R, K + 1, 4]."""
    return self.box_predictor(self._pool(pyramid, boxes, 7))

  def mask_head(self, pyramid, boxes) -> jax.Array:
    """boxes [B, R, 4] -> mask logits [B, R, 28, 28, K + 1]."""
    return self.mask_predictor(self._pool(pyramid, boxes, 14))

  def keypoint_head(self, pyramid, boxes) -> jax.Array:
    """boxes [B, R, 4] -> keypoint heatmap logits [B, R, 56, 56, num_keypoints]."""
    return self.keypoint_predictor(self._pool(pyramid, boxes, 14))

  def __call__(self, images, *, train: bool = False) -> dict:
    """Runs every network once (for `init`): RPN outputs and heads on one box per image."""
    pyramid = self.features(images, train=train)
    logits, deltas = self.rpn(pyramid)
    h, w = images.shape[1:3]
    boxes = jnp.broadcast_to(jnp.array([0.0, 0.0, w, h], jnp.float32),
                             (images.shape[0], 1, 4))
    out = {'rpn_logits': logits, 'rpn_deltas': deltas}
    out['class_logits'], out['box_deltas'] = self.box_head(pyramid, boxes)
    if self.config.mask_head:
      out['mask_logits'] = self.mask_head(pyramid, boxes)
    if self.config.keypoint_head:
      out['keypoint_logits'] = self.keypoint_head(pyramid, boxes)
    return out

