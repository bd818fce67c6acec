"""The `bundled_photos` TFDS builder over the photos shipped in scikit-image and scikit-learn."""
import socket
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds

from vision_jax.data import bundled_photos
from vision_jax.data import datasets

TRAIN = ('astronaut', 'hubble_deep_field', 'immunohistochemistry', 'motorcycle_left',
         'motorcycle_right', 'retina', 'rocket', 'china')
VALIDATION = ('chelsea', 'coffee', 'flower')


def _no_network(*args, **kwargs):
  raise AssertionError(f'bundled_photos used the network: connect{args}')


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  with mock.patch.object(socket.socket, 'connect', _no_network):
    builder = datasets.get_builder('bundled_photos', data_dir)
    records = {split: [{k: (v.decode() if k == 'name' else v) for k, v in ex.items()}
                       for ex in tfds.as_numpy(builder.as_dataset(split=split))]
               for split in bundled_photos.SPLITS}
  return builder, records


def test_splits_hold_the_documented_photos(prepared):
  builder, records = prepared
  assert builder.info.version == '1.0.0'
  assert builder.info.splits['train'].num_examples == len(TRAIN)
  assert builder.info.splits['validation'].num_examples == len(VALIDATION)
  names = {split: tuple(ex['name'] for ex in records[split]) for split in records}
  assert names == {'train': TRAIN, 'validation': VALIDATION}
  assert names['train'] == bundled_photos.split_names('train')
  assert not set(TRAIN) & set(VALIDATION)
  assert set(TRAIN) | set(VALIDATION) == {p.name for p in bundled_photos.PHOTOS}
  features = builder.info.features
  assert features['image'].shape == (None, None, 3)
  assert set(features) == {'image', 'name', 'height', 'width'}


def test_images_are_rgb_uint8_of_their_documented_sizes(prepared):
  _, records = prepared
  sizes = {p.name: (p.height, p.width) for p in bundled_photos.PHOTOS}
  for ex in records['train'] + records['validation']:
    image = ex['image']
    assert image.dtype == np.uint8 and image.shape == sizes[ex['name']] + (3,)
    assert (ex['height'], ex['width']) == sizes[ex['name']]
    assert image.std() > 10, ex['name']  # A photo, not a blank.
    # Colour: the channels differ (no grey image passed as RGB).
    assert np.abs(image[..., 0].astype(int) - image[..., 2]).mean() > 2, ex['name']
  by_name = {ex['name']: ex['image'] for ex in records['train'] + records['validation']}
  assert by_name['astronaut'].shape == (512, 512, 3)
  assert by_name['retina'].shape == (1411, 1411, 3)
  assert by_name['chelsea'].shape == (300, 451, 3)


def test_pixels_are_the_packages_photos(prepared):
  import skimage.data  # pylint: disable=g-import-not-at-top
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  _, records = prepared
  by_name = {ex['name']: ex['image'] for ex in records['train'] + records['validation']}
  np.testing.assert_array_equal(by_name['astronaut'], skimage.data.astronaut())
  np.testing.assert_array_equal(by_name['coffee'], skimage.data.coffee())
  np.testing.assert_array_equal(by_name['china'], sk_datasets.load_sample_image('china.jpg'))
  np.testing.assert_array_equal(by_name['flower'],
                                sk_datasets.load_sample_image('flower.jpg'))
  # The numpy helper reads the same pixels, in record order.
  for split in bundled_photos.SPLITS:
    arrays = bundled_photos.load_photos(split)
    assert tuple(arrays) == bundled_photos.split_names(split)
    for ex in records[split]:
      np.testing.assert_array_equal(arrays[ex['name']], ex['image'], err_msg=ex['name'])


def test_errors():
  with pytest.raises(ValueError, match="not 'test'"):
    bundled_photos.split_names('test')
  with pytest.raises(ValueError, match="no bundled photo 'lena'"):
    bundled_photos.load_photo('lena')
