"""The procedural synthetic_faces dataset: face model, landmarks, drawing and the builder."""
import dataclasses
import glob
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from vision_jax.data import datasets
from vision_jax.data import detection_pipeline
from vision_jax.data import synthetic_faces as sf

NAME = 'synthetic_faces/tiny'
CONFIGS = sf.SyntheticFaces.builder_configs
DEFAULT, CROPS, TINY = CONFIGS['default'], CONFIGS['crops'], CONFIGS['tiny']


@pytest.fixture(scope='module')
def examples():
  return [sf.render_example(i, 'train', DEFAULT) for i in range(24)]


@pytest.fixture(scope='module')
def crops():
  return [sf.render_example(i, 'train', CROPS) for i in range(24)]


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  builder = datasets.get_builder(NAME, data_dir)
  records = {split: list(tfds.as_numpy(builder.as_dataset(split=split)))
             for split in ('train', 'validation')}
  return data_dir, builder, records


def _records(data_dir):
  files = sorted(glob.glob(os.path.join(data_dir, 'synthetic_faces', 'tiny', '*',
                                        '*.tfrecord*')))
  return {os.path.basename(f): open(f, 'rb').read() for f in files}


def test_drawing_is_deterministic_per_index_and_split():
  a, b = sf.render_example(3, 'train', DEFAULT), sf.render_example(3, 'train', DEFAULT)
  for key in ('image', 'boxes', 'landmarks5', 'mesh68', 'labelled', 'size_bins', 'areas'):
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a['image'], sf.render_example(4, 'train', DEFAULT)['image'])
  assert not np.array_equal(a['image'], sf.render_example(3, 'validation', DEFAULT)['image'])


def test_preparing_twice_gives_identical_records(prepared, tmp_path):
  data_dir, builder, records = prepared
  first = _records(data_dir)
  assert len(first) >= 2  # train and validation shards
  datasets.get_builder(NAME, str(tmp_path))
  assert _records(str(tmp_path)) == first
  # The records hold what render_example draws.
  for split in ('train', 'validation'):
    for index in (0, 5):
      drawn = sf.render_example(index, split, builder.builder_config)
      example, faces = records[split][index], records[split][index]['faces']
      np.testing.assert_array_equal(example['image'], drawn['image'])
      assert example['image/id'] == drawn['image_id']
      np.testing.assert_allclose(faces['bbox'], drawn['boxes'][:, [1, 0, 3, 2]] / 96,
                                 atol=1e-6)
      for key, name in (('landmarks5', 'landmarks5'), ('mesh68', 'mesh68')):
        expected = drawn[name].copy()
        expected[..., :2] /= 96
        np.testing.assert_allclose(faces[key], expected, atol=1e-6)
      np.testing.assert_array_equal(faces['landmarks_labelled'], drawn['labelled'])


def test_feature_shapes_dtypes_and_names(prepared):
  _, builder, records = prepared
  info = builder.info
  assert info.splits['train'].num_examples == TINY.num_train
  assert info.splits['validation'].num_examples == TINY.num_validation
  assert info.features['faces']['label'].names == list(sf.CLASS_NAMES)
  assert info.features['faces']['size_bin'].names == list(sf.SIZE_BIN_NAMES)
  ids = []
  for ex in records['train'] + records['validation']:
    faces = ex['faces']
    n = len(faces['label'])
    assert 1 <= n <= TINY.max_faces
    assert ex['image'].shape == (96, 96, 3) and ex['image'].dtype == np.uint8
    expected = {'bbox': ((n, 4), np.float32), 'label': ((n,), np.int64),
                'landmarks5': ((n, 5, 3), np.float32), 'mesh68': ((n, 68, 3), np.float32),
                'landmarks_labelled': ((n,), np.bool_), 'size_bin': ((n,), np.int64),
                'area': ((n,), np.float32), 'is_crowd': ((n,), np.bool_)}
    for key, (shape, dtype) in expected.items():
      assert faces[key].shape == shape and faces[key].dtype == dtype, key
    assert np.all(faces['label'] == 0) and not faces['is_crowd'].any()
    box = faces['bbox'] * 96
    np.testing.assert_allclose(faces['area'], (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]),
                               rtol=1e-4)
    ids.append(ex['image/id'])
  assert ids == list(range(1, 17)) + list(range(1_000_001, 1_000_009))


def _check_faces(boxes, landmarks5, mesh68, labelled, bins, s):
  """Box / landmark / bin invariants of one example (pixels)."""
  for box, five, mesh, is_labelled in zip(boxes, landmarks5, mesh68, labelled):
    assert 0 <= box[0] < box[2] <= s and 0 <= box[1] < box[3] <= s
    if not is_labelled:
      np.testing.assert_array_equal(five, 0)
      np.testing.assert_array_equal(mesh, 0)
      continue
    for points in (five, mesh):
      assert set(np.unique(points[:, 2])) <= {1.0, 2.0}
      tol = 1e-3
      assert np.all((points[:, 0] >= box[0] - tol) & (points[:, 0] <= box[2] + tol))
      assert np.all((points[:, 1] >= box[1] - tol) & (points[:, 1] <= box[3] + tol))
    # landmarks5: iris centres, nose tip (30), mouth corners (48, 54).
    np.testing.assert_array_equal(five[2:], mesh[[30, 48, 54]])
    # The viewer's left eye is left of the right one while faces are near upright.
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]
  heights = boxes[:, 3] - boxes[:, 1]
  expected = np.where(heights < 0.1 * s, sf.HARD, np.where(heights < 0.25 * s, sf.MEDIUM,
                                                           sf.EASY))
  np.testing.assert_array_equal(bins, expected)


def test_landmarks_in_boxes_unlabelled_zeros_and_size_bins(examples, prepared):
  for ex in examples:
    assert 1 <= len(ex['boxes']) <= DEFAULT.max_faces
    _check_faces(ex['boxes'], ex['landmarks5'], ex['mesh68'], ex['labelled'],
                 ex['size_bins'], 160)
  bins = np.concatenate([ex['size_bins'] for ex in examples])
  assert set(bins) == {sf.EASY, sf.MEDIUM, sf.HARD}
  labelled = np.concatenate([ex['labelled'] for ex in examples])
  assert 0.05 < 1 - labelled.mean() < 0.4  # unlabelled_fraction = 0.2
  visibility = np.concatenate([ex['mesh68'][ex['labelled']][..., 2].ravel()
                               for ex in examples])
  assert 0.02 < (visibility == 1).mean() < 0.5  # some occluded points, most visible
  assert len({len(ex['boxes']) for ex in examples}) >= 4
  # The prepared records (relative coordinates) obey the same rules.
  _, _, records = prepared
  tiny_labelled = []
  for ex in records['train'] + records['validation']:
    faces = ex['faces']
    boxes = faces['bbox'][:, [1, 0, 3, 2]] * 96
    five, mesh = faces['landmarks5'].copy(), faces['mesh68'].copy()
    five[..., :2] *= 96
    mesh[..., :2] *= 96
    _check_faces(boxes, five, mesh, faces['landmarks_labelled'], faces['size_bin'], 96)
    tiny_labelled += list(faces['landmarks_labelled'])
  assert 0 < sum(tiny_labelled) < len(tiny_labelled)  # both kinds occur in `tiny`


def test_crops_have_one_centred_labelled_face(crops):
  s, jitter = CROPS.image_size, CROPS.crop_jitter * CROPS.image_size
  offsets = []
  for ex in crops:
    assert ex['image'].shape == (s, s, 3)
    assert len(ex['boxes']) == 1 and ex['labelled'].all()
    box = ex['boxes'][0]
    centre = (box[:2] + box[2:]) / 2
    assert np.all(np.abs(centre - s / 2) <= jitter + 1e-3)
    offsets.append(centre - s / 2)
    height = ex['faces'][0]['height']
    assert CROPS.min_face_height * s <= height <= CROPS.max_face_height * s
    assert ex['size_bins'][0] == sf.EASY
    _check_faces(ex['boxes'], ex['landmarks5'], ex['mesh68'], ex['labelled'],
                 ex['size_bins'], s)
  assert np.abs(offsets).max() > jitter / 2  # the jitter is used


def _eye_pixels_agree(ex, min_eye_width=6.0):
  """(checked, agreeing) eyes: the pixel under a visible eye landmark shows the iris or
  the pupil of that face (nearer to them than to the eye white and the skin, and dark)."""
  checked = agree = 0
  for face, five, mesh, labelled in zip(ex['faces'], ex['landmarks5'], ex['mesh68'],
                                        ex['labelled']):
    if not labelled:
      continue
    for eye, (outer, inner) in ((0, (36, 39)), (1, (42, 45))):
      if five[eye, 2] != 2 or np.hypot(*(mesh[outer, :2] - mesh[inner, :2])) < min_eye_width:
        continue
      x, y = five[eye, :2].astype(int)
      pixel = ex['image'][y, x] / 255
      dark = min(np.linalg.norm(pixel - face[k]) for k in ('iris_colour', 'pupil_colour'))
      light = min(np.linalg.norm(pixel - face[k]) for k in ('white_colour', 'skin_colour'))
      checked += 1
      agree += dark < 0.1 and dark < light and pixel.mean() < 0.5
  return checked, agree


def test_eye_landmarks_sit_on_the_drawn_iris(examples, crops):
  checked = agree = 0
  for ex in examples + crops:
    c, a = _eye_pixels_agree(ex)
    checked, agree = checked + c, agree + a
  assert checked >= 30
  assert agree == checked


def test_mesh_flip_permutation_mirrors_an_upright_frontal_face(crops):
  face = dict(crops[0]['faces'][0])
  mesh, eyes = sf.face_model(face)
  mirrored = mesh[list(sf.MESH68_FLIP_PERM)] * [-1, 1]
  np.testing.assert_allclose(mirrored, mesh, atol=1e-12)
  assert sorted(sf.MESH68_FLIP_PERM) == list(range(68))
  np.testing.assert_allclose(eyes[::-1] * [-1, 1], eyes)
  # The 5-point flip matches the mesh's: eyes swap, nose stays, 48 <-> 54.
  assert sf.MESH68_FLIP_PERM[30] == 30 and sf.MESH68_FLIP_PERM[48] == 54
  assert sf.LANDMARK5_FLIP_PERM == (1, 0, 2, 4, 3)
  # iBUG layout: jaw left to right through the chin, eye corners, mouth corners.
  assert mesh[0, 0] < 0 < mesh[16, 0] and mesh[8, 1] == pytest.approx(0.5)
  assert mesh[36, 0] < mesh[39, 0] < 0 < mesh[42, 0] < mesh[45, 0]
  assert mesh[48, 0] < mesh[54, 0] and mesh[30, 1] > mesh[27, 1]


def test_pose_map_round_trips_and_yaw_shifts_the_features(crops):
  face = dict(crops[1]['faces'][0], yaw=CROPS.max_yaw, angle=0.4)
  rng = np.random.default_rng(0)
  u, v = rng.uniform(-0.8, 0.8, 500), rng.uniform(-0.8, 0.8, 500)
  x, y = sf.to_image(face, u, v)
  u2, v2 = sf.to_canonical(face, x, y)
  np.testing.assert_allclose(u2, u, atol=1e-9)
  np.testing.assert_allclose(v2, v, atol=1e-9)
  # Without rotation, the nose tip (u = 0) moves to sin(yaw) of the row's half-width.
  face.update(angle=0.0)
  mesh, _ = sf.face_model(face)
  tip_v = mesh[30, 1]
  x, _ = sf.to_image(face, np.array([0.0]), np.array([tip_v]))
  half_width = face['rx'] * np.sqrt(1 - (tip_v / 0.5) ** 2) * face['height']
  assert x[0] - face['cx'] == pytest.approx(half_width * np.sin(CROPS.max_yaw))


def test_detection_contract(prepared):
  data_dir, _, records = prepared
  source = detection_pipeline.get_detection_source(NAME, data_dir)
  assert source.class_names == ('face',)
  assert source.keypoint_names == sf.LANDMARK5_NAMES + sf.MESH68_NAMES
  batch = next(detection_pipeline.make_detection_dataset(
      NAME, 'validation', data_dir=data_dir, batch_size=8, image_size=(96, 96),
      max_instances=6, training=False))
  assert batch['keypoints'].shape == (8, 6, 5 + 68, 3)
  for b, ex in enumerate(records['validation']):
    n = len(ex['faces']['label'])
    assert batch['valid'][b].sum() == n
    np.testing.assert_allclose(batch['boxes'][b, :n],
                               ex['faces']['bbox'][:, [1, 0, 3, 2]] * 96, atol=1e-3)
    expected = np.concatenate([ex['faces']['landmarks5'], ex['faces']['mesh68']], axis=1)
    expected[..., :2] *= 96
    np.testing.assert_allclose(batch['keypoints'][b, :n], expected, atol=1e-3)
    assert np.all(batch['classes'][b, :n] == 0)


@pytest.mark.parametrize('config, change, named', [
    ('default', {'max_yaw': 1.2}, 'max_yaw'), ('default', {'max_faces': 0}, 'max_faces'),
    ('default', {'min_face_height': 0.6, 'max_face_height': 0.5}, 'face heights'),
    ('default', {'unlabelled_fraction': 1.5}, 'unlabelled_fraction'),
    ('crops', {'max_face_height': 0.9}, 'crop_jitter')])
def test_impossible_configs_are_named(config, change, named):
  with pytest.raises(ValueError, match=named):
    sf.render_example(0, 'train', dataclasses.replace(CONFIGS[config], **change))
