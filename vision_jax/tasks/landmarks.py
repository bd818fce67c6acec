"""Landmark localization (Stacked Hourglass heatmaps, integral regression, coordinate
regression; `vision_jax.models.landmarks`) as a trainer task.

Data: the landmark contract (`vision_jax.data.landmark_pipeline`): square crops of
`config.data.image_size` with `config.data.points` (a point set of the dataset, e.g.
'mesh68') in crop pixels. Config:
  model   kind ('heatmap' | 'integral' | 'regression'), num_points (None: the point
          set's; a different number stops with an error), the hourglass (num_stacks,
          features, depth, stem_widths, heatmap_stride: 4 or 2) or the regression
          trunk (backbone, width), norm, dtype.
  loss    sigma (Gaussian target std in heatmap pixels; the paper's 1 at 64 x 64),
          heatmap_weight (MSE summed over stacks), coord_weight (L1 on normalised
          coordinates, every stack for 'integral').
  eval    normalization ('inter_ocular' with the point set's ocular indices, or
          'box_diagonal'), flip_test (average with the mirrored crop: heatmaps for
          'heatmap', as the reference; points otherwise), heatmap_refinement
          ('quarter' | 'dark': `models.landmarks.stack_points`), batch_size,
          num_pictures, draw_upscale.
Targets are rendered inside the jit'd step; decoding runs inside the jit'd predict step.
Metrics (`vision_jax.evaluation.landmarks`): landmarks/NME, PCK@0.1, failure_rate,
AUC@0.1, num_faces.
"""
import jax.numpy as jnp
import numpy as np
from PIL import Image

from vision_jax.data import landmark_pipeline
from vision_jax.evaluation import landmarks as landmark_metrics
from vision_jax.losses import landmarks as landmark_losses
from vision_jax.models import landmarks as landmark_models
from vision_jax.ops import landmarks as landmark_ops
from vision_jax.tasks import base
from vision_jax.train import config as config_lib
from vision_jax.train import optim
from vision_jax.train.state import TrainState
from vision_jax.viz import draw


class LandmarkTask(base.ConfigSplits, base.Task):

  def __init__(self, config):
    super().__init__(config)
    data, m = config.data, config.model
    try:
      self.source = landmark_pipeline.get_landmark_source_from_config(data)
      self.point_set = self.source.point_set(data.points)
    except ValueError as e:
      raise config_lib.ConfigError(
          f'config.data.dataset={data.dataset!r} with points={data.points!r}: {e}') from e
    k = self.point_set.num_points
    if m.get('num_points') is not None and int(m.num_points) != k:
      raise config_lib.ConfigError(
          f'config.model.num_points={m.num_points} but {data.dataset} point set '
          f'{data.points!r} has {k} landmarks: set model.num_points={k} (or None)')
    self.kind = m.kind
    if self.kind not in landmark_models.KINDS:
      raise config_lib.ConfigError(f'config.model.kind={self.kind!r}: one of '
                                   f'{landmark_models.KINDS}')
    self.refinement = config.eval.get('heatmap_refinement', 'quarter')
    if self.refinement not in landmark_models.REFINEMENTS:
      raise config_lib.ConfigError(
          f'config.eval.heatmap_refinement={self.refinement!r}: one of '
          f'{landmark_models.REFINEMENTS}')
    self.size = int(data.image_size[0])
    if tuple(data.image_size) != (self.size, self.size):
      raise config_lib.ConfigError(f'config.data.image_size={tuple(data.image_size)}: '
                                   'landmark crops are square')
    stride = int(m.get('heatmap_stride', landmark_models.HEATMAP_STRIDE))
    if stride not in landmark_models.HEATMAP_STRIDES:
      raise config_lib.ConfigError(f'config.model.heatmap_stride={stride}: one of '
                                   f'{landmark_models.HEATMAP_STRIDES} (4: the reference)')
    multiple = 32 if self.kind == 'regression' else stride * 2**int(m.depth)
    if self.size % multiple:
      raise config_lib.ConfigError(
          f'config.data.image_size={self.size} must be a multiple of {multiple} for '
          f'model.kind={self.kind!r}' + ('' if self.kind == 'regression' else
                                         f' with model.depth={m.depth}'))
    self.model = landmark_models.LandmarkModel(
        kind=self.kind, num_points=k, num_stacks=m.num_stacks, features=m.features,
        depth=m.depth, stem_widths=tuple(m.stem_widths), heatmap_stride=stride,
        backbone=m.backbone,
        width=m.width, norm=m.norm, dtype=jnp.dtype(m.dtype))

  # State and training.

  def init_state(self, rng, total_steps):
    variables = dict(self.model.init(
        rng, jnp.zeros((1, self.size, self.size, 3), jnp.uint8), train=False))
    params = variables.pop('params')
    return TrainState.create(params, optim.make_optimizers(self.config, total_steps),
                             variables, ema=optim.ema_from_config(self.config))

  def losses(self, params, model_state, batch):
    """(weighted total, (metrics, batch-norm updates)) of one batch."""
    outputs, updates = self.model.apply({'params': params, **model_state}, batch['image'],
                                        train=True, mutable=['batch_stats'])
    points, visible = batch['landmarks'][..., :2], batch['landmarks'][..., 2] > 0
    weights = visible.astype(jnp.float32)
    loss_config = self.config.loss
    metrics = {}
    if self.kind == 'heatmap':
      maps = outputs['heatmaps']
      h, w = maps.shape[2:4]
      targets = landmark_ops.gaussian_heatmaps(
          points * (w / self.size), visible, (h, w), loss_config.sigma)
      metrics['heatmap_loss'] = landmark_losses.heatmap_mse(maps, targets, weights)
      loss = loss_config.heatmap_weight * metrics['heatmap_loss']
    else:
      if self.kind == 'integral':
        predicted = landmark_models.stack_points(outputs['heatmaps'], self.kind) / (
            outputs['heatmaps'].shape[-2])
      else:
        predicted = outputs['coords']
      metrics['coord_loss'] = landmark_losses.coordinate_l1(predicted, points / self.size,
                                                            weights)
      loss = loss_config.coord_weight * metrics['coord_loss']
    metrics['loss'] = loss
    return loss, (metrics, updates)

  def train_step(self, state, batch, rng):
    del rng  # Augmentation happens in the input pipeline.
    return state.minimize(self.losses, state.model_state, batch)

  def split_data(self, split, training, batch_size, **kwargs):
    data = self.config.data
    return landmark_pipeline.make_landmark_dataset(
        data.dataset, split, points=data.points, data_dir=data.get('data_dir'),
        batch_size=batch_size, training=training, image_size=tuple(data.image_size),
        crop_scale=data.crop_scale, scale_jitter=data.get('scale_jitter', 0.0),
        shift_jitter=data.get('shift_jitter', 0.0),
        max_rotation=data.get('max_rotation', 0.0), hflip_prob=data.get('hflip_prob', 0.0),
        seed=self.config.seed, **landmark_pipeline.coco_format_options(data), **kwargs)

  # Prediction.

  def _decode(self, outputs):
    return landmark_models.decode(
        outputs, kind=self.kind, image_size=self.size,
        refine=self.refinement,
        sigma=float(self.config.loss.sigma))

  def _points(self, variables, images, flip: bool):
    """[B, K, 2] input-pixel points of `images` (optionally averaged with the mirror)."""
    outputs = self.model.apply(variables, images, train=False)
    if not flip:
      return self._decode(outputs)
    mirrored = self.model.apply(variables, images[:, :, ::-1], train=False)
    perm = self.point_set.flip_permutation
    if self.kind == 'heatmap':
      maps = landmark_ops.flip_average(outputs['heatmaps'][-1], mirrored['heatmaps'][-1],
                                       perm)
      return self._decode({'heatmaps': maps[None]})
    direct = self._decode(outputs)
    back = landmark_ops.flip_points(self._decode(mirrored), self.size, perm)
    return 0.5 * (direct + back)

  def predict_step(self, state, batch):
    flip = bool(self.config.eval.get('flip_test', False))
    return {'landmarks': self._points(state.variables, batch['image'], flip)}

  def make_evaluator(self):
    normalization = self.config.eval.get('normalization', 'inter_ocular')
    return landmark_metrics.LandmarkEvaluator(
        normalization=normalization, ocular_indices=self.point_set.ocular_indices,
        threshold=float(self.config.eval.get('threshold', 0.1)))

  @property
  def draw_upscale(self) -> int:
    return int(self.config.eval.get('draw_upscale', 3))

  def _draw(self, image, points) -> np.ndarray:
    """[S u, S u, 3] uint8 (u = draw_upscale): the predicted points [K, 2], joined by
    the point set's skeleton."""
    shown = np.concatenate([points, np.ones((*points.shape[:-1], 1))], -1)
    return draw.draw_keypoints(image, shown[None], skeleton=self.point_set.skeleton,
                               upscale=self.draw_upscale, radius=1)

  def draw_predictions(self, batch, predictions):
    n = min(int(self.config.eval.get('num_pictures', 8)), len(batch['image']))
    return np.stack([self._draw(batch['image'][i], predictions['landmarks'][i])
                     for i in range(n)])

  def prediction_batch(self, request):
    image = request.get('image')
    if image is None:
      raise base.PredictionRequestError(
          f'task {self.config.task!r} predicts on a face crop: pass --image=FILE (the '
          f'whole image is resized to {self.size} x {self.size})')
    resized = np.asarray(Image.fromarray(np.asarray(image, np.uint8)).resize(
        (self.size, self.size), Image.BILINEAR))
    return {'image': resized[None]}

  def draw_prediction(self, batch, predictions):
    return self._draw(batch['image'][0], predictions['landmarks'][0])


def create(config) -> LandmarkTask:
  return LandmarkTask(config)
