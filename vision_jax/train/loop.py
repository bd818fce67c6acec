"""The one generic training loop: mesh, jit'd steps, checkpoints, metrics, evaluation.

It knows nothing of any family: everything model-specific comes from the task
(`vision_jax.tasks.base.Task`). Config fields read here:

  seed                   int; init and per-step keys derive from it (same seed -> same run)
  train.steps            total optimizer steps
  train.batch_size       global batch size (split over all devices)
  train.log_every        progress line + scalar summaries every N steps
  train.checkpoint_every save every N steps (and always at the end)
  train.keep_checkpoints how many to keep
  train.eval_every       evaluate every N steps (0: only at the end)
"""
import json
import math
import os
import time

from absl import logging
from clu import metric_writers
import jax
from jax.experimental import multihost_utils
import numpy as np

from vision_jax.tasks import base as tasks_base
from vision_jax.train import checkpoint as checkpoint_lib
from vision_jax.train import mesh as mesh_lib
from vision_jax.viz import grid as grid_lib


class TrainingDivergedError(RuntimeError):
  """The loss became NaN or infinite."""


class Trainer:
  """Holds the compiled steps of one task on one mesh."""

  def __init__(self, config, workdir: str, task: tasks_base.Task | None = None):
    self.config = config
    self.workdir = workdir
    self.task = task or tasks_base.create_task(config)
    self.mesh = mesh_lib.make_mesh()
    self.data_sharding = mesh_lib.batch_sharding(self.mesh)
    self.replicated = mesh_lib.replicated(self.mesh)
    mesh_lib.check_global_batch_size(config.train.batch_size)
    self.total_steps = int(config.train.steps)
    self.init_key, self.train_key = jax.random.split(jax.random.key(config.seed))
    self._init = jax.jit(lambda key: self.task.init_state(key, self.total_steps),
                         out_shardings=self.replicated)
    self.train_step = jax.jit(
        self.task.train_step,
        in_shardings=(self.replicated, self.data_sharding, self.replicated),
        out_shardings=(self.replicated, self.replicated),
        donate_argnums=(0,))
    self.predict_step = jax.jit(
        self.task.predict_step, in_shardings=(self.replicated, self.data_sharding),
        out_shardings=self.replicated)
    self.checkpoints = checkpoint_lib.Checkpoints(
        workdir, every=config.train.checkpoint_every, keep=config.train.keep_checkpoints)

  def abstract_state(self):
    """Shapes, dtypes and shardings of the state, without computing it."""
    shapes = jax.eval_shape(lambda key: self.task.init_state(key, self.total_steps),
                            self.init_key)
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated), shapes)

  def initial_state(self):
    """(state, step): restored from the newest checkpoint, else freshly initialised."""
    latest = self.checkpoints.latest_step()
    if latest is None:
      return self._init(self.init_key), 0
    logging.info('Resuming from %s/%d', self.checkpoints.directory, latest)
    return self.checkpoints.restore(self.abstract_state(), latest), latest

  def restore(self, step: int | None = None):
    return self.checkpoints.restore(self.abstract_state(), step)

  # Training.

  def train(self, writer=None) -> tuple[object, dict]:
    """Trains to `train.steps`, evaluating periodically and at the end.

    Returns (final state, final evaluation metrics or {}).
    """
    writer = writer or metric_writers.create_default_writer(
        self.workdir, just_logging=jax.process_index() > 0)
    state, start = self.initial_state()
    if start >= self.total_steps:
      logging.info('Checkpoint at step %d already reaches train.steps=%d.', start,
                   self.total_steps)
    else:
      state = self._train_from(state, start, writer)
    results = self.evaluate(state, writer=writer, step=self.total_steps)
    writer.flush()
    return state, results

  def _train_from(self, state, start: int, writer):
    config = self.config.train
    data = self.task.train_data(start_batch=start, process_index=jax.process_index(),
                                process_count=jax.process_count())
    progress = _Progress(start, self.total_steps)
    window = []
    pending = None  # (step, metrics on device): read one step late, so the host never blocks.

    def settle(step, metrics):
      host = jax.device_get(metrics)
      loss = float(host['loss'])
      if not math.isfinite(loss):
        last = self.checkpoints.latest_step()
        where = (f'{self.checkpoints.directory}/{last}' if last is not None
                 else 'none (no checkpoint was saved yet)')
        raise TrainingDivergedError(
            f'loss is {loss} at step {step}; training stopped. Last good checkpoint: {where}. '
            'Lower optimizer.learning_rate, add warmup or gradient clipping, then resume.')
      window.append(host)
      if step % config.log_every == 0 or step == self.total_steps:
        means = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
        writer.write_scalars(step, means)
        logging.info('%s', progress.line(step, means))
        window.clear()

    for step in range(start + 1, self.total_steps + 1):
      batch = mesh_lib.shard_batch(next(data), self.data_sharding)
      state, metrics = self.train_step(state, batch, jax.random.fold_in(self.train_key, step))
      if pending is not None:
        settle(*pending)
      pending = (step, metrics)
      is_last = step == self.total_steps
      if is_last or step % config.checkpoint_every == 0:
        settle(*pending)
        pending = None
        self.checkpoints.save(step, state, force=is_last)
      if config.eval_every and step % config.eval_every == 0 and not is_last:
        self.evaluate(state, writer=writer, step=step)
    return state

  # Evaluation.

  def evaluate(self, state, *, writer=None, step: int | None = None) -> dict:
    """Runs the task's evaluator over its evaluation split; writes results into workdir."""
    evaluator = self.task.make_evaluator()
    eval_data = self.task.eval_data(process_index=jax.process_index(),
                                    process_count=jax.process_count())
    if evaluator is None or eval_data is None:
      return {}
    step = int(jax.device_get(state.step)) if step is None else step
    start = time.perf_counter()
    first = None
    for batch in eval_data:
      predictions = self.predict_step(state, mesh_lib.shard_batch(batch, self.data_sharding))
      predictions = jax.device_get(predictions)
      if jax.process_count() > 1:
        batch = multihost_utils.process_allgather(batch, tiled=True)
      evaluator.add(batch, predictions)
      if first is None:
        first = (batch, predictions)
    results = evaluator.evaluate()
    logging.info('Evaluation at step %d (%.1fs): %s', step, time.perf_counter() - start,
                 ', '.join(f'{k}={v:.4f}' for k, v in results.items()))
    if jax.process_index() == 0:
      evaluator.write(self.workdir)
      with open(os.path.join(self.workdir, 'eval_results.json'), 'w') as f:
        json.dump({'step': step, **{k: float(v) for k, v in results.items()}}, f, indent=2)
      pictures = self.task.draw_predictions(*first) if first is not None else None
      if pictures is not None:
        grid_lib.save_png(os.path.join(self.workdir, 'predictions.png'),
                          grid_lib.image_grid(pictures))
        if writer is not None:
          writer.write_images(step, {'predictions': pictures})
    if writer is not None:
      writer.write_scalars(step, results)
    return results


class _Progress:
  """Formats progress lines: step, metrics, steps/s and ETA."""

  def __init__(self, start: int, total: int):
    self.total = total
    self.last_step, self.last_time = start, time.perf_counter()

  def line(self, step: int, means: dict) -> str:
    now = time.perf_counter()
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    self.last_step, self.last_time = step, now
    eta = (self.total - step) / rate if rate > 0 else float('inf')
    metrics = ' '.join(f'{k}={v:.4f}' for k, v in sorted(means.items()))
    return (f'step {step}/{self.total} | {metrics} | {rate:.2f} steps/s | '
            f'ETA {time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "?"}')


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds checkpoints); returns eval metrics."""
  os.makedirs(workdir, exist_ok=True)
  trainer = Trainer(config, workdir)
  try:
    _, results = trainer.train()
  finally:
    trainer.checkpoints.close()
  return results


def evaluate_checkpoint(config, workdir: str, step: int | None = None) -> dict:
  """Evaluates the newest (or `step`) checkpoint in workdir; writes eval_results.json."""
  trainer = Trainer(config, workdir)
  try:
    state = trainer.restore(step)
    return trainer.evaluate(state, writer=metric_writers.create_default_writer(
        os.path.join(workdir, 'eval'), just_logging=jax.process_index() > 0))
  finally:
    trainer.checkpoints.close()
