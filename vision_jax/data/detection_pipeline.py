"""Detection input pipelines: a TFDS split -> numpy batches of the batch contract.

See `vision_jax/data/__init__.py` for the contract. One function serves every
detection dataset with an adapter in `vision_jax.data.sources` (synthetic_shapes, coco/2017,
local COCO-format folders `coco_format`):

  data = make_detection_dataset('synthetic_shapes', 'train', data_dir=None,
                                batch_size=32, image_size=(128, 128), max_instances=8,
                                training=True, seed=0, start_batch=step,
                                hflip_prob=0.5, scale_range=(0.8, 1.25))
  batch = next(data)

Batches are deterministic and resumable, split over processes and padded for
evaluation by the family-agnostic core (`vision_jax.data.streams`): the same seed gives
the same batches, `start_batch=n` continues exactly at batch n, and the last evaluation
batch is padded with examples whose `example_valid` is False (zeros, classes -1,
scale 1). The adapter of each dataset is found by its builder's name
(`vision_jax.data.sources.<name>.detection_source`).
"""
from typing import Iterator, Sequence

import tensorflow as tf

from vision_jax.data import coco_format
from vision_jax.data import datasets
from vision_jax.data import detection_sources
from vision_jax.data import detection_transforms
from vision_jax.data import sources
from vision_jax.data import streams


# The source lookup needs no TensorFlow (prediction uses it): it lives in detection_sources.
get_detection_source = detection_sources.get_detection_source
get_detection_source_from_config = detection_sources.get_detection_source_from_config


def build_detection_dataset(
    dataset: str, split: str, *, data_dir: str | None = None, batch_size: int,
    image_size: Sequence[int], max_instances: int, training: bool, seed: int = 0,
    start_batch: int = 0, with_masks: bool = False, with_semantic: bool = False,
    num_keypoints: int | None = None, hflip_prob: float = 0.0,
    scale_range: Sequence[float] = (1.0, 1.0), min_box_fraction: float = 0.25,
    process_index: int = 0, process_count: int = 1, in_memory: bool | None = None,
    shuffle_buffer: int = 4096, download: bool = False, coco_root: str | None = None,
    coco_annotations: str | None = None, coco_images: str | None = None,
    coco_splits: Sequence[str] | None = None) -> tf.data.Dataset:
  """The batched tf.data pipeline behind `make_detection_dataset` (same arguments)."""
  dataset = coco_format.resolve(dataset, split, coco_root=coco_root,
                                coco_annotations=coco_annotations, coco_images=coco_images,
                                coco_splits=coco_splits)
  source = get_detection_source(dataset, data_dir, download=download)
  if num_keypoints is None:
    num_keypoints = source.num_keypoints
  elif num_keypoints not in (0, source.num_keypoints):
    raise ValueError(f'num_keypoints={num_keypoints}, but {dataset} has '
                     f'{source.num_keypoints} keypoints per instance {source.keypoint_names}')
  if with_masks and not source.has_masks:
    raise ValueError(f'{dataset} has no instance masks: use with_masks=False')
  if with_semantic and source.semantic_names is None:
    raise ValueError(f'{dataset} has no semantic maps: use with_semantic=False')
  image_size = tuple(int(s) for s in image_size)

  def process(example, rng):
    canonical = source.canonical(example, with_masks, with_semantic)
    if with_semantic:
      canonical['semantic'] = _checked_semantic(canonical['semantic'],
                                                len(source.semantic_names), dataset)
    return detection_transforms.preprocess(
        canonical, image_size=image_size, max_instances=max_instances, training=training,
        rng=rng, hflip_prob=hflip_prob, scale_range=tuple(scale_range),
        min_box_fraction=min_box_fraction, keypoint_flip_perm=source.keypoint_flip_perm,
        with_keypoints=num_keypoints > 0)

  return streams.split_batches(
      dataset, split, data_dir, builder=source.builder, decoders=source.decoders,
      process=process, padding=_padding_example, training=training, batch_size=batch_size,
      seed=seed, start_batch=start_batch, process_index=process_index,
      process_count=process_count, in_memory=in_memory, shuffle_buffer=shuffle_buffer)


def _checked_semantic(semantic: tf.Tensor, num_classes: int, dataset: str) -> tf.Tensor:
  """The semantic map, after asserting its ids are -1 (unlabelled) or < num_classes."""
  bad = (semantic < -1) | (semantic >= num_classes)
  check = tf.debugging.Assert(~tf.reduce_any(bad), [
      f'{dataset}: a semantic map holds class ids outside -1..{num_classes - 1} (the '
      f'dataset has {num_classes} semantic classes); ids found:',
      tf.unique(tf.boolean_mask(semantic, bad))[0]], summarize=16)
  with tf.control_dependencies([check]):
    return tf.identity(semantic)


def make_detection_dataset(dataset: str, split: str, **kwargs) -> Iterator[dict]:
  """Numpy batches of the detection batch contract.

  Args:
    dataset: TFDS name ('synthetic_shapes', 'synthetic_shapes/tiny', 'coco/2017').
    split: split or TFDS slice ('train', 'validation', 'train[:1000]').
    **kwargs: keyword arguments of `build_detection_dataset`:
      data_dir: TFDS data_dir (None: TFDS' default).
      batch_size: GLOBAL batch size; each process yields batch_size // process_count.
      image_size: (H, W) input size.
      max_instances: M, instances padded/truncated to it (keep >= the dataset's
        maximum for exact evaluation).
      training: infinite augmented stream (True) or one evaluation pass (False).
      seed: training stream seed.
      start_batch: first global batch of the training stream (resume at step n).
      with_masks: emit `masks` [B, M, H, W] uint8.
      with_semantic: emit `semantic` [B, H, W] int32 (padding -1).
      num_keypoints: None: the dataset's K (no `keypoints` key when K = 0); 0: omit.
      hflip_prob, scale_range: training augmentation (flip probability; scale jitter
        factor range on top of the fit-to-size scale, followed by a random crop).
      min_box_fraction: training drops instances keeping less of their box area
        than this inside the crop.
      process_index, process_count: this process's share of every global batch.
      in_memory, shuffle_buffer: how training records are read (module docstring).
      download: allow TFDS to download catalog data (default: never).
      coco_root, coco_annotations, coco_images, coco_splits: the local folder of
        dataset 'coco_format' (see `coco_format.resolve`), e.g. coco_root='/data/coco'
        with split 'val2017' reads /data/coco/annotations/instances_val2017.json.
  Returns:
    An iterator of dicts of numpy arrays (infinite for training).
  """
  return build_detection_dataset(dataset, split, **kwargs).as_numpy_iterator()


def make_coco_dataset(split: str, *, version: str = '2017', **kwargs) -> Iterator[dict]:
  """`make_detection_dataset` for TFDS `coco/<version>` (80 classes, labels 0..79).

  Class `c` is COCO category `sources.coco.COCO_CATEGORY_IDS[c]`. The data must
  be prepared in data_dir beforehand (`datasets.DatasetNotFoundError` says how).
  """
  return make_detection_dataset(f'coco/{version}', split, **kwargs)


_COCO_FORMAT_KEYS = detection_sources.COCO_FORMAT_KEYS
_OPTIONAL_CONFIG_KEYS = ('hflip_prob', 'scale_range', 'min_box_fraction', 'with_masks',
                        'with_semantic', 'num_keypoints', 'in_memory',
                        'shuffle_buffer') + _COCO_FORMAT_KEYS


def make_detection_dataset_from_config(data_config, *, split: str, batch_size: int,
                                       training: bool, seed: int = 0, start_batch: int = 0,
                                       process_index: int = 0, process_count: int = 1,
                                       **overrides) -> Iterator[dict]:
  """`make_detection_dataset` from an experiment's `config.data` (a ConfigDict or dict).

  Reads `dataset`, `data_dir`, `image_size`, `max_instances` and, when present, the
  keys of `_OPTIONAL_CONFIG_KEYS` (e.g. `hflip_prob`, `scale_range`); `overrides` win.
  """
  kwargs = {key: data_config[key] for key in _OPTIONAL_CONFIG_KEYS if key in data_config}
  kwargs.update(overrides)
  return make_detection_dataset(
      data_config['dataset'], split, data_dir=data_config.get('data_dir'),
      image_size=tuple(data_config['image_size']), max_instances=data_config['max_instances'],
      batch_size=batch_size, training=training, seed=seed, start_batch=start_batch,
      process_index=process_index, process_count=process_count, **kwargs)


def _padding_example(spec: dict) -> dict:
  """An evaluation padding example: zeros, classes -1, scale 1, example_valid False."""
  example = streams.zeros_like_spec(spec)
  example['classes'] = example['classes'] - 1
  example['scale'] = tf.ones([], tf.float32)
  if 'semantic' in example:
    example['semantic'] += detection_transforms.SEMANTIC_PAD
  return example
