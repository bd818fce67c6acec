"""The landmark contract: crops, augmentation geometry, flips, catalog adapters, errors."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests import catalog_metadata
from vision_jax.data import landmark_pipeline as lp
from vision_jax.data import synthetic_faces


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('faces'))


def _batch(data_dir, **kwargs):
  options = dict(points='mesh68', data_dir=data_dir, batch_size=8, training=False,
                 image_size=(64, 64))
  options.update(kwargs)
  return next(iter(lp.make_landmark_dataset('synthetic_faces/crops_tiny', 'train',
                                            **options)))


def test_crop_transform_and_its_inverse():
  box = tf.constant([10.0, 20.0, 50.0, 70.0])
  to_record, to_crop = lp.crop_transform(box, 64, crop_scale=1.5, log_scale=0.2,
                                         shift=(0.05, -0.1), angle=0.4, flip=True)
  points = tf.constant([[3.0, 4.0, 2.0], [60.0, 17.5, 1.0]])
  back = lp.transform_points(lp.transform_points(points, to_record), to_crop)
  np.testing.assert_allclose(back, points, atol=1e-4)
  # Without augmentation the box centre maps to the crop centre and the longer side
  # (50) to 64 / 1.5.
  _, to_crop = lp.crop_transform(box, 64, crop_scale=1.5)
  corners = lp.transform_points(tf.constant([[30.0, 45.0], [30.0, 20.0], [30.0, 70.0]]),
                                to_crop)
  np.testing.assert_allclose(corners[0], [32.0, 32.0], atol=1e-4)
  np.testing.assert_allclose(corners[2, 1] - corners[1, 1], 64 / 1.5, atol=1e-4)


@pytest.mark.parametrize('flip', [False, True])
def test_image_and_points_go_through_the_same_map(flip):
  """A bright pixel at a point of the record lands on the mapped point in the crop."""
  image = np.zeros((80, 100, 3), np.uint8)
  point = np.array([37.5, 41.5])  # the centre of pixel (row 41, column 37)
  image[41, 37] = 255
  to_record, to_crop = lp.crop_transform(tf.constant([20.0, 25.0, 60.0, 60.0]), 96,
                                         crop_scale=1.2, log_scale=-0.3, shift=(0.1, 0.0),
                                         angle=0.5, flip=flip)
  crop = lp.warp_image(tf.constant(image), to_record, 96).numpy()[..., 0].astype(float)
  mapped = lp.transform_points(tf.constant([point], tf.float32), to_crop).numpy()[0]
  rows, cols = np.nonzero(crop)
  weights = crop[rows, cols]
  centroid = np.array([np.sum((cols + 0.5) * weights), np.sum((rows + 0.5) * weights)])
  np.testing.assert_allclose(centroid / weights.sum(), mapped, atol=0.35)


def test_crops_contract_shapes_and_points_on_the_face(data_dir):
  batch = _batch(data_dir)
  assert batch['image'].shape == (8, 64, 64, 3) and batch['image'].dtype == np.uint8
  assert batch['landmarks'].shape == (8, 68, 3) and batch['box'].shape == (8, 4)
  assert batch['example_valid'].all()
  # Evaluation crops: the face box centred, its longer side 64 / 1.25.
  box = batch['box']
  np.testing.assert_allclose((box[:, :2] + box[:, 2:]) / 2, 32.0, atol=1e-3)
  np.testing.assert_allclose(np.max(box[:, 2:] - box[:, :2], axis=1), 64 / 1.25, atol=1e-3)
  xy = batch['landmarks'][..., :2]
  assert (xy >= box[:, None, :2] - 1e-3).all() and (xy <= box[:, None, 2:] + 1e-3).all()
  assert (batch['landmarks'][..., 2] > 0).all()  # crops are all labelled


def test_flip_mirrors_points_and_swaps_left_and_right(data_dir):
  plain = _batch(data_dir, points='landmarks5', batch_size=16)
  flipped = _batch(data_dir, points='landmarks5', batch_size=16, training=True,
                   hflip_prob=1.0, scale_jitter=1e-9)
  # Training order is shuffled: match examples by their (flipped) image.
  for i in range(16):
    j = int(np.argmin([np.abs(plain['image'][k, :, ::-1].astype(int)
                              - flipped['image'][i]).mean() for k in range(16)]))
    assert np.abs(plain['image'][j, :, ::-1].astype(int) - flipped['image'][i]).max() <= 1
    expected = plain['landmarks'][j][list(synthetic_faces.LANDMARK5_FLIP_PERM)]
    expected[:, 0] = 64 - expected[:, 0]
    np.testing.assert_allclose(flipped['landmarks'][i], expected, atol=1e-3)
    # The viewer's left eye stays on the left of the viewer's right eye (upright faces).
    assert flipped['landmarks'][i, 0, 0] < flipped['landmarks'][i, 1, 0]


def test_augmentation_is_deterministic_and_varies(data_dir):
  options = dict(training=True, scale_jitter=0.2, shift_jitter=0.05, max_rotation=20,
                 hflip_prob=0.5, seed=3)
  a, b = _batch(data_dir, **options), _batch(data_dir, **options)
  np.testing.assert_array_equal(a['image'], b['image'])
  np.testing.assert_array_equal(a['landmarks'], b['landmarks'])
  c = _batch(data_dir, **{**options, 'seed': 4})
  assert not np.array_equal(a['landmarks'], c['landmarks'])


def test_errors_name_the_dataset_and_the_fix(data_dir):
  with pytest.raises(ValueError, match="no landmark set 'mesh98'.*landmarks5"):
    _batch(data_dir, points='mesh98')
  with pytest.raises(ValueError, match='several faces per image.*crops'):
    lp.get_landmark_source('synthetic_faces/tiny', data_dir)
  with pytest.raises(ValueError, match='no landmark adapter for TFDS dataset '
                                       'synthetic_shapes/tiny.*synthetic_faces'):
    lp.get_landmark_source('synthetic_shapes/tiny', data_dir)


@pytest.mark.parametrize('name, points, count', [('celeb_a', 'landmarks5', 5),
                                                 ('aflw2k3d', 'mesh68', 68)])
def test_catalog_pipelines_under_mock_data(tmp_path, name, points, count):
  root = catalog_metadata.write_metadata(str(tmp_path), name, num_examples=4,
                                         splits=('train',))
  with tfds.testing.mock_data(num_examples=4, data_dir=root):
    source = lp.get_landmark_source(name, root)
    batch = next(iter(lp.make_landmark_dataset(
        name, 'train', points=points, data_dir=root, batch_size=2, training=True,
        image_size=(64, 64), crop_scale=2.0, max_rotation=10, hflip_prob=0.5)))
  assert source.point_set(points).num_points == count
  assert batch['image'].shape == (2, 64, 64, 3)
  assert batch['landmarks'].shape == (2, count, 3)
  assert np.isfinite(batch['landmarks']).all() and (batch['landmarks'][..., 2] == 2).all()


def test_last_evaluation_batch_is_padded(data_dir):
  batches = list(lp.make_landmark_dataset(
      'synthetic_faces/crops_tiny', 'validation', points='landmarks5', data_dir=data_dir,
      batch_size=5, training=False, image_size=(64, 64)))
  assert [b['example_valid'].sum() for b in batches] == [5, 3]
  assert (batches[-1]['landmarks'][3:, :, 2] == 0).all()
