"""CornerNet and CenterNet with keypoint triplets as one trainer task (config.task =
'cornernet'; `model.centers = True` is the triplet model).

Targets (corner and center gaussians, cells, offsets) are rendered inside the jit'd step
from the padded ground truth of the detection batch (`losses.cornernet`); decoding
(peaks, corner pairing, the triplet check, per-class soft-NMS) runs inside the jit'd
predict step (`models.cornernet.decode`) on the last stack's outputs.

Config: `model` (every `CornerNetConfig` field but num_classes), `loss` (`<term>_weight`
for heatmap, pull, push, offset), one optimizer, and the detection data / eval fields
(`tasks.detection_base`).
"""
from vision_jax.losses import cornernet as cornernet_losses
from vision_jax.models import cornernet
from vision_jax.tasks import detection_base
from vision_jax.train import config as config_lib


class CornerNetTask(detection_base.DetectionTask):

  def __init__(self, config):
    super().__init__(config)
    try:
      self.model_config = cornernet.from_config_dict(config.model, self.source.num_classes)
    except (TypeError, ValueError) as e:
      raise config_lib.ConfigError(f'config.model: {e}') from e
    cfg = self.model_config
    h, w = self.image_size
    if h % cfg.input_multiple or w % cfg.input_multiple:
      raise config_lib.ConfigError(
          f'data.image_size {(h, w)} must be multiples of {cfg.input_multiple} for '
          f'hourglasses of depth {cfg.depth} at stride {cornernet.OUTPUT_STRIDE}')
    self.model = cornernet.CornerNet(cfg)
    self.loss_weights = detection_base.loss_weights(config,
                                                    cornernet_losses.DEFAULT_WEIGHTS)

  def losses(self, params, model_state, batch):
    """(weighted total, (metrics, batch-norm updates)) of one batch."""
    stacks, updates = self.model.apply({'params': params, **model_state}, batch['image'],
                                       train=True, mutable=['batch_stats'])
    cfg = self.model_config
    targets = cornernet_losses.cornernet_targets(
        batch['boxes'], batch['classes'], batch['valid'],
        output_size=stacks[0]['tl_heat'].shape[1:3], stride=cornernet.OUTPUT_STRIDE,
        num_classes=cfg.num_classes, radius_rule=cfg.radius_rule,
        min_overlap=cfg.gaussian_iou, centers=cfg.centers)
    loss, metrics = cornernet_losses.cornernet_loss(stacks, targets, self.loss_weights)
    return loss, (metrics, updates)

  def train_step(self, state, batch, rng):
    del rng  # deterministic given the batch
    return state.minimize(self.losses, state.model_state, batch)

  def predict_step(self, state, batch):
    stacks = self.model.apply(state.variables, batch['image'], train=False)
    return cornernet.decode(self.model_config, stacks[-1])

  def evaluator_options(self):
    return {'max_detections': self.model_config.max_detections}


def create(config) -> CornerNetTask:
  return CornerNetTask(config)
