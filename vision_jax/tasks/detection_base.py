"""What the detection tasks (CenterNet, Mask R-CNN, YOLACT) share: state, data,
evaluation, prediction, pictures.

  * State: the model's variables from `initial_variables`, named optimizers and EMA
    from the config (`vision_jax.train.optim`); loss weights from `config.loss`
    (`loss_weights`).

  * Data: `config.data` through `vision_jax.data.detection_pipeline`, at
    `config.train.batch_size` for training and `config.eval.batch_size` for evaluation;
    a task adds its own pipeline options (masks, keypoints) by overriding `data_options`.
  * Evaluation: the per-batch default of `base.Task.evaluate` with a pycocotools
    evaluator. Datasets with original annotations (coco_format, coco/2017) are scored
    against them at original resolution, every annotation kept; others against the
    ground truth of the evaluation batches.
  * Prediction from a file: the image is letterboxed exactly as evaluation does
    (`single_image.letterbox`), and the picture is cropped back to the image. Neither
    that nor the dataset's class names need TensorFlow: the pipeline module is imported
    when data is read.
  * Pictures: drawn at `config.eval.draw_upscale` (default 3), detections with a score
    of at least `config.eval.draw_score_threshold` (default 0.5).
"""
from typing import Mapping

from absl import logging
import jax.numpy as jnp
import numpy as np

from vision_jax.data import detection_sources
from vision_jax.data import single_image
from vision_jax.evaluation import coco
from vision_jax.models import mask_rcnn_torchvision
from vision_jax.tasks import base
from vision_jax.train import config as config_lib
from vision_jax.train import optim
from vision_jax.train.state import TrainState
from vision_jax.viz import draw


def loss_weights(config, defaults: Mapping[str, float], other_keys=()) -> dict[str, float]:
  """{term: weight} from `config.loss.<term>_weight`, else the default; keys that are
  neither weights nor `other_keys` (the task's other loss settings) fail."""
  given = dict(config.loss) if 'loss' in config else {}
  known = [f'{name}_weight' for name in defaults] + list(other_keys)
  unknown = sorted(set(given) - set(known))
  if unknown:
    raise config_lib.ConfigError(f'unknown loss weights {unknown}; known: {known}')
  return {name: float(given.get(f'{name}_weight', default))
          for name, default in defaults.items()}


def image_sizes(batch: dict, image_size) -> jnp.ndarray:
  """[..., 2] (height, width) of the real image inside each letterboxed input, from
  `orig_size` [..., 2] and `scale` [...] (any leading axes: images, or clips x frames)."""
  size = jnp.round(batch['orig_size'].astype(jnp.float32) * batch['scale'][..., None])
  return jnp.minimum(size, jnp.asarray(image_size, jnp.float32)).astype(jnp.int32)


class DetectionTask(base.ConfigSplits, base.Task):
  """A `base.Task` that reads detection batches and is scored by COCO's metrics.

  A subclass sets `self.model` (a flax module taking [B, H, W, 3] uint8 images) and may
  override `initial_variables` (e.g. to load converted weights).
  """

  def __init__(self, config):
    super().__init__(config)
    self.source = self.source_from_config(config.data)
    self.image_size = tuple(config.data.image_size)

  def source_from_config(self, data_config):
    """The dataset's adapter: class names, category ids, original ground truth."""
    return detection_sources.get_detection_source_from_config(data_config)

  # State.

  def initial_variables(self, rng) -> dict:
    """The model's variables at initialisation (params and collections), started from
    `config.init.torchvision_checkpoint` when it is set."""
    variables = dict(self.model.init(rng, jnp.zeros((1, *self.image_size, 3), jnp.uint8),
                                     train=False))
    path = self.config.get('init', {}).get('torchvision_checkpoint')
    if not path:
      return variables
    try:
      state_dict = mask_rcnn_torchvision.read_torchvision_state_dict(path)
      variables = self.variables_from_torchvision(variables, state_dict)
    except (FileNotFoundError, ImportError, ValueError) as e:
      raise config_lib.ConfigError(f'init.torchvision_checkpoint={path!r}: {e}') from e
    logging.info('Initialized from the torchvision checkpoint %s', path)
    return dict(variables)

  def variables_from_torchvision(self, variables: dict, state_dict) -> dict:
    """Variables with the `backbone` replaced by a torchvision ImageNet ResNet (a family
    that can read more of a checkpoint overrides this)."""
    model = self.config.model
    return mask_rcnn_torchvision.init_backbone_from_torchvision(
        variables, state_dict, model.backbone, model.get('width', 64))

  def init_state(self, rng, total_steps):
    variables = self.initial_variables(rng)
    params = variables.pop('params')
    return TrainState.create(params, optim.make_optimizers(self.config, total_steps),
                             variables, ema=optim.ema_from_config(self.config))

  # Data.

  def data_options(self) -> dict:
    """Extra `make_detection_dataset` arguments of this task (e.g. with_masks)."""
    return {}

  def split_data(self, split, training, batch_size, **kwargs):
    from vision_jax.data import detection_pipeline  # pylint: disable=g-import-not-at-top
    return detection_pipeline.make_detection_dataset_from_config(
        self.config.data, split=split, batch_size=batch_size, training=training,
        seed=self.config.seed, **self.data_options(), **kwargs)

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
    """[H * upscale, W * upscale, 3] uint8 picture of one example's predictions.

    Detections with a score of at least `draw_score_threshold` are drawn with their
    boxes, and their masks and keypoints when the predictions hold them.
    """
    upscale = self.draw_upscale
    shown = predictions['valid'] & (predictions['scores'] >= self.draw_score_threshold)
    if 'masks' in predictions:
      image = draw.draw_masks(image, predictions['masks'], predictions['classes'], shown)
    picture = draw.draw_boxes(image, predictions['boxes'], predictions['classes'],
                              predictions['scores'], class_names=self.source.class_names,
                              valid=shown, upscale=upscale)
    if 'keypoints' in predictions:
      # Every predicted keypoint of a shown detection is drawn.
      picture = draw.draw_keypoints(picture, predictions['keypoints'] * [upscale, upscale, 1],
                                    shown, skeleton=self.source.keypoint_skeleton,
                                    score_threshold=-np.inf)
    return picture

  def draw_predictions(self, batch, predictions):
    n = min(self.config.eval.num_pictures, len(batch['image']))
    return np.stack([self.draw_one(batch['image'][i], {k: v[i] for k, v in predictions.items()})
                     for i in range(n)])

  # Prediction from a file.

  def prediction_batch(self, request):
    if request.get('image') is None:
      raise base.PredictionRequestError(
          f'task {self.config.task!r} predicts on an image: pass --image=FILE')
    return single_image.letterbox(request['image'], self.image_size)

  def draw_prediction(self, batch, predictions):
    picture = self.draw_one(batch['image'][0], {k: v[0] for k, v in predictions.items()})
    h, w = np.round(batch['orig_size'][0] * batch['scale'][0]).astype(int)
    return picture[:h * self.draw_upscale, :w * self.draw_upscale]
