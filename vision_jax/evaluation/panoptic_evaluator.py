"""The panoptic task evaluator: COCO box / mask AP of the instance branch plus PQ.

  evaluator = PanopticEvaluator(coco_evaluator, semantic_names, num_things=K)
  for batch in eval_data:
    evaluator.add(batch, predictions)     # host numpy
  evaluator.evaluate()   # {'box/AP': .., 'mask/AP': .., 'panoptic/PQ': .., 'panoptic/PQ_th': ..}
  evaluator.write(workdir)  # COCO's files + panoptic_predictions.json / PNGs and
                            # panoptic_ground_truth.json / PNGs (re-score with panopticapi)

Batches (the detection contract, `vision_jax.data`): 'semantic' [B, H, W] int32 (things
first, then stuff; -1 unlabelled), 'masks' [B, M, H, W], 'valid', 'is_crowd' [B, M],
'classes' [B, M], 'image_id', and 'orig_size' / 'scale' (the real image inside the
letterboxed input; only that region is scored).
Predictions: 'panoptic' [B, H, W] int32 segment index or -1 (void), 'segment_valid'
[B, N] and 'segment_classes' [B, N] (semantic channels), as `vision_jax.models.upsnet.predict`.

Category ids are the dataset's (`category_ids`; default semantic channel + 1, COCO ids
start at 1); ground truth segments are
the stuff classes present (one segment each) and the valid instances (crowd ones with
iscrowd = 1); pixels of no segment are void.
"""
import os
import shutil
import tempfile
from typing import Sequence

import numpy as np

from vision_jax.evaluation import evaluator
from vision_jax.evaluation import panoptic

PREDICTIONS = 'panoptic_predictions'
GROUND_TRUTH = 'panoptic_ground_truth'


def categories(semantic_names: Sequence[str], num_things: int,
               category_ids: Sequence[int] | None = None) -> list[dict]:
  """COCO panoptic categories, things first: id = category_ids[channel] (default
  channel + 1)."""
  ids = list(category_ids) if category_ids is not None else range(1, len(semantic_names) + 1)
  return [{'id': int(i), 'name': name, 'isthing': int(c < num_things), 'supercategory': ''}
          for c, (i, name) in enumerate(zip(ids, semantic_names))]


def ground_truth_segments(semantic: np.ndarray, masks: np.ndarray, valid: np.ndarray,
                          classes: np.ndarray, crowd: np.ndarray, num_things: int,
                          category_ids: Sequence[int]) -> tuple[np.ndarray, list[dict]]:
  """One image's ground truth -> (segment id map [H, W] int32, segments_info).

  Stuff class s (channel K + s) is segment K + s + 1 where present; instance j is
  segment num_semantic + j + 1 (its mask pixels). Other pixels are void (0).
  category_ids: the panoptic category id of each semantic channel.
  """
  num_semantic = len(category_ids)
  seg = np.zeros(semantic.shape, np.int32)
  segments = []
  for channel in range(num_things, num_semantic):
    region = semantic == channel
    if region.any():
      seg[region] = channel + 1
      segments.append({'id': channel + 1, 'category_id': int(category_ids[channel]),
                       'iscrowd': 0})
  for j in np.flatnonzero(valid):
    region = masks[j] > 0
    if not region.any():
      continue
    segment_id = num_semantic + j + 1
    seg[region] = segment_id
    segments.append({'id': int(segment_id), 'category_id': int(category_ids[classes[j]]),
                     'iscrowd': int(crowd[j])})
  present = set(np.unique(seg).tolist())
  return seg, [s for s in segments if s['id'] in present]


def predicted_segments(panoptic_map: np.ndarray, segment_valid: np.ndarray,
                       segment_classes: np.ndarray, category_ids: Sequence[int]
                       ) -> tuple[np.ndarray, list[dict]]:
  """One image's prediction -> (segment id map [H, W] int32: index + 1, 0 void,
  segments_info of the segments with pixels, categories by `category_ids[channel]`)."""
  seg = np.where(panoptic_map >= 0, panoptic_map + 1, 0).astype(np.int32)
  present = set(np.unique(seg).tolist())
  segments = [{'id': int(i) + 1, 'category_id': int(category_ids[segment_classes[i]]),
               'iscrowd': 0}
              for i in np.flatnonzero(segment_valid) if int(i) + 1 in present]
  listed = {s['id'] for s in segments}
  stray = present - listed - {panoptic.VOID}
  if stray:  # pixels of a segment marked invalid: void, as the model means it
    seg[np.isin(seg, list(stray))] = panoptic.VOID
  return seg, segments


class PanopticEvaluator(evaluator.Evaluator):
  """A `CocoEvaluator` for the instance branch plus `panoptic.PanopticStats`."""

  def __init__(self, coco_evaluator, semantic_names: Sequence[str], *, num_things: int,
               category_ids: Sequence[int] | None = None):
    """category_ids: the panoptic category id of each semantic class (None: class + 1)."""
    self.coco = coco_evaluator
    self.num_things = num_things
    self.num_semantic = len(semantic_names)
    self.categories = categories(semantic_names, num_things, category_ids)
    self.category_ids = [c['id'] for c in self.categories]
    self.prediction_keys = tuple(coco_evaluator.prediction_keys) + (
        'panoptic', 'segment_valid', 'segment_classes')
    self.batch_keys = tuple(dict.fromkeys(tuple(coco_evaluator.batch_keys) + (
        'semantic', 'masks', 'valid', 'classes', 'is_crowd', 'image_id', 'orig_size',
        'scale', 'example_valid')))
    self.reset()

  def reset(self) -> None:
    self.coco.reset()
    self.stats = panoptic.PanopticStats(self.categories)
    self._scratch = tempfile.mkdtemp(prefix='panoptic_eval_')
    self._writers = {
        name: panoptic.PanopticWriter(os.path.join(self._scratch, f'{name}.json'),
                                      self.categories)
        for name in (PREDICTIONS, GROUND_TRUTH)}
    self._seen: set[int] = set()

  def add(self, batch: dict, predictions: dict) -> None:
    self.coco.add(batch, predictions)
    batch = {k: np.asarray(v) for k, v in batch.items()}
    predictions = {k: np.asarray(v) for k, v in predictions.items()}
    semantic = batch['semantic']
    if semantic.max(initial=-1) >= self.num_semantic:
      raise ValueError(f'a semantic map holds class id {int(semantic.max())} but the dataset '
                       f'has {self.num_semantic} semantic classes (0..{self.num_semantic - 1})')
    keep = batch.get('example_valid', np.ones(len(batch['image_id']), bool))
    for b in np.flatnonzero(keep):
      image_id = int(batch['image_id'][b])
      if image_id in self._seen:
        continue
      self._seen.add(image_id)
      h, w = semantic.shape[1:]
      if 'orig_size' in batch and 'scale' in batch:
        h, w = np.minimum(np.round(batch['orig_size'][b] * batch['scale'][b]).astype(int),
                          (h, w))
      gt_map, gt_segments = ground_truth_segments(
          semantic[b, :h, :w], batch['masks'][b, :, :h, :w], batch['valid'][b],
          batch['classes'][b], batch['is_crowd'][b], self.num_things, self.category_ids)
      pred_map, pred_segments = predicted_segments(
          predictions['panoptic'][b, :h, :w], predictions['segment_valid'][b],
          predictions['segment_classes'][b], self.category_ids)
      self.stats.update(gt_map, gt_segments, pred_map, pred_segments, image=image_id)
      self._writers[GROUND_TRUTH].add(image_id, gt_map, gt_segments)
      self._writers[PREDICTIONS].add(image_id, pred_map, pred_segments)

  def evaluate(self) -> dict[str, float]:
    return {**self.coco.evaluate(), **self.stats.summarize()}

  def results(self) -> dict:
    """panopticapi's result dict ('All', 'Things', 'Stuff', 'per_class')."""
    return self.stats.results()

  def write(self, workdir: str) -> None:
    """COCO's files, then both panoptic jsons and their PNG folders into workdir."""
    self.coco.write(workdir)
    for name, writer in self._writers.items():
      writer.close()
      for path in (f'{name}.json', name):
        target = os.path.join(workdir, path)
        if os.path.isdir(target):
          shutil.rmtree(target)
        shutil.move(os.path.join(self._scratch, path), target)
    shutil.rmtree(self._scratch, ignore_errors=True)
