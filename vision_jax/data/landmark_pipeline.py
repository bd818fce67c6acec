"""The landmark contract (one face or person per example, K points) and its pipeline.

For landmark localization (Stacked Hourglass, coordinate regression). Each record is cut
to a square crop around its object, resized to `image_size` and (in training) augmented
by one similarity transform: scale, rotation, shift and horizontal flip. Batches are
numpy dicts of fixed shapes (B the per-process batch, S = image_size):

  image          [B, S, S, 3] uint8    the crop.
  landmarks      [B, K, 3]    float32  (x, y, visibility) in crop pixels, pixel-edge
                                       convention (pixel (i, j) covers [j, j + 1) x
                                       [i, i + 1)); visibility COCO-style: 2 visible,
                                       1 labelled but occluded, 0 not labelled. Points
                                       the crop cuts off keep their coordinates (outside
                                       [0, S]) and visibility.
  box            [B, 4]       float32  the object's box (x1, y1, x2, y2) in crop pixels
                                       (the axis-aligned box of its rotated corners).
  example_valid  [B]          bool     False on the padding of a last evaluation batch.

  data = make_landmark_dataset('synthetic_faces/crops', 'train', points='mesh68',
                               batch_size=32, training=True, image_size=(64, 64))

The crop: a square of side `crop_scale` x max(box width, box height) centred on the
box; in training its side is multiplied by a log-uniform factor in [1 / (1 + s), 1 + s]
(s = `scale_jitter`), its centre shifted by up to `shift_jitter` x side per axis and
the crop rotated by up to `max_rotation` degrees; `hflip_prob` mirrors it, swapping
left and right points (`PointSet.flip_permutation`). The image is resampled bilinearly
(zeros outside the record's image); points go through the same map exactly.

A dataset's adapter is `vision_jax.data.sources.<name>.landmark_source(builder)`
(`LandmarkSource`): the point sets it holds (e.g. synthetic_faces: 'landmarks5' and
'mesh68'), and a `canonical(example)` giving the image, each point set in pixels and the
object's box (None: the box of the labelled points).
"""
import dataclasses
import math
from typing import Callable, Iterator, Sequence

import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import coco_format
from vision_jax.data import datasets
from vision_jax.data import sources
from vision_jax.data import streams


@dataclasses.dataclass(frozen=True)
class PointSet:
  """One landmark scheme of a dataset.

  Attributes:
    names: one name per point (len K).
    flip_permutation: [K] new index -> old index under a horizontal flip.
    ocular_indices: (a, b), the points whose distance is the inter-ocular normaliser
      (`vision_jax.evaluation.landmarks`), or None when the scheme has no eyes.
    skeleton: pairs of point indices to draw as lines.
  """
  names: tuple[str, ...]
  flip_permutation: tuple[int, ...]
  ocular_indices: tuple[int, int] | None = None
  skeleton: tuple[tuple[int, int], ...] = ()

  @property
  def num_points(self) -> int:
    return len(self.names)


@dataclasses.dataclass(frozen=True)
class LandmarkSource:
  """What the landmark pipeline needs to know about one dataset.

  Attributes:
    builder: the prepared TFDS builder.
    point_sets: name -> PointSet.
    decoders: TFDS decoders that leave images encoded.
    canonical: example -> {'image': [h, w, 3] uint8, 'points': {set name: [K, 3]
      float32 (x, y, visibility) in pixels, pixel-edge convention}, 'box': [4] float32
      (x1, y1, x2, y2) pixels, or absent: the box of the labelled points}.
  """
  builder: tfds.core.DatasetBuilder
  point_sets: dict
  decoders: dict
  canonical: Callable[[dict], dict]

  def point_set(self, name: str) -> PointSet:
    if name not in self.point_sets:
      raise ValueError(
          f'{datasets.full_name(self.builder)} has no landmark set {name!r}; it has '
          f'{sorted(self.point_sets)} (set config.data.points to one of them)')
    return self.point_sets[name]


def get_landmark_source(dataset: str, data_dir: str | None = None, *,
                        download: bool = False) -> LandmarkSource:
  """The prepared dataset's landmark adapter."""
  return sources.find(datasets.get_builder(dataset, data_dir, download=download),
                      'landmark')


COCO_FORMAT_KEYS = ('coco_root', 'coco_annotations', 'coco_images', 'coco_splits')


def coco_format_options(data_config) -> dict:
  """The local COCO-format keys an experiment's `config.data` sets."""
  return {key: data_config[key] for key in COCO_FORMAT_KEYS
          if data_config.get(key) is not None}


def get_landmark_source_from_config(data_config) -> LandmarkSource:
  """The adapter of `config.data.dataset` (local COCO-format folders resolved first)."""
  dataset = coco_format.resolve(data_config['dataset'], None,
                                **coco_format_options(data_config))
  return get_landmark_source(dataset, data_config.get('data_dir'))


def _points_box(points: tf.Tensor) -> tf.Tensor:
  """[K, 3] points -> [4] box of the labelled ones (a unit box at the origin if none)."""
  labelled = points[:, 2] > 0
  xy = tf.boolean_mask(points[:, :2], labelled)
  return tf.cond(tf.reduce_any(labelled),
                 lambda: tf.concat([tf.reduce_min(xy, 0), tf.reduce_max(xy, 0)], 0),
                 lambda: tf.constant([0.0, 0.0, 1.0, 1.0]))


def crop_transform(box, size: int, *, crop_scale: float, log_scale=0.0, shift=(0.0, 0.0),
                   angle=0.0, flip=False):
  """The similarity map from crop pixels to record pixels, and its inverse.

  Args:
    box: [4] (x1, y1, x2, y2) record pixels.
    size: S, the crop's side in pixels.
    crop_scale: the crop's side / max(box width, box height).
    log_scale: log of the extra side factor (augmentation).
    shift: (dx, dy) centre shift, fractions of the side.
    angle: rotation in radians (positive turns the content clockwise on screen).
    flip: mirror the crop horizontally.

  Returns:
    (matrix [2, 3], inverse [2, 3]) float32, (x, y) -> A (x, y) + b in the pixel-edge
    convention: `matrix` maps crop points to record points, `inverse` the reverse.
  """
  box = tf.cast(box, tf.float32)
  side = crop_scale * tf.maximum(tf.maximum(box[2] - box[0], box[3] - box[1]), 1.0)
  side = side * tf.exp(tf.cast(log_scale, tf.float32))
  centre = 0.5 * (box[:2] + box[2:]) + tf.cast(tf.stack(shift), tf.float32) * side
  s = side / size
  cos, sin = tf.cos(tf.cast(angle, tf.float32)), tf.sin(tf.cast(angle, tf.float32))
  mirror = tf.where(tf.cast(flip, tf.bool), -1.0, 1.0)
  # record = centre + s R(-angle) M (crop - S/2), M = diag(mirror, 1): the content
  # appears turned by +angle in the crop.
  a = s * tf.stack([tf.stack([cos * mirror, sin]), tf.stack([-sin * mirror, cos])])
  b = centre - tf.linalg.matvec(a, tf.fill([2], size / 2.0))
  inv_a = tf.linalg.inv(a)
  inv_b = -tf.linalg.matvec(inv_a, b)
  return (tf.concat([a, b[:, None]], 1), tf.concat([inv_a, inv_b[:, None]], 1))


def warp_image(image: tf.Tensor, matrix: tf.Tensor, size: int) -> tf.Tensor:
  """[h, w, C] uint8 record image -> [size, size, C] uint8 crop, bilinear, zeros outside.

  matrix: [2, 3] crop -> record map in the pixel-edge convention (`crop_transform`)."""
  a, b = matrix[:, :2], matrix[:, 2]
  # TF's transform works on pixel indices (centres at integers): shift by 1/2 each way.
  b = b + tf.linalg.matvec(a, tf.fill([2], 0.5)) - 0.5
  transform = tf.stack([a[0, 0], a[0, 1], b[0], a[1, 0], a[1, 1], b[1], 0.0, 0.0])
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=tf.cast(image, tf.float32)[None], transforms=transform[None],
      output_shape=tf.constant([size, size]), fill_value=0.0, interpolation='BILINEAR',
      fill_mode='CONSTANT')
  return streams.to_uint8(out[0])


def transform_points(points: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
  """[K, 2 + D] (x, y, ...) -> the same with (x, y) mapped by `matrix` [2, 3]."""
  xy = tf.linalg.matvec(matrix[None, :, :2], points[:, :2]) + matrix[None, :, 2]
  return tf.concat([xy, points[:, 2:]], axis=1)


def transform_box(box: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
  """[4] box -> the axis-aligned [4] box of its 4 mapped corners."""
  corners = tf.stack([box[:2], tf.stack([box[2], box[1]]), box[2:],
                      tf.stack([box[0], box[3]])])
  mapped = transform_points(corners, matrix)
  return tf.concat([tf.reduce_min(mapped, 0), tf.reduce_max(mapped, 0)], 0)


def build_landmark_dataset(
    dataset: str, split: str, *, points: str, data_dir: str | None = None,
    batch_size: int, training: bool, image_size: Sequence[int], crop_scale: float = 1.25,
    scale_jitter: float = 0.0, shift_jitter: float = 0.0, max_rotation: float = 0.0,
    hflip_prob: float = 0.0, seed: int = 0, start_batch: int = 0, process_index: int = 0,
    process_count: int = 1, in_memory: bool | None = None, shuffle_buffer: int = 4096,
    download: bool = False, coco_root: str | None = None,
    coco_annotations: str | None = None, coco_images: str | None = None,
    coco_splits: Sequence[str] | None = None) -> tf.data.Dataset:
  """The batched tf.data pipeline behind `make_landmark_dataset` (same arguments)."""
  dataset = coco_format.resolve(dataset, split, coco_root=coco_root,
                                coco_annotations=coco_annotations, coco_images=coco_images,
                                coco_splits=coco_splits)
  source = get_landmark_source(dataset, data_dir, download=download)
  point_set = source.point_set(points)
  size = tuple(int(s) for s in image_size)
  if len(size) != 2 or size[0] != size[1]:
    raise ValueError(f'image_size={image_size}: landmark crops are square (S, S)')
  s = size[0]
  perm = tf.constant(point_set.flip_permutation, tf.int32)
  augment = training and (scale_jitter or shift_jitter or max_rotation or hflip_prob)

  def process(example, rng):
    canonical = source.canonical(example)
    pts = tf.cast(canonical['points'][points], tf.float32)
    box = canonical.get('box')
    box = _points_box(pts) if box is None else tf.cast(box, tf.float32)
    log_scale, shift, angle, flip = 0.0, (0.0, 0.0), 0.0, False
    if augment:
      keys = tf.unstack(tf.random.experimental.stateless_split(rng, 4))
      bound = math.log1p(scale_jitter)
      log_scale = tf.random.stateless_uniform([], keys[0], -bound, bound)
      shift = tf.unstack(tf.random.stateless_uniform([2], keys[1], -shift_jitter,
                                                     shift_jitter + 1e-12))
      angle = tf.random.stateless_uniform([], keys[2], -1.0, 1.0) * math.radians(
          max_rotation)
      flip = tf.random.stateless_uniform([], keys[3]) < hflip_prob
    to_record, to_crop = crop_transform(box, s, crop_scale=crop_scale, log_scale=log_scale,
                                        shift=shift, angle=angle, flip=flip)
    out_points = transform_points(pts, to_crop)
    if augment:
      out_points = tf.cond(flip, lambda: tf.gather(out_points, perm), lambda: out_points)
    return {'image': warp_image(canonical['image'], to_record, s),
            'landmarks': out_points, 'box': transform_box(box, to_crop),
            'example_valid': tf.constant(True)}

  return streams.split_batches(
      dataset, split, data_dir, builder=source.builder, decoders=source.decoders,
      process=process, padding=streams.zeros_like_spec, training=training,
      batch_size=batch_size, seed=seed,
      start_batch=start_batch, process_index=process_index, process_count=process_count,
      in_memory=in_memory, shuffle_buffer=shuffle_buffer)


def make_landmark_dataset(dataset: str, split: str, **kwargs) -> Iterator[dict]:
  """Numpy batches of the landmark contract (module docstring).

  Args:
    dataset: TFDS name ('synthetic_faces/crops', 'celeb_a', 'aflw2k3d').
    split: split or TFDS slice.
    **kwargs: of `build_landmark_dataset`: points (the point set's name), data_dir,
      batch_size (GLOBAL), training, image_size, crop_scale, scale_jitter,
      shift_jitter, max_rotation, hflip_prob, seed, start_batch, process_index,
      process_count, in_memory, shuffle_buffer, download, and for local COCO-format
      folders (dataset 'coco_format') coco_root, coco_annotations, coco_images,
      coco_splits (`vision_jax.data.coco_format.resolve`).
  """
  return build_landmark_dataset(dataset, split, **kwargs).as_numpy_iterator()

