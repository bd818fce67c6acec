"""The video-clip contract (YolactEdge: keyframe feature transfer) and its pipelines.

Training batches are frame PAIRS, evaluation batches whole CLIPS. Both are built on the
family-agnostic core (`vision_jax.data.streams`): fixed shapes, the same seed gives the
same batches, `start_batch=n` continues exactly at batch n, process p of P takes its
rows of every global batch, the last evaluation batch is padded (`example_valid`
False), and images travel as uint8. Every frame goes through the detection geometry
(`detection_transforms.preprocess`, evaluation mode: resize keeping the aspect, pad at
the bottom/right), so a frame's fields are exactly the detection contract's
(`vision_jax/data/__init__.py`). B is the per-process batch, (H, W) = `image_size`
(S x S in the common square case), G = `max_instances`, T the clip's frame count.

Training (`training=True`): one example per clip record, drawn with the stream's
per-example stateless seed: a gap d uniform in [1, max_gap], a keyframe t0 uniform in
[0, T - 1 - d], the current frame t = t0 + d, and one horizontal-flip decision applied
to both frames and to the flow.

  key_image      [B, H, W, 3]  uint8    the keyframe t0.
  image          [B, H, W, 3]  uint8    the current frame t.
  boxes          [B, G, 4]     float32  current frame, (x1, y1, x2, y2) input pixels.
  classes        [B, G]        int32    0-based; -1 on padding.
  valid          [B, G]        bool     real instances first.
  is_crowd       [B, G]        bool
  areas          [B, G]        float32  visible area in original pixels.
  masks          [B, G, H, W]  uint8    0/1 visible masks.
  track_ids      [B, G]        int32    the instance's track in its clip (constant over
                                        the clip); -1 on padding.
  image_id       [B]           int64    the current frame's image id.
  key_image_id   [B]           int64    the keyframe's image id.
  clip_id        [B]           int64
  scale          [B]           float32  input pixels per original pixel.
  orig_size      [B, 2]        int32    (height, width) of the original frame.
  flow           [B, H, W, 2]  float32  (dx, dy) input pixels: BACKWARD flow, current
                                        frame -> keyframe, sampled on the current frame's
                                        grid: the point seen at pixel (x, y) of `image` is
                                        at (x + dx, y + dy) in `key_image`, so
                                        `ops.warp(key_features, flow)` ~= the current
                                        frame's features (YolactEdge's direction). Exact,
                                        computed from the clip's stored geometry on the
                                        input grid (it scales with the image). 0 on padding.
  flow_valid     [B, H, W]     uint8    1 where that point is visible in the keyframe too
                                        (inside it, not occluded); 0 on padding.
  example_valid  [B]           bool     always True in training.

Evaluation (`training=False`): every clip once, in file order, unflipped.

  images         [B, T, H, W, 3]  uint8
  boxes          [B, T, G, 4]     float32   classes [B, T, G] int32 (-1 on padding),
  valid          [B, T, G]        bool      is_crowd [B, T, G] bool,
  areas          [B, T, G]        float32   masks [B, T, G, H, W] uint8,
  track_ids      [B, T, G]        int32     (-1 on padding)
  image_id       [B, T]           int64     the builder's per-frame image ids.
  scale          [B, T]           float32   orig_size [B, T, 2] int32.
  clip_id        [B]              int64
  example_valid  [B]              bool      False on padding clips (zeros, classes and
                                            track ids -1, scale 1).
  with_flow=True adds flow [B, T-1, H, W, 2] float32 and flow_valid [B, T-1, H, W]
  uint8: flow[:, t] is the backward flow from frame t + 1 to frame t (the training
  field's direction with keyframe t, gap 1).

COCO evaluation of clips: either score against the original annotations
(`ground_truth=source.original_ground_truth(split)`, every annotation at original
resolution) or let `CocoEvaluator` rebuild the ground truth from the batches; in both
cases feed it `clip_frames_as_detection_batch(batch)`, which flattens [B, T, ...] into a
detection-contract batch [B * T, ...]:

  source = get_video_source('synthetic_shapes_video', data_dir)
  evaluator = coco.CocoEvaluator(source.class_names, category_ids=source.category_ids,
                                 iou_types=('bbox', 'segm'),
                                 ground_truth=source.original_ground_truth('validation'))
  for clips in make_video_dataset('synthetic_shapes_video', 'validation', ...):
    frames = clip_frames_as_detection_batch(clips)
    evaluator.add(frames, predictions_for(frames))    # [B * T, ...] predictions

The adapter of each dataset is `vision_jax.data.sources.<name>.video_source`.
"""
import dataclasses
from typing import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import datasets
from vision_jax.data import detection_transforms
from vision_jax.data import sources
from vision_jax.data import streams

DEFAULT_MAX_GAP = 4  # YolactEdge's keyframe interval 5, minus 1.


@dataclasses.dataclass(frozen=True)
class VideoSource:
  """What the video pipeline needs to know about one clip dataset.

  Attributes:
    builder: the prepared TFDS builder.
    class_names: thing class names, index = 0-based class id.
    category_ids: id written to COCO json for each class.
    num_frames: T, frames per clip.
    frame_size: (h, w) of the stored frames.
    max_tracks: the most instances a frame can have (keep max_instances >= it for exact
      evaluation), or None when unknown.
    decoders: TFDS decoders (frames and masks left encoded, unused features not read).
    frame: (example, t) -> the canonical detection example of frame t (scalar int32
      tensor), as `detection_sources` describes it (image, boxes, classes, is_crowd,
      areas, masks, image_id) plus `track_ids` [n] int32.
    flow: (example, t_from, t_to, size) -> (flow [h', w', 2] float32, valid [h', w']
      uint8): the exact flow from frame t_from to frame t_to (backward when t_to <
      t_from) sampled on the pixel grid of the frames resized to size = (h', w') (an
      int32 [2] tensor): the point seen at pixel (x, y) of frame t_from is at
      (x + dx, y + dy) in frame t_to, valid where it is visible there.
    clip_id: example -> the clip's id (int64 scalar).
    original_ground_truth: (split) -> COCO json dict of the split's per-frame ground
      truth at original resolution, every annotation kept.
  """
  builder: tfds.core.DatasetBuilder
  class_names: tuple[str, ...]
  category_ids: tuple[int, ...]
  num_frames: int
  frame_size: tuple[int, int]
  max_tracks: int | None
  decoders: object
  frame: Callable[[dict, tf.Tensor], dict]
  flow: Callable[[dict, tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
  clip_id: Callable[[dict], tf.Tensor]
  original_ground_truth: Callable[[str], dict]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def get_video_source(dataset: str, data_dir: str | None = None, *,
                     download: bool = False) -> VideoSource:
  """The prepared clip dataset's adapter (ValueError for still-image datasets)."""
  builder = datasets.get_builder(dataset, data_dir, download=download)
  try:
    return sources.find(builder, 'video')
  except ValueError as e:
    if 'no video adapter' not in str(e):
      raise
    raise ValueError(
        f'dataset {dataset!r} is not a video dataset: the video pipeline needs a clip '
        f'dataset such as synthetic_shapes_video (datasets with clips: '
        f'{sources.available("video")}; a new clip dataset adds '
        f'vision_jax/data/sources/{builder.name}.py defining video_source(builder)). '
        f'For still images use detection_pipeline.make_detection_dataset.') from e


def _image_size(image_size) -> tuple[int, int]:
  if isinstance(image_size, (int, np.integer)):
    return int(image_size), int(image_size)
  size = tuple(int(s) for s in image_size)
  if len(size) != 2:
    raise ValueError(f'image_size must be S or (H, W), got {image_size!r}')
  return size


def _check_max_gap(dataset: str, source: VideoSource, max_gap: int) -> None:
  if max_gap < 1:
    raise ValueError(f'max_gap={max_gap}: the gap between keyframe and current frame is '
                     'drawn from [1, max_gap], so max_gap must be >= 1')
  t = source.num_frames
  if t <= max_gap:
    raise ValueError(
        f'{dataset} clips have num_frames={t}, too short for max_gap={max_gap} (a '
        f'keyframe interval of {max_gap + 1} needs clips of at least {max_gap + 1} '
        f'frames): use max_gap <= {t - 1}, or a dataset config with num_frames >= '
        f'{max_gap + 1}')


def _flip_canonical(frame: dict) -> dict:
  """Mirrors a canonical frame left-right (relative boxes (ymin, xmin, ymax, xmax))."""
  out = dict(frame)
  out['image'] = frame['image'][:, ::-1]
  out['masks'] = frame['masks'][:, :, ::-1]
  ymin, xmin, ymax, xmax = tf.unstack(frame['boxes'], axis=-1)
  out['boxes'] = tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)
  return out


def _flip_flow(flow: tf.Tensor, valid: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """The flow of the mirrored frames: columns reversed, dx negated."""
  flow = flow[:, ::-1] * tf.constant([-1.0, 1.0])
  return flow, valid[:, ::-1]


def _content_size(frame_size: tuple[int, int], scale: tf.Tensor) -> tf.Tensor:
  """(h', w') int32 of a frame resized by `scale`, as `detection_transforms` rounds."""
  h, w = frame_size
  return tf.stack([tf.maximum(1, tf.cast(tf.round(h * scale), tf.int32)),
                   tf.maximum(1, tf.cast(tf.round(w * scale), tf.int32))])


def _pad_flow(flow, valid, image_size):
  """Zero-pads flow and validity at the bottom/right to image_size, like the images."""
  h, w = image_size
  flow = tf.ensure_shape(tf.image.pad_to_bounding_box(flow, 0, 0, h, w), [h, w, 2])
  valid = tf.image.pad_to_bounding_box(valid[..., None], 0, 0, h, w)[..., 0]
  return flow, tf.ensure_shape(valid, [h, w])


_FRAME_KEYS = ('image', 'boxes', 'classes', 'valid', 'is_crowd', 'areas', 'masks',
               'image_id', 'scale', 'orig_size', 'track_ids')


def build_video_dataset(
    dataset: str, split: str, *, data_dir: str | None = None, batch_size: int,
    image_size: int | Sequence[int], max_instances: int, training: bool, seed: int = 0,
    start_batch: int = 0, max_gap: int = DEFAULT_MAX_GAP, hflip_prob: float = 0.0,
    with_flow: bool = False, process_index: int = 0, process_count: int = 1,
    in_memory: bool | None = None, shuffle_buffer: int = 4096,
    download: bool = False) -> tf.data.Dataset:
  """The batched tf.data pipeline behind `make_video_dataset` (same arguments)."""
  source = get_video_source(dataset, data_dir, download=download)
  image_size = _image_size(image_size)
  num_frames = source.num_frames
  if training:
    _check_max_gap(dataset, source, max_gap)
  elif with_flow and num_frames < 2:
    raise ValueError(f'with_flow needs clips of >= 2 frames; {dataset} has {num_frames}')

  def frame(example, t, flip):
    """Frame t (int32 scalar), flipped when `flip` (bool tensor or None): contract fields."""
    canonical = source.frame(example, t)
    if flip is not None:
      canonical = tf.cond(flip, lambda: _flip_canonical(canonical), lambda: canonical)
    track_ids = canonical.pop('track_ids')
    out = detection_transforms.preprocess(
        canonical, image_size=image_size, max_instances=max_instances, training=False,
        with_keypoints=False)
    # Evaluation geometry keeps the instances in order (none dropped, valid first), so
    # the track ids pad the same way as the other per-instance fields.
    track_ids = detection_transforms.pad_instances(
        {'classes': tf.cast(track_ids, tf.int32)}, max_instances)['classes']
    out['track_ids'] = tf.where(out['valid'], track_ids, -1)
    return {key: out[key] for key in _FRAME_KEYS}

  def flow(example, t_from, t_to, scale, flip=None):
    size = _content_size(source.frame_size, scale)
    f, v = source.flow(example, t_from, t_to, size)
    if flip is not None:
      f, v = tf.cond(flip, lambda: _flip_flow(f, v), lambda: (f, v))
    return _pad_flow(f, v, image_size)

  def train_example(example, rng):
    gap_seed, start_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(rng, 3))
    gap = tf.random.stateless_uniform([], gap_seed, 1, max_gap + 1, tf.int32)
    t0 = tf.random.stateless_uniform([], start_seed, 0, num_frames - gap, tf.int32)
    t = t0 + gap
    flip = tf.random.stateless_uniform([], flip_seed) < hflip_prob
    key, current = frame(example, t0, flip), frame(example, t, flip)
    out = dict(current)
    out['key_image'] = key['image']
    out['key_image_id'] = key['image_id']
    out['clip_id'] = tf.cast(source.clip_id(example), tf.int64)
    out['flow'], out['flow_valid'] = flow(example, t, t0, current['scale'], flip)
    out['example_valid'] = tf.constant(True)
    return out

  h, w = image_size
  g = max_instances
  frame_spec = {
      'image': tf.TensorSpec([h, w, 3], tf.uint8),
      'boxes': tf.TensorSpec([g, 4], tf.float32),
      'classes': tf.TensorSpec([g], tf.int32),
      'valid': tf.TensorSpec([g], tf.bool),
      'is_crowd': tf.TensorSpec([g], tf.bool),
      'areas': tf.TensorSpec([g], tf.float32),
      'masks': tf.TensorSpec([g, h, w], tf.uint8),
      'image_id': tf.TensorSpec([], tf.int64),
      'scale': tf.TensorSpec([], tf.float32),
      'orig_size': tf.TensorSpec([2], tf.int32),
      'track_ids': tf.TensorSpec([g], tf.int32),
  }

  def eval_example(example, rng):
    del rng
    frames = tf.map_fn(lambda t: frame(example, t, None), tf.range(num_frames),
                       fn_output_signature=frame_spec)
    out = {('images' if key == 'image' else key): value for key, value in frames.items()}
    out['clip_id'] = tf.cast(source.clip_id(example), tf.int64)
    if with_flow:
      out['flow'], out['flow_valid'] = tf.map_fn(
          lambda t: flow(example, t + 1, t, frames['scale'][t + 1]),
          tf.range(num_frames - 1),
          fn_output_signature=(tf.TensorSpec([h, w, 2], tf.float32),
                               tf.TensorSpec([h, w], tf.uint8)))
    out['example_valid'] = tf.constant(True)
    return out

  def padding(spec):
    example = streams.zeros_like_spec(spec)
    example['classes'] -= 1
    example['track_ids'] -= 1
    example['scale'] = tf.ones_like(example['scale'])
    return example

  return streams.split_batches(
      dataset, split, data_dir, builder=source.builder, decoders=source.decoders,
      process=train_example if training else eval_example, padding=padding,
      training=training, batch_size=batch_size, seed=seed, start_batch=start_batch,
      process_index=process_index, process_count=process_count, in_memory=in_memory,
      shuffle_buffer=shuffle_buffer)


def make_video_dataset(dataset: str, split: str, **kwargs) -> Iterator[dict]:
  """Numpy batches of the video-clip contract (module docstring).

  Args:
    dataset: TFDS name of a clip dataset ('synthetic_shapes_video',
      'synthetic_shapes_video/tiny').
    split: split or TFDS slice ('train', 'validation[:10]').
    **kwargs: keyword arguments of `build_video_dataset`:
      data_dir: TFDS data_dir (None: TFDS' default).
      batch_size: GLOBAL batch size (frame pairs in training, clips in evaluation);
        each process yields batch_size // process_count.
      image_size: S or (H, W) input size.
      max_instances: G, instances per frame padded/truncated to it (keep >= the
        dataset's `max_tracks` for exact evaluation).
      training: infinite stream of frame pairs (True) or one pass over the clips.
      seed, start_batch: the training stream's seed and first global batch.
      max_gap: training pairs are (t0, t0 + d) with d uniform in [1, max_gap]
        (default 4: YolactEdge's keyframe interval 5); clips need > max_gap frames.
      hflip_prob: training probability of mirroring both frames and the flow.
      with_flow: evaluation also emits the consecutive backward flows.
      process_index, process_count: this process's share of every global batch.
      in_memory, shuffle_buffer: how training records are read (`streams`).
      download: allow TFDS to download catalog data (default: never).
  Returns:
    An iterator of dicts of numpy arrays (infinite for training).
  """
  return build_video_dataset(dataset, split, **kwargs).as_numpy_iterator()


_OPTIONAL_CONFIG_KEYS = ('data_dir', 'max_gap', 'hflip_prob', 'with_flow', 'in_memory',
                         'shuffle_buffer')
# Read by the tasks (which split to use), not by the pipeline.
_TASK_CONFIG_KEYS = ('train_split', 'eval_split')
_UNSUPPORTED_CONFIG_KEYS = {
    'scale_range': 'scale jitter is not applied to clips (the flow would have to follow '
                   'it); remove data.scale_range',
    'min_box_fraction': 'clips are not cropped; remove data.min_box_fraction',
    'with_masks': 'clip batches always carry masks; remove data.with_masks',
    'with_semantic': 'clip batches have no semantic maps; remove data.with_semantic',
    'num_keypoints': 'clip batches have no keypoints; remove data.num_keypoints',
}


def make_video_dataset_from_config(data_config, *, split: str, batch_size: int,
                                   training: bool, seed: int = 0, start_batch: int = 0,
                                   process_index: int = 0, process_count: int = 1,
                                   **overrides) -> Iterator[dict]:
  """`make_video_dataset` from an experiment's `config.data` (a ConfigDict or dict).

  Reads `dataset`, `image_size`, `max_instances` and, when present, `data_dir`,
  `max_gap`, `hflip_prob`, `with_flow`, `in_memory`, `shuffle_buffer`; `train_split`
  and `eval_split` are the task's. Any other key is an error (a typo would otherwise be
  ignored silently); `overrides` win.
  """
  keys = set(data_config.keys())
  for key in sorted(keys & set(_UNSUPPORTED_CONFIG_KEYS)):
    raise ValueError(f'config.data.{key}: {_UNSUPPORTED_CONFIG_KEYS[key]}')
  required = ('dataset', 'image_size', 'max_instances')
  unknown = keys - set(required) - set(_OPTIONAL_CONFIG_KEYS) - set(_TASK_CONFIG_KEYS)
  if unknown:
    raise ValueError(f'unknown config.data keys {sorted(unknown)} for the video pipeline; '
                     f'it reads {list(required + _OPTIONAL_CONFIG_KEYS)} (and the task '
                     f'reads {list(_TASK_CONFIG_KEYS)})')
  missing = [key for key in required if key not in keys]
  if missing:
    raise ValueError(f'config.data lacks {missing}, which the video pipeline needs')
  kwargs = {key: data_config[key] for key in _OPTIONAL_CONFIG_KEYS if key in keys}
  kwargs.update(overrides)
  image_size = data_config['image_size']
  if not isinstance(image_size, (int, np.integer)):
    image_size = tuple(image_size)
  return make_video_dataset(
      data_config['dataset'], split, image_size=image_size,
      max_instances=data_config['max_instances'], batch_size=batch_size, training=training,
      seed=seed, start_batch=start_batch, process_index=process_index,
      process_count=process_count, **kwargs)


def clip_frames_as_detection_batch(batch: dict) -> dict:
  """An evaluation batch of clips [B, T, ...] -> a detection-contract batch [B * T, ...].

  Frame t of clip b becomes row b * T + t: `images` is renamed `image`, every per-frame
  field is reshaped, `example_valid` and `clip_id` are repeated per frame and
  `frame_index` [B * T] int32 is added; the consecutive flows (`with_flow`) are left out.
  The result feeds `CocoEvaluator.add` (and the detection models) directly.
  """
  batch = {key: np.asarray(value) for key, value in batch.items()}
  b, t = batch['images'].shape[:2]
  out = {}
  for key, value in batch.items():
    if key in ('flow', 'flow_valid'):
      continue
    if key in ('example_valid', 'clip_id'):
      out[key] = np.repeat(value, t)
    else:
      out['image' if key == 'images' else key] = value.reshape((b * t,) + value.shape[2:])
  out['frame_index'] = np.tile(np.arange(t, dtype=np.int32), b)
  return out
