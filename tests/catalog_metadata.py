"""A data_dir holding a catalog dataset's metadata only, for `tfds.testing.mock_data`.

vision_jax opens catalog datasets only when they are prepared (it never downloads), so
mocked tests need what `tfds build` leaves behind minus the records: the dataset info
with its splits.
"""
import os
from typing import Callable, Sequence

import tensorflow_datasets as tfds


def write_metadata(root: str, name: str, *, num_examples: int,
                   splits: Sequence[str] = ('train', 'validation'),
                   edit: Callable[[tfds.core.DatasetInfo], None] | None = None) -> str:
  """Writes `name`'s dataset info (each split `num_examples` long) under `root`.

  Args:
    root: the data_dir to fill.
    name: TFDS name, with its config ('coco/2017').
    num_examples: the length of every split.
    splits: split names.
    edit: changes the info before it is written (e.g. sets ClassLabel names).

  Returns:
    root.
  """
  builder = tfds.builder(name, data_dir=root)
  if edit is not None:
    edit(builder.info)
  infos = [tfds.core.SplitInfo(
      name=split, shard_lengths=[num_examples], num_bytes=1000,
      filename_template=tfds.core.ShardedFileTemplate(
          data_dir=builder.data_dir, dataset_name=builder.name, split=split,
          filetype_suffix='tfrecord')) for split in splits]
  builder.info.set_splits(tfds.core.SplitDict(infos))
  os.makedirs(builder.data_dir, exist_ok=True)
  builder.info.write_to_directory(builder.data_dir)
  return root
