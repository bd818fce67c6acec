"""YolactEdge (Liu et al. 2021): YOLACT on video with keyframe feature transfer.

  model = YolactEdge(YolactEdgeConfig(num_classes=3, ...))
  variables = model.init(key, images)                      # YOLACT's tree + 'flow_net'
  outputs, cache = model.apply(variables, frame0, method=YolactEdge.keyframe)
  outputs, _ = model.apply(variables, frame1, cache, method=YolactEdge.non_keyframe)
  detections = predict_clip(model, variables, clip, keyframe_interval=5)   # one jit'd scan

Keyframe: the whole backbone and FPN (as YOLACT), and a cache of what later frames
reuse: the FPN's merged top-down maps of C4 and C5 ('C4', 'C5': the P4 and P5 maps
before their output convs) and the C3 lateral ('C3_lateral').
Non-keyframe: the backbone up to C3 only and the C3 lateral. `FeatFlowNet`, on the C3
laterals of the keyframe and the current frame (each reduced to `flow_channels`),
predicts a flow to the keyframe at the P4 and P5 resolutions plus a per-channel scale
and bias; the cached C4 and C5 maps are warped by bilinear sampling
(`vision_jax.ops.warp`) and calibrated (x * scale + bias). Then as YOLACT: P3 =
upsample(warped P4) + the current C3 lateral, output convs, P6 and P7 from P5, the
protonet and the shared head (or, with `transfer_prototypes`, the keyframe's
prototypes warped by the P4 flow). The cache is the keyframe's until the next keyframe.

Flow convention: `flow[b, y, x] = (dx, dy)` in pixels of the level's map, pointing from
the current frame's pixel to where that point is in the keyframe (backward flow), so
`warp(key_map, flow) ~ current_map`. The flow heads start at zero: warping starts as
the identity and the calibration as x * 1 + 0.
"""
import dataclasses
import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models import model_config
from vision_jax.models import yolact
from vision_jax.nn import conv as conv_lib
from vision_jax.ops import image as image_ops
from vision_jax.ops import warp as warp_ops

# The FPN levels a non-keyframe takes from the keyframe, and the one it computes.
TRANSFERRED = ('C4', 'C5')
COMPUTED = 'C3'


@dataclasses.dataclass(frozen=True)
class YolactEdgeConfig(yolact.YolactConfig):
  """YolactConfig plus the feature transfer.

  Attributes:
    flow_channels: each frame's C3 lateral is reduced to this many channels (64).
    flow_widths: widths of FeatFlowNet's stride-2 convs; the i-th gives the flow of
      the i-th transferred level (P4, P5).
    keyframe_interval: k: frames 0, k, 2k, ... of a clip are keyframes.
    transfer_prototypes: non-keyframes also reuse the keyframe's prototypes, warped by
      the P4 flow resized to their resolution, instead of running the protonet (not in
      the reference: its non-keyframes run the protonet, which is the larger part of a
      non-keyframe's FLOPs at 544 x 544; the README measures speed and mask AP).
  """
  flow_channels: int = 64
  flow_widths: tuple = (128, 256)
  keyframe_interval: int = 5
  transfer_prototypes: bool = False

  def __post_init__(self):
    super().__post_init__()
    if len(self.flow_widths) != len(TRANSFERRED):
      raise ValueError(f'flow_widths needs one width per transferred level {TRANSFERRED}, '
                       f'got {self.flow_widths}')
    if self.keyframe_interval < 1:
      raise ValueError(f'keyframe_interval must be >= 1, got {self.keyframe_interval}')


def config_dict(**overrides) -> dict:
  """Every YolactEdgeConfig field an experiment sets (`config.model`), at its default."""
  return model_config.config_dict(YolactEdgeConfig, 'YolactEdge', **overrides)


def from_config_dict(values, num_classes: int) -> YolactEdgeConfig:
  """A YolactEdgeConfig from an experiment's `config.model` (unknown keys are errors)."""
  return model_config.from_config_dict(YolactEdgeConfig, 'YolactEdge', values,
                                       num_classes=num_classes)


class FeatFlowNet(nn.Module):
  """Two frames' C3 laterals -> per transferred level (flow, scale, bias).

  Attributes:
    channels: C, the channels of the maps to calibrate (the FPN width).
    reduce: channels each lateral is reduced to by a shared 1x1 conv (+ ReLU).
    widths: one stride-2 3x3 conv (+ ReLU) per level; each level's flow is a 3x3 conv
      on it, its scale and bias a dense layer on its spatial mean.
  """
  channels: int
  reduce: int = 64
  widths: Sequence[int] = (128, 256)
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, key_lateral, lateral):
    """[B, h, w, C] twice (stride 8) -> [(flow [B, h/2^(i+1), w/2^(i+1), 2] float32,
    scale [B, 1, 1, C], bias [B, 1, 1, C]) for each width i]."""
    dtype = jnp.dtype(self.dtype)
    reduce = conv_lib.Conv(self.reduce, 1, dtype=dtype, name='reduce')
    x = jnp.concatenate([nn.relu(reduce(key_lateral)), nn.relu(reduce(lateral))], axis=-1)
    outputs = []
    for i, width in enumerate(self.widths):
      x = nn.relu(conv_lib.Conv(width, 3, strides=2, dtype=dtype, name=f'down{i}')(x))
      flow = conv_lib.Conv(2, 3, dtype=dtype, kernel_init=nn.initializers.zeros,
                           name=f'flow{i}')(x).astype(jnp.float32)
      pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
      scale_bias = nn.Dense(2 * self.channels, kernel_init=nn.initializers.zeros,
                            name=f'scale_bias{i}')(pooled)
      scale = 1.0 + scale_bias[:, None, None, :self.channels]
      bias = scale_bias[:, None, None, self.channels:]
      outputs.append((flow, scale, bias))
    return outputs


class YolactEdge(yolact.Yolact):
  """YOLACT's networks plus `flow_net`; see the module docstring."""
  config: YolactEdgeConfig

  def setup(self):
    super().setup()
    c = self.config
    self.flow_net = FeatFlowNet(c.fpn_channels, c.flow_channels, tuple(c.flow_widths),
                                dtype=c.dtype)

  def keyframe(self, images, *, train: bool = False) -> tuple[dict, dict]:
    """images [B, H, W, 3] -> (YOLACT outputs, cache {'C4', 'C5', 'C3_lateral'} and,
    with `transfer_prototypes`, 'prototypes')."""
    self._check_size(images)
    features = self.backbone(image_ops.normalize(images), train=train)
    pyramid, inter = self.fpn(features, train=train, with_intermediates=True)
    cache = {name: inter['merged'][name] for name in TRANSFERRED}
    cache['C3_lateral'] = inter['laterals'][COMPUTED]
    outputs = self.outputs(pyramid, train=train)
    if self.config.transfer_prototypes:
      cache['prototypes'] = outputs['prototypes']
    return outputs, cache

  def transfer(self, cache: dict, lateral) -> tuple[dict, list]:
    """The cached maps warped to the current frame: ({'C4', 'C5'}, the flows)."""
    flows = self.flow_net(cache['C3_lateral'], lateral)
    warped = {}
    for name, (flow, scale, bias) in zip(TRANSFERRED, flows):
      key_map = cache[name]
      if flow.shape[1:3] != key_map.shape[1:3]:
        raise ValueError(f'flow for {name} is {flow.shape[1:3]}, the map {key_map.shape[1:3]}')
      moved = warp_ops.warp(key_map.astype(jnp.float32), flow)
      warped[name] = (moved * scale + bias).astype(key_map.dtype)
    return warped, [flow for flow, _, _ in flows]

  def non_keyframe(self, images, cache: dict, *, train: bool = False,
                   frozen_trunk: bool = False) -> tuple[dict, dict]:
    """images [B, H, W, 3] and a keyframe's cache -> (YOLACT outputs, {'warped': {'C4',
    'C5'}, 'flows': [flow at P4, flow at P5]}).

    frozen_trunk: stop gradients at the partial backbone and the C3 lateral (training,
    as the reference: the non-keyframe losses train the flow net and the layers above
    the transfer, never the trunk the keyframes share).
    """
    self._check_size(images)
    features = self.backbone(image_ops.normalize(images), train=train, up_to=COMPUTED)
    lateral = self.fpn({COMPUTED: features[COMPUTED]}, train=train,
                       laterals_only=True)[COMPUTED]
    if frozen_trunk:
      lateral = jax.lax.stop_gradient(lateral)
    warped, flows = self.transfer(cache, lateral)
    pyramid = self.fpn({}, train=train, top_down=warped, laterals={COMPUTED: lateral})
    prototypes = None
    if self.config.transfer_prototypes:
      key_prototypes = cache['prototypes']
      flow = warp_ops.resize_flow(flows[0], key_prototypes.shape[1:3])
      prototypes = warp_ops.warp(key_prototypes.astype(jnp.float32), flow).astype(
          key_prototypes.dtype)
    return (self.outputs(pyramid, train=train, prototypes=prototypes),
            {'warped': warped, 'flows': flows})

  def _check_size(self, images):
    h, w = images.shape[1:3]
    if h % 32 or w % 32:
      raise ValueError(f'YolactEdge input H, W must be multiples of 32, got {(h, w)}')

  def __call__(self, images, *, train: bool = False) -> dict:
    """The keyframe outputs of `images` (a still image is a keyframe); `init` runs the
    non-keyframe path too, to create every parameter."""
    outputs, cache = self.keyframe(images, train=train)
    if self.is_initializing():
      self.non_keyframe(images, cache, train=train)
    return outputs


def _frame_step(model, variables, config, image_size, interval, carry, inputs):
  """One frame of `predict_clip`'s scan: keyframe or not by its index."""
  index, frame, sizes = inputs

  def key(cache):
    del cache
    outputs, fresh = model.apply(variables, frame, method=YolactEdge.keyframe)
    return outputs, fresh

  def other(cache):
    outputs, _ = model.apply(variables, frame, cache, method=YolactEdge.non_keyframe)
    return outputs, cache

  outputs, cache = jax.lax.cond(index % interval == 0, key, other, carry)
  return cache, yolact.detect(config, outputs, image_size, sizes)


def initial_cache(model: YolactEdge, variables, images) -> dict:
  """A zero cache of the right shapes for [B, H, W, 3] frames (the scan's first carry)."""
  shapes = jax.eval_shape(lambda x: model.apply(variables, x, method=YolactEdge.keyframe)[1],
                          images)
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def predict_clip(model: YolactEdge, variables, clip: jax.Array, *, keyframe_interval: int,
                 image_sizes: jax.Array | None = None) -> dict:
  """Detections on every frame of clips, frame t a keyframe when t % k == 0 (jit-able).

  Args:
    model, variables: a YolactEdge and its variables.
    clip: [B, T, H, W, 3] uint8 frames.
    keyframe_interval: k (1: every frame is a keyframe, i.e. YOLACT on each frame).
    image_sizes: [B, T, 2] real image sizes in the padded frames (None: whole frames).

  Returns:
    `yolact.detect`'s dict with a frame axis: boxes [B, T, D, 4], ..., masks
    [B, T, D, H, W] uint8.
  """
  if keyframe_interval < 1:
    raise ValueError(f'keyframe_interval must be >= 1, got {keyframe_interval}')
  b, t = clip.shape[:2]
  image_size = clip.shape[2:4]
  if image_sizes is None:
    image_sizes = jnp.broadcast_to(jnp.asarray(image_size, jnp.int32), (b, t, 2))
  frames = jnp.swapaxes(clip, 0, 1)
  sizes = jnp.swapaxes(image_sizes, 0, 1)
  step = functools.partial(_frame_step, model, variables, model.config, image_size,
                           keyframe_interval)
  _, detections = jax.lax.scan(step, initial_cache(model, variables, frames[0]),
                               (jnp.arange(t), frames, sizes))
  return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), detections)
