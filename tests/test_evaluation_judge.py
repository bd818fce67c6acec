"""The judge classifier: deterministic training, accuracy on real digits, caching, FD."""
import os
import time

import jax
import numpy as np
import pytest

from vision_jax.data import digits
from vision_jax.evaluation import judge

# Small runs for the mechanics (training on 64 images for a few steps).
QUICK = dict(num_classes=10, steps=4, batch_size=16)


@pytest.fixture(scope='module')
def real():
  """The real digits splits as judge inputs: float32 [N, 32, 32, 1] in [0, 1]."""
  out = {}
  for split in digits.SPLITS:
    arrays = digits.load_split_arrays(split)
    out[split] = (arrays['image'].astype(np.float32) / 255, arrays['label'])
  return out


@pytest.fixture
def small(real):
  x, y = real['train']
  return x[:64], y[:64]


def _leaves(variables):
  return [np.asarray(leaf) for leaf in jax.tree.leaves(variables)]


def _assert_same(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(_leaves(a), _leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_training_is_deterministic_and_seeded(small):
  x, y = small
  a = judge.train_judge(x, y, num_classes=10, steps=30, batch_size=16, seed=3)
  # Compiled afresh, as in another process.
  judge._optimizer_and_step.cache_clear()  # pylint: disable=protected-access
  jax.clear_caches()
  b = judge.train_judge(x, y, num_classes=10, steps=30, batch_size=16, seed=3)
  _assert_same(a, b)
  c = judge.train_judge(x, y, num_classes=10, steps=30, batch_size=16, seed=4)
  assert not np.array_equal(_leaves(a)[0], _leaves(c)[0])
  assert set(a) == {'params'}
  assert {leaf.dtype for leaf in _leaves(a)} == {np.dtype(np.float32)}


def test_judge_reaches_high_accuracy_on_real_test_digits(real):
  (x_train, y_train), (x_test, y_test) = real['train'], real['test']
  start = time.time()
  variables = judge.train_judge(x_train, y_train, num_classes=10, seed=0)
  jax.block_until_ready(variables)
  seconds = time.time() - start
  logits, features = judge.predict(variables, x_test, num_classes=10)
  acc = judge.accuracy(logits, y_test)
  print(f'judge: real test accuracy {acc:.4f} after {seconds:.1f} s of training')
  assert logits.shape == (360, 10) and logits.dtype == np.float32
  assert features.shape == (360, judge.JudgeHParams(num_classes=10).feature_dim)
  assert np.all(features >= 0)  # after the ReLU
  assert acc >= 0.95, acc
  # The judge's features separate real digits from noise by a wide Fréchet margin.
  train_features = judge.predict(variables, x_train, num_classes=10)[1]
  noise = np.random.default_rng(0).uniform(0, 1, x_test.shape).astype(np.float32)
  fd_real = judge.frechet_distance(train_features, features)
  fd_noise = judge.frechet_distance(train_features, judge.predict(
      variables, noise, num_classes=10)[1])
  assert fd_noise > 10 * fd_real, (fd_real, fd_noise)


def test_shift_moves_images_with_zero_fill():
  x = np.random.default_rng(0).uniform(0, 1, (40, 7, 9, 2)).astype(np.float32)
  key = jax.random.key(3)
  out = np.asarray(judge._shift(x, key, 2))  # pylint: disable=protected-access
  shifts = np.asarray(jax.random.randint(key, (40, 2), -2, 3))
  assert len({tuple(s) for s in shifts}) > 10
  for img, moved, (dy, dx) in zip(x, out, shifts):
    want = np.zeros_like(img)
    want[max(dy, 0):7 + min(dy, 0), max(dx, 0):9 + min(dx, 0)] = (
        img[max(-dy, 0):7 - max(dy, 0), max(-dx, 0):9 - max(dx, 0)])
    np.testing.assert_array_equal(moved, want)


def test_predict_batches_give_the_same_answers(small):
  x, y = small
  variables = judge.train_judge(x, y, **QUICK)
  logits, features = judge.predict(variables, x[:23], **QUICK)
  logits7, features7 = judge.predict(variables, x[:23], chunk_size=7, **QUICK)
  np.testing.assert_allclose(logits7, logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(features7, features, rtol=1e-5, atol=1e-5)
  direct, _ = judge.JudgeCNN(num_classes=10).apply(variables, x[:23])
  np.testing.assert_allclose(logits, direct, rtol=1e-5, atol=1e-5)
  empty_logits, empty_features = judge.predict(variables, x[:0], **QUICK)
  assert empty_logits.shape == (0, 10) and empty_features.shape == (0, 128)


def test_input_checks(small):
  x, y = small
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    judge.train_judge(x * 2 - 1, y, **QUICK)  # a tanh output not mapped
  with pytest.raises(ValueError, match='float'):
    judge.train_judge((x * 255).astype(np.uint8), y, **QUICK)
  with pytest.raises(ValueError, match='labels'):
    judge.train_judge(x, y + 10, **QUICK)
  with pytest.raises(ValueError, match='batch_size'):
    judge.train_judge(x, y, num_classes=10, steps=1, batch_size=65)
  with pytest.raises(TypeError, match='lerning_rate'):
    judge.train_judge(x, y, num_classes=10, lerning_rate=1.0)


# Caching.


def _count_training(monkeypatch):
  calls = []
  real_train = judge.train_judge

  def counting(*args, **kwargs):
    calls.append(kwargs)
    return real_train(*args, **kwargs)

  monkeypatch.setattr(judge, 'train_judge', counting)
  return calls


def test_cache_round_trip_loads_without_training(small, tmp_path, monkeypatch):
  x, y = small
  path = str(tmp_path / 'judges' / 'digits.msgpack')  # the folder is created
  calls = _count_training(monkeypatch)
  first = judge.load_or_train_judge(path, x, y, **QUICK)
  assert len(calls) == 1 and os.path.isfile(path)
  assert os.listdir(tmp_path / 'judges') == ['digits.msgpack']  # no temporary left

  def fail(*args, **kwargs):
    raise AssertionError('the cached judge should have been loaded, not retrained')

  monkeypatch.setattr(judge, 'train_judge', fail)
  second = judge.load_or_train_judge(path, x, y, **QUICK)
  _assert_same(first, second)
  # The cache is msgpack (flax.serialization), not pickle.
  with open(path, 'rb') as f:
    payload = judge.serialization.msgpack_restore(f.read())
  assert payload['fingerprint'] == judge.fingerprint(x, y, **QUICK)
  assert payload['format_version'] == judge.FORMAT_VERSION


def test_stale_fingerprint_retrains_and_rewrites(small, tmp_path, monkeypatch):
  x, y = small
  path = str(tmp_path / 'judge.msgpack')
  calls = _count_training(monkeypatch)
  judge.load_or_train_judge(path, x, y, **QUICK)
  # Other hyperparameters, then other data: each retrains and rewrites the file.
  changed = judge.load_or_train_judge(path, x, y, **dict(QUICK, seed=1))
  assert len(calls) == 2
  _assert_same(changed, judge.train_judge(x, y, **dict(QUICK, seed=1)))
  x2 = x.copy()
  x2[0, 0, 0, 0] = 0.5
  judge.load_or_train_judge(path, x2, y, **dict(QUICK, seed=1))
  assert len(calls) == 4  # (3 = the direct call above)
  with open(path, 'rb') as f:
    stored = judge.serialization.msgpack_restore(f.read())['fingerprint']
  assert stored == judge.fingerprint(x2, y, **dict(QUICK, seed=1))
  # Defaults spelled out are the same hyperparameters: no retraining.
  judge.load_or_train_judge(path, x2, y, **dict(QUICK, seed=1, max_shift=2))
  assert len(calls) == 4


def test_fingerprint_covers_data_labels_and_hparams(small):
  x, y = small
  base = judge.fingerprint(x, y, **QUICK)
  assert judge.fingerprint(x.copy(), y.copy(), **QUICK) == base
  assert judge.fingerprint(x[:-1], y[:-1], **QUICK) != base
  assert judge.fingerprint(x, np.roll(y, 1), **QUICK) != base
  assert judge.fingerprint(x, y, **dict(QUICK, learning_rate=1e-3)) != base
  assert judge.fingerprint(x, y, **dict(QUICK, widths=(8, 16, 32))) != base


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'empty', 'not_a_judge',
                                    'wrong_shapes'])
def test_unreadable_cache_raises_naming_the_path(small, tmp_path, damage):
  x, y = small
  path = str(tmp_path / 'judge.msgpack')
  judge.load_or_train_judge(path, x, y, **QUICK)
  with open(path, 'rb') as f:
    good = f.read()
  if damage == 'garbage':
    bad = b'\x00\xff not msgpack at all' * 10
  elif damage == 'truncated':
    bad = good[:len(good) // 2]
  elif damage == 'empty':
    bad = b''
  elif damage == 'not_a_judge':
    bad = judge.serialization.msgpack_serialize({'hello': np.zeros(3)})
  else:  # a matching fingerprint over variables of another network
    payload = judge.serialization.msgpack_restore(good)
    payload['variables'] = {'params': {'conv0': {'kernel': np.zeros((3, 3))}}}
    bad = judge.serialization.msgpack_serialize(payload)
  with open(path, 'wb') as f:
    f.write(bad)
  with pytest.raises(judge.JudgeCacheError) as err:
    judge.load_or_train_judge(path, x, y, **QUICK)
  message = str(err.value)
  assert path in message and 'Delete the file' in message
  # Deleting it, as the message says, rebuilds the same judge.
  os.remove(path)
  judge.load_or_train_judge(path, x, y, **QUICK)
  with open(path, 'rb') as f:
    assert f.read() == good


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(small, tmp_path,
                                                                    monkeypatch):
  x, y = small
  path = str(tmp_path / 'judge.msgpack')
  judge.load_or_train_judge(path, x, y, **QUICK)
  with open(path, 'rb') as f:
    good = f.read()

  def crash(src, dst):
    raise OSError('disk full (simulated)')

  monkeypatch.setattr(judge.os, 'replace', crash)
  with pytest.raises(OSError, match='simulated'):
    judge.load_or_train_judge(path, x, y, **dict(QUICK, seed=7))
  assert os.listdir(tmp_path) == ['judge.msgpack']
  with open(path, 'rb') as f:
    assert f.read() == good


# Metrics.


def test_accuracy():
  logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
  assert judge.accuracy(logits, np.array([0, 1, 1, 2])) == 0.5
  assert judge.accuracy(logits, np.array([0, 1, 2, 0])) == 1.0
  with pytest.raises(ValueError):
    judge.accuracy(logits, np.array([0, 1]))


def test_frechet_distance_identical_sets_is_zero():
  f = np.random.default_rng(0).normal(size=(200, 16))
  assert judge.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
  assert judge.frechet_distance(f, f[::-1].copy()) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_hand_computed_cases():
  # 1-D: a = {0, 2}: mean 1, var 2; b = {1, 5}: mean 3, var 8.
  # (1 - 3)^2 + 2 + 8 - 2 sqrt(2 * 8) = 4 + 10 - 8 = 6.
  assert judge.frechet_distance([[0.0], [2.0]], [[1.0], [5.0]]) == pytest.approx(6.0)
  # Diagonal covariances: a has means (0, 0), variances (2/3, 8/3) and zero covariance;
  # b = a * (3, 1/2) + (1, 2): means (1, 2), variances (6, 2/3).
  # |(1, 2)|^2 + (2/3 + 8/3) + (6 + 2/3) - 2 (sqrt(2/3 * 6) + sqrt(8/3 * 2/3))
  # = 5 + 10 - 2 (2 + 4/3) = 25/3.
  a = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
  b = a * [3.0, 0.5] + [1.0, 2.0]
  assert judge.frechet_distance(a, b) == pytest.approx(25 / 3)
  assert judge.frechet_distance(b, a) == pytest.approx(25 / 3)
  # A mean shift alone adds |shift|^2.
  f = np.random.default_rng(1).normal(size=(100, 5))
  assert judge.frechet_distance(f, f + 0.5) == pytest.approx(5 * 0.25, rel=1e-6)


def test_frechet_distance_is_positive_and_finite_for_singular_covariances():
  rng = np.random.default_rng(2)
  a = rng.normal(size=(6, 32))  # 6 samples in 32 dims: rank-deficient covariances
  b = rng.normal(size=(5, 32)) + 1.0
  d = judge.frechet_distance(a, b)
  assert np.isfinite(d) and d > 0
  collapsed = np.repeat(rng.normal(size=(1, 32)), 10, axis=0)  # mode collapse: cov 0
  d = judge.frechet_distance(a, collapsed)
  assert np.isfinite(d) and d > 0
  with pytest.raises(ValueError, match='same F'):
    judge.frechet_distance(a, b[:, :8])
