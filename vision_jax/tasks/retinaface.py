"""RetinaFace as a trainer task (config.task = 'retinaface').

One jit'd train step: trunk + FPN + SSH + the four branches, anchor targets for the
padded ground truth, and `vision_jax.losses.retinaface` (class with OHEM, box, 5 points,
mesh; the paper's 1 / 0.25 / 0.1 / 0.01 weights). Prediction decodes, thresholds and
NMSes in jit (`models.retinaface.detect`); evaluation is `evaluation.faces` (COCO box AP
overall and per size bin, NME of the 5 points and of the mesh on matched faces).

Data: the detection contract. Its keypoints are the landmarks followed by the mesh
points (synthetic_faces: 5 + 68 = 73); a dataset without keypoints (wider_face) trains
the box-only model (`model.num_landmarks = model.num_mesh_points = 0`). Config: `model`
(every `RetinaFaceConfig` field), `loss` (`<term>_weight` for class, box, points, mesh;
`points_beta`, the smooth-L1 transition of the point and mesh codes, 1 by default),
one optimizer, and the detection data / eval fields (`tasks.detection_base`);
`eval.size_bins` = (hard_max, easy_min) height fractions of the bins.
"""
import numpy as np

from vision_jax.evaluation import faces
from vision_jax.losses import retinaface as retinaface_losses
from vision_jax.models import retinaface
from vision_jax.tasks import detection_base
from vision_jax.train import config as config_lib
from vision_jax.viz import draw


class RetinaFaceTask(detection_base.DetectionTask):

  def __init__(self, config):
    # The loss settings first: a bad one fails before any data is read.
    self.loss_weights = detection_base.loss_weights(
        config, retinaface_losses.DEFAULT_WEIGHTS, other_keys=('points_beta',))
    self.points_beta = float(config.get('loss', {}).get(
        'points_beta', retinaface_losses.DEFAULT_POINTS_BETA))
    if self.points_beta < 0:
      raise config_lib.ConfigError(f'config.loss.points_beta={self.points_beta}: the '
                                   'smooth-L1 transition is >= 0 (0: plain L1)')
    super().__init__(config)
    try:
      self.model_config = retinaface.from_config_dict(config.model)
    except (TypeError, ValueError) as e:
      raise config_lib.ConfigError(f'config.model: {e}') from e
    cfg = self.model_config
    wanted = cfg.num_landmarks + cfg.num_mesh_points
    have = self.source.num_keypoints
    if wanted and have != wanted:
      raise config_lib.ConfigError(
          f'config.model asks for {cfg.num_landmarks} landmarks + {cfg.num_mesh_points} '
          f'mesh points = {wanted} keypoints per face, but {config.data.dataset} has '
          f'{have} ({", ".join(self.source.keypoint_names[:8]) or "none"}'
          f'{", ..." if have > 8 else ""}); set model.num_landmarks and '
          'model.num_mesh_points to match (0 and 0 for a dataset without landmarks)')
    self.model = retinaface.RetinaFace(cfg)
    self.anchors = retinaface.anchors(cfg, self.image_size)

  def losses(self, params, model_state, batch):
    """(weighted total, (metrics, batch-norm updates)) of one batch."""
    outputs, updates = self.model.apply({'params': params, **model_state}, batch['image'],
                                        train=True, mutable=['batch_stats'])
    terms, stats = retinaface_losses.retinaface_losses(
        self.model_config, self.anchors, outputs, batch, points_beta=self.points_beta)
    loss = sum(self.loss_weights[name] * value for name, value in terms.items())
    b = batch['image'].shape[0]
    metrics = {'loss': loss, **{f'{name}_loss': value for name, value in terms.items()},
               **{f'{name}_per_image': value / b for name, value in stats.items()}}
    return loss, (metrics, updates)

  def train_step(self, state, batch, rng):
    del rng  # deterministic given the batch
    return state.minimize(self.losses, state.model_state, batch)

  def predict_step(self, state, batch):
    outputs = self.model.apply(state.variables, batch['image'], train=False)
    sizes = (detection_base.image_sizes(batch, self.image_size) if 'orig_size' in batch
             else None)
    return retinaface.detect(self.model_config, outputs, self.image_size, sizes)

  def data_options(self):
    return {'num_keypoints': self.model_config.num_landmarks
            + self.model_config.num_mesh_points}

  def make_evaluator(self):
    cfg = self.model_config
    hard_max, easy_min = self.config.eval.get('size_bins', (0.1, 0.25))
    return faces.FaceEvaluator(
        num_landmarks=cfg.num_landmarks, num_mesh_points=cfg.num_mesh_points,
        hard_max=hard_max, easy_min=easy_min, max_detections=cfg.detections_per_image,
        class_names=self.source.class_names)

  def draw_one(self, image, predictions):
    """Boxes with scores, the 5 points and the mesh of faces above the draw threshold."""
    picture = super().draw_one(image, {k: predictions[k] for k in
                                       ('boxes', 'scores', 'classes', 'valid')})
    u = self.draw_upscale
    shown = predictions['valid'] & (predictions['scores'] >= self.draw_score_threshold)
    for key in ('mesh', 'landmarks'):
      points = predictions.get(key)
      if points is None or not points.shape[-2]:
        continue
      scored = np.concatenate([points * u, np.ones((*points.shape[:-1], 1))], -1)
      picture = draw.draw_keypoints(picture, scored, shown, radius=1 if key == 'mesh' else 2)
    return picture


def create(config) -> RetinaFaceTask:
  return RetinaFaceTask(config)
