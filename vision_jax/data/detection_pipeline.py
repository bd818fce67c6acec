"""Detection input pipelines: a TFDS split -> numpy batches of the batch contract.

See `vision_jax/data/__init__.py` for the contract. One function serves every
detection dataset with an adapter in `detection_sources` (synthetic_shapes, coco/2017,
local COCO-format folders `coco_format`):

  data = make_detection_dataset('synthetic_shapes', 'train', data_dir=None,
                                batch_size=32, image_size=(128, 128), max_instances=8,
                                training=True, seed=0, start_batch=step,
                                hflip_prob=0.5, scale_range=(0.8, 1.25))
  batch = next(data)

Training stream (training=True): infinite and a pure function of (seed, position).
The global example at position j (batch j // batch_size) is record perm_e(j mod N) of
epoch e = j // N, where perm_e is a seeded permutation of the N records, and it is
augmented with the stateless seed fold_in(seed, j). Hence:
  * the same seed gives the same batches; `start_batch=n` yields exactly batches
    n, n+1, ... of the stream (resume reproduces the uninterrupted run bit-for-bit);
  * process p of P takes rows [p * B/P, (p + 1) * B/P) of every global batch, and
    the union over processes equals the single-process stream.
Records are read two ways:
  * in memory (default when the split is < 1 GiB on disk): the split's records, still
    encoded, are held in memory; the permutation is exact and skipping is O(1);
  * streaming (larger splits, or in_memory=False): TFDS file shuffling and a shuffle
    buffer, both seeded; resuming skips the first start_batch * batch_size records
    before any decoding (cost: reading them).
The two ways give different (each deterministic) streams.

Evaluation (training=False): one pass over the split in file order, no augmentation;
the last batch is padded to the full batch size with examples whose `example_valid`
is False (zeros, classes -1, scale 1), so every batch has the same shapes.
"""
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import coco_format
from vision_jax.data import datasets
from vision_jax.data import detection_sources
from vision_jax.data import detection_transforms

_IN_MEMORY_MAX_BYTES = 1 << 30
# Salts that keep the permutation and augmentation seeds apart.
_PERMUTATION_SALT, _AUGMENT_SALT = 0x5EED01, 0x5EED02


def get_detection_source(dataset: str, data_dir: str | None = None, *,
                         download: bool = False, **coco_options
                         ) -> detection_sources.DetectionSource:
  """The prepared dataset's adapter and metadata (class names, keypoints, ...).

  `coco_options` (coco_root, coco_annotations, coco_images, coco_splits) locate the
  folder of dataset 'coco_format' (see `coco_format.resolve`).
  """
  dataset = coco_format.resolve(dataset, **coco_options)
  return detection_sources.detection_source(
      datasets.get_builder(dataset, data_dir, download=download))


def get_detection_source_from_config(data_config) -> detection_sources.DetectionSource:
  """`get_detection_source` from `config.data` (dataset, data_dir, coco_* keys)."""
  coco_options = {key: data_config[key] for key in _COCO_FORMAT_KEYS if key in data_config}
  return get_detection_source(data_config['dataset'], data_config.get('data_dir'),
                              **coco_options)


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
  if batch_size % process_count:
    raise ValueError(f'batch_size={batch_size} (global) is not divisible by '
                     f'process_count={process_count}')
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} not in [0, {process_count})')
  if start_batch < 0:
    raise ValueError(f'start_batch={start_batch} must be >= 0')
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
  local = batch_size // process_count

  def process(example, rng):
    canonical = source.canonical(example, with_masks, with_semantic)
    return detection_transforms.preprocess(
        canonical, image_size=image_size, max_instances=max_instances, training=training,
        rng=rng, hflip_prob=hflip_prob, scale_range=tuple(scale_range),
        min_box_fraction=min_box_fraction, keypoint_flip_perm=source.keypoint_flip_perm,
        with_keypoints=num_keypoints > 0)

  shard = _Shard(batch_size, local, process_index)
  if training:
    if in_memory is None:
      in_memory = _split_bytes(source.builder, split) <= _IN_MEMORY_MAX_BYTES
    make = _in_memory_examples if in_memory else _streamed_examples
    ds = make(source, dataset, split, data_dir, seed, start_batch, shard, shuffle_buffer)
    ds = ds.map(lambda j, example: process(example, _augment_seed(seed, j)),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(local, drop_remainder=True)
  else:
    ds = _evaluation_examples(source, dataset, split, data_dir, shard, process)
    ds = ds.batch(local, drop_remainder=True)
  ds = ds.prefetch(2)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options)


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

  Class `c` is COCO category `detection_sources.COCO_CATEGORY_IDS[c]`. The data must
  be prepared in data_dir beforehand (`datasets.DatasetNotFoundError` says how).
  """
  return make_detection_dataset(f'coco/{version}', split, **kwargs)


_COCO_FORMAT_KEYS = ('coco_root', 'coco_annotations', 'coco_images', 'coco_splits')
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


class _Shard:
  """Which positions of the global example stream belong to this process."""

  def __init__(self, global_batch: int, local_batch: int, process_index: int):
    self.global_batch, self.local_batch, self.index = global_batch, local_batch, process_index

  def global_position(self, local_position):
    """Local position l of this process -> global example position j."""
    batch, row = local_position // self.local_batch, local_position % self.local_batch
    return batch * self.global_batch + self.index * self.local_batch + row

  def owns(self, j):
    return (j % self.global_batch) // self.local_batch == self.index


def _augment_seed(seed: int, j: tf.Tensor) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(
      tf.constant([seed, _AUGMENT_SALT], tf.int64), j)


def _split_bytes(builder, split: str) -> int:
  try:
    return int(builder.info.splits[split].num_bytes)
  except (KeyError, ValueError, TypeError):
    return 0  # Unknown (e.g. mocked): small.


class _RecordStore:
  """A split's encoded examples held in memory with random access in TF graphs.

  Leaves with a leading unknown dimension (per-object sequences) are stored as
  concatenated values plus row splits; the others are stacked.
  """

  def __init__(self, ds: tf.data.Dataset):
    spec = ds.element_spec
    self._paths = _leaf_paths(spec)
    columns = {path: [] for path in self._paths}
    for example in ds.as_numpy_iterator():
      for path in self._paths:
        columns[path].append(_get(example, path))
    self.size = len(columns[self._paths[0]]) if self._paths else 0
    if not self.size:
      raise ValueError('the split has no examples')
    self._dense, self._ragged = {}, {}
    for path in self._paths:
      values = columns[path]
      if _get(spec, path).shape.rank and _get(spec, path).shape[0] is None:
        lengths = [len(v) for v in values]
        splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._ragged[path] = (tf.constant(_concat(values, _get(spec, path))),
                              tf.constant(splits))
      else:
        self._dense[path] = tf.constant(_stack(values, _get(spec, path)))

  def get(self, index: tf.Tensor) -> dict:
    """The encoded example at `index` (a scalar int64 tensor), as nested dicts."""
    example = {}
    for path, values in self._dense.items():
      _set(example, path, tf.gather(values, index))
    for path, (values, splits) in self._ragged.items():
      _set(example, path, values[splits[index]:splits[index + 1]])
    return example


def _leaf_paths(spec, prefix=()) -> list[tuple[str, ...]]:
  if isinstance(spec, dict):
    return [p for k in sorted(spec) for p in _leaf_paths(spec[k], prefix + (k,))]
  return [prefix]


def _get(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def _set(tree, path, value):
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _stack(values, spec) -> np.ndarray:
  if spec.dtype == tf.string:
    out = np.empty((len(values),) + tuple(np.shape(values[0])), dtype=object)
    for i, v in enumerate(values):
      out[i] = v
    return out
  return np.stack(values).astype(spec.dtype.as_numpy_dtype)


def _concat(values, spec) -> np.ndarray:
  if spec.dtype == tf.string:
    flat = [item for v in values for item in v]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out
  tail = tuple(spec.shape[1:])
  return np.concatenate([np.reshape(v, (-1,) + tail) for v in values]).astype(
      spec.dtype.as_numpy_dtype)


def _in_memory_examples(source, dataset, split, data_dir, seed, start_batch, shard,
                        shuffle_buffer) -> tf.data.Dataset:
  """(j, encoded example) for this process's positions from start_batch on."""
  del shuffle_buffer
  ds, _ = datasets.load_split(dataset, split, data_dir, decoders=source.decoders)
  store = _RecordStore(ds)
  n = store.size

  def record(j):
    epoch, position = j // n, j % n
    perm_seed = tf.random.experimental.stateless_fold_in(
        tf.constant([seed, _PERMUTATION_SALT], tf.int64), epoch)
    index = tf.random.experimental.index_shuffle(position, perm_seed, n - 1)
    return j, store.get(index)

  positions = tf.data.Dataset.counter(start_batch * shard.local_batch)
  return positions.map(shard.global_position).map(record)


def _streamed_examples(source, dataset, split, data_dir, seed, start_batch, shard,
                       shuffle_buffer) -> tf.data.Dataset:
  read_config = tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=True,
                                enable_ordering_guard=False)
  ds, _ = datasets.load_split(dataset, split, data_dir, decoders=source.decoders,
                              shuffle_files=True, read_config=read_config)
  ds = ds.repeat().shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  ds = ds.enumerate().skip(start_batch * shard.global_batch)
  return ds.filter(lambda j, example: shard.owns(j))


def _evaluation_examples(source, dataset, split, data_dir, shard, process):
  """This process's share of one pass, padded to whole global batches."""
  ds, info = datasets.load_split(dataset, split, data_dir, decoders=source.decoders)
  try:
    n = info.splits[split].num_examples
  except (KeyError, ValueError):
    n = 0
  if not n:  # Unknown split sizes (e.g. mocked data): count the encoded records.
    n = int(ds.reduce(np.int64(0), lambda count, _: count + 1))
  ds = ds.enumerate().filter(lambda j, example: shard.owns(j))
  ds = ds.map(lambda j, example: process(example, None), num_parallel_calls=tf.data.AUTOTUNE)
  total = -(-n // shard.global_batch) * shard.global_batch
  num_padding = sum(1 for j in range(n, total) if (j % shard.global_batch) // shard.local_batch
                    == shard.index)
  if num_padding:
    ds = ds.concatenate(tf.data.Dataset.from_tensors(
        _padding_example(ds.element_spec)).repeat(num_padding))
  return ds


def _padding_example(spec: dict) -> dict:
  example = {k: tf.zeros(s.shape, s.dtype) for k, s in spec.items()}
  example['classes'] = example['classes'] - 1
  example['scale'] = tf.ones([], tf.float32)
  if 'semantic' in example:
    example['semantic'] += detection_transforms.SEMANTIC_PAD
  return example
