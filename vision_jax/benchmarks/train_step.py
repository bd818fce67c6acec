"""Speed of an experiment's train step and input pipeline, as ratios to this machine.

Measures, in one run: compile time, train steps/s, images/s, the step's FLOPs from XLA's
cost analysis, the achieved FLOP/s and its ratio to the large-matmul FLOP/s this machine
reaches now, and the input pipeline's images/s on its own; reports the last timed step's
scalar metrics as `final_<name>` (loss, and e.g. positive_rois for Mask R-CNN).
"""
import time

import jax

from vision_jax.benchmarks import machine
from vision_jax.train import loop
from vision_jax.train import mesh as mesh_lib


def _flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get('flops', 0.0))


def run(config, workdir: str, *, steps: int = 10, pipeline_batches: int = 20) -> dict:
  trainer = loop.Trainer(config, workdir)
  trainer.checkpoints.close()
  task = trainer.task
  batch_size = config.train.batch_size
  data = task.train_data(start_batch=0, process_index=jax.process_index(),
                         process_count=jax.process_count())

  start = time.perf_counter()
  for _ in range(pipeline_batches):
    next(data)
  pipeline_images_per_s = pipeline_batches * batch_size / (time.perf_counter() - start)

  state = trainer._init(trainer.init_key)
  batch = mesh_lib.shard_batch(next(data), trainer.data_sharding)
  key = jax.random.fold_in(trainer.train_key, 1)
  start = time.perf_counter()
  compiled = trainer.train_step.lower(state, batch, key).compile()
  compile_s = time.perf_counter() - start
  flops_per_step = _flops(compiled)
  # XLA's cost analysis adds up every branch of a conditional (lax.switch / cond).
  counts_all_branches = ' conditional(' in compiled.as_text()

  state, metrics = compiled(state, batch, key)  # warm up
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, batch, key)
  jax.block_until_ready((state, metrics))
  step_s = (time.perf_counter() - start) / steps

  final_metrics = {name: float(value) for name, value in jax.device_get(metrics).items()
                   if getattr(value, 'ndim', 1) == 0}
  matmul = machine.matmul_flops_per_second()
  achieved = flops_per_step / step_s
  return {
      'devices': f'{jax.device_count()} x {jax.devices()[0].device_kind}',
      'batch_size': batch_size,
      'compile_s': compile_s,
      'train_steps_per_s': 1.0 / step_s,
      'train_images_per_s': batch_size / step_s,
      'flops_per_step': flops_per_step,
      'achieved_flops_per_s': achieved,
      'matmul_flops_per_s': matmul,
      'ratio_to_matmul': achieved / matmul,
      'flops_count': ('upper bound: counts every branch of the step\'s conditionals'
                      if counts_all_branches else 'exact (XLA cost analysis)'),
      'pipeline_images_per_s': pipeline_images_per_s,
      'pipeline_to_train_ratio': pipeline_images_per_s / (batch_size / step_s),
      # The last timed step's metrics: a finite loss says the steps did real work.
      **{f'final_{name}': value for name, value in sorted(final_metrics.items())},
  }
