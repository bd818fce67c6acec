"""The labelled-image contract on the family-agnostic core (digits), and source lookup."""
import numpy as np
import pytest

from vision_jax.data import datasets
from vision_jax.data import detection_pipeline
from vision_jax.data import labelled_images
from vision_jax.data import sources


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def _take(data_dir, n, **kwargs):
  args = dict(data_dir=data_dir, batch_size=8, training=True, seed=3)
  args.update(kwargs)
  data = labelled_images.make_labelled_image_dataset('digits', 'train', **args)
  return [next(data) for _ in range(n)]


def test_batches_are_uint8_images_and_labels(data_dir):
  batch = _take(data_dir, 1)[0]
  assert batch['image'].shape == (8, 32, 32, 1) and batch['image'].dtype == np.uint8
  assert batch['label'].shape == (8,) and batch['label'].dtype == np.int32
  assert batch['example_valid'].all() and batch['image'].max() > 200
  resized = _take(data_dir, 1, image_size=(16, 16))[0]
  assert resized['image'].shape == (8, 16, 16, 1)
  np.testing.assert_array_equal(resized['label'], batch['label'])


def test_streams_resume_exactly_and_split_over_processes(data_dir):
  full = _take(data_dir, 4)
  resumed = _take(data_dir, 2, start_batch=2)
  for a, b in zip(full[2:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  shards = [_take(data_dir, 4, process_index=p, process_count=2) for p in range(2)]
  for k in range(4):
    joined = np.concatenate([shards[0][k]['label'], shards[1][k]['label']])
    np.testing.assert_array_equal(joined, full[k]['label'])
  other_seed = _take(data_dir, 1, seed=4)[0]
  assert not np.array_equal(other_seed['label'], full[0]['label'])


def test_evaluation_pass_is_padded_and_whole(data_dir):
  batches = list(labelled_images.make_labelled_image_dataset(
      'digits', 'test', data_dir=data_dir, batch_size=64, training=False))
  assert len(batches) == 6 and all(b['image'].shape[0] == 64 for b in batches)
  valid = np.concatenate([b['example_valid'] for b in batches])
  assert valid.sum() == 360 and not valid[360:].any()
  assert (batches[-1]['label'][~batches[-1]['example_valid']] == -1).all()
  images, labels = labelled_images.load_arrays('digits', 'test', data_dir=data_dir)
  assert images.shape == (360, 32, 32, 1) and np.bincount(labels).min() >= 35


def test_a_dataset_finds_its_adapter_by_name(data_dir):
  builder = datasets.get_builder('digits', data_dir)
  assert sources.find(builder, 'labelled_image').num_classes == 10
  assert 'synthetic_shapes' in sources.available('detection')
  assert 'digits' in sources.available('labelled_image')
  with pytest.raises(ValueError, match=r'no detection adapter for TFDS dataset digits.*'
                     r'sources/digits.py defining detection_source'):
    detection_pipeline.get_detection_source('digits', data_dir)
