"""Panoptic quality (PQ = SQ x RQ) with panopticapi's numbers, and the COCO panoptic format.

COCO's rules, as panopticapi's `pq_compute` applies them (Kirillov et al., 2019):
  * a predicted and a ground-truth segment of the same category match at IoU > 0.5 (so a
    match is unique), where the union leaves out the predicted pixels that fall on void
    (ground-truth id 0): union = |pred| + |gt| - |pred & gt| - |pred & void|;
  * crowd ground truth (iscrowd=1) is never matched and is no false negative;
  * an unmatched predicted segment is no false positive when more than half of it lies on
    void plus the crowd region of its own category (where an image has several crowd
    segments of one category, panopticapi keeps the last one listed: so do we);
  * per category: PQ = sum IoU / (TP + FP/2 + FN/2), SQ = sum IoU / TP (0 without a TP),
    RQ = TP / (TP + FP/2 + FN/2); 'All', 'Things' (isthing == 1) and 'Stuff' average them
    over the categories with any TP + FP + FN, `n` of them. Where n is 0 panopticapi
    divides by zero; we report -1 (undefined, as `coco.py` does).
  * areas: a ground-truth segment's comes from its 'area' when given (panopticapi reads the
    json's), otherwise from its pixels; a predicted segment's always from its pixels.
The matching is vectorised: one `np.unique` of gt_id * 2^24 + pred_id per image gives
every intersection. Sums run in panopticapi's order (pairs by ascending (gt, pred) id).

Conventions
  segmentation  [H, W] int, a segment id per pixel; 0 is void (unlabeled). Ids < 2^24.
  segments      COCO `segments_info` dicts ('id', 'category_id', optional 'iscrowd' and
                'area') or an int array [N, 2 | 3] of (id, category_id[, iscrowd]).
                Every non-zero id of the segmentation has exactly one segment and every
                segment appears in the segmentation, else ValueError.
  categories    COCO `categories` (a list of dicts) or {id: dict}, each with 'isthing'
                (and 'name' for per-class metric names).
  PNG           COCO panoptic: RGB, id = R + 256 G + 256^2 B, next to a json whose
                'annotations' hold per image 'image_id', 'file_name' (the PNG) and
                'segments_info'. A json X.json keeps its PNGs in the folder X/.

  stats = PanopticStats(categories)
  for gt_map, gt_segments, pred_map, pred_segments in images:
    stats.update(gt_map, gt_segments, pred_map, pred_segments, image=image_id)
  stats.summarize()    # {'panoptic/PQ': ..., 'panoptic/PQ_th': ..., 'panoptic/PQ_st': ...}
  stats.results()      # panopticapi's dict: 'All' | 'Things' | 'Stuff' | 'per_class'

  with PanopticWriter('workdir/panoptic_predictions.json', categories) as writer:
    writer.add(image_id, pred_map, pred_segments)   # PNGs in workdir/panoptic_predictions/
  pq_compute('panoptic_val2017.json', 'workdir/panoptic_predictions.json')
  # = panopticapi.evaluation.pq_compute on the same files.
"""
import json
import os
from typing import Any, Iterable, Mapping, Sequence

from absl import logging
import numpy as np
from PIL import Image

OFFSET = 256 * 256 * 256  # ids are < 2^24 (three 8-bit channels)
VOID = 0
_GROUPS = (('All', None, ''), ('Things', True, '_th'), ('Stuff', False, '_st'))

Categories = Sequence[Mapping[str, Any]] | Mapping[int, Mapping[str, Any]]


def coco_categories(categories: Categories) -> dict[int, dict]:
  """{id: category} from a COCO `categories` list or dict; each needs 'isthing'."""
  items = (list(categories.items()) if isinstance(categories, Mapping)
           else [(c.get('id'), c) for c in categories])
  out = {}
  for cat_id, category in items:
    if cat_id is None:
      raise ValueError(f'category {category} has no id')
    cat_id = int(cat_id)
    if cat_id in out:
      raise ValueError(f'category id {cat_id} appears twice in the category list')
    if 'isthing' not in category:
      raise ValueError(f"category {cat_id} ({category.get('name', '?')}) has no 'isthing'")
    out[cat_id] = dict(category, id=cat_id)
  return out


class _Segments:
  """One image's segments as arrays, in the order given."""

  def __init__(self, segments, what: str, where: str):
    if isinstance(segments, np.ndarray) or (
        len(segments) and not isinstance(segments[0], Mapping)):
      table = np.asarray(segments, np.int64)
      table = table.reshape(0, 3) if table.size == 0 else table
      if table.ndim != 2 or table.shape[1] not in (2, 3):
        raise ValueError(f'{what} segments{where}: an array of (id, category_id[, iscrowd])'
                         f' rows is [N, 2 | 3], not {table.shape}')
      self.ids, self.categories = table[:, 0], table[:, 1]
      self.crowd = table[:, 2] == 1 if table.shape[1] == 3 else np.zeros(len(table), bool)
      self.areas = None
    else:
      self.ids = np.array([int(s['id']) for s in segments], np.int64)
      self.categories = np.array([int(s['category_id']) for s in segments], np.int64)
      self.crowd = np.array([int(s.get('iscrowd', 0)) == 1 for s in segments], bool)
      self.areas = (np.array([s['area'] for s in segments], np.float64)
                    if segments and all('area' in s for s in segments) else None)
    bad = self.ids[(self.ids <= VOID) | (self.ids >= OFFSET)]
    if bad.size:
      raise ValueError(f'{what} segment id {int(bad[0])}{where} is out of range: ids are '
                       f'1 .. {OFFSET - 1} (0 is void)')
    unique, counts = np.unique(self.ids, return_counts=True)
    if (counts > 1).any():
      raise ValueError(f'{what} segment id {int(unique[counts > 1][0])}{where} is listed '
                       'more than once')

  def check_categories(self, categories: Mapping[int, Any] | None, what: str, where: str):
    if categories is None:
      return
    for segment_id, cat_id in zip(self.ids.tolist(), self.categories.tolist()):
      if cat_id not in categories:
        raise ValueError(f'{what} segment {segment_id}{where} has category id {cat_id}, '
                         f'which is not in the category list {sorted(categories)}')

  def check_pixels(self, present: np.ndarray, what: str, where: str):
    """present: the segmentation's sorted unique ids (void included)."""
    present = present[present != VOID]
    extra = np.setdiff1d(present, self.ids)
    if extra.size:
      raise ValueError(f'segment ids {extra[:10].tolist()} are in the {what} segmentation'
                       f'{where} but have no segment info')
    missing = np.setdiff1d(self.ids, present)
    if missing.size:
      raise ValueError(f'{what} segment ids {missing[:10].tolist()}{where} have segment info'
                       ' but no pixel in the segmentation')


def _where(image) -> str:
  return '' if image is None else f' (image {image})'


def _segmentation(segmentation, what: str, where: str) -> np.ndarray:
  seg = np.asarray(segmentation)
  if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer):
    raise ValueError(f'the {what} segmentation{where} must be [H, W] integer ids, not '
                     f'{seg.dtype} {seg.shape}')
  if seg.size and (seg.min() < 0 or seg.max() >= OFFSET):
    raise ValueError(f'the {what} segmentation{where} has ids outside 0 .. {OFFSET - 1}')
  return seg.astype(np.int64)


class PanopticStats:
  """Per-category TP, FP, FN and IoU sum over images (panopticapi's PQStat), vectorised."""

  def __init__(self, categories: Categories | None = None):
    """categories: checked against the segments in `update` and the default of
    `results` / `summarize`; None: no check, categories given to `results`."""
    self.categories = None if categories is None else coco_categories(categories)
    self._row: dict[int, int] = {}
    self._tp = np.zeros(0, np.int64)
    self._fp = np.zeros(0, np.int64)
    self._fn = np.zeros(0, np.int64)
    self._iou = np.zeros(0, np.float64)

  def _rows(self, category_ids: np.ndarray) -> np.ndarray:
    """Row of each category id in the stat arrays (new categories get zero rows)."""
    rows = np.empty(len(category_ids), np.int64)
    for k, cat_id in enumerate(category_ids.tolist()):
      if cat_id not in self._row:
        self._row[cat_id] = len(self._row)
        self._tp, self._fp, self._fn = (np.append(a, 0) for a in (self._tp, self._fp,
                                                                  self._fn))
        self._iou = np.append(self._iou, 0.0)
      rows[k] = self._row[cat_id]
    return rows

  def update(self, gt_segmentation, gt_segments, pred_segmentation, pred_segments, *,
             image=None) -> None:
    """Adds one image (module docstring for the formats; `image` names it in errors)."""
    where = _where(image)
    gt_map = _segmentation(gt_segmentation, 'ground-truth', where)
    pred_map = _segmentation(pred_segmentation, 'predicted', where)
    if gt_map.shape != pred_map.shape:
      raise ValueError(f'the ground-truth segmentation{where} is {gt_map.shape} but the '
                       f'prediction is {pred_map.shape}')
    gt = _Segments(gt_segments, 'ground-truth', where)
    pred = _Segments(pred_segments, 'predicted', where)
    gt.check_categories(self.categories, 'ground-truth', where)
    pred.check_categories(self.categories, 'predicted', where)
    gt_present, gt_counts = np.unique(gt_map, return_counts=True)
    gt.check_pixels(gt_present, 'ground-truth', where)
    pred_present, pred_counts = np.unique(pred_map, return_counts=True)
    pred.check_pixels(pred_present, 'predicted', where)

    # Segments sorted by id; ids present == ids listed, so the counts line up.
    gt_order, pred_order = np.argsort(gt.ids), np.argsort(pred.ids)
    gt_ids, pred_ids = gt.ids[gt_order], pred.ids[pred_order]
    gt_cat, pred_cat = gt.categories[gt_order], pred.categories[pred_order]
    gt_crowd = gt.crowd[gt_order]
    gt_area = (gt.areas[gt_order] if gt.areas is not None
               else gt_counts[gt_present != VOID].astype(np.float64))
    pred_area = pred_counts[pred_present != VOID].astype(np.float64)

    # Every (gt id, pred id) pair that shares pixels, with its intersection.
    keys, inter = np.unique(gt_map.ravel() * OFFSET + pred_map.ravel(), return_counts=True)
    pair_gt, pair_pred = keys // OFFSET, keys % OFFSET
    inter = inter.astype(np.float64)
    on_void = np.zeros(len(pred_ids))
    sel = (pair_gt == VOID) & (pair_pred != VOID)
    on_void[np.searchsorted(pred_ids, pair_pred[sel])] = inter[sel]

    sel = (pair_gt != VOID) & (pair_pred != VOID)
    gi = np.searchsorted(gt_ids, pair_gt[sel])
    pi = np.searchsorted(pred_ids, pair_pred[sel])
    same = ~gt_crowd[gi] & (gt_cat[gi] == pred_cat[pi])
    union = pred_area[pi] + gt_area[gi] - inter[sel] - on_void[pi]
    with np.errstate(divide='ignore', invalid='ignore'):
      iou = inter[sel] / union
    match = same & (iou > 0.5)
    rows = self._rows(gt_cat[gi[match]])
    np.add.at(self._tp, rows, 1)
    np.add.at(self._iou, rows, iou[match])  # in pair order, as panopticapi sums
    gt_matched = np.zeros(len(gt_ids), bool)
    gt_matched[gi[match]] = True
    pred_matched = np.zeros(len(pred_ids), bool)
    pred_matched[pi[match]] = True

    rows = self._rows(gt_cat[~gt_matched & ~gt_crowd])  # may grow the arrays: first
    np.add.at(self._fn, rows, 1)

    # The crowd segment of each category: the last one listed (panopticapi's dict).
    crowd_of = {c: i for i, c, crowd in zip(gt.ids.tolist(), gt.categories.tolist(),
                                            gt.crowd.tolist()) if crowd}
    crowd_ids = np.array([crowd_of.get(c, VOID) for c in pred_cat.tolist()], np.int64)
    crowd_keys = crowd_ids * OFFSET + pred_ids
    found = np.minimum(np.searchsorted(keys, crowd_keys), len(keys) - 1)
    on_crowd = np.where((crowd_ids != VOID) & (keys[found] == crowd_keys), inter[found], 0.0)
    ignored = (on_void + on_crowd) / pred_area > 0.5
    rows = self._rows(pred_cat[~pred_matched & ~ignored])
    np.add.at(self._fp, rows, 1)

  def merge(self, other: 'PanopticStats') -> None:
    """Adds another accumulator's counts (e.g. from another process)."""
    for cat_id, stat in other.per_category().items():
      row = self._rows(np.array([cat_id]))[0]
      self._tp[row] += stat['tp']
      self._fp[row] += stat['fp']
      self._fn[row] += stat['fn']
      self._iou[row] += stat['iou']

  def per_category(self) -> dict[int, dict]:
    """{category id: {'tp', 'fp', 'fn', 'iou'}} of the categories seen so far."""
    return {c: {'tp': int(self._tp[r]), 'fp': int(self._fp[r]), 'fn': int(self._fn[r]),
                'iou': float(self._iou[r])} for c, r in self._row.items()}

  def _categories(self, categories: Categories | None) -> dict[int, dict]:
    if categories is not None:
      return coco_categories(categories)
    if self.categories is None:
      raise ValueError('PanopticStats has no categories: pass them to the constructor or '
                       'to results / summarize')
    return self.categories

  def _average(self, categories: dict[int, dict], isthing: bool | None):
    """panopticapi's PQStat.pq_average (n = 0: -1 instead of a ZeroDivisionError)."""
    pq = sq = rq = 0.0
    n = 0
    per_class = {}
    for cat_id, category in categories.items():
      if isthing is not None and (category['isthing'] == 1) != isthing:
        continue
      row = self._row.get(cat_id)
      tp, fp, fn, iou = ((0, 0, 0, 0.0) if row is None else
                         (int(self._tp[row]), int(self._fp[row]), int(self._fn[row]),
                          float(self._iou[row])))
      if tp + fp + fn == 0:
        per_class[cat_id] = {'pq': 0.0, 'sq': 0.0, 'rq': 0.0}
        continue
      n += 1
      pq_class = iou / (tp + 0.5 * fp + 0.5 * fn)
      sq_class = iou / tp if tp != 0 else 0.0
      rq_class = tp / (tp + 0.5 * fp + 0.5 * fn)
      per_class[cat_id] = {'pq': pq_class, 'sq': sq_class, 'rq': rq_class}
      pq += pq_class
      sq += sq_class
      rq += rq_class
    if n == 0:
      return {'pq': -1.0, 'sq': -1.0, 'rq': -1.0, 'n': 0}, per_class
    return {'pq': pq / n, 'sq': sq / n, 'rq': rq / n, 'n': n}, per_class

  def results(self, categories: Categories | None = None) -> dict:
    """panopticapi's `pq_compute` dict: {'All' | 'Things' | 'Stuff': {'pq', 'sq', 'rq',
    'n'}, 'per_class': {category id: {'pq', 'sq', 'rq'}}} (fractions, not percent)."""
    categories = self._categories(categories)
    results = {}
    for name, isthing, _ in _GROUPS:
      results[name], per_class = self._average(categories, isthing)
      if name == 'All':
        results['per_class'] = per_class
    return results

  def summarize(self, categories: Categories | None = None, *,
                per_class: bool = False) -> dict[str, float]:
    """Flat metrics for eval_results.json: panoptic/{PQ,SQ,RQ}{,_th,_st} (-1: no
    category of the group was seen) and, with per_class, panoptic/{PQ,SQ,RQ}/<name>."""
    categories = self._categories(categories)
    results = self.results(categories)
    metrics = {}
    for name, _, suffix in _GROUPS:
      for metric in ('PQ', 'SQ', 'RQ'):
        metrics[f'panoptic/{metric}{suffix}'] = float(results[name][metric.lower()])
    if per_class:
      for cat_id, values in results['per_class'].items():
        label = categories[cat_id].get('name', str(cat_id))
        for metric in ('PQ', 'SQ', 'RQ'):
          metrics[f'panoptic/{metric}/{label}'] = float(values[metric.lower()])
    return metrics


def format_table(results: dict) -> str:
  """panopticapi's printed table (percent) of a `results` dict."""
  lines = ['{:10s}| {:>5s}  {:>5s}  {:>5s} {:>5s}'.format('', 'PQ', 'SQ', 'RQ', 'N'),
           '-' * (10 + 7 * 4)]
  for name, _, _ in _GROUPS:
    r = results[name]
    lines.append('{:10s}| {:5.1f}  {:5.1f}  {:5.1f} {:5d}'.format(
        name, 100 * r['pq'], 100 * r['sq'], 100 * r['rq'], r['n']))
  return '\n'.join(lines)


def ids_to_rgb(segmentation: np.ndarray) -> np.ndarray:
  """[H, W] ids (< 2^24) -> [H, W, 3] uint8 with id = R + 256 G + 256^2 B."""
  seg = np.asarray(segmentation, np.int64)
  return np.stack([(seg >> shift) & 255 for shift in (0, 8, 16)], -1).astype(np.uint8)


def rgb_to_ids(rgb: np.ndarray) -> np.ndarray:
  """[H, W, 3] uint8 -> [H, W] int64 ids = R + 256 G + 256^2 B."""
  rgb = np.asarray(rgb).astype(np.int64)
  return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def read_segmentation(path: str) -> np.ndarray:
  """A COCO panoptic PNG -> [H, W] int64 segment ids (RGB or RGBA, alpha ignored)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'panoptic PNG {path} does not exist')
  with Image.open(path) as image:
    if image.mode not in ('RGB', 'RGBA'):
      raise ValueError(f'panoptic PNG {path} is {image.mode}; COCO panoptic PNGs are RGB '
                       '(id = R + 256 G + 256^2 B)')
    return rgb_to_ids(np.asarray(image)[..., :3])


def _boxes(segmentation: np.ndarray, ids: np.ndarray) -> np.ndarray:
  """[N, 4] COCO boxes (x, y, w, h), inclusive pixel extents, of sorted present ids."""
  if not ids.size:
    return np.zeros((0, 4), np.int64)
  flat = segmentation.ravel()
  order = np.argsort(flat, kind='stable')
  starts = np.searchsorted(flat[order], ids)
  rows, cols = np.divmod(order, segmentation.shape[1])
  y0, y1 = np.minimum.reduceat(rows, starts), np.maximum.reduceat(rows, starts)
  x0, x1 = np.minimum.reduceat(cols, starts), np.maximum.reduceat(cols, starts)
  # reduceat's last group runs to the end: fine, ids are the largest values present.
  return np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], -1)


def _default_folder(json_file: str) -> str:
  """panopticapi's default: the json path without its '.json'."""
  return json_file.replace('.json', '')


class PanopticWriter:
  """Writes segmentations in the COCO panoptic format: X.json + one PNG per image in X/.

  The json has 'info', 'images' (id, file_name = the PNG's stem + '.jpg', height,
  width), 'annotations' (image_id, file_name, segments_info with id, category_id,
  iscrowd, area and bbox [x, y, w, h] from the pixels) and 'categories': panopticapi's
  `pq_compute` (and ours) reads it as ground truth or as predictions.
  """

  def __init__(self, json_file: str, categories: Categories, *, folder: str | None = None,
               description: str = 'vision_jax panoptic segmentation'):
    self.json_file = json_file
    self.folder = folder if folder is not None else _default_folder(json_file)
    self.categories = coco_categories(categories)
    self.description = description
    self._images: list[dict] = []
    self._annotations: list[dict] = []
    os.makedirs(self.folder, exist_ok=True)

  def add(self, image_id, segmentation, segments, *, file_name: str | None = None) -> dict:
    """Writes one image's PNG (default name: the zero-padded id, COCO's) and returns its
    annotation; segments as `PanopticStats.update` takes them (iscrowd kept)."""
    where = _where(image_id)
    seg = _segmentation(segmentation, 'written', where)
    table = _Segments(segments, 'written', where)
    table.check_categories(self.categories, 'written', where)
    present, counts = np.unique(seg, return_counts=True)
    table.check_pixels(present, 'written', where)
    if file_name is None:
      file_name = (f'{int(image_id):012d}.png' if isinstance(image_id, (int, np.integer))
                   else f'{image_id}.png')
    Image.fromarray(ids_to_rgb(seg)).save(os.path.join(self.folder, file_name))
    ids = present[present != VOID]
    boxes = _boxes(seg, ids)
    area_of = dict(zip(ids.tolist(), counts[present != VOID].tolist()))
    box_of = dict(zip(ids.tolist(), boxes.tolist()))
    annotation = {'image_id': image_id.item() if isinstance(image_id, np.generic) else image_id,
                  'file_name': file_name,
                  'segments_info': [
                      {'id': i, 'category_id': c, 'iscrowd': int(crowd),
                       'area': area_of[i], 'bbox': box_of[i]}
                      for i, c, crowd in zip(table.ids.tolist(), table.categories.tolist(),
                                             table.crowd.tolist())]}
    self._images.append({'id': annotation['image_id'],
                         'file_name': os.path.splitext(file_name)[0] + '.jpg',
                         'height': int(seg.shape[0]), 'width': int(seg.shape[1])})
    self._annotations.append(annotation)
    return annotation

  def content(self) -> dict:
    """The json content of the images added so far."""
    return {'info': {'description': self.description}, 'images': list(self._images),
            'annotations': list(self._annotations),
            'categories': list(self.categories.values())}

  def close(self) -> dict:
    """Writes the json (after all `add`s) and returns its content."""
    content = self.content()
    directory = os.path.dirname(self.json_file)
    if directory:
      os.makedirs(directory, exist_ok=True)
    with open(self.json_file, 'w') as f:
      json.dump(content, f)
    return content

  def __enter__(self) -> 'PanopticWriter':
    return self

  def __exit__(self, exc_type, exc, traceback) -> None:
    if exc_type is None:
      self.close()


def write_coco_panoptic(json_file: str, images: Iterable[tuple], categories: Categories, *,
                        folder: str | None = None) -> dict:
  """Writes (image_id, segmentation, segments) triples with `PanopticWriter`."""
  with PanopticWriter(json_file, categories, folder=folder) as writer:
    for image_id, segmentation, segments in images:
      writer.add(image_id, segmentation, segments)
  return writer.content()


def pq_compute(gt_json_file: str, pred_json_file: str, gt_folder: str | None = None,
               pred_folder: str | None = None) -> dict:
  """panopticapi's `pq_compute`: the same files, defaults and returned dict.

  Every ground-truth annotation needs a prediction with its image_id (extra predictions
  are ignored); the categories are the ground truth json's. Single process.
  """
  with open(gt_json_file) as f:
    gt_json = json.load(f)
  with open(pred_json_file) as f:
    pred_json = json.load(f)
  gt_folder = gt_folder if gt_folder is not None else _default_folder(gt_json_file)
  pred_folder = pred_folder if pred_folder is not None else _default_folder(pred_json_file)
  for kind, folder in (('ground-truth', gt_folder), ('prediction', pred_folder)):
    if not os.path.isdir(folder):
      raise FileNotFoundError(f'the {kind} segmentation folder {folder} does not exist')
  stats = PanopticStats(gt_json['categories'])
  predictions = {a['image_id']: a for a in pred_json['annotations']}
  for gt_ann in gt_json['annotations']:
    image_id = gt_ann['image_id']
    if image_id not in predictions:
      raise ValueError(f'{pred_json_file} has no prediction for image id {image_id} of '
                       f'{gt_json_file}')
    pred_ann = predictions[image_id]
    gt_png = os.path.join(gt_folder, gt_ann['file_name'])
    pred_png = os.path.join(pred_folder, pred_ann['file_name'])
    stats.update(read_segmentation(gt_png), gt_ann['segments_info'],
                 read_segmentation(pred_png), pred_ann['segments_info'],
                 image=f'id {image_id}: ground truth {gt_png}, prediction {pred_png}')
  results = stats.results()
  logging.info('Panoptic quality of %s against %s:\n%s', pred_json_file, gt_json_file,
               format_table(results))
  return results
