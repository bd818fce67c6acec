"""`synthetic_shapes`: a procedural TFDS dataset of coloured shapes on a sky/ground scene.

Nothing is downloaded: every example is drawn with numpy from a seed derived from
(split, example index), so preparing the dataset twice gives the same records.

Scene
  * "stuff" background: sky above / ground below a random, slightly tilted horizon;
    each region has a random tint, a smooth low-frequency texture and mild noise.
  * 1..`max_shapes` "thing" instances (circle, square, triangle) of random colour
    (kept far from both background tints), size and position, drawn in order:
    later shapes occlude earlier ones. A shape is only placed when every shape under
    it keeps a visible area >= `min_visible_area` px and >= `min_visible_fraction` of
    its own full area, so each stored instance is recognisable.

Style B (configs `styles`, `styles_tiny`; `render_style_b` for any config)
  A second rendering of the SAME scene (same shapes, masks and semantic map), for
  image-to-image translation (pix2pix, CycleGAN). It is a pure function of the scene:
  no random draw of its own, so every scene id has exactly one style-B image.
  * palette: every region's colour is its style-A scene colour (the sky / ground tint,
    the shape's colour, before shading, textures and noise) with its hue rotated by
    +120 degrees, i.e. the channel permutation (R, G, B) -> (B, R, G)
    (`style_b_colour`): blue skies turn pink-violet, earthy grounds turn teal-blue.
  * textures: flat colour times a periodic pattern of period `STYLE_B_PERIOD` = 4 px
    in image coordinates, instead of style A's gradients, smooth noise and shading:
      sky      horizontal stripes   on where (y mod 4) in {1, 2}
      ground   checks               (x mod 4 in {1, 2}) xor (y mod 4 in {1, 2})
      things   dots (2 x 2 px)      (x mod 4 in {1, 2}) and (y mod 4 in {1, 2})
    (x, y the pixel column and row). "Off" pixels are darkened: stuff to
    1 - `STYLE_B_STUFF_DEPTH`, things to 1 - `STYLE_B_THING_DEPTH` of the colour.
    The patterns are symmetric under a horizontal flip when S is a multiple of 4,
    so the flipped style-B image is the style-B rendering of the flipped scene.
  Style A of a scene does not depend on the config's `style_b` flag: the configs
  `default` and `tiny` are drawn exactly as before style B existed.

Features (S = the config's `image_size`)
  image           Image [S, S, 3] uint8, PNG (style A).
  image_b         Image [S, S, 3] uint8, PNG: style B of the same scene (only the
                  configs with `style_b`: `styles`, `styles_tiny`).
  image/id        int64, unique over splits (train: 1.., validation: 1_000_001..).
  semantic        LabeledImage [S, S, 1] uint8, PNG: per-pixel semantic class,
                  ids `SEMANTIC_NAMES`: 0 circle, 1 square, 2 triangle, 3 sky, 4 ground
                  (a thing pixel's semantic id equals its instance label).
  objects         Sequence, one entry per instance, in drawing order:
    bbox          BBoxFeature: relative (ymin, xmin, ymax, xmax), the tight box of the
                  visible mask with pixel-edge convention (a mask covering pixel columns
                  c0..c1 spans x in [c0, c1 + 1)).
    label         ClassLabel(names=THING_NAMES).
    mask          Image [S, S, 1] uint8, PNG, values 0/1: the VISIBLE part.
    area          int64: visible pixels.
    is_crowd      bool, always False.
    keypoints     Tensor [4, 3] float32: the extreme points of the visible mask in
                  order `KEYPOINT_NAMES` = (top, right, bottom, left), each
                  (x, y, visibility) with x, y RELATIVE to the image width/height and
                  visibility 2 (all four are always visible). The points lie on the box
                  edges: top = (mean column of the top row + 0.5, ymin), etc.
"""
import dataclasses
import io
import time

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

THING_NAMES = ('circle', 'square', 'triangle')
STUFF_NAMES = ('sky', 'ground')
SEMANTIC_NAMES = THING_NAMES + STUFF_NAMES
SKY, GROUND = len(THING_NAMES), len(THING_NAMES) + 1
# One fixed colour per semantic class (index = id in SEMANTIC_NAMES), RGB uint8: the
# colouring of label maps (pix2pix inputs, visualisation). circle red, square green,
# triangle blue, sky yellow, ground purple.
LABEL_PALETTE = np.array([(230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25),
                          (145, 30, 180)], np.uint8)
# Style B (module docstring).
STYLE_B_PERIOD = 4
STYLE_B_STUFF_DEPTH = 0.3
STYLE_B_THING_DEPTH = 0.45
KEYPOINT_NAMES = ('top', 'right', 'bottom', 'left')
# Horizontal flip: top and bottom stay, right <-> left.
KEYPOINT_FLIP_PERM = (0, 3, 2, 1)
KEYPOINT_SKELETON = ((0, 1), (1, 2), (2, 3), (3, 0))

_SPLIT_CODES = {'train': 0, 'validation': 1}
_ID_OFFSETS = {'train': 0, 'validation': 1_000_000}
_SEED = 20240917
# Occlusion limits (at 128 x 128; areas scale with the image).
MIN_VISIBLE_AREA = 20
MIN_VISIBLE_FRACTION = 0.35


@dataclasses.dataclass
class SyntheticShapesConfig(tfds.core.BuilderConfig):
  """Size of the dataset and of its images and shapes.

  Attributes:
    image_size: S, images are S x S.
    num_train: examples in the `train` split.
    num_validation: examples in the `validation` split.
    max_shapes: at most this many shape instances per image (at least 1).
    min_size: smallest shape size (diameter / side) in pixels at S = 128.
    max_size: largest shape size in pixels at S = 128 (scaled with S).
    style_b: also store each scene's style-B rendering as `image_b`.
  """
  image_size: int = 128
  num_train: int = 3000
  num_validation: int = 500
  max_shapes: int = 6
  min_size: float = 12.0
  max_size: float = 48.0
  style_b: bool = False


class SyntheticShapes(tfds.core.GeneratorBasedBuilder):
  """Coloured circles, squares and triangles on a sky/ground background."""

  # Bump when the drawing changes: prepared data is keyed by version.
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      SyntheticShapesConfig(
          name='default', description='3000 train / 500 validation images, 128x128.'),
      SyntheticShapesConfig(
          name='tiny', description='64 train / 16 validation images, 128x128 (tests).',
          num_train=64, num_validation=16),
      SyntheticShapesConfig(
          name='styles', description='3000 train / 500 validation scenes, 64x64, at most 4 '
          'shapes, each in style A (image) and style B (image_b): image-to-image translation.',
          image_size=64, max_shapes=4, style_b=True),
      SyntheticShapesConfig(
          name='styles_tiny', description='48 train / 16 validation scenes of `styles` (tests).',
          image_size=64, num_train=48, num_validation=16, max_shapes=4, style_b=True),
  ]
  # Read by `vision_jax.data.datasets`: prepared on first use, downloads nothing.
  PROCEDURAL = True

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    style_b = ({'image_b': tfds.features.Image(shape=(s, s, 3), encoding_format='png')}
               if self.builder_config.style_b else {})
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(s, s, 3), encoding_format='png'),
            **style_b,
            'image/id': np.int64,
            'semantic': tfds.features.LabeledImage(
                labels=list(SEMANTIC_NAMES), shape=(s, s, 1), encoding_format='png'),
            'objects': tfds.features.Sequence({
                'bbox': tfds.features.BBoxFeature(),
                'label': tfds.features.ClassLabel(names=list(THING_NAMES)),
                'mask': tfds.features.Image(shape=(s, s, 1), encoding_format='png'),
                'area': np.int64,
                'is_crowd': np.bool_,
                'keypoints': tfds.features.Tensor(shape=(4, 3), dtype=np.float32),
            }),
        }),
        disable_shuffling=True,  # Records stay in index order (image/id order).
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
    print(f'synthetic_shapes/{config.name}: drawing {num_examples} {split} examples '
          f'({config.image_size}x{config.image_size})...', flush=True)
    for index in range(num_examples):
      example = render_example(index, split, config)
      yield index, encode_for_tfds(example)
    print(f'synthetic_shapes/{config.name}: {split} drawn in {time.time() - start:.1f} s',
          flush=True)


def example_rng(index: int, split: str) -> np.random.Generator:
  """The generator that draws example `index` of `split`."""
  return np.random.default_rng([_SEED, _SPLIT_CODES[split], index])


def render_example(index: int, split: str, config: SyntheticShapesConfig) -> dict:
  """Draws one example as numpy arrays (deterministic in (index, split, config)).

  Returns:
    {'image': [S, S, 3] uint8, 'semantic': [S, S] uint8, 'image_id': int,
     'masks': [N, S, S] bool (visible parts), 'labels': [N] int64,
     'boxes': [N, 4] float32 (x1, y1, x2, y2) pixels, 'areas': [N] int64,
     'keypoints': [N, 4, 3] float32 (x, y, v) pixels}, and with `config.style_b`
    'image_b': [S, S, 3] uint8, the scene in style B (module docstring).
  """
  rng = example_rng(index, split)
  s = config.image_size
  image, semantic, tints = _draw_background(rng, s)
  shapes = _place_shapes(rng, s, config, tints)
  owner = np.full((s, s), -1, np.int32)
  for i, shape in enumerate(shapes):
    owner[shape['mask']] = i
  masks = np.stack([owner == i for i in range(len(shapes))])
  shading = 1 + 0.12 * _smooth_noise(rng, s, 3)[..., None]
  for shape, visible in zip(shapes, masks):
    image = np.where(visible[..., None], shape['colour'] * shading, image)
    semantic[visible] = shape['label']
  image = image + rng.normal(0, 0.006, image.shape)
  boxes, keypoints = _boxes_and_extreme_points(masks)
  example = {
      'image': np.clip(np.round(image * 255), 0, 255).astype(np.uint8),
      'semantic': semantic.astype(np.uint8),
      'image_id': _ID_OFFSETS[split] + index + 1,
      'masks': masks,
      'labels': np.array([shape['label'] for shape in shapes], np.int64),
      'boxes': boxes,
      'areas': masks.sum(axis=(1, 2)).astype(np.int64),
      'keypoints': keypoints,
  }
  if config.style_b:
    # Drawn after style A and from no random draw: style A is unchanged.
    colours = np.array([shape['colour'] for shape in shapes]).reshape(-1, 3)
    example['image_b'] = _draw_style_b(example['semantic'], owner, tints, colours)
  return example


def render_style_b(index: int, split: str, config: SyntheticShapesConfig) -> np.ndarray:
  """Style B of scene `index` of `split` (any config): [S, S, 3] uint8.

  The scene is the one `render_example(index, split, config)` draws (same semantic
  map); scene ids: `image/id` = index + 1 (train), 1_000_001 + index (validation).
  """
  return render_example(index, split, dataclasses.replace(config, style_b=True))['image_b']


def style_b_colour(rgb: np.ndarray) -> np.ndarray:
  """Style A scene colour(s) [..., 3] -> style B: hue + 120 degrees, (R, G, B) -> (B, R, G)."""
  return np.asarray(rgb)[..., [2, 0, 1]]


def style_b_patterns(s: int) -> dict[str, np.ndarray]:
  """The [s, s] bool "on" patterns of style B: {'sky', 'ground', 'thing'}."""
  y, x = np.mgrid[0:s, 0:s] % STYLE_B_PERIOD
  u, v = (x == 1) | (x == 2), (y == 1) | (y == 2)
  return {'sky': v, 'ground': u ^ v, 'thing': u & v}


def encode_for_tfds(example: dict) -> dict:
  """Converts `render_example`'s output into the builder's feature values."""
  s = example['image'].shape[0]
  relative = example['boxes'] / s
  keypoints = example['keypoints'].copy()
  keypoints[..., :2] /= s
  style_b = ({'image_b': _png(example['image_b'], compress_level=1)}
             if 'image_b' in example else {})
  return {
      'image': _png(example['image'], compress_level=1),  # 4x faster, +15% size
      **style_b,
      'image/id': example['image_id'],
      'semantic': _png(example['semantic']),
      'objects': {
          'bbox': [tfds.features.BBox(ymin=b[1], xmin=b[0], ymax=b[3], xmax=b[2])
                   for b in relative],
          'label': example['labels'],
          'mask': [_png(m.astype(np.uint8)) for m in example['masks']],
          'area': example['areas'],
          'is_crowd': np.zeros(len(example['labels']), np.bool_),
          'keypoints': keypoints.astype(np.float32),
      },
  }


def _png(array: np.ndarray, compress_level: int = 6) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG', compress_level=compress_level)
  return buffer.getvalue()


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
  """HSV -> RGB, all in [0, 1]; returns [3] float."""
  sector = int(np.floor(h * 6)) % 6
  f = h * 6 - np.floor(h * 6)
  p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
  return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][sector])


def _smooth_noise(rng: np.random.Generator, s: int, cells: int) -> np.ndarray:
  """[s, s] smooth noise in [-1, 1]: a random (cells+1)^2 grid, bilinearly upsampled."""
  grid = rng.uniform(-1, 1, (cells + 1, cells + 1))
  coords = (np.arange(s) + 0.5) / s * cells
  lo = np.minimum(np.floor(coords).astype(int), cells - 1)
  frac = coords - lo
  interp = np.zeros((s, cells + 1))
  interp[np.arange(s), lo] = 1 - frac
  interp[np.arange(s), lo + 1] = frac
  return interp @ grid @ interp.T


def _draw_background(rng: np.random.Generator, s: int):
  """Returns ([s, s, 3] float image in [0, 1], [s, s] int32 semantic, [2, 3] tints)."""
  yy, xx = np.mgrid[0:s, 0:s] + 0.5
  horizon = rng.uniform(0.3, 0.7) * s
  slope = rng.uniform(-0.25, 0.25)
  sky = yy < horizon + slope * (xx - s / 2)
  semantic = np.where(sky, SKY, GROUND).astype(np.int32)
  # Sky: light and unsaturated, mostly blue-ish, sometimes warm (dusk).
  sky_hue = rng.uniform(0.5, 0.7) if rng.random() < 0.7 else rng.uniform(0.0, 0.15)
  sky_rgb = _hsv_to_rgb(sky_hue, rng.uniform(0.1, 0.35), rng.uniform(0.8, 0.95))
  # Ground: darker, earthy (brown to green).
  ground_rgb = _hsv_to_rgb(rng.uniform(0.07, 0.35), rng.uniform(0.3, 0.6),
                           rng.uniform(0.25, 0.5))
  sky_img = (sky_rgb + (yy / s)[..., None] * 0.1 - 0.05
             + 0.04 * _smooth_noise(rng, s, 4)[..., None])
  ground_img = ground_rgb * (1 + 0.3 * _smooth_noise(rng, s, 8)[..., None])
  image = np.where(sky[..., None], sky_img, ground_img)
  return image, semantic, np.stack([sky_rgb, ground_rgb])


def _draw_style_b(semantic: np.ndarray, owner: np.ndarray, tints: np.ndarray,
                  colours: np.ndarray) -> np.ndarray:
  """Style B of a scene (module docstring).

  Args:
    semantic: [s, s] semantic ids; owner: [s, s] int, the visible shape's index or -1;
    tints: [2, 3] style-A sky and ground colours; colours: [N, 3] style-A shape colours.
  Returns:
    [s, s, 3] uint8.
  """
  s = semantic.shape[0]
  patterns = style_b_patterns(s)
  sky = semantic == SKY
  colour = np.where(sky[..., None], style_b_colour(tints[0]), style_b_colour(tints[1]))
  on = np.where(sky, patterns['sky'], patterns['ground'])
  depth = np.full((s, s), STYLE_B_STUFF_DEPTH)
  thing = owner >= 0
  if len(colours):
    colour = np.where(thing[..., None], style_b_colour(colours)[np.maximum(owner, 0)], colour)
    on = np.where(thing, patterns['thing'], on)
    depth = np.where(thing, STYLE_B_THING_DEPTH, depth)
  image = colour * np.where(on, 1.0, 1.0 - depth)[..., None]
  return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def _shape_colour(rng: np.random.Generator, tints: np.ndarray,
                  used: list[np.ndarray]) -> np.ndarray:
  """A saturated colour far from the background tints and from the shapes drawn before.

  RGB distance >= 0.35 from both tints and >= 0.25 from earlier shapes' colours (so that
  touching shapes stay apart); the best of 32 tries otherwise.
  """
  best, best_margin = None, -np.inf
  for _ in range(32):
    colour = _hsv_to_rgb(rng.random(), rng.uniform(0.65, 1.0), rng.uniform(0.55, 1.0))
    margin = np.linalg.norm(tints - colour, axis=-1).min() - 0.35
    if used:
      margin = min(margin, np.linalg.norm(np.stack(used) - colour, axis=-1).min() - 0.25)
    if margin >= 0:
      return colour
    if margin > best_margin:
      best, best_margin = colour, margin
  return best


def _shape_mask(label: int, cx: float, cy: float, size: float, angle: float,
                xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
  """[s, s] bool full mask of one shape (pixel centres inside the shape)."""
  dx, dy = xx - cx, yy - cy
  if label == 0:  # circle, diameter `size`
    return dx * dx + dy * dy <= (size / 2) ** 2
  if label == 1:  # axis-aligned square, side `size`
    return (np.abs(dx) <= size / 2) & (np.abs(dy) <= size / 2)
  # Equilateral triangle, side `size`, rotated by `angle`: inside all three edges.
  radius = size / np.sqrt(3)
  angles = angle + np.array([0, 2, 4]) * np.pi / 3
  vx, vy = radius * np.cos(angles), radius * np.sin(angles)
  inside = np.ones(xx.shape, bool)
  for k in range(3):
    ax, ay, bx, by = vx[k], vy[k], vx[(k + 1) % 3], vy[(k + 1) % 3]
    inside &= (bx - ax) * (dy - ay) - (by - ay) * (dx - ax) >= 0
  return inside


def _place_shapes(rng: np.random.Generator, s: int, config: SyntheticShapesConfig,
                  tints: np.ndarray) -> list[dict]:
  """Draws 1..max_shapes shapes in order; rejects placements that hide others too much."""
  scale = s / 128
  min_visible = MIN_VISIBLE_AREA * scale * scale
  yy, xx = np.mgrid[0:s, 0:s] + 0.5
  shapes, visible = [], np.zeros((0, s, s), bool)
  for _ in range(rng.integers(1, config.max_shapes + 1)):
    for _ in range(8):
      label = int(rng.integers(len(THING_NAMES)))
      size = rng.uniform(config.min_size, config.max_size) * scale
      cx, cy = rng.uniform(size / 2, s - size / 2, size=2)
      mask = _shape_mask(label, cx, cy, size, rng.uniform(0, 2 * np.pi), xx, yy)
      area = mask.sum()
      if area < min_visible:
        continue
      left = (visible & ~mask).sum(axis=(1, 2))
      full = np.array([shape['area'] for shape in shapes])
      if np.all((left >= min_visible) & (left >= MIN_VISIBLE_FRACTION * full)):
        shapes.append({'label': label, 'mask': mask, 'area': area,
                       'colour': _shape_colour(rng, tints, [x['colour'] for x in shapes])})
        visible = np.concatenate([visible & ~mask, mask[None]])
        break
  return shapes


def _boxes_and_extreme_points(masks: np.ndarray):
  """Tight boxes and extreme points of [N, s, s] bool masks (all non-empty).

  Returns:
    boxes [N, 4] float32 (x1, y1, x2, y2) pixel edges; keypoints [N, 4, 3] float32
    (x, y, 2) for top, right, bottom, left.
  """
  n, s, _ = masks.shape
  if n == 0:
    return np.zeros((0, 4), np.float32), np.zeros((0, 4, 3), np.float32)
  rows, cols = masks.any(axis=2), masks.any(axis=1)
  y1, x1 = rows.argmax(1), cols.argmax(1)
  y2, x2 = s - rows[:, ::-1].argmax(1), s - cols[:, ::-1].argmax(1)
  centres = np.arange(s) + 0.5
  idx = np.arange(n)

  def mean_centre(line):  # [N, s] bool -> mean pixel-centre coordinate
    return (line * centres).sum(1) / line.sum(1)

  top_x = mean_centre(masks[idx, y1, :])
  bottom_x = mean_centre(masks[idx, y2 - 1, :])
  left_y = mean_centre(masks[idx, :, x1])
  right_y = mean_centre(masks[idx, :, x2 - 1])
  boxes = np.stack([x1, y1, x2, y2], -1).astype(np.float32)
  points = np.stack([np.stack([top_x, y1], -1), np.stack([x2, right_y], -1),
                     np.stack([bottom_x, y2], -1), np.stack([x1, left_y], -1)], 1)
  keypoints = np.concatenate([points, np.full((n, 4, 1), 2.0)], -1).astype(np.float32)
  return boxes, keypoints
