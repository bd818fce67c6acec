"""What the detection tasks (CenterNet, Mask R-CNN) share: data, evaluation, prediction.

  * Data: `config.data` through `vision_jax.data.detection_pipeline`, at
    `config.train.batch_size` for training and `config.eval.batch_size` for evaluation;
    a task adds its own pipeline options (masks, keypoints) by overriding `data_options`.
  * Evaluation: the per-batch default of `base.Task.evaluate` with a pycocotools
    evaluator. Datasets with original annotations (coco_format, coco/2017) are scored
    against them at original resolution, every annotation kept; others against the
    ground truth of the evaluation batches.
  * Prediction from a file: the image is letterboxed exactly as evaluation does
    (`detection_transforms.letterbox`), and the picture is cropped back to the image.
  * Pictures: drawn at `config.eval.draw_upscale` (default 3), detections with a score
    of at least `config.eval.draw_score_threshold` (default 0.5).
"""
import numpy as np

from vision_jax.data import detection_pipeline
from vision_jax.data import detection_transforms
from vision_jax.evaluation import coco
from vision_jax.tasks import base


class DetectionTask(base.Task):
  """A `base.Task` that reads detection batches and is scored by COCO's metrics."""

  def __init__(self, config):
    super().__init__(config)
    self.source = detection_pipeline.get_detection_source_from_config(config.data)
    self.image_size = tuple(config.data.image_size)

  # Data.

  def data_options(self) -> dict:
    """Extra `make_detection_dataset` arguments of this task (e.g. with_masks)."""
    return {}

  def _data(self, split, training, batch_size, **kwargs):
    return detection_pipeline.make_detection_dataset_from_config(
        self.config.data, split=split, batch_size=batch_size, training=training,
        seed=self.config.seed, **self.data_options(), **kwargs)

  def train_data(self, *, start_batch, process_index, process_count):
    return self._data(self.config.data.train_split, True, self.config.train.batch_size,
                      start_batch=start_batch, process_index=process_index,
                      process_count=process_count)

  def eval_data(self, *, process_index, process_count):
    return self._data(self.config.data.eval_split, False, self.config.eval.batch_size,
                      process_index=process_index, process_count=process_count)

  # Evaluation.

  def evaluator_options(self) -> dict:
    """Extra `coco.CocoEvaluator` arguments (iou types, keypoints, mask field)."""
    return {}

  def make_evaluator(self) -> coco.CocoEvaluator:
    original = self.source.original_ground_truth
    return coco.CocoEvaluator(
        self.source.class_names, category_ids=self.source.category_ids,
        ground_truth=original(self.config.data.eval_split) if original else None,
        **self.evaluator_options())

  @property
  def draw_upscale(self) -> int:
    return int(self.config.eval.get('draw_upscale', 3))

  @property
  def draw_score_threshold(self) -> float:
    return float(self.config.eval.get('draw_score_threshold', 0.5))

  def draw_one(self, image: np.ndarray, predictions: dict) -> np.ndarray:
    """[H * upscale, W * upscale, 3] uint8 picture of one example's predictions."""
    raise NotImplementedError

  def draw_predictions(self, batch, predictions):
    n = min(self.config.eval.num_pictures, len(batch['image']))
    return np.stack([self.draw_one(batch['image'][i], {k: v[i] for k, v in predictions.items()})
                     for i in range(n)])

  # Prediction from a file.

  def prediction_batch(self, request):
    if request.get('image') is None:
      raise base.PredictionRequestError(
          f'task {self.config.task!r} predicts on an image: pass --image=FILE')
    return detection_transforms.letterbox(request['image'], self.image_size)

  def draw_prediction(self, batch, predictions):
    picture = self.draw_one(batch['image'][0], {k: v[0] for k, v in predictions.items()})
    h, w = np.round(batch['orig_size'][0] * batch['scale'][0]).astype(int)
    return picture[:h * self.draw_upscale, :w * self.draw_upscale]
