"""`synthetic_shapes_video`: procedural clips of moving shapes, with exact ground-truth flow.

Nothing is downloaded: every clip is drawn with numpy from a seed derived from
(split, clip index), so preparing the dataset twice gives the same records. The scene is
the one of `synthetic_shapes` (its background, colours and shape rasteriser are reused).

Scene
  * A STATIC "stuff" background (sky above / ground below a tilted horizon, textured):
    it never moves, so background flow is exactly zero and every flow vector comes from
    the shapes (no camera motion).
  * 1..`max_shapes` tracks, each one shape (circle, square, triangle) that moves smoothly
    over the clip: constant velocity (<= `max_speed` px/frame at S = 128), constant
    angular velocity (<= `max_rotation` rad/frame) and a constant scale rate (the size
    changes by a factor <= exp(`max_scale_change`) over the clip, staying in
    [`min_size`, `max_size`]). Centres stay >= half the largest size from the borders,
    so shapes stay (mostly: rotating corners may poke out) inside the frame.
  * Depth order is fixed per clip (track 0 at the back); as shapes move, the occlusions
    change. A shape is only placed when every track keeps a visible area that passes the
    visibility thresholds on >= `MIN_VISIBLE_FRAMES_FRACTION` of the frames; on the other
    frames a track may be heavily occluded and then is not annotated.
  * Each shape carries a smooth texture fixed to the shape (a function of the shape's own
    coordinates), so translation, rotation and scale are all visible in the pixels.
    Each frame adds its own mild pixel noise.
  * Rasterisation has no anti-aliasing: a pixel belongs to a shape iff its CENTRE lies
    inside the transformed shape; the masks, the pixels and the flow use the same test,
    so the flow is exact on shape interiors.

Geometry (stored in `tracks`)
  Shape k on frame t maps the unit shape's coordinates q = (u, v) to image points
    x = centre[k, t] + size[k, t] * R(angle[k, t]) q,   R(a) = [[cos a, -sin a],
                                                                [sin a,  cos a]]
  in pixel-edge image coordinates (x right, y down, pixel (i, j) has its centre at
  (j + 0.5, i + 0.5)). The unit shapes: circle of diameter 1, square of side 1,
  equilateral triangle of side 1 with a vertex at angle 0 (as `synthetic_shapes`
  draws them at angle 0). The stored float32 values are the ones the clip was drawn
  from: `flow_between` recomputes any frame pair's flow exactly from them (e.g.
  current frame -> keyframe, several frames apart).

Flow convention (both directions are stored, for each consecutive pair t -> t + 1)
  flow/forward[t][y, x] = (dx, dy) in pixels: the scene point seen at pixel (x, y) of
      frame t is at (x + dx, y + dy) in frame t + 1. Hence
      frame_{t+1}(x + dx, y + dy) ~= frame_t(x, y): warping frame t + 1 with the forward
      flow, `ops.warp(frame_{t+1}, flow/forward[t])`, reproduces frame t on frame t's grid.
  flow/backward[t][y, x] = (dx, dy): the point seen at pixel (x, y) of frame t + 1 is at
      (x + dx, y + dy) in frame t, so `ops.warp(frame_t, flow/backward[t])` reproduces
      frame t + 1. This is the direction YolactEdge's flow network predicts (current
      frame -> previous/key frame, sampled on the current frame's grid) to carry
      keyframe features onto the current frame.
  *_valid[t][y, x] = 1 where the pixel's point is visible in both frames: it lands
      within the hull of the target frame's pixel centres, [0.5, S - 0.5]^2 in
      pixel-edge coordinates (index coordinates x + dx, y + dy in [0, S - 1], so
      bilinear sampling reads only real pixels, no padding), and no shape in front
      covers it in the target frame. Background pixels: flow 0, valid iff no shape
      covers them in the target frame. Shape pixels: the shape's own motion, valid iff
      inside the image and not covered by a shape drawn in front of it in the target
      frame.
  (x, y) above is a pixel's column and row; a displacement is the same in index and in
  pixel-edge coordinates. Flow is exact (float32 of the float64 procedure): on a shape's
  interior, frame_{t+1} at x + flow shows the same texture point up to pixel noise.
  To warp with a nearest-pixel lookup instead, round (x + dx, y + dy).
  Keyframe transfer (YolactEdge, keyframe k, current frame n, any gap):
  `flow_between(example['tracks'], S, n, k)` is the backward flow n -> k with its
  validity, sampled on frame n's grid: `ops.warp(features_k, flow)` ~= features_n.

Features (S = `image_size`, T = `num_frames`; TFDS decodes every field to a dense
tensor, the sizes in brackets are the decoded shapes)
  clip/id           int64, unique over splits (train: 1.., validation: 1_000_001..).
  frames            Sequence of length T:
    image           Image [T, S, S, 3] uint8, PNG.
    image/id        int64 [T]: clip/id * FRAME_ID_STRIDE + frame index, unique per frame
                    over the whole dataset (COCO evaluation's image ids).
    index           int64 [T]: 0..T-1.
  objects           Sequence, one entry per ANNOTATED (frame, track) pair, sorted by
                    frame index then track id (drawing order); [A] below:
    frame_index     int64: the frame (0..T-1) this instance is on.
    track_id        int64: the track (0..N-1 within the clip), constant over the clip;
                    it is also the depth order (higher ids are drawn in front).
    bbox            BBoxFeature [A, 4]: relative (ymin, xmin, ymax, xmax), the tight box
                    of the visible mask with pixel-edge convention (a mask covering
                    pixel columns c0..c1 spans x in [c0, c1 + 1)).
    label           ClassLabel(names=THING_NAMES) [A].
    mask            Image [A, S, S, 1] uint8, PNG, values 0/1: the VISIBLE part.
    area            int64 [A]: visible pixels; >= MIN_VISIBLE_AREA * (S / 128)^2 and
                    >= MIN_VISIBLE_FRACTION of the shape's full area on that frame.
    is_crowd        bool [A], always False.
  tracks            Sequence, one entry per shape, in depth order; [N] below:
    track_id        int64 [N]: 0..N-1.
    label           ClassLabel(names=THING_NAMES) [N].
    centre          Tensor [N, T, 2] float32: (x, y) pixel-edge coordinates.
    size            Tensor [N, T] float32: pixels (diameter / side).
    angle           Tensor [N, T] float32: radians (see Geometry).
  flow              Sequence of length T - 1 (pair t -> t + 1):
    forward         Tensor [T-1, S, S, 2] float32 (dx, dy) pixels, zlib-compressed.
    forward_valid   Tensor [T-1, S, S] uint8 0/1, zlib-compressed.
    backward        Tensor [T-1, S, S, 2] float32 (dx, dy) pixels, zlib-compressed.
    backward_valid  Tensor [T-1, S, S] uint8 0/1, zlib-compressed.

Per-frame instances of frame t are the `objects` entries with frame_index == t; padding
them to [T, M] by track id needs no search: track_id < max_shapes.
"""
import dataclasses
import math
import time

import numpy as np
import tensorflow_datasets as tfds

from vision_jax.data import synthetic_shapes as ss

THING_NAMES = ss.THING_NAMES
# Per-frame image ids: clip/id * FRAME_ID_STRIDE + frame index (so num_frames <= this).
FRAME_ID_STRIDE = 1000
# Visibility thresholds per frame (areas at 128 x 128, scaled with the image), as in
# synthetic_shapes; a track must pass them on at least this fraction of the frames.
MIN_VISIBLE_AREA = ss.MIN_VISIBLE_AREA
MIN_VISIBLE_FRACTION = ss.MIN_VISIBLE_FRACTION
MIN_VISIBLE_FRAMES_FRACTION = 0.5

_SEED = 20240918  # Not synthetic_shapes' seed: clips do not repeat its images.
_TEXTURE_AMPLITUDE = 0.25
_NOISE_STD = 0.006


@dataclasses.dataclass
class SyntheticShapesVideoConfig(tfds.core.BuilderConfig):
  """Size of the dataset, of its clips and of the shapes' motion.

  Attributes:
    image_size: S, frames are S x S.
    num_frames: T frames per clip (2..FRAME_ID_STRIDE).
    num_train: clips in the `train` split.
    num_validation: clips in the `validation` split.
    max_shapes: at most this many tracks per clip (at least 1).
    min_size: smallest shape size (diameter / side) in pixels at S = 128.
    max_size: largest shape size in pixels at S = 128 (scaled with S).
    max_speed: largest speed of a shape's centre, pixels per frame at S = 128.
    max_rotation: largest angular speed, radians per frame.
    max_scale_change: largest |log(last size / first size)| over the clip.
  """
  image_size: int = 128
  num_frames: int = 10
  num_train: int = 300
  num_validation: int = 50
  max_shapes: int = 6
  min_size: float = 12.0
  max_size: float = 48.0
  max_speed: float = 3.0
  max_rotation: float = 0.12
  max_scale_change: float = 0.35


class SyntheticShapesVideo(tfds.core.GeneratorBasedBuilder):
  """Clips of coloured shapes moving over a static sky/ground background, with flow."""

  # Bump when the drawing changes: prepared data is keyed by version.
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      SyntheticShapesVideoConfig(
          name='default',
          description='300 train / 50 validation clips of 10 frames, 128x128.'),
      SyntheticShapesVideoConfig(
          name='tiny', description='8 train / 4 validation clips of 10 frames, 128x128 '
          '(tests).', num_train=8, num_validation=4),
  ]
  # Read by `vision_jax.data.datasets`: prepared on first use, downloads nothing.
  PROCEDURAL = True

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    s, t = config.image_size, config.num_frames
    _check_config(config)
    zlib = tfds.features.Encoding.ZLIB
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'clip/id': np.int64,
            'frames': tfds.features.Sequence({
                'image': tfds.features.Image(shape=(s, s, 3), encoding_format='png'),
                'image/id': np.int64,
                'index': np.int64,
            }, length=t),
            'objects': tfds.features.Sequence({
                'frame_index': np.int64,
                'track_id': np.int64,
                'bbox': tfds.features.BBoxFeature(),
                'label': tfds.features.ClassLabel(names=list(THING_NAMES)),
                'mask': tfds.features.Image(shape=(s, s, 1), encoding_format='png'),
                'area': np.int64,
                'is_crowd': np.bool_,
            }),
            'tracks': tfds.features.Sequence({
                'track_id': np.int64,
                'label': tfds.features.ClassLabel(names=list(THING_NAMES)),
                'centre': tfds.features.Tensor(shape=(t, 2), dtype=np.float32),
                'size': tfds.features.Tensor(shape=(t,), dtype=np.float32),
                'angle': tfds.features.Tensor(shape=(t,), dtype=np.float32),
            }),
            'flow': tfds.features.Sequence({
                'forward': tfds.features.Tensor(shape=(s, s, 2), dtype=np.float32,
                                                encoding=zlib),
                'forward_valid': tfds.features.Tensor(shape=(s, s), dtype=np.uint8,
                                                      encoding=zlib),
                'backward': tfds.features.Tensor(shape=(s, s, 2), dtype=np.float32,
                                                 encoding=zlib),
                'backward_valid': tfds.features.Tensor(shape=(s, s), dtype=np.uint8,
                                                       encoding=zlib),
            }, length=t - 1),
        }),
        disable_shuffling=True,  # Records stay in index order (clip/id order).
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Procedural: nothing to download.
    config = self.builder_config
    return {
        'train': self._generate_examples('train', config.num_train),
        'validation': self._generate_examples('validation', config.num_validation),
    }

  def _generate_examples(self, split: str, num_examples: int):
    config = self.builder_config
    start = time.time()
    print(f'synthetic_shapes_video/{config.name}: drawing {num_examples} {split} clips '
          f'({config.num_frames} frames, {config.image_size}x{config.image_size})...',
          flush=True)
    for index in range(num_examples):
      yield index, encode_for_tfds(render_clip(index, split, config))
    print(f'synthetic_shapes_video/{config.name}: {split} drawn in '
          f'{time.time() - start:.1f} s', flush=True)


def _check_config(config: SyntheticShapesVideoConfig) -> None:
  if not 2 <= config.num_frames <= FRAME_ID_STRIDE:
    raise ValueError(f'num_frames must be in [2, {FRAME_ID_STRIDE}], got '
                     f'{config.num_frames}')
  if config.max_shapes < 1:
    raise ValueError(f'max_shapes must be >= 1, got {config.max_shapes}')


def clip_rng(index: int, split: str) -> np.random.Generator:
  """The generator that draws clip `index` of `split`."""
  return np.random.default_rng([_SEED, ss._SPLIT_CODES[split], index])  # pylint: disable=protected-access


def clip_id(index: int, split: str) -> int:
  """The `clip/id` of clip `index` of `split` (unique over splits)."""
  return ss._ID_OFFSETS[split] + index + 1  # pylint: disable=protected-access


def render_clip(index: int, split: str, config: SyntheticShapesVideoConfig) -> dict:
  """Draws one clip as numpy arrays (deterministic in (index, split, config)).

  Returns (T frames, N tracks, A annotated (frame, track) pairs, P = T - 1 pairs):
    {'images': [T, S, S, 3] uint8, 'clip_id': int, 'image_ids': [T] int64,
     'tracks': {'label': [N] int64, 'centre': [N, T, 2] float32,
                'size': [N, T] float32, 'angle': [N, T] float32},
     'visible': [T, N, S, S] bool visible masks of every track (annotated or not),
     'annotated': [T, N] bool (visible part passes the thresholds),
     'frame_index': [A] int64, 'track_id': [A] int64, 'labels': [A] int64,
     'masks': [A, S, S] bool, 'boxes': [A, 4] float32 (x1, y1, x2, y2) pixels,
     'areas': [A] int64,
     'flow_forward': [P, S, S, 2] float32, 'valid_forward': [P, S, S] uint8,
     'flow_backward': [P, S, S, 2] float32, 'valid_backward': [P, S, S] uint8}.
  """
  _check_config(config)
  rng = clip_rng(index, split)
  s, t = config.image_size, config.num_frames
  background, _, tints = ss._draw_background(rng, s)  # pylint: disable=protected-access
  shapes, full = _place_tracks(rng, s, config, tints)
  tracks = {
      'label': np.array([shape['label'] for shape in shapes], np.int64),
      'centre': np.stack([shape['centre'] for shape in shapes]),
      'size': np.stack([shape['size'] for shape in shapes]),
      'angle': np.stack([shape['angle'] for shape in shapes]),
  }
  visible = np.moveaxis(_visible_parts(full), 0, 1)  # [T, N, S, S]
  annotated = _passes_thresholds(visible, np.moveaxis(full, 0, 1), s)
  xx, yy = _pixel_centres(s)
  images = []
  for frame in range(t):
    image = background.copy()
    for k, shape in enumerate(shapes):
      mask = full[k, frame]
      u, v = _unit_coords(tracks, k, frame, xx[mask], yy[mask])
      shading = 1 + _TEXTURE_AMPLITUDE * _texture(shape['texture'], u, v)
      image[mask] = shape['colour'] * shading[:, None]
    image = image + rng.normal(0, _NOISE_STD, image.shape)
    images.append(np.clip(np.round(image * 255), 0, 255).astype(np.uint8))
  frame_index, track_id = np.nonzero(annotated)
  masks = visible[frame_index, track_id]
  boxes, _ = ss._boxes_and_extreme_points(masks)  # pylint: disable=protected-access
  forward = [flow_between(tracks, s, i, i + 1) for i in range(t - 1)]
  backward = [flow_between(tracks, s, i + 1, i) for i in range(t - 1)]
  cid = clip_id(index, split)
  return {
      'images': np.stack(images),
      'clip_id': cid,
      'image_ids': cid * FRAME_ID_STRIDE + np.arange(t, dtype=np.int64),
      'tracks': tracks,
      'visible': visible,
      'annotated': annotated,
      'frame_index': frame_index.astype(np.int64),
      'track_id': track_id.astype(np.int64),
      'labels': tracks['label'][track_id],
      'masks': masks,
      'boxes': boxes,
      'areas': masks.sum(axis=(1, 2)).astype(np.int64),
      'flow_forward': np.stack([f for f, _ in forward]),
      'valid_forward': np.stack([v for _, v in forward]),
      'flow_backward': np.stack([f for f, _ in backward]),
      'valid_backward': np.stack([v for _, v in backward]),
  }


def encode_for_tfds(clip: dict) -> dict:
  """Converts `render_clip`'s output into the builder's feature values."""
  t, s = clip['images'].shape[:2]
  relative = clip['boxes'] / s
  tracks = clip['tracks']
  png = ss._png  # pylint: disable=protected-access
  return {
      'clip/id': clip['clip_id'],
      'frames': {
          'image': [png(image, compress_level=1) for image in clip['images']],
          'image/id': clip['image_ids'],
          'index': np.arange(t, dtype=np.int64),
      },
      'objects': {
          'frame_index': clip['frame_index'],
          'track_id': clip['track_id'],
          'bbox': [tfds.features.BBox(ymin=b[1], xmin=b[0], ymax=b[3], xmax=b[2])
                   for b in relative],
          'label': clip['labels'],
          'mask': [png(m.astype(np.uint8)) for m in clip['masks']],
          'area': clip['areas'],
          'is_crowd': np.zeros(len(clip['labels']), np.bool_),
      },
      'tracks': {
          'track_id': np.arange(len(tracks['label']), dtype=np.int64),
          'label': tracks['label'],
          'centre': tracks['centre'],
          'size': tracks['size'],
          'angle': tracks['angle'],
      },
      'flow': {
          'forward': clip['flow_forward'],
          'forward_valid': clip['valid_forward'],
          'backward': clip['flow_backward'],
          'backward_valid': clip['valid_backward'],
      },
  }


def flow_between(tracks: dict, image_size: int, t_from: int,
                 t_to: int) -> tuple[np.ndarray, np.ndarray]:
  """Ground-truth flow from frame `t_from` to frame `t_to` of a clip, from its tracks.

  Any two frames, not only neighbours: e.g. (current, keyframe) gives the flow that
  carries keyframe features onto the current frame.

  Args:
    tracks: the clip's geometry, as stored in the `tracks` feature (or `render_clip`):
      'label' [N] int, 'centre' [N, T, 2] (x, y) pixels, 'size' [N, T] pixels,
      'angle' [N, T] radians.
    image_size: S.
    t_from: the frame whose pixel grid the flow is sampled on.
    t_to: the frame the points move to.
  Returns:
    flow: [S, S, 2] float32 (dx, dy) pixels: the point seen at pixel (x, y) of frame
      t_from is at (x + dx, y + dy) in frame t_to, so frame_to(x + dx, y + dy) ~=
      frame_from(x, y) (warping frame t_to with `flow` gives frame t_from).
    valid: [S, S] uint8, 1 where that point is visible in frame t_to too: inside the
      hull of the pixel centres ([0.5, S - 0.5]^2 in pixel-edge coordinates: bilinear
      sampling reads no padding) and not covered by a shape in front.
  """
  s = image_size
  xx, yy = _pixel_centres(s)
  n = len(tracks['label'])
  owner = np.full((s, s), -1, np.int64)
  for k in range(n):
    owner[_inside(tracks, k, t_from, xx, yy)] = k
  flow = np.zeros((s, s, 2))
  valid = np.zeros((s, s), bool)
  background = owner == -1
  covered = np.zeros(int(background.sum()), bool)
  for k in range(n):
    covered |= _inside(tracks, k, t_to, xx[background], yy[background])
  valid[background] = ~covered
  for k in range(n):
    mine = owner == k
    x0, y0 = xx[mine], yy[mine]
    u, v = _unit_coords(tracks, k, t_from, x0, y0)
    x1, y1 = _image_coords(tracks, k, t_to, u, v)
    flow[mine] = np.stack([x1 - x0, y1 - y0], -1)
    ok = (x1 >= 0.5) & (x1 <= s - 0.5) & (y1 >= 0.5) & (y1 <= s - 0.5)
    for j in range(k + 1, n):  # The shapes in front of k.
      ok &= ~_inside(tracks, j, t_to, x1, y1)
    valid[mine] = ok
  return flow.astype(np.float32), valid.astype(np.uint8)


def _pixel_centres(s: int) -> tuple[np.ndarray, np.ndarray]:
  yy, xx = np.mgrid[0:s, 0:s] + 0.5
  return xx, yy


def _geometry(tracks: dict, k: int, frame: int):
  """(cx, cy, size, cos, sin) of track k on `frame`, in float64."""
  cx, cy = np.asarray(tracks['centre'][k][frame], np.float64)
  size = np.float64(tracks['size'][k][frame])
  angle = np.float64(tracks['angle'][k][frame])
  return cx, cy, size, np.cos(angle), np.sin(angle)


def _unit_coords(tracks: dict, k: int, frame: int, x: np.ndarray, y: np.ndarray):
  """Image points -> the unit shape's coordinates: q = R(-angle) (x - centre) / size."""
  cx, cy, size, cos, sin = _geometry(tracks, k, frame)
  dx, dy = x - cx, y - cy
  return (cos * dx + sin * dy) / size, (cos * dy - sin * dx) / size


def _image_coords(tracks: dict, k: int, frame: int, u: np.ndarray, v: np.ndarray):
  """Unit shape coordinates -> image points: x = centre + size R(angle) q."""
  cx, cy, size, cos, sin = _geometry(tracks, k, frame)
  return cx + size * (cos * u - sin * v), cy + size * (sin * u + cos * v)


def _inside(tracks: dict, k: int, frame: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Whether image points lie inside track k's shape on `frame` (boundary included)."""
  u, v = _unit_coords(tracks, k, frame, x, y)
  # synthetic_shapes' rasteriser on the unit shape, centred at 0 and unrotated.
  return ss._shape_mask(int(tracks['label'][k]), 0.0, 0.0, 1.0, 0.0, u, v)  # pylint: disable=protected-access


def _texture(params: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """A smooth pattern in [-1, 1] fixed to the shape: mean of 3 plane waves in (u, v)."""
  waves = np.sin(2 * np.pi * (params[:, 0:1] * u + params[:, 1:2] * v) + params[:, 2:3])
  return waves.mean(0)


def _sample_motion(rng: np.random.Generator, s: int, config: SyntheticShapesVideoConfig):
  """Per-frame (centre [T, 2], size [T], angle [T]) float32 of one shape's smooth motion."""
  t, scale = config.num_frames, s / 128
  lo_size, hi_size = config.min_size * scale, config.max_size * scale
  size0 = rng.uniform(lo_size, hi_size)
  size1 = np.clip(size0 * np.exp(rng.uniform(-1, 1) * config.max_scale_change),
                  lo_size, hi_size)
  frac = np.arange(t) / (t - 1)
  sizes = size0 * (size1 / size0) ** frac
  speed = rng.uniform(0.25, 1.0) * config.max_speed * scale
  heading = rng.uniform(0, 2 * np.pi)
  # Centres stay >= half the largest size from the borders on every frame.
  lo, hi = sizes.max() / 2, s - sizes.max() / 2
  travel = np.clip(speed * (t - 1) * np.array([np.cos(heading), np.sin(heading)]),
                   -(hi - lo), hi - lo)
  start = rng.uniform(lo - np.minimum(travel, 0), hi - np.maximum(travel, 0))
  centres = start + frac[:, None] * travel
  angles = rng.uniform(0, 2 * np.pi) + rng.uniform(-1, 1) * config.max_rotation * np.arange(t)
  # Stored as float32; everything is drawn from exactly these values.
  return centres.astype(np.float32), sizes.astype(np.float32), angles.astype(np.float32)


def _visible_parts(full: np.ndarray) -> np.ndarray:
  """[N, ...] bool full masks in depth order (last in front) -> visible parts."""
  visible = np.zeros_like(full)
  covered = np.zeros_like(full[0]) if len(full) else None
  for k in range(len(full) - 1, -1, -1):
    visible[k] = full[k] & ~covered
    covered |= full[k]
  return visible


def _passes_thresholds(visible: np.ndarray, full: np.ndarray, s: int) -> np.ndarray:
  """[..., S, S] visible and full masks -> [...] bool: visible part big enough."""
  min_visible = MIN_VISIBLE_AREA * (s / 128) ** 2
  area = visible.sum(axis=(-2, -1))
  return (area >= min_visible) & (area >= MIN_VISIBLE_FRACTION * full.sum(axis=(-2, -1)))


def _place_tracks(rng: np.random.Generator, s: int, config: SyntheticShapesVideoConfig,
                  tints: np.ndarray):
  """Draws 1..max_shapes moving shapes in depth order; rejects ones that hide others.

  Returns (shapes: list of dicts with 'label', 'centre', 'size', 'angle', 'colour',
  'texture'; full: [N, T, S, S] bool full masks).
  """
  t = config.num_frames
  need = math.ceil(MIN_VISIBLE_FRAMES_FRACTION * t)
  min_visible = MIN_VISIBLE_AREA * (s / 128) ** 2
  xx, yy = _pixel_centres(s)
  shapes, full = [], np.zeros((0, t, s, s), bool)
  for _ in range(rng.integers(1, config.max_shapes + 1)):
    for _ in range(8):
      label = int(rng.integers(len(THING_NAMES)))
      centre, size, angle = _sample_motion(rng, s, config)
      one = {'label': [label], 'centre': centre[None], 'size': size[None],
             'angle': angle[None]}
      mask = np.stack([_inside(one, 0, frame, xx, yy) for frame in range(t)])
      if mask.sum(axis=(1, 2)).min() < min_visible:
        continue
      candidate = np.concatenate([full, mask[None]])
      passes = _passes_thresholds(_visible_parts(candidate), candidate, s)
      if np.all(passes.sum(axis=1) >= need):
        colour = ss._shape_colour(rng, tints, [x['colour'] for x in shapes])  # pylint: disable=protected-access
        frequency = rng.uniform(0.8, 2.0, 3)
        direction = rng.uniform(0, 2 * np.pi, 3)
        texture = np.stack([frequency * np.cos(direction), frequency * np.sin(direction),
                            rng.uniform(0, 2 * np.pi, 3)], -1)
        shapes.append({'label': label, 'centre': centre, 'size': size, 'angle': angle,
                       'colour': colour, 'texture': texture})
        full = candidate
        break
  if not shapes:  # Practically never (the first shape is always visible): keep N >= 1.
    raise RuntimeError('synthetic_shapes_video: could not place any shape')
  return shapes, full
