"""Style-transfer content crops and super-resolution pairs (`vision_jax.data.photo_pipeline`)."""
import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests import catalog_metadata
from vision_jax.data import bundled_photos
from vision_jax.data import datasets
from vision_jax.data import photo_pipeline as pp

DATASET = 'bundled_photos'
S, P = 64, 32  # content crop, training HR crop (LR 8)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('tfds'))
  datasets.get_builder(DATASET, root)
  return root


@pytest.fixture(scope='module')
def photos():
  return {split: bundled_photos.load_photos(split) for split in bundled_photos.SPLITS}


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _content(data_dir, **kwargs):
  options = dict(data_dir=data_dir, batch_size=4, training=True, crop_size=S, seed=1)
  options.update(kwargs)
  return pp.make_content_dataset(DATASET, 'train', **options)


def _sr(data_dir, **kwargs):
  options = dict(data_dir=data_dir, batch_size=4, training=True, hr_size=P, seed=1)
  options.update(kwargs)
  return pp.make_super_resolution_dataset(DATASET, 'train', **options)


def _bicubic(hr, scale=4):
  """The documented LR: antialiased bicubic, rounded and clipped to uint8."""
  h, w = hr.shape[-3] // scale, hr.shape[-2] // scale
  small = tf.image.resize(tf.cast(hr, tf.float32), (h, w), 'bicubic', antialias=True)
  return np.clip(np.round(small.numpy()), 0, 255).astype(np.uint8)


def _find(patch, images):
  """(name, y, x, flipped) where `patch` is a crop of one of `images`, else None."""
  for name, image in images.items():
    for flipped, view in ((False, patch), (True, patch[:, ::-1])):
      ys, xs = np.nonzero((image == view[0, 0]).all(-1))
      for y, x in zip(ys, xs):
        if np.array_equal(image[y:y + len(view), x:x + view.shape[1]], view):
          return name, y, x, flipped
  return None


def test_content_training_is_fixed_shape_deterministic_and_resumable(data_dir):
  full = _take(_content(data_dir), 3)
  for batch in full:
    assert batch['image'].shape == (4, S, S, 3) and batch['image'].dtype == np.uint8
    assert batch['example_valid'].dtype == np.bool_ and batch['example_valid'].all()
  np.testing.assert_array_equal(next(_content(data_dir))['image'], full[0]['image'])
  other = next(_content(data_dir, seed=2))
  assert not np.array_equal(other['image'], full[0]['image'])
  resumed = next(_content(data_dir, start_batch=2))
  np.testing.assert_array_equal(resumed['image'], full[2]['image'])
  # Two processes' halves of each global batch make the one-process batch.
  halves = [next(_content(data_dir, process_index=i, process_count=2)) for i in (0, 1)]
  np.testing.assert_array_equal(np.concatenate([h['image'] for h in halves]),
                                full[0]['image'])
  # Eight different training photos, random zooms and crops: no two rows alike.
  rows = np.concatenate([b['image'] for b in full])
  assert len({r.tobytes() for r in rows}) == len(rows)


def test_content_evaluation_is_the_centre_crop_of_every_validation_photo(data_dir, photos):
  batches = list(pp.make_content_dataset(DATASET, 'validation', data_dir=data_dir,
                                         batch_size=2, training=False, crop_size=S))
  assert len(batches) == 2
  valid = np.concatenate([b['example_valid'] for b in batches])
  np.testing.assert_array_equal(valid, [True, True, True, False])
  images = np.concatenate([b['image'] for b in batches])
  assert images.shape == (4, S, S, 3) and not images[3].any()
  for image, (name, photo) in zip(images, photos['validation'].items()):
    h, w = photo.shape[:2]
    size = [round(h * S / min(h, w)), round(w * S / min(h, w))]
    resized = tf.image.resize(photo, size, 'bilinear', antialias=True).numpy()
    resized = np.clip(np.round(resized), 0, 255).astype(np.uint8)
    y, x = (size[0] - S) // 2, (size[1] - S) // 2
    np.testing.assert_array_equal(image, resized[y:y + S, x:x + S], err_msg=name)
  arrays = pp.load_content_arrays(DATASET, 'validation', data_dir=data_dir, crop_size=S)
  np.testing.assert_array_equal(arrays['image'], images[:3])


def test_super_resolution_training_crops_real_training_photos(data_dir, photos):
  batches = _take(_sr(data_dir), 2)
  flips, found = [], set()
  for batch in batches:
    assert batch['hr'].shape == (4, P, P, 3) and batch['lr'].shape == (4, P // 4, P // 4, 3)
    assert batch['hr'].dtype == batch['lr'].dtype == np.uint8
    assert batch['example_valid'].all()
    # LR is exactly the bicubic x4 downscale of the HR crop.
    np.testing.assert_array_equal(batch['lr'], _bicubic(batch['hr']))
    for hr in batch['hr']:
      where = _find(hr, photos['train'])
      assert where is not None, 'an HR crop that is not a crop of a training photo'
      found.add(where[0])
      flips.append(where[3])
  assert len(found) > 1 and 0 < sum(flips) < len(flips)
  resumed = next(_sr(data_dir, start_batch=1))
  for key in ('lr', 'hr'):
    np.testing.assert_array_equal(resumed[key], batches[1][key])
    np.testing.assert_array_equal(next(_sr(data_dir))[key], batches[0][key])


def test_super_resolution_evaluation_and_errors(data_dir, photos):
  batches = list(pp.make_super_resolution_dataset(
      DATASET, 'validation', data_dir=data_dir, batch_size=2, training=False, hr_size=64))
  valid = np.concatenate([b['example_valid'] for b in batches])
  np.testing.assert_array_equal(valid, [True, True, True, False])
  hr = np.concatenate([b['hr'] for b in batches])
  lr = np.concatenate([b['lr'] for b in batches])
  assert hr.shape == (4, 64, 64, 3) and lr.shape == (4, 16, 16, 3)
  assert not hr[3].any() and not lr[3].any()
  for i, (name, photo) in enumerate(photos['validation'].items()):
    y, x = (photo.shape[0] - 64) // 2, (photo.shape[1] - 64) // 2
    np.testing.assert_array_equal(hr[i], photo[y:y + 64, x:x + 64], err_msg=name)
  np.testing.assert_array_equal(lr, _bicubic(hr))
  arrays = pp.load_super_resolution_arrays(DATASET, 'validation', data_dir=data_dir,
                                           hr_size=64)
  np.testing.assert_array_equal(arrays['hr'], hr[:3])
  default = next(pp.make_super_resolution_dataset(DATASET, 'validation', data_dir=data_dir,
                                                  batch_size=1, training=False))
  assert default['hr'].shape == (1, 256, 256, 3) and default['lr'].shape == (1, 64, 64, 3)
  with pytest.raises(ValueError, match='divisible by scale=4'):
    pp.make_super_resolution_dataset(DATASET, 'train', data_dir=data_dir, batch_size=2,
                                     training=True, hr_size=30)
  with pytest.raises(tf.errors.InvalidArgumentError, match='smaller than the 320 x 320'):
    next(pp.make_super_resolution_dataset(DATASET, 'validation', data_dir=data_dir,
                                          batch_size=1, training=False, hr_size=320))


def _png(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG')
  return buffer.getvalue()


# Mocked DIV2K pairs whose LR is the HR sampled every 4th pixel: the LR pixel (y, x) IS
# the HR pixel (4y, 4x), so crops are aligned iff lr == hr[::4, ::4].
_DIV2K_HR = [np.random.default_rng(i).integers(0, 256, (48 + 4 * i, 64, 3), np.uint8)
             for i in range(3)]


def _div2k_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
  del self, split, decoders, read_config, shuffle_files
  return tf.data.Dataset.from_tensor_slices({
      'hr': [_png(hr) for hr in _DIV2K_HR], 'lr': [_png(hr[::4, ::4]) for hr in _DIV2K_HR]})


def test_div2k_pairs_stay_aligned_under_mock_data(tmp_path):
  name = 'div2k/bicubic_x4'
  root = catalog_metadata.write_metadata(str(tmp_path), name, num_examples=3)
  with tfds.testing.mock_data(as_dataset_fn=_div2k_as_dataset, data_dir=root):
    source = pp.get_super_resolution_source(name, root)
    train = _take(pp.make_super_resolution_dataset(
        name, 'train', data_dir=root, batch_size=4, training=True, hr_size=16), 3)
    test = list(pp.make_super_resolution_dataset(
        name, 'validation', data_dir=root, batch_size=2, training=False, hr_size=16))
    content = next(pp.make_content_dataset(name, 'train', data_dir=root, batch_size=2,
                                           training=True, crop_size=24))
    with pytest.raises(ValueError, match='stores x4 LR images, not scale=2'):
      pp.make_super_resolution_dataset(name, 'train', data_dir=root, batch_size=2,
                                       training=True, scale=2)
  assert isinstance(source, pp.SuperResolutionSource) and source.scale == 4
  flips = []
  for batch in train:
    assert batch['hr'].shape == (4, 16, 16, 3) and batch['lr'].shape == (4, 4, 4, 3)
    for lr, hr in zip(batch['lr'], batch['hr']):
      # A flipped HR crop's every 4th column starts at its column 3.
      plain, flipped = np.array_equal(lr, hr[::4, ::4]), np.array_equal(lr, hr[::4, 3::4])
      assert plain or flipped
      flips.append(flipped)
      assert _find(hr, {i: x for i, x in enumerate(_DIV2K_HR)}) is not None
  assert 0 < sum(flips) < len(flips)
  np.testing.assert_array_equal(np.concatenate([b['example_valid'] for b in test]),
                                [True, True, True, False])
  # Centre crops: LR (12 + i) x 16, its 4 x 4 crop at LR ((8 + i) // 2, 6).
  for i in range(3):
    hr = test[i // 2]['hr'][i % 2]
    y = 4 * ((12 + i - 4) // 2)
    np.testing.assert_array_equal(hr, _DIV2K_HR[i][y:y + 16, 24:40])
    np.testing.assert_array_equal(test[i // 2]['lr'][i % 2], hr[::4, ::4])
  assert content['image'].shape == (2, 24, 24, 3)


def test_coco_content_under_mock_data(tmp_path):
  name = 'coco/2017'
  root = catalog_metadata.write_metadata(str(tmp_path), name, num_examples=3)
  with tfds.testing.mock_data(num_examples=3, data_dir=root):
    source = pp.get_photo_source(name, root)
    train = _take(pp.make_content_dataset(name, 'train', data_dir=root, batch_size=2,
                                          training=True, crop_size=S), 2)
    test = list(pp.make_content_dataset(name, 'validation', data_dir=root, batch_size=2,
                                        training=False, crop_size=S))
  assert isinstance(source.decoders, tfds.decode.PartialDecoding)  # reads the image only
  for batch in train + test:
    assert batch['image'].shape == (2, S, S, 3) and batch['image'].dtype == np.uint8
  assert all(b['example_valid'].all() for b in train)
  np.testing.assert_array_equal(np.concatenate([b['example_valid'] for b in test]),
                                [True, True, True, False])
  assert test[0]['image'].std() > 10  # The mocked (random) pixels came through.


@pytest.mark.parametrize('name, files', [
    ('coco/2017', 'train2017.zip'),
    ('div2k/bicubic_x4', 'DIV2K_train_HR.zip, DIV2K_valid_HR.zip, '
                         'DIV2K_train_LR_bicubic_X4.zip')])
def test_unprepared_catalog_data_is_a_clear_error(tmp_path, name, files):
  for get in (pp.get_photo_source, pp.get_super_resolution_source):
    with pytest.raises(datasets.DatasetNotFoundError) as error:
      get(name, str(tmp_path))
    message = str(error.value)
    assert f'not prepared in data_dir {str(tmp_path)!r}' in message
    assert files in message and f'tfds build {name} --data_dir={tmp_path}' in message
