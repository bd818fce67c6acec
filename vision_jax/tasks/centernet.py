"""CenterNet ("Objects as Points", Zhou et al. 2019) as a trainer task.

Targets (gaussian heatmaps, sizes, offsets) are rendered inside the jit'd step from the
padded ground truth of the detection batch contract; decoding (3x3 max-pool peaks, top-K)
runs inside the jit'd predict step.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.data import detection_pipeline
from vision_jax.evaluation import coco
from vision_jax.losses import focal, regression
from vision_jax.models import centernet
from vision_jax.ops import heatmaps
from vision_jax.tasks import base
from vision_jax.tasks import detection_data
from vision_jax.train import optim
from vision_jax.train.state import TrainState
from vision_jax.viz import draw


class CenterNetTask(detection_data.DetectionData, base.Task):

  def __init__(self, config):
    super().__init__(config)
    self.source = detection_pipeline.get_detection_source_from_config(config.data)
    m = config.model
    self.model = centernet.CenterNet(
        num_classes=self.source.num_classes, backbone=m.backbone, width=m.width,
        neck_channels=tuple(m.neck_channels), head_channels=m.head_channels, norm=m.norm,
        dtype=jnp.dtype(m.dtype))
    self.image_size = tuple(config.data.image_size)

  def init_state(self, rng, total_steps):
    variables = self.model.init(rng, jnp.zeros((1, *self.image_size, 3)), train=False)
    params = variables.pop('params')
    tx = optim.make_optimizer(self.config.optimizer, total_steps)
    return TrainState.create(params, tx, dict(variables))

  def losses(self, outputs, batch):
    """Weighted CenterNet losses for model outputs at stride 4."""
    h, w = outputs['heatmap'].shape[1:3]
    targets = heatmaps.centernet_targets(
        batch['boxes'], batch['classes'], batch['valid'], output_size=(h, w),
        stride=centernet.OUTPUT_STRIDE, num_classes=self.source.num_classes)
    weights = self.config.loss
    heat = focal.penalty_reduced_focal_loss(outputs['heatmap'], targets['heatmap'])
    size = regression.masked_l1_loss(outputs['size'], targets['indices'], targets['size'],
                                     targets['mask'])
    offset = regression.masked_l1_loss(outputs['offset'], targets['indices'],
                                       targets['offset'], targets['mask'])
    loss = (weights.heatmap_weight * heat + weights.size_weight * size
            + weights.offset_weight * offset)
    return loss, {'loss': loss, 'heatmap_loss': heat, 'size_loss': size, 'offset_loss': offset}

  def train_step(self, state, batch, rng):
    del rng  # CenterNet training is deterministic given the batch.

    def loss_fn(params):
      outputs, updates = self.model.apply({'params': params, **state.model_state},
                                          batch['image'], train=True, mutable=['batch_stats'])
      loss, metrics = self.losses(outputs, batch)
      return loss, (metrics, updates)

    grads, (metrics, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads, model_state={**state.model_state, **updates}), metrics

  def predict_step(self, state, batch):
    outputs = self.model.apply(state.variables, batch['image'], train=False)
    return centernet.decode(outputs, max_detections=self.config.eval.max_detections,
                            stride=centernet.OUTPUT_STRIDE)

  def make_evaluator(self):
    return coco.CocoEvaluator(self.source.class_names,
                              category_ids=self.source.category_ids,
                              max_detections=self.config.eval.max_detections)

  def draw_predictions(self, batch, predictions):
    n = min(self.config.eval.num_pictures, len(batch['image']))
    return np.stack([
        draw.draw_boxes(batch['image'][i], predictions['boxes'][i], predictions['classes'][i],
                        predictions['scores'][i], class_names=self.source.class_names,
                        valid=predictions['valid'][i] & (predictions['scores'][i] >= 0.3),
                        upscale=3)
        for i in range(n)])


def create(config) -> CenterNetTask:
  return CenterNetTask(config)
