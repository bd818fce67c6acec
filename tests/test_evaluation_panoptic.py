"""Panoptic quality: hand-checked cases, the COCO panoptic files, and panopticapi's numbers.

The reference is the PyPI package panopticapi-lite (import name `panopticapi`), installed
with `pip install --no-deps panopticapi-lite` (its metadata pins numpy<2); the tests that
need it skip where it is absent. Its multiprocessing is replaced by its single-core
function (same arithmetic, no worker processes).
"""
import json
import os

import numpy as np
from PIL import Image
import pytest

from vision_jax.evaluation import panoptic

CATEGORIES = [
    {'id': 1, 'name': 'person', 'isthing': 1},
    {'id': 2, 'name': 'car', 'isthing': 1},
    {'id': 5, 'name': 'dog', 'isthing': 1},
    {'id': 7, 'name': 'sky', 'isthing': 0},
    {'id': 9, 'name': 'grass', 'isthing': 0},
    {'id': 11, 'name': 'wall', 'isthing': 0},
    {'id': 13, 'name': 'never-seen', 'isthing': 0},  # no TP + FP + FN: not averaged
]
THINGS, STUFF = (1, 2, 5), (7, 9, 11)
SEEDS = (0, 1, 2, 3, 4)


def _rect(rng, h, w, min_side=3):
  y0, x0 = rng.integers(0, h - min_side), rng.integers(0, w - min_side)
  return (slice(y0, y0 + rng.integers(min_side, h // 2 + 2)),
          slice(x0, x0 + rng.integers(min_side, w // 2 + 2)))


def _segments_of(seg, info):
  """Segments (dicts, in listing order) of the ids still present in seg."""
  present = set(np.unique(seg).tolist())
  return [dict(id=i, **info[i]) for i in info if i in present]


def _random_image(rng, h, w):
  """gt and pred ([H, W] ids, segment dicts) with stuff, things, crowd and void."""
  ids = iter(rng.choice(np.arange(1, 2 ** 24), 64, replace=False).tolist())
  gt = np.zeros((h, w), np.int64)
  info = {}

  def paint(target, region, category, crowd=0):
    i = next(ids)
    target[region] = i
    info[i] = {'category_id': int(category), 'iscrowd': crowd}
    return i

  gt[:h // 2] = paint(gt, slice(0, h // 2), rng.choice(STUFF))
  gt[h // 2:] = paint(gt, slice(h // 2, h), rng.choice(STUFF))
  for _ in range(rng.integers(2, 6)):
    paint(gt, _rect(rng, h, w), rng.choice(THINGS))
  crowds = []
  for _ in range(rng.integers(0, 3)):  # two crowds of one category: the last one counts
    crowds.append(paint(gt, _rect(rng, h, w), 1, crowd=1))
  if rng.random() < 0.3:
    paint(gt, _rect(rng, h, w), rng.choice(STUFF), crowd=1)
  for _ in range(rng.integers(1, 3)):
    gt[_rect(rng, h, w)] = 0  # void
  gt_segments = _segments_of(gt, info)

  # Prediction: the gt shifted, relabelled, some categories wrong, plus extra segments.
  shifted = np.roll(gt, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
  pred = np.zeros_like(gt)
  pred_info = {}
  for segment in gt_segments:
    if rng.random() < 0.1:
      continue  # missed: stays void
    i = next(ids)
    pred[shifted == segment['id']] = i
    category = segment['category_id']
    if rng.random() < 0.15:
      category = int(rng.choice(THINGS + STUFF))
    pred_info[i] = {'category_id': category}
  for _ in range(rng.integers(0, 4)):
    i = next(ids)
    pred[_rect(rng, h, w)] = i
    pred_info[i] = {'category_id': int(rng.choice(THINGS + STUFF))}
  for crowd in crowds[:1]:  # a person mostly on the first (not the counted) crowd
    i = next(ids)
    pred[(gt == crowd) & (rng.random(gt.shape) < 0.8)] = i
    pred_info[i] = {'category_id': 1}
  if rng.random() < 0.5:
    i = next(ids)
    pred[(gt == 0) & (rng.random(gt.shape) < 0.7)] = i  # mostly on void
    pred_info[i] = {'category_id': int(rng.choice(THINGS))}
  if rng.random() < 0.5:
    pred[_rect(rng, h, w)] = 0
  return gt, gt_segments, pred, _segments_of(pred, pred_info)


def _dataset(seed, num_images=3):
  rng = np.random.default_rng(seed)
  return [(1000 + k, *_random_image(rng, int(rng.integers(20, 36)), int(rng.integers(24, 44))))
          for k in range(num_images)]


def _write(tmp_path, data):
  gt_json = str(tmp_path / 'panoptic_gt.json')
  pred_json = str(tmp_path / 'predictions' / 'panoptic_pred.json')
  panoptic.write_coco_panoptic(gt_json, [(i, g, gs) for i, g, gs, _, _ in data], CATEGORIES)
  panoptic.write_coco_panoptic(pred_json, [(i, p, ps) for i, _, _, p, ps in data],
                               CATEGORIES)
  return gt_json, pred_json


def _panopticapi(monkeypatch):
  """panopticapi.evaluation with its multiprocessing replaced by its single core."""
  evaluation = pytest.importorskip('panopticapi.evaluation')

  def single_core(matched, gt_folder, pred_folder, categories):
    return evaluation.pq_compute_single_core(0, matched, gt_folder, pred_folder, categories)

  monkeypatch.setattr(evaluation, 'pq_compute_multi_core', single_core)
  return evaluation


def _assert_same(ours, reference, tol=1e-6):
  assert set(ours) == set(reference) == {'All', 'Things', 'Stuff', 'per_class'}
  for name in ('All', 'Things', 'Stuff'):
    assert ours[name]['n'] == reference[name]['n'], name
    for key in ('pq', 'sq', 'rq'):
      assert ours[name][key] == pytest.approx(reference[name][key], abs=tol), (name, key)
  assert list(ours['per_class']) == list(reference['per_class'])
  for cat_id, values in reference['per_class'].items():
    assert set(ours['per_class'][cat_id]) == set(values)
    for key, value in values.items():
      assert ours['per_class'][cat_id][key] == pytest.approx(value, abs=tol), (cat_id, key)


# --- panopticapi parity ------------------------------------------------------------------


@pytest.mark.parametrize('seed', SEEDS)
def test_pq_compute_equals_panopticapi(tmp_path, monkeypatch, seed):
  evaluation = _panopticapi(monkeypatch)
  gt_json, pred_json = _write(tmp_path, _dataset(seed))
  ours = panoptic.pq_compute(gt_json, pred_json)
  reference = evaluation.pq_compute(gt_json, pred_json)
  _assert_same(ours, reference)
  assert ours['Things']['n'] > 0 and ours['Stuff']['n'] > 0
  assert ours['per_class'][13] == {'pq': 0.0, 'sq': 0.0, 'rq': 0.0}


def test_ground_truth_json_area_is_used_as_panopticapi_does(tmp_path, monkeypatch):
  evaluation = _panopticapi(monkeypatch)
  gt_json, pred_json = _write(tmp_path, _dataset(6))

  def shrink(content):  # areas that disagree with the PNGs: panopticapi trusts the json
    for annotation in content['annotations']:
      for segment in annotation['segments_info']:
        segment['area'] = max(1, int(segment['area'] * 0.7))

  before = panoptic.pq_compute(gt_json, pred_json)
  _edit_json(gt_json, shrink)
  ours = panoptic.pq_compute(gt_json, pred_json)
  _assert_same(ours, evaluation.pq_compute(gt_json, pred_json))
  assert ours != before


@pytest.mark.parametrize('seed', SEEDS[:2])
def test_per_category_counts_equal_panopticapi(tmp_path, monkeypatch, seed):
  evaluation = _panopticapi(monkeypatch)
  data = _dataset(seed, num_images=4)
  gt_json, pred_json = _write(tmp_path, data)
  with open(gt_json) as f:
    gt = json.load(f)
  with open(pred_json) as f:
    pred = json.load(f)
  categories = {c['id']: c for c in gt['categories']}
  reference = evaluation.pq_compute_single_core(
      0, list(zip(gt['annotations'], pred['annotations'])), gt_json[:-5], pred_json[:-5],
      categories)
  stats = panoptic.PanopticStats(CATEGORIES)
  for _, g, gs, p, ps in data:
    stats.update(g, gs, p, ps)
  ours = stats.per_category()
  used = {c for c, s in reference.pq_per_cat.items() if s.tp + s.fp + s.fn}
  assert used == {c for c, s in ours.items() if s['tp'] + s['fp'] + s['fn']}
  for cat_id in used:
    ref = reference.pq_per_cat[cat_id]
    assert (ours[cat_id]['tp'], ours[cat_id]['fp'], ours[cat_id]['fn']) == (
        ref.tp, ref.fp, ref.fn), cat_id
    assert ours[cat_id]['iou'] == pytest.approx(ref.iou, abs=1e-9)


def test_written_pngs_decode_as_panopticapi_does(tmp_path):
  utils = pytest.importorskip('panopticapi.utils')
  data = _dataset(7, num_images=1)
  gt_json, _ = _write(tmp_path, data)
  with open(gt_json) as f:
    annotation = json.load(f)['annotations'][0]
  path = os.path.join(gt_json[:-5], annotation['file_name'])
  decoded = utils.rgb2id(np.array(Image.open(path), dtype=np.uint32))
  np.testing.assert_array_equal(decoded, data[0][1])


# --- our own paths -----------------------------------------------------------------------


@pytest.mark.parametrize('seed', SEEDS[:3])
def test_in_memory_equals_files(tmp_path, seed):
  data = _dataset(seed)
  gt_json, pred_json = _write(tmp_path, data)
  from_files = panoptic.pq_compute(gt_json, pred_json)
  stats = panoptic.PanopticStats(CATEGORIES)
  for _, g, gs, p, ps in data:
    # ground truth without 'area' (counted), predictions as an (id, category) array
    stats.update(g.astype(np.int32), [{k: s[k] for k in ('id', 'category_id', 'iscrowd')}
                                      for s in gs],
                 p, np.array([(s['id'], s['category_id']) for s in ps]))
  assert stats.results() == from_files
  metrics = stats.summarize(per_class=True)
  for name, suffix in (('All', ''), ('Things', '_th'), ('Stuff', '_st')):
    for metric in ('PQ', 'SQ', 'RQ'):
      assert metrics[f'panoptic/{metric}{suffix}'] == from_files[name][metric.lower()]
  assert metrics['panoptic/PQ/person'] == from_files['per_class'][1]['pq']
  assert metrics['panoptic/RQ/never-seen'] == 0.0
  assert set(stats.summarize()) == {f'panoptic/{m}{s}' for m in ('PQ', 'SQ', 'RQ')
                                    for s in ('', '_th', '_st')}


def test_written_files_round_trip(tmp_path):
  data = _dataset(5)
  gt_json, pred_json = _write(tmp_path, data)
  with open(pred_json) as f:
    content = json.load(f)
  assert [a['image_id'] for a in content['annotations']] == [d[0] for d in data]
  for (_, _, _, pred, segments), annotation in zip(data, content['annotations']):
    decoded = panoptic.read_segmentation(
        os.path.join(pred_json[:-5], annotation['file_name']))
    np.testing.assert_array_equal(decoded, pred)
    for segment in annotation['segments_info']:
      mask = pred == segment['id']
      ys, xs = np.nonzero(mask)
      assert segment['area'] == mask.sum()
      assert segment['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                 ys.max() - ys.min() + 1]
    assert [s['id'] for s in annotation['segments_info']] == [s['id'] for s in segments]
  # a prediction scored against itself is perfect
  perfect = panoptic.pq_compute(pred_json, pred_json)
  assert perfect['All']['pq'] == pytest.approx(1.0)
  assert perfect['All']['sq'] == pytest.approx(1.0)


def _tiny_hand_case():
  """10 x 10: a person (rows 0-4), sky (rows 5-9, cols 0-4), void (rows 5-9, cols 5-9)."""
  gt = np.zeros((10, 10), np.int64)
  gt[:5] = 1
  gt[5:, :5] = 2
  gt_segments = [{'id': 1, 'category_id': 1, 'iscrowd': 0},
                 {'id': 2, 'category_id': 7, 'iscrowd': 0}]
  pred = np.zeros((10, 10), np.int64)
  pred[:4] = 5             # person: 40 px on the person,
  pred[5:, 5:7] = 5        # 10 px on void: IoU = 40 / (50 + 50 - 40 - 10) = 0.8
  pred[4] = 6              # sky: 10 px on the person,
  pred[5:, :2] = 6         # 10 on the sky: IoU 10 / 35: no match, a FP; the sky a FN
  pred[5:, 7:] = 7         # car entirely on void: not a FP
  pred_segments = [(5, 1), (6, 7), (7, 2)]
  return gt, gt_segments, pred, pred_segments


def test_hand_computed_void_rules():
  stats = panoptic.PanopticStats(CATEGORIES)
  stats.update(*_tiny_hand_case())
  assert stats.per_category() == {1: {'tp': 1, 'fp': 0, 'fn': 0, 'iou': 0.8},
                                   7: {'tp': 0, 'fp': 1, 'fn': 1, 'iou': 0.0}}
  results = stats.results()
  assert results['All'] == {'pq': pytest.approx(0.4), 'sq': pytest.approx(0.4),
                            'rq': 0.5, 'n': 2}
  assert results['Things'] == {'pq': pytest.approx(0.8), 'sq': pytest.approx(0.8),
                               'rq': 1.0, 'n': 1}
  assert results['Stuff'] == {'pq': 0.0, 'sq': 0.0, 'rq': 0.0, 'n': 1}
  assert results['per_class'][2] == {'pq': 0.0, 'sq': 0.0, 'rq': 0.0}


def test_hand_computed_crowd_rules():
  gt = np.zeros((10, 10), np.int64)
  gt[:, :5] = 3            # a person crowd (50 px)
  gt[:, 5:] = 4            # a person (50 px)
  gt_segments = [(3, 1, 1), (4, 1, 0)]
  pred = np.zeros((10, 10), np.int64)
  pred[:, 5:] = 8          # the person: IoU 1
  pred[:6, :5] = 9         # a person 30 px on the crowd + 10 px on the person: ignored
  pred[6:, :5] = 10        # a car on the person crowd (other category): a FP
  pred[:2, 5:] = 9
  stats = panoptic.PanopticStats(CATEGORIES)
  stats.update(gt, gt_segments, pred, [(8, 1), (9, 1), (10, 2)])
  per = stats.per_category()
  assert per[1] == {'tp': 1, 'fp': 0, 'fn': 0, 'iou': 40 / 50}
  assert per[2] == {'tp': 0, 'fp': 1, 'fn': 0, 'iou': 0.0}


def test_undefined_group_is_minus_one():
  stats = panoptic.PanopticStats([c for c in CATEGORIES if c['isthing']])
  gt, gt_segments, pred, _ = _tiny_hand_case()
  gt[5:, :5] = 0
  stats.update(gt, gt_segments[:1], pred, [(5, 1), (6, 2), (7, 2)])
  results = stats.results()
  assert results['Stuff'] == {'pq': -1.0, 'sq': -1.0, 'rq': -1.0, 'n': 0}
  assert stats.summarize()['panoptic/PQ_st'] == -1.0
  assert results['Things']['n'] == 2


def test_merge_equals_one_accumulator():
  data = _dataset(3, num_images=4)
  whole, first, second = (panoptic.PanopticStats(CATEGORIES) for _ in range(3))
  for k, (_, g, gs, p, ps) in enumerate(data):
    whole.update(g, gs, p, ps)
    (first if k < 2 else second).update(g, gs, p, ps)
  first.merge(second)
  merged, expected = first.per_category(), whole.per_category()
  assert set(merged) == set(expected)
  for cat_id, stat in expected.items():
    assert merged[cat_id] == {**stat, 'iou': pytest.approx(stat['iou'])}


# --- errors -------------------------------------------------------------------------------


def _edit_json(path, edit):
  with open(path) as f:
    content = json.load(f)
  edit(content)
  with open(path, 'w') as f:
    json.dump(content, f)


def test_unknown_category_in_prediction_file(tmp_path):
  gt_json, pred_json = _write(tmp_path, _dataset(0, num_images=2))
  _edit_json(pred_json, lambda c: c['annotations'][1]['segments_info'][0].update(
      category_id=99))
  with pytest.raises(ValueError, match=r'category id 99.*not in the category list') as error:
    panoptic.pq_compute(gt_json, pred_json)
  assert 'id 1001' in str(error.value) and '000000001001.png' in str(error.value)


def test_unknown_category_in_memory(tmp_path):
  gt, gt_segments, pred, _ = _tiny_hand_case()
  stats = panoptic.PanopticStats(CATEGORIES)
  with pytest.raises(ValueError, match=r'predicted segment 6 \(image 17\) has category id 4'):
    stats.update(gt, gt_segments, pred, [(5, 1), (6, 4), (7, 2)], image=17)
  gt_segments[1]['category_id'] = 3
  with pytest.raises(ValueError, match='ground-truth segment 2 .*category id 3'):
    stats.update(gt, gt_segments, pred, [(5, 1), (6, 7), (7, 2)], image=17)
  with pytest.raises(ValueError, match=r'written segment 2 \(image 1\) has category id 3, '
                     'which is not in the category list'):
    panoptic.PanopticWriter(str(tmp_path / 'out.json'), CATEGORIES).add(1, gt, gt_segments)


def test_json_segment_missing_from_png(tmp_path):
  gt_json, pred_json = _write(tmp_path, _dataset(1, num_images=2))
  _edit_json(pred_json, lambda c: c['annotations'][0]['segments_info'].append(
      {'id': 2 ** 24 - 1, 'category_id': 1}))
  with pytest.raises(ValueError, match=r'predicted segment ids \[16777215\].*no pixel'):
    panoptic.pq_compute(gt_json, pred_json)


def test_png_id_without_segment_info(tmp_path):
  data = _dataset(2, num_images=2)
  gt_json, pred_json = _write(tmp_path, data)
  dropped = data[0][2][0]['id']
  _edit_json(gt_json, lambda c: c['annotations'][0]['segments_info'].pop(0))
  with pytest.raises(ValueError, match=rf'segment ids \[{dropped}\] are in the ground-truth '
                     'segmentation .*panoptic_gt/000000001000.png.* no segment info'):
    panoptic.pq_compute(gt_json, pred_json)


def test_file_level_errors(tmp_path):
  gt_json, pred_json = _write(tmp_path, _dataset(3, num_images=2))
  _edit_json(pred_json, lambda c: c['annotations'].pop())
  with pytest.raises(ValueError, match='no prediction for image id 1001'):
    panoptic.pq_compute(gt_json, pred_json)
  with pytest.raises(FileNotFoundError, match='prediction segmentation folder'):
    panoptic.pq_compute(gt_json, pred_json, pred_folder=str(tmp_path / 'absent'))
  gray = tmp_path / 'gray.png'
  Image.fromarray(np.zeros((4, 4), np.uint8)).save(gray)
  with pytest.raises(ValueError, match='is L; COCO panoptic PNGs are RGB'):
    panoptic.read_segmentation(str(gray))


def test_malformed_segments():
  gt, gt_segments, pred, pred_segments = _tiny_hand_case()
  stats = panoptic.PanopticStats(CATEGORIES)
  with pytest.raises(ValueError, match='predicted segment id 5 .*more than once'):
    stats.update(gt, gt_segments, pred, pred_segments + [(5, 2)])
  with pytest.raises(ValueError, match='segment id 0 .*0 is void'):
    stats.update(gt, gt_segments, pred, pred_segments + [(0, 2)])
  with pytest.raises(ValueError, match=r'is \(10, 10\) but the prediction is \(10, 9\)'):
    stats.update(gt, gt_segments, pred[:, :9], pred_segments)
  with pytest.raises(ValueError, match=r'is \[N, 2 \| 3\], not \(2,\)'):
    stats.update(gt, gt_segments, pred, np.array([5, 1]))
  with pytest.raises(ValueError, match="has no 'isthing'"):
    panoptic.PanopticStats([{'id': 1, 'name': 'person'}])
  with pytest.raises(ValueError, match='no categories'):
    panoptic.PanopticStats().results()
