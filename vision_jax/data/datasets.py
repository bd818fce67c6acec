"""Finding and loading TFDS datasets: procedural builders prepare themselves, others never download.

The one entry point used everywhere is `load_split` (or `get_builder` when only the
builder and its `info` are needed).

  * The project's procedural builders (class attribute `PROCEDURAL = True`, e.g.
    `synthetic_shapes`) are prepared into the data_dir on first use; nothing is
    downloaded, they draw their examples.
  * Catalog datasets (`coco/2017`, ...) must already be prepared in the data_dir. When
    they are not, `DatasetNotFoundError` says which directory was searched and how to
    prepare it; nothing is downloaded unless the caller passes `download=True`.
"""
import difflib
import os
import time
from typing import TYPE_CHECKING

from absl import logging
# TFDS builders and their info need no TensorFlow: it is imported where data is read
# or written (`hide_accelerators_from_tf`), so that prediction never loads it.
import tensorflow_datasets as tfds

if TYPE_CHECKING:
  import tensorflow as tf


def hide_accelerators_from_tf() -> None:
  """Imports TensorFlow and keeps it off the GPUs that JAX uses (TF only runs tf.data
  here). Called before TF first runs: by `streams` (which every pipeline imports), before
  a builder is prepared and before a split is read."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top,redefined-outer-name
  try:
    tf.config.set_visible_devices([], 'GPU')
  except (RuntimeError, ValueError):  # Devices already initialized: nothing to do.
    pass

# The files `tfds build coco/...` looks for in <data_dir>/downloads/manual.
_MANUAL_FILES = {
    'coco/2017': ('train2017.zip', 'val2017.zip', 'test2017.zip',
                  'annotations_trainval2017.zip', 'image_info_test2017.zip'),
    'coco/2014': ('train2014.zip', 'val2014.zip', 'test2014.zip', 'test2015.zip',
                  'annotations_trainval2014.zip', 'image_info_test2014.zip',
                  'image_info_test2015.zip'),
    'coco/2017_panoptic': ('train2017.zip', 'val2017.zip',
                           'panoptic_annotations_trainval2017.zip'),
    'div2k/bicubic_x4': ('DIV2K_train_HR.zip', 'DIV2K_valid_HR.zip',
                         'DIV2K_train_LR_bicubic_X4.zip', 'DIV2K_valid_LR_bicubic_X4.zip'),
}


class DatasetNotFoundError(Exception):
  """A dataset name that is unknown, or a catalog dataset that is not prepared."""


def is_procedural(builder: tfds.core.DatasetBuilder) -> bool:
  """True for builders that draw their data (prepared on first use, no download)."""
  return bool(getattr(type(builder), 'PROCEDURAL', False))


def is_embedded(name: str | None) -> bool:
  """True for a dataset that needs no user files: a procedural builder that draws its
  examples (`synthetic_shapes[/...]`, `digits`, ...), or no dataset at all (None).

  False for catalog names (`coco/2017`, `div2k/...`: prepared data) and for builders
  made from the user's local files at run time (`coco_format`). Prepares nothing.
  """
  if not name:
    return True
  try:
    cls = tfds.builder_cls(name.split('/')[0].split(':')[0])
  except tfds.core.registered.DatasetNotFoundError:
    return False
  return (bool(getattr(cls, 'PROCEDURAL', False))
          and not getattr(cls, 'RUNTIME_CONFIGS', False))


def get_builder(name: str, data_dir: str | None = None, *,
                download: bool = False) -> tfds.core.DatasetBuilder:
  """A prepared TFDS builder.

  Args:
    name: TFDS name with optional config/version, e.g. 'synthetic_shapes',
      'synthetic_shapes/tiny', 'coco/2017'.
    data_dir: TFDS data directory; None for TFDS' default ($TFDS_DATA_DIR or
      ~/tensorflow_datasets).
    download: for catalog datasets, allow `download_and_prepare()` (which may
      download). Off by default: missing data is an error.
  Returns:
    The builder, prepared (`builder.info` holds the split sizes and class names).
  Raises:
    DatasetNotFoundError: unknown name, or catalog data absent from data_dir.
  """
  # Importing this module imported the package `vision_jax.data`, which registered
  # the procedural builders.
  try:
    builder = _make_builder(name, data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DatasetNotFoundError(_unknown_name_message(name)) from e
  except ValueError as e:  # e.g. an unknown config: 'coco/2099'
    if 'not found' not in str(e):
      raise
    raise DatasetNotFoundError(f'dataset {name!r}: {str(e).splitlines()[0]}') from e
  if builder.is_prepared():
    return builder
  if is_procedural(builder):
    builder = _prepare_procedural(builder, name, data_dir)
  elif download:
    builder.download_and_prepare()
  else:
    raise DatasetNotFoundError(_not_prepared_message(name, builder))
  return builder


def load_split(name: str, split: str, data_dir: str | None = None, *,
               download: bool = False, decoders=None, shuffle_files: bool = False,
               read_config: tfds.ReadConfig | None = None,
               ) -> tuple['tf.data.Dataset', tfds.core.DatasetInfo]:
  """A split of a prepared dataset as (tf.data.Dataset of examples, DatasetInfo).

  Args:
    name: see `get_builder`.
    split: a split name or TFDS slice ('train', 'validation', 'train[:10%]').
    data_dir: see `get_builder`.
    download: see `get_builder`.
    decoders: TFDS decoders, e.g. {'image': tfds.decode.SkipDecoding()}.
    shuffle_files: shuffle the order of the split's files.
    read_config: passed to `as_dataset` (shuffle seed, ...).
  Returns:
    The examples in file order (deterministic unless shuffle_files) and the info.
  """
  builder = get_builder(name, data_dir, download=download)
  known = list(builder.info.splits.keys())
  base = split.split('[')[0].split('+')[0]
  if known and base not in known:
    raise DatasetNotFoundError(
        f'dataset {name!r} has no split {split!r}; its splits are {sorted(known)}')
  hide_accelerators_from_tf()
  ds = builder.as_dataset(split=split, decoders=decoders, shuffle_files=shuffle_files,
                          read_config=read_config)
  return ds, builder.info


def _prepare_procedural(builder: tfds.core.DatasetBuilder,
                        name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """Draws the dataset into data_dir; tolerates another process preparing it meanwhile."""
  label = full_name(builder)
  print(f'Preparing {label} (procedural, nothing downloaded) in {builder.data_dir} ...',
        flush=True)
  hide_accelerators_from_tf()
  start = time.time()
  config = tfds.download.DownloadConfig(
      compute_stats=tfds.download.ComputeStatsMode.SKIP)
  try:
    builder.download_and_prepare(download_config=config)
  except Exception:  # pylint: disable=broad-except
    again = _make_builder(name, data_dir)
    if not again.is_prepared():
      raise
    logging.info('%s was prepared by another process meanwhile', label)
    return again
  # Printed, not logged: the launchers show our INFO logs too (it appeared twice), and
  # a notebook shows no INFO logs at all.
  print(f'Prepared {label} in {time.time() - start:.1f} s.', flush=True)
  return builder


def _make_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """tfds.builder, except for builders whose configs are made at run time.

  A builder class with `RUNTIME_CONFIGS = True` (e.g. `coco_format`, one config per local
  folder, registered by its `resolve`) is constructed from the class, so that its config
  object is used rather than one TFDS would read back from the prepared files.
  """
  base, _, config = name.partition('/')
  try:
    cls = tfds.builder_cls(base.split(':')[0])
  except tfds.core.registered.DatasetNotFoundError:
    cls = None
  if cls is not None and getattr(cls, 'RUNTIME_CONFIGS', False):
    if not config:
      raise DatasetNotFoundError(
          f'dataset {name!r} needs a config made at run time: for local COCO-format '
          'folders set data.dataset=coco_format and data.coco_root=DIR')
    return cls(config=config, data_dir=data_dir)
  return tfds.builder(name, data_dir=data_dir)


def full_name(builder: tfds.core.DatasetBuilder) -> str:
  """'name/config' (or 'name' for builders without configs), for messages."""
  config = builder.builder_config
  return f'{builder.name}/{config.name}' if config else builder.name


def _unknown_name_message(name: str) -> str:
  base = name.split('/')[0].split(':')[0]
  close = difflib.get_close_matches(base, tfds.list_builders(with_community_datasets=False),
                                    n=3)
  hint = f' Did you mean {", ".join(close)}?' if close else ''
  return (f'unknown dataset {name!r}: neither a vision_jax builder (synthetic_shapes[/tiny], '
          f'digits, or coco_format with data.coco_root) nor a TFDS catalog name '
          f'(https://www.tensorflow.org/datasets/catalog/overview).{hint}')


def _not_prepared_message(name: str, builder: tfds.core.DatasetBuilder) -> str:
  root = os.fspath(builder.data_dir_root)
  key = full_name(builder)
  manual_dir = os.path.join(root, 'downloads', 'manual')
  files = _MANUAL_FILES.get(key)
  if files:
    place = (f'Place {", ".join(files)} (from the dataset\'s site) in {manual_dir}, then run')
  else:
    place = (f'If it cannot be downloaded from this machine, place the files that '
             f'https://www.tensorflow.org/datasets/catalog/{builder.name} lists in '
             f'{manual_dir}, then run')
  return (f'dataset {name!r} is not prepared in data_dir {root!r} (looked for '
          f'{builder.data_dir}); vision_jax never downloads it by itself. {place}:\n'
          f'  tfds build {key} --data_dir={root}')
