"""Dataset lookup: procedural builders prepare themselves, catalog data is never downloaded."""
import os

import pytest
import tensorflow_datasets as tfds

from vision_jax.data import datasets


def test_procedural_dataset_is_prepared_on_first_use(tmp_path, capsys):
  ds, info = datasets.load_split('synthetic_shapes/tiny', 'validation', str(tmp_path))
  assert 'Preparing synthetic_shapes/tiny' in capsys.readouterr().out
  assert info.splits['validation'].num_examples == 16
  assert len(list(ds)) == 16
  assert os.path.isdir(os.path.join(str(tmp_path), 'synthetic_shapes', 'tiny'))
  # Second use: already prepared, nothing printed.
  builder = datasets.get_builder('synthetic_shapes/tiny', str(tmp_path))
  assert builder.is_prepared() and 'Preparing' not in capsys.readouterr().out


def test_unknown_dataset_name(tmp_path):
  with pytest.raises(datasets.DatasetNotFoundError, match="unknown dataset 'synthetic_shape'"):
    datasets.get_builder('synthetic_shape', str(tmp_path))
  with pytest.raises(datasets.DatasetNotFoundError, match='coco/2099'):
    datasets.get_builder('coco/2099', str(tmp_path))


def test_unknown_split(tmp_path):
  with pytest.raises(datasets.DatasetNotFoundError, match="no split 'test'"):
    datasets.load_split('synthetic_shapes/tiny', 'test', str(tmp_path))


def test_catalog_dataset_absent_is_an_error_naming_data_dir(tmp_path):
  with pytest.raises(datasets.DatasetNotFoundError) as info:
    datasets.load_split('mnist', 'train', str(tmp_path))
  message = str(info.value)
  assert f'not prepared in data_dir {str(tmp_path)!r}' in message
  assert f'tfds build mnist --data_dir={tmp_path}' in message
  assert os.path.join(str(tmp_path), 'downloads', 'manual') in message
  assert not tfds.builder('mnist', data_dir=str(tmp_path)).is_prepared()
  assert not os.path.exists(os.path.join(str(tmp_path), 'downloads', 'mnist'))
