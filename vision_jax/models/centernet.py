"""CenterNet ("Objects as Points", Zhou et al. 2019) with a ResNet backbone, and its decode.

  model = CenterNet(num_classes=3, backbone='resnet18', width=32)
  variables = model.init(key, images)                      # images [B, H, W, 3] uint8
  out, upd = model.apply(variables, images, train=True, mutable=['batch_stats'])
  dets = decode(out, max_detections=100)                   # inside jit

Network (the paper's ResNet variant, without deformable convs): ResNet C5 (stride 32)
-> 3 upsampling stages x2 (`neck_channels`, default 256, 128, 64; optional skips from
C4, C3, C2: `skips`) -> stride 4 -> three
heads, each 3x3 conv (`head_channels`, bias) - ReLU - 1x1 conv:
  heatmap  [B, H/4, W/4, num_classes]  LOGITS (sigmoid -> center probability); final
           bias -2.19 = -log((1 - 0.1) / 0.1), so every pixel starts at p = 0.1.
  size     [B, H/4, W/4, 2]  (w, h) of the box in OUTPUT units (input pixels / 4), as
           in the official code (so the paper's size weight 0.1 applies).
  offset   [B, H/4, W/4, 2]  (dx, dy) sub-cell center offset in output units, in [0, 1).
All outputs are float32 whatever the compute dtype. H and W must be multiples of 32.

Targets matching these outputs: `vision_jax.losses.centernet.centernet_targets`.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.nn import conv as conv_lib
from vision_jax.nn import norms
from vision_jax.nn import resnet
from vision_jax.nn import upsample
from vision_jax.ops import heatmaps
from vision_jax.ops import image as image_ops

OUTPUT_STRIDE = 4
HEATMAP_BIAS_INIT = -2.19  # -log((1 - 0.1) / 0.1)
UPSAMPLE_MODES = ('deconv', 'bilinear', 'nearest')


class UpsampleNeck(nn.Module):
  """x2 upsampling stages 'up0', 'up1', ...: each (upsample, norm, ReLU).

  'deconv': 4x4 transposed conv, stride 2, torch padding 1 (official msra_resnet),
    see `vision_jax.nn.upsample.ConvTranspose4x4`;
  'bilinear' / 'nearest': resize x2 then 3x3 conv. Convs have no bias (a norm follows).
  With `laterals` (skip connections), stage i adds a 1x1 conv + norm of laterals[i]
  ('up{i}_lateral', 'up{i}_lateral_norm') before its ReLU.
  """
  channels: Sequence[int] = (256, 128, 64)
  upsample: str = 'deconv'
  norm: str = 'batch'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, laterals: Sequence[jax.Array] | None = None, *,
               train: bool = False):
    """x: [B, h, w, c] -> [B, h * 2**n, w * 2**n, channels[-1]].

    laterals: None, or one map per stage, [B, h * 2**(i+1), w * 2**(i+1), c_i].
    """
    if self.upsample not in UPSAMPLE_MODES:
      raise ValueError(f'upsample must be one of {UPSAMPLE_MODES}, not {self.upsample!r}')
    if laterals is not None and len(laterals) != len(self.channels):
      raise ValueError(f'{len(laterals)} lateral maps for {len(self.channels)} neck stages')
    dtype = jnp.dtype(self.dtype)
    norm = norms.make_norm(self.norm, train=train, dtype=dtype)
    for i, ch in enumerate(self.channels):
      name = f'up{i}'
      if self.upsample == 'deconv':
        x = upsample.ConvTranspose4x4(ch, dtype=dtype, name=f'{name}_conv')(x)
      else:
        b, h, w, c = x.shape
        x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method=self.upsample)
        x = conv_lib.Conv(ch, 3, use_bias=False, dtype=dtype,
                          kernel_init=resnet.conv_kernel_init, name=f'{name}_conv')(x)
      x = norm(name=f'{name}_norm')(x)
      if laterals is not None:
        lateral = conv_lib.Conv(ch, 1, use_bias=False, dtype=dtype,
                                kernel_init=resnet.conv_kernel_init,
                                name=f'{name}_lateral')(laterals[i])
        x = x + norm(name=f'{name}_lateral_norm')(lateral)
      x = nn.relu(x)
    return x


class Head(nn.Module):
  """3x3 conv (bias) - ReLU - 1x1 conv; float32 output."""
  features: int
  head_channels: int = 64
  bias_init: float = 0.0
  out_kernel_init: Any = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    dtype = jnp.dtype(self.dtype)
    x = conv_lib.Conv(self.head_channels, 3, dtype=dtype, name='conv')(x)
    x = nn.relu(x)
    x = conv_lib.Conv(self.features, 1, dtype=dtype, kernel_init=self.out_kernel_init,
                      bias_init=nn.initializers.constant(self.bias_init), name='out')(x)
    return x.astype(jnp.float32)


class CenterNet(nn.Module):
  """CenterNet with a ResNet backbone and an upsampling neck to stride 4.

  Attributes:
    num_classes: heatmap channels.
    backbone: 'resnet18' | 'resnet34' | 'resnet50' | 'resnet101' | 'resnet152'.
    width: backbone base width (64 = standard; 16/32 for CPU-sized models).
    neck_channels: channels of the 3 x2 upsampling stages (stride 32 -> 4).
    head_channels: hidden channels of each head's 3x3 conv.
    upsample: 'deconv' (transposed conv) | 'bilinear' | 'nearest' (resize + 3x3 conv).
    norm: backbone norm, 'batch' | 'frozen_batch' | 'group' | 'none'.
    neck_norm: neck norm; None = same as `norm`, except 'frozen_batch' -> 'batch'
      (a new neck has no statistics to freeze).
    dtype: compute dtype ('float32', 'bfloat16', or a jnp dtype); params float32.
    zero_init_residual: backbone blocks start as identities (see nn.resnet).
    skips: the neck adds the backbone maps of its stages' strides (C4, C3, C2), each
      through a 1x1 conv + norm, U-Net / FPN style (off = the paper's plain ResNet
      variant). At small inputs C5 is a coarse grid (4 x 4 at 128 x 128) from which a
      plain neck must rebuild positions; the skips bring them back.
  """
  num_classes: int
  backbone: str = 'resnet18'
  width: int = 64
  neck_channels: Sequence[int] = (256, 128, 64)
  head_channels: int = 64
  upsample: str = 'deconv'
  norm: str = 'batch'
  neck_norm: str | None = None
  dtype: Any = jnp.float32
  zero_init_residual: bool = False
  skips: bool = False

  @nn.compact
  def __call__(self, images, *, train: bool = False) -> dict[str, jax.Array]:
    """Dense CenterNet outputs.

    Args:
      images: [B, H, W, 3] RGB, uint8 (or float in [0, 1]); H, W multiples of 32.
        Normalized here with the ImageNet mean / std.
      train: batch-norm mode (apply with mutable=['batch_stats'] when True).

    Returns:
      {'heatmap': [B, H/4, W/4, num_classes] logits, 'size': [B, H/4, W/4, 2] (w, h)
       in output units, 'offset': [B, H/4, W/4, 2] (dx, dy) in output units}, float32.
    """
    if len(self.neck_channels) != 3:
      raise ValueError('CenterNet needs 3 neck stages (stride 32 -> 4), got '
                       f'neck_channels={tuple(self.neck_channels)}')
    h, w = images.shape[1:3]
    if h % 32 or w % 32:
      raise ValueError(f'CenterNet input H, W must be multiples of 32, got {(h, w)}')
    x = image_ops.normalize(images)
    feats = resnet.get_resnet(self.backbone, width=self.width, norm=self.norm,
                              dtype=self.dtype,
                              zero_init_residual=self.zero_init_residual,
                              )(x, train=train)
    neck_norm = self.neck_norm
    if neck_norm is None:
      neck_norm = 'batch' if self.norm == 'frozen_batch' else self.norm
    laterals = [feats['C4'], feats['C3'], feats['C2']] if self.skips else None
    x = UpsampleNeck(tuple(self.neck_channels), self.upsample, neck_norm, self.dtype,
                     name='neck')(feats['C5'], laterals, train=train)
    small = nn.initializers.normal(1e-3)
    return {
        'heatmap': Head(self.num_classes, self.head_channels, HEATMAP_BIAS_INIT,
                        dtype=self.dtype, name='heatmap')(x),
        'size': Head(2, self.head_channels, 0.0, small, self.dtype, name='size')(x),
        'offset': Head(2, self.head_channels, 0.0, small, self.dtype, name='offset')(x),
    }


@functools.partial(jax.jit, static_argnames=('max_detections', 'stride', 'pool_size', 'clip'))
def decode(outputs: dict, *, max_detections: int = 100, stride: int = OUTPUT_STRIDE,
           pool_size: int = 3, score_threshold: float = 0.0, clip: bool = True) -> dict:
  """CenterNet's peak-extraction decode (ctdet_decode), jnp, static shapes, jit-able.

  sigmoid -> keep local maxima (pool_size x pool_size max-pool == value, per class;
  plateaus keep all their pixels, as the official code) -> top-K over classes x
  positions -> read offset and size at each peak:
    cx = (x + dx) * stride, cy = (y + dy) * stride, w = size_w * stride, ...

  Args:
    outputs: CenterNet outputs: 'heatmap' logits [B, h, w, C], 'size' [B, h, w, 2]
      (w, h) output units, 'offset' [B, h, w, 2] output units.
    max_detections: K (static); clamped to h * w * C.
    stride: output stride (input pixels per output cell).
    pool_size: peak window (odd).
    score_threshold: `valid` = score > threshold (non-peaks score exactly 0).
    clip: clip boxes to the input canvas [0, w * stride] x [0, h * stride].

  Returns:
    boxes   [B, K, 4] float32 (x1, y1, x2, y2) in input pixels,
    scores  [B, K] float32 sigmoid probabilities, descending,
    classes [B, K] int32,
    valid   [B, K] bool.
  """
  heat = jax.nn.sigmoid(jnp.asarray(outputs['heatmap'], jnp.float32))
  batch, h, w, c = heat.shape
  peaks = heatmaps.local_peaks(heat, pool_size)
  k = min(max_detections, h * w * c)
  scores, flat = jax.lax.top_k(peaks.reshape(batch, h * w * c), k)
  classes = (flat % c).astype(jnp.int32)
  pos = (flat // c).astype(jnp.int32)
  ys = (pos // w).astype(jnp.float32)
  xs = (pos % w).astype(jnp.float32)
  offset = heatmaps.gather_features(jnp.asarray(outputs['offset'], jnp.float32), pos)
  size = heatmaps.gather_features(jnp.asarray(outputs['size'], jnp.float32), pos)
  size = jnp.maximum(size, 0.0)
  cx = (xs + offset[..., 0]) * stride
  cy = (ys + offset[..., 1]) * stride
  half_w = size[..., 0] * stride / 2
  half_h = size[..., 1] * stride / 2
  boxes = jnp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)
  if clip:
    boxes = jnp.clip(boxes, 0.0, jnp.array([w, h, w, h], jnp.float32) * stride)
  if k < max_detections:  # Keep the promised static K.
    pad = max_detections - k
    boxes = jnp.pad(boxes, ((0, 0), (0, pad), (0, 0)))
    scores = jnp.pad(scores, ((0, 0), (0, pad)))
    classes = jnp.pad(classes, ((0, 0), (0, pad)))
  return dict(boxes=boxes, scores=scores, classes=classes, valid=scores > score_threshold)
