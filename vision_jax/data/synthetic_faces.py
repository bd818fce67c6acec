"""`synthetic_faces`: a procedural TFDS dataset of stylised faces with boxes and landmarks.

Nothing is downloaded: every example is drawn with numpy from a seed derived from
(split, example index), so preparing the dataset twice gives the same records. It stands
in for WIDER FACE (detection, RetinaFace's 5 points) and 300-W (68-point landmark
localization, Stacked Hourglass) where no download is possible.

Scene
  * Cluttered background: a blend of random tints through low-frequency noise, a mid- and
    a high-frequency texture, then `num_clutter` random clutter shapes (ellipses,
    rotated rectangles, triangles, thick lines; a quarter of them skin-coloured, as hard
    negatives). Clutter never covers a face.
  * Faces, drawn back to front (smallest first; records are in drawing order, later faces
    may occlude earlier ones). Each face is a parametric model (below) with random
    proportions, skin / hair / lip / iris colours, hair style, optional glasses
    (clear or sunglasses), hat and occluding blob, placed with a random scale, in-plane
    rotation and yaw. Every face lies entirely inside the image (its hair, hat or
    occluder may be cut by the border).
  * `default`/`tiny` (detection): 1..`max_faces` faces whose height is log-uniform in
    [`min_face_height`, `max_face_height`] x S (so all three size bins occur), placed
    largest first at uniform random positions; a face is only placed when, for every
    face placed before, neither box has more than `MAX_OVERLAP` of its area inside the
    other face's head region (its box grown by 0.3 face heights on each side, for hair
    and hats), else (after 30 tries) it is skipped; the first face always fits.
  * `crops`/`crops_tiny` (landmark localization): exactly one face, its box centre at
    the image centre plus a uniform jitter of at most `crop_jitter` x S per axis, its
    height uniform in [`min_face_height`, `max_face_height`] x S.
  * Rasterisation has no anti-aliasing: a pixel shows a layer iff its CENTRE lies inside
    the layer (the same tests decide landmark visibility).

Face model (canonical coordinates: u right, v down, as seen by the viewer; unit = the
face height H, i.e. the vertical diameter of the skin ellipse; origin at its centre)
  skin ellipse  u^2 / rx^2 + v^2 / 0.5^2 <= 1, rx in [0.34, 0.41].
  jaw   0-16    on the skin ellipse from the viewer's left at eye level, through the chin
                (8), to the viewer's right at eye level.
  brows 17-26   two arcs above the eyes (17-21 viewer's left, outer to inner; 22-26
                inner to outer), drawn as thick polylines through the points.
  nose  27-35   27-30 the bridge from between the eyes down to the tip (30), 31-35 the
                nostril base from left to right (33 centre); drawn as lines, with a dot
                on the tip.
  eyes  36-47   two ellipses (white), six points each on the outline: outer/inner corner
                and two points on each lid (36 left eye's outer corner, 39 its inner
                corner, 42 right eye's inner corner, 45 its outer corner), iBUG order.
                The iris (radius = the eye's half-height, clipped to the eye) and the
                near-black pupil are centred on the eye centre.
  lips  48-67   outer contour 48-59 (48, 54 the corners; filled in lip colour), inner
                contour 60-67 (the dark mouth opening, often closed), and a dark mouth
                line through 48, 60-64, 54.
  hair          behind the head (a larger ellipse) and over the forehead above a
                hairline; no hair for some faces.
  accessories   (occluders) glasses frames with bridge and temples (sunglasses: dark
                lenses too), a hat (crown + brim; its brim may come down over the brows),
                an occluding blob (random ellipse, sometimes skin-coloured like a hand).
  The 68 points follow the iBUG 300-W layout (jaw 0-16, brows 17-26, nose 27-35, eyes
  36-47, lips 48-67; `MESH68_FLIP_PERM` mirrors it). "Left" and "right" are ALWAYS from
  the viewer's side of the upright face: the left eye is the one on the image's left when
  the face is upright (the person's right eye), as in RetinaFace's annotations.

Pose (canonical -> image pixels)
  yaw       phi in [-max_yaw, max_yaw] (radians): each row of the skin ellipse, half-width
            w(v), is warped onto itself as u = w sin(b) -> w sin(b + phi cos b) (a head
            turning on a cylinder: the face outline stays, the features shift sideways,
            the far side is compressed, the near side stretched; the nose line moves to
            sin(phi) of the half-width). Points outside the skin ellipse are not warped.
  rotation  theta uniform in [-max_rotation, max_rotation] degrees,
            (x, y) = centre + H R(theta) (u_yawed, v), R = [[cos, -sin], [sin, cos]]
            (positive theta turns the face clockwise on screen, y being down).
  The drawn features and the stored points go through the same map, so the points lie on
  the drawn features (the eye landmarks on the iris / pupil).

Features (S = the config's `image_size`; coordinates in pixel-edge convention: pixel
(i, j) covers x in [j, j + 1), y in [i, i + 1), so the image spans [0, S] on both axes)
  image            Image [S, S, 3] uint8, PNG.
  image/id         int64, unique over splits (train: 1.., validation: 1_000_001..).
  faces            Sequence, one entry per face, in drawing order (back to front):
    bbox           BBoxFeature: relative (ymin, xmin, ymax, xmax), the exact (continuous,
                   not pixel-snapped) box of the rotated skin ellipse (forehead to chin,
                   cheek to cheek; hair, hat and occluders excluded; occluded parts
                   included, as in WIDER FACE).
    label          ClassLabel(names=CLASS_NAMES): always 0 'face'.
    landmarks5     Tensor [5, 3] float32, `LANDMARK5_NAMES` = (left_eye, right_eye,
                   nose_tip, mouth_left, mouth_right): the eye centres (iris centres),
                   mesh point 30, mesh points 48 and 54. Each (x, y, visibility) with x, y
                   RELATIVE to the image width / height (pixel-edge convention: x = 0.5 / S
                   is the centre of pixel column 0) and visibility COCO-style: 2 visible,
                   1 labelled but occluded (covered by an accessory of its own face or by
                   any part of a face drawn later), 0 not labelled.
    mesh68         Tensor [68, 3] float32: the 68 iBUG points, same conventions.
    landmarks_labelled  bool: False for about `unlabelled_fraction` of the faces, whose
                   landmarks5 and mesh68 are then all zeros (visibility 0) as for the
                   WIDER faces without landmark annotations RetinaFace trains on.
    size_bin       ClassLabel(names=SIZE_BIN_NAMES): by box height h (pixels) against
                   the image height S: hard h < HARD_MAX_HEIGHT S (S / 10), medium
                   h < EASY_MIN_HEIGHT S (S / 4), easy otherwise. At S = 160: hard
                   < 16 px, medium 16..40 px, easy >= 40 px.
    area           float32: the box area in pixels (width x height), for COCO-style
                   evaluation's area ranges.
    is_crowd       bool, always False.
"""
import dataclasses
import io
import time

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from vision_jax.data import synthetic_shapes as ss

CLASS_NAMES = ('face',)
SIZE_BIN_NAMES = ('easy', 'medium', 'hard')
EASY, MEDIUM, HARD = 0, 1, 2
# Size bins by box height, as fractions of the image height.
HARD_MAX_HEIGHT = 0.1
EASY_MIN_HEIGHT = 0.25
LANDMARK5_NAMES = ('left_eye', 'right_eye', 'nose_tip', 'mouth_left', 'mouth_right')
# Horizontal flip: new index -> old index (left <-> right, nose stays).
LANDMARK5_FLIP_PERM = (1, 0, 2, 4, 3)
LANDMARK5_SKELETON = ((0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4))
# The 68-point iBUG 300-W layout: index ranges of its groups, and its mirror permutation.
MESH68_GROUPS = {'jaw': (0, 17), 'brows': (17, 27), 'nose': (27, 36), 'eyes': (36, 48),
                 'lips': (48, 68)}
MESH68_FLIP_PERM = (
    tuple(range(16, -1, -1))                       # jaw
    + tuple(range(26, 16, -1))                     # brows
    + (27, 28, 29, 30, 35, 34, 33, 32, 31)         # nose
    + (45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40)  # eyes
    + (54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55)  # outer lips
    + (64, 63, 62, 61, 60, 67, 66, 65))            # inner lips
MESH68_NAMES = tuple(f'{group}{i - start}' for group, (start, stop) in MESH68_GROUPS.items()
                     for i in range(start, stop))
# Lines drawn between mesh points: each contour in order, the eyes and lips closed.
MESH68_SKELETON = tuple(
    (a, b) for start, stop, closed in ((0, 17, False), (17, 22, False), (22, 27, False),
                                       (27, 31, False), (31, 36, False), (36, 42, True),
                                       (42, 48, True), (48, 60, True), (60, 68, True))
    for a, b in zip(range(start, stop), list(range(start + 1, stop))
                    + ([start] if closed else [])))
# A face is skipped when it covers more than this fraction of an earlier face's box (or
# an earlier face covers this much of its box); head regions count against boxes.
MAX_OVERLAP = 0.3
# Head region: the box grown by this many face heights on each side (hair, hat).
_HEAD_MARGIN = 0.3

_SPLIT_CODES = {'train': 0, 'validation': 1}
_ID_OFFSETS = {'train': 0, 'validation': 1_000_000}
_SEED = 20250312
_NOISE_STD = 0.008
_SKIN_RY = 0.5  # The skin ellipse's vertical semi-axis: the face height is the unit.


@dataclasses.dataclass
class SyntheticFacesConfig(tfds.core.BuilderConfig):
  """Size of the dataset, of its images and faces, and how often each variation occurs.

  Attributes:
    image_size: S, images are S x S.
    num_train: examples in the `train` split.
    num_validation: examples in the `validation` split.
    crops: one face per image, centred (landmark localization); else 1..max_faces.
    max_faces: at most this many faces per image (detection configs).
    min_face_height: smallest face height H (skin ellipse diameter), fraction of S.
    max_face_height: largest face height, fraction of S (log-uniform in between for
      detection, uniform for crops).
    crop_jitter: crops: largest offset of the box centre from the image centre per axis,
      fraction of S.
    max_rotation: largest in-plane rotation, degrees.
    max_yaw: largest yaw, radians (< 1).
    unlabelled_fraction: probability that a face has no landmark labels.
    occlusion_prob: probability of an occluding blob over part of a face.
    glasses_prob: probability of glasses (40% of them sunglasses).
    hat_prob: probability of a hat.
    num_clutter: at most this many background clutter shapes (at least half as many).
  """
  image_size: int = 160
  num_train: int = 3000
  num_validation: int = 500
  crops: bool = False
  max_faces: int = 6
  min_face_height: float = 0.06
  max_face_height: float = 0.55
  crop_jitter: float = 0.06
  max_rotation: float = 25.0
  max_yaw: float = 0.6
  unlabelled_fraction: float = 0.2
  occlusion_prob: float = 0.25
  glasses_prob: float = 0.25
  hat_prob: float = 0.2
  num_clutter: int = 12


_CROPS = dict(image_size=96, crops=True, max_faces=1, min_face_height=0.55,
              max_face_height=0.7, max_rotation=30.0, unlabelled_fraction=0.0,
              num_clutter=6)


class SyntheticFaces(tfds.core.GeneratorBasedBuilder):
  """Stylised faces on cluttered backgrounds: boxes, 5 landmarks and 68-point meshes."""

  # Bump when the drawing changes: prepared data is keyed by version.
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      SyntheticFacesConfig(
          name='default',
          description='Detection: 3000 train / 500 validation images, 160x160, 1-6 faces.'),
      SyntheticFacesConfig(
          name='crops', description='Landmarks: 5000 train / 500 validation single-face '
          'crops, 96x96, all labelled.', num_train=5000, num_validation=500, **_CROPS),
      SyntheticFacesConfig(
          name='tiny', description='Detection: 16 train / 8 validation images, 96x96, '
          '1-4 faces (tests).', image_size=96, num_train=16, num_validation=8,
          max_faces=4, num_clutter=8),
      SyntheticFacesConfig(
          name='crops_tiny', description='The first 16 train / 8 validation examples '
          'of `crops` (tests).', num_train=16, num_validation=8, **_CROPS),
  ]
  # Read by `vision_jax.data.datasets`: prepared on first use, downloads nothing.
  PROCEDURAL = True

  def _info(self) -> tfds.core.DatasetInfo:
    _check_config(self.builder_config)
    s = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(s, s, 3), encoding_format='png'),
            'image/id': np.int64,
            'faces': tfds.features.Sequence({
                'bbox': tfds.features.BBoxFeature(),
                'label': tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                'landmarks5': tfds.features.Tensor(shape=(5, 3), dtype=np.float32),
                'mesh68': tfds.features.Tensor(shape=(68, 3), dtype=np.float32),
                'landmarks_labelled': np.bool_,
                'size_bin': tfds.features.ClassLabel(names=list(SIZE_BIN_NAMES)),
                'area': np.float32,
                'is_crowd': np.bool_,
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
    print(f'synthetic_faces/{config.name}: drawing {num_examples} {split} examples '
          f'({config.image_size}x{config.image_size})...', flush=True)
    for index in range(num_examples):
      yield index, encode_for_tfds(render_example(index, split, config))
    print(f'synthetic_faces/{config.name}: {split} drawn in {time.time() - start:.1f} s',
          flush=True)


def _check_config(config: SyntheticFacesConfig) -> None:
  """ValueError naming the first setting that cannot be drawn."""
  problems = []
  if config.image_size < 16:
    problems.append(f'image_size must be >= 16, got {config.image_size}')
  if config.max_faces < 1:
    problems.append(f'max_faces must be >= 1, got {config.max_faces}')
  if not 0 < config.min_face_height <= config.max_face_height < 1:
    problems.append('face heights need 0 < min_face_height <= max_face_height < 1, got '
                    f'{config.min_face_height}, {config.max_face_height}')
  if config.crops and config.max_face_height / 2 + config.crop_jitter > 0.5:
    problems.append(f'crops: max_face_height / 2 + crop_jitter must be <= 0.5 (the face '
                    f'inside the image), got {config.max_face_height}, {config.crop_jitter}')
  if not 0 <= config.max_yaw < 1:
    problems.append(f'max_yaw must be in [0, 1) radians, got {config.max_yaw}')
  for name in ('unlabelled_fraction', 'occlusion_prob', 'glasses_prob', 'hat_prob'):
    if not 0 <= getattr(config, name) <= 1:
      problems.append(f'{name} must be in [0, 1], got {getattr(config, name)}')
  if problems:
    raise ValueError(f'synthetic_faces config {config.name!r}: ' + '; '.join(problems))


def example_rng(index: int, split: str) -> np.random.Generator:
  """The generator that draws example `index` of `split`."""
  return np.random.default_rng([_SEED, _SPLIT_CODES[split], index])


def size_bin(box_height: np.ndarray, image_size: int) -> np.ndarray:
  """Size bins (EASY, MEDIUM, HARD) of box heights in pixels, as int64."""
  h = np.asarray(box_height, np.float64) / image_size
  return np.where(h < HARD_MAX_HEIGHT, HARD,
                  np.where(h < EASY_MIN_HEIGHT, MEDIUM, EASY)).astype(np.int64)


def render_example(index: int, split: str, config: SyntheticFacesConfig) -> dict:
  """Draws one example as numpy arrays (deterministic in (index, split, config)).

  Returns:
    {'image': [S, S, 3] uint8, 'image_id': int,
     'boxes': [N, 4] float32 (x1, y1, x2, y2) pixels (pixel-edge convention),
     'landmarks5': [N, 5, 3] float32 (x, y, v) pixels, 'mesh68': [N, 68, 3] float32
     (x, y, v) pixels (zeros for unlabelled faces), 'labelled': [N] bool,
     'size_bins': [N] int64, 'areas': [N] float32 box areas in pixels,
     'faces': N dicts of the drawn faces' parameters (pose, proportions, colours)}.
  """
  _check_config(config)
  rng = example_rng(index, split)
  s = config.image_size
  image = _draw_background(rng, s, config.num_clutter)
  faces = _place_faces(rng, config)
  for face in faces:
    face.update(_sample_appearance(rng, config))
    face['mesh'], face['eye_centres'] = face_model(face)
  for face in faces:
    _draw_face(image, face)
  image = image + rng.normal(0, _NOISE_STD, image.shape)

  n = len(faces)
  boxes = np.zeros((n, 4), np.float32)
  landmarks5 = np.zeros((n, 5, 3), np.float32)
  mesh68 = np.zeros((n, 68, 3), np.float32)
  labelled = np.array([face['labelled'] for face in faces], bool)
  for i, face in enumerate(faces):
    boxes[i] = face_box(face)
    if not labelled[i]:
      continue
    canonical = np.concatenate([face['mesh'], face['eye_centres']])  # [70, 2]
    x, y = to_image(face, canonical[:, 0], canonical[:, 1])
    visible = _visibility(faces, i, canonical, x, y)
    points = np.stack([x, y, np.where(visible, 2.0, 1.0)], -1)
    mesh68[i] = points[:68]
    landmarks5[i] = points[[68, 69, 30, 48, 54]]
  heights = boxes[:, 3] - boxes[:, 1]
  return {
      'image': np.clip(np.round(image * 255), 0, 255).astype(np.uint8),
      'image_id': _ID_OFFSETS[split] + index + 1,
      'boxes': boxes,
      'landmarks5': landmarks5,
      'mesh68': mesh68,
      'labelled': labelled,
      'size_bins': size_bin(heights, s),
      'areas': ((boxes[:, 2] - boxes[:, 0]) * heights).astype(np.float32),
      'faces': faces,
  }


def encode_for_tfds(example: dict) -> dict:
  """Converts `render_example`'s output into the builder's feature values."""
  s = example['image'].shape[0]
  relative = np.clip(example['boxes'] / s, 0.0, 1.0)
  landmarks5, mesh68 = example['landmarks5'].copy(), example['mesh68'].copy()
  landmarks5[..., :2] /= s
  mesh68[..., :2] /= s
  n = len(relative)
  return {
      'image': _png(example['image']),
      'image/id': example['image_id'],
      'faces': {
          'bbox': [tfds.features.BBox(ymin=b[1], xmin=b[0], ymax=b[3], xmax=b[2])
                   for b in relative],
          'label': np.zeros(n, np.int64),
          'landmarks5': landmarks5.astype(np.float32),
          'mesh68': mesh68.astype(np.float32),
          'landmarks_labelled': example['labelled'],
          'size_bin': example['size_bins'],
          'area': example['areas'],
          'is_crowd': np.zeros(n, np.bool_),
      },
  }


def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG', compress_level=1)
  return buffer.getvalue()


# ----------------------------------------------------------------------------- geometry


def face_model(face: dict) -> tuple[np.ndarray, np.ndarray]:
  """The 68 iBUG points and the two eye centres of a face, in canonical coordinates.

  Args:
    face: the face's proportions (rx, eye_v, eye_dx, eye_w, eye_h, brow_gap, brow_arch,
      nose_v, nose_w, mouth_v, mouth_w, lip_up, lip_low, mouth_open), in face heights.
  Returns:
    mesh [68, 2] float64 (u, v); eye_centres [2, 2] float64 (left, right eye).
  """
  f = face
  rx, ry = f['rx'], _SKIN_RY
  # Jaw: on the skin ellipse, from eye level on the left through the chin to the right.
  delta = np.arcsin(np.clip(-f['eye_v'] / ry, 0.0, 1.0))
  angles = np.pi + delta - np.arange(17) * (np.pi + 2 * delta) / 16
  jaw = np.stack([rx * np.cos(angles), ry * np.sin(angles)], -1)
  # Brows: left from outer to inner, right mirrored (inner to outer).
  t = np.linspace(0, 1, 5)
  outer, inner = -f['eye_dx'] - 1.25 * f['eye_w'], -f['eye_dx'] + 0.9 * f['eye_w']
  base = f['eye_v'] - f['brow_gap']
  left_brow = np.stack([outer + t * (inner - outer), base - f['brow_arch'] * np.sin(np.pi * t)],
                       -1)
  right_brow = left_brow[::-1] * [-1, 1]
  # Nose: bridge down to the tip (30), nostril base left to right (33 centre).
  bridge = np.stack([np.zeros(4), np.linspace(f['eye_v'], f['nose_v'], 4)], -1)
  nostrils = np.stack([f['nose_w'] * np.array([-1, -0.5, 0, 0.5, 1]),
                       f['nose_v'] + np.array([0.0, 0.02, 0.028, 0.02, 0.0])], -1)
  # Eyes: six points on each eye ellipse, iBUG order (outer corner, upper lid x2, inner
  # corner, lower lid x2 for the left eye; inner, upper, outer, lower for the right).
  lid = np.array([np.pi, 4 * np.pi / 3, 5 * np.pi / 3, 0, np.pi / 3, 2 * np.pi / 3])
  ring = np.stack([f['eye_w'] * np.cos(lid), f['eye_h'] * np.sin(lid)], -1)
  eye_centres = np.array([[-f['eye_dx'], f['eye_v']], [f['eye_dx'], f['eye_v']]])
  eyes = np.concatenate([eye_centres[0] + ring, eye_centres[1] + ring])
  # Lips: outer contour 48-59, inner contour 60-67.
  mw, mv, half_open = f['mouth_w'], f['mouth_v'], f['mouth_open'] / 2
  xs = mw * np.array([-2, -1, 0, 1, 2]) / 3
  arch = np.sqrt(1 - (xs / mw) ** 2) * np.array([1, 1, 0.8, 1, 1])  # Cupid's bow at 51.
  upper = np.stack([xs, mv - half_open - f['lip_up'] * arch], -1)
  lower = np.stack([xs[::-1], mv + half_open + f['lip_low'] * arch[::-1]], -1)
  outer_lips = np.concatenate([[[-mw, mv]], upper, [[mw, mv]], lower])
  iw = 0.75 * mw
  ixs = iw * np.array([-0.5, 0.0, 0.5])
  gap = half_open * np.sqrt(1 - (ixs / iw) ** 2)
  inner_lips = np.concatenate([[[-iw, mv]], np.stack([ixs, mv - gap], -1), [[iw, mv]],
                               np.stack([ixs[::-1], mv + gap[::-1]], -1)])
  mesh = np.concatenate([jaw, left_brow, right_brow, bridge, nostrils, eyes, outer_lips,
                         inner_lips])
  return mesh, eye_centres


def _row_half_width(face: dict, v: np.ndarray) -> np.ndarray:
  return face['rx'] * np.sqrt(np.maximum(0.0, 1 - (v / _SKIN_RY) ** 2))


def _yaw(face: dict, u: np.ndarray, v: np.ndarray, inverse: bool = False) -> np.ndarray:
  """The yaw warp of canonical u (or its inverse); v is unchanged."""
  phi = face['yaw']
  u = np.asarray(u, np.float64)
  w = _row_half_width(face, v)
  inside = (w > 1e-9) & (np.abs(u) < w)
  out = u.copy()
  w = w[inside]
  b = np.arcsin(np.clip(u[inside] / w, -1.0, 1.0))
  if not inverse:
    out[inside] = w * np.sin(b + phi * np.cos(b))
    return out
  # Solve b0 + phi cos(b0) = b (monotone in b0 for |phi| < 1) by Newton's method.
  b0 = b - phi * np.cos(b)
  for _ in range(8):
    b0 = b0 - (b0 + phi * np.cos(b0) - b) / (1 - phi * np.sin(b0))
    b0 = np.clip(b0, -np.pi / 2, np.pi / 2)
  out[inside] = w * np.sin(b0)
  return out


def to_image(face: dict, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Canonical (u, v) -> image (x, y) pixels (pixel-edge): yaw, scale, rotate, shift."""
  u = _yaw(face, np.asarray(u, np.float64), np.asarray(v, np.float64))
  c, s = np.cos(face['angle']), np.sin(face['angle'])
  h = face['height']
  return face['cx'] + h * (c * u - s * v), face['cy'] + h * (s * u + c * v)


def to_canonical(face: dict, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Image (x, y) pixels -> canonical (u, v): the inverse of `to_image`."""
  c, s = np.cos(face['angle']), np.sin(face['angle'])
  dx, dy = (x - face['cx']) / face['height'], (y - face['cy']) / face['height']
  u, v = c * dx + s * dy, -s * dx + c * dy
  return _yaw(face, u, v, inverse=True), v


def face_box(face: dict) -> np.ndarray:
  """[4] float32 (x1, y1, x2, y2) pixels: the exact box of the rotated skin ellipse.

  The yaw warp maps the skin ellipse onto itself, so only the rotation matters.
  """
  a, b = face['rx'] * face['height'], _SKIN_RY * face['height']
  c, s = np.cos(face['angle']), np.sin(face['angle'])
  hx, hy = np.hypot(a * c, b * s), np.hypot(a * s, b * c)
  return np.array([face['cx'] - hx, face['cy'] - hy, face['cx'] + hx, face['cy'] + hy],
                  np.float32)


# ----------------------------------------------------------------------------- sampling


def _place_faces(rng: np.random.Generator, config: SyntheticFacesConfig) -> list[dict]:
  """Poses of the faces (cx, cy, height, angle, yaw, rx), in drawing order."""
  s = config.image_size

  def pose(height):
    return {'height': height, 'rx': rng.uniform(0.34, 0.41),
            'angle': np.deg2rad(rng.uniform(-1, 1) * config.max_rotation),
            'yaw': rng.uniform(-1, 1) * config.max_yaw}

  if config.crops:
    face = pose(rng.uniform(config.min_face_height, config.max_face_height) * s)
    face['cx'], face['cy'] = s / 2 + rng.uniform(-1, 1, 2) * config.crop_jitter * s
    return [face]
  count = int(rng.integers(1, config.max_faces + 1))
  log_lo, log_hi = np.log(config.min_face_height * s), np.log(config.max_face_height * s)
  heights = np.sort(np.exp(rng.uniform(log_lo, log_hi, count)))[::-1]
  placed = []
  for height in heights:  # Largest first, so that they find room.
    for _ in range(30):
      face = pose(height)
      face['cx'], face['cy'] = 0.0, 0.0
      half = face_box(face)[2:]
      if np.any(half * 2 >= s):
        break
      face['cx'], face['cy'] = rng.uniform(half, s - half)
      if all(_overlap_ok(face, other) for other in placed):
        placed.append(face)
        break
  return placed[::-1]  # Drawn smallest (farthest) first.


def _overlap_ok(a: dict, b: dict) -> bool:
  box_a, box_b = face_box(a), face_box(b)
  head_a = box_a + np.array([-1, -1, 1, 1]) * _HEAD_MARGIN * a['height']
  head_b = box_b + np.array([-1, -1, 1, 1]) * _HEAD_MARGIN * b['height']

  def covered(head, box):  # Fraction of `box` inside `head`.
    w = min(head[2], box[2]) - max(head[0], box[0])
    h = min(head[3], box[3]) - max(head[1], box[1])
    return max(w, 0) * max(h, 0) / ((box[2] - box[0]) * (box[3] - box[1]))

  return covered(head_a, box_b) <= MAX_OVERLAP and covered(head_b, box_a) <= MAX_OVERLAP


def _jitter(rng, colour, low=0.85, high=1.15):
  return np.clip(np.asarray(colour) * rng.uniform(low, high), 0, 1)


_HAIR = ((0.06, 0.05, 0.05), (0.2, 0.12, 0.07), (0.35, 0.22, 0.12), (0.75, 0.6, 0.35),
         (0.55, 0.22, 0.1), (0.6, 0.6, 0.6))
_IRIS = ((0.25, 0.15, 0.08), (0.15, 0.09, 0.05), (0.2, 0.3, 0.45), (0.2, 0.3, 0.18))


def _skin_colour(rng):
  return ss._hsv_to_rgb(rng.uniform(0.03, 0.1), rng.uniform(0.25, 0.6),  # pylint: disable=protected-access
                        rng.uniform(0.45, 0.95))


def _vivid(rng):
  return ss._hsv_to_rgb(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.3, 0.95))  # pylint: disable=protected-access


def _sample_appearance(rng: np.random.Generator, config: SyntheticFacesConfig) -> dict:
  """A face's proportions, colours, hair, accessories and whether it is labelled."""
  f = {}
  f['eye_v'] = rng.uniform(-0.11, -0.05)
  f['eye_dx'] = rng.uniform(0.14, 0.175)
  f['eye_w'] = rng.uniform(0.06, 0.075)
  f['eye_h'] = f['eye_w'] * rng.uniform(0.45, 0.6)
  f['brow_gap'] = rng.uniform(0.075, 0.1)
  f['brow_arch'] = rng.uniform(0.01, 0.035)
  f['brow_thick'] = rng.uniform(0.012, 0.02)
  f['nose_v'] = rng.uniform(0.1, 0.15)
  f['nose_w'] = rng.uniform(0.045, 0.07)
  f['mouth_v'] = rng.uniform(0.25, 0.3)
  f['mouth_w'] = rng.uniform(0.1, 0.14)
  f['lip_up'] = rng.uniform(0.015, 0.03)
  f['lip_low'] = rng.uniform(0.02, 0.035)
  f['mouth_open'] = rng.uniform(0.01, 0.04) if rng.random() < 0.3 else 0.0
  f['light'] = rng.normal(size=2)
  f['light'] /= np.linalg.norm(f['light'])
  skin = _skin_colour(rng)
  f['skin_colour'] = skin
  f['nose_colour'] = skin * 0.65
  f['lip_colour'] = np.clip(ss._hsv_to_rgb(rng.uniform(0.95, 1.0), rng.uniform(0.35, 0.6),  # pylint: disable=protected-access
                                           skin.max() * rng.uniform(0.6, 0.8)), 0, 1)
  f['mouth_colour'] = np.array([0.22, 0.06, 0.06])
  f['white_colour'] = _jitter(rng, (0.93, 0.92, 0.88), 0.95, 1.05)
  f['iris_colour'] = _jitter(rng, _IRIS[rng.integers(len(_IRIS))], 0.8, 1.2)
  f['pupil_colour'] = np.array([0.03, 0.03, 0.03])
  hair = _vivid(rng) if rng.random() < 0.1 else _jitter(rng, _HAIR[rng.integers(len(_HAIR))])
  f['hair_colour'] = hair
  f['brow_colour'] = np.minimum(hair, 0.45) * 0.8
  f['has_hair'] = rng.random() < 0.9
  f['hair_back'] = (rng.uniform(1.08, 1.25), rng.uniform(-0.1, -0.03), rng.uniform(0.52, 0.6))
  f['hair_bottom'] = rng.uniform(-0.05, 0.55)
  f['hairline'] = (rng.uniform(-0.42, -0.3), rng.uniform(0.0, 0.12))
  f['glasses'] = None
  if rng.random() < config.glasses_prob:
    f['glasses'] = 'sun' if rng.random() < 0.4 else 'clear'
  f['glasses_radius'] = f['eye_w'] * rng.uniform(1.45, 1.7)
  f['frame_colour'] = _jitter(rng, (0.08, 0.08, 0.08)) if rng.random() < 0.6 else _vivid(rng)
  f['lens_colour'] = _jitter(rng, (0.06, 0.06, 0.09))
  f['hat'] = None
  if rng.random() < config.hat_prob:
    f['hat'] = {'brim': rng.uniform(-0.4, -0.2), 'crown_w': rng.uniform(0.36, 0.46),
                'crown_h': rng.uniform(0.3, 0.45),
                'brim_w': rng.uniform(0.45, 0.65) if rng.random() < 0.7 else 0.0,
                'colour': _vivid(rng)}
  f['blob'] = None
  if rng.random() < config.occlusion_prob:
    r, a = np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
    f['blob'] = {'centre': (0.3 * r * np.cos(a), 0.4 * r * np.sin(a)),
                 'axes': rng.uniform(0.1, 0.25, 2), 'angle': rng.uniform(0, np.pi),
                 'colour': _skin_colour(rng) if rng.random() < 0.3 else _vivid(rng)}
  f['labelled'] = bool(rng.random() >= config.unlabelled_fraction)
  return f


# ----------------------------------------------------------------------------- drawing


def _draw_background(rng: np.random.Generator, s: int, num_clutter: int) -> np.ndarray:
  """[s, s, 3] float image in [0, 1]: tinted low-frequency texture and clutter shapes."""
  tints = [ss._hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.25, 0.9))  # pylint: disable=protected-access
           for _ in range(2)]
  mix = 0.5 + 0.5 * ss._smooth_noise(rng, s, 3)[..., None]  # pylint: disable=protected-access
  image = tints[0] * (1 - mix) + tints[1] * mix
  image = image * (1 + 0.2 * ss._smooth_noise(rng, s, 8)[..., None])  # pylint: disable=protected-access
  image = image + 0.05 * ss._smooth_noise(rng, s, 24)[..., None]  # pylint: disable=protected-access
  for _ in range(int(rng.integers(num_clutter // 2, num_clutter + 1))):
    kind = int(rng.integers(4))
    size = np.exp(rng.uniform(np.log(0.04), np.log(0.35))) * s
    cx, cy = rng.uniform(0, s, 2)
    angle = rng.uniform(0, np.pi)
    colour = _skin_colour(rng) if rng.random() < 0.25 else _vivid(rng)
    aspect = rng.uniform(0.4, 1.0)
    shade = 1 + 0.1 * rng.uniform(-1, 1)
    # Every clutter shape lies within `size` of its centre: draw on that window only.
    x0, x1 = int(np.clip(cx - size - 1, 0, s)), int(np.clip(cx + size + 2, 0, s))
    y0, y1 = int(np.clip(cy - size - 1, 0, s)), int(np.clip(cy + size + 2, 0, s))
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    c, sn = np.cos(angle), np.sin(angle)
    du, dv = c * (xx - cx) + sn * (yy - cy), -sn * (xx - cx) + c * (yy - cy)
    if kind == 0:  # ellipse
      mask = (du / (size / 2)) ** 2 + (dv / (size * aspect / 2)) ** 2 <= 1
    elif kind == 1:  # rotated rectangle
      mask = (np.abs(du) <= size / 2) & (np.abs(dv) <= size * aspect / 2)
    elif kind == 2:  # triangle
      mask = ss._shape_mask(2, cx, cy, size, angle, xx, yy)  # pylint: disable=protected-access
    else:  # thick line
      mask = (np.abs(du) <= size) & (np.abs(dv) <= max(0.6, size * 0.06))
    window = image[y0:y1, x0:x1]
    window[...] = np.where(mask[..., None], colour * shade, window)
  return image


def _ellipse(u, v, cu, cv, au, av):
  return ((u - cu) / au) ** 2 + ((v - cv) / av) ** 2 <= 1


def _near_polyline(u, v, points: np.ndarray, radius: float) -> np.ndarray:
  """Whether (u, v) lies within `radius` of the polyline through points [k, 2]."""
  best = np.full(np.shape(u), np.inf)
  for (au, av), (bu, bv) in zip(points[:-1], points[1:]):
    eu, ev = bu - au, bv - av
    t = np.clip(((u - au) * eu + (v - av) * ev) / max(eu * eu + ev * ev, 1e-12), 0, 1)
    best = np.minimum(best, (u - au - t * eu) ** 2 + (v - av - t * ev) ** 2)
  return best <= radius * radius


def _in_polygon(u, v, points: np.ndarray) -> np.ndarray:
  """Even-odd test of (u, v) against the closed polygon through points [k, 2]."""
  inside = np.zeros(np.shape(u), bool)
  for (au, av), (bu, bv) in zip(points, np.roll(points, -1, axis=0)):
    crosses = (av > v) != (bv > v)
    at = au + (v - av) * (bu - au) / np.where(bv == av, 1.0, bv - av)
    inside ^= crosses & (u < at)
  return inside


def _layers(face: dict, u: np.ndarray, v: np.ndarray) -> list:
  """The face's layers at canonical points (u, v), in drawing order.

  Returns:
    [(mask, colour, occluder)]: mask bool like u; colour [3] or [..., 3]; occluder True
    for accessories (they make the face's own landmarks under them occluded).
  """
  f, mesh = face, face['mesh']
  rx = f['rx']
  out = []
  skin = _ellipse(u, v, 0, 0, rx, _SKIN_RY)
  if f['has_hair']:
    sx, cy, ry = f['hair_back']
    back = _ellipse(u, v, 0, cy, rx * sx, ry) & (v <= f['hair_bottom'])
    texture = 1 + 0.08 * np.sin(90 * u + 7 * v)[..., None]
    hair = np.clip(f['hair_colour'] * texture, 0, 1)
    out.append((back & ~skin, hair, False))
  shade = 1 + 0.12 * (f['light'][0] * u / rx + f['light'][1] * v / _SKIN_RY)
  out.append((skin, np.clip(f['skin_colour'] * shade[..., None], 0, 1), False))
  if f['has_hair']:
    top, sides = f['hairline']
    out.append((skin & (v < top + sides * (u / rx) ** 2), hair, False))
  # The features lie inside the skin ellipse: test only the skin's points.
  fu, fv = u[skin], v[skin]

  def on_skin(mask):
    full = np.zeros(np.shape(u), bool)
    full[skin] = mask
    return full

  brows = (_near_polyline(fu, fv, mesh[17:22], f['brow_thick'])
           | _near_polyline(fu, fv, mesh[22:27], f['brow_thick']))
  out.append((on_skin(brows), f['brow_colour'], False))
  eye_u, eye_v = f['eye_dx'], f['eye_v']
  eyes = (_ellipse(fu, fv, -eye_u, eye_v, f['eye_w'], f['eye_h'])
          | _ellipse(fu, fv, eye_u, eye_v, f['eye_w'], f['eye_h']))
  out.append((on_skin(eyes), f['white_colour'], False))
  for colour, radius in ((f['iris_colour'], f['eye_h']), (f['pupil_colour'], 0.45 * f['eye_h'])):
    disc = (_ellipse(fu, fv, -eye_u, eye_v, radius, radius)
            | _ellipse(fu, fv, eye_u, eye_v, radius, radius))
    out.append((on_skin(disc & eyes), colour, False))
  nose = (_near_polyline(fu, fv, mesh[[27, 28, 29, 30, 33]], 0.012)
          | _near_polyline(fu, fv, mesh[31:36], 0.012)
          | _ellipse(fu, fv, mesh[30, 0], mesh[30, 1], 0.02, 0.02))
  out.append((on_skin(nose), f['nose_colour'], False))
  out.append((on_skin(_in_polygon(fu, fv, mesh[48:60])), f['lip_colour'], False))
  out.append((on_skin(_in_polygon(fu, fv, mesh[60:68])), f['mouth_colour'], False))
  out.append((on_skin(_near_polyline(fu, fv, mesh[[48, 60, 61, 62, 63, 64, 54]], 0.008)),
              f['mouth_colour'], False))
  if f['glasses']:
    r = f['glasses_radius']
    lenses = _ellipse(u, v, -eye_u, eye_v, r, r) | _ellipse(u, v, eye_u, eye_v, r, r)
    if f['glasses'] == 'sun':
      out.append((lenses, f['lens_colour'], True))
    thick = 0.014
    rings = (np.abs(np.hypot(u + eye_u, v - eye_v) - r) <= thick)
    rings |= (np.abs(np.hypot(u - eye_u, v - eye_v) - r) <= thick)
    edge = rx * 0.98
    bars = (np.abs(v - eye_v) <= thick) & (
        (np.abs(u) <= eye_u - r + thick) | ((np.abs(u) >= eye_u + r) & (np.abs(u) <= edge)))
    out.append((rings | bars, f['frame_colour'], True))
  if f['hat']:
    h = f['hat']
    crown = _ellipse(u, v, 0, h['brim'], h['crown_w'], h['crown_h']) & (v <= h['brim'])
    brim = (np.abs(u) <= h['brim_w']) & (v >= h['brim'] - 0.03) & (v <= h['brim'] + 0.015)
    out.append((crown | brim, h['colour'], True))
  if f['blob']:
    b = f['blob']
    c, s = np.cos(b['angle']), np.sin(b['angle'])
    du, dv = u - b['centre'][0], v - b['centre'][1]
    mask = _ellipse(c * du + s * dv, -s * du + c * dv, 0, 0, *b['axes'])
    out.append((mask, b['colour'], True))
  return out


def _draw_face(image: np.ndarray, face: dict) -> None:
  """Paints the face's layers into image [S, S, 3] (in place), over its pixel window."""
  s = image.shape[0]
  reach = 1.0 * face['height']  # Every layer lies within one face height of the centre.
  x0, x1 = int(max(0, np.floor(face['cx'] - reach))), int(min(s, np.ceil(face['cx'] + reach)))
  y0, y1 = int(max(0, np.floor(face['cy'] - reach))), int(min(s, np.ceil(face['cy'] + reach)))
  yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
  u, v = to_canonical(face, xx, yy)
  window = image[y0:y1, x0:x1]
  for mask, colour, _ in _layers(face, u, v):
    window[...] = np.where(mask[..., None], colour, window)


def _visibility(faces: list[dict], i: int, canonical: np.ndarray, x: np.ndarray,
                y: np.ndarray) -> np.ndarray:
  """[K] bool: face i's points (canonical [K, 2], image x, y [K]) not covered by an
  accessory of face i or by any layer of a face drawn after it."""
  covered = np.zeros(len(x), bool)
  for mask, _, occluder in _layers(faces[i], canonical[:, 0], canonical[:, 1]):
    if occluder:
      covered |= mask
  for later in faces[i + 1:]:
    u, v = to_canonical(later, x, y)
    for mask, _, _ in _layers(later, u, v):
      covered |= mask
  return ~covered
