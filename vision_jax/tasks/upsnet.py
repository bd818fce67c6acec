"""UPSNet as a trainer task (config.task = 'upsnet').

One jit'd train step: Mask R-CNN's (`vision_jax.tasks.mask_rcnn`, reused), plus
  semantic   cross-entropy of the semantic head, upsampled x4 to the labels;
  panoptic   the panoptic head on the ground-truth instances (a random `drop_fraction`
             of them left out per image, so the unknown channel learns), at the
             semantic head's 1/4 scale as the reference, cross-entropy against
             `vision_jax.losses.panoptic.panoptic_targets`.
Prediction runs `vision_jax.models.upsnet.predict`; evaluation is COCO's bbox / segm of
the instance branch plus PQ (`vision_jax.evaluation.panoptic_evaluator`).

The dataset must carry semantic maps whose first K classes are its K thing classes (in
order) and the rest stuff (synthetic_shapes: circle, square, triangle, sky, ground).

Config: as mask_rcnn's, `model` with every `UPSNetConfig` field (num_classes and
num_stuff come from the dataset), `loss.<term>_weight` for Mask R-CNN's terms plus
`semantic` and `panoptic` (default 1; experiments/upsnet_coco.py sets the reference's
0.2 and 0.1), and `loss.drop_fraction` (0.3).
"""
import jax
import jax.numpy as jnp

from vision_jax.evaluation import panoptic_evaluator
from vision_jax.losses import panoptic as panoptic_losses
from vision_jax.models import mask_rcnn
from vision_jax.models import upsnet
from vision_jax.tasks import detection_base
from vision_jax.tasks import mask_rcnn as mask_rcnn_task
from vision_jax.train import config as config_lib
from vision_jax.viz import draw

PANOPTIC_LOSSES = ('semantic', 'panoptic')
DEFAULT_DROP_FRACTION = 0.3


class UPSNetTask(mask_rcnn_task.MaskRCNNTask):

  def source_from_config(self, data_config):
    source = super().source_from_config(data_config)
    names = source.semantic_names
    if names is None:
      raise config_lib.ConfigError(f'UPSNet trains on semantic maps; {data_config.dataset} '
                                   'has none')
    k = source.num_classes
    if tuple(names[:k]) != tuple(source.class_names) or len(names) <= k:
      raise config_lib.ConfigError(
          f'{data_config.dataset}: UPSNet needs semantic classes = the {k} thing classes '
          f'{tuple(source.class_names)} first, then at least one stuff class; got {names}')
    if not source.has_masks:
      raise config_lib.ConfigError(f'UPSNet trains on instance masks; {data_config.dataset} '
                                   'has none')
    return source

  def build_model(self, model_config):
    k = self.source.num_classes
    cfg = upsnet.from_config_dict(model_config, k, len(self.source.semantic_names) - k)
    return cfg, upsnet.UPSNet(cfg)

  def default_loss_weights(self):
    return {**super().default_loss_weights(), **{name: 1.0 for name in PANOPTIC_LOSSES}}

  def other_loss_keys(self):
    return ('drop_fraction',)

  @property
  def drop_fraction(self) -> float:
    value = float(self.config.get('loss', {}).get('drop_fraction', DEFAULT_DROP_FRACTION))
    if not 0.0 <= value < 1.0:
      raise config_lib.ConfigError(f'loss.drop_fraction must be in [0, 1), got {value}')
    return value

  def losses(self, params, model_state, batch, rng):
    """Mask R-CNN's losses + the semantic and panoptic terms."""
    cfg = self.model_config
    rcnn_key, drop_key = jax.random.split(rng)
    loss, metrics, updates, pyramid = self.rcnn_losses(params, model_state, batch, rcnn_key)
    variables = {'params': params, **model_state}
    semantic = self.model.apply(variables, pyramid, method=upsnet.UPSNet.semantic_head)
    labels = batch['semantic']
    terms = {'semantic': panoptic_losses.semantic_loss(
        upsnet.semantic_at(semantic, labels.shape[1:3]), labels)}

    crowd = batch['valid'] & batch['is_crowd']
    instances = batch['valid'] & ~batch['is_crowd']
    if cfg.unknown_channel:
      instances = panoptic_losses.keep_instances(drop_key, instances, self.drop_fraction)
    mask_logits = self.model.apply(variables, pyramid, batch['boxes'],
                                   method=mask_rcnn.MaskRCNN.mask_head)
    chosen = jnp.take_along_axis(mask_logits, (batch['classes'] + 1)[:, :, None, None, None],
                                 axis=-1)[..., 0]
    logits = upsnet.panoptic_logits(semantic, batch['boxes'], batch['classes'], chosen,
                                    instances, num_things=cfg.num_classes,
                                    stride=upsnet.SEMANTIC_STRIDE,
                                    unknown_channel=cfg.unknown_channel)
    targets = panoptic_losses.panoptic_targets(
        labels, batch['masks'], instances, crowd, num_things=cfg.num_classes,
        num_stuff=cfg.num_stuff, unknown_channel=cfg.unknown_channel)
    targets = panoptic_losses.subsample(targets, upsnet.SEMANTIC_STRIDE)
    terms['panoptic'] = panoptic_losses.masked_cross_entropy(logits, targets)
    loss = loss + sum(self.loss_weights[name] * value for name, value in terms.items())
    metrics = {**metrics, 'loss': loss, **{f'{name}_loss': v for name, v in terms.items()},
               'panoptic_accuracy': _accuracy(logits, targets)}
    return loss, (metrics, updates)

  def predict_step(self, state, batch):
    sizes = detection_base.image_sizes(batch, self.image_size) if 'orig_size' in batch else None
    return upsnet.predict(self.model, state.variables, batch['image'], sizes)

  def data_options(self):
    return {**super().data_options(), 'with_masks': True, 'with_semantic': True}

  def make_evaluator(self):
    return panoptic_evaluator.PanopticEvaluator(
        super().make_evaluator(), self.source.semantic_names,
        num_things=self.source.num_classes,
        category_ids=self.source.semantic_category_ids)

  def draw_one(self, image, predictions):
    """The panoptic map (a colour per segment, stuff muted) under the boxes and names of
    the instance segments."""
    c = self.model_config
    names = self.source.semantic_names
    picture = draw.draw_panoptic(
        image, predictions['panoptic'], predictions['segment_classes'],
        predictions['segment_valid'], num_stuff=c.num_stuff, num_things=c.num_classes)
    s = c.num_stuff
    shown = predictions['segment_valid'][s:]
    boxes = predictions['boxes'][:c.panoptic_detections]
    return draw.draw_boxes(picture, boxes, predictions['classes'][:c.panoptic_detections],
                           predictions['scores'][:c.panoptic_detections],
                           class_names=names[:c.num_classes], valid=shown,
                           upscale=self.draw_upscale)


def _accuracy(logits, targets):
  labelled = targets >= 0
  right = (jnp.argmax(logits, axis=-1) == targets) & labelled
  return jnp.sum(right) / jnp.maximum(jnp.sum(labelled), 1)


def create(config) -> UPSNetTask:
  return UPSNetTask(config)
