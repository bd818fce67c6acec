"""The one generic training loop: mesh, jit'd steps, checkpoints, metrics, evaluation.

It knows nothing of any family: everything model-specific comes from the task
(`vision_jax.tasks.base.Task`). Config fields read here:

  seed                   int; init, per-step and evaluation keys derive from it
  kernels                'auto' | 'cpu' | 'plain' (optional; `vision_jax.ops.backend`)
  train.steps            total train steps
  train.batch_size       global batch size (split over all devices)
  train.log_every        scalar summaries every N steps, and a progress line (steps/s,
                         ETA) at most MAX_PROGRESS_LINES times a run: every N steps, or
                         every k * N for long runs
  train.checkpoint_every save every N steps (and always at the end)
  train.keep_checkpoints how many to keep
  train.eval_every       evaluate every N steps (0: only at the end)
  init.workdir, ...      optional: a fresh run copies chosen parameters from another
                         finished run (`checkpoint.initialize_from`)

The workdir remembers its config (`config.json`, written at the first start); a resume
whose config changes the optimisation is refused unless `allow_config_change`
(`vision_jax.train.config.remember_config`). `train_and_evaluate` also records the
experiment, wall time and machine of every start that finishes (`run_info.json`).
"""
import json
import math
import os
import time

from absl import logging
import jax
import numpy as np

from vision_jax.ops import backend
from vision_jax.tasks import base as tasks_base
from vision_jax.train import checkpoint as checkpoint_lib
from vision_jax.train import config as config_lib
from vision_jax.train import mesh as mesh_lib
from vision_jax.train import results as results_lib
from vision_jax.train import run_info
from vision_jax.viz import grid as grid_lib

EVAL_RESULTS = results_lib.EVAL_RESULTS
# A run prints at most this many progress lines (the summaries keep every log_every).
MAX_PROGRESS_LINES = 30


class TrainingDivergedError(RuntimeError):
  """A loss became NaN or infinite."""


def default_writer(logdir: str):
  """clu's default metric writer (TensorBoard summaries in `logdir`; logging only on
  processes other than 0)."""
  # Imported here: clu's summary writer imports TensorFlow, which prediction never needs.
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  return metric_writers.create_default_writer(logdir, just_logging=jax.process_index() > 0)


class Trainer:
  """Holds the compiled steps of one task on one mesh."""

  def __init__(self, config, workdir: str, task: tasks_base.Task | None = None):
    self.config = config
    self.workdir = workdir
    # Read at trace time by the kernels that have a CPU-tuned and a plain form.
    backend.set_kernels(config.get('kernels', 'auto'))
    self.task = task or tasks_base.create_task(config)
    self.mesh = mesh_lib.make_mesh()
    self.data_sharding = mesh_lib.batch_sharding(self.mesh)
    self.replicated = mesh_lib.replicated(self.mesh)
    mesh_lib.check_global_batch_size(config.train.batch_size)
    self.total_steps = int(config.train.steps)
    self.init_key, self.train_key, self.eval_key = jax.random.split(
        jax.random.key(config.seed), 3)

    def train_step(state, batch, rng):
      state, metrics = self.task.train_step(state, batch, rng)
      return state.replace(step=state.step + 1), metrics

    self.train_step = jax.jit(
        train_step,
        in_shardings=(self.replicated, self.data_sharding, self.replicated),
        out_shardings=(self.replicated, self.replicated),
        donate_argnums=(0,))
    self.predict_step = jax.jit(
        self.task.predict_step, in_shardings=(self.replicated, self.data_sharding),
        out_shardings=self.data_sharding)
    self.checkpoints = checkpoint_lib.Checkpoints(
        workdir, every=config.train.checkpoint_every, keep=config.train.keep_checkpoints)

  def abstract_state(self):
    """Shapes, dtypes and shardings of the state, without computing it."""
    shapes = jax.eval_shape(lambda key: self.task.init_state(key, self.total_steps),
                            self.init_key)
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated), shapes)

  def fresh_state(self):
    """The state initialised from `init_key` (compiled by `backend.run_once`: it runs once)."""
    return self.task.init_state_once(self.init_key, self.total_steps,
                                     out_shardings=self.replicated)

  def initial_state(self):
    """(state, step): restored from the newest checkpoint, else freshly initialised."""
    latest = self.checkpoints.latest_step()
    if latest is None:
      state = self.fresh_state()
      init = self.config.get('init')
      if init is not None and init.get('workdir'):
        logging.info('Initialising %s from %s', init.get('params'), init.workdir)
        state = checkpoint_lib.initialize_from(state, init, self.replicated)
      return state, 0
    logging.info('Resuming from %s/%d', self.checkpoints.directory, latest)
    return self.checkpoints.restore(self.abstract_state(), latest), latest

  def restore(self, step: int | None = None):
    return self.checkpoints.restore(self.abstract_state(), step)

  def remember_config(self, *, allow_change: bool = False):
    """Writes config.json at the first start; refuses optimisation changes on resume."""
    return config_lib.remember_config(
        self.workdir, self.config, resuming_at=self.checkpoints.latest_step(),
        allow_change=allow_change, write=jax.process_index() == 0)

  # Training.

  def train(self, writer=None) -> tuple[object, dict]:
    """Trains to `train.steps`, evaluating periodically and at the end.

    Returns (final state, final evaluation metrics or {}).
    """
    writer = writer or default_writer(self.workdir)
    state, start = self.initial_state()
    if start >= self.total_steps:
      logging.info('Checkpoint at step %d already reaches train.steps=%d.', start,
                   self.total_steps)
    else:
      state = self._train_from(state, start, writer)
    results = self.evaluate(state, writer=writer)
    writer.flush()
    return state, results

  def _check_finite(self, step: int, metrics: dict) -> None:
    bad = {name: float(metrics[name]) for name in self.task.loss_names(list(metrics))
           if not math.isfinite(float(metrics[name]))}
    if not bad:
      return
    last = self.checkpoints.latest_step()
    where = (f'{self.checkpoints.directory}/{last}' if last is not None
             else 'none (no checkpoint was saved yet)')
    listed = ', '.join(f'{name}={value}' for name, value in sorted(bad.items()))
    raise TrainingDivergedError(
        f'{listed} at step {step}; training stopped. Last good checkpoint: {where}. '
        'Lower the learning rate (config.optimizers.<name>.learning_rate), add warmup or '
        'gradient clipping, then resume.')

  def _train_from(self, state, start: int, writer):
    config = self.config.train
    data = self.task.train_data(start_batch=start, process_index=jax.process_index(),
                                process_count=jax.process_count())
    progress = _Progress(start, self.total_steps)
    print_every = progress_interval(self.total_steps, config.log_every)
    window = []
    pending = None  # (step, metrics on device): read one step late, so the host never blocks.

    def settle(step, metrics):
      host = jax.device_get(metrics)
      self._check_finite(step, host)
      window.append(host)
      if step % config.log_every == 0 or step == self.total_steps:
        means = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
        writer.write_scalars(step, means)
        if step % print_every == 0 or step == self.total_steps:
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
        self.evaluate(state, writer=writer)
    return state

  # Evaluation.

  def eval_context(self, state) -> tasks_base.EvalContext:
    step = int(jax.device_get(state.step))
    return tasks_base.EvalContext(
        state=state, rng=self.eval_key, workdir=self.workdir, step=step,
        predict=self.predict_step, batch_sharding=self.data_sharding,
        replicated=self.replicated,
        shard=lambda batch: mesh_lib.shard_batch(batch, self.data_sharding),
        to_host=mesh_lib.to_host, local_rows=mesh_lib.local_rows,
        gather_batch=mesh_lib.gather_batch, process_index=jax.process_index(),
        process_count=jax.process_count())

  def evaluate(self, state, *, writer=None) -> dict:
    """Runs the task's evaluation; writes eval_results.json (with the state's step),
    predictions.png and summaries into workdir. Returns the metrics ({} without one)."""
    context = self.eval_context(state)
    start = time.perf_counter()
    result = self.task.evaluate(context)
    if result is None:
      return {}
    metrics = {k: float(v) for k, v in result.metrics.items()}
    logging.info('Evaluation at step %d (%.1fs): %s', context.step, time.perf_counter() - start,
                 ', '.join(f'{k}={v:.4f}' for k, v in metrics.items()))
    if jax.process_index() == 0:
      with open(os.path.join(self.workdir, EVAL_RESULTS), 'w') as f:
        json.dump({'step': context.step, **metrics}, f, indent=2)
      if result.pictures is not None and len(result.pictures):
        grid_lib.save_png(os.path.join(self.workdir, 'predictions.png'),
                          grid_lib.image_grid(result.pictures))
        if writer is not None:
          writer.write_images(context.step, {'predictions': result.pictures})
    if writer is not None:
      writer.write_scalars(context.step, metrics)
    return metrics


def progress_interval(total_steps: int, log_every: int) -> int:
  """Steps between progress lines: log_every, or the smallest multiple of it that prints
  at most MAX_PROGRESS_LINES lines in `total_steps`."""
  logs = math.ceil(total_steps / log_every)
  return log_every * max(1, math.ceil(logs / MAX_PROGRESS_LINES))


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


def train_and_evaluate(config, workdir: str, *, allow_config_change: bool = False) -> dict:
  """Trains `config` in `workdir` (resuming if it holds checkpoints); returns eval metrics.

  Raises ConfigError when resuming with a config that changes the optimisation, unless
  `allow_config_change`.
  """
  os.makedirs(workdir, exist_ok=True)
  started, start = time.time(), time.perf_counter()
  trainer = Trainer(config, workdir)
  try:
    trainer.remember_config(allow_change=allow_config_change)
    from_step = trainer.checkpoints.latest_step() or 0
    _, results = trainer.train()
  finally:
    trainer.checkpoints.close()
  if jax.process_index() == 0:
    run_info.record_start(workdir, origin=config_lib.origin(config), started=started,
                          wall_s=time.perf_counter() - start, from_step=from_step,
                          to_step=trainer.total_steps)
  return results


def evaluate_checkpoint(config, workdir: str, step: int | None = None) -> dict:
  """Evaluates the newest (or `step`) checkpoint in workdir; writes eval_results.json."""
  trainer = Trainer(config, workdir)
  try:
    log_config_differences(workdir, config)
    state = trainer.restore(step)
    return trainer.evaluate(state, writer=default_writer(os.path.join(workdir, 'eval')))
  finally:
    trainer.checkpoints.close()


def log_config_differences(workdir: str, config) -> None:
  """Logs how `config` differs from the one the workdir was trained with (if saved)."""
  path = os.path.join(workdir, config_lib.CONFIG_FILE)
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError):
    logging.warning('%s cannot be read; not comparing configs', path)
    return
  for key, old, new in config_lib.differences(saved, config_lib.to_json_dict(config)):
    logging.warning('config differs from the trained one (%s): %s: %r -> %r', path, key, old,
                    new)
