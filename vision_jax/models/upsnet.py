"""UPSNet (Xiong et al. 2019): Mask R-CNN plus a deformable semantic head, fused into
panoptic logits with an unknown channel.

  config = UPSNetConfig(num_classes=80, num_stuff=53)        # R50-FPN, detectron2 sizes
  model = UPSNet(config)
  variables = model.init(key, images)                        # Mask R-CNN's tree + 'semantic_head'
  pyramid = model.apply(variables, images, method=UPSNet.features)
  semantic = model.apply(variables, pyramid, method=UPSNet.semantic_head)   # [B, H/4, W/4, K + S]
  detections = predict(model, variables, images)             # Mask R-CNN's + the panoptic map

Networks: everything of `vision_jax.models.mask_rcnn.MaskRCNN` (backbone, FPN, RPN, box
and mask heads, reused as they are) and `semantic_head` (`SemanticHead`): one subnet of
`semantic_layers` deformable 3x3 convs + ReLU (`vision_jax.nn.deform_conv.DeformConv`,
their offset convs zero at init), shared by P2..P5; the last two are
`semantic_channels` wide (128). P3, P4, P5 are upsampled bilinearly to P2's 1/4 scale,
the four maps concatenated and a 1x1 conv (`score`) gives K + S semantic logits.

Semantic channels: the K thing classes first (channel c = detection class c, 0-based),
then the S stuff classes, the order of the dataset's semantic maps.

Panoptic head (`panoptic_logits`, plain jnp over static instance slots), per instance i
with box B_i and thing class c_i:
  SegTerm_i   the semantic logit of c_i inside B_i, 0 outside;
  MaskTerm_i  its 28 x 28 mask logits of class c_i pasted into B_i (0 outside);
  instance logit i = SegTerm_i + MaskTerm_i;
  stuff logits     = the semantic head's S stuff logits;
  unknown logit    = max over thing channels of the semantic logits - max_i SegTerm_i
                     (the reference code's void logit; `unknown_channel=False` drops it).
Channels: [S stuff, N instance slots, unknown]. Invalid slots get a logit of -1e4.
Inference (`predict`, all in jit): Mask R-CNN's detections (and pasted masks, for box /
mask AP); the `panoptic_detections` best with a score >= `panoptic_score_threshold`
become the instance slots; argmax at full resolution gives a segment per pixel:
stuff s -> segment s, instance slot i -> segment S + i; unknown pixels become void
(-1), as do stuff segments under `min_stuff_area` pixels and instance segments left
empty. Deviation kept on purpose: the reference's mask removal (dropping a detection
whose mask is mostly covered by better ones, on the host, before the head) is not
done: the argmax over instance logits already gives each pixel to one instance.
"""
import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models import mask_rcnn
from vision_jax.models import model_config
from vision_jax.models import rcnn_inference
from vision_jax.nn import conv as conv_lib
from vision_jax.nn import deform_conv
from vision_jax.ops import image as image_ops
from vision_jax.ops import masks as mask_ops

SEMANTIC_STRIDE = 4  # the semantic head's logits are at P2's scale
INVALID_LOGIT = -1e4  # the logit of an empty instance slot (finite: no NaN in softmax)


@dataclasses.dataclass(frozen=True)
class UPSNetConfig(mask_rcnn.MaskRCNNConfig):
  """MaskRCNNConfig plus the semantic and panoptic heads.

  Attributes:
    num_stuff: S stuff classes (semantic channels after the K thing classes).
    semantic_channels: width of the semantic subnet's last two convs (128).
    semantic_layers: deformable convs in the subnet (>= 2; the first ones keep the FPN
      width).
    semantic_deformable: deformable convs (the paper) or plain ones (ablation).
    unknown_channel: add the unknown channel to the panoptic logits.
    panoptic_detections: static instance slots at inference (detections fed to the
      panoptic head, best first).
    panoptic_score_threshold: detections below this score fill no slot.
    min_stuff_area: stuff segments with fewer pixels become void at inference.
  """
  num_stuff: int = 1
  semantic_channels: int = 128
  semantic_layers: int = 3
  semantic_deformable: bool = True
  unknown_channel: bool = True
  panoptic_detections: int = 100
  panoptic_score_threshold: float = 0.5
  min_stuff_area: int = 4096

  def __post_init__(self):
    if self.num_stuff < 1:
      raise ValueError(f'num_stuff must be >= 1, got {self.num_stuff}')
    if self.semantic_layers < 2:
      raise ValueError(f'semantic_layers must be >= 2, got {self.semantic_layers}')
    if not 1 <= self.panoptic_detections <= self.detections_per_image:
      raise ValueError(f'panoptic_detections must be in 1..detections_per_image '
                       f'({self.detections_per_image}), got {self.panoptic_detections}')
    if not self.mask_head:
      raise ValueError('UPSNet needs the mask head (mask_head=True)')

  @property
  def num_semantic(self) -> int:
    """K + S semantic channels."""
    return self.num_classes + self.num_stuff


_DATA_FIELDS = ('num_classes', 'num_keypoints', 'num_stuff')


def config_dict(**overrides) -> dict:
  """Every UPSNetConfig field an experiment sets (`config.model`), at its default
  (num_classes and num_stuff come from the dataset)."""
  return model_config.config_dict(UPSNetConfig, 'UPSNet', data_fields=_DATA_FIELDS,
                                  **overrides)


def from_config_dict(values, num_classes: int, num_stuff: int) -> UPSNetConfig:
  """An UPSNetConfig from an experiment's `config.model` (unknown keys are errors)."""
  if dict(values).get('keypoint_head'):
    raise ValueError('UPSNet has no keypoint head: set keypoint_head=False')
  return model_config.from_config_dict(UPSNetConfig, 'UPSNet', values,
                                       data_fields=_DATA_FIELDS, num_classes=num_classes,
                                       num_stuff=num_stuff)


class SemanticHead(nn.Module):
  """[P2, P3, P4, P5] -> semantic logits [B, H/4, W/4, num_classes]; see the module doc."""
  num_classes: int
  channels: int = 128
  layers: int = 3
  deformable: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pyramid: Sequence[jax.Array]) -> jax.Array:
    dtype = jnp.dtype(self.dtype)
    width = pyramid[0].shape[-1]
    convs = []
    for i in range(self.layers):
      features = width if i < self.layers - 2 else self.channels
      init = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')  # kaiming_normal
      if self.deformable:
        convs.append(deform_conv.DeformConv(features, 3, kernel_init=init, dtype=dtype,
                                            name=f'conv{i}'))
      else:
        convs.append(conv_lib.Conv(features, 3, kernel_init=init, dtype=dtype,
                                   name=f'conv{i}'))
    maps = []
    for level, x in enumerate(pyramid[:4]):
      x = x.astype(dtype)
      for conv in convs:
        x = nn.relu(conv(x))
      maps.append(image_ops.upsample_linear(x, 2**level))
    score = conv_lib.Conv(self.num_classes, 1, dtype=dtype,
                          kernel_init=nn.initializers.normal(0.01), name='score')
    return score(jnp.concatenate(maps, axis=-1)).astype(jnp.float32)


class UPSNet(mask_rcnn.MaskRCNN):
  """Mask R-CNN's networks plus `semantic_predictor`; see the module docstring."""
  config: UPSNetConfig

  def setup(self):
    super().setup()
    c = self.config
    self.semantic_predictor = SemanticHead(c.num_semantic, c.semantic_channels,
                                           c.semantic_layers, c.semantic_deformable,
                                           dtype=jnp.dtype(c.dtype))

  def semantic_head(self, pyramid) -> jax.Array:
    """[P2, .., P6] -> semantic logits [B, H/4, W/4, K + S] float32 (P2..P5 are read)."""
    return self.semantic_predictor(pyramid)

  def __call__(self, images, *, train: bool = False) -> dict:
    """Mask R-CNN's `__call__` (for `init`) plus 'semantic_logits'."""
    out = super().__call__(images, train=train)
    out['semantic_logits'] = self.semantic_head(self.features(images, train=train))
    return out


def semantic_at(semantic_logits: jax.Array, size: Sequence[int]) -> jax.Array:
  """[B, h, w, C] semantic logits at stride 4 -> [B, H, W, C] (bilinear; H = 4h, or
  resized when `size` is not a multiple)."""
  b, h, w, c = semantic_logits.shape
  if tuple(size) == (h, w):
    return semantic_logits
  factor = size[0] // h
  if (h * factor, w * factor) == tuple(size):
    return image_ops.upsample_linear(semantic_logits, factor)
  return jax.image.resize(semantic_logits, (b, *size, c), 'linear')


def panoptic_logits(semantic_logits: jax.Array, boxes: jax.Array, classes: jax.Array,
                    mask_logits: jax.Array, valid: jax.Array, *, num_things: int,
                    stride: int, unknown_channel: bool = True) -> jax.Array:
  """The panoptic head: [S stuff, N instances, (unknown)] logits per pixel.

  Args:
    semantic_logits: [B, h, w, K + S] at `stride` input pixels per pixel (things first).
    boxes: [B, N, 4] instance boxes (x1, y1, x2, y2) in input pixels.
    classes: [B, N] int32 0-based thing classes.
    mask_logits: [B, N, M, M] each instance's mask logits of its class (box frame).
    valid: [B, N] bool: the filled slots.
    num_things: K.
    stride: input pixels per pixel of `semantic_logits`.
    unknown_channel: append the unknown logit.

  Returns:
    [B, h, w, S + N (+ 1)] float32.
  """
  h, w = semantic_logits.shape[1:3]
  semantic_logits = semantic_logits.astype(jnp.float32)
  things = semantic_logits[..., :num_things]
  stuff = semantic_logits[..., num_things:]
  # The reference fills rows y0..round(y1) and columns x0..round(x1) of the box at the
  # map's scale: the cells whose centres lie in the box, give or take half a cell.
  inside = mask_ops.box_region(boxes, (h, w), stride, padding=0.5)  # [B, N, h, w]
  class_maps = jnp.take_along_axis(
      jnp.moveaxis(things, -1, 1), classes[:, :, None, None], axis=1)  # [B, N, h, w]
  seg_term = jnp.where(inside & valid[:, :, None, None], class_maps, 0.0)
  mask_term = rcnn_inference.paste_masks(mask_logits, boxes / stride, (h, w))
  instance = jnp.where(valid[:, :, None, None], seg_term + mask_term, INVALID_LOGIT)
  channels = [stuff, jnp.moveaxis(instance, 1, -1)]
  if unknown_channel:
    covered = jnp.where(valid[:, :, None, None], seg_term, -jnp.inf)
    best_seg = jnp.max(covered, axis=1)
    best_seg = jnp.where(jnp.isfinite(best_seg), best_seg, 0.0)  # no instance: 0
    channels.append((jnp.max(things, axis=-1) - best_seg)[..., None])
  return jnp.concatenate(channels, axis=-1)


def panoptic_segments(logits: jax.Array, instance_valid: jax.Array, *, num_stuff: int,
                      min_stuff_area: int, unknown_channel: bool) -> dict:
  """argmax of panoptic logits -> segments.

  Args:
    logits: [B, H, W, S + N (+ 1)] from `panoptic_logits`.
    instance_valid: [B, N] the filled instance slots.

  Returns:
    {'panoptic': [B, H, W] int32 segment index (stuff s -> s, instance slot i ->
     S + i) or -1 for void (unknown pixels, small stuff, empty segments),
     'segment_valid': [B, S + N] bool (segments with pixels), 'segment_area' [B, S + N]
     int32}.
  """
  s = num_stuff
  n = instance_valid.shape[1]
  winner = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  if unknown_channel:
    winner = jnp.where(winner == s + n, -1, winner)
  onehot = winner[..., None] == jnp.arange(s + n)
  area = jnp.sum(onehot, axis=(1, 2), dtype=jnp.int32)  # [B, S + N]
  keep = jnp.concatenate([area[:, :s] >= max(min_stuff_area, 1),
                          instance_valid & (area[:, s:] > 0)], axis=1)
  kept_winner = jnp.take_along_axis(keep, jnp.maximum(winner, 0).reshape(
      winner.shape[0], -1), axis=1).reshape(winner.shape)
  panoptic = jnp.where((winner >= 0) & kept_winner, winner, -1)
  area = jnp.where(keep, area, 0)
  return {'panoptic': panoptic, 'segment_valid': keep & (area > 0), 'segment_area': area}


def predict(model: UPSNet, variables, images: jax.Array,
            image_sizes: jax.Array | None = None, *, mask_threshold: float = 0.5) -> dict:
  """The full inference path (jit-able): Mask R-CNN's detections and masks, then the
  panoptic head at the input resolution.

  Returns:
    `rcnn_inference.predict`'s dict plus 'panoptic' [B, H, W] int32 (see
    `panoptic_segments`), 'segment_valid', 'segment_area' [B, S + P], and
    'segment_classes' [B, S + P] int32 semantic channels (stuff s -> K + s, slot i ->
    its thing class), 'segment_scores' [B, S + P] (1 for stuff, the detection score for
    instances); P = panoptic_detections.
  """
  c = model.config
  out, pyramid, mask_logits = rcnn_inference.predict_with_internals(
      model, variables, images, image_sizes, mask_threshold=mask_threshold)
  p = c.panoptic_detections
  # Detections come best first; the first P that pass the threshold fill the slots.
  slot_valid = out['valid'][:, :p] & (out['scores'][:, :p] >= c.panoptic_score_threshold)
  boxes, classes = out['boxes'][:, :p], out['classes'][:, :p]
  semantic = model.apply(variables, pyramid, method=UPSNet.semantic_head)
  size = images.shape[1:3]
  logits = panoptic_logits(semantic_at(semantic, size), boxes, classes, mask_logits[:, :p],
                           slot_valid, num_things=c.num_classes, stride=1,
                           unknown_channel=c.unknown_channel)
  segments = panoptic_segments(logits, slot_valid, num_stuff=c.num_stuff,
                               min_stuff_area=c.min_stuff_area,
                               unknown_channel=c.unknown_channel)
  b = images.shape[0]
  stuff_classes = jnp.broadcast_to(jnp.arange(c.num_stuff, dtype=jnp.int32) + c.num_classes,
                                   (b, c.num_stuff))
  out.update(segments)
  out['segment_classes'] = jnp.concatenate([stuff_classes, classes], axis=1)
  out['segment_scores'] = jnp.concatenate([jnp.ones((b, c.num_stuff)), out['scores'][:, :p]],
                                          axis=1)
  return out
