"""The video-clip pipeline on synthetic_shapes_video/tiny: frame pairs with exact flow, clips."""
import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds

from vision_jax.data import datasets
from vision_jax.data import synthetic_shapes_video as ssv
from vision_jax.data import video_pipeline

DATASET = 'synthetic_shapes_video/tiny'
CONFIG = ssv.SyntheticShapesVideo.builder_configs['tiny']
T, S0 = CONFIG.num_frames, CONFIG.image_size  # 10 frames of 128 x 128
S, G = 64, 6


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='module')
def clips(data_dir):
  """The raw records by clip id (stored frames, tracks and flows)."""
  builder = datasets.get_builder(DATASET, data_dir)
  out = {}
  for split in ('train', 'validation'):
    for clip in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
      out[int(clip['clip/id'])] = clip
  return out


def _train(data_dir, **kwargs):
  args = dict(data_dir=data_dir, batch_size=4, image_size=S, max_instances=G,
              training=True, seed=0, hflip_prob=0.5)
  args.update(kwargs)
  return video_pipeline.make_video_dataset(DATASET, 'train', **args)


def _eval(data_dir, **kwargs):
  args = dict(data_dir=data_dir, batch_size=3, image_size=S, max_instances=G,
              training=False)
  args.update(kwargs)
  return list(video_pipeline.make_video_dataset(DATASET, 'validation', **args))


def _take(iterator, n):
  return list(itertools.islice(iterator, n))


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def _frames(batch):
  """(clip id, keyframe index, current frame index) per row."""
  clip_id = batch['clip_id']
  return (clip_id, batch['key_image_id'] - clip_id * ssv.FRAME_ID_STRIDE,
          batch['image_id'] - clip_id * ssv.FRAME_ID_STRIDE)


def _mask_box(mask):
  rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
  return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def test_train_pairs_shapes_dtypes_and_fields(data_dir, clips):
  batches = _take(_train(data_dir, max_gap=4), 3)
  b = 4
  expected = {
      'key_image': ((b, S, S, 3), np.uint8), 'image': ((b, S, S, 3), np.uint8),
      'boxes': ((b, G, 4), np.float32), 'classes': ((b, G), np.int32),
      'valid': ((b, G), np.bool_), 'is_crowd': ((b, G), np.bool_),
      'areas': ((b, G), np.float32), 'masks': ((b, G, S, S), np.uint8),
      'track_ids': ((b, G), np.int32), 'image_id': ((b,), np.int64),
      'key_image_id': ((b,), np.int64), 'clip_id': ((b,), np.int64),
      'scale': ((b,), np.float32), 'orig_size': ((b, 2), np.int32),
      'flow': ((b, S, S, 2), np.float32), 'flow_valid': ((b, S, S), np.uint8),
      'example_valid': ((b,), np.bool_)}
  for batch in batches:
    assert set(batch) == set(expected)
    for key, (shape, dtype) in expected.items():
      assert batch[key].shape == shape and batch[key].dtype == dtype, key
    assert batch['image'].max() > 100 and batch['key_image'].max() > 100
    assert batch['example_valid'].all()
    np.testing.assert_allclose(batch['scale'], S / S0)
    np.testing.assert_array_equal(batch['orig_size'], [[S0, S0]] * b)
    valid = batch['valid']
    assert np.all(batch['classes'][~valid] == -1) and np.all(batch['track_ids'][~valid] == -1)
    assert np.all(batch['boxes'][~valid] == 0) and np.all(batch['masks'][~valid] == 0)
    assert set(np.unique(batch['masks'])) <= {0, 1}
    assert set(np.unique(batch['flow_valid'])) <= {0, 1}
    for row, (clip_id, t0, t) in enumerate(zip(*_frames(batch))):
      clip = clips[int(clip_id)]
      # The current frame's instances: the records' (frame t) in track order.
      here = clip['objects']['frame_index'] == t
      n = int(here.sum())
      assert valid[row].sum() == n and valid[row, :n].all()
      np.testing.assert_array_equal(batch['track_ids'][row, :n],
                                    clip['objects']['track_id'][here])
      np.testing.assert_array_equal(batch['classes'][row, :n],
                                    clip['tracks']['label'][batch['track_ids'][row, :n]])
      np.testing.assert_array_equal(batch['areas'][row, :n], clip['objects']['area'][here])
      assert 0 <= t0 < t <= T - 1
    assert (batch['flow_valid'] == 1).mean() > 0.5  # the static background, mostly


def test_gap_is_uniform_in_one_to_max_gap(data_dir):
  gaps, starts = [], []
  for batch in _take(_train(data_dir, max_gap=3, batch_size=8), 8):
    _, t0, t = _frames(batch)
    gaps += list(t - t0)
    starts += list(t0)
  gaps, starts = np.array(gaps), np.array(starts)
  assert gaps.min() >= 1 and gaps.max() <= 3
  counts = np.bincount(gaps, minlength=4)[1:]
  assert counts.min() >= 10, counts  # 64 draws over {1, 2, 3}
  assert np.all(starts + gaps <= T - 1) and starts.min() == 0
  # The largest gap the clips allow.
  _, t0, t = _frames(next(_train(data_dir, max_gap=T - 1)))
  assert np.all((t - t0 >= 1) & (t - t0 <= T - 1))


def test_same_seed_same_batches_and_exact_resume(data_dir):
  first = _take(_train(data_dir), 3)
  _assert_batches_equal(first, _take(_train(data_dir), 3))
  _assert_batches_equal(first[2:], _take(_train(data_dir, start_batch=2), 1))
  other = next(_train(data_dir, seed=1))
  assert not all(np.array_equal(first[0][k], other[k]) for k in ('image_id', 'key_image_id'))


def test_shards_over_two_processes_union_to_one(data_dir):
  whole = _take(_train(data_dir, start_batch=1), 2)
  parts = [_take(_train(data_dir, start_batch=1, process_index=p, process_count=2), 2)
           for p in range(2)]
  for i, batch in enumerate(whole):
    for key in batch:
      np.testing.assert_array_equal(
          np.concatenate([parts[0][i][key], parts[1][i][key]]), batch[key], err_msg=key)
  # Evaluation too: every clip once over the processes, padding included.
  whole = _eval(data_dir, batch_size=2)
  parts = [_eval(data_dir, batch_size=2, process_index=p, process_count=2) for p in range(2)]
  for i, batch in enumerate(whole):
    for key in batch:
      np.testing.assert_array_equal(
          np.concatenate([parts[0][i][key], parts[1][i][key]]), batch[key], err_msg=key)


def test_evaluation_clips_in_file_order_padded(data_dir, clips):
  batches = _eval(data_dir, with_flow=True)
  assert len(batches) == 2  # 4 clips in batches of 3
  expected = {
      'images': ((3, T, S, S, 3), np.uint8), 'boxes': ((3, T, G, 4), np.float32),
      'classes': ((3, T, G), np.int32), 'valid': ((3, T, G), np.bool_),
      'is_crowd': ((3, T, G), np.bool_), 'areas': ((3, T, G), np.float32),
      'masks': ((3, T, G, S, S), np.uint8), 'track_ids': ((3, T, G), np.int32),
      'image_id': ((3, T), np.int64), 'scale': ((3, T), np.float32),
      'orig_size': ((3, T, 2), np.int32), 'clip_id': ((3,), np.int64),
      'flow': ((3, T - 1, S, S, 2), np.float32), 'flow_valid': ((3, T - 1, S, S), np.uint8),
      'example_valid': ((3,), np.bool_)}
  for batch in batches:
    assert set(batch) == set(expected)
    for key, (shape, dtype) in expected.items():
      assert batch[key].shape == shape and batch[key].dtype == dtype, key
  clip_ids = np.concatenate([b['clip_id'] for b in batches])
  np.testing.assert_array_equal(clip_ids, [1_000_001, 1_000_002, 1_000_003, 1_000_004, 0, 0])
  np.testing.assert_array_equal(np.concatenate([b['example_valid'] for b in batches]),
                                [True] * 4 + [False] * 2)
  for row in range(3):
    clip = clips[int(batches[0]['clip_id'][row])]
    np.testing.assert_array_equal(batches[0]['image_id'][row], clip['frames']['image/id'])
    np.testing.assert_array_equal(batches[0]['valid'][row].sum(-1),
                                  np.bincount(clip['objects']['frame_index'], minlength=T))
  pad = {key: value[1:] for key, value in batches[1].items()}
  assert np.all(pad['classes'] == -1) and np.all(pad['track_ids'] == -1)
  assert np.all(pad['scale'] == 1) and not pad['valid'].any()
  assert not pad['images'].any() and not pad['masks'].any() and not pad['image_id'].any()
  assert not pad['flow'].any() and not pad['flow_valid'].any()
  assert batches[0]['images'].max() > 100


def _bilinear_warp(image, flow):
  """`ops.warp.warp` of one image (numpy in, numpy out)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from vision_jax.ops import warp as warp_ops  # pylint: disable=g-import-not-at-top
  out = warp_ops.warp(jnp.asarray(image, jnp.float32)[None], jnp.asarray(flow)[None])
  return np.asarray(out[0], np.float64)


def test_flow_warps_the_keyframe_onto_the_current_frame_flipped_or_not(data_dir,
                                                                        resized_frames):
  """warp(key_image, flow) ~= image on flow_valid moving pixels, for both flips."""
  errors = {True: [], False: []}
  for batch in _take(_train(data_dir, hflip_prob=0.5, seed=3), 4):
    for row in range(4):
      key, current = batch['key_image'][row], batch['image'][row].astype(np.float64)
      flow, valid = batch['flow'][row], batch['flow_valid'][row].astype(bool)
      moving = valid & (np.linalg.norm(flow, axis=-1) > 0.5)
      if moving.sum() < 20:
        continue
      err = {name: np.abs(_bilinear_warp(key, f) - current)[moving].mean()
             for name, f in (('flow', flow), ('zero', np.zeros_like(flow)),
                             ('unflipped_dx', flow * [-1, 1]))}
      flipped = _is_flipped(batch, row, resized_frames)
      errors[flipped].append(err)
  for flipped, errs in errors.items():
    assert len(errs) >= 3, (flipped, len(errs))
    mean = {name: np.mean([e[name] for e in errs]) for name in errs[0]}
    assert mean['flow'] < 6.0, (flipped, mean)
    assert mean['zero'] > 2.0 * mean['flow'], (flipped, mean)
    assert mean['unflipped_dx'] > 1.5 * mean['flow'], (flipped, mean)


def _is_flipped(batch, row, resized_frames):
  """Whether the pair's current frame is the mirror of the record's (resized) frame."""
  clip_id, _, t = (int(x[row]) for x in _frames(batch))
  frames = resized_frames[clip_id]
  image = batch['image'][row].astype(int)
  straight = np.abs(image - frames[t]).mean()
  mirrored = np.abs(image - frames[t][:, ::-1]).mean()
  assert min(straight, mirrored) < 0.5, (straight, mirrored)
  return bool(mirrored < straight)


@pytest.fixture(scope='module')
def resized_frames(clips):
  """The clips' frames resized as the pipeline resizes them, by clip id."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = {}
  for clip_id, clip in clips.items():
    resized = tf.image.resize(clip['frames']['image'], (S, S), method='bilinear')
    out[clip_id] = np.clip(np.round(resized.numpy()), 0, 255).astype(int)
  return out


def test_native_resolution_gap_one_flow_is_the_stored_backward_flow(data_dir, clips):
  """At the stored resolution with gap 1 the flow is the record's flow/backward[t0]
  (mirrored with dx negated on flipped pairs), and boxes are the masks' tight boxes."""
  seen = {True: 0, False: 0}
  for batch in _take(_train(data_dir, image_size=S0, max_gap=1, hflip_prob=0.5), 3):
    for row, (clip_id, t0, t) in enumerate(zip(*_frames(batch))):
      clip = clips[int(clip_id)]
      assert t == t0 + 1
      stored = clip['frames']['image']
      flipped = bool(np.array_equal(batch['image'][row], stored[t][:, ::-1]))
      if not flipped:
        np.testing.assert_array_equal(batch['image'][row], stored[t])
      np.testing.assert_array_equal(batch['key_image'][row],
                                    stored[t0][:, ::-1] if flipped else stored[t0])
      flow = clip['flow']['backward'][t0]
      valid = clip['flow']['backward_valid'][t0]
      if flipped:
        flow, valid = flow[:, ::-1] * [-1, 1], valid[:, ::-1]
      np.testing.assert_array_equal(batch['flow'][row], flow.astype(np.float32))
      np.testing.assert_array_equal(batch['flow_valid'][row], valid)
      for g in np.flatnonzero(batch['valid'][row]):
        np.testing.assert_allclose(batch['boxes'][row, g],
                                   _mask_box(batch['masks'][row, g]), atol=1e-3)
      seen[flipped] += 1
  assert seen[True] and seen[False], seen


def test_bad_inputs_have_clear_errors(data_dir):
  with pytest.raises(ValueError, match=r'num_frames=10.*max_gap=10.*max_gap <= 9'):
    _train(data_dir, max_gap=T)
  with pytest.raises(ValueError, match='max_gap must be >= 1'):
    _train(data_dir, max_gap=0)
  with pytest.raises(ValueError, match='needs a clip dataset such as synthetic_shapes_video'):
    video_pipeline.make_video_dataset('synthetic_shapes/tiny', 'train', data_dir=data_dir,
                                      batch_size=2, image_size=S, max_instances=G,
                                      training=True)
  with pytest.raises(ValueError, match='divisible'):
    _train(data_dir, batch_size=3, process_count=2)


def test_from_experiment_config(data_dir):
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict({
      'dataset': DATASET, 'data_dir': data_dir, 'image_size': (S, S), 'max_instances': G,
      'hflip_prob': 0.5, 'max_gap': 3, 'train_split': 'train', 'eval_split': 'validation'})
  batch = next(video_pipeline.make_video_dataset_from_config(
      config, split='train', batch_size=4, training=True, seed=0, start_batch=1))
  expected = _take(_train(data_dir, max_gap=3), 2)[1]
  _assert_batches_equal([batch], [expected])
  bad = ml_collections.ConfigDict(dict(config.to_dict(), max_gapp=3))
  with pytest.raises(ValueError, match=r"unknown config.data keys \['max_gapp'\]"):
    video_pipeline.make_video_dataset_from_config(bad, split='train', batch_size=4,
                                                  training=True)
  jitter = ml_collections.ConfigDict(dict(config.to_dict(), scale_range=(0.8, 1.2)))
  with pytest.raises(ValueError, match='scale_range'):
    video_pipeline.make_video_dataset_from_config(jitter, split='train', batch_size=4,
                                                  training=True)


def test_clips_evaluate_as_detection_frames_against_the_original_ground_truth(data_dir):
  from vision_jax.evaluation import coco  # pylint: disable=g-import-not-at-top
  source = video_pipeline.get_video_source(DATASET, data_dir)
  truth = source.original_ground_truth('validation')
  assert len(truth['images']) == 4 * T
  ids = {i['id'] for i in truth['images']}
  assert truth['annotations'] and all(a['image_id'] in ids for a in truth['annotations'])
  evaluators = {
      'original': coco.CocoEvaluator(source.class_names, category_ids=source.category_ids,
                                     iou_types=('bbox', 'segm'), ground_truth=truth),
      'rebuilt': coco.CocoEvaluator(source.class_names, category_ids=source.category_ids,
                                    iou_types=('bbox', 'segm'))}
  # At the stored resolution the batch's instances are the originals: perfect scores.
  for clip_batch in _eval(data_dir, image_size=S0, batch_size=3):
    frames = video_pipeline.clip_frames_as_detection_batch(clip_batch)
    n = 3 * T
    assert frames['image'].shape == (n, S0, S0, 3) and frames['masks'].shape[:2] == (n, G)
    np.testing.assert_array_equal(frames['example_valid'],
                                  np.repeat(clip_batch['example_valid'], T))
    np.testing.assert_array_equal(frames['frame_index'], np.tile(np.arange(T), 3))
    predictions = {'boxes': frames['boxes'], 'scores': frames['valid'] * 0.9,
                   'classes': np.maximum(frames['classes'], 0), 'valid': frames['valid'],
                   'masks': frames['masks']}
    for evaluator in evaluators.values():
      evaluator.add(frames, predictions)
  rebuilt = evaluators['rebuilt'].ground_truth()
  assert len(rebuilt['annotations']) == len(truth['annotations'])
  assert {i['id'] for i in rebuilt['images']} == {i['id'] for i in truth['images']}
  for name, evaluator in evaluators.items():
    metrics = evaluator.evaluate()
    assert metrics['box/AP'] == pytest.approx(1.0), (name, metrics)
    assert metrics['mask/AP'] == pytest.approx(1.0), (name, metrics)
