"""Speed of an experiment's train step and input pipeline, as ratios to this machine.

Measures, in one run: compile time, train steps/s, images/s, the step's FLOPs from XLA's
cost analysis, the achieved FLOP/s and its ratio to the large-matmul FLOP/s this machine
reaches now, and the input pipeline's images/s on its own; reports the last timed step's
scalar metrics as `final_<name>` (loss, and e.g. positive_rois for Mask R-CNN).

The steps are timed as in training: each timed step gets its own batch from the task's
train_data and its own key (`fold_in(train_key, step)`, as `loop.Trainer` does), and the
state each step returns goes into the next. The batches are read (and put on the
devices) before the timed loop, so it times the steps, not the pipeline (measured on its
own: `pipeline_images_per_s`); compilation and one warm-up step, on a batch of its own,
come before it too.

`run_with_reference` also times torchvision's step on the same batches when the config
asks for it (`config.benchmark.torchvision_reference = 'mask_rcnn'`) and torch is
installed; `launch/benchmark.py` runs it in a fresh process per thread setting.
"""
import time

import jax
import numpy as np

from vision_jax.benchmarks import machine
from vision_jax.benchmarks import threads
from vision_jax.benchmarks import torchvision_reference
from vision_jax.train import config as config_lib
from vision_jax.train import loop
from vision_jax.train import mesh as mesh_lib


def _flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get('flops', 0.0))


def run(config, workdir: str, *, steps: int = 10, pipeline_batches: int = 20,
        used_batches: list | None = None, matmul_flops_per_s: float | None = None,
        used_state: list | None = None) -> dict:
  """Times `steps` train steps of `config`'s experiment (module doc).

  Args:
    config: the experiment config.
    workdir: the Trainer's workdir (nothing is written to it but an empty checkpoint dir).
    steps: timed steps, each on its own batch and key.
    pipeline_batches: batches read to time the input pipeline alone.
    used_batches: a list to which the host batches of the warm-up step and of the timed
      steps are appended, in order (e.g. to run torchvision's reference on them).
    matmul_flops_per_s: the reference rate (`machine.matmul_flops_per_second()`) when the
      caller measured it already (a suite of runs measures it once); None: measured here.
    used_state: a list to which the state after the timed steps is appended (e.g. to
      time the predict step without initialising another state).
  """
  if steps < 1:
    raise ValueError(f'steps must be >= 1, got {steps}')
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

  state = trainer.fresh_state()
  # Step 1 warms up; steps 2 .. steps + 1 are timed. Batches and keys as in training.
  host_batches = [next(data) for _ in range(steps + 1)]
  batches = [mesh_lib.shard_batch(b, trainer.data_sharding) for b in host_batches]
  keys = [jax.random.fold_in(trainer.train_key, step) for step in range(1, steps + 2)]
  jax.block_until_ready((batches, keys))
  start = time.perf_counter()
  compiled = trainer.train_step.lower(state, batches[0], keys[0]).compile()
  compile_s = time.perf_counter() - start
  flops_per_step = _flops(compiled)
  # XLA's cost analysis adds up every branch of a conditional (lax.switch / cond).
  counts_all_branches = ' conditional(' in compiled.as_text()

  state, metrics = compiled(state, batches[0], keys[0])  # warm up
  jax.block_until_ready(metrics)
  timed_metrics = []
  with threads.CpuUsage(calls=steps) as usage:
    for batch, key in zip(batches[1:], keys[1:]):
      state, metrics = compiled(state, batch, key)
      timed_metrics.append(metrics)
    jax.block_until_ready((state, metrics))
  step_s = usage.result['wall_s'] / steps
  if used_batches is not None:
    used_batches.extend(host_batches)
  if used_state is not None:
    used_state.append(state)

  final_metrics = {name: float(value) for name, value in jax.device_get(metrics).items()
                   if getattr(value, 'ndim', 1) == 0}
  timed_metrics = jax.device_get(timed_metrics)
  mean_metrics = {name: float(np.mean([m[name] for m in timed_metrics]))
                  for name in final_metrics}
  # Instances per image of the timed batches (those the losses use: valid, not crowd).
  instances = [float(np.sum(b['valid'] & ~b.get('is_crowd', np.zeros_like(b['valid']))))
               / batch_size for b in host_batches[1:] if 'valid' in b]
  matmul = matmul_flops_per_s or machine.matmul_flops_per_second()
  achieved = flops_per_step / step_s
  return {
      'devices': f'{jax.device_count()} x {jax.devices()[0].device_kind}',
      'jax_threads': threads.jax_threads(),
      'batch_size': batch_size,
      'compile_s': compile_s,
      'step_s': step_s,
      'step_cpu_per_wall': usage.result['cpu_per_wall'],
      'step_busy_threads': usage.result['busy_threads'],
      'step_cpu_s': usage.result['cpu_s_per_call'],
      'train_steps_per_s': 1.0 / step_s,
      'train_images_per_s': batch_size / step_s,
      'timed_batches': steps,
      **({'instances_per_image': float(np.mean(instances))} if instances else {}),
      'flops_per_step': flops_per_step,
      'achieved_flops_per_s': achieved,
      'matmul_flops_per_s': matmul,
      'ratio_to_matmul': achieved / matmul,
      'flops_count': ('upper bound: counts every branch of the step\'s conditionals'
                      if counts_all_branches else 'exact (XLA cost analysis)'),
      'pipeline_images_per_s': pipeline_images_per_s,
      'pipeline_to_train_ratio': pipeline_images_per_s / (batch_size / step_s),
      # The last timed step's metrics (a finite loss says the steps did real work), and
      # their means over the timed steps (e.g. positive_rois: how much the work varied).
      **{f'final_{name}': value for name, value in sorted(final_metrics.items())},
      **{f'mean_{name}': value for name, value in sorted(mean_metrics.items())},
  }


def torchvision_comparison(config, results: dict, batches=None, *, steps: int) -> dict:
  """torchvision's step time and ours / its, when config.benchmark asks for it.

  Reads config.benchmark.torchvision_reference ('mask_rcnn'; beside a mask_rcnn task only:
  for another task it reports the reference as skipped), config.data.image_size,
  config.train.batch_size, config.data.max_instances and every key of
  config.benchmark.torchvision_kwargs (passed through; they win over the three above).
  `batches`: the host batches our run used (`run(..., used_batches=...)`): torchvision
  times its `steps` steps on the same timed batches. Returns {} when the config does not
  ask, and {'torchvision_reference': 'skipped: ...'} without torch.
  """
  benchmark = config.get('benchmark') or {}
  if benchmark.get('torchvision_reference') != 'mask_rcnn':
    return {}
  if config.task != 'mask_rcnn':
    # e.g. yolact_coco:bench, whose reference runs beside its Mask R-CNN in predict mode.
    return {'torchvision_reference': "skipped: torchvision's Mask R-CNN train step runs "
                                     f"beside a mask_rcnn task, not {config.task!r}"}
  error = torchvision_reference.import_error()
  if error:
    print(f'torchvision comparison skipped: torch/torchvision not importable ({error})')
    return {'torchvision_reference': f'skipped: {error}'}
  extra = benchmark.get('torchvision_kwargs') or {}
  kwargs = dict(image_size=tuple(config.data.image_size), batch_size=config.train.batch_size,
                max_instances=config.data.max_instances, steps=steps, batches=batches)
  kwargs.update(extra.to_dict() if hasattr(extra, 'to_dict') else dict(extra))
  reference = torchvision_reference.mask_rcnn_train_step_seconds(**kwargs)
  return {
      'torchvision_step_s': reference['seconds_per_step'],
      'torchvision_seconds_per_step': reference['seconds_per_step'],
      'torchvision_step_cpu_per_wall': reference['cpu_per_wall'],
      'torchvision_step_busy_threads': reference['busy_threads'],
      'torchvision_step_cpu_s': reference['cpu_s_per_step'],
      'ratio_ours_to_torchvision_step_time':
          (1.0 / results['train_steps_per_s']) / reference['seconds_per_step'],
      'torchvision_model': reference['model'],
      'torchvision_data': reference['data'],
      'torchvision_distinct_batches': reference['distinct_batches'],
      'torchvision_objects_per_image': reference['objects_per_image'],
      'torchvision_trainable_backbone_layers': reference['trainable_backbone_layers'],
      'torchvision_backbone_norm': reference['backbone_norm'],
      'torch_threads': reference['torch_threads'],
      'torchvision_torch_threads': reference['torch_threads'],
      'torchvision_head_rois_per_image': reference['head_rois_per_image'],
      'torchvision_box_head_rois_per_image': reference['box_head_rois_per_image'],
      'torchvision_losses_finite': reference['losses_finite'],
      'torch_version': reference['torch_version'],
      'torchvision_version': reference['torchvision_version'],
  }


def run_with_reference(config, workdir: str, *, steps: int = 10,
                       pipeline_batches: int = 20) -> dict:
  """`run`, then torchvision's step on the same batches when the config asks for it."""
  batches: list = []
  results = run(config, workdir, steps=steps, pipeline_batches=pipeline_batches,
                used_batches=batches)
  results.update(torchvision_comparison(config, results, batches, steps=steps))
  return results


def run_config(config_spec: str, overrides=(), workdir: str | None = None, *,
               steps: int = 10, pipeline_batches: int = 20) -> dict:
  """`run_with_reference` of `experiments/<name>.py[:variant]` with `key=value` overrides:
  what a benchmark subprocess calls (`threads.run_isolated`)."""
  import tempfile  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(config_spec, list(overrides))
  with tempfile.TemporaryDirectory(prefix='benchmark_') as tmp:
    return run_with_reference(config, workdir or tmp, steps=steps,
                              pipeline_batches=pipeline_batches)
