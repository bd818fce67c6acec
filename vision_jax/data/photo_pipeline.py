"""Photo pipelines: style-transfer content images and super-resolution (LR, HR) pairs.

Batches are numpy dicts of fixed shapes; B is the per-process batch. Images are RGB
uint8 in [0, 255] (the house's transfer format, `vision_jax.data.streams`); on device
`vision_jax.ops.image.to_unit_float(x)` gives float32 x / 255 in [0, 1].

Content images (perceptual-loss style transfer), `make_content_dataset`:

  image          [B, S, S, 3] uint8   S = `crop_size` (default 256).
  example_valid  [B]          bool    False on the padding of a last evaluation batch
                                      (all zeros).

  Training (infinite): the photo is resized (bilinear, antialiased, aspect kept) so that
  its shorter side is S * u, u ~ U[shorter_side_range] (default [1, 1.5]), then an
  S x S crop is taken at a uniformly random position and flipped horizontally with
  probability `hflip_prob`. Evaluation (one pass, file order): shorter side resized to
  S, the centre S x S crop (offsets (H' - S) // 2, (W' - S) // 2).

Super-resolution pairs, `make_super_resolution_dataset` (r = `scale`, default 4):

  lr             [B, P/r, P/r, 3] uint8   the low-resolution input.
  hr             [B, P, P, 3]     uint8   the high-resolution target; P = `hr_size`
                                          (default 96 in training, 256 in evaluation),
                                          divisible by r.
  example_valid  [B]              bool    False on evaluation padding (all zeros).

  Training (infinite): a P x P HR crop at a uniformly random position, the same
  horizontal flip for lr and hr. Evaluation: the centre crop. HR pixels are never
  resampled: a photo smaller than P x P stops the pipeline (InvalidArgumentError).
  Where the LR comes from:
    * datasets of single photos (bundled_photos, coco/2017, ...): lr is the HR crop
      downscaled r times, `tf.image.resize(hr, (P/r, P/r), 'bicubic', antialias=True)`
      on the uint8 values, rounded and clipped to uint8 (`bicubic_downscale`). That is
      Keys' cubic (a = -0.5) widened r times, which approximates MATLAB's
      `imresize(hr, 1/r, 'bicubic')` that made DIV2K's and the SR benchmarks' LR images
      (MATLAB pads borders by replication, TF renormalises the weights at the border;
      MATLAB also rounds, the same way).
    * datasets that store aligned pairs (div2k/bicubic_x4, ...; `scale` must be the
      dataset's): the given LR image, cropped P/r x P/r at LR pixel (y, x) and the HR
      at (r y, r x), so the pair stays aligned; no LR is computed.
  PSNR on the evaluation crops is a measure of the crops, not of the whole images.

  sr = make_super_resolution_dataset('bundled_photos', 'train', batch_size=16,
                                     training=True, hr_size=96, seed=0,
                                     start_batch=step)

Both: training streams are infinite, deterministic for a seed (augmentation seeds are
stateless per example) and resumable from `start_batch`, sharded over processes;
evaluation passes are padded to whole batches (`vision_jax.data.streams`).
`load_content_arrays` / `load_super_resolution_arrays` return a whole (small)
evaluation split at once, in order, without padding.

Adapters, found by the dataset's name (`vision_jax.data.sources.<name>`):
  'photo'             `photo_source(builder)` -> PhotoSource. Without one, any dataset
                      with an `image` Image feature is read through it (bundled_photos,
                      coco/2017, ...): `default_photo_source`.
  'super_resolution'  `super_resolution_source(builder)` -> SuperResolutionSource, for
                      datasets with given LR images (div2k). Without one, the photo
                      adapter and bicubic LR.
A catalog dataset that is not prepared raises `datasets.DatasetNotFoundError` naming the
directory searched and the `tfds build` command.
"""
import dataclasses
from typing import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import datasets
from vision_jax.data import sources
from vision_jax.data import streams

PHOTO, SUPER_RESOLUTION = 'photo', 'super_resolution'
DEFAULT_SCALE = 4
TRAIN_HR_SIZE, EVAL_HR_SIZE = 96, 256  # the default `hr_size`s


@dataclasses.dataclass(frozen=True)
class PhotoSource:
  """What the photo pipelines need to know about one dataset.

  Attributes:
    builder: the prepared TFDS builder.
    decoders: TFDS decoders (the image left encoded, other features skipped).
    canonical: record -> [h, w, 3] uint8 RGB, the photo (any size).
  """
  builder: tfds.core.DatasetBuilder
  decoders: dict | tfds.decode.PartialDecoding
  canonical: Callable[[dict], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class SuperResolutionSource:
  """A dataset of aligned (LR, HR) pairs.

  Attributes:
    builder: the prepared TFDS builder.
    decoders: TFDS decoders (images left encoded).
    canonical: record -> (lr [h, w, 3] uint8, hr [H, W, 3] uint8) with HR pixel
      (r y, r x) at LR pixel (y, x): H >= r h' and W >= r w' where (h', w') is the part
      of the LR used (`aligned_lr_shape`).
    scale: r.
  """
  builder: tfds.core.DatasetBuilder
  decoders: dict | tfds.decode.PartialDecoding
  canonical: Callable[[dict], tuple[tf.Tensor, tf.Tensor]]
  scale: int


def decode_rgb(encoded: tf.Tensor) -> tf.Tensor:
  """Encoded PNG / JPEG bytes -> [h, w, 3] uint8 (grey images repeated, alpha dropped)."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  return tf.ensure_shape(image, [None, None, 3])


def default_photo_source(builder: tfds.core.DatasetBuilder) -> PhotoSource:
  """The photo adapter of a dataset with an `image` Image feature (only it is read)."""
  features = builder.info.features
  if 'image' not in features or not isinstance(features['image'], tfds.features.Image):
    raise ValueError(
        f'no {PHOTO} adapter for TFDS dataset {datasets.full_name(builder)}: it has no '
        f"'image' Image feature and vision_jax/data/sources/{builder.name}.py defines no "
        f'{PHOTO}_source(builder); datasets with one are {sources.available(PHOTO)}')
  return PhotoSource(
      builder=builder,
      decoders=tfds.decode.PartialDecoding(
          {'image': True}, decoders={'image': tfds.decode.SkipDecoding()}),
      canonical=lambda example: decode_rgb(example['image']))


def _adapter(builder, contract):
  """`sources.<name>.<contract>_source(builder)`, or None when the module has none."""
  if builder.name not in sources.available(contract):
    return None
  return sources.find(builder, contract)


def get_photo_source(dataset: str, data_dir: str | None = None, *,
                     download: bool = False) -> PhotoSource:
  """The prepared dataset's photo adapter (ValueError when it has none)."""
  builder = datasets.get_builder(dataset, data_dir, download=download)
  return _adapter(builder, PHOTO) or default_photo_source(builder)


def get_super_resolution_source(dataset: str, data_dir: str | None = None, *,
                                download: bool = False
                                ) -> SuperResolutionSource | PhotoSource:
  """The dataset's pair adapter when it stores LR images, else its photo adapter."""
  builder = datasets.get_builder(dataset, data_dir, download=download)
  return (_adapter(builder, SUPER_RESOLUTION) or _adapter(builder, PHOTO)
          or default_photo_source(builder))


def bicubic_downscale(hr: tf.Tensor, scale: int) -> tf.Tensor:
  """[..., H, W, 3] uint8 -> [..., H/r, W/r, 3] uint8: antialiased bicubic, rounded.

  The LR of single-photo datasets (module docstring); H and W divisible by r.
  """
  height, width = hr.shape[-3], hr.shape[-2]
  small = tf.image.resize(tf.cast(hr, tf.float32), (height // scale, width // scale),
                          method='bicubic', antialias=True)
  return streams.to_uint8(small)


def aligned_lr_shape(lr: tf.Tensor, hr: tf.Tensor, scale: int) -> tf.Tensor:
  """[2] int32 (h', w'): the LR rows and columns whose HR pixels all exist.

  MATLAB's imresize makes ceil(H / r) LR rows: when r does not divide H the last one
  has no full HR block, and is not used.
  """
  return tf.minimum(tf.shape(lr)[:2], tf.shape(hr)[:2] // scale)


def _assert_at_least(shape: tf.Tensor, size: int, what: str) -> tf.Operation:
  """Stops the pipeline when an image of `shape` [h, w] cannot hold a size x size crop."""
  return tf.debugging.Assert(tf.reduce_all(shape >= size), [
      f'{what} of shape', shape, f'is smaller than the {size} x {size} crop'])


def _offsets(space: tf.Tensor, size: int, seed) -> tf.Tensor:
  """[2] int32 crop offsets in an image of `space` = [h, w]: random (seed) or centred."""
  room = space - size
  if seed is None:
    return room // 2
  return tf.cast(tf.math.floor(tf.random.stateless_uniform([2], seed) * tf.cast(
      room + 1, tf.float32)), tf.int32)


def _crop(image: tf.Tensor, offset: tf.Tensor, size: int) -> tf.Tensor:
  return tf.ensure_shape(image[offset[0]:offset[0] + size, offset[1]:offset[1] + size],
                         [size, size, 3])


def _maybe_flip(images: Sequence[tf.Tensor], seed, hflip_prob: float) -> list[tf.Tensor]:
  """One horizontal-flip decision for every [h, w, 3] image."""
  if seed is None or hflip_prob <= 0:
    return list(images)
  flip = tf.random.stateless_uniform([], seed) < hflip_prob
  return [tf.cond(flip, lambda x=x: x[:, ::-1], lambda x=x: x) for x in images]


def resize_shorter_side(image: tf.Tensor, shorter: tf.Tensor, min_size: int) -> tf.Tensor:
  """[h, w, 3] uint8 -> uint8 with its shorter side `shorter` pixels (aspect kept;
  bilinear, antialiased); both sides at least `min_size`."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  factor = tf.cast(shorter, tf.float32) / tf.reduce_min(shape)
  size = tf.maximum(tf.cast(tf.round(shape * factor), tf.int32), min_size)
  return streams.to_uint8(tf.image.resize(image, size, method='bilinear', antialias=True))


def _batch_options(batch_size, seed, start_batch, process_index, process_count,
                   in_memory, shuffle_buffer, training) -> dict:
  return dict(training=training, batch_size=batch_size, seed=seed, start_batch=start_batch,
              process_index=process_index, process_count=process_count,
              in_memory=in_memory, shuffle_buffer=shuffle_buffer)


def build_content_dataset(
    dataset: str, split: str, *, data_dir: str | None = None, batch_size: int,
    training: bool, crop_size: int = 256,
    shorter_side_range: tuple[float, float] = (1.0, 1.5), hflip_prob: float = 0.5,
    seed: int = 0, start_batch: int = 0, process_index: int = 0, process_count: int = 1,
    in_memory: bool | None = None, shuffle_buffer: int = 4096,
    download: bool = False) -> tf.data.Dataset:
  """The batched tf.data pipeline behind `make_content_dataset` (same arguments)."""
  low, high = shorter_side_range
  if not 1.0 <= low <= high:
    raise ValueError(f'shorter_side_range={shorter_side_range}: need 1 <= low <= high '
                     '(in units of crop_size)')
  source = get_photo_source(dataset, data_dir, download=download)

  def process(example, rng):
    image = source.canonical(example)
    if rng is None:
      image = resize_shorter_side(image, crop_size, crop_size)
      return {'image': _crop(image, _offsets(tf.shape(image)[:2], crop_size, None),
                             crop_size),
              'example_valid': tf.constant(True)}
    zoom_seed, crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(rng, 3))
    zoom = tf.random.stateless_uniform([], zoom_seed, low, high)
    shorter = tf.cast(tf.math.floor(zoom * crop_size), tf.int32)
    image = resize_shorter_side(image, shorter, crop_size)
    image = _crop(image, _offsets(tf.shape(image)[:2], crop_size, crop_seed), crop_size)
    image, = _maybe_flip([image], flip_seed, hflip_prob)
    return {'image': image, 'example_valid': tf.constant(True)}

  return streams.split_batches(
      dataset, split, data_dir, builder=source.builder, decoders=source.decoders,
      process=process, padding=streams.zeros_like_spec,
      **_batch_options(batch_size, seed, start_batch, process_index, process_count,
                       in_memory, shuffle_buffer, training))


def make_content_dataset(dataset: str, split: str, **kwargs) -> Iterator[dict]:
  """Numpy batches of style-transfer content images (module docstring).

  Args:
    dataset: TFDS name ('bundled_photos', 'coco/2017', 'div2k/bicubic_x4').
    split: split or TFDS slice ('train', 'validation[:100]').
    **kwargs: of `build_content_dataset`: data_dir, batch_size (GLOBAL), training,
      crop_size, shorter_side_range, hflip_prob, seed, start_batch, process_index,
      process_count, in_memory, shuffle_buffer, download.
  Returns:
    An iterator of {'image': [B, S, S, 3] uint8, 'example_valid': [B] bool}.
  """
  return build_content_dataset(dataset, split, **kwargs).as_numpy_iterator()


def build_super_resolution_dataset(
    dataset: str, split: str, *, data_dir: str | None = None, batch_size: int,
    training: bool, hr_size: int | None = None, scale: int | None = None,
    hflip_prob: float = 0.5, seed: int = 0, start_batch: int = 0, process_index: int = 0,
    process_count: int = 1, in_memory: bool | None = None, shuffle_buffer: int = 4096,
    download: bool = False) -> tf.data.Dataset:
  """The batched tf.data pipeline behind `make_super_resolution_dataset` (same args)."""
  source = get_super_resolution_source(dataset, data_dir, download=download)
  given_lr = isinstance(source, SuperResolutionSource)
  if scale is None:
    scale = source.scale if given_lr else DEFAULT_SCALE
  if given_lr and scale != source.scale:
    raise ValueError(f'{dataset} stores x{source.scale} LR images, not scale={scale}')
  if hr_size is None:
    hr_size = TRAIN_HR_SIZE if training else EVAL_HR_SIZE
  if scale < 1 or hr_size % scale:
    raise ValueError(f'hr_size={hr_size} must be divisible by scale={scale}')
  lr_size = hr_size // scale

  def process(example, rng):
    crop_seed, flip_seed = (None, None) if rng is None else tf.unstack(
        tf.random.experimental.stateless_split(rng, 2))
    if given_lr:
      lr, hr = source.canonical(example)
      space = aligned_lr_shape(lr, hr, scale)
      with tf.control_dependencies([_assert_at_least(
          space, lr_size, f'{dataset}: an LR image (its part with HR pixels)')]):
        offset = _offsets(space, lr_size, crop_seed)
      lr, hr = _maybe_flip([_crop(lr, offset, lr_size), _crop(hr, offset * scale, hr_size)],
                           flip_seed, hflip_prob)
    else:
      photo = source.canonical(example)
      shape = tf.shape(photo)[:2]
      with tf.control_dependencies([_assert_at_least(shape, hr_size, f'{dataset}: a photo')]):
        hr = _crop(photo, _offsets(shape, hr_size, crop_seed), hr_size)
      hr, = _maybe_flip([hr], flip_seed, hflip_prob)
      lr = bicubic_downscale(hr, scale)
    return {'lr': lr, 'hr': hr, 'example_valid': tf.constant(True)}

  return streams.split_batches(
      dataset, split, data_dir, builder=source.builder, decoders=source.decoders,
      process=process, padding=streams.zeros_like_spec,
      **_batch_options(batch_size, seed, start_batch, process_index, process_count,
                       in_memory, shuffle_buffer, training))


def make_super_resolution_dataset(dataset: str, split: str, **kwargs) -> Iterator[dict]:
  """Numpy batches of (LR, HR) pairs (module docstring).

  Args:
    dataset: TFDS name ('bundled_photos', 'div2k/bicubic_x4', 'coco/2017').
    split: split or TFDS slice ('train', 'validation').
    **kwargs: of `build_super_resolution_dataset`: data_dir, batch_size (GLOBAL),
      training, hr_size (P; None: 96 training, 256 evaluation), scale (r; None: the
      dataset's, else 4), hflip_prob, seed, start_batch, process_index, process_count,
      in_memory, shuffle_buffer, download.
  Returns:
    An iterator of {'lr': [B, P/r, P/r, 3] uint8, 'hr': [B, P, P, 3] uint8,
    'example_valid': [B] bool}.
  """
  return build_super_resolution_dataset(dataset, split, **kwargs).as_numpy_iterator()


def _concatenate(batches: list[dict], keys) -> dict[str, np.ndarray]:
  keep = np.concatenate([b['example_valid'] for b in batches])
  return {k: np.concatenate([b[k] for b in batches])[keep] for k in keys}


def load_content_arrays(dataset: str, split: str, *, data_dir: str | None = None,
                        crop_size: int = 256) -> dict[str, np.ndarray]:
  """A whole (small) split's evaluation crops, in order, no padding: {'image': [N, S, S,
  3] uint8}."""
  batches = list(make_content_dataset(dataset, split, data_dir=data_dir, batch_size=64,
                                      training=False, crop_size=crop_size))
  return _concatenate(batches, ['image'])


def load_super_resolution_arrays(dataset: str, split: str, *, data_dir: str | None = None,
                                 hr_size: int | None = None, scale: int | None = None
                                 ) -> dict[str, np.ndarray]:
  """A whole (small) split's evaluation pairs, in order, no padding:
  {'lr': [N, P/r, P/r, 3] uint8, 'hr': [N, P, P, 3] uint8}."""
  batches = list(make_super_resolution_dataset(
      dataset, split, data_dir=data_dir, batch_size=64, training=False, hr_size=hr_size,
      scale=scale))
  return _concatenate(batches, ['lr', 'hr'])
