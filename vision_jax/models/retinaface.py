"""RetinaFace (Deng et al. 2020): one FPN, SSH context on each level, and per-anchor face
score, box, 5-point and dense-mesh branches. flax.linen, NHWC, static shapes.

  cfg = RetinaFaceConfig(num_landmarks=5, num_mesh_points=68)
  model = RetinaFace(cfg)
  outputs = model.apply(variables, images_uint8, train=False)
  faces = detect(cfg, outputs, image_size=(160, 160))

Network (as Pytorch_Retinaface, with our ResNet and FPN):
  * ResNet trunk (`nn.resnet`) -> FPN (`nn.fpn.FPN` over `in_levels`, no extra level)
    -> `nn.ssh.SSH` on every level -> per level, 1x1 conv heads (not shared across
    levels, as the reference): class (A x 2 logits: background, face), box (A x 4),
    landmarks (A x 2 L), mesh (A x 2 M). L = 0 or M = 0 drops that branch.
  * Anchors: `anchor_sizes[l]` square anchors (ratio 1) per location of level l,
    centred on the cells (offset 0.5), in input pixels; the reference's
    (16, 32) / (64, 128) / (256, 512) at strides 8 / 16 / 32 for 640 px inputs.
Coding (SSD variances 0.1 / 0.2): boxes with `ops.boxes.encode_boxes` weights
(10, 10, 5, 5); each landmark and mesh point as (p - anchor centre) / (0.1 anchor
size) (`ops.boxes.encode_points`).
The dense mesh branch: the paper's dense regression branch renders a 3D mesh and was
never released; ours regresses the 68 iBUG points per anchor in the landmarks' coding, a
documented, trainable stand-in for "many points per face".

Outputs: {'class_logits': [B, N, 2], 'box_deltas': [B, N, 4], 'landmarks': [B, N, L, 2],
'mesh': [B, N, M, 2]} float32 over all N anchors (levels finest first, then rows,
columns, anchors), L / M axes of size 0 without the branch.
"""
import dataclasses
import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models import model_config
from vision_jax.nn import fpn as fpn_lib
from vision_jax.nn import resnet
from vision_jax.nn import ssh as ssh_lib
from vision_jax.ops import anchors as anchor_ops
from vision_jax.ops import boxes as box_ops
from vision_jax.ops import image as image_ops
from vision_jax.ops import suppression

LEVEL_STRIDES = {'C2': 4, 'C3': 8, 'C4': 16, 'C5': 32}


@dataclasses.dataclass(frozen=True)
class RetinaFaceConfig:
  """Everything that fixes the network, anchors, training targets and inference.

  Defaults are the reference's R50 recipe (640 px inputs).

  Attributes:
    num_landmarks: L points per face (5; 0: no landmark branch).
    num_mesh_points: M dense points per face (68; 0: no mesh branch).
    backbone, width, norm: the ResNet.
    in_levels: trunk levels the FPN reads (and the detection levels), finest first.
    fpn_channels: width of the FPN and SSH outputs.
    ssh: put an SSH module on every level (False: the heads read the FPN directly).
    anchor_sizes: per level, the square anchor sides in input pixels.
    box_weights: box coder weights.
    point_weight: landmark coder weight: codes are (p - anchor centre) * point_weight /
      anchor size (10 = 1 / the reference's landmark variance 0.1).
    positive_iou, negative_iou: anchor matching (positive at or above, background
      below, ignored in between; every face also gets its best anchor).
    negatives_per_positive: OHEM ratio.
    pre_nms_top_k, score_threshold, nms_threshold, detections_per_image: inference.
    point_vote_iou: > 0: each detected face's landmarks and mesh are the score-weighted
      mean of those decoded from every pre-NMS candidate above the score threshold that
      overlaps its box at this IoU (`ops.suppression.vote`); 0: the kept anchor's own
      (the reference). Boxes and scores are unchanged either way.
    dtype: compute dtype name.
  """
  num_landmarks: int = 5
  num_mesh_points: int = 68
  backbone: str = 'resnet50'
  width: int = 64
  norm: str = 'batch'
  in_levels: tuple = ('C3', 'C4', 'C5')
  fpn_channels: int = 256
  ssh: bool = True
  anchor_sizes: tuple = ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0))
  box_weights: tuple = (10.0, 10.0, 5.0, 5.0)
  point_weight: float = 10.0
  positive_iou: float = 0.5
  negative_iou: float = 0.3
  negatives_per_positive: int = 3
  pre_nms_top_k: int = 1000
  score_threshold: float = 0.02
  nms_threshold: float = 0.4
  detections_per_image: int = 50
  point_vote_iou: float = 0.0
  dtype: str = 'float32'

  def __post_init__(self):
    unknown = [level for level in self.in_levels if level not in LEVEL_STRIDES]
    if unknown or not self.in_levels:
      raise ValueError(f'in_levels must be trunk levels of {tuple(LEVEL_STRIDES)}, got '
                       f'{self.in_levels}')
    if len(self.anchor_sizes) != len(self.in_levels):
      raise ValueError(f'anchor_sizes needs one tuple of sizes per level {self.in_levels}, '
                       f'got {self.anchor_sizes}')
    if len({len(sizes) for sizes in self.anchor_sizes}) != 1:
      raise ValueError(f'every level needs the same number of anchors, got '
                       f'{self.anchor_sizes}')
    if not 0 <= self.point_vote_iou <= 1:
      raise ValueError(f'point_vote_iou is an IoU in [0, 1] (0: no voting), got '
                       f'{self.point_vote_iou}')
    if not 0 < self.negative_iou <= self.positive_iou:
      raise ValueError(f'need 0 < negative_iou <= positive_iou, got {self.negative_iou}, '
                       f'{self.positive_iou}')

  @property
  def num_anchors(self) -> int:
    """Anchors per location, A."""
    return len(self.anchor_sizes[0])

  @property
  def strides(self) -> tuple[int, ...]:
    return tuple(LEVEL_STRIDES[level] for level in self.in_levels)


def config_dict(**overrides) -> dict:
  """Every RetinaFaceConfig field an experiment sets (`config.model`), at its default."""
  return model_config.config_dict(RetinaFaceConfig, 'RetinaFace', data_fields=(),
                                   **overrides)


def from_config_dict(values) -> RetinaFaceConfig:
  """A RetinaFaceConfig from an experiment's `config.model` (unknown keys are errors)."""
  return model_config.from_config_dict(RetinaFaceConfig, 'RetinaFace', values,
                                       data_fields=())


def anchors(config: RetinaFaceConfig, image_size: Sequence[int]) -> jax.Array:
  """[N, 4] (x1, y1, x2, y2) input-pixel anchors of every level, in the outputs' order."""
  h, w = image_size
  grids = [(-(-h // s), -(-w // s)) for s in config.strides]
  return jnp.concatenate(anchor_ops.multilevel_anchors(
      grids, config.strides, [list(s) for s in config.anchor_sizes], [[1.0]], offset=0.5))


class RetinaFace(nn.Module):
  config: RetinaFaceConfig

  @nn.compact
  def __call__(self, images, *, train: bool = False) -> dict:
    """images: [B, H, W, 3] uint8 (or floats in [0, 1]), H and W multiples of the
    coarsest stride -> the module doc's outputs."""
    c = self.config
    h, w = images.shape[1:3]
    coarsest = max(c.strides)
    if h % coarsest or w % coarsest:
      raise ValueError(f'RetinaFace input H, W must be multiples of {coarsest}, got {(h, w)}')
    dtype = jnp.dtype(c.dtype)
    x = image_ops.normalize(images, dtype=dtype)
    last = max(c.in_levels, key=lambda level: LEVEL_STRIDES[level])
    features = resnet.get_resnet(c.backbone, width=c.width, norm=c.norm, dtype=dtype,
                                 module_name='backbone')(
        x, train=train, up_to=last)
    pyramid = fpn_lib.FPN(c.fpn_channels, in_levels=tuple(c.in_levels), extra_levels=0,
                          dtype=dtype, name='fpn')(features, train=train)
    a = c.num_anchors
    outputs = {'class_logits': [], 'box_deltas': [], 'landmarks': [], 'mesh': []}
    for i, level in enumerate(pyramid):
      if c.ssh:
        level = ssh_lib.SSH(c.fpn_channels, norm=c.norm, dtype=dtype, name=f'ssh{i}')(
            level, train=train)
      b = level.shape[0]

      def head(width, name, level=level, b=b):
        out = nn.Conv(a * width, (1, 1), dtype=dtype, name=f'{name}{i}')(level)
        return out.astype(jnp.float32).reshape(b, -1, width)

      outputs['class_logits'].append(head(2, 'class_head'))
      outputs['box_deltas'].append(head(4, 'box_head'))
      for key, count in (('landmarks', c.num_landmarks), ('mesh', c.num_mesh_points)):
        if count:
          outputs[key].append(head(2 * count, f'{key}_head').reshape(b, -1, count, 2))
    result = {}
    for key, parts in outputs.items():
      if parts:
        result[key] = jnp.concatenate(parts, axis=1)
    n = result['class_logits'].shape[1]
    for key in ('landmarks', 'mesh'):
      if key not in result:
        result[key] = jnp.zeros((images.shape[0], n, 0, 2), jnp.float32)
    return result


def detect(config: RetinaFaceConfig, outputs: dict, image_size: Sequence[int],
           image_sizes: jax.Array | None = None) -> dict:
  """Faces from the network outputs, in jit: decode, score threshold, NMS, top-K.

  Args:
    config: the model config.
    outputs: `RetinaFace.__call__`'s dict.
    image_size: (H, W) of the input.
    image_sizes: [B, 2] (height, width) of the real image inside each padded input
      (boxes are clipped to it); None: the whole input.

  Returns:
    boxes [B, D, 4] float32 input pixels, scores [B, D] (face probability), classes
    [B, D] int32 (zeros), valid [B, D] bool, landmarks [B, D, L, 2] and mesh
    [B, D, M, 2] input pixels (zeros on invalid slots); D = detections_per_image.
  """
  level_anchors = anchors(config, image_size)
  coder = box_ops.BoxCoder(tuple(config.box_weights))
  boxes = coder.decode(outputs['box_deltas'], level_anchors[None])
  b = boxes.shape[0]
  if image_sizes is None:
    image_sizes = jnp.broadcast_to(jnp.asarray(image_size, jnp.int32), (b, 2))
  boxes = box_ops.clip_boxes(boxes, (image_sizes[:, 0], image_sizes[:, 1]))
  scores = jax.nn.softmax(outputs['class_logits'], axis=-1)[..., 1]
  k = min(config.pre_nms_top_k, scores.shape[1])
  top_scores, top = jax.lax.top_k(scores, k)
  top_boxes = jnp.take_along_axis(boxes, top[..., None], axis=1)
  keep = top_scores > config.score_threshold
  kept = jax.vmap(functools.partial(
      suppression.nms, iou_threshold=config.nms_threshold,
      max_output_size=config.detections_per_image))(top_boxes, top_scores, valid=keep)
  index = jnp.take_along_axis(top, kept.indices, axis=1)  # [B, D] anchor indices
  valid = kept.valid
  result = {
      'boxes': jnp.where(valid[..., None], jnp.take_along_axis(boxes, index[..., None], 1),
                         0.0),
      'scores': jnp.where(valid, jnp.take_along_axis(scores, index, 1), 0.0),
      'classes': jnp.zeros_like(index),
      'valid': valid,
  }
  for key in ('landmarks', 'mesh'):
    if config.point_vote_iou > 0:
      codes = jnp.take_along_axis(outputs[key], top[..., None, None], axis=1)
      candidates = box_ops.decode_points(codes, level_anchors[top], config.point_weight)
      points = jax.vmap(functools.partial(suppression.vote,
                                          iou_threshold=config.point_vote_iou))(
          result['boxes'], top_boxes, top_scores, candidates, valid=keep)
    else:
      codes = jnp.take_along_axis(outputs[key], index[..., None, None], axis=1)
      points = box_ops.decode_points(codes, level_anchors[index], config.point_weight)
    result[key] = jnp.where(valid[..., None, None], points, 0.0)
  return result
