"""Predict-step speed: an experiment's predict beside another experiment's and torchvision's.

  python -m launch.benchmark --config=experiments/yolact_coco.py:bench --steps=5
  python -m launch.benchmark --config=experiments/mask_rcnn_coco.py:bench --mode=predict

Every side runs on the same uint8 images (the experiment's evaluation batches, at its
image size and `benchmark.batch_size`), from random weights: each side's whole jit'd
predict (network, decoding, NMS, masks at the input size), one call per batch, each
timed call on a batch of its own after compilation and one warm-up call. All our shapes
are static: the weights and images change only how many steps a greedy NMS loop takes
(Mask R-CNN's RPN and final NMS stop once their kept lists are full; YOLACT's Fast NMS
is a fixed matrix computation). torchvision's work depends on them more (score
threshold, proposals left by NMS), and the results say how much it did.
`launch/benchmark.py` runs `run_config` once per thread setting in a fresh process
(`compare.run_predict`) and prints `compare.table('predict', ...)`.

Config (`config.benchmark`, every key optional)
  mode                         'predict': `launch.benchmark`'s default for this experiment
                               (otherwise 'train_step'; `--mode` overrides).
  batch_size                   images per predict call (default config.eval.batch_size).
  inference_against            another experiment whose predict is timed beside ours:
                               'mask_rcnn_coco' (experiments/ next to this config),
                               'mask_rcnn_coco.py:variant' or a path. It keeps its own
                               task, model, optimizers and seed and takes our `data`
                               block (dataset, image size, hence the same images and
                               number of classes) and batch size.
  inference_against_overrides  'key=value' overrides of that experiment, applied before
                               the data block is replaced (e.g. a smaller model in tests).
  target_speedup               how many times faster than the against side each of our
                               functions should be: reported (speedup, met or not), never
                               asserted.
  torchvision_reference        'mask_rcnn': torchvision's maskrcnn_resnet50_fpn in eval
                               mode beside the side whose task is mask_rcnn (the against
                               side, or this experiment), its test settings (classes,
                               proposals before / after NMS, thresholds, detections)
                               taken from that side's model config; skipped, with the
                               reason, when torch / torchvision do not import.
  function_pairs               comparisons between this experiment's own functions,
                               'fast/slow' or 'fast/slow>=target' (function names of
                               `benchmark_predict_functions`), e.g. YolactEdge's
                               'non_keyframe/keyframe>=1.5' and 'clip_k5/clip_k1'.
  torchvision_predict_kwargs   keyword arguments of
                               `torchvision_reference.mask_rcnn_inference_seconds` that
                               replace the derived ones.

Functions timed per side (the extension point): a task that defines
`benchmark_predict_functions()` returns {name: (fn, make_args)}: `jax.jit(fn)(*args)` is
timed with args = make_args(state, batch) for each host evaluation batch (numpy, the
task's own `eval_data` contract). make_args runs before the timed loop, untimed: it puts
what fn reads on the device and may run other steps, e.g. a video model's keyframe step
to make the cache its non-keyframe step takes ('keyframe' and 'non_keyframe'). The
default is {'predict': (task.predict_step, lambda state, batch: (state, the batch's
PREDICT_KEYS on the device))}: the function the trainer jits for evaluation. A side's label is its task name (with
`_<function>` when the task names several); each of our functions is compared with the
against side's first.

Results (flat; `<label>` as above): `<label>_s` (seconds per batch), `<label>_images_per_s`,
`<label>_cpu_s` (CPU seconds per batch), `<label>_cpu_per_wall`, `<label>_busy_threads`,
`<label>_compile_s`, `<label>_flops` (XLA's cost analysis of one call),
`<label>_detections_per_image` (valid detections of the last timed call), and the same
`torchvision_*` keys; 'sides' (label -> experiment, task, function, model), and
'measurements' (what `compare` pairs, with the target).
"""
import copy
import os
import re
import time
from typing import Any, Callable, Iterable

import jax
import numpy as np

from vision_jax.benchmarks import threads
from vision_jax.benchmarks import torchvision_reference
from vision_jax.ops import backend
from vision_jax.tasks import base as tasks_base
from vision_jax.train import config as config_lib

# torchvision_reference value -> the task whose side it runs beside.
TORCHVISION_TASKS = {'mask_rcnn': 'mask_rcnn'}
# The batch keys a predict step reads (the rest of an evaluation batch stays on the host).
PREDICT_KEYS = ('image', 'orig_size', 'scale')


def benchmark_settings(config) -> dict:
  """config.benchmark as a plain dict ({} without one)."""
  block = config.get('benchmark') or {}
  return block.to_dict() if hasattr(block, 'to_dict') else dict(block)


def experiment_spec(name: str, config_spec: str) -> str:
  """'mask_rcnn_coco[.py][:variant]' -> a --config spec, found next to `config_spec`'s
  file; a value with a directory in it is a path as given."""
  path, sep, variant = name.partition(':')
  if not path.endswith('.py'):
    path += '.py'
  if not os.path.dirname(path):
    path = os.path.join(os.path.dirname(config_spec.partition(':')[0]), path)
  return path + sep + variant


def against_config(config, config_spec: str):
  """The `inference_against` experiment on our data and batch size, or None."""
  settings = benchmark_settings(config)
  name = settings.get('inference_against')
  if not name:
    return None
  spec = experiment_spec(name, config_spec)
  against = config_lib.load_config(spec, list(settings.get('inference_against_overrides')
                                              or ()))
  with against.unlocked():
    against.data = copy.deepcopy(config.data)
    against.eval.batch_size = config.eval.batch_size
  return against, spec


def own_pairs(pairs: Iterable[str], sides: dict) -> list[dict]:
  """Measurements of `function_pairs` ('fast/slow[>=target]') between our own sides."""
  by_function = {side['function']: label for label, side in sides.items()
                 if side['role'] == 'ours'}
  measurements = []
  for pair in pairs:
    match = re.fullmatch(r'(\w+)/(\w+)(?:>=([0-9.]+))?', pair)
    if not match or match.group(1) not in by_function or match.group(2) not in by_function:
      raise config_lib.ConfigError(
          f"benchmark.function_pairs entry {pair!r}: write 'fast/slow' or "
          f"'fast/slow>=target' with function names among {sorted(by_function)}")
    fast, slow = by_function[match.group(1)], by_function[match.group(2)]
    target = float(match.group(3)) if match.group(3) else None
    measurements.append({'name': f'{fast}_vs_{slow}',
                         'sides': [[fast, f'{fast}_s', 'jax'], [slow, f'{slow}_s', 'jax']],
                         'target_speedup': target})
  return measurements


def _label(text: str) -> str:
  return re.sub(r'[^0-9A-Za-z]+', '_', text).strip('_')


def predict_functions(task) -> dict[str, tuple[Callable, Callable]]:
  """{name: (fn, make_args)} of a task (module doc)."""
  hook = getattr(task, 'benchmark_predict_functions', None)
  if hook is not None:
    functions = dict(hook())
    if not functions:
      raise ValueError(f'{type(task).__name__}.benchmark_predict_functions() is empty')
    return functions
  return {'predict': (task.predict_step,
                      lambda state, batch: (state, jax.device_put(predict_inputs(batch))))}


def predict_inputs(batch: dict) -> dict:
  """The keys of a host evaluation batch that a detection predict step reads."""
  return {k: batch[k] for k in PREDICT_KEYS if k in batch}


def _flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get('flops', 0.0))


def _detections_per_image(outputs) -> float | None:
  if isinstance(outputs, dict) and 'valid' in outputs:
    valid = np.asarray(outputs['valid'])
    return float(valid.sum()) / valid.shape[0]
  return None


def _finite(outputs) -> bool:
  leaves = [np.asarray(x) for x in jax.tree.leaves(outputs)]
  return all(np.isfinite(x).all() for x in leaves if np.issubdtype(x.dtype, np.floating))


def time_function(fn: Callable, args: list[tuple], batch_size: int) -> dict:
  """Compiles `fn` for args[0], warms it up on args[0] and times one call per remaining
  args (all of them when there is one), blocking on each call's outputs.

  Returns {'s' (seconds per call), 'images_per_s', 'cpu_s', 'cpu_per_wall',
  'busy_threads', 'compile_s', 'flops', 'finite', 'detections_per_image',
  'timed_batches'}.
  """
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args[0]).compile()
  compile_s = time.perf_counter() - start
  outputs = jax.block_until_ready(compiled(*args[0]))  # warm up
  timed = args[1:] or args[:1]
  with threads.CpuUsage(calls=len(timed)) as usage:
    for call_args in timed:
      outputs = jax.block_until_ready(compiled(*call_args))
  seconds = usage.result['wall_s'] / len(timed)
  outputs = jax.device_get(outputs)
  return {'s': seconds, 'images_per_s': batch_size / seconds,
          'cpu_s': usage.result['cpu_s_per_call'], 'cpu_per_wall': usage.result['cpu_per_wall'],
          'busy_threads': usage.result['busy_threads'], 'compile_s': compile_s,
          'flops': _flops(compiled), 'finite': _finite(outputs),
          'detections_per_image': _detections_per_image(outputs),
          'timed_batches': len(timed)}


def _model_summary(task) -> dict:
  model_config = getattr(task, 'model_config', None)
  if model_config is None:
    return {}
  fields = ('backbone', 'width', 'norm', 'fpn_channels', 'rpn_pre_nms_top_n_test',
            'rpn_post_nms_top_n_test', 'detections_per_image', 'top_k', 'num_classes')
  return {f: getattr(model_config, f) for f in fields if hasattr(model_config, f)}


def time_side(task, config, batches: list[dict], *, experiment: str,
              batch_size: int) -> dict:
  """Times every predict function of `task` (built from `config`) on `batches` (host
  numpy dicts), from random weights (`config.seed`).

  Returns {name: time_function's dict, plus 'task', 'function', 'experiment', 'model'}.
  """
  backend.set_kernels(config.get('kernels', 'auto'))  # read when the functions trace
  state = task.init_state_once(jax.random.key(config.seed), int(config.train.steps))
  measured = {}
  for name, (fn, make_args) in predict_functions(task).items():
    args = [make_args(state, b) for b in batches]
    jax.block_until_ready(args)
    measured[name] = {**time_function(fn, args, batch_size), 'task': config.task,
                      'function': name, 'experiment': experiment,
                      'model': _model_summary(task)}
  return measured


def _batches(task, count: int) -> tuple[list[dict], int]:
  """`count` evaluation batches of the task (host numpy), cycling a short split; and how
  many of them are distinct."""
  batches = []
  for batch in task.eval_data(process_index=0, process_count=1):
    batches.append(batch)
    if len(batches) == count:
      break
  if not batches:
    raise ValueError('the evaluation split gave no batch')
  distinct = len(batches)
  return [batches[i % distinct] for i in range(count)], distinct


def torchvision_kwargs(task, settings: dict) -> dict:
  """Arguments of `torchvision_reference.mask_rcnn_inference_seconds` that mirror a
  Mask R-CNN task's test settings (`torchvision_predict_kwargs` replace them)."""
  cfg = task.model_config
  kwargs = dict(num_classes=task.source.num_classes,
                rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
                rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
                rpn_nms_thresh=cfg.rpn_nms_threshold, box_score_thresh=cfg.score_threshold,
                box_nms_thresh=cfg.nms_threshold,
                box_detections_per_img=cfg.detections_per_image)
  kwargs.update(settings.get('torchvision_predict_kwargs') or {})
  return kwargs


def architecture_differences(task) -> list[str]:
  """How a Mask R-CNN side's networks differ from torchvision's maskrcnn_resnet50_fpn
  (besides the randomness of the weights), in words."""
  cfg = task.model_config
  reference = dict(backbone='resnet50', width=64, fpn_channels=256, box_fc_dim=1024,
                   mask_conv_dim=256, mask_num_convs=4, keypoint_head=False,
                   aspect_ratios=(0.5, 1.0, 2.0),
                   anchor_sizes=((32,), (64,), (128,), (256,), (512,)))
  out = [f'{name} {getattr(cfg, name)!r} (torchvision {value!r})'
         for name, value in reference.items() if getattr(cfg, name) != value]
  if cfg.pooler_aligned:
    out.append('RoIAlign aligned=True (torchvision aligned=False; the same cost)')
  if cfg.inference_candidates < cfg.rpn_post_nms_top_n_test * cfg.num_classes:
    out.append(f'the final NMS runs on the top {cfg.inference_candidates} (class, box) '
               f'pairs (torchvision: every pair above the score threshold, up to '
               f'{cfg.rpn_post_nms_top_n_test * cfg.num_classes})')
  return out


SIDES_NOTE = (
    "each of our sides runs its task's whole predict step under one jit (network, "
    'decoding, NMS, masks at the input size) from uint8 images. Every shape is static: '
    'the images and weights change only how many steps a greedy NMS loop takes (it stops '
    'once its kept list is full), a small part of the work')
TORCHVISION_NOTE = (
    "torchvision's work depends on the data: it runs the box head on the proposals its "
    "RPN's NMS leaves (at most rpn_post_nms_top_n_test) and the mask head on the "
    'detections above its score threshold that its NMS leaves (at most '
    "box_detections_per_img); ours always computes every static slot. Its transform "
    'calls interpolate at scale 1 and pads to a multiple of 32; it returns float mask '
    'probabilities, ours thresholded uint8 masks; its BatchNorm2d in eval mode and our '
    'frozen BatchNorm are per-channel affines')


def run(config, *, config_spec: str, steps: int = 5) -> dict:
  """Times the predict functions of `config`'s experiment, of its `inference_against`
  experiment and torchvision's reference, on the same batches (module doc)."""
  if steps < 1:
    raise ValueError(f'steps must be >= 1, got {steps}')
  settings = benchmark_settings(config)
  batch_size = int(settings.get('batch_size') or config.eval.batch_size)
  config = copy.deepcopy(config)
  config.eval.batch_size = batch_size
  plan = [(config, config_spec)]
  against = against_config(config, config_spec)
  if against is not None:
    plan.append(against)
  reference = settings.get('torchvision_reference')
  if reference is not None and reference not in TORCHVISION_TASKS:
    raise config_lib.ConfigError(
        f'benchmark.torchvision_reference={reference!r}: predict mode knows '
        f'{sorted(TORCHVISION_TASKS)}')

  results: dict[str, Any] = {'jax_threads': threads.jax_threads(),
                             'devices': f'{jax.device_count()} x {jax.devices()[0].device_kind}',
                             'batch_size': batch_size,
                             'image_size': tuple(config.data.image_size),
                             'dataset': config.data.dataset, 'steps': steps}
  sides: dict[str, dict] = {}  # label -> description
  side_labels: list[list[str]] = []  # per experiment, its labels in order
  reference_task = None
  batches = None
  for index, (side_config, spec) in enumerate(plan):
    backend.set_kernels(side_config.get('kernels', 'auto'))
    task = tasks_base.create_task(side_config)
    if batches is None:  # ours: every side runs on these
      batches, results['distinct_batches'] = _batches(task, steps + 1)
      results['num_classes'] = getattr(task.source, 'num_classes', None)
    measured = time_side(task, side_config, batches, experiment=os.path.basename(spec),
                         batch_size=batch_size)
    labels = []
    for name, values in measured.items():
      label = _label(side_config.task if len(measured) == 1
                     else f'{side_config.task}_{name}')
      if label in sides:
        label = f'against_{label}'
      labels.append(label)
      sides[label] = {k: values[k] for k in ('experiment', 'task', 'function', 'model')}
      sides[label]['role'] = 'ours' if index == 0 else 'against'
      for key in ('s', 'images_per_s', 'cpu_s', 'cpu_per_wall', 'busy_threads',
                  'compile_s', 'flops', 'finite', 'detections_per_image'):
        results[f'{label}_{key}'] = values[key]
      results['timed_batches'] = values['timed_batches']
    side_labels.append(labels)
    if reference is not None and side_config.task == TORCHVISION_TASKS[reference]:
      reference_task = (task, labels[0])
  results['sides'] = sides

  measurements = []
  target = settings.get('target_speedup')
  if len(side_labels) > 1:
    for label in side_labels[0]:
      measurements.append({'name': f'{label}_vs_{side_labels[1][0]}',
                           'sides': [[label, f'{label}_s', 'jax'],
                                     [side_labels[1][0], f'{side_labels[1][0]}_s', 'jax']],
                           'target_speedup': target})
  measurements += own_pairs(settings.get('function_pairs') or (), sides)
  if reference is not None:
    results.update(_torchvision(reference, reference_task, settings, batches))
    if reference_task is not None:
      label = reference_task[1]
      measurements.append({'name': f'{label}_vs_torchvision',
                           'sides': [[label, f'{label}_s', 'jax'],
                                     ['torchvision', 'torchvision_s', 'torch']],
                           'target_speedup': None})
  paired = {side[0] for m in measurements for side in m['sides']}
  for label in sides:
    if label not in paired:
      measurements.append({'name': label, 'sides': [[label, f'{label}_s', 'jax']],
                           'target_speedup': None})
  results['measurements'] = measurements
  notes = [SIDES_NOTE]
  if 'torchvision_s' in results:
    notes.append(TORCHVISION_NOTE)
  results['note'] = '. '.join(notes)
  classes = f" ({results['num_classes']} classes)" if results['num_classes'] else ''
  results['case'] = (f"{' vs '.join(sides)}{' vs torchvision' if reference else ''}: "
                     f"predict on {batch_size} x {results['image_size'][0]}x"
                     f"{results['image_size'][1]} uint8 images of {config.data.dataset}"
                     f"{classes}, random weights")
  return results


def _torchvision(reference: str, reference_task, settings: dict,
                 batches: list[dict]) -> dict:
  """torchvision's side, or why it was skipped ({'torchvision': 'skipped: ...'})."""
  if reference_task is None:
    return {'torchvision': f'skipped: torchvision_reference={reference!r} runs beside a '
                           f'{TORCHVISION_TASKS[reference]!r} side; there is none'}
  error = torchvision_reference.import_error()
  if error:
    print(f'torchvision side skipped: torch/torchvision not importable ({error})')
    return {'torchvision': f'skipped: not importable ({error})'}
  task, label = reference_task
  kwargs = torchvision_kwargs(task, settings)
  reference_results = torchvision_reference.mask_rcnn_inference_seconds(
      batches=[b['image'] for b in batches], **kwargs)
  cfg = task.model_config
  rois = reference_results['box_head_rois_per_image']
  detections = reference_results['detections_per_image']
  return {
      'torchvision_s': reference_results['seconds_per_batch'],
      'torchvision_images_per_s': reference_results['images_per_s'],
      'torchvision_cpu_s': reference_results['cpu_s_per_batch'],
      'torchvision_cpu_per_wall': reference_results['cpu_per_wall'],
      'torchvision_busy_threads': reference_results['busy_threads'],
      'torchvision_finite': reference_results['outputs_finite'],
      'torchvision_box_head_rois_per_image': rois,
      'torchvision_detections_per_image': detections,
      'torchvision_kwargs': kwargs,
      'torchvision_model': reference_results['model'],
      'torch_threads': reference_results['torch_threads'],
      'torch_version': reference_results['torch_version'],
      'torchvision_version': reference_results['torchvision_version'],
      # Ours computes every static slot: the same work where torchvision's counts reach
      # them (it can only do less).
      f'{label}_box_head_rois_per_image': cfg.rpn_post_nms_top_n_test,
      f'{label}_mask_head_rois_per_image': cfg.detections_per_image,
      'equal_work': (rois >= cfg.rpn_post_nms_top_n_test
                     and detections >= cfg.detections_per_image),
      'torchvision_differences': architecture_differences(task),
  }


def run_config(config_spec: str, overrides: Iterable[str] = (), *, steps: int = 5) -> dict:
  """`run` of `experiments/<name>.py[:variant]` with `key=value` overrides: what a
  benchmark subprocess calls (`threads.run_isolated`)."""
  config = config_lib.load_config(config_spec, list(overrides))
  return run(config, config_spec=config_spec, steps=steps)
