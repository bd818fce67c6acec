"""Image-translation metrics and the FCN-score segmentation judge.

Scores against hand-computed values on tiny arrays; the judge learns a tiny synthetic
problem (coloured squares on two backgrounds, 16x16), deterministically, and caches.
"""
import math
import os
import time

import jax
import numpy as np
import pytest

from vision_jax.evaluation import judge
from vision_jax.evaluation import segmentation_judge as sj
from vision_jax.evaluation import translation

# The tiny problem: 4 classes (0 sky, 1 ground, 2 red square, 3 yellow square).
NUM_CLASSES = 4
TINY = dict(num_classes=NUM_CLASSES, steps=150, batch_size=16, seed=0)
QUICK = dict(num_classes=NUM_CLASSES, steps=3, batch_size=8)  # for the cache mechanics


def _squares(n, seed, size=16):
  """[n, size, size, 3] float32 in [0, 1] and [n, size, size] int32 maps.

  A horizon at a random row splits a noisy bluish sky (0) from a noisy green ground (1);
  one or two squares of side 3-6 (red: 2, yellow: 3) at random places, painted in order.
  """
  rng = np.random.default_rng(seed)
  colours = np.array([[0.45, 0.65, 0.95], [0.3, 0.55, 0.2], [0.85, 0.15, 0.1],
                      [0.9, 0.85, 0.15]], np.float32)
  images = np.zeros((n, size, size, 3), np.float32)
  maps = np.zeros((n, size, size), np.int32)
  for k in range(n):
    maps[k, rng.integers(5, size - 5):] = 1
    for _ in range(rng.integers(1, 3)):
      side = rng.integers(3, 7)
      y, x = rng.integers(0, size - side + 1, 2)
      maps[k, y:y + side, x:x + side] = rng.integers(2, 4)
    tint = rng.uniform(-0.08, 0.08, (1, 1, 3))
    images[k] = colours[maps[k]] + tint + rng.normal(0, 0.04, (size, size, 3))
  return np.clip(images, 0, 1), maps


@pytest.fixture(scope='module')
def data():
  return _squares(96, 0), _squares(32, 1)


@pytest.fixture(scope='module')
def trained(data):
  (x, s), _ = data
  start = time.time()
  variables = sj.train_segmentation_judge(x, s, **TINY)
  jax.block_until_ready(variables)
  return variables, time.time() - start


def _leaves(variables):
  return [np.asarray(leaf) for leaf in jax.tree.leaves(variables)]


def _assert_same(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(_leaves(a), _leaves(b)):
    np.testing.assert_array_equal(x, y)


def _blur(images):
  """3x3 box blur with edge padding, [N, H, W, C] float."""
  padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='edge')
  h, w = images.shape[1:3]
  return sum(padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9


def _smooth_images(n, seed, size=16):
  """Random images with structure at several scales, [n, size, size, 3] in [0, 1]."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 1, (n, size // 4, size // 4, 3))
  x = np.repeat(np.repeat(coarse, 4, 1), 4, 2) * 0.7 + rng.uniform(0, 0.3, (n, size, size, 3))
  return x.astype(np.float32)


# FCN-scores by hand.


def test_segmentation_scores_by_hand():
  truth = np.array([[[0, 0, 1, 1], [0, 0, 1, 2]]])
  pred = np.array([[[0, 1, 1, 1], [0, 0, 3, 2]]])
  # Confusion [truth, pred]: 0 -> {0: 3, 1: 1}, 1 -> {1: 2, 3: 1}, 2 -> {2: 1}.
  m = sj.confusion_matrix(pred, truth, 5)
  want = np.zeros((5, 5), np.int64)
  want[0, 0], want[0, 1], want[1, 1], want[1, 3], want[2, 2] = 3, 1, 2, 1, 1
  np.testing.assert_array_equal(m, want)
  for num_classes in (4, 5):  # class 4 is in neither: the same scores
    scores = sj.segmentation_scores(pred, truth, num_classes)
    assert scores['pixel_accuracy'] == pytest.approx(6 / 8)
    # Recall of the classes present in the truth (0, 1, 2); 3 (predicted only) is left out.
    assert scores['class_accuracy'] == pytest.approx((3 / 4 + 2 / 3 + 1) / 3)
    # IoU: 0: 3 / (4 + 3 - 3); 1: 2 / (3 + 3 - 2); 2: 1 / 1; 3: 0 / 1 (predicted only,
    # counts as 0); 4: in neither, left out.
    assert scores['class_iou'] == pytest.approx((3 / 4 + 1 / 2 + 1 + 0) / 4)
  perfect = sj.segmentation_scores(truth, truth, 5)
  assert perfect == {'pixel_accuracy': 1.0, 'class_accuracy': 1.0, 'class_iou': 1.0}
  empty = sj.segmentation_scores(np.zeros((0, 4, 4), int), np.zeros((0, 4, 4), int), 5)
  assert all(math.isnan(v) for v in empty.values())
  with pytest.raises(ValueError, match=r'\[0, 5\)'):
    sj.segmentation_scores(pred + 3, truth, 5)
  with pytest.raises(ValueError, match='shape'):
    sj.segmentation_scores(pred[:, :1], truth, 5)


# Image metrics by hand.


def test_l1_and_psnr_by_hand():
  a = np.zeros((2, 4, 4, 1), np.float32)
  b = a.copy()
  b[0] = 0.1  # mse 0.01 -> 20 dB
  b[1] = 0.01  # mse 1e-4 -> 40 dB
  assert translation.l1(a, b) == pytest.approx((0.1 + 0.01) / 2)
  assert translation.psnr(a, b) == pytest.approx(30.0, abs=1e-3)
  c = np.zeros((1, 2, 2, 1), np.float32)
  d = np.array([0.5, 0.0, 0.0, 1.0], np.float32).reshape(1, 2, 2, 1)
  assert translation.l1(c, d) == pytest.approx(1.5 / 4)
  assert translation.l1(d, d) == 0.0
  assert translation.psnr(d, d) == math.inf
  # uint8 is divided by 255 (0.5 * 255 truncates to 127).
  assert translation.l1((c * 255).astype(np.uint8), (d * 255).astype(np.uint8)) == (
      pytest.approx((127 / 255 + 1) / 4))
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    translation.l1(c * 2 - 1, d)  # an unmapped tanh output
  with pytest.raises(ValueError, match='shape'):
    translation.l1(c, np.zeros((1, 2, 3, 1), np.float32))


def test_ssim_is_one_on_identical_images_and_less_when_blurred():
  x = _smooth_images(5, 0)
  assert translation.ssim(x, x) == pytest.approx(1.0, abs=1e-5)
  blurred = translation.ssim(_blur(x), x)
  assert 0.3 < blurred < 0.95, blurred
  # Chunked (300 images > one chunk of 256, the last one padded): the same mean.
  many = _smooth_images(300, 1)
  many_blurred = _blur(many)
  per_image = [translation.ssim(many_blurred[i:i + 1], many[i:i + 1]) for i in (0, 299)]
  chunked = translation.ssim(many_blurred, many)
  assert min(per_image) - 0.1 < chunked < max(per_image) + 0.1
  assert translation.ssim(many_blurred[:256], many[:256]) * 256 + translation.ssim(
      many_blurred[256:], many[256:]) * 44 == pytest.approx(chunked * 300, rel=1e-5)


def test_sharpness_ratio():
  x = _smooth_images(6, 2)
  assert translation.sharpness_ratio(x, x) == pytest.approx(1.0)
  assert translation.sharpness_ratio(_blur(x), x) < 0.5
  # By hand: a vertical step 0 | 1 in a 2x2 image: dx^2 mean 1, dy^2 mean 0 -> energy 1.
  step = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32).reshape(1, 2, 2, 1)
  assert translation.gradient_energy(step) == pytest.approx(1.0)
  assert translation.sharpness_ratio(step * 0.5, step) == pytest.approx(0.25)
  assert math.isnan(translation.sharpness_ratio(step, np.zeros_like(step)))


def test_input_dependence():
  targets = _smooth_images(8, 3)
  assert translation.input_dependence(targets, targets) == pytest.approx(1.0)
  collapsed = np.repeat(targets.mean(0, keepdims=True), 8, axis=0)
  assert translation.input_dependence(collapsed, targets) == 0.0
  # Half the contrast around mid-grey: half the differences.
  assert translation.input_dependence(0.5 + (targets - 0.5) / 2, targets) == (
      pytest.approx(0.5, rel=1e-5))
  for n in (2, 3, 10, 101):
    j = translation.derangement(n)
    assert sorted(j) == list(range(n)) and not np.any(j == np.arange(n))
  np.testing.assert_array_equal(translation.derangement(10), translation.derangement(10))
  with pytest.raises(ValueError):
    translation.input_dependence(targets[:1], targets[:1])


# The segmentation judge.


def test_judge_learns_the_tiny_problem(trained, data):
  variables, seconds = trained
  (x, s), (x_test, s_test) = data
  predicted = sj.predict_segmentation(variables, x_test, num_classes=NUM_CLASSES)
  assert predicted.shape == (32, 16, 16) and predicted.dtype == np.int32
  scores = sj.segmentation_scores(predicted, s_test, NUM_CLASSES)
  print(f'segmentation judge: {scores} on held-out squares after {seconds:.1f} s')
  assert scores['pixel_accuracy'] > 0.97, scores
  assert scores['class_accuracy'] > 0.93, scores
  assert scores['class_iou'] > 0.88, scores
  assert set(variables) == {'params'}
  assert {leaf.dtype for leaf in _leaves(variables)} == {np.dtype(np.float32)}
  # Chunks give the same answers as one call.
  np.testing.assert_array_equal(
      sj.predict_segmentation(variables, x_test[:13], num_classes=NUM_CLASSES,
                              chunk_size=5), predicted[:13])
  assert sj.predict_segmentation(variables, x_test[:0],
                                 num_classes=NUM_CLASSES).shape == (0, 16, 16)


def test_training_twice_gives_identical_parameters(trained, data):
  (x, s), _ = data
  sj._optimizer_and_step.cache_clear()  # pylint: disable=protected-access
  jax.clear_caches()  # compiled afresh, as in another process
  _assert_same(sj.train_segmentation_judge(x, s, **TINY), trained[0])


def test_translation_metrics_keys_and_bounds(trained, data):
  variables, _ = trained
  _, (x_test, s_test) = data
  same = translation.translation_metrics(x_test, x_test, s_test, variables,
                                         num_classes=NUM_CLASSES, prefix='a2b/')
  assert list(same) == ['a2b/' + k for k in translation.TRANSLATION_KEYS]
  assert len(same) == 11 and all(isinstance(v, float) for v in same.values())
  for key in ('pixel_accuracy', 'class_accuracy', 'class_iou'):
    assert same[f'a2b/judge/{key}'] == same[f'a2b/judge_real/{key}']
  assert same['a2b/l1'] == 0 and same['a2b/psnr'] == math.inf
  assert same['a2b/ssim'] == pytest.approx(1.0, abs=1e-5)
  assert same['a2b/sharpness_ratio'] == pytest.approx(1.0)
  assert same['a2b/input_dependence'] == pytest.approx(1.0)
  # A collapsed, blurry "generator": one grey image for every input.
  grey = np.full_like(x_test, 0.5)
  bad = translation.translation_metrics((grey * 255).astype(np.uint8), x_test, s_test,
                                        variables, num_classes=NUM_CLASSES)
  assert set(bad) == set(translation.TRANSLATION_KEYS)
  assert bad['judge/pixel_accuracy'] < 0.7 < bad['judge_real/pixel_accuracy']
  assert bad['input_dependence'] == 0 and bad['sharpness_ratio'] == 0
  assert bad['l1'] > 0.1 and bad['ssim'] < 0.5


_TRAIN = sj.train_segmentation_judge


def _count_training(monkeypatch):
  calls = []
  real_train = _TRAIN

  def counting(*args, **kwargs):
    calls.append(kwargs)
    return real_train(*args, **kwargs)

  monkeypatch.setattr(sj, 'train_segmentation_judge', counting)
  return calls


def test_cache_reloads_retrains_when_stale_and_reports_corruption(data, tmp_path,
                                                                   monkeypatch):
  (x, s), _ = data
  x, s = x[:16], s[:16]
  path = str(tmp_path / 'judges' / 'squares.msgpack')
  calls = _count_training(monkeypatch)
  first = sj.load_or_train_segmentation_judge(path, x, s, **QUICK)
  assert len(calls) == 1 and os.listdir(tmp_path / 'judges') == ['squares.msgpack']
  with open(path, 'rb') as f:
    good = f.read()
  payload = judge.serialization.msgpack_restore(good)
  assert payload['fingerprint'] == sj.fingerprint(x, s, **QUICK)
  assert payload['fingerprint'] != judge.data_fingerprint('other', (x, s), {})
  assert payload['format_version'] == sj.FORMAT_VERSION

  def fail(*args, **kwargs):
    raise AssertionError('the cached judge should have been loaded, not retrained')

  monkeypatch.setattr(sj, 'train_segmentation_judge', fail)
  _assert_same(sj.load_or_train_segmentation_judge(path, x, s, **QUICK), first)
  # Other maps: stale, retrained and rewritten.
  calls = _count_training(monkeypatch)
  s2 = s.copy()
  s2[0, 0, 0] = 3 - s2[0, 0, 0]
  sj.load_or_train_segmentation_judge(path, x, s2, **QUICK)
  assert len(calls) == 1
  with open(path, 'rb') as f:
    assert judge.serialization.msgpack_restore(f.read())['fingerprint'] == (
        sj.fingerprint(x, s2, **QUICK))
  # Corrupt: the clear error, naming the file and the fix.
  for bad in (good[:len(good) // 2], b'\x00\xff not msgpack' * 5,
              judge.serialization.msgpack_serialize({'hello': np.zeros(3)})):
    with open(path, 'wb') as f:
      f.write(bad)
    with pytest.raises(sj.JudgeCacheError) as err:
      sj.load_or_train_segmentation_judge(path, x, s, **QUICK)
    assert path in str(err.value) and 'Delete the file' in str(err.value)
    assert 'segmentation judge' in str(err.value)
  # Variables of another network under the right fingerprint.
  payload['variables'] = {'params': {'down0': {'kernel': np.zeros((3, 3))}}}
  with open(path, 'wb') as f:
    f.write(judge.serialization.msgpack_serialize(payload))
  with pytest.raises(sj.JudgeCacheError, match='do not fit'):
    sj.load_or_train_segmentation_judge(path, x, s, **QUICK)
  assert len(calls) == 1


def test_judge_input_checks(data):
  (x, s), _ = data
  with pytest.raises(ValueError, match='divisible by 8'):
    sj.train_segmentation_judge(x[:, :12, :12], s[:, :12, :12], **QUICK)
  with pytest.raises(ValueError, match='semantic'):
    sj.train_segmentation_judge(x, s + NUM_CLASSES, **QUICK)
  with pytest.raises(ValueError, match='semantic'):
    sj.train_segmentation_judge(x, s[:, :8], **QUICK)
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    sj.train_segmentation_judge(x * 2 - 1, s, **QUICK)
  with pytest.raises(TypeError, match='lerning_rate'):
    sj.train_segmentation_judge(x, s, num_classes=NUM_CLASSES, lerning_rate=1.0)
