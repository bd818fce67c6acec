"""The `digits` TFDS builder over scikit-learn's bundled 8x8 handwritten digits."""
import hashlib
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from vision_jax.data import datasets
from vision_jax.data import digits

TRAIN_PER_CLASS = [142, 145, 142, 146, 145, 146, 145, 143, 139, 144]
TEST_PER_CLASS = [36, 37, 35, 37, 36, 36, 36, 36, 35, 36]
# sha256 of the test split's int64 indices: a change of the split rule must bump VERSION.
PINNED_TEST_HASH = '3db0b52c371812d6'


def _read(builder, split):
  ds = builder.as_dataset(split=split)
  return {k: np.stack([ex[k] for ex in tfds.as_numpy(ds)]) for k in builder.info.features}


def _record_hashes(data_dir):
  """{relative path: sha256} of the TFRecord shards under data_dir."""
  out = {}
  for root, _, files in os.walk(data_dir):
    for name in files:
      if '.tfrecord' in name:
        path = os.path.join(root, name)
        with open(path, 'rb') as f:
          out[os.path.relpath(path, data_dir)] = hashlib.sha256(f.read()).hexdigest()
  return out


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  builder = datasets.get_builder('digits', data_dir)
  return data_dir, builder, {split: _read(builder, split) for split in digits.SPLITS}


def test_builder_sizes_features_and_class_names(prepared):
  _, builder, _ = prepared
  info = builder.info
  assert info.splits['train'].num_examples == 1437
  assert info.splits['test'].num_examples == 360
  assert info.features['label'].names == [str(d) for d in range(10)]
  assert info.features['image'].shape == (32, 32, 1)
  assert info.features['image_8x8'].shape == (8, 8, 1)
  assert info.supervised_keys == ('image', 'label')


def test_splits_are_stratified_disjoint_and_cover_all_scans(prepared):
  _, _, data = prepared
  train, test = data['train'], data['test']
  np.testing.assert_array_equal(np.bincount(train['label'], minlength=10), TRAIN_PER_CLASS)
  np.testing.assert_array_equal(np.bincount(test['label'], minlength=10), TEST_PER_CLASS)
  assert not set(train['index']) & set(test['index'])
  np.testing.assert_array_equal(np.sort(np.concatenate([train['index'], test['index']])),
                                np.arange(digits.NUM_SCANS))
  for split in (train, test):  # stored in increasing index order
    assert np.all(np.diff(split['index']) > 0)


def test_records_match_sklearn_scans(prepared):
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  sk = sk_datasets.load_digits()
  _, _, data = prepared
  for split in data.values():
    assert split['image'].dtype == np.uint8 and split['image'].shape[1:] == (32, 32, 1)
    assert split['image_8x8'].dtype == np.uint8 and split['image_8x8'].shape[1:] == (8, 8, 1)
    assert split['index'].dtype == np.int64
    np.testing.assert_array_equal(split['label'], sk.target[split['index']])
    # 0..16 -> 0..255 exactly (up to rounding).
    np.testing.assert_allclose(split['image_8x8'][..., 0],
                               sk.images[split['index']] * 255 / 16, atol=0.5)
    assert split['image'].min() == 0 and split['image'].max() == 255
    assert split['image_8x8'].min() == 0 and split['image_8x8'].max() == 255
    # The 32x32 image is the scan upsampled: PIL bicubic, and its 4x4 block means come
    # back close to the scan (much closer than to another scan).
    for i in (0, 7, len(split['index']) - 1):
      want = Image.fromarray(split['image_8x8'][i, :, :, 0]).resize((32, 32),
                                                                    Image.Resampling.BICUBIC)
      np.testing.assert_array_equal(split['image'][i, :, :, 0], np.asarray(want))
    blocks = split['image'][..., 0].astype(np.float64).reshape(-1, 8, 4, 8, 4).mean((2, 4))
    scans = split['image_8x8'][..., 0].astype(np.float64)
    err = np.abs(blocks - scans).mean()
    other = np.abs(blocks - np.roll(scans, 1, axis=0)).mean()
    assert err < 15 and other > 3 * err, (err, other)


def test_numpy_helper_gives_the_builder_records(prepared):
  _, _, data = prepared
  for split in digits.SPLITS:
    arrays = digits.load_split_arrays(split)
    for key, value in arrays.items():
      np.testing.assert_array_equal(value, data[split][key], err_msg=key)


def test_split_is_fixed(prepared):
  test_index = digits.split_indices(digits.load_scans()[1], 'test')
  _, _, data = prepared
  np.testing.assert_array_equal(test_index, data['test']['index'])
  assert hashlib.sha256(test_index.tobytes()).hexdigest()[:16] == PINNED_TEST_HASH


def test_prepare_is_deterministic(prepared, tmp_path):
  data_dir, _, data = prepared
  again = datasets.get_builder('digits', str(tmp_path))
  for split in digits.SPLITS:
    other = _read(again, split)
    for key in data[split]:
      np.testing.assert_array_equal(other[key], data[split][key], err_msg=key)
  first, second = _record_hashes(data_dir), _record_hashes(str(tmp_path))
  assert first and first == second


def test_unknown_split_is_an_error():
  with pytest.raises(ValueError, match="'validation'"):
    digits.split_indices(np.zeros(10, np.int64), 'validation')

