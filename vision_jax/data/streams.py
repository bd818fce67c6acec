"""The family-agnostic core under every input pipeline: deterministic example streams.

A pipeline for one batch contract (detection, labelled images, paired images, video
clips, ...) provides two things: how to read its split's encoded records, and a
`process(example, rng)` that turns one record into one fixed-shape example of its
contract. `make_batches` does the rest, identically for every contract:

Training (training=True): an infinite stream that is a pure function of (seed,
position). The global example at position j (batch j // batch_size) is record
perm_e(j mod N) of epoch e = j // N, where perm_e is a seeded permutation of the N
records, processed with the stateless seed `augment_seed(seed, j)`. Hence:
  * the same seed gives the same batches; `start_batch=n` yields exactly batches
    n, n+1, ... of the stream (a resumed run reproduces the uninterrupted one);
  * process p of P takes rows [p * B/P, (p + 1) * B/P) of every global batch, and the
    union over processes equals the one-process stream.
Records are read two ways:
  * in memory (default when the split is < 1 GiB on disk): the split's records, still
    encoded, are held in memory; the permutation is exact and skipping is O(1);
  * streaming (larger splits, or in_memory=False): TFDS file shuffling and a shuffle
    buffer, both seeded; resuming skips the first start_batch * batch_size records
    before any decoding (cost: reading them).
The two ways give different (each deterministic) streams.

Evaluation (training=False): one pass over the split in file order, `process(example,
None)`; the last global batch is padded to full size with the contract's padding
example (its `example_valid` False), so every batch has the same shapes.

Transfer: images travel to the device as uint8 (`to_uint8`), 4x less than float32;
the model side converts and normalises them (`vision_jax.ops.image`).
"""
from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import datasets

datasets.hide_accelerators_from_tf()  # Before any pipeline runs TF.

IN_MEMORY_MAX_BYTES = 1 << 30
# Salts that keep the permutation and augmentation seeds apart.
_PERMUTATION_SALT, _AUGMENT_SALT = 0x5EED01, 0x5EED02

# read(shuffle_files, read_config) -> tf.data.Dataset of encoded records, file order.
Reader = Callable[[bool, tfds.ReadConfig | None], tf.data.Dataset]


class Shard:
  """Which positions of the global example stream belong to this process."""

  def __init__(self, global_batch: int, process_index: int = 0, process_count: int = 1):
    if global_batch % process_count:
      raise ValueError(f'batch_size={global_batch} (global) is not divisible by '
                       f'process_count={process_count}')
    if not 0 <= process_index < process_count:
      raise ValueError(f'process_index={process_index} not in [0, {process_count})')
    self.global_batch = global_batch
    self.local_batch = global_batch // process_count
    self.index = process_index

  def global_position(self, local_position):
    """Local position l of this process -> global example position j."""
    batch, row = local_position // self.local_batch, local_position % self.local_batch
    return batch * self.global_batch + self.index * self.local_batch + row

  def owns(self, j):
    """Whether global position j (an int, or a scalar tensor in a tf.data predicate)
    belongs to this process."""
    block = (j % self.global_batch) // self.local_batch
    return block == self.index if isinstance(j, int) else tf.equal(block, self.index)


def augment_seed(seed: int, j: tf.Tensor) -> tf.Tensor:
  """The [2] int64 stateless seed of global example j's augmentation."""
  return tf.random.experimental.stateless_fold_in(
      tf.constant([seed, _AUGMENT_SALT], tf.int64), j)


def to_uint8(image: tf.Tensor) -> tf.Tensor:
  """A float image in [0, 255] (e.g. after tf.image.resize) -> uint8, rounded."""
  return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def split_bytes(builder: tfds.core.DatasetBuilder, split: str) -> int:
  """A split's size on disk (0 when unknown, e.g. mocked data)."""
  try:
    return int(builder.info.splits[split].num_bytes)
  except (KeyError, ValueError, TypeError):
    return 0


def split_examples(builder: tfds.core.DatasetBuilder, split: str, read: Reader) -> int:
  """A split's number of records (counted when the info does not know it)."""
  try:
    n = builder.info.splits[split].num_examples
  except (KeyError, ValueError):
    n = 0
  if not n:
    n = int(read(False, None).reduce(np.int64(0), lambda count, _: count + 1))
  return n


def split_batches(dataset: str, split: str, data_dir: str | None, *,
                  builder: tfds.core.DatasetBuilder, decoders: dict | None,
                  process: Callable, padding: Callable[[dict], dict] | None = None,
                  **kwargs) -> tf.data.Dataset:
  """`make_batches` over a prepared TFDS split, read with `decoders`.

  Args:
    dataset, split, data_dir: what `datasets.load_split` reads.
    builder: the split's prepared builder (its size on disk and record count).
    decoders: TFDS decoders (e.g. images left encoded).
    process, padding: as in `make_batches`.
    **kwargs: the other `make_batches` arguments (training, batch_size, seed, ...).
  """

  def read(shuffle_files, read_config):
    ds, _ = datasets.load_split(dataset, split, data_dir, decoders=decoders,
                                shuffle_files=shuffle_files, read_config=read_config)
    return ds

  return make_batches(read, process, num_bytes=split_bytes(builder, split),
                      num_examples=lambda: split_examples(builder, split, read),
                      padding=padding, **kwargs)


def make_batches(read: Reader, process: Callable, *, training: bool, batch_size: int,
                 seed: int = 0, start_batch: int = 0, process_index: int = 0,
                 process_count: int = 1, in_memory: bool | None = None,
                 num_bytes: int = 0, num_examples: Callable[[], int] | None = None,
                 shuffle_buffer: int = 4096,
                 padding: Callable[[dict], dict] | None = None) -> tf.data.Dataset:
  """The batched, deterministic tf.data pipeline of one split (module docstring).

  Args:
    read: `read(shuffle_files, read_config)` -> the split's encoded records.
    process: `process(example, rng)` -> one example of the contract; rng is the [2]
      int64 augmentation seed in training and None in evaluation.
    training: infinite augmented stream, or one evaluation pass.
    batch_size: GLOBAL batch size; this process's batches hold batch_size / process_count.
    seed, start_batch: the training stream's seed and first global batch.
    process_index, process_count: this process's share of every global batch.
    in_memory: hold the records in memory (None: when num_bytes < 1 GiB).
    num_bytes: the split's size on disk.
    num_examples: returns the split's record count (evaluation padding).
    shuffle_buffer: for streamed training.
    padding: `padding(element_spec)` -> a padding example of the contract (evaluation).
  Returns:
    A tf.data.Dataset of this process's batches (`as_numpy_iterator()` for numpy).
  """
  if start_batch < 0:
    raise ValueError(f'start_batch={start_batch} must be >= 0')
  shard = Shard(batch_size, process_index, process_count)
  if training:
    if in_memory is None:
      in_memory = num_bytes <= IN_MEMORY_MAX_BYTES
    make = _in_memory_examples if in_memory else _streamed_examples
    ds = make(read, seed, start_batch, shard, shuffle_buffer)
    ds = ds.map(lambda j, example: process(example, augment_seed(seed, j)),
                num_parallel_calls=tf.data.AUTOTUNE)
  else:
    ds = _evaluation_examples(read, num_examples, shard, process, padding)
  ds = ds.batch(shard.local_batch, drop_remainder=True).prefetch(2)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options)


class RecordStore:
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


def _in_memory_examples(read, seed, start_batch, shard, shuffle_buffer) -> tf.data.Dataset:
  """(j, encoded example) for this process's positions from start_batch on."""
  del shuffle_buffer
  store = RecordStore(read(False, None))
  n = store.size

  def record(j):
    epoch, position = j // n, j % n
    perm_seed = tf.random.experimental.stateless_fold_in(
        tf.constant([seed, _PERMUTATION_SALT], tf.int64), epoch)
    index = tf.random.experimental.index_shuffle(position, perm_seed, n - 1)
    return j, store.get(index)

  positions = tf.data.Dataset.counter(start_batch * shard.local_batch)
  return positions.map(shard.global_position).map(record)


def _streamed_examples(read, seed, start_batch, shard, shuffle_buffer) -> tf.data.Dataset:
  read_config = tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=True,
                                enable_ordering_guard=False)
  ds = read(True, read_config)
  ds = ds.repeat().shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  ds = ds.enumerate().skip(start_batch * shard.global_batch)
  return ds.filter(lambda j, example: shard.owns(j))


def _evaluation_examples(read, num_examples, shard, process, padding):
  """This process's share of one pass, padded to whole global batches."""
  ds = read(False, None).enumerate().filter(lambda j, example: shard.owns(j))
  ds = ds.map(lambda j, example: process(example, None), num_parallel_calls=tf.data.AUTOTUNE)
  n = num_examples()
  total = -(-n // shard.global_batch) * shard.global_batch
  num_padding = sum(1 for j in range(n, total) if shard.owns(j))
  if num_padding:
    if padding is None:
      raise ValueError('an evaluation pass that needs padding needs a padding example')
    ds = ds.concatenate(tf.data.Dataset.from_tensors(
        padding(ds.element_spec)).repeat(num_padding))
  return ds


def zeros_like_spec(spec: dict) -> dict:
  """An all-zero example of `spec` with `example_valid` False (the base of padding)."""
  example = {k: tf.zeros(s.shape, s.dtype) for k, s in spec.items()}
  example['example_valid'] = tf.constant(False)
  return example
