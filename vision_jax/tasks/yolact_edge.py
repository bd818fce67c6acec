"""YolactEdge as a trainer task (config.task = 'yolact_edge'): YOLACT on video clips.

Training batches are frame pairs (`vision_jax.data.video_pipeline`): a keyframe and a
current frame 1..max_gap frames later, with the current frame's instances and the exact
current -> keyframe flow. One jit'd step holds three passes and these losses:
  * the current frame as a keyframe (whole backbone): YOLACT's losses (`class`, `box`,
    `mask`, `semantic`), and the teacher maps for the warping loss;
  * the keyframe (whole backbone, no gradient): the cache a non-keyframe reuses;
  * the current frame as a non-keyframe (backbone to C3, FeatFlowNet, warped P4/P5),
    with `loss.frozen_trunk` (default True, as the reference) its trunk frozen
    (gradients stop at the C3 lateral; False lets the non-keyframe losses train the
    trunk too, which suits a model trained from scratch jointly): YOLACT's
    losses again (`transfer_*`, weighted by `loss.transfer_weight`, from step
    `loss.transfer_start_step`: the joint fine-tuning), the feature-warping loss `warp`
    between the warped merged P4 / P5 maps and the teacher's (`loss.warp_distance`:
    'cosine', 1 - cosine similarity over channels, the reference's and the default; or
    'mse', which also supervises the calibration's scale and bias; it trains the flow
    net) and, with `loss.flow_weight` >
    0, the end-point error of the predicted flows against the ground-truth flow resized
    to P4 / P5 (`flow`, on valid pixels).

Simplifications against the reference's FlowNetMini, said here so that results are
read with them: each level's flow is predicted on its own (no coarse-to-fine
refinement), the calibration is one scale and bias per channel (from the spatial mean),
no spatial-attention (SPA) module, one summed optimizer step, key gaps 1..max_gap, and
one keyframe phase at evaluation (frame t is a keyframe when t % k == 0; every frame of
the clips is annotated, so every phase is scored).

Evaluation runs every validation clip as one jit'd scan (`yolact_edge.predict_clip`)
with the configured keyframe interval k and with k = 1 (every frame a keyframe), and
reports COCO's metrics of both side by side: `keyframe_interval_<k>/box/AP`,
`keyframe_interval_<k>/mask/AP`, ..., `keyframe_interval_1/...`.
A still image (`launch.predict`) is predicted as a keyframe. `launch.export` writes
'predict' (a still image), 'keyframe' (image -> detections and the cache) and
'non_keyframe' (image and a keyframe's cache -> detections).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.data import video_pipeline
from vision_jax.losses import yolact as yolact_losses
from vision_jax.models import yolact
from vision_jax.models import yolact_edge
from vision_jax.ops import warp as warp_ops
from vision_jax.tasks import base
from vision_jax.tasks import detection_base
from vision_jax.tasks import yolact as yolact_task
from vision_jax.train import config as config_lib

EDGE_WEIGHTS = {'transfer': 1.0, 'warp': 1.0, 'flow': 0.0}


def _cosine_distance(a, b):
  """Mean over pixels of 1 - cos(a, b) over channels: [B, h, w, C] x2 -> scalar (the
  reference's feature-warping loss; free of the features' scale)."""
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  dot = jnp.sum(a * b, axis=-1)
  norms = jnp.sqrt(jnp.sum(a * a, axis=-1) * jnp.sum(b * b, axis=-1) + 1e-12)
  return jnp.mean(1.0 - dot / norms)


def _squared_error(a, b):
  """Mean squared difference: [B, h, w, C] x2 -> scalar (supervises the calibration's
  scale and bias too, which the cosine distance cannot see)."""
  return jnp.mean(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)))


WARP_DISTANCES = {'cosine': _cosine_distance, 'mse': _squared_error}


def _flatten_clips(tree: dict) -> dict:
  """[B, T, ...] arrays -> [B * T, ...]."""
  return {k: np.asarray(v).reshape((-1,) + np.shape(v)[2:]) for k, v in tree.items()}


class YolactEdgeTask(yolact_task.YolactTask):

  def __init__(self, config):
    super().__init__(config)
    self.keyframe_interval = self.model_config.keyframe_interval
    frames = self.source.num_frames
    if self.keyframe_interval > frames:
      raise config_lib.ConfigError(
          f'model.keyframe_interval={self.keyframe_interval} is longer than the clips of '
          f'{config.data.dataset} ({frames} frames): no frame would reuse a keyframe; use '
          f'a keyframe_interval <= {frames} or a dataset config with longer clips')
    self.transfer_start_step = int(config.loss.get('transfer_start_step', 0))
    self.frozen_trunk = bool(config.loss.get('frozen_trunk', True))
    self.warp_distance = config.loss.get('warp_distance', 'cosine')
    if self.warp_distance not in WARP_DISTANCES:
      raise config_lib.ConfigError(f'loss.warp_distance must be one of '
                                   f'{sorted(WARP_DISTANCES)}, not {self.warp_distance!r}')

  # Model, data and losses.

  def source_from_config(self, data_config):
    try:
      return video_pipeline.get_video_source(data_config.dataset,
                                             data_config.get('data_dir'))
    except ValueError as e:
      raise config_lib.ConfigError(f'config.data.dataset: {e}') from e

  def build_model(self, model_config, num_classes):
    cfg = yolact_edge.from_config_dict(model_config, num_classes)
    return cfg, yolact_edge.YolactEdge(cfg)

  def default_loss_weights(self):
    return {**yolact_losses.DEFAULT_WEIGHTS, **EDGE_WEIGHTS}

  def other_loss_keys(self):
    return ('transfer_start_step', 'frozen_trunk', 'warp_distance')

  def split_data(self, split, training, batch_size, **kwargs):
    try:
      return video_pipeline.make_video_dataset_from_config(
          self.config.data, split=split, batch_size=batch_size, training=training,
          seed=self.config.seed, **kwargs)
    except ValueError as e:
      raise config_lib.ConfigError(f'config.data: {e}') from e

  def losses(self, params, model_state, batch, rng, *, transfer_on=True):
    """(weighted total, (metrics, batch-norm updates)) of one batch of frame pairs."""
    cfg, model = self.model_config, self.model
    variables = {'params': params, **model_state}
    keyframe = functools.partial(model.apply, method=yolact_edge.YolactEdge.keyframe,
                                 train=True, mutable=['batch_stats'])
    (outputs, teacher), updates = keyframe(variables, batch['image'])
    (_, cache), _ = keyframe(variables, batch['key_image'])
    cache = jax.lax.stop_gradient(cache)
    (edge_outputs, transfer), _ = model.apply(
        variables, batch['image'], cache, method=yolact_edge.YolactEdge.non_keyframe,
        train=True, frozen_trunk=self.frozen_trunk, mutable=['batch_stats'])
    key_rng, edge_rng = jax.random.split(rng)
    terms, num_positive = yolact_losses.yolact_losses(cfg, self.anchors, outputs, batch,
                                                      key_rng)
    edge_terms, _ = yolact_losses.yolact_losses(cfg, self.anchors, edge_outputs, batch,
                                                edge_rng)
    distance = WARP_DISTANCES[self.warp_distance]
    warp_loss = jnp.mean(jnp.stack([
        distance(transfer['warped'][name], jax.lax.stop_gradient(teacher[name]))
        for name in yolact_edge.TRANSFERRED]))
    flow_error = self._flow_error(transfer['flows'], batch)
    transfer_weight = self.loss_weights['transfer'] * jnp.asarray(transfer_on, jnp.float32)
    loss = (self.weighted_sum(terms) + transfer_weight * self.weighted_sum(edge_terms)
            + self.loss_weights['warp'] * warp_loss + self.loss_weights['flow'] * flow_error)
    metrics = {'loss': loss, **{f'{name}_loss': value for name, value in terms.items()},
               **{f'transfer_{name}_loss': value for name, value in edge_terms.items()},
               'warp_loss': warp_loss, 'flow_epe': flow_error,
               'positive_anchors': num_positive / batch['image'].shape[0]}
    return loss, (metrics, updates)

  def _flow_error(self, flows, batch):
    """Mean end-point error (level pixels) of the predicted flows against the ground
    truth resized to each level, on pixels valid at full resolution."""
    errors = []
    for flow in flows:
      h, w = flow.shape[1:3]
      truth = warp_ops.resize_flow(batch['flow'], (h, w))
      stride = batch['flow'].shape[1] // h
      valid = yolact_losses.binary_masks_at(batch['flow_valid'][:, None], stride)[:, 0]
      epe = jnp.sqrt(jnp.sum(jnp.square(flow - truth), axis=-1) + 1e-12)
      errors.append(jnp.sum(epe * valid) / jnp.maximum(jnp.sum(valid), 1.0))
    return jnp.mean(jnp.stack(errors))

  def train_step(self, state, batch, rng):
    losses = functools.partial(self.losses, transfer_on=state.step >= self.transfer_start_step)
    return state.minimize(losses, state.model_state, batch, rng)

  # Evaluation over clips.

  def predict_clips(self, state, batch, *, keyframe_interval: int) -> dict:
    """Detections on every frame of a batch of clips: [B, T, ...] (see predict_clip)."""
    sizes = detection_base.image_sizes(batch, self.image_size)
    return yolact_edge.predict_clip(self.model, state.variables, batch['images'],
                                    keyframe_interval=keyframe_interval, image_sizes=sizes)

  def intervals(self) -> list[int]:
    """The keyframe intervals evaluated: the configured k, then 1."""
    return sorted({self.keyframe_interval, 1}, reverse=True)

  def evaluate(self, context):
    eval_data = self.eval_data(process_index=context.process_index,
                               process_count=context.process_count)
    evaluators = {k: self.make_evaluator() for k in self.intervals()}
    predict = {k: jax.jit(functools.partial(self.predict_clips, keyframe_interval=k),
                          out_shardings=context.batch_sharding) for k in self.intervals()}
    pictures = None
    for batch in eval_data:
      device_batch = context.shard(batch)
      frames = video_pipeline.clip_frames_as_detection_batch(context.gather_batch(batch))
      for k, evaluator in evaluators.items():
        predictions = predict[k](context.state, device_batch)
        keys = evaluator.prediction_keys
        evaluator.add({key: frames[key] for key in evaluator.batch_keys if key in frames},
                      _flatten_clips(context.to_host({key: predictions[key] for key in keys})))
        if pictures is None and k == self.keyframe_interval and context.is_main_process:
          pictures = self._draw_clip(batch, context.local_rows(predictions))
    metrics = {}
    for k, evaluator in evaluators.items():
      metrics.update({f'keyframe_interval_{k}/{name}': value
                      for name, value in evaluator.evaluate().items()})
    if context.is_main_process:
      evaluators[self.keyframe_interval].write(context.workdir)
    return base.EvalResult(metrics, pictures)

  def _draw_clip(self, batch, predictions):
    """The first clip's first frames with their detections (interval k)."""
    n = min(self.config.eval.num_pictures, batch['images'].shape[1])
    return np.stack([self.draw_one(batch['images'][0][t],
                                   {key: value[0][t] for key, value in predictions.items()})
                     for t in range(n)])

  # The two steps of a clip with the cache passed explicitly (benchmark, export).

  def _detect(self, outputs, batch):
    """Detections of one frame batch {'image'[, 'orig_size', 'scale']}."""
    sizes = (detection_base.image_sizes(batch, self.image_size) if 'orig_size' in batch
             else yolact.full_image_sizes(batch['image']))
    return yolact.detect(self.model_config, outputs, self.image_size, sizes)

  def keyframe_step(self, variables, batch) -> tuple[dict, dict]:
    """A frame batch as a keyframe -> (detections, the cache later frames reuse)."""
    outputs, cache = self.model.apply(variables, batch['image'],
                                      method=yolact_edge.YolactEdge.keyframe)
    return self._detect(outputs, batch), cache

  def non_keyframe_step(self, variables, batch, cache) -> dict:
    """A frame batch with a keyframe's cache -> detections."""
    outputs, _ = self.model.apply(variables, batch['image'], cache,
                                  method=yolact_edge.YolactEdge.non_keyframe)
    return self._detect(outputs, batch)

  def benchmark_predict_functions(self):
    """{name: (fn, make_args)} for `vision_jax.benchmarks.inference`: 'keyframe' and
    'non_keyframe' on the clips' frame 1 (the latter with frame 0's cache, made
    untimed), and the whole clips at the configured interval and at 1."""
    cache_of = jax.jit(lambda state, frame: self.keyframe_step(state.variables, frame)[1])

    def frame(batch, t):
      return jax.device_put({'image': batch['images'][:, t]})

    def clip_inputs(state, batch):
      keys = ('images', 'orig_size', 'scale')
      return state, jax.device_put({key: batch[key] for key in keys})

    functions = {
        'keyframe': (lambda state, f: self.keyframe_step(state.variables, f),
                     lambda state, batch: (state, frame(batch, 1))),
        'non_keyframe': (lambda state, f, cache: self.non_keyframe_step(state.variables, f,
                                                                          cache),
                         lambda state, batch: (state, frame(batch, 1),
                                               cache_of(state, frame(batch, 0)))),
    }
    for k in self.intervals():
      functions[f'clip_k{k}'] = (functools.partial(self.predict_clips, keyframe_interval=k),
                                 clip_inputs)
    return functions

  def export_functions(self, state):
    """'predict' (a still image), 'keyframe' and 'non_keyframe' (with the cache)."""
    functions = super().export_functions(state)
    batch = functions['predict'].example_args[0]

    def keyframe(batch):
      return self.keyframe_step(state.variables, batch)

    def non_keyframe(batch, cache):
      return self.non_keyframe_step(state.variables, batch, cache)

    cache = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                         jax.eval_shape(keyframe, batch)[1])
    functions['keyframe'] = base.ExportFunction(keyframe, (batch,))
    functions['non_keyframe'] = base.ExportFunction(non_keyframe, (batch, cache),
                                                    ('batch', 'cache'))
    return functions


def create(config) -> YolactEdgeTask:
  return YolactEdgeTask(config)
