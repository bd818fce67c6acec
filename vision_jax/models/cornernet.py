"""CornerNet (Law & Deng 2018) and CenterNet with keypoint triplets (Duan et al. 2019),
flax.linen, NHWC, static shapes; decoding in jnp (jit-able).

  cfg = CornerNetConfig(num_classes=3, centers=True, ...)     # centers: the triplet model
  model = CornerNet(cfg)
  stacks = model.apply(variables, images_uint8, train=False)  # one dict per stack
  dets = decode(cfg, stacks[-1])                              # the last stack's outputs

Network (princeton-vl/CornerNet `kp`, Duankaiwen/CenterNet `kp` for the triplets):
  * stem: 7x7/2 conv-BN-ReLU (`stem_width`) + a stride-2 basic residual to `widths[0]`
    (stride 4 in all);
  * `num_stacks` hourglasses (`nn.hourglass.Hourglass` with CornerNet's basic residuals
    and strided downsampling); after each, a 3x3 conv-BN-ReLU to `cnv_dim`, then
    - top-left and bottom-right corner pooling modules (`CornerPooling`): two 3x3
      conv-BN-ReLU branches (`pool_dim`), pooled by TopPool and LeftPool (BottomPool and
      RightPool) and summed, 3x3 conv-BN, plus a 1x1 conv-BN skip of the input, ReLU,
      3x3 conv-BN-ReLU. With `centers` each branch is cascade corner pooling
      (`ops.cascade_corner_pool`, with its own look branch and a 3x3 bias-free mix conv);
    - with `centers`, a center pooling module (`CenterPooling`, `ops.center_pool` in the
      same frame);
    - heads per keypoint type, each 3x3 conv (bias) - ReLU - 1x1 conv
      (`models.centernet.Head`): class heatmap logits (bias -2.19), a 1-d embedding
      (corners only) and a 2-d sub-cell offset;
    - between stacks: ReLU(1x1 conv-BN(previous input) + 1x1 conv-BN(cnv)), then a basic
      residual.
  Every stack's heads are returned (intermediate supervision); inference reads the last.

Outputs per stack (float32, h = H / 4, w = W / 4, C = num_classes):
  tl_heat, br_heat [B, h, w, C] logits; tl_embed, br_embed [B, h, w, 1];
  tl_offset, br_offset [B, h, w, 2] (dx, dy) in output cells; with `centers` also
  ct_heat [B, h, w, C] and ct_offset [B, h, w, 2].
Corner convention: the top-left corner of box (x1, y1, x2, y2) (input pixels, pixel
edges) is the point (x1, y1) / 4 in output units, the bottom-right (x2, y2) / 4; each lies
in cell floor(point) with the fractional part as its offset
(`vision_jax.losses.cornernet.cornernet_targets`).
"""
import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models import centernet
from vision_jax.models import model_config
from vision_jax.nn import hourglass
from vision_jax.nn import norms
from vision_jax.ops import corner_pooling
from vision_jax.ops import heatmaps
from vision_jax.ops import image as image_ops
from vision_jax.ops import suppression

OUTPUT_STRIDE = 4
RADIUS_RULES = ('cornernet', 'centernet')
SOFT_NMS_METHODS = ('gaussian', 'linear')
CORNERS = {'tl': ('top', 'left'), 'br': ('bottom', 'right')}


@dataclasses.dataclass(frozen=True)
class CornerNetConfig:
  """Everything that fixes the network, its training targets and its decoding.

  Defaults are the references' Hourglass-104 (511 px inputs, COCO).

  Attributes:
    num_classes: heatmap channels (from the dataset).
    centers: the keypoint-triplet model (Duan et al.): a center heatmap and offsets from
      center pooling, cascade corner pooling, and the central-region check at decoding.
    num_stacks, depth, widths, num_residuals: the hourglasses (`nn.hourglass.Hourglass`
      with basic residuals and strided downsampling; widths[0] is the stacks' width).
    stem_width: the 7x7 stem conv's channels.
    cnv_dim: channels after each hourglass (the pooling modules' and heads' input).
    pool_dim: channels of the pooling branches (128 in the references).
    head_dim: hidden channels of each head (256 in the references).
    norm: every norm ('batch' | 'group' | 'frozen_batch' | 'none').
    dtype: compute dtype name.
    radius_rule: gaussian radius of the targets: 'cornernet'
      (`ops.heatmaps.cornernet_gaussian_radius`) or 'centernet'
      (`ops.heatmaps.gaussian_radius`, which Duankaiwen/CenterNet kept).
    gaussian_iou: the radius rule's minimum IoU (the paper's t = 0.3: corners within the
      radius still make a box of at least this IoU).
    top_k: corners of each type (and centers) taken from the heatmaps.
    num_pairs: best-scoring corner pairs kept before suppression.
    ae_threshold: pairs whose embeddings differ by more are rejected.
    peak_kernel: local-maximum window of the heatmaps.
    soft_nms: 'gaussian' | 'linear' soft-NMS over each class's pairs.
    soft_nms_sigma, soft_nms_iou: the gaussian's sigma; the linear method's IoU.
    soft_nms_min_score: pairs whose (decayed) score falls below this are dropped.
    max_detections: detections per image after suppression.
    center_area: triplets: boxes up to this area (input pixels^2) are checked on their
      middle third, larger ones on their middle fifth.
  """
  num_classes: int = 80
  centers: bool = False
  num_stacks: int = 2
  depth: int = 5
  widths: tuple = (256, 256, 384, 384, 384, 512)
  num_residuals: int | tuple = (2, 2, 2, 2, 2, 4)
  stem_width: int = 128
  cnv_dim: int = 256
  pool_dim: int = 128
  head_dim: int = 256
  norm: str = 'batch'
  dtype: str = 'float32'
  radius_rule: str = 'cornernet'
  gaussian_iou: float = 0.3
  top_k: int = 100
  num_pairs: int = 1000
  ae_threshold: float = 0.5
  peak_kernel: int = 3
  soft_nms: str = 'gaussian'
  soft_nms_sigma: float = 0.5
  soft_nms_iou: float = 0.5
  soft_nms_min_score: float = 0.001
  max_detections: int = 100
  center_area: float = 22500.0

  def __post_init__(self):
    if self.radius_rule not in RADIUS_RULES:
      raise ValueError(f'radius_rule must be one of {RADIUS_RULES}, not {self.radius_rule!r}')
    if self.soft_nms not in SOFT_NMS_METHODS:
      raise ValueError(f'soft_nms must be one of {SOFT_NMS_METHODS}, not {self.soft_nms!r}')
    if len(self.widths) != self.depth + 1:
      raise ValueError(f'widths needs depth + 1 = {self.depth + 1} entries, got '
                       f'{len(self.widths)}: {self.widths}')

  @property
  def input_multiple(self) -> int:
    """Input H and W must be multiples of this."""
    return OUTPUT_STRIDE * 2**self.depth


def config_dict(**overrides) -> dict:
  """Every CornerNetConfig field an experiment sets (`config.model`), at its default."""
  return model_config.config_dict(CornerNetConfig, 'CornerNet', **overrides)


def from_config_dict(values, num_classes: int) -> CornerNetConfig:
  """A CornerNetConfig from an experiment's `config.model` (unknown keys are errors)."""
  return model_config.from_config_dict(CornerNetConfig, 'CornerNet', values,
                                       num_classes=num_classes)


# The references' bias-free convolutions (a norm follows, or a pooled sum), torch's init.
_conv = functools.partial(hourglass.torch_conv, use_bias=False)


class ConvNormReLU(nn.Module):
  """CornerNet's `convolution`: k x k conv (no bias, 'conv'), norm ('bn'), ReLU."""
  features: int
  kernel: int = 3
  stride: int = 1
  norm: Callable[..., nn.Module] | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    x = _conv(self.features, self.kernel, self.stride, dtype=self.dtype, name='conv')(x)
    return nn.relu(self.norm(name='bn')(x))


def _pooled_block(x, pooled, features, norm, dtype):
  """The shared tail of the pooling modules: ReLU(BN(conv3x3(pooled)) + BN(conv1x1(x)))
  then a 3x3 conv-BN-ReLU. Call inside a compact module."""
  p = norm(name='p_bn1')(_conv(features, 3, dtype=dtype, name='p_conv1')(pooled))
  skip = norm(name='bn1')(_conv(features, 1, dtype=dtype, name='conv1')(x))
  return ConvNormReLU(features, norm=norm, dtype=dtype, name='conv2')(nn.relu(p + skip))


class CornerPooling(nn.Module):
  """A corner pooling module (CornerNet's `pool`; cascade: Duan et al.'s).

  Attributes:
    corner: 'tl' (TopPool + LeftPool) or 'br' (BottomPool + RightPool).
    features: output channels (cnv_dim).
    pool_dim: channels of the two pooled branches.
    cascade: cascade corner pooling (each branch first looks along the cross direction).
    norm: a `norms.make_norm` factory.
    dtype: compute dtype.
  """
  corner: str
  features: int
  pool_dim: int = 128
  cascade: bool = False
  norm: Callable[..., nn.Module] | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    """x: [B, h, w, c] -> [B, h, w, features]."""
    norm, dtype = self.norm, self.dtype
    pooled = 0.0
    for i, direction in enumerate(CORNERS[self.corner], start=1):
      branch = ConvNormReLU(self.pool_dim, norm=norm, dtype=dtype, name=f'p{i}_conv1')(x)
      if self.cascade:
        look = ConvNormReLU(self.pool_dim, norm=norm, dtype=dtype, name=f'look_conv{i}')(x)
        mix = _conv(self.pool_dim, 3, dtype=dtype, name=f'P{i}_look_conv')
        pooled = pooled + corner_pooling.cascade_corner_pool(branch, look, direction, mix=mix)
      else:
        pooled = pooled + corner_pooling.corner_pool(branch, direction)
    return _pooled_block(x, pooled, self.features, norm, dtype)


class CenterPooling(nn.Module):
  """Duan et al.'s center pooling module (`pool_cross`): column max of one branch plus
  row max of the other (`ops.center_pool`), in CornerPooling's frame."""
  features: int
  pool_dim: int = 128
  norm: Callable[..., nn.Module] | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    """x: [B, h, w, c] -> [B, h, w, features]."""
    norm, dtype = self.norm, self.dtype
    p1 = ConvNormReLU(self.pool_dim, norm=norm, dtype=dtype, name='p1_conv1')(x)
    p2 = ConvNormReLU(self.pool_dim, norm=norm, dtype=dtype, name='p2_conv1')(x)
    return _pooled_block(x, corner_pooling.center_pool(p1, p2), self.features, norm, dtype)


class CornerNet(nn.Module):
  """CornerNet, or with `config.centers` CenterNet with keypoint triplets."""
  config: CornerNetConfig

  @nn.compact
  def __call__(self, images, *, train: bool = False) -> list[dict[str, jax.Array]]:
    """The heads of every stack.

    Args:
      images: [B, H, W, 3] RGB uint8 (or float in [0, 1]), H and W multiples of
        `config.input_multiple`; normalised here with the ImageNet mean / std.
      train: batch norm mode (apply with mutable=['batch_stats'] when True).

    Returns:
      `num_stacks` dicts of the module docstring's outputs, the first stack's first.
    """
    cfg = self.config
    h, w = images.shape[1:3]
    if h % cfg.input_multiple or w % cfg.input_multiple:
      raise ValueError(f'CornerNet(depth={cfg.depth}) needs input H and W multiples of '
                       f'{cfg.input_multiple}, got {h} x {w}')
    dtype = jnp.dtype(cfg.dtype)
    norm = norms.make_norm(cfg.norm, train=train, dtype=dtype)
    width = cfg.widths[0]
    x = jnp.asarray(image_ops.normalize(images), dtype)
    x = ConvNormReLU(cfg.stem_width, 7, 2, norm=norm, dtype=dtype, name='stem_conv')(x)
    x = hourglass.BasicResidual(width, stride=2, norm=norm, dtype=dtype, name='stem_res')(x)
    small = nn.initializers.normal(1e-3)
    outputs = []
    for s in range(cfg.num_stacks):
      y = hourglass.Hourglass(cfg.depth, cfg.widths, cfg.num_residuals, 'basic', 'stride',
                              cfg.norm, cfg.dtype, name=f'hg{s}')(x, train=train)
      cnv = ConvNormReLU(cfg.cnv_dim, norm=norm, dtype=dtype, name=f'cnv{s}')(y)
      heads = {}
      kinds = ('tl', 'br', 'ct') if cfg.centers else ('tl', 'br')
      for kind in kinds:
        if kind == 'ct':
          feat = CenterPooling(cfg.cnv_dim, cfg.pool_dim, norm, dtype, name=f'ct_pool{s}')(cnv)
        else:
          feat = CornerPooling(kind, cfg.cnv_dim, cfg.pool_dim, cfg.centers, norm, dtype,
                               name=f'{kind}_pool{s}')(cnv)
        heads[f'{kind}_heat'] = centernet.Head(
            cfg.num_classes, cfg.head_dim, centernet.HEATMAP_BIAS_INIT, dtype=dtype,
            name=f'{kind}_heat{s}')(feat)
        if kind != 'ct':
          heads[f'{kind}_embed'] = centernet.Head(1, cfg.head_dim, dtype=dtype,
                                                  name=f'{kind}_embed{s}')(feat)
        heads[f'{kind}_offset'] = centernet.Head(2, cfg.head_dim, 0.0, small, dtype,
                                                 name=f'{kind}_offset{s}')(feat)
      outputs.append(heads)
      if s < cfg.num_stacks - 1:
        a = norm(name=f'inter_bn{s}')(_conv(width, 1, dtype=dtype, name=f'inter_conv{s}')(x))
        b = norm(name=f'cnv_bn{s}')(_conv(width, 1, dtype=dtype, name=f'cnv_conv{s}')(cnv))
        x = hourglass.BasicResidual(width, norm=norm, dtype=dtype,
                                    name=f'inter_res{s}')(nn.relu(a + b))
    return outputs


# Decoding.


def top_keypoints(logits, offsets, k: int, *, kernel: int = 3, stride: int = OUTPUT_STRIDE,
                  embeddings=None) -> dict:
  """The k best heatmap peaks over classes and positions, with their offsets applied.

  Args:
    logits: [B, h, w, C] heatmap logits.
    offsets: [B, h, w, 2] (dx, dy) in output cells.
    k: static count (clamped to h * w * C).
    kernel: peak window.
    stride: input pixels per output cell.
    embeddings: optional [B, h, w, 1] embeddings read at the peaks.

  Returns:
    {'scores' [B, k] descending, 'classes' [B, k] int32, 'x', 'y' [B, k] input pixels
     ((cell + offset) * stride), and 'embed' [B, k] when embeddings are given}.
  """
  peaks = heatmaps.local_peaks(jax.nn.sigmoid(jnp.asarray(logits, jnp.float32)), kernel)
  b, h, w, c = peaks.shape
  scores, flat = jax.lax.top_k(peaks.reshape(b, h * w * c), min(k, h * w * c))
  pos = (flat // c).astype(jnp.int32)
  off = heatmaps.gather_features(jnp.asarray(offsets, jnp.float32), pos)
  out = {'scores': scores, 'classes': (flat % c).astype(jnp.int32),
         'x': ((pos % w).astype(jnp.float32) + off[..., 0]) * stride,
         'y': ((pos // w).astype(jnp.float32) + off[..., 1]) * stride}
  if embeddings is not None:
    out['embed'] = heatmaps.gather_features(jnp.asarray(embeddings, jnp.float32), pos)[..., 0]
  return out


def pair_corners(tl: dict, br: dict, num_pairs: int, ae_threshold: float) -> dict:
  """CornerNet's corner grouping: every top-left with every bottom-right, best first.

  A pair (i, j) scores (tl_score_i + br_score_j) / 2 and is rejected when the classes
  differ, |tl_embed_i - br_embed_j| > ae_threshold, or br_x < tl_x or br_y < tl_y.

  Args:
    tl, br: `top_keypoints` dicts (with 'embed') of K corners each.
    num_pairs: static count of pairs kept (clamped to K * K).
    ae_threshold: the embedding distance limit.

  Returns:
    {'boxes' [B, P, 4] (tl_x, tl_y, br_x, br_y), 'scores' [B, P] descending, 'classes'
     [B, P] int32, 'valid' [B, P] bool (rejected pairs, if taken, score -1 and are
     invalid)}.
  """
  k = tl['scores'].shape[1]
  scores = (tl['scores'][:, :, None] + br['scores'][:, None, :]) / 2
  ok = ((tl['classes'][:, :, None] == br['classes'][:, None, :])
        & (jnp.abs(tl['embed'][:, :, None] - br['embed'][:, None, :]) <= ae_threshold)
        & (br['x'][:, None, :] >= tl['x'][:, :, None])
        & (br['y'][:, None, :] >= tl['y'][:, :, None]))
  scores = jnp.where(ok, scores, -1.0).reshape(scores.shape[0], k * k)
  scores, flat = jax.lax.top_k(scores, min(num_pairs, k * k))
  i, j = flat // k, flat % k
  take = functools.partial(jnp.take_along_axis, axis=1)
  boxes = jnp.stack([take(tl['x'], i), take(tl['y'], i), take(br['x'], j), take(br['y'], j)],
                    axis=-1)
  return {'boxes': boxes, 'scores': scores, 'classes': take(tl['classes'], i),
          'valid': scores > -1.0}


def central_region(boxes, area_threshold: float = 22500.0):
  """Duan et al.'s central region of each box: the middle third (n = 3) of boxes whose
  area is at most `area_threshold`, the middle fifth (n = 5) of larger ones.

    left  = ((n + 1) x1 + (n - 1) x2) / 2n,  right  = ((n - 1) x1 + (n + 1) x2) / 2n,
  and the same in y. boxes: [..., 4] (x1, y1, x2, y2) -> [..., 4] (left, top, right,
  bottom).
  """
  boxes = jnp.asarray(boxes, jnp.float32)
  area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
  n = jnp.where(area <= area_threshold, 3.0, 5.0)[..., None]
  lo, hi = boxes[..., :2], boxes[..., 2:]
  return jnp.concatenate([((n + 1) * lo + (n - 1) * hi) / (2 * n),
                          ((n - 1) * lo + (n + 1) * hi) / (2 * n)], axis=-1)


def triplet_check(pairs: dict, centers: dict, area_threshold: float = 22500.0) -> dict:
  """The keypoint-triplet check: a box survives only if a center keypoint of its class
  lies strictly inside its central region (`central_region`); its score becomes
  (2 x box score + center score) / 3 with the best such center (the first in the centers'
  descending order). Boxes without one become invalid with score -1.

  Args:
    pairs: `pair_corners` output ([B, P] boxes, scores, classes, valid).
    centers: `top_keypoints` of the center heatmap ([B, Kc] x, y, scores, classes).
    area_threshold: see `central_region`.

  Returns:
    `pairs` with new 'scores' and 'valid'.
  """
  region = central_region(pairs['boxes'], area_threshold)[:, :, None, :]  # [B, P, 1, 4]
  cx, cy = centers['x'][:, None, :], centers['y'][:, None, :]  # [B, 1, Kc]
  inside = ((cx > region[..., 0]) & (cx < region[..., 2]) & (cy > region[..., 1])
            & (cy < region[..., 3])
            & (centers['classes'][:, None, :] == pairs['classes'][:, :, None]))
  found = jnp.any(inside, axis=-1) & pairs['valid']
  best = jnp.argmax(inside, axis=-1)  # the first True: the highest-scoring center
  center_score = jnp.take_along_axis(centers['scores'], best, axis=1)
  scores = jnp.where(found, (2 * pairs['scores'] + center_score) / 3, -1.0)
  return {**pairs, 'scores': scores, 'valid': found}


def suppress(cfg: CornerNetConfig, dets: dict, canvas: float) -> dict:
  """Per-class soft-NMS (`ops.soft_nms`, classes kept apart by offsetting their boxes),
  then the `max_detections` best. dets: [B, P] boxes / scores / classes / valid ->
  [B, max_detections] with the decayed scores (0 on padding)."""
  shifted = dets['boxes'] + (dets['classes'].astype(jnp.float32) * 2 * canvas)[..., None]

  def one(boxes, scores, valid):
    return suppression.soft_nms(boxes, scores, cfg.max_detections, method=cfg.soft_nms,
                                sigma=cfg.soft_nms_sigma, iou_threshold=cfg.soft_nms_iou,
                                score_threshold=cfg.soft_nms_min_score, valid=valid)

  kept = jax.vmap(one)(shifted, dets['scores'], dets['valid'])
  take = functools.partial(jnp.take_along_axis, axis=1)
  return {'boxes': take(dets['boxes'], kept.indices[..., None]),
          'scores': jnp.where(kept.valid, kept.scores, 0.0),
          'classes': jnp.where(kept.valid, take(dets['classes'], kept.indices), 0),
          'valid': kept.valid}


@functools.partial(jax.jit, static_argnames=('cfg',))
def decode(cfg: CornerNetConfig, outputs: dict) -> dict:
  """Detections from one stack's outputs (the last stack's at inference), in jit.

  Heatmap peaks (`peak_kernel` max-pool) -> top_k corners of each type with offsets and
  embeddings -> pairs (`pair_corners`) -> with `cfg.centers`, the triplet check on the
  top_k centers (`triplet_check`) -> boxes clipped to the input -> per-class soft-NMS ->
  `max_detections`.

  Returns:
    boxes [B, D, 4] float32 (x1, y1, x2, y2) input pixels, scores [B, D] descending,
    classes [B, D] int32, valid [B, D] bool; D = cfg.max_detections.
  """
  h, w = outputs['tl_heat'].shape[1:3]
  corners = {kind: top_keypoints(outputs[f'{kind}_heat'], outputs[f'{kind}_offset'],
                                 cfg.top_k, kernel=cfg.peak_kernel,
                                 embeddings=outputs[f'{kind}_embed'])
             for kind in ('tl', 'br')}
  dets = pair_corners(corners['tl'], corners['br'], cfg.num_pairs, cfg.ae_threshold)
  if cfg.centers:
    centers = top_keypoints(outputs['ct_heat'], outputs['ct_offset'], cfg.top_k,
                            kernel=cfg.peak_kernel)
    dets = triplet_check(dets, centers, cfg.center_area)
  limits = jnp.array([w, h, w, h], jnp.float32) * OUTPUT_STRIDE
  dets['boxes'] = jnp.clip(dets['boxes'], 0.0, limits)
  return suppress(cfg, dets, float(max(h, w) * OUTPUT_STRIDE))
