"""Style B of synthetic_shapes and the paired / unpaired image contracts (pix2pix, CycleGAN)."""
import dataclasses
import hashlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests import catalog_metadata
from vision_jax.data import datasets
from vision_jax.data import image_pairs
from vision_jax.data import synthetic_shapes as ss

DATASET = 'synthetic_shapes/styles_tiny'
STYLES = ss.SyntheticShapes.builder_configs['styles_tiny']
S = STYLES.image_size

# sha256 of (image bytes + semantic bytes) of render_example before style B existed.
_STYLE_A_SHA256 = {
    ('default', 'train', 0):
        '33d797ad15fbbd1df1c8810cd1f1588029fb0282d62cd768787c20de2da31148',
    ('default', 'train', 7):
        '8655f66fd6bbfb2b68ec4e127b3942a6f70c35ef0459fc4fac41fc6d3f312702',
    ('default', 'validation', 3):
        '7c1438f5da46edd88b7ddd66b45e6f8c3f1c6325e1e7e383497e68b88695bebc',
    ('tiny', 'train', 5):
        '8cb7fa9e49d9c3bec88497121fd4cf2a69e5454612c87feec2a45d671c2cbf5e',
}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('tfds'))
  datasets.get_builder(DATASET, root)  # Prepared once (48 + 16 scenes, 64 x 64).
  return root


@pytest.fixture(scope='module')
def scenes():
  """Every scene of styles_tiny by split: render_example's arrays (with image_b)."""
  return {split: [ss.render_example(i, split, STYLES) for i in range(n)]
          for split, n in (('train', STYLES.num_train),
                           ('validation', STYLES.num_validation))}


def _sha(example):
  return hashlib.sha256(example['image'].tobytes() + example['semantic'].tobytes()).hexdigest()


def test_style_a_is_unchanged_for_the_existing_configs():
  for (config, split, index), digest in _STYLE_A_SHA256.items():
    example = ss.render_example(index, split, ss.SyntheticShapes.builder_configs[config])
    assert 'image_b' not in example
    assert _sha(example) == digest, (config, split, index)


def test_style_b_is_a_deterministic_function_of_the_scene(scenes):
  for index in (0, 3):
    first = ss.render_style_b(index, 'train', STYLES)
    np.testing.assert_array_equal(first, ss.render_style_b(index, 'train', STYLES))
    np.testing.assert_array_equal(first, scenes['train'][index]['image_b'])
    assert first.shape == (S, S, 3) and first.dtype == np.uint8
  assert not np.array_equal(scenes['train'][0]['image_b'], scenes['train'][1]['image_b'])
  assert not np.array_equal(scenes['train'][0]['image_b'],
                            scenes['validation'][0]['image_b'])
  # Style A of a scene does not depend on whether style B is drawn.
  plain = ss.render_example(2, 'train', dataclasses.replace(STYLES, style_b=False))
  for key in ('image', 'semantic', 'masks', 'boxes'):
    np.testing.assert_array_equal(plain[key], scenes['train'][2][key])


def test_style_b_draws_the_same_semantic_map_with_its_palette_and_patterns(scenes):
  patterns = ss.style_b_patterns(S)
  for pattern in patterns.values():  # Flip-symmetric: flips keep the style.
    np.testing.assert_array_equal(pattern, pattern[:, ::-1])
  for example in scenes['train'][:12]:
    image_a = example['image'].astype(float) / 255
    image_b = example['image_b'].astype(float) / 255
    regions = [(example['semantic'] == ss.SKY, 'sky', ss.STYLE_B_STUFF_DEPTH),
               (example['semantic'] == ss.GROUND, 'ground', ss.STYLE_B_STUFF_DEPTH)]
    regions += [(mask, 'thing', ss.STYLE_B_THING_DEPTH) for mask in example['masks']]
    covered = np.zeros((S, S), int)
    for mask, kind, depth in regions:
      covered += mask
      on, off = mask & patterns[kind], mask & ~patterns[kind]
      if not on.any():
        continue
      colour = image_b[on][0]
      # One flat colour per region, darkened off the pattern.
      np.testing.assert_allclose(image_b[on], np.broadcast_to(colour, image_b[on].shape),
                                 atol=1e-9)
      np.testing.assert_allclose(image_b[off], np.broadcast_to(
          colour * (1 - depth), image_b[off].shape), atol=1.5 / 255)
      if kind == 'thing':  # The hue-rotated style-A colour (A adds shading and noise).
        np.testing.assert_allclose(colour, ss.style_b_colour(image_a[mask].mean(0)),
                                   atol=0.08)
    np.testing.assert_array_equal(covered, 1)  # The regions tile the semantic map.


def test_builder_has_image_b_only_in_the_style_configs(data_dir):
  features = datasets.get_builder(DATASET, data_dir).info.features
  assert features['image_b'].shape == (S, S, 3) and features['image'].shape == (S, S, 3)
  assert 'image_b' not in tfds.builder('synthetic_shapes/tiny', data_dir=data_dir).info.features
  styles = ss.SyntheticShapes.builder_configs['styles']
  assert (styles.image_size, styles.num_train, styles.num_validation,
          styles.max_shapes) == (64, 3000, 500, 4)


def _paired(data_dir, **kwargs):
  options = dict(data_dir=data_dir, batch_size=8, training=True, seed=3)
  options.update(kwargs)
  return image_pairs.make_paired_image_dataset(DATASET, 'train', **options)


def test_paired_input_is_the_coloured_semantic_map_and_evaluation_is_padded(data_dir,
                                                                              scenes):
  batches = list(image_pairs.make_paired_image_dataset(
      DATASET, 'validation', data_dir=data_dir, batch_size=6, training=False))
  assert [b['example_valid'].sum() for b in batches] == [6, 6, 4]
  for b in batches:
    assert b['input'].shape == b['target'].shape == (6, S, S, 3)
    assert b['semantic'].shape == (6, S, S)
    assert {b[k].dtype for k in ('input', 'target', 'semantic')} == {np.dtype(np.uint8)}
  last = batches[-1]
  assert (last['semantic'][4:] == image_pairs.SEMANTIC_PADDING).all()
  assert not last['input'][4:].any() and not last['target'][4:].any()
  arrays = image_pairs.load_paired_arrays(DATASET, 'validation', data_dir=data_dir)
  assert arrays['input'].shape == (16, S, S, 3)
  for i, example in enumerate(scenes['validation']):
    np.testing.assert_array_equal(arrays['semantic'][i], example['semantic'])
    np.testing.assert_array_equal(arrays['target'][i], example['image'])
    np.testing.assert_array_equal(arrays['input'][i], ss.LABEL_PALETTE[example['semantic']])
  assert len({tuple(c) for c in ss.LABEL_PALETTE}) == len(ss.SEMANTIC_NAMES)
  small = next(image_pairs.make_paired_image_dataset(
      DATASET, 'validation', data_dir=data_dir, batch_size=2, training=False,
      image_size=(32, 32)))
  assert small['input'].shape == (2, 32, 32, 3) and small['semantic'].shape == (2, 32, 32)
  # Nearest resizing: the input keeps exact palette colours of the resized map.
  np.testing.assert_array_equal(small['input'], ss.LABEL_PALETTE[small['semantic']])


def test_paired_flip_keeps_input_target_and_semantic_aligned(data_dir, scenes):
  by_semantic = {}
  for example in scenes['train']:
    by_semantic[example['semantic'].tobytes()] = (example['image'], False)
    by_semantic[example['semantic'][:, ::-1].tobytes()] = (example['image'][:, ::-1], True)
  data = _paired(data_dir, hflip_prob=0.5)
  flips = []
  for _ in range(2):
    batch = next(data)
    np.testing.assert_array_equal(batch['input'], ss.LABEL_PALETTE[batch['semantic']])
    for semantic, target in zip(batch['semantic'], batch['target']):
      image, flipped = by_semantic[semantic.tobytes()]
      np.testing.assert_array_equal(target, image)
      flips.append(flipped)
  assert any(flips) and not all(flips)


def test_training_streams_resume_exactly(data_dir):
  data = _paired(data_dir, hflip_prob=0.5)
  full = [next(data) for _ in range(3)]
  resumed = _paired(data_dir, hflip_prob=0.5, start_batch=2)
  np.testing.assert_array_equal(next(resumed)['target'], full[2]['target'])
  unpaired = dict(data_dir=data_dir, batch_size=4, training=True, hflip_prob=0.5, seed=1)
  data = image_pairs.make_unpaired_image_dataset(DATASET, 'train', **unpaired)
  full = [next(data) for _ in range(3)]
  resumed = next(image_pairs.make_unpaired_image_dataset(DATASET, 'train', start_batch=2,
                                                         **unpaired))
  for key in ('a', 'b', 'example_valid'):
    np.testing.assert_array_equal(resumed[key], full[2][key])


def test_unpaired_training_draws_a_and_b_from_disjoint_scenes(data_dir, scenes):
  ids = {}
  for example in scenes['train']:
    for key in ('image', 'image_b'):
      for image in (example[key], example[key][:, ::-1]):
        ids[(key, image.tobytes())] = example['image_id']
  data = image_pairs.make_unpaired_image_dataset(
      DATASET, 'train', data_dir=data_dir, batch_size=8, training=True, hflip_prob=0.5,
      seed=5)
  seen_a, seen_b, rows = [], [], 0
  for _ in range(4):
    batch = next(data)
    assert batch['a'].shape == batch['b'].shape == (8, S, S, 3)
    assert batch['a_valid'].all() and batch['b_valid'].all() and batch['example_valid'].all()
    seen_a += [ids[('image', a.tobytes())] for a in batch['a']]
    seen_b += [ids[('image_b', b.tobytes())] for b in batch['b']]
    rows += 8
  assert all(i % 2 == 0 for i in seen_a) and all(i % 2 == 1 for i in seen_b)
  # Every scene of a domain once per epoch (24 + 24 of 48); the shuffles differ.
  assert sorted(seen_a[:24]) == list(range(2, 49, 2))
  assert sorted(seen_b[:24]) == list(range(1, 49, 2))
  assert sum(b - a == 1 or a - b == 1 for a, b in zip(seen_a, seen_b)) < rows // 4


def test_unpaired_evaluation_keeps_the_pairs(data_dir, scenes):
  batches = list(image_pairs.make_unpaired_image_dataset(
      DATASET, 'validation', data_dir=data_dir, batch_size=6, training=False))
  assert [b['example_valid'].sum() for b in batches] == [6, 6, 4]
  last = batches[-1]
  assert set(last) == {'a', 'b', 'semantic', 'a_valid', 'b_valid', 'example_valid'}
  np.testing.assert_array_equal(last['a_valid'], last['example_valid'])
  assert (last['semantic'][4:] == image_pairs.SEMANTIC_PADDING).all()
  arrays = image_pairs.load_unpaired_arrays(DATASET, 'validation', data_dir=data_dir)
  assert {k: v.shape[0] for k, v in arrays.items()} == {'a': 16, 'b': 16, 'semantic': 16}
  for i, example in enumerate(scenes['validation']):
    np.testing.assert_array_equal(arrays['a'][i], example['image'])
    np.testing.assert_array_equal(arrays['b'][i], example['image_b'])
    np.testing.assert_array_equal(arrays['semantic'][i], example['semantic'])


def test_unpaired_evaluation_of_separate_domains_pads_the_shorter(data_dir, scenes,
                                                                   monkeypatch):
  """Sources whose domains are separate records (cycle_gan) zip two passes of unequal
  length: here domain a reads validation[:5], domain b all 16 validation scenes."""
  real = image_pairs.get_unpaired_image_source(DATASET, data_dir)
  separate = dataclasses.replace(
      real, scene_pairs=None,
      domain_records=lambda split, d: ((f'{split}[:5]' if d == 'a' else split), None))
  monkeypatch.setattr(image_pairs, 'get_unpaired_image_source', lambda *a, **k: separate)
  batches = list(image_pairs.make_unpaired_image_dataset(
      DATASET, 'validation', data_dir=data_dir, batch_size=6, training=False))
  assert len(batches) == 3 and 'semantic' not in batches[0]
  a_valid = np.concatenate([b['a_valid'] for b in batches])
  np.testing.assert_array_equal(a_valid, np.arange(18) < 5)
  np.testing.assert_array_equal(np.concatenate([b['b_valid'] for b in batches]),
                                np.arange(18) < 16)
  arrays = image_pairs.load_unpaired_arrays(DATASET, 'validation', data_dir=data_dir)
  assert arrays['a'].shape[0] == 5 and arrays['b'].shape[0] == 16
  np.testing.assert_array_equal(arrays['a'][4], scenes['validation'][4]['image'])
  np.testing.assert_array_equal(arrays['b'][15], scenes['validation'][15]['image_b'])


def test_adapters_and_errors(data_dir):
  unpaired = image_pairs.get_unpaired_image_source(DATASET, data_dir)
  assert unpaired.domain_names == ('style_a', 'style_b') and unpaired.num_semantic_classes == 5
  source = image_pairs.get_paired_image_source(DATASET, data_dir)
  assert source.semantic_names == ss.SEMANTIC_NAMES and source.input_is_label_map
  with pytest.raises(ValueError, match='no style-B images.*synthetic_shapes/styles'):
    image_pairs.get_unpaired_image_source('synthetic_shapes/tiny', data_dir)
  with pytest.raises(datasets.DatasetNotFoundError,
                     match=r'(?s)not prepared.*tfds build cycle_gan/horse2zebra'):
    image_pairs.get_unpaired_image_source('cycle_gan/horse2zebra', data_dir)


@pytest.mark.parametrize('config, names', [('horse2zebra', ('horse', 'zebra')),
                                           ('facades', ('photo', 'label_map'))])
def test_cycle_gan_pipelines_under_mock_data(tmp_path, config, names):
  name = f'cycle_gan/{config}'
  root = catalog_metadata.write_metadata(
      str(tmp_path), name, num_examples=3, splits=('trainA', 'trainB', 'testA', 'testB'))
  with tfds.testing.mock_data(num_examples=3, data_dir=root):
    source = image_pairs.get_unpaired_image_source(name, root)
    train = next(image_pairs.make_unpaired_image_dataset(
        name, 'train', data_dir=root, batch_size=2, training=True, image_size=(32, 32),
        hflip_prob=0.5))
    test = list(image_pairs.make_unpaired_image_dataset(
        name, 'test', data_dir=root, batch_size=2, training=False, image_size=(32, 32)))
    arrays = image_pairs.load_unpaired_arrays(name, 'test', data_dir=root,
                                              image_size=(24, 24))
    with pytest.raises(ValueError, match='no paired_image adapter for TFDS dataset cycle_gan'):
      image_pairs.get_paired_image_source(name, root)
    with pytest.raises(ValueError, match='pass image_size'):
      image_pairs.make_unpaired_image_dataset(name, 'train', data_dir=root, batch_size=2,
                                              training=True)
  assert source.domain_names == names and source.num_semantic_classes == 0
  for batch in [train] + test:
    assert batch['a'].shape == batch['b'].shape == (2, 32, 32, 3)
    assert batch['a'].dtype == batch['b'].dtype == np.uint8
    assert batch['example_valid'].dtype == np.bool_
  assert len(test) == 2
  np.testing.assert_array_equal(np.concatenate([b['a_valid'] for b in test]),
                                [True, True, True, False])
  assert arrays['a'].shape == arrays['b'].shape == (3, 24, 24, 3)
