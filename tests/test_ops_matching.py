"""Matcher (detectron2 semantics) and the balanced sampler (static shapes, PRNG keys)."""
import jax
import numpy as np
import pytest

from vision_jax import ops


def _reference_match(quality, thresholds, labels, low_quality):
  """detectron2's Matcher on the valid rows only, in numpy."""
  if quality.shape[0] == 0:
    return np.zeros(quality.shape[1], np.int64), np.full(quality.shape[1], labels[0])
  best = quality.max(axis=0)
  index = quality.argmax(axis=0)
  out = np.ones(quality.shape[1], np.int64)
  bounds = [-np.inf] + list(thresholds) + [np.inf]
  for label, low, high in zip(labels, bounds[:-1], bounds[1:]):
    out[(best >= low) & (best < high)] = label
  if low_quality:
    highest = quality.max(axis=1, keepdims=True)
    out[np.nonzero(quality == highest)[1]] = 1
  return index, out


@pytest.mark.parametrize('low_quality', [False, True])
def test_match_agrees_with_detectron2_procedure_on_padded_gt(low_quality):
  rng = np.random.default_rng(0)
  quality = np.round(rng.uniform(0, 1, (6, 40))**4, 2).astype(np.float32)  # rounding -> ties
  valid = np.array([True, True, False, True, False, True])
  result = jax.jit(lambda q, v: ops.match(q, v, thresholds=(0.3, 0.7), labels=(0, -1, 1),
                                          allow_low_quality_matches=low_quality))(quality, valid)
  rows = np.flatnonzero(valid)
  index, labels = _reference_match(quality[rows], (0.3, 0.7), (0, -1, 1), low_quality)
  np.testing.assert_array_equal(result.gt_index, rows[index])
  np.testing.assert_array_equal(result.labels, labels)
  assert set(np.unique(labels)) == {-1, 0, 1}


def test_low_quality_rule_upgrades_best_predictions_only():
  quality = np.array([[0.2, 0.5, 0.5, 0.1],
                      [0.0, 0.1, 0.2, 0.8]], np.float32)
  plain = ops.match(quality, thresholds=(0.3, 0.7), labels=(0, -1, 1))
  np.testing.assert_array_equal(plain.labels, [0, -1, -1, 1])
  np.testing.assert_array_equal(plain.gt_index, [0, 0, 0, 1])
  upgraded = ops.match(quality, thresholds=(0.3, 0.7), labels=(0, -1, 1),
                       allow_low_quality_matches=True)
  # Both tied predictions of gt 0 become foreground; their match stays their argmax.
  np.testing.assert_array_equal(upgraded.labels, [0, 1, 1, 1])
  np.testing.assert_array_equal(upgraded.gt_index, [0, 0, 0, 1])


def test_no_valid_ground_truth_is_all_background():
  quality = np.ones((3, 5), np.float32)
  result = ops.match(quality, np.zeros(3, bool), thresholds=(0.5,), labels=(0, 1),
                     allow_low_quality_matches=True)
  np.testing.assert_array_equal(result.labels, 0)
  np.testing.assert_array_equal(result.gt_index, 0)


def test_match_vmaps_over_images_and_rejects_bad_settings():
  rng = np.random.default_rng(1)
  quality = rng.uniform(size=(3, 4, 10)).astype(np.float32)
  valid = rng.uniform(size=(3, 4)) > 0.3
  batched = jax.vmap(lambda q, v: ops.match(q, v, allow_low_quality_matches=True))(quality,
                                                                                    valid)
  for i in range(3):
    single = ops.match(quality[i], valid[i], allow_low_quality_matches=True)
    np.testing.assert_array_equal(batched.labels[i], single.labels)
    np.testing.assert_array_equal(batched.gt_index[i], single.gt_index)
  with pytest.raises(ValueError):
    ops.match(quality[0], thresholds=(0.7, 0.3), labels=(0, -1, 1))
  with pytest.raises(ValueError):
    ops.match(quality[0], thresholds=(0.5,), labels=(0, -1, 1))


@pytest.mark.parametrize('num_pos,num_neg', [(100, 900), (10, 900), (10, 20), (0, 5)])
def test_sampler_counts_and_membership(num_pos, num_neg):
  rng = np.random.default_rng(num_pos + num_neg)
  labels = np.concatenate([np.ones(num_pos), np.zeros(num_neg), -np.ones(50)]).astype(np.int32)
  labels = labels[rng.permutation(len(labels))]
  sample = jax.jit(lambda k, l: ops.sample_balanced(k, l, 64, 0.25))(jax.random.key(0), labels)
  want_pos = min(num_pos, 16)
  want_neg = min(num_neg, 64 - want_pos)
  indices = np.asarray(sample.indices)
  valid, positive = np.asarray(sample.valid), np.asarray(sample.positive)
  assert indices.shape == valid.shape == positive.shape == (64,)
  assert valid.sum() == want_pos + want_neg and positive.sum() == want_pos
  chosen = indices[valid]
  assert len(np.unique(chosen)) == len(chosen)
  np.testing.assert_array_equal(labels[indices[positive]], 1)
  np.testing.assert_array_equal(labels[indices[valid & ~positive]], 0)
  assert np.all(valid[:want_pos + want_neg]) and not np.any(valid[want_pos + want_neg:])


def test_sampler_is_random_in_the_key_and_deterministic_for_a_key():
  labels = np.array([1] * 40 + [0] * 400, np.int32)
  draw = jax.jit(lambda k: ops.sample_balanced(k, labels, 32, 0.5, bg_label=0).indices)
  a, b, c = draw(jax.random.key(1)), draw(jax.random.key(1)), draw(jax.random.key(2))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  # Every positive gets picked sometimes: uniform without replacement, not a fixed prefix.
  picks = np.concatenate([np.asarray(draw(jax.random.key(i)))[:16] for i in range(20)])
  assert len(np.unique(picks)) == 40


def test_sampler_with_class_labels_and_vmap():
  # Box-head style: classes 0..2 are foreground, 3 is background, -1 ignored.
  labels = np.array([[0, 3, 3, -1, 2, 3, 1, 3], [3, 3, 3, 3, 3, -1, -1, 1]], np.int32)
  keys = jax.random.split(jax.random.key(3), 2)
  sample = jax.vmap(lambda k, l: ops.sample_balanced(k, l, 4, 0.5, bg_label=3))(keys, labels)
  for i in range(2):
    chosen = labels[i][np.asarray(sample.indices[i])[np.asarray(sample.valid[i])]]
    pos = np.asarray(sample.positive[i])[np.asarray(sample.valid[i])]
    assert np.all(chosen[pos] != 3) and np.all(chosen[~pos] == 3) and np.all(chosen != -1)
  np.testing.assert_array_equal(np.asarray(sample.positive).sum(1), [2, 1])
  np.testing.assert_array_equal(np.asarray(sample.valid).sum(1), [4, 4])
