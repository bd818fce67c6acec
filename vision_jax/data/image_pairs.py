"""The paired- and unpaired-image contracts (image-to-image translation) and their pipelines.

Batches are numpy dicts of fixed shapes; B is the per-process batch, S the configured
`image_size` (the stored size when None). Images are RGB uint8; the models convert and
normalise them on device (`vision_jax.ops.image`).

Paired (pix2pix: a condition and its aligned target), `make_paired_image_dataset`:

  input          [B, S, S, 3] uint8   the condition. synthetic_shapes: the semantic label
                                      map coloured with `synthetic_shapes.LABEL_PALETTE`
                                      (one fixed colour per class of SEMANTIC_NAMES).
  target         [B, S, S, 3] uint8   the aligned image to produce. synthetic_shapes: the
                                      scene in style A (`image`).
  semantic       [B, S, S]    uint8   per-pixel semantic class (datasets that have it):
                                      ids of the source's `semantic_names`; 255 on padding.
  example_valid  [B]          bool    False on the padding of a last evaluation batch
                                      (all zeros, semantic 255).

Unpaired (CycleGAN: images of two domains a and b), `make_unpaired_image_dataset`:

  a              [B, S, S, 3] uint8   a domain-a image (synthetic_shapes/styles*: style A;
                                      cycle_gan/horse2zebra: a horse photo).
  b              [B, S, S, 3] uint8   a domain-b image (style B; a zebra photo).
  a_valid        [B]          bool    `a` is a real image (False on evaluation padding).
  b_valid        [B]          bool    `b` is a real image.
  example_valid  [B]          bool    a_valid | b_valid.
  semantic       [B, S, S]    uint8   evaluation of datasets whose records hold both
                                      renderings of one scene only (synthetic_shapes
                                      styles): the scene's semantic map; 255 on padding.

  Training (infinite): `a` and `b` are drawn INDEPENDENTLY: two streams over disjoint
  record sets with different seeds (a: `seed`, b: `seed + 2**32`), each with its own
  flips, so a row's a and b are unrelated. synthetic_shapes/styles*: domain a reads
  style A of the scenes with EVEN `image/id`, domain b style B of the scenes with ODD
  `image/id` of the same split (1500 + 1500 of `styles`' 3000 train scenes); no scene
  is seen in both domains. cycle_gan: split 'train' reads trainA and trainB.
  Evaluation (one pass): synthetic_shapes styles keep the pairs (a and b are the same
  scene, with its semantic map; split 'validation'); cycle_gan (split 'test') zips testA
  with testB, the shorter padded to the longer's batches (a_valid / b_valid say which
  rows are real).

  data = make_unpaired_image_dataset('synthetic_shapes/styles', 'train', batch_size=16,
                                     training=True, hflip_prob=0.5, seed=0,
                                     start_batch=step)

Both contracts: training streams are infinite, deterministic and resumable from
`start_batch`, sharded over processes; evaluation passes are padded to whole batches
(`vision_jax.data.streams`). `hflip_prob` flips horizontally in training: in the paired
contract one decision flips input, target and semantic together (they stay aligned).
Resizing: images bilinear with antialiasing, label maps (and the coloured label input)
nearest, so every input pixel keeps an exact palette colour; the aspect ratio is not
kept. `load_paired_arrays` / `load_unpaired_arrays` return a whole (small) evaluation
split at once, in order, without padding.

Datasets find their adapters by name (`vision_jax.data.sources.<name>`), contracts
'paired_image' (`paired_image_source(builder)` -> PairedImageSource) and
'unpaired_image' (`unpaired_image_source(builder)` -> UnpairedImageSource):
  synthetic_shapes   paired: every config; unpaired: the configs with style B
                     (`styles`, `styles_tiny`).
  cycle_gan/*        unpaired only (trainA/trainB/testA/testB): horse2zebra, facades, ...
                     (see `vision_jax.data.sources.cycle_gan` for what facades allows).
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

PAIRED, UNPAIRED = 'paired_image', 'unpaired_image'
DOMAINS = ('a', 'b')
# The semantic id of padding pixels (uint8 has no -1).
SEMANTIC_PADDING = 255
# Domain b's streams use seed + this: a different shuffle and different flips.
_DOMAIN_B_SEED_OFFSET = 1 << 32

# record -> per-example tensors of the contract.
Canonical = Callable[[dict], dict]


@dataclasses.dataclass(frozen=True)
class PairedImageSource:
  """What the paired-image pipeline needs to know about one dataset.

  Attributes:
    builder: the prepared TFDS builder.
    image_shape: (h, w, 3) of the stored images, None when their sizes vary.
    decoders: TFDS decoders (images left encoded).
    canonical: record -> {'input': [h, w, 3] uint8, 'target': [h, w, 3] uint8, and
      'semantic': [h, w] uint8 when `semantic_names`}.
    input_is_label_map: the input is a coloured label map (resized nearest).
    semantic_names: class names of `semantic` ids, None when there is none.
    label_palette: [num_classes, 3] uint8 colours of the input's label map, or None.
  """
  builder: tfds.core.DatasetBuilder
  image_shape: tuple[int, int, int] | None
  decoders: dict | tfds.decode.PartialDecoding
  canonical: Canonical
  input_is_label_map: bool = False
  semantic_names: tuple[str, ...] | None = None
  label_palette: np.ndarray | None = None

  @property
  def num_semantic_classes(self) -> int:
    """Classes of `semantic` (0 when the dataset has no semantic maps)."""
    return len(self.semantic_names or ())


@dataclasses.dataclass(frozen=True)
class UnpairedImageSource:
  """What the unpaired-image pipeline needs to know about one dataset.

  Attributes:
    builder: the prepared TFDS builder.
    domain_names: what domains a and b hold, e.g. ('style_a', 'style_b'),
      ('horse', 'zebra').
    image_shape: (h, w, 3) of the stored images, None when their sizes vary.
    decoders: TFDS decoders (images left encoded).
    domain_records: (split, domain 'a' | 'b') -> (TFDS split, keep) where keep is a
      record predicate (tf bool scalar) or None: the records of one domain.
    canonical: (record, domain) -> [h, w, 3] uint8, the record's domain image.
    scene_pairs: record -> {'a', 'b', ['semantic' [h, w] uint8]}, when a record holds
      both domains of one scene (evaluation keeps the pairs); None when the domains
      are separate records.
    semantic_names: class names of `semantic` ids, None when there is none.
  """
  builder: tfds.core.DatasetBuilder
  domain_names: tuple[str, str]
  image_shape: tuple[int, int, int] | None
  decoders: dict | tfds.decode.PartialDecoding
  domain_records: Callable[[str, str], tuple[str, Callable | None]]
  canonical: Callable[[dict, str], tf.Tensor]
  scene_pairs: Canonical | None = None
  semantic_names: tuple[str, ...] | None = None

  @property
  def num_semantic_classes(self) -> int:
    """Classes of the evaluation's `semantic` (0 when there is none)."""
    return len(self.semantic_names or ())


def get_paired_image_source(dataset: str, data_dir: str | None = None, *,
                            download: bool = False) -> PairedImageSource:
  """The prepared dataset's paired-image adapter (ValueError when it has none)."""
  return sources.find(datasets.get_builder(dataset, data_dir, download=download), PAIRED)


def get_unpaired_image_source(dataset: str, data_dir: str | None = None, *,
                              download: bool = False) -> UnpairedImageSource:
  """The prepared dataset's unpaired-image adapter (ValueError when it has none)."""
  return sources.find(datasets.get_builder(dataset, data_dir, download=download), UNPAIRED)


def colour_labels(labels: tf.Tensor, palette: np.ndarray) -> tf.Tensor:
  """Label ids [...] (any int type) -> [..., 3] uint8 colours `palette[labels]`."""
  return tf.gather(tf.constant(palette, tf.uint8), tf.cast(labels, tf.int32))


def _target_size(image_size: Sequence[int] | None, image_shape, dataset: str):
  """(H, W) to resize to, or None to keep the stored (fixed) size."""
  if image_size is not None:
    return tuple(int(s) for s in image_size)
  if image_shape is None:
    raise ValueError(f'{dataset} stores images of varying sizes: pass image_size (H, W)')
  return None


def resize_image(image: tf.Tensor, size, stored_shape) -> tf.Tensor:
  """[h, w, 3] uint8 -> [H, W, 3] uint8 (bilinear, antialiased); size None keeps it."""
  if size is None:
    return tf.ensure_shape(image, stored_shape)
  if stored_shape is not None and tuple(stored_shape[:2]) == size:
    return tf.ensure_shape(image, stored_shape)
  return streams.to_uint8(tf.image.resize(image, size, method='bilinear', antialias=True))


def resize_labels(labels: tf.Tensor, size, stored_shape) -> tf.Tensor:
  """[h, w] or [h, w, C] label ids or colours -> size (nearest); size None keeps them."""
  if size is None or (stored_shape is not None and tuple(stored_shape[:2]) == size):
    return tf.ensure_shape(labels, list(stored_shape[:2]) + list(labels.shape[2:]))
  if labels.shape.rank == 2:
    return tf.image.resize(labels[..., None], size, method='nearest')[..., 0]
  return tf.image.resize(labels, size, method='nearest')


def _flip(tensors: dict, rng, hflip_prob: float) -> dict:
  """One horizontal-flip decision for every [H, W, ...] tensor of `tensors`."""
  if rng is None or hflip_prob <= 0:
    return tensors
  flip = tf.random.stateless_uniform([], rng) < hflip_prob
  return {k: tf.cond(flip, lambda v=v: v[:, ::-1], lambda v=v: v) for k, v in tensors.items()}


def _padding(spec: dict) -> dict:
  example = streams.zeros_like_spec(spec)
  if 'semantic' in example:
    example['semantic'] += SEMANTIC_PADDING
  return example


def build_paired_image_dataset(
    dataset: str, split: str, *, data_dir: str | None = None, batch_size: int,
    training: bool, image_size: Sequence[int] | None = None, hflip_prob: float = 0.0,
    seed: int = 0, start_batch: int = 0, process_index: int = 0, process_count: int = 1,
    in_memory: bool | None = None, shuffle_buffer: int = 4096,
    download: bool = False) -> tf.data.Dataset:
  """The batched tf.data pipeline behind `make_paired_image_dataset` (same arguments)."""
  source = get_paired_image_source(dataset, data_dir, download=download)
  size = _target_size(image_size, source.image_shape, dataset)
  shape = source.image_shape

  def process(example, rng):
    canonical = source.canonical(example)
    resize_input = resize_labels if source.input_is_label_map else resize_image
    out = {'input': resize_input(canonical['input'], size, shape),
           'target': resize_image(canonical['target'], size, shape)}
    if 'semantic' in canonical:
      out['semantic'] = tf.cast(resize_labels(canonical['semantic'], size, shape), tf.uint8)
    if training:
      out = _flip(out, rng, hflip_prob)
    out['example_valid'] = tf.constant(True)
    return out

  return streams.split_batches(
      dataset, split, data_dir, builder=source.builder, decoders=source.decoders,
      process=process, padding=_padding, training=training, batch_size=batch_size,
      seed=seed, start_batch=start_batch, process_index=process_index,
      process_count=process_count, in_memory=in_memory, shuffle_buffer=shuffle_buffer)


def make_paired_image_dataset(dataset: str, split: str, **kwargs) -> Iterator[dict]:
  """Numpy batches of the paired-image contract (module docstring).

  Args:
    dataset: TFDS name ('synthetic_shapes/styles').
    split: split or TFDS slice ('train', 'validation[:100]').
    **kwargs: of `build_paired_image_dataset`: data_dir, batch_size (GLOBAL), training,
      image_size, hflip_prob, seed, start_batch, process_index, process_count, in_memory,
      shuffle_buffer, download.
  """
  return build_paired_image_dataset(dataset, split, **kwargs).as_numpy_iterator()


def build_unpaired_image_dataset(
    dataset: str, split: str, *, data_dir: str | None = None, batch_size: int,
    training: bool, image_size: Sequence[int] | None = None, hflip_prob: float = 0.0,
    seed: int = 0, start_batch: int = 0, process_index: int = 0, process_count: int = 1,
    in_memory: bool | None = None, shuffle_buffer: int = 4096,
    download: bool = False) -> tf.data.Dataset:
  """The batched tf.data pipeline behind `make_unpaired_image_dataset` (same arguments)."""
  source = get_unpaired_image_source(dataset, data_dir, download=download)
  size = _target_size(image_size, source.image_shape, dataset)
  shape = source.image_shape
  common = dict(batch_size=batch_size, process_index=process_index,
                process_count=process_count, in_memory=in_memory,
                shuffle_buffer=shuffle_buffer)

  if not training and source.scene_pairs is not None:
    def process_pair(example, rng):
      del rng
      pair = source.scene_pairs(example)
      out = {d: resize_image(pair[d], size, shape) for d in DOMAINS}
      if 'semantic' in pair:
        out['semantic'] = tf.cast(resize_labels(pair['semantic'], size, shape), tf.uint8)
      return {**out, 'a_valid': tf.constant(True), 'b_valid': tf.constant(True),
              'example_valid': tf.constant(True)}

    def padding(spec):
      example = _padding(spec)
      example['a_valid'] = example['b_valid'] = tf.constant(False)
      return example

    return streams.split_batches(
        dataset, split, data_dir, builder=source.builder, decoders=source.decoders,
        process=process_pair, padding=padding, training=False, **common)

  per_domain = {}
  for domain in DOMAINS:
    tfds_split, keep = source.domain_records(split, domain)

    def read(shuffle_files, read_config, tfds_split=tfds_split, keep=keep):
      ds, _ = datasets.load_split(dataset, tfds_split, data_dir, decoders=source.decoders,
                                  shuffle_files=shuffle_files, read_config=read_config)
      return ds if keep is None else ds.filter(keep)

    def process(example, rng, domain=domain):
      image = resize_image(source.canonical(example, domain), size, shape)
      if training:
        image = _flip({'image': image}, rng, hflip_prob)['image']
      return {'image': image, 'example_valid': tf.constant(True)}

    def num_examples(tfds_split=tfds_split, read=read, keep=keep):
      if keep is None:
        return streams.split_examples(source.builder, tfds_split, read)
      return int(read(False, None).reduce(np.int64(0), lambda count, _: count + 1))

    per_domain[domain] = (streams.make_batches(
        read, process, training=training,
        seed=seed + (_DOMAIN_B_SEED_OFFSET if domain == 'b' else 0),
        start_batch=start_batch, num_bytes=streams.split_bytes(source.builder, tfds_split),
        num_examples=num_examples, padding=streams.zeros_like_spec, **common), num_examples)

  if not training:  # Equal numbers of batches: pad the shorter pass with padding batches.
    counts = {d: -(-per_domain[d][1]() // batch_size) for d in DOMAINS}
    for d in DOMAINS:
      ds = per_domain[d][0]
      extra = max(counts.values()) - counts[d]
      if extra:
        pad = {k: tf.zeros(s.shape, s.dtype) for k, s in ds.element_spec.items()}
        ds = ds.concatenate(tf.data.Dataset.from_tensors(pad).repeat(extra))
      per_domain[d] = (ds, None)

  def join(a, b):
    return {'a': a['image'], 'b': b['image'], 'a_valid': a['example_valid'],
            'b_valid': b['example_valid'],
            'example_valid': tf.logical_or(a['example_valid'], b['example_valid'])}

  ds = tf.data.Dataset.zip((per_domain['a'][0], per_domain['b'][0])).map(join)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options)


def make_unpaired_image_dataset(dataset: str, split: str, **kwargs) -> Iterator[dict]:
  """Numpy batches of the unpaired-image contract (module docstring).

  Args:
    dataset: TFDS name ('synthetic_shapes/styles', 'cycle_gan/horse2zebra').
    split: synthetic_shapes 'train' / 'validation'; cycle_gan 'train' (trainA + trainB)
      / 'test' (testA + testB); TFDS slices allowed ('validation[:64]').
    **kwargs: of `build_unpaired_image_dataset`: data_dir, batch_size (GLOBAL),
      training, image_size, hflip_prob, seed, start_batch, process_index, process_count,
      in_memory, shuffle_buffer, download.
  """
  return build_unpaired_image_dataset(dataset, split, **kwargs).as_numpy_iterator()


def _concatenate(batches: list[dict], keys, valid_key: str) -> dict:
  if not batches:
    return {}
  keep = np.concatenate([b[valid_key] for b in batches])
  return {k: np.concatenate([b[k] for b in batches])[keep] for k in keys}


def load_paired_arrays(dataset: str, split: str, *, data_dir: str | None = None,
                       image_size: Sequence[int] | None = None) -> dict[str, np.ndarray]:
  """A whole (small) split of the paired contract as numpy arrays, in order, no padding.

  Returns:
    {'input': [N, S, S, 3] uint8, 'target': [N, S, S, 3] uint8, and 'semantic':
     [N, S, S] uint8 for datasets that have it}.
  """
  batches = list(make_paired_image_dataset(dataset, split, data_dir=data_dir,
                                           batch_size=256, training=False,
                                           image_size=image_size))
  keys = [k for k in batches[0] if k != 'example_valid']
  return _concatenate(batches, keys, 'example_valid')


def load_unpaired_arrays(dataset: str, split: str, *, data_dir: str | None = None,
                         image_size: Sequence[int] | None = None) -> dict[str, np.ndarray]:
  """A whole (small) evaluation split of the unpaired contract as numpy arrays, in order.

  Returns:
    {'a': [Na, S, S, 3] uint8, 'b': [Nb, S, S, 3] uint8}; for datasets that keep the
    pairs (synthetic_shapes styles) Na = Nb, row i of a and b is the same scene and
    'semantic' [N, S, S] uint8 is its semantic map.
  """
  batches = list(make_unpaired_image_dataset(dataset, split, data_dir=data_dir,
                                             batch_size=256, training=False,
                                             image_size=image_size))
  out = _concatenate(batches, ['a'], 'a_valid')
  out.update(_concatenate(batches, ['b'], 'b_valid'))
  if 'semantic' in batches[0]:
    out.update(_concatenate(batches, ['semantic'], 'example_valid'))
  return out
