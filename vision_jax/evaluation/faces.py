"""Face detection with landmarks (RetinaFace): COCO box AP overall and per size bin, and
the NME of the 5 points and of the dense mesh on detected faces.

  evaluator = FaceEvaluator(num_landmarks=5, num_mesh_points=68)
  for batch in eval_batches:           # the detection contract (numpy)
    evaluator.add(batch, predictions)  # RetinaFace's detect() outputs (numpy)
  metrics = evaluator.evaluate()

Metrics:
  box/AP, box/AP50, ...   pycocotools on every face (`coco.CocoEvaluator`).
  box/AP50_easy, box/AP50_medium, box/AP50_hard
                          AP50 with the faces of the other bins ignored (marked crowd:
                          detections on them count neither way), as WIDER FACE scores
                          a difficulty; bins by ground-truth box height h against the
                          image height H: hard h < hard_max H, easy h >= easy_min H,
                          medium between (synthetic_faces' bins: 0.1 and 0.25).
  landmarks5/NME, ...     per ground-truth face with labelled landmarks, the
                          highest-scoring detection that overlaps it at IoU >= 0.5
                          (each detection used once, faces visited largest first);
                          inter-ocular NME of its 5 points (`evaluation.landmarks`),
                          and of its mesh (mesh/NME, the mesh's own ocular points);
                          landmarks5/box_size/NME, ... normalise by the face box's
                          sqrt(w h) instead, as RetinaFace's paper scores its 5
                          points (AFLW, WIDER FACE).
                          Faces without such a detection are left out; their count is
                          `landmarks5/matched_fraction`'s complement.
  landmarks5/easy/NME, landmarks5/medium/NME, landmarks5/hard/NME, ...
                          the inter-ocular metrics of the faces of one size bin (the
                          bins of box/AP50_*): a hard face's eyes are a few pixels
                          apart, so one pixel of error is a large fraction of them.
"""
import copy
from typing import Sequence

import numpy as np

from vision_jax.evaluation import coco
from vision_jax.evaluation import evaluator
from vision_jax.evaluation import landmarks as landmark_metrics

BINS = ('easy', 'medium', 'hard')


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[N, 4] x [M, 4] (x1, y1, x2, y2) -> [N, M] IoU."""
  lo = np.maximum(a[:, None, :2], b[None, :, :2])
  hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
  inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
  area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=-1)
  union = area(a)[:, None] + area(b)[None, :] - inter
  return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def size_bins(heights: np.ndarray, image_height: float, hard_max: float,
              easy_min: float) -> np.ndarray:
  """[N] bin index (0 easy, 1 medium, 2 hard) of box heights in an image of that height."""
  ratio = np.asarray(heights, np.float64) / image_height
  return np.where(ratio < hard_max, 2, np.where(ratio < easy_min, 1, 0))


class FaceEvaluator(evaluator.Evaluator):
  """See the module doc."""

  def __init__(self, *, num_landmarks: int = 5, num_mesh_points: int = 0,
               landmark_ocular: tuple[int, int] = (0, 1),
               mesh_ocular: tuple[int, int] = (36, 45), hard_max: float = 0.1,
               easy_min: float = 0.25, max_detections: int = 100,
               class_names: Sequence[str] = ('face',)):
    self.num_landmarks = num_landmarks
    self.num_mesh_points = num_mesh_points
    self.landmark_ocular = landmark_ocular
    self.mesh_ocular = mesh_ocular
    self.hard_max, self.easy_min = hard_max, easy_min
    self.coco = coco.CocoEvaluator(class_names, max_detections=max_detections)
    self.points = {
        'landmarks5': landmark_metrics.LandmarkEvaluator(
            ocular_indices=landmark_ocular, prefix='landmarks5/', landmark_key='points'),
        'mesh': landmark_metrics.LandmarkEvaluator(
            ocular_indices=mesh_ocular, prefix='mesh/', landmark_key='points'),
        'landmarks5_box_size': landmark_metrics.LandmarkEvaluator(
            normalization='box_size', prefix='landmarks5/box_size/',
            landmark_key='points'),
    }
    for name in BINS:
      self.points[f'landmarks5_{name}'] = landmark_metrics.LandmarkEvaluator(
          ocular_indices=landmark_ocular, prefix=f'landmarks5/{name}/',
          landmark_key='points')
    self.batch_keys = tuple(set(self.coco.batch_keys) | {'boxes', 'valid', 'keypoints'})
    keys = set(self.coco.prediction_keys)
    keys |= {'landmarks'} if num_landmarks else set()
    keys |= {'mesh'} if num_mesh_points else set()
    self.prediction_keys = tuple(keys)
    self.reset()

  def reset(self) -> None:
    self.coco.reset()
    for points in self.points.values():
      points.reset()
    self._faces = 0
    self._matched = 0

  def add(self, batch: dict, predictions: dict) -> None:
    self.coco.add(batch, predictions)
    if not self.num_landmarks or 'keypoints' not in batch:
      return
    example_valid = batch.get('example_valid', np.ones(len(batch['boxes']), bool))
    for b in np.flatnonzero(example_valid):
      gt_valid = batch['valid'][b]
      gt_boxes = batch['boxes'][b][gt_valid]
      gt_points = batch['keypoints'][b][gt_valid]
      labelled = np.any(gt_points[:, :self.num_landmarks, 2] > 0, axis=-1)
      dets = np.flatnonzero(predictions['valid'][b])
      dets = dets[np.argsort(-predictions['scores'][b][dets], kind='stable')]
      overlap = _iou(gt_boxes, predictions['boxes'][b][dets]) if len(dets) else None
      used = np.zeros(len(dets), bool)
      sizes = np.prod(gt_boxes[:, 2:] - gt_boxes[:, :2], axis=-1)
      # The bins of `evaluate`, in input pixels (boxes and the scaled original height).
      image_height = float(batch['orig_size'][b][0]) * float(batch['scale'][b])
      face_bins = size_bins(gt_boxes[:, 3] - gt_boxes[:, 1], image_height, self.hard_max,
                            self.easy_min)
      for g in np.argsort(-sizes, kind='stable'):
        if not labelled[g]:
          continue
        self._faces += 1
        if overlap is None:
          continue
        candidates = np.flatnonzero((overlap[g] >= 0.5) & ~used)
        if not len(candidates):
          continue
        d = candidates[0]  # the highest-scoring one (dets are sorted)
        used[d] = True
        self._matched += 1
        det = dets[d]
        for name in ('landmarks5', 'landmarks5_box_size',
                     f'landmarks5_{BINS[face_bins[g]]}'):
          self._add_points(name, gt_points[g, :self.num_landmarks],
                           predictions['landmarks'][b][det], gt_boxes[g])
        if self.num_mesh_points:
          self._add_points('mesh', gt_points[g, self.num_landmarks:],
                           predictions['mesh'][b][det], gt_boxes[g])

  def _add_points(self, name, truth, predicted, box):
    self.points[name].add({'points': truth[None], 'box': box[None]},
                          {'points': predicted[None]})

  def evaluate(self) -> dict[str, float]:
    metrics = self.coco.evaluate()
    truth = self.coco.ground_truth()
    heights = {image['id']: image['height'] for image in truth['images']}
    bins = {}
    for ann in truth['annotations']:
      bins[ann['id']] = int(size_bins(ann['bbox'][3], heights[ann['image_id']],
                                      self.hard_max, self.easy_min))
    for index, name in enumerate(BINS):
      binned = copy.deepcopy(truth)
      for ann in binned['annotations']:
        if bins[ann['id']] != index:
          ann['iscrowd'] = 1
      stats = coco.coco_stats(binned, self.coco.detections(), 'bbox',
                              max_detections=self.coco.max_detections)
      metrics[f'box/AP50_{name}'] = stats[1]
    if self.num_landmarks:
      for name in ('landmarks5', 'landmarks5_box_size', *(f'landmarks5_{b}' for b in BINS)):
        metrics.update(self.points[name].evaluate())
      metrics['landmarks5/matched_fraction'] = (
          self._matched / self._faces if self._faces else float('nan'))
      if self.num_mesh_points:
        metrics.update(self.points['mesh'].evaluate())
    return metrics

  def write(self, workdir: str) -> None:
    self.coco.write(workdir)
