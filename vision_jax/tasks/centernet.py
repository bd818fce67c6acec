"""CenterNet ("Objects as Points", Zhou et al. 2019) as a trainer task.

Targets (gaussian heatmaps, sizes, offsets) are rendered inside the jit'd step from the
padded ground truth of the detection batch contract (`vision_jax.losses.centernet`);
decoding (3x3 max-pool peaks, top-K) runs inside the jit'd predict step.

Config: `model` (backbone, width, neck_channels, head_channels, norm, dtype, and the
optional skips), `loss` (heatmap_weight, size_weight, offset_weight, normalize), one
optimizer (`optimizers.<name>`), and the detection data / eval fields
(`tasks.detection_base`).
"""
import jax.numpy as jnp

from vision_jax.losses import centernet as centernet_losses
from vision_jax.models import centernet
from vision_jax.tasks import detection_base


class CenterNetTask(detection_base.DetectionTask):

  def __init__(self, config):
    super().__init__(config)
    m = config.model
    self.model = centernet.CenterNet(
        num_classes=self.source.num_classes, backbone=m.backbone, width=m.width,
        neck_channels=tuple(m.neck_channels), head_channels=m.head_channels, norm=m.norm,
        dtype=jnp.dtype(m.dtype), skips=bool(m.get('skips', False)))

  def losses(self, params, model_state, batch):
    """(weighted total, (metrics, batch-norm updates)) of one batch."""
    outputs, updates = self.model.apply({'params': params, **model_state}, batch['image'],
                                        train=True, mutable=['batch_stats'])
    weights = self.config.loss
    loss, metrics = centernet_losses.centernet_loss(
        outputs, batch['boxes'], batch['classes'], batch['valid'],
        stride=centernet.OUTPUT_STRIDE, num_classes=self.source.num_classes,
        heatmap_weight=weights.heatmap_weight, size_weight=weights.size_weight,
        offset_weight=weights.offset_weight, normalize=weights.get('normalize', 'objects'))
    return loss, (metrics, updates)

  def train_step(self, state, batch, rng):
    del rng  # CenterNet training is deterministic given the batch.
    return state.minimize(self.losses, state.model_state, batch)

  def predict_step(self, state, batch):
    outputs = self.model.apply(state.variables, batch['image'], train=False)
    return centernet.decode(outputs, max_detections=self.config.eval.max_detections,
                            stride=centernet.OUTPUT_STRIDE)

  def evaluator_options(self):
    return {'max_detections': self.config.eval.max_detections}


def create(config) -> CenterNetTask:
  return CenterNetTask(config)
