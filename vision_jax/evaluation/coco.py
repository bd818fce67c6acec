"""COCO-style evaluation with pycocotools, fed by batches of the detection batch contract.

Predictions arrive in input-image pixels and are mapped back to the ORIGINAL image with
the batch's `scale` (orig = input / scale: the letterbox pads at the bottom/right only)
before conversion to COCO json (bbox [x, y, w, h], RLE masks, keypoints [x, y, v] * K).

The ground truth is either
  * the dataset's ORIGINAL annotations (`ground_truth=` a COCO json dict, e.g.
    `DetectionSource.original_ground_truth(split)` for coco_format and coco/2017):
    original resolution, every annotation, so the numbers are COCO's own; or
  * rebuilt from the evaluation batches (datasets without original annotations): the
    batch's instances (at most `max_instances` per image) mapped back with `scale`.

  evaluator = CocoEvaluator(source.class_names, category_ids=source.category_ids,
                            ground_truth=source.original_ground_truth('val2017'))
  for batch in eval_batches:
    evaluator.add(batch, predictions)       # numpy dicts
  metrics = evaluator.evaluate()            # {'box/AP': ..., 'box/AP50': ..., ...}
  evaluator.write(workdir)                  # coco_ground_truth.json, coco_detections.json

Predictions (numpy):
  boxes      [B, D, 4]       float (x1, y1, x2, y2) input pixels.
  scores     [B, D]          float.
  classes    [B, D]          int, 0-based.
  valid      [B, D]          bool (optional: all valid).
  masks      [B, D, H, W]    float/uint8 in input pixels, > 0.5 is foreground (iou 'segm',
                             mask_key='masks').
  mask_probs [B, D, S, S]    mask probabilities in each box's frame (mask_key=
                             'mask_probs'): pasted at ORIGINAL resolution into the box
                             mapped back (`paste_mask`, detectron2's bilinear paste).
  keypoints  [B, D, K, 3]    (x, y, score) input pixels (iou 'keypoints').
Metrics that pycocotools cannot define (no ground truth in an area range) are -1.

Every bbox evaluation also reports `box/false_discovery_rate` (`false_discovery_rate`):
the fraction of detections scoring >= `fdr_score_threshold` (default 0.3) that match no
ground truth at IoU >= 0.5 (COCO-style greedy matching; 0.0 without such detections).
"""
import contextlib
import copy
import io
import json
import os
from typing import Iterable, Sequence

from absl import logging
import numpy as np
from pycocotools import coco as coco_api
from pycocotools import cocoeval
from pycocotools import mask as mask_api

from vision_jax.evaluation import evaluator

IOU_TYPES = ('bbox', 'segm', 'keypoints')
PREFIXES = {'bbox': 'box', 'segm': 'mask', 'keypoints': 'keypoints'}
_BOX_STATS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARs',
              'ARm', 'ARl')
_KEYPOINT_STATS = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl')
DEFAULT_KEYPOINT_SIGMA = 0.05
FDR_SCORE_THRESHOLD = 0.3
FDR_IOU_THRESHOLD = 0.5


def coco_categories(class_names: Sequence[str], category_ids: Sequence[int] | None = None,
                    keypoint_names: Sequence[str] = (),
                    keypoint_skeleton: Sequence[tuple[int, int]] = ()) -> list[dict]:
  """COCO `categories`; ids default to class + 1; skeleton pairs are 0-based here."""
  ids = list(category_ids) if category_ids is not None else list(
      range(1, len(class_names) + 1))
  categories = []
  for name, cat_id in zip(class_names, ids):
    category = {'id': int(cat_id), 'name': str(name), 'supercategory': 'object'}
    if keypoint_names:
      category['keypoints'] = list(keypoint_names)
      category['skeleton'] = [[int(a) + 1, int(b) + 1] for a, b in keypoint_skeleton]
    categories.append(category)
  return categories


def _to_original_mask(mask: np.ndarray, scale: float, orig_size) -> np.ndarray:
  """[H, W] input-pixel mask -> [h, w] bool original-pixel mask (nearest)."""
  h, w = int(orig_size[0]), int(orig_size[1])
  rows = np.minimum(((np.arange(h) + 0.5) * scale).astype(int), mask.shape[0] - 1)
  cols = np.minimum(((np.arange(w) + 0.5) * scale).astype(int), mask.shape[1] - 1)
  return mask[rows][:, cols]


def _paste_weights(lo: float, hi: float, size: int, mask_size: int) -> np.ndarray:
  """[size, mask_size] bilinear weights of mask cells at the pixel centres of one axis."""
  u = (np.arange(size) + 0.5 - lo) / max(hi - lo, 1e-6) * mask_size - 0.5
  return np.maximum(0.0, 1.0 - np.abs(u[:, None] - np.arange(mask_size)))


def paste_mask(probs: np.ndarray, box, image_hw, threshold: float = 0.5) -> np.ndarray:
  """A box-frame mask -> an [h, w] bool image mask (numpy, any image size).

  The same resampling as `vision_jax.models.rcnn_inference.paste_masks` (detectron2's
  grid_sample paste: pixel p samples u = (p + 0.5 - lo) / (hi - lo) * S - 0.5, bilinear,
  zero outside the mask), computed only over the rows and columns the box touches.

  Args:
    probs: [S, S] probabilities.
    box: (x1, y1, x2, y2) in the image's pixels.
    image_hw: (h, w) of the image.
    threshold: foreground at probability >= threshold.
  """
  h, w = int(image_hw[0]), int(image_hw[1])
  s = probs.shape[-1]
  wy = _paste_weights(float(box[1]), float(box[3]), h, s)
  wx = _paste_weights(float(box[0]), float(box[2]), w, s)
  rows, cols = np.flatnonzero(wy.any(1)), np.flatnonzero(wx.any(1))
  out = np.zeros((h, w), bool)
  if rows.size and cols.size:
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    values = wy[r0:r1] @ probs.astype(np.float64) @ wx[c0:c1].T
    out[r0:r1, c0:c1] = values >= threshold
  return out


def _rle(mask: np.ndarray) -> dict:
  rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
  rle['counts'] = rle['counts'].decode('ascii')
  return rle


def _xywh(boxes: np.ndarray) -> np.ndarray:
  return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _examples(batch: dict):
  """Indices of the batch's real examples."""
  valid = batch.get('example_valid')
  n = len(batch['image_id'])
  return [b for b in range(n) if valid is None or bool(valid[b])]


def ground_truth_from_batch(batch: dict, category_ids: Sequence[int], *,
                            with_masks: bool = False, with_keypoints: bool = False,
                            first_annotation_id: int = 1) -> tuple[list[dict], list[dict]]:
  """COCO `images` and `annotations` of one contract batch (original pixels).

  Areas come from `batch['areas']` (original pixels) when present, else box areas.
  """
  images, annotations = [], []
  ann_id = first_annotation_id
  for b in _examples(batch):
    scale = float(batch['scale'][b])
    h, w = (int(x) for x in batch['orig_size'][b])
    image_id = int(batch['image_id'][b])
    images.append({'id': image_id, 'height': h, 'width': w})
    idx = np.flatnonzero(batch['valid'][b])
    boxes = _xywh(batch['boxes'][b][idx].astype(np.float64) / scale)
    for k, m in enumerate(idx):
      box = [float(x) for x in boxes[k]]
      area = float(batch['areas'][b][m]) if 'areas' in batch else box[2] * box[3]
      ann = {'id': ann_id, 'image_id': image_id,
             'category_id': int(category_ids[int(batch['classes'][b][m])]),
             'bbox': box, 'area': area,
             'iscrowd': int(bool(batch['is_crowd'][b][m])) if 'is_crowd' in batch else 0}
      if with_masks:
        ann['segmentation'] = _rle(_to_original_mask(batch['masks'][b][m] > 0, scale, (h, w)))
      if with_keypoints:
        kp = batch['keypoints'][b][m].astype(np.float64)
        vis = kp[:, 2] > 0
        xy = np.where(vis[:, None], kp[:, :2] / scale, 0.0)
        ann['keypoints'] = [float(x) for x in
                            np.concatenate([xy, np.where(vis, kp[:, 2], 0)[:, None]], 1).ravel()]
        ann['num_keypoints'] = int(vis.sum())
      annotations.append(ann)
      ann_id += 1
  return images, annotations


def detections_from_batch(batch: dict, predictions: dict, category_ids: Sequence[int], *,
                          with_masks: bool = False, with_keypoints: bool = False,
                          mask_key: str = 'masks') -> list[dict]:
  """COCO results (`image_id, category_id, bbox, score` [+ segmentation, keypoints]).

  Masks come from `predictions[mask_key]`: 'masks' (input pixels, resampled to the
  original size) or 'mask_probs' (box frames, pasted at the original size).
  """
  results = []
  valid = predictions.get('valid')
  for b in _examples(batch):
    scale = float(batch['scale'][b])
    h, w = (int(x) for x in batch['orig_size'][b])
    image_id = int(batch['image_id'][b])
    keep = np.ones(len(predictions['scores'][b]), bool) if valid is None else valid[b]
    idx = np.flatnonzero(keep)
    original = predictions['boxes'][b][idx].astype(np.float64) / scale
    boxes = _xywh(np.clip(original, 0, [w, h, w, h]))
    for k, d in enumerate(idx):
      result = {'image_id': image_id,
                'category_id': int(category_ids[int(predictions['classes'][b][d])]),
                'bbox': [float(x) for x in boxes[k]],
                'score': float(predictions['scores'][b][d])}
      if with_masks and mask_key == 'mask_probs':
        result['segmentation'] = _rle(paste_mask(predictions['mask_probs'][b][d],
                                                 original[k], (h, w)))
      elif with_masks:
        result['segmentation'] = _rle(
            _to_original_mask(predictions['masks'][b][d] > 0.5, scale, (h, w)))
      if with_keypoints:
        kp = predictions['keypoints'][b][d].astype(np.float64)
        result['keypoints'] = [float(x) for x in np.concatenate(
            [kp[:, :2] / scale, kp[:, 2:3]], 1).ravel()]
      results.append(result)
  return results


def ground_truth_json(batches: Iterable[dict], class_names: Sequence[str], *,
                      category_ids: Sequence[int] | None = None, with_masks: bool = False,
                      keypoint_names: Sequence[str] = (),
                      keypoint_skeleton: Sequence[tuple[int, int]] = ()) -> dict:
  """A whole split's ground truth (e.g. an evaluation pipeline) as a COCO json dict."""
  ids = list(category_ids) if category_ids is not None else list(
      range(1, len(class_names) + 1))
  images, annotations = [], []
  for batch in batches:
    new_images, new_annotations = ground_truth_from_batch(
        batch, ids, with_masks=with_masks, with_keypoints=bool(keypoint_names),
        first_annotation_id=len(annotations) + 1)
    images += new_images
    annotations += new_annotations
  return {'info': {'description': 'vision_jax ground truth'}, 'images': images,
          'annotations': annotations,
          'categories': coco_categories(class_names, ids, keypoint_names, keypoint_skeleton)}


@contextlib.contextmanager
def _quiet():
  """Routes pycocotools' prints to debug logging."""
  buffer = io.StringIO()
  with contextlib.redirect_stdout(buffer):
    yield
  if buffer.getvalue().strip():
    logging.debug('pycocotools:\n%s', buffer.getvalue())


class CocoEvaluator(evaluator.Evaluator):
  """Accumulates contract batches and predictions; scores them with pycocotools."""

  def __init__(self, class_names: Sequence[str], *, iou_types: Sequence[str] = ('bbox',),
               category_ids: Sequence[int] | None = None,
               keypoint_names: Sequence[str] = (),
               keypoint_skeleton: Sequence[tuple[int, int]] = (),
               keypoint_sigmas: Sequence[float] | None = None,
               max_detections: int = 100, ground_truth: dict | None = None,
               mask_key: str = 'masks', fdr_score_threshold: float = FDR_SCORE_THRESHOLD):
    """Args:
      class_names: 0-based class names.
      iou_types: subset of ('bbox', 'segm', 'keypoints'); metric prefixes box/, mask/,
        keypoints/.
      category_ids: COCO id per class (default class + 1).
      keypoint_names / keypoint_skeleton: for 'keypoints' (skeleton pairs 0-based).
      keypoint_sigmas: OKS sigma per keypoint (default DEFAULT_KEYPOINT_SIGMA each).
      max_detections: the largest of COCO's maxDets (1, 10, max_detections).
      ground_truth: the original annotations as a COCO json dict (scored against, for
        the images added); None: rebuilt from the batches.
      mask_key: the predictions' mask field, 'masks' or 'mask_probs' (module doc).
      fdr_score_threshold: detections scoring at least this count towards
        'box/false_discovery_rate' (`false_discovery_rate`).
    """
    unknown = set(iou_types) - set(IOU_TYPES)
    if unknown:
      raise ValueError(f'iou_types {sorted(unknown)} unknown; choose from {IOU_TYPES}')
    if 'keypoints' in iou_types and not keypoint_names:
      raise ValueError("iou type 'keypoints' needs keypoint_names")
    if mask_key not in ('masks', 'mask_probs'):
      raise ValueError(f"mask_key must be 'masks' or 'mask_probs', not {mask_key!r}")
    self.iou_types = tuple(iou_types)
    self.class_names = list(class_names)
    self.category_ids = (list(category_ids) if category_ids is not None
                         else list(range(1, len(class_names) + 1)))
    self.keypoint_names = list(keypoint_names)
    self.keypoint_skeleton = list(keypoint_skeleton)
    self.keypoint_sigmas = (np.asarray(keypoint_sigmas, np.float64)
                            if keypoint_sigmas is not None
                            else np.full(len(keypoint_names), DEFAULT_KEYPOINT_SIGMA))
    self.max_detections = max_detections
    self.original = ground_truth
    self.mask_key = mask_key
    self.fdr_score_threshold = float(fdr_score_threshold)
    keys = ['boxes', 'scores', 'classes', 'valid']
    keys += [mask_key] if self._with_masks else []
    keys += ['keypoints'] if self._with_keypoints else []
    self.prediction_keys = tuple(keys)
    batch_keys = ['image_id', 'scale', 'orig_size', 'example_valid']
    if ground_truth is None:
      batch_keys += ['boxes', 'classes', 'valid', 'is_crowd', 'areas']
      batch_keys += ['masks'] if self._with_masks else []
      batch_keys += ['keypoints'] if self._with_keypoints else []
    self.batch_keys = tuple(batch_keys)
    self.reset()

  def reset(self) -> None:
    self._images, self._annotations, self._detections = [], [], []
    self._seen: set[int] = set()
    self._results: dict[str, float] | None = None

  @property
  def _with_masks(self):
    return 'segm' in self.iou_types

  @property
  def _with_keypoints(self):
    return 'keypoints' in self.iou_types

  def add(self, batch: dict, predictions: dict) -> None:
    """Adds one batch (contract, numpy) and its predictions (module docstring)."""
    batch = {k: np.asarray(v) for k, v in batch.items()}
    predictions = {k: np.asarray(v) for k, v in predictions.items()}
    keep = np.asarray(batch.get('example_valid', np.ones(len(batch['image_id']), bool)))
    for b in range(len(keep)):
      if keep[b]:
        image_id = int(batch['image_id'][b])
        if image_id in self._seen:
          logging.warning('CocoEvaluator: image id %d added twice; ignoring it', image_id)
          keep = keep.copy()
          keep[b] = False
        self._seen.add(image_id)
    batch = dict(batch, example_valid=keep)
    if self.original is None:
      images, annotations = ground_truth_from_batch(
          batch, self.category_ids, with_masks=self._with_masks,
          with_keypoints=self._with_keypoints,
          first_annotation_id=len(self._annotations) + 1)
      self._images += images
      self._annotations += annotations
    self._detections += detections_from_batch(
        batch, predictions, self.category_ids, with_masks=self._with_masks,
        with_keypoints=self._with_keypoints, mask_key=self.mask_key)
    self._results = None

  def ground_truth(self) -> dict:
    """The COCO json dict of the ground truth of the images added so far."""
    categories = coco_categories(self.class_names, self.category_ids, self.keypoint_names,
                                 self.keypoint_skeleton)
    if self.original is None:
      return {'info': {'description': 'vision_jax ground truth'},
              'images': list(self._images), 'annotations': list(self._annotations),
              'categories': categories}
    known = {image['id'] for image in self.original['images']}
    missing = sorted(self._seen - known)
    if missing:
      raise ValueError(f'image ids {missing[:5]} were evaluated but are not in the '
                       'original ground truth; is it the json of the evaluated split?')
    return {**self.original,
            'images': [i for i in self.original['images'] if i['id'] in self._seen],
            'annotations': [a for a in self.original['annotations']
                            if a['image_id'] in self._seen]}

  def detections(self) -> list[dict]:
    """The COCO results list of the detections added so far."""
    return list(self._detections)

  def evaluate(self) -> dict[str, float]:
    """Flat metrics: {'box/AP', 'box/AP50', ..., 'box/AR100', ...} per iou type, and
    with 'bbox' 'box/false_discovery_rate' (`false_discovery_rate` at
    `fdr_score_threshold`)."""
    truth = self.ground_truth()
    results = {}
    for iou_type in self.iou_types:
      names = _KEYPOINT_STATS if iou_type == 'keypoints' else _BOX_STATS
      prefix = PREFIXES[iou_type]
      stats = coco_stats(truth, self._detections, iou_type,
                         max_detections=self.max_detections,
                         keypoint_sigmas=self.keypoint_sigmas)
      for name, value in zip(names, stats):
        if iou_type != 'keypoints' and name == 'AR100':
          name = f'AR{self.max_detections}'
        results[f'{prefix}/{name}'] = value
      if iou_type == 'bbox':
        results['box/false_discovery_rate'] = false_discovery_rate(
            truth, self._detections, score_threshold=self.fdr_score_threshold)
    self._results = results
    return dict(results)

  def write(self, workdir: str) -> None:
    """Writes coco_ground_truth.json and coco_detections.json (the trainer writes
    eval_results.json)."""
    os.makedirs(workdir, exist_ok=True)
    for name, content in (('coco_ground_truth.json', self.ground_truth()),
                          ('coco_detections.json', self.detections())):
      with open(os.path.join(workdir, name), 'w') as f:
        json.dump(content, f)


def _strip_for(iou_type: str, detections: list[dict]) -> list[dict]:
  """loadRes decides the result type from the keys present: keep the relevant ones.

  (With a 'bbox' key loadRes would take segm results' areas from their boxes.)
  """
  keys = {'bbox': ('bbox',), 'segm': ('segmentation',),
          'keypoints': ('keypoints',)}[iou_type]
  common = ('image_id', 'category_id', 'score')
  return [{k: d[k] for k in common + keys if k in d} for d in detections]


def coco_stats(truth: dict, detections: list[dict], iou_type: str = 'bbox', *,
               max_detections: int = 100, keypoint_sigmas=None) -> list[float]:
  """pycocotools' summary numbers of `detections` against `truth` (COCO json dicts).

  Boxes and masks: the 12 numbers of `_BOX_STATS` (AP, AP50, AP75, APs, APm, APl, AR1,
  AR10, AR<max>, ARs, ARm, ARl), where COCO's "100 detections" is `max_detections`
  throughout (pycocotools' own summary prints -1 for AP when 100 is not among its
  maxDets). Keypoints: the 10 numbers of `_KEYPOINT_STATS` (pycocotools' summary, 20
  detections). Without detections: 0 (or -1 without ground truth) everywhere.
  """
  names = _KEYPOINT_STATS if iou_type == 'keypoints' else _BOX_STATS
  detections = [d for d in detections if iou_type != 'keypoints' or 'keypoints' in d]
  if not detections or not truth['images']:
    return [0.0 if truth['annotations'] else -1.0] * len(names)
  with _quiet():
    gt = coco_api.COCO()
    gt.dataset = copy.deepcopy(truth)  # pycocotools rewrites segmentations in place.
    gt.createIndex()
    dt = gt.loadRes(_strip_for(iou_type, detections))
    coco_eval = cocoeval.COCOeval(gt, dt, iou_type)
    coco_eval.params.imgIds = sorted(image['id'] for image in truth['images'])
    if iou_type == 'keypoints':
      if keypoint_sigmas is not None:
        coco_eval.params.kpt_oks_sigmas = np.asarray(keypoint_sigmas, np.float64)
    else:
      coco_eval.params.maxDets = [1, 10, max_detections]
    coco_eval.evaluate()
    coco_eval.accumulate()
    if iou_type == 'keypoints':
      coco_eval.summarize()
      return [float(x) for x in coco_eval.stats]
  return _box_stats(coco_eval)


def _box_stats(coco_eval) -> list[float]:
  """COCOeval.summarize's 12 box / mask numbers, at the LAST of params.maxDets."""
  precision = coco_eval.eval['precision']  # [T, R, K, A, M]
  recall = coco_eval.eval['recall']  # [T, K, A, M]
  thresholds = coco_eval.params.iouThrs

  def mean(values):
    values = values[values > -1]
    return float(np.mean(values)) if values.size else -1.0

  def at(iou):
    return np.flatnonzero(np.isclose(thresholds, iou))

  return [mean(precision[:, :, :, 0, -1]), mean(precision[at(0.5), :, :, 0, -1]),
          mean(precision[at(0.75), :, :, 0, -1]),
          *(mean(precision[:, :, :, a, -1]) for a in (1, 2, 3)),
          *(mean(recall[:, :, 0, m]) for m in range(3)),
          *(mean(recall[:, :, a, -1]) for a in (1, 2, 3))]



def _box_iou(detections: np.ndarray, truths: np.ndarray, crowd: np.ndarray) -> np.ndarray:
  """[D, G] IoU of [D, 4] detections and [G, 4] ground truths, both (x, y, w, h).

  pycocotools' bbox IoU: areas w * h (no +1); against a crowd ground truth (crowd [G]
  bool) the "union" is the detection's own area (intersection / detection area).
  """
  d = np.asarray(detections, np.float64).reshape(-1, 4)
  g = np.asarray(truths, np.float64).reshape(-1, 4)
  width = (np.minimum(d[:, None, 0] + d[:, None, 2], g[None, :, 0] + g[None, :, 2])
           - np.maximum(d[:, None, 0], g[None, :, 0]))
  height = (np.minimum(d[:, None, 1] + d[:, None, 3], g[None, :, 1] + g[None, :, 3])
            - np.maximum(d[:, None, 1], g[None, :, 1]))
  inter = np.clip(width, 0, None) * np.clip(height, 0, None)
  area_d = (d[:, 2] * d[:, 3])[:, None]
  union = np.where(crowd[None, :], area_d, area_d + (g[:, 2] * g[:, 3])[None, :] - inter)
  return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _greedy_match(ious: np.ndarray, crowd: np.ndarray, iou_threshold: float) -> np.ndarray:
  """COCO's greedy matching of one image and class: [D] int per detection row.

  Rows of `ious` [D, G] are detections in descending score order. Each takes the
  highest-IoU ground truth that is not a crowd, not yet taken and has IoU >=
  iou_threshold: 1 (matched). Failing that, one overlapping a crowd region at IoU >=
  iou_threshold (crowd IoU, `_box_iou`): -1 (ignored, as pycocotools ignores it).
  Otherwise 0 (a false discovery: duplicates of a taken object land here).
  """
  taken = np.zeros(ious.shape[1], bool)
  outcome = np.zeros(ious.shape[0], np.int64)
  for row, iou in enumerate(ious):
    free = np.flatnonzero(~crowd & ~taken & (iou >= iou_threshold))
    if free.size:
      taken[free[np.argmax(iou[free])]] = True
      outcome[row] = 1
    elif np.any(crowd & (iou >= iou_threshold)):
      outcome[row] = -1
  return outcome


def false_discovery_rate(truth: dict, detections: list[dict], *,
                         score_threshold: float = FDR_SCORE_THRESHOLD,
                         iou_threshold: float = FDR_IOU_THRESHOLD) -> float:
  """The fraction of detections scoring >= score_threshold that match no ground truth.

  Boxes are COCO json `bbox` (x, y, w, h) in original-image pixels, as pycocotools
  reads them. Only detections with score >= score_threshold take part (every one added:
  not capped at max_detections). Per image and category, in descending score order
  (stable), each detection greedily takes the highest-IoU still-unmatched non-crowd
  ground truth of its category with IoU >= iou_threshold (`_greedy_match`, pycocotools'
  rule), so a second detection of an already matched object is a false discovery, as is
  one of a category the image lacks there. A detection that matches nothing but covers a
  crowd annotation (`iscrowd` 1) at crowd IoU >= iou_threshold (intersection over the
  detection's area) is ignored: it counts in neither numerator nor denominator. An
  inverted box (negative width or height) overlaps nothing, so it is a false discovery
  (pycocotools drops it instead: its negative area is outside area range 'all').

  Returns:
    false discoveries / (detections >= score_threshold not ignored); 0.0 when there are
    none.
  """
  truths: dict[tuple[int, int], list[dict]] = {}
  for ann in truth['annotations']:
    truths.setdefault((ann['image_id'], ann['category_id']), []).append(ann)
  kept: dict[tuple[int, int], list[dict]] = {}
  for det in detections:
    if det['score'] >= score_threshold:
      kept.setdefault((det['image_id'], det['category_id']), []).append(det)
  false, counted = 0, 0
  for key, dets in kept.items():
    dets = sorted(dets, key=lambda d: -d['score'])  # stable, as pycocotools' mergesort
    gts = truths.get(key, [])
    crowd = np.array([bool(g.get('iscrowd', 0)) for g in gts], bool)
    ious = _box_iou([d['bbox'] for d in dets], [g['bbox'] for g in gts], crowd)
    outcome = _greedy_match(ious, crowd, iou_threshold)
    false += int(np.sum(outcome == 0))
    counted += int(np.sum(outcome >= 0))
  return false / counted if counted else 0.0
