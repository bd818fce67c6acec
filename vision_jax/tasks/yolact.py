"""YOLACT as a trainer task (config.task = 'yolact').

One jit'd train step: backbone + FPN + protonet + shared head, anchor targets for the
padded ground truth, and the four losses of `vision_jax.losses.yolact` (class with OHEM,
box, mask from prototypes x coefficients, semantic). Prediction runs
`vision_jax.models.yolact.predict` (Fast NMS, assembled masks at the input size, in
jit); evaluation is COCO's bbox and segm on the full-image masks.

Config: `model` (every `YolactConfig` field; num_classes from the dataset), `loss`
(`<term>_weight` for class, box, mask, semantic; the reference's 1, 1.5, 6.125, 1 by
default), one optimizer (`optimizers.<name>`), and the detection data / eval fields
(`vision_jax.tasks.detection_base`).
"""
import jax

from vision_jax.losses import yolact as yolact_losses
from vision_jax.models import yolact
from vision_jax.tasks import detection_base
from vision_jax.train import config as config_lib


class YolactTask(detection_base.DetectionTask):

  def __init__(self, config):
    super().__init__(config)
    try:
      self.model_config, self.model = self.build_model(config.model, self.source.num_classes)
    except (TypeError, ValueError) as e:
      raise config_lib.ConfigError(f'config.model: {e}') from e
    self.anchors = yolact.anchors(self.model_config, self.image_size)
    self.loss_weights = detection_base.loss_weights(config, self.default_loss_weights(),
                                                    self.other_loss_keys())

  def source_from_config(self, data_config):
    source = super().source_from_config(data_config)
    if not source.has_masks:
      raise config_lib.ConfigError(f'YOLACT trains on instance masks; {data_config.dataset} '
                                   'has none')
    return source

  def build_model(self, model_config, num_classes):
    """(the model's config, the flax module) from `config.model`."""
    cfg = yolact.from_config_dict(model_config, num_classes)
    return cfg, yolact.Yolact(cfg)

  def default_loss_weights(self) -> dict[str, float]:
    return dict(yolact_losses.DEFAULT_WEIGHTS)

  def other_loss_keys(self) -> tuple[str, ...]:
    """`config.loss` keys that are not `<term>_weight`."""
    return ()

  def weighted_sum(self, terms: dict) -> jax.Array:
    """sum of weight(term) * value over YOLACT's loss terms."""
    return sum(self.loss_weights[name] * value for name, value in terms.items())

  def losses(self, params, model_state, batch, rng):
    """(weighted total, (metrics, batch-norm updates)) of one batch."""
    outputs, updates = self.model.apply({'params': params, **model_state}, batch['image'],
                                        train=True, mutable=['batch_stats'])
    terms, num_positive = yolact_losses.yolact_losses(self.model_config, self.anchors,
                                                      outputs, batch, rng)
    loss = self.weighted_sum(terms)
    metrics = {'loss': loss, **{f'{name}_loss': value for name, value in terms.items()},
               'positive_anchors': num_positive / batch['image'].shape[0]}
    return loss, (metrics, updates)

  def train_step(self, state, batch, rng):
    return state.minimize(self.losses, state.model_state, batch, rng)

  def predict_step(self, state, batch):
    sizes = (detection_base.image_sizes(batch, self.image_size) if 'orig_size' in batch
             else None)
    return yolact.predict(self.model, state.variables, batch['image'], sizes)

  def data_options(self):
    return {'with_masks': True}

  def evaluator_options(self):
    return {'iou_types': ['bbox', 'segm'], 'mask_key': 'masks',
            'max_detections': self.model_config.detections_per_image}


def create(config) -> YolactTask:
  return YolactTask(config)
