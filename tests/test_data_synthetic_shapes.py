"""The procedural synthetic_shapes dataset: drawing invariants and the TFDS builder."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from vision_jax.data import datasets
from vision_jax.data import synthetic_shapes as ss

CONFIG = ss.SyntheticShapes.builder_configs['default']


@pytest.fixture(scope='module')
def examples():
  return [ss.render_example(i, 'train', CONFIG) for i in range(40)]


def test_drawing_is_deterministic_per_index_and_split():
  a, b = ss.render_example(5, 'train', CONFIG), ss.render_example(5, 'train', CONFIG)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a['image'], ss.render_example(6, 'train', CONFIG)['image'])
  assert not np.array_equal(a['image'], ss.render_example(5, 'validation', CONFIG)['image'])


def test_instances_are_visible_tight_and_labelled(examples):
  counts, labels = [], []
  for ex in examples:
    n = len(ex['labels'])
    counts.append(n)
    labels += list(ex['labels'])
    assert 1 <= n <= CONFIG.max_shapes
    assert ex['masks'].shape == (n, 128, 128) and ex['image'].shape == (128, 128, 3)
    # Visible masks do not overlap (occlusion) and are large enough.
    assert ex['masks'].sum(0).max() <= 1
    assert np.all(ex['areas'] >= ss.MIN_VISIBLE_AREA)
    np.testing.assert_array_equal(ex['areas'], ex['masks'].sum((1, 2)))
    for mask, box, kp, label in zip(ex['masks'], ex['boxes'], ex['keypoints'], ex['labels']):
      rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
      np.testing.assert_array_equal(box, [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
      # Semantic map: the instance's pixels carry its label.
      assert np.all(ex['semantic'][mask] == label)
      # Extreme points on the box edges: top, right, bottom, left.
      np.testing.assert_array_equal(kp[:, 2], 2)
      assert kp[0, 1] == box[1] and kp[1, 0] == box[2]
      assert kp[2, 1] == box[3] and kp[3, 0] == box[0]
      assert np.all((kp[:, 0] >= box[0]) & (kp[:, 0] <= box[2]))
    stuff = ex['semantic'][ex['masks'].sum(0) == 0]
    assert set(np.unique(stuff)) <= {ss.SKY, ss.GROUND}
  assert max(counts) >= 4 and min(counts) <= 2
  assert set(labels) == {0, 1, 2}


def test_stuff_classes_and_shape_colours_differ(examples):
  both = 0
  for ex in examples:
    stuff = set(np.unique(ex['semantic'])) & {ss.SKY, ss.GROUND}
    both += stuff == {ss.SKY, ss.GROUND}
    image = ex['image'].astype(float) / 255
    for mask in ex['masks']:
      ring = _dilate(mask) & ~ex['masks'].any(0)
      if ring.sum() > 10:  # Where the shape borders the background.
        inside = image[mask].mean(0)
        outside = image[ring].mean(0)
        assert np.linalg.norm(inside - outside) > 0.1
  assert both >= len(examples) * 0.9


def _dilate(mask):
  out = mask.copy()
  out[1:] |= mask[:-1]
  out[:-1] |= mask[1:]
  out[:, 1:] |= mask[:, :-1]
  out[:, :-1] |= mask[:, 1:]
  return out


def test_builder_features_and_class_names(tmp_path):
  builder = datasets.get_builder('synthetic_shapes/tiny', str(tmp_path))
  info = builder.info
  assert info.features['objects']['label'].names == list(ss.THING_NAMES)
  assert info.features['semantic'].names == list(ss.SEMANTIC_NAMES)
  assert info.splits['train'].num_examples == 64
  example = next(iter(tfds.as_numpy(builder.as_dataset(split='train'))))
  drawn = ss.render_example(0, 'train', builder.builder_config)
  np.testing.assert_array_equal(example['image'], drawn['image'])
  np.testing.assert_array_equal(example['objects']['mask'][..., 0], drawn['masks'])
  np.testing.assert_array_equal(example['semantic'][..., 0], drawn['semantic'])
  np.testing.assert_allclose(example['objects']['bbox'],
                             drawn['boxes'][:, [1, 0, 3, 2]] / 128, atol=1e-6)
  np.testing.assert_allclose(example['objects']['keypoints'][..., :2],
                             drawn['keypoints'][..., :2] / 128, atol=1e-6)
  assert example['image/id'] == 1
  assert not example['objects']['is_crowd'].any()
