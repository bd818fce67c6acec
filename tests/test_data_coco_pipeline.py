"""The coco/2017 detection pipeline on mocked TFDS data (no real COCO here)."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests import catalog_metadata
from vision_jax.data import datasets
from vision_jax.data import detection_pipeline
from vision_jax.data.sources import coco as coco_source

NUM_EXAMPLES = 7


def _fake_example(i: int) -> dict:
  """Image i: (40 + 10 i) x 60 pixels of value 10 i, with i % 3 objects of known boxes."""
  n = i % 3
  boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.5, 1.0, 1.0]], np.float32)[:n]
  return {
      'image': np.full((40 + 10 * i, 60, 3), 10 * i, np.uint8),
      'image/filename': f'{i:012d}.jpg',
      'image/id': 1000 + i,
      'objects': {'id': np.arange(n, dtype=np.int64), 'area': np.full(n, 50 + i, np.int64),
                  'bbox': boxes, 'label': np.array([79, 3][:n], np.int64),
                  'is_crowd': np.array([False, True][:n])},
  }


def _fake_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False,
                     **kwargs):
  """Replaces TFDS' reading: serialized fake examples, decoded like real records.

  mock_data's own random examples cannot serve here: with `decoders` (the pipeline
  leaves images encoded) TFDS 4.9 draws each `objects` field with its own length and
  fails ("The length of all elements of one sequence should be the same").
  """
  del split, read_config, shuffle_files, kwargs
  features = self.info.features
  serialized = [features.serialize_example(_fake_example(i)) for i in range(NUM_EXAMPLES)]
  ds = tf.data.Dataset.from_tensor_slices(serialized)
  return ds.map(lambda s: features.deserialize_example(s, decoders=decoders))


@pytest.fixture(scope='module')
def coco_metadata_dir(tmp_path_factory):
  """A data_dir holding coco/2017's metadata only (as after `tfds build`, minus records)."""
  def names(info):
    info.features['objects']['label'].names = list(coco_source.COCO_CLASS_NAMES)

  return catalog_metadata.write_metadata(str(tmp_path_factory.mktemp('coco_meta')),
                                         'coco/2017', num_examples=NUM_EXAMPLES, edit=names)


@pytest.fixture
def mocked_coco(coco_metadata_dir):
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, data_dir=coco_metadata_dir,
                              as_dataset_fn=_fake_as_dataset):
    yield


def test_coco_evaluation_batches_follow_the_contract(mocked_coco):
  del mocked_coco
  batches = list(detection_pipeline.make_coco_dataset(
      'validation', data_dir=None, batch_size=4, image_size=(64, 64), max_instances=3,
      training=False))
  assert len(batches) == 2
  batch = batches[0]
  assert set(batch) == {'image', 'boxes', 'classes', 'valid', 'is_crowd', 'areas',
                        'image_id', 'scale', 'orig_size', 'example_valid'}
  assert batch['image'].shape == (4, 64, 64, 3) and batch['boxes'].shape == (4, 3, 4)
  np.testing.assert_array_equal(
      np.concatenate([b['example_valid'] for b in batches]), np.arange(8) < NUM_EXAMPLES)
  for b in range(4):
    fake = _fake_example(b)
    h, w = fake['image'].shape[:2]
    n = len(fake['objects']['label'])
    scale = min(64 / h, 64 / w)
    assert batch['image_id'][b] == 1000 + b
    np.testing.assert_array_equal(batch['orig_size'][b], [h, w])
    np.testing.assert_allclose(batch['scale'][b], scale, rtol=1e-6)
    np.testing.assert_array_equal(batch['valid'][b], np.arange(3) < n)
    np.testing.assert_array_equal(batch['classes'][b, :n], fake['objects']['label'])
    np.testing.assert_array_equal(batch['classes'][b, n:], -1)
    np.testing.assert_array_equal(batch['is_crowd'][b, :n], fake['objects']['is_crowd'])
    np.testing.assert_array_equal(batch['areas'][b, :n], fake['objects']['area'])
    # Relative (ymin, xmin, ymax, xmax) -> (x1, y1, x2, y2) input pixels.
    rel = fake['objects']['bbox']
    expected = np.stack([rel[:, 1] * w, rel[:, 0] * h, rel[:, 3] * w, rel[:, 2] * h], -1)
    np.testing.assert_allclose(batch['boxes'][b, :n], expected * scale, atol=1e-3)
    # The image content (a constant) fills the resized area; the rest is padding.
    content = batch['image'][b, :round(h * scale), :round(w * scale)]
    np.testing.assert_allclose(content, 10 * b, atol=3)
    assert np.all(batch['image'][b, round(h * scale):] == 0)


def test_coco_training_stream_is_deterministic(mocked_coco):
  del mocked_coco
  kwargs = dict(data_dir=None, batch_size=2, image_size=(48, 48), max_instances=3,
                training=True, seed=3, hflip_prob=0.5, scale_range=(0.8, 1.2))

  def take(start, n):
    data = detection_pipeline.make_coco_dataset('train', start_batch=start, **kwargs)
    return [next(data) for _ in range(n)]

  full, resumed = take(0, 6), take(4, 2)
  for a, b in zip(full[4:], resumed):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  assert full[0]['image'].shape == (2, 48, 48, 3)
  assert full[0]['classes'].dtype == np.int32 and full[0]['classes'].max() <= 79


def test_coco_source_metadata(mocked_coco):
  del mocked_coco
  source = detection_pipeline.get_detection_source('coco/2017')
  assert source.num_classes == 80 and source.class_names[0] == 'person'
  assert source.category_ids[-1] == 90 and len(set(source.category_ids)) == 80
  assert source.num_keypoints == 0 and not source.has_masks
  with pytest.raises(ValueError, match='no instance masks'):
    detection_pipeline.make_coco_dataset('validation', batch_size=2, image_size=(32, 32),
                                         max_instances=2, training=False, with_masks=True)


def test_coco_without_prepared_data_names_the_data_dir(tmp_path):
  with pytest.raises(datasets.DatasetNotFoundError) as info:
    detection_pipeline.make_coco_dataset('validation', data_dir=str(tmp_path), batch_size=2,
                                         image_size=(32, 32), max_instances=2, training=False)
  message = str(info.value)
  assert str(tmp_path) in message
  assert f'tfds build coco/2017 --data_dir={tmp_path}' in message
  assert os.path.join(str(tmp_path), 'downloads', 'manual') in message
  assert 'annotations_trainval2017.zip' in message
  assert not os.path.exists(os.path.join(str(tmp_path), 'downloads', 'extracted'))
