"""The labelled-image contract (an image and its class) and its pipeline.

For classifiers, class-conditional generators and the judges that score them. Batches
are numpy dicts of fixed shapes (B the per-process batch):

  image          [B, H, W, C] uint8   the dataset's image (C = its channels), resized to
                                      (H, W) when `image_size` is given (bilinear; the
                                      aspect ratio is not kept).
  label          [B]          int32   0-based class.
  example_valid  [B]          bool    False on the padding of a last evaluation batch
                                      (zeros, label -1).

  data = make_labelled_image_dataset('digits', 'train', batch_size=64, training=True,
                                     seed=0, start_batch=step)

Training streams are infinite, deterministic and resumable, evaluation passes padded
(`vision_jax.data.streams`); `hflip_prob` flips horizontally in training. The adapter
of each dataset is `vision_jax.data.sources.<name>.labelled_image_source`.
"""
import dataclasses
from typing import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import datasets
from vision_jax.data import sources
from vision_jax.data import streams


@dataclasses.dataclass(frozen=True)
class LabelledImageSource:
  """What the labelled-image pipeline needs to know about one dataset.

  Attributes:
    builder: the prepared TFDS builder.
    class_names: index = 0-based label.
    image_shape: (h, w, C) of the stored images.
    decoders: TFDS decoders that leave images encoded.
    canonical: example -> {'image': [h, w, C] uint8, 'label': [] int32}.
  """
  builder: tfds.core.DatasetBuilder
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]
  decoders: dict
  canonical: Callable[[dict], dict]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def get_labelled_image_source(dataset: str, data_dir: str | None = None, *,
                              download: bool = False) -> LabelledImageSource:
  """The prepared dataset's adapter and metadata (class names, image shape)."""
  return sources.find(datasets.get_builder(dataset, data_dir, download=download),
                      'labelled_image')


def build_labelled_image_dataset(
    dataset: str, split: str, *, data_dir: str | None = None, batch_size: int,
    training: bool, image_size: Sequence[int] | None = None, hflip_prob: float = 0.0,
    seed: int = 0, start_batch: int = 0, process_index: int = 0, process_count: int = 1,
    in_memory: bool | None = None, shuffle_buffer: int = 4096,
    download: bool = False) -> tf.data.Dataset:
  """The batched tf.data pipeline behind `make_labelled_image_dataset` (same arguments)."""
  source = get_labelled_image_source(dataset, data_dir, download=download)
  size = tuple(int(s) for s in image_size) if image_size else None

  def process(example, rng):
    canonical = source.canonical(example)
    image = canonical['image']
    if size is not None and tuple(source.image_shape[:2]) != size:
      image = streams.to_uint8(tf.image.resize(image, size, method='bilinear'))
    if training and hflip_prob > 0:
      flip = tf.random.stateless_uniform([], rng) < hflip_prob
      image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
    return {'image': image, 'label': tf.cast(canonical['label'], tf.int32),
            'example_valid': tf.constant(True)}

  def padding(spec):
    example = streams.zeros_like_spec(spec)
    example['label'] -= 1
    return example

  return streams.split_batches(
      dataset, split, data_dir, builder=source.builder, decoders=source.decoders,
      process=process, padding=padding, training=training, batch_size=batch_size, seed=seed,
      start_batch=start_batch, process_index=process_index, process_count=process_count,
      in_memory=in_memory, shuffle_buffer=shuffle_buffer)


def make_labelled_image_dataset(dataset: str, split: str, **kwargs) -> Iterator[dict]:
  """Numpy batches of the labelled-image contract (module docstring).

  Args:
    dataset: TFDS name ('digits').
    split: split or TFDS slice ('train', 'test[:100]').
    **kwargs: of `build_labelled_image_dataset`: data_dir, batch_size (GLOBAL),
      training, image_size, hflip_prob, seed, start_batch, process_index, process_count,
      in_memory, shuffle_buffer, download.
  """
  return build_labelled_image_dataset(dataset, split, **kwargs).as_numpy_iterator()


def load_arrays(dataset: str, split: str, *, data_dir: str | None = None,
                image_size: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """A whole (small) split as numpy arrays: (images [N, H, W, C] uint8, labels [N] int32).

  Evaluation order, no padding: for judges and Fréchet statistics.
  """
  batches = list(make_labelled_image_dataset(dataset, split, data_dir=data_dir,
                                             batch_size=256, training=False,
                                             image_size=image_size))
  keep = np.concatenate([b['example_valid'] for b in batches])
  images = np.concatenate([b['image'] for b in batches])[keep]
  labels = np.concatenate([b['label'] for b in batches])[keep]
  return images, labels
