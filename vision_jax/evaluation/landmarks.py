"""Facial (or body) landmark metrics: NME, PCK, failure rate and CED AUC, from numpy.

  evaluator = LandmarkEvaluator(normalization='inter_ocular', ocular_indices=(36, 45))
  for batch in eval_batches:
    evaluator.add(batch, predictions)     # numpy dicts
  metrics = evaluator.evaluate()
  # {'landmarks/NME': ..., 'landmarks/PCK@0.1': ..., 'landmarks/failure_rate': ...,
  #  'landmarks/AUC@0.1': ..., 'landmarks/num_faces': ...}

Batch keys (one row per face; a detector's task flattens its matched faces into rows):
  landmarks      [B, K, 3] float (x, y, visibility) in input pixels; visibility > 0 =
                 labelled and scored.
  example_valid  [B] bool, optional (all valid): padding rows are skipped.
  box            [B, 4] float (x1, y1, x2, y2) input pixels, optional: the face box for
                 normalization='box_diagonal' or 'box_size' (without it, the box of
                 the face's visible ground-truth landmarks).
Prediction keys:
  landmarks      [B, K, 2] float (x, y) input pixels ([B, K, >2]: the first two are read).
Any pixel frame works as long as predictions, ground truth and boxes share it: every
metric is a ratio of distances.

Definitions, with d the face's normaliser and e_k = ||pred_k - gt_k|| / d:
  * normaliser: 'inter_ocular' = ||gt_a - gt_b|| for `ocular_indices` (a, b) (the outer
    eye corners 36, 45 of the 68-point 300-W scheme, 60, 72 of WFLW's 98, the eye
    centres 0, 1 of RetinaFace's 5: `OCULAR_INDICES`); 'box_diagonal' =
    sqrt(w^2 + h^2) of the face box; 'box_size' = sqrt(w h) (RetinaFace's 5-point NME
    on AFLW and WIDER FACE).
  * NME: per face, the mean of e_k over its visible points; then the mean over faces.
  * PCK@t: the fraction of all visible points (pooled over faces) with e_k <= t.
  * failure_rate@t: the fraction of faces with NME > t.
  * AUC@t: the area under the cumulative error distribution CED(x) = fraction of faces
    with NME <= x, for x in [0, t], divided by t. Computed EXACTLY: CED is a step
    function, so (1 / t) * integral_0^t CED = mean over faces of max(0, 1 - NME / t).
    The 300-W / WFLW scripts integrate CED sampled every 1e-4 with Simpson's or the
    trapezoid rule, which converges to the same number (differences ~1e-3 at most).
Faces are skipped (and not counted in `num_faces`) when they have no visible point or
their normaliser is undefined: an ocular point invisible, or d <= 0. Metrics over no
face are NaN.
"""

import numpy as np

from vision_jax.evaluation import evaluator

NORMALIZATIONS = ('inter_ocular', 'box_diagonal', 'box_size')
BOX_NORMALIZATIONS = ('box_diagonal', 'box_size')
# Number of landmarks of a scheme -> the (a, b) indices of its inter-ocular distance.
OCULAR_INDICES = {5: (0, 1), 68: (36, 45), 98: (60, 72)}


def normalizers(gt: np.ndarray, visible: np.ndarray, normalization: str = 'inter_ocular',
                ocular_indices: tuple[int, int] | None = None,
                boxes: np.ndarray | None = None) -> np.ndarray:
  """Per-face normalising distances.

  Args:
    gt: [N, K, 2] ground-truth (x, y).
    visible: [N, K] bool.
    normalization: one of NORMALIZATIONS.
    ocular_indices: (a, b) for 'inter_ocular' (default OCULAR_INDICES[K]).
    boxes: [N, 4] (x1, y1, x2, y2) for 'box_diagonal' and 'box_size'; None: the box of
      the visible ground-truth points.

  Returns:
    [N] float64; NaN where undefined (an ocular point invisible, no visible point, or
    a non-positive distance).
  """
  gt = np.asarray(gt, np.float64)[..., :2]
  visible = np.asarray(visible, bool)
  n, k = visible.shape
  if normalization == 'inter_ocular':
    a, b = _ocular_indices(k, ocular_indices)
    d = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
    d = np.where(visible[:, a] & visible[:, b], d, np.nan)
  elif normalization in ('box_diagonal', 'box_size'):
    if boxes is None:
      lo = np.where(visible[..., None], gt, np.inf).min(axis=1)
      hi = np.where(visible[..., None], gt, -np.inf).max(axis=1)
      size = np.where(visible.any(axis=1)[:, None], hi - lo, np.nan)
    else:
      boxes = np.asarray(boxes, np.float64).reshape(n, 4)
      size = boxes[:, 2:] - boxes[:, :2]
    d = (np.linalg.norm(size, axis=-1) if normalization == 'box_diagonal'
         else np.sqrt(np.prod(np.maximum(size, 0.0), axis=-1)))
  else:
    raise ValueError(f'normalization must be one of {NORMALIZATIONS}, not {normalization!r}')
  return np.where(d > 0, d, np.nan)


def _ocular_indices(num_points: int, ocular_indices):
  if ocular_indices is not None:
    a, b = (int(i) for i in ocular_indices)
  elif num_points in OCULAR_INDICES:
    a, b = OCULAR_INDICES[num_points]
  else:
    raise ValueError(f'no default inter-ocular indices for {num_points} landmarks; pass '
                     f'ocular_indices (known: {OCULAR_INDICES})')
  if not (0 <= a < num_points and 0 <= b < num_points):
    raise ValueError(f'ocular_indices {(a, b)} out of range for {num_points} landmarks')
  return a, b


def normalized_errors(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray,
                      normalizer: np.ndarray) -> np.ndarray:
  """[N, K] point errors ||pred - gt|| / normaliser; NaN where a point is invisible or
  its face's normaliser is NaN. pred, gt: [N, K, 2]; visible [N, K]; normalizer [N]."""
  pred = np.asarray(pred, np.float64)[..., :2]
  gt = np.asarray(gt, np.float64)[..., :2]
  err = np.linalg.norm(pred - gt, axis=-1) / np.asarray(normalizer, np.float64)[:, None]
  return np.where(np.asarray(visible, bool), err, np.nan)


def face_nme(errors: np.ndarray) -> np.ndarray:
  """[N, K] normalised errors (NaN = not scored) -> [N] per-face NME (NaN: none scored)."""
  scored = ~np.isnan(errors)
  count = scored.sum(axis=1)
  total = np.where(scored, errors, 0.0).sum(axis=1)
  return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def pck(errors: np.ndarray, threshold: float = 0.1) -> float:
  """Fraction of the scored points (non-NaN entries of errors) with error <= threshold."""
  scored = errors[~np.isnan(errors)]
  return float(np.mean(scored <= threshold)) if scored.size else float('nan')


def failure_rate(nmes: np.ndarray, threshold: float = 0.1) -> float:
  """Fraction of faces whose NME is above threshold ([N] per-face NMEs, no NaN)."""
  nmes = np.asarray(nmes, np.float64)
  return float(np.mean(nmes > threshold)) if nmes.size else float('nan')


def ced_auc(nmes: np.ndarray, threshold: float = 0.1) -> float:
  """Area under the cumulative error distribution on [0, threshold], / threshold.

  Exact for the step function CED(x) = mean(nmes <= x): mean(max(0, 1 - nme / t)).
  """
  nmes = np.asarray(nmes, np.float64)
  if not nmes.size:
    return float('nan')
  return float(np.mean(np.maximum(0.0, 1.0 - nmes / threshold)))


def ced_curve(nmes: np.ndarray, threshold: float = 0.1, step: float = 1e-4
              ) -> tuple[np.ndarray, np.ndarray]:
  """The CED curve sampled every `step` on [0, threshold]: (x, fraction of NME <= x)."""
  xs = np.arange(0.0, threshold + step / 2, step)
  nmes = np.sort(np.asarray(nmes, np.float64))
  ys = np.searchsorted(nmes, xs, side='right') / max(len(nmes), 1)
  return xs, ys


def metrics_from_errors(errors: np.ndarray, threshold: float = 0.1,
                        prefix: str = 'landmarks/') -> dict[str, float]:
  """All metrics of the module doc from [N, K] normalised errors (NaN = not scored;
  faces with no scored point are skipped)."""
  nmes = face_nme(errors)
  keep = ~np.isnan(nmes)
  errors, nmes = errors[keep], nmes[keep]
  t = f'{threshold:g}'
  return {
      f'{prefix}NME': float(np.mean(nmes)) if nmes.size else float('nan'),
      f'{prefix}PCK@{t}': pck(errors, threshold),
      f'{prefix}failure_rate': failure_rate(nmes, threshold),
      f'{prefix}AUC@{t}': ced_auc(nmes, threshold),
      f'{prefix}num_faces': float(nmes.size),
  }


def landmark_metrics(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray,
                     normalizer: np.ndarray, threshold: float = 0.1,
                     prefix: str = 'landmarks/') -> dict[str, float]:
  """All metrics of the module doc for [N, K, 2] pred / gt, [N, K] visible, [N]
  normalizer (faces with a NaN normaliser or no visible point are skipped)."""
  return metrics_from_errors(normalized_errors(pred, gt, visible, normalizer), threshold,
                             prefix)


class LandmarkEvaluator(evaluator.Evaluator):
  """Accumulates per-face normalised errors over batches; see the module doc for keys."""

  def __init__(self, *, normalization: str = 'inter_ocular',
               ocular_indices: tuple[int, int] | None = None, threshold: float = 0.1,
               prefix: str = 'landmarks/', landmark_key: str = 'landmarks'):
    """Args:
      normalization: one of NORMALIZATIONS.
      ocular_indices: (a, b) landmark indices for 'inter_ocular' (default by the number
        of landmarks, OCULAR_INDICES).
      threshold: of PCK, failure rate and AUC (0.1 in 300-W / WFLW).
      prefix: metric names' prefix, e.g. 'landmarks5/' for RetinaFace's 5 points.
      landmark_key: the batch and prediction key of the landmarks.
    'box_diagonal' and 'box_size' read the batch's 'box' where the batch has one, else
    they use the box of the visible ground-truth points.
    """
    if normalization not in NORMALIZATIONS:
      raise ValueError(f'normalization must be one of {NORMALIZATIONS}, '
                       f'not {normalization!r}')
    self.normalization = normalization
    self.ocular_indices = ocular_indices
    self.threshold = float(threshold)
    self.prefix = prefix
    self.landmark_key = landmark_key
    self.prediction_keys = (landmark_key,)
    self.batch_keys = (landmark_key, 'example_valid') + (
        ('box',) if normalization in BOX_NORMALIZATIONS else ())
    self.reset()

  def reset(self) -> None:
    self._errors: list[np.ndarray] = []

  def add(self, batch: dict, predictions: dict) -> None:
    """Adds one batch: batch[landmark_key] [B, K, 3], predictions[landmark_key] [B, K, 2]."""
    gt = np.asarray(batch[self.landmark_key], np.float64)
    pred = np.asarray(predictions[self.landmark_key], np.float64)[..., :2]
    if gt.ndim != 3 or gt.shape[-1] < 3:
      raise ValueError(f'batch[{self.landmark_key!r}] must be [B, K, 3] (x, y, visibility),'
                       f' got {gt.shape}')
    if pred.shape != gt.shape[:2] + (2,):
      raise ValueError(f'predictions[{self.landmark_key!r}] {pred.shape} does not match '
                       f'the ground truth {gt.shape}')
    keep = np.asarray(batch.get('example_valid', np.ones(len(gt), bool)), bool)
    visible = gt[..., 2] > 0
    boxes = (np.asarray(batch['box'], np.float64)
             if self.normalization in BOX_NORMALIZATIONS and 'box' in batch else None)
    d = normalizers(gt[..., :2], visible, self.normalization, self.ocular_indices, boxes)
    errors = normalized_errors(pred, gt[..., :2], visible, d)
    self._errors.append(errors[keep])

  def errors(self) -> np.ndarray:
    """[N, K] normalised errors of every face added (NaN: not scored)."""
    if not self._errors:
      return np.zeros((0, 0))
    return np.concatenate(self._errors, axis=0)

  def evaluate(self) -> dict[str, float]:
    """{prefix + 'NME', 'PCK@t', 'failure_rate', 'AUC@t', 'num_faces'}."""
    return metrics_from_errors(self.errors(), self.threshold, self.prefix)
