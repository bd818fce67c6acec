"""YOLACT (Bolya et al. 2019): one-stage instance segmentation, prototypes x coefficients.

  config = YolactConfig(num_classes=80)               # R50-FPN at 550, the paper's base
  model = Yolact(config)
  variables = model.init(key, images)                 # images [B, H, W, 3] uint8
  outputs = model.apply(variables, images)            # dict, see `Yolact.__call__`
  detections = predict(model, variables, images)      # boxes, scores, classes, masks

Networks (names in the parameter tree)
  backbone    ResNet C3..C5 (`vision_jax.nn.resnet`).
  fpn         P3..P7, `fpn_channels` wide: bilinear top-down, ReLU on P3..P5, P6 and P7
              by 3x3 stride-2 convs (`vision_jax.nn.fpn.FPN`, YOLACT's switches).
  protonet    on P3: 3 x (3x3 conv `proto_channels` + ReLU), then per x2 step bilinear
              x2 + 3x3 conv + ReLU (one step: stride 4, the paper; two: stride 2), then a
              1x1 conv to `num_prototypes` and a ReLU: prototypes [B, h, w, k].
  head        one head shared by P3..P7: 3x3 conv `head_channels` + ReLU, then three 3x3
              branches: `class_logits` A (K + 1) (0 = background), `box_deltas` 4A
              (SSD-style, coder weights (10, 10, 5, 5)), `coefficients` Ak with tanh.
  semantic    1x1 conv on P3 to K channels: the auxiliary semantic loss (training only).

Anchors: A = len(aspect_ratios) per location, centred in each cell, one scale per level
(`anchor_scales`, in pixels at `anchor_reference_size` = 550, scaled with max(H, W)),
area scale^2 and aspect ratio height / width, as the paper describes them (the
reference's yolact_base / yolact_resnet50 configs set `use_square_anchors`, which makes
the three anchors squares of sides scale * sqrt(ratio); YOLACT++ uses true ratios).
Deviations kept on purpose: the FPN convs start from kaiming-uniform(a=1) like
Mask R-CNN's (the reference: xavier), inputs are letterboxed into a multiple of 32. Their order is `vision_jax.ops.anchors`'
(level, row-major location, aspect ratio), matching the head's reshaped outputs.

Everything around the networks is plain static-shape jnp: targets and losses in
`vision_jax.losses.yolact`, inference (`predict`: decode, Fast NMS, mask assembly, crop,
resize, threshold) below, the train / predict steps in `vision_jax.tasks.yolact`.
Images are [B, H, W, 3] RGB uint8 (or float in [0, 1]), H and W multiples of 32,
normalised inside with the ImageNet mean / std. Boxes are (x1, y1, x2, y2) input pixels.
"""
import dataclasses
import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models import model_config
from vision_jax.nn import conv as conv_lib
from vision_jax.nn import fpn as fpn_lib
from vision_jax.nn import resnet
from vision_jax.ops import anchors as anchor_ops
from vision_jax.ops import boxes as box_ops
from vision_jax.ops import image as image_ops
from vision_jax.ops import masks as mask_ops
from vision_jax.ops import suppression

MIN_LEVEL, MAX_LEVEL = 3, 7  # P3..P7
PROTO_SOURCE_STRIDE = 2**MIN_LEVEL  # the protonet reads P3
PROTO_STRIDES = (8, 4, 2, 1)


@dataclasses.dataclass(frozen=True)
class YolactConfig:
  """Everything that fixes the networks, the anchors, training targets and inference.

  Defaults are the paper's YOLACT-550 R50-FPN (yolact_resnet50_config).

  Attributes:
    num_classes: K thing classes (background excluded).
    backbone, width, norm: the ResNet (`vision_jax.nn.resnet.get_resnet`).
    fpn_channels: width of P3..P7.
    num_prototypes: k.
    proto_channels: width of the protonet's convs.
    proto_stride: input pixels per prototype pixel: 4 (the paper, 138 x 138 at 550) or
      2 (finer masks; one more x2 step + conv).
    head_channels: width of the shared head's first conv.
    aspect_ratios: height / width ratios of the A anchors per location.
    anchor_scales: one anchor scale (sqrt of area) per level P3..P7, in pixels of an
      `anchor_reference_size` input.
    anchor_reference_size: the input side the scales are given for.
    box_weights: box coder weights (SSD variances 0.1, 0.2 -> (10, 10, 5, 5)).
    semantic_head: build the auxiliary semantic segmentation conv.
    positive_iou, negative_iou, crowd_iou: anchor matching (positive at or above,
      background below; anchors in between are ignored, and background anchors
      overlapping a crowd box by more than crowd_iou are ignored too).
    negatives_per_positive: OHEM ratio of the class loss.
    masks_per_image: static cap on the positives per image that train the masks (the
      reference's masks_to_train), chosen at random when there are more.
    top_k, score_threshold, nms_threshold, detections_per_image: inference (Fast NMS).
    mask_threshold: probability at which assembled masks are binarised.
    dtype: compute dtype name; params stay float32.
  """
  num_classes: int
  backbone: str = 'resnet50'
  width: int = 64
  norm: str = 'batch'
  fpn_channels: int = 256
  num_prototypes: int = 32
  proto_channels: int = 256
  proto_stride: int = 4
  head_channels: int = 256
  aspect_ratios: tuple = (1.0, 0.5, 2.0)
  anchor_scales: tuple = (24.0, 48.0, 96.0, 192.0, 384.0)
  anchor_reference_size: int = 550
  box_weights: tuple = (10.0, 10.0, 5.0, 5.0)
  semantic_head: bool = True
  positive_iou: float = 0.5
  negative_iou: float = 0.4
  crowd_iou: float = 0.7
  negatives_per_positive: int = 3
  masks_per_image: int = 100
  top_k: int = 200
  score_threshold: float = 0.05
  nms_threshold: float = 0.5
  detections_per_image: int = 100
  mask_threshold: float = 0.5
  dtype: str = 'float32'

  def __post_init__(self):
    if self.proto_stride not in PROTO_STRIDES:
      raise ValueError(f'proto_stride must be one of {PROTO_STRIDES}, not {self.proto_stride}')
    levels = MAX_LEVEL - MIN_LEVEL + 1
    if len(self.anchor_scales) != levels:
      raise ValueError(f'anchor_scales needs one scale per level P{MIN_LEVEL}..P{MAX_LEVEL}, '
                       f'got {self.anchor_scales}')
    if not 0 < self.negative_iou <= self.positive_iou:
      raise ValueError(f'need 0 < negative_iou <= positive_iou, got {self.negative_iou}, '
                       f'{self.positive_iou}')

  @property
  def num_anchors(self) -> int:
    """Anchors per location, A."""
    return len(self.aspect_ratios)

  @property
  def proto_upsamplings(self) -> int:
    """x2 steps from P3 to the prototype resolution."""
    return int(round(math.log2(PROTO_SOURCE_STRIDE // self.proto_stride)))


def config_dict(**overrides) -> dict:
  """Every YolactConfig field an experiment sets (`config.model`), at its default."""
  return model_config.config_dict(YolactConfig, 'YOLACT', **overrides)


def from_config_dict(values, num_classes: int) -> YolactConfig:
  """A YolactConfig from an experiment's `config.model` (unknown keys are errors)."""
  return model_config.from_config_dict(YolactConfig, 'YOLACT', values,
                                       num_classes=num_classes)


def anchors(config: YolactConfig, image_size: Sequence[int]) -> jax.Array:
  """All anchors of P3..P7 for an (H, W) input: [A_total, 4] (x1, y1, x2, y2) pixels."""
  h, w = image_size
  scale = max(h, w) / config.anchor_reference_size
  levels = range(MIN_LEVEL, MAX_LEVEL + 1)
  grids = [(-(-h // 2**l), -(-w // 2**l)) for l in levels]
  strides = [2**l for l in levels]
  sizes = [[s * scale] for s in config.anchor_scales]
  return jnp.concatenate(anchor_ops.multilevel_anchors(
      grids, strides, sizes, [list(config.aspect_ratios)], offset=0.5))


# YOLACT initialises every conv with xavier_uniform and zero bias.
_XAVIER = nn.initializers.xavier_uniform()


def _conv(features, kernel, dtype, name, strides=1):
  return conv_lib.Conv(features, kernel, strides=strides, dtype=dtype, kernel_init=_XAVIER,
                       name=name)


class ProtoNet(nn.Module):
  """P3 [B, H/8, W/8, C] -> prototypes [B, H/s, W/s, k] (ReLU'd), s = proto_stride."""
  num_prototypes: int = 32
  channels: int = 256
  upsamplings: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    dtype = jnp.dtype(self.dtype)
    x = x.astype(dtype)
    for i in range(3):
      x = nn.relu(_conv(self.channels, 3, dtype, f'conv{i}')(x))
    for i in range(self.upsamplings):
      x = fpn_lib.upsample2x(x, 'bilinear')
      x = nn.relu(_conv(self.channels, 3, dtype, f'up_conv{i}')(x))
    return nn.relu(_conv(self.num_prototypes, 1, dtype, 'prototypes')(x)).astype(jnp.float32)


class PredictionHead(nn.Module):
  """One level [B, h, w, C] -> class logits [B, hwA, K + 1], deltas [B, hwA, 4],
  tanh coefficients [B, hwA, k]; the same instance is applied to every level."""
  num_classes: int
  num_anchors: int
  num_prototypes: int
  channels: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pyramid):
    dtype = jnp.dtype(self.dtype)
    a = self.num_anchors
    upfeature = _conv(self.channels, 3, dtype, 'upfeature')
    classes = _conv(a * (self.num_classes + 1), 3, dtype, 'class_logits')
    deltas = _conv(a * 4, 3, dtype, 'box_deltas')
    coefficients = _conv(a * self.num_prototypes, 3, dtype, 'coefficients')
    outs = ([], [], [])
    for x in pyramid:
      b = x.shape[0]
      t = nn.relu(upfeature(x.astype(dtype)))
      outs[0].append(classes(t).reshape(b, -1, self.num_classes + 1))
      outs[1].append(deltas(t).reshape(b, -1, 4))
      outs[2].append(jnp.tanh(coefficients(t).astype(jnp.float32)).reshape(
          b, -1, self.num_prototypes))
    return tuple(jnp.concatenate(o, axis=1).astype(jnp.float32) for o in outs)


class Yolact(nn.Module):
  """The networks of YOLACT; see the module docstring."""
  config: YolactConfig

  def setup(self):
    c = self.config
    dtype = jnp.dtype(c.dtype)
    self.backbone = resnet.get_resnet(c.backbone, width=c.width, norm=c.norm, dtype=dtype)
    self.fpn = fpn_lib.FPN(c.fpn_channels, in_levels=('C3', 'C4', 'C5'),
                           extra_levels=MAX_LEVEL - 5, extra_kind='conv', upsample='bilinear',
                           relu_outputs=True, dtype=dtype)
    self.protonet = ProtoNet(c.num_prototypes, c.proto_channels, c.proto_upsamplings,
                             dtype=dtype)
    self.head = PredictionHead(c.num_classes, c.num_anchors, c.num_prototypes,
                               c.head_channels, dtype=dtype)
    if c.semantic_head:
      self.semantic = conv_lib.Conv(c.num_classes, 1, dtype=dtype, kernel_init=_XAVIER)

  def features(self, images, *, train: bool = False) -> list[jax.Array]:
    """images [B, H, W, 3] -> [P3, .., P7], [B, H / 2**l, W / 2**l, fpn_channels]."""
    h, w = images.shape[1:3]
    if h % 32 or w % 32:
      raise ValueError(f'YOLACT input H, W must be multiples of 32, got {(h, w)}')
    return self.fpn(self.backbone(image_ops.normalize(images), train=train), train=train)

  def outputs(self, pyramid, *, train: bool = False, prototypes=None) -> dict:
    """The heads on a pyramid (see `__call__`); the semantic logits only when training.
    `prototypes` given (e.g. transferred from a keyframe) replace the protonet's."""
    c = self.config
    class_logits, box_deltas, coefficients = self.head(pyramid)
    if prototypes is None:
      prototypes = self.protonet(pyramid[0])
    out = {'class_logits': class_logits, 'box_deltas': box_deltas,
           'coefficients': coefficients, 'prototypes': prototypes}
    if c.semantic_head and (train or self.is_initializing()):
      out['semantic_logits'] = self.semantic(pyramid[0]).astype(jnp.float32)
    return out

  def __call__(self, images, *, train: bool = False) -> dict:
    """images [B, H, W, 3] uint8 -> dict of
      class_logits     [B, A_total, K + 1] float32 (0 = background)
      box_deltas       [B, A_total, 4] float32 (relative to `anchors`)
      coefficients     [B, A_total, k] float32 in [-1, 1]
      prototypes       [B, H / s, W / s, k] float32 >= 0
      semantic_logits  [B, H / 8, W / 8, K] float32 (train=True, with semantic_head)
    """
    return self.outputs(self.features(images, train=train), train=train)


def full_image_sizes(images: jax.Array) -> jax.Array:
  """[B, 2] (H, W) of the whole input, for callers without letterbox sizes."""
  return jnp.broadcast_to(jnp.asarray(images.shape[1:3], jnp.int32), (images.shape[0], 2))


def detect(config: YolactConfig, outputs: dict, image_size: Sequence[int],
           image_sizes: jax.Array) -> dict:
  """Detections and their masks from the network outputs, all static shapes.

  Scores are the softmax over K + 1 classes without the background column; Fast NMS
  (`vision_jax.ops.suppression.fast_nms`) per class keeps `detections_per_image`. Each
  detection's mask is sigmoid(P c^T) at prototype resolution, cropped by its predicted
  box (1 prototype pixel of padding, as the reference), resized bilinearly to the input
  and thresholded at `mask_threshold`.

  Args:
    config: the model config.
    outputs: `Yolact.__call__`'s dict.
    image_size: (H, W) of the input.
    image_sizes: [B, 2] (height, width) of the real image in each padded input: boxes
      are clipped to it.

  Returns:
    boxes [B, D, 4] float32 input pixels, scores [B, D], classes [B, D] int32 (0-based),
    valid [B, D] bool, masks [B, D, H, W] uint8 (0 on invalid detections).
  """
  level_anchors = anchors(config, image_size)
  coder = box_ops.BoxCoder(tuple(config.box_weights))
  boxes = coder.decode(outputs['box_deltas'], level_anchors[None])
  boxes = box_ops.clip_boxes(boxes, (image_sizes[:, 0], image_sizes[:, 1]))
  scores = jax.nn.softmax(outputs['class_logits'], axis=-1)[..., 1:]
  kept = jax.vmap(functools.partial(
      suppression.fast_nms, iou_threshold=config.nms_threshold, top_k=config.top_k,
      max_output_size=config.detections_per_image,
      score_threshold=config.score_threshold))(boxes, scores)
  det_boxes = jnp.take_along_axis(boxes, kept.indices[..., None], axis=1)
  coefficients = jnp.take_along_axis(outputs['coefficients'], kept.indices[..., None], axis=1)
  prototypes = outputs['prototypes']
  h, w = prototypes.shape[1:3]
  probs = jax.nn.sigmoid(mask_ops.assemble_masks(prototypes, coefficients))
  probs = probs * mask_ops.box_region(det_boxes, (h, w), config.proto_stride, padding=1.0)
  probs = _resize_masks(probs, image_size)
  masks = (probs > config.mask_threshold) & kept.valid[:, :, None, None]
  return {'boxes': jnp.where(kept.valid[..., None], det_boxes, 0.0),
          'scores': jnp.where(kept.valid, kept.scores, 0.0),
          'classes': kept.classes, 'valid': kept.valid, 'masks': masks.astype(jnp.uint8)}


def _resize_masks(probs: jax.Array, image_size: Sequence[int]) -> jax.Array:
  """[B, D, h, w] -> [B, D, H, W] bilinearly (half-pixel centres): a fixed stencil when
  (H, W) is an integer multiple of (h, w), as at every `proto_stride`."""
  b, d, h, w = probs.shape
  factor = image_size[0] // h
  if (h * factor, w * factor) == tuple(image_size):
    return image_ops.upsample_linear(probs, factor, axes=(2, 3))
  return jax.image.resize(probs, (b, d, *image_size), method='linear')


def predict(model: Yolact, variables, images: jax.Array,
            image_sizes: jax.Array | None = None) -> dict:
  """The full inference path (jit-able): network, then `detect`."""
  if image_sizes is None:
    image_sizes = full_image_sizes(images)
  outputs = model.apply(variables, images)
  return detect(model.config, outputs, images.shape[1:3], image_sizes)
