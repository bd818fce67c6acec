"""The procedural synthetic_shapes_video dataset: clips, tracks, masks and exact flow."""
import glob
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from vision_jax.data import datasets
from vision_jax.data import synthetic_shapes as ss
from vision_jax.data import synthetic_shapes_video as ssv

NAME = 'synthetic_shapes_video/tiny'
CONFIG = ssv.SyntheticShapesVideo.builder_configs['tiny']
S, T = CONFIG.image_size, CONFIG.num_frames


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  builder = datasets.get_builder(NAME, data_dir)
  clips = {split: list(tfds.as_numpy(builder.as_dataset(split=split)))
           for split in ('train', 'validation')}
  return data_dir, builder, clips


def _all_clips(prepared):
  _, _, clips = prepared
  return clips['train'] + clips['validation']


def _records(data_dir):
  files = sorted(glob.glob(os.path.join(data_dir, 'synthetic_shapes_video', 'tiny', '*',
                                        '*.tfrecord*')))
  return {os.path.basename(f): open(f, 'rb').read() for f in files}


def test_drawing_is_deterministic_per_index_and_split():
  a, b = ssv.render_clip(3, 'train', CONFIG), ssv.render_clip(3, 'train', CONFIG)
  for key in ('images', 'masks', 'boxes', 'flow_forward', 'valid_backward'):
    np.testing.assert_array_equal(a[key], b[key])
  for key in a['tracks']:
    np.testing.assert_array_equal(a['tracks'][key], b['tracks'][key])
  assert not np.array_equal(a['images'][0], ssv.render_clip(4, 'train', CONFIG)['images'][0])
  assert not np.array_equal(a['images'][0],
                            ssv.render_clip(3, 'validation', CONFIG)['images'][0])


def test_preparing_twice_gives_identical_records(prepared, tmp_path):
  data_dir, builder, clips = prepared
  first = _records(data_dir)
  assert len(first) >= 2  # train and validation shards
  datasets.get_builder(NAME, str(tmp_path))
  assert _records(str(tmp_path)) == first
  # The records hold what render_clip draws.
  drawn = ssv.render_clip(1, 'train', builder.builder_config)
  example = clips['train'][1]
  np.testing.assert_array_equal(example['frames']['image'], drawn['images'])
  np.testing.assert_array_equal(example['objects']['mask'][..., 0], drawn['masks'])
  np.testing.assert_array_equal(example['flow']['forward'], drawn['flow_forward'])
  np.testing.assert_array_equal(example['flow']['backward_valid'], drawn['valid_backward'])
  np.testing.assert_allclose(example['objects']['bbox'],
                             drawn['boxes'][:, [1, 0, 3, 2]] / S, atol=1e-6)


def test_feature_shapes_and_dtypes(prepared):
  _, builder, clips = prepared
  info = builder.info
  assert info.splits['train'].num_examples == 8
  assert info.splits['validation'].num_examples == 4
  assert info.features['objects']['label'].names == list(ss.THING_NAMES)
  assert info.features['tracks']['label'].names == list(ss.THING_NAMES)
  for ex in clips['train'] + clips['validation']:
    a, n = len(ex['objects']['label']), len(ex['tracks']['label'])
    expected = {
        ('frames', 'image'): ((T, S, S, 3), np.uint8),
        ('frames', 'image/id'): ((T,), np.int64),
        ('frames', 'index'): ((T,), np.int64),
        ('objects', 'frame_index'): ((a,), np.int64),
        ('objects', 'track_id'): ((a,), np.int64),
        ('objects', 'bbox'): ((a, 4), np.float32),
        ('objects', 'label'): ((a,), np.int64),
        ('objects', 'mask'): ((a, S, S, 1), np.uint8),
        ('objects', 'area'): ((a,), np.int64),
        ('objects', 'is_crowd'): ((a,), np.bool_),
        ('tracks', 'track_id'): ((n,), np.int64),
        ('tracks', 'label'): ((n,), np.int64),
        ('tracks', 'centre'): ((n, T, 2), np.float32),
        ('tracks', 'size'): ((n, T), np.float32),
        ('tracks', 'angle'): ((n, T), np.float32),
        ('flow', 'forward'): ((T - 1, S, S, 2), np.float32),
        ('flow', 'forward_valid'): ((T - 1, S, S), np.uint8),
        ('flow', 'backward'): ((T - 1, S, S, 2), np.float32),
        ('flow', 'backward_valid'): ((T - 1, S, S), np.uint8),
    }
    for (group, key), (shape, dtype) in expected.items():
      value = ex[group][key]
      assert value.shape == shape and value.dtype == dtype, (group, key, value.shape)
    assert ex['clip/id'].dtype == np.int64
    assert 1 <= n <= CONFIG.max_shapes
    np.testing.assert_array_equal(ex['frames']['index'], np.arange(T))
    assert set(np.unique(ex['objects']['mask'])) <= {0, 1}
    assert set(np.unique(ex['flow']['forward_valid'])) <= {0, 1}
    assert not ex['objects']['is_crowd'].any()


def test_clip_and_frame_ids_are_unique(prepared):
  clips = _all_clips(prepared)
  clip_ids = [int(ex['clip/id']) for ex in clips]
  assert len(set(clip_ids)) == len(clip_ids)
  assert clip_ids[:8] == list(range(1, 9))
  assert clip_ids[8:] == list(range(1_000_001, 1_000_005))
  image_ids = np.concatenate([ex['frames']['image/id'] for ex in clips])
  assert len(np.unique(image_ids)) == len(image_ids) == len(clips) * T
  for ex in clips:
    np.testing.assert_array_equal(
        ex['frames']['image/id'], ex['clip/id'] * ssv.FRAME_ID_STRIDE + np.arange(T))


def test_tracks_keep_their_label_and_instances_are_visible_and_tight(prepared):
  min_visible = ssv.MIN_VISIBLE_AREA * (S / 128) ** 2
  partly_hidden = 0
  for ex in _all_clips(prepared):
    obj, tracks = ex['objects'], ex['tracks']
    n = len(tracks['label'])
    np.testing.assert_array_equal(tracks['track_id'], np.arange(n))
    # Same track id -> same label on every frame, the track's label.
    np.testing.assert_array_equal(obj['label'], tracks['label'][obj['track_id']])
    # Sorted by frame, then track; each track at most once per frame.
    order = obj['frame_index'] * 100 + obj['track_id']
    assert np.all(np.diff(order) > 0)
    counts = np.bincount(obj['track_id'], minlength=n)
    assert np.all(counts >= np.ceil(ssv.MIN_VISIBLE_FRAMES_FRACTION * T))
    partly_hidden += int(np.sum(counts < T))
    masks = obj['mask'][..., 0].astype(bool)
    np.testing.assert_array_equal(obj['area'], masks.sum((1, 2)))
    assert np.all(obj['area'] >= min_visible)
    for frame in range(T):
      assert masks[obj['frame_index'] == frame].sum(0).max(initial=0) <= 1  # no overlap
    for mask, bbox in zip(masks, obj['bbox']):
      rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
      np.testing.assert_allclose(
          bbox * S, [rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], atol=1e-4)
  # Occlusions change over the clips: some tracks are hidden on some of their frames.
  assert partly_hidden >= 1


def test_masks_follow_the_stored_geometry(prepared):
  """Visible masks = pixel centres inside the shape and in front of the shapes behind."""
  for ex in _all_clips(prepared)[:4]:
    obj, tracks = ex['objects'], ex['tracks']
    yy, xx = np.mgrid[0:S, 0:S] + 0.5
    for frame in range(T):
      full = np.stack([ssv._inside(tracks, k, frame, xx, yy)  # pylint: disable=protected-access
                       for k in range(len(tracks['label']))])
      visible = ssv._visible_parts(full)  # pylint: disable=protected-access
      here = obj['frame_index'] == frame
      np.testing.assert_array_equal(obj['mask'][here, ..., 0],
                                    visible[obj['track_id'][here]])


def _bilinear_warp(image, flow):
  """out[y, x] = image sampled at (x + dx, y + dy) (index coordinates, clamped)."""
  s = image.shape[0]
  yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
  x = np.clip(xx + flow[..., 0], 0, s - 1)
  y = np.clip(yy + flow[..., 1], 0, s - 1)
  x0, y0 = np.minimum(np.floor(x).astype(int), s - 2), np.minimum(np.floor(y).astype(int), s - 2)
  wx, wy = (x - x0)[..., None], (y - y0)[..., None]
  return ((1 - wy) * ((1 - wx) * image[y0, x0] + wx * image[y0, x0 + 1])
          + wy * ((1 - wx) * image[y0 + 1, x0] + wx * image[y0 + 1, x0 + 1]))


def _warp_errors(source, target, flow, valid):
  """Mean |warp(source, f) - target| (grey levels) on the valid moving pixels.

  Returns ({'flow': f = flow, 'zero': f = 0, 'negated': f = -flow,
  'swapped': f = (dy, dx)}, number of pixels).
  """
  moving = valid.astype(bool) & (np.linalg.norm(flow, axis=-1) > 0.5)
  source, target = source.astype(np.float64), target.astype(np.float64)
  candidates = {'flow': flow, 'zero': np.zeros_like(flow), 'negated': -flow,
                'swapped': flow[..., ::-1]}
  errors = {key: np.abs(_bilinear_warp(source, f) - target)[moving].mean()
            for key, f in candidates.items()}
  return errors, moving.sum()


@pytest.mark.parametrize('direction', ['forward', 'backward'])
def test_flow_warps_one_frame_onto_the_other(prepared, direction):
  """forward[t]: warp(frame t+1) ~ frame t; backward[t]: warp(frame t) ~ frame t+1."""
  errors, background_errors = [], []
  for ex in _all_clips(prepared):
    frames = ex['frames']['image']
    for t in range(T - 1):
      flow = ex['flow'][direction][t]
      valid = ex['flow'][direction + '_valid'][t]
      source, target = (frames[t + 1], frames[t]) if direction == 'forward' else (
          frames[t], frames[t + 1])
      pair, count = _warp_errors(source, target, flow, valid)
      if count:
        errors.append(pair)
      # Static background: zero flow there, and it matches where visible in both.
      still = valid.astype(bool) & (np.abs(flow).max(-1) == 0)
      background_errors.append(
          np.abs(source.astype(float) - target.astype(float))[still].mean())
  assert len(errors) > 50
  mean = {key: np.mean([e[key] for e in errors]) for key in errors[0]}
  # Residual: pixel noise (~1.7 grey levels) + bilinear sampling across shape edges.
  assert mean['flow'] < 4.5, mean
  # Zero, reversed or transposed flow is much worse: the convention is the stored one.
  for wrong in ('zero', 'negated', 'swapped'):
    assert mean[wrong] > 2.5 * mean['flow'], mean
  assert np.mean([e['zero'] > e['flow'] for e in errors]) > 0.9
  assert np.mean(background_errors) < 3.0


def test_flow_directions_are_inverse_on_interiors(prepared):
  """backward[t] sampled where forward[t] lands points back to the start."""
  ex = _all_clips(prepared)[1]
  checked = 0
  for t in range(T - 1):
    forward = ex['flow']['forward'][t]
    valid = ex['flow']['forward_valid'][t].astype(bool)
    back = _bilinear_warp(ex['flow']['backward'][t], forward)
    # Away from shape edges the flow is affine, so bilinear interpolation is exact.
    interior = valid & _eroded(valid & (np.linalg.norm(forward, axis=-1) > 0), 3)
    np.testing.assert_allclose((forward + back)[interior], 0, atol=0.05)
    checked += interior.sum()
  assert checked > 500


def _eroded(mask, r):
  out = mask.copy()
  for shift in range(1, r + 1):
    out[shift:] &= mask[:-shift]
    out[:-shift] &= mask[shift:]
    out[:, shift:] &= mask[:, :-shift]
    out[:, :-shift] &= mask[:, shift:]
  return out


def test_flow_between_any_frames_from_the_stored_tracks(prepared):
  ex = _all_clips(prepared)[2]
  tracks = ex['tracks']
  for t in (0, T - 2):
    flow, valid = ssv.flow_between(tracks, S, t, t + 1)
    np.testing.assert_array_equal(flow, ex['flow']['forward'][t])
    np.testing.assert_array_equal(valid, ex['flow']['forward_valid'][t])
    flow, valid = ssv.flow_between(tracks, S, t + 1, t)
    np.testing.assert_array_equal(flow, ex['flow']['backward'][t])
    np.testing.assert_array_equal(valid, ex['flow']['backward_valid'][t])
  # Keyframe -> current frame several frames apart (YolactEdge's case): current frame 4
  # sampled on its grid, points found in keyframe 0.
  frames = ex['frames']['image']
  flow, valid = ssv.flow_between(tracks, S, 4, 0)
  errors, count = _warp_errors(frames[0], frames[4], flow, valid)
  assert count > 50 and errors['flow'] < 4.5, errors
  assert errors['zero'] > 2.5 * errors['flow'], errors
