"""Every experiment's train and predict step on the backend JAX sees: one table.

  python -m launch.benchmark --suite                       # every family
  python -m launch.benchmark --suite --families=centernet,yolact --steps=3

For each experiment file (experiments/*.py, in name order) the suite takes its `:bench`
variant, else its `:tiny` one (`variants`: e.g. only 'tiny', for a quick CPU run); a
variant the file ignores (it returns the default config) does not count. It skips, and says why in the table, files with neither and those whose
variant reads data that is not embedded (catalog datasets such as coco/2017 or div2k, or a
local COCO-format folder: `datasets.is_embedded`). Embedded TFDS datasets are prepared on
first use, before anything is timed.

Per experiment, from random weights (`config.seed`) on the experiment's own batches:
  train   `train_step.run`: compile, one warm-up step, then `steps` timed steps, each on
          its own batch, as in training; FLOPs from XLA's cost analysis of the compiled
          step (an upper bound when the step holds conditionals: every branch counts),
          and the achieved FLOP/s over the matmul reference measured once per suite (a
          large f32 matmul on the same backend, `machine.matmul_flops_per_second`).
  predict the task's predict_step (what evaluation and export run), when it has one,
          on the weights the timed train steps left: compile, warm-up, `steps` timed
          calls (`inference.time_function`) on rows of config.eval.batch_size:
          evaluation batches when they hold every input the predict step reads (the
          keys of the task's example prediction batch), else the example batch
          repeated. With several devices the batch is replicated like the weights:
          each device runs the whole batch, and the rate is one device's.
  kernels `vision_jax.ops.backend.kernels()` once the trainer set config.kernels: 'cpu'
          (CPU-tuned kernels) or 'plain' (lax paths, GPU/TPU).
The train batch size is rounded up to a multiple of the device count when it is not one
(noted in the row). Nothing here assumes a CPU: only `jax.default_backend()` is read.

`run` returns {'header': {...}, 'rows': [...]} (JSON-ready); `markdown` makes the table;
`write` puts suite.json and suite.md in a folder.
"""
import glob
import json
import math
import os
import tempfile
import time
import traceback
from typing import Iterable, Sequence

import jax
import numpy as np

from vision_jax.benchmarks import inference
from vision_jax.benchmarks import machine
from vision_jax.benchmarks import train_step
from vision_jax.ops import backend
from vision_jax.tasks import base as tasks_base
from vision_jax.train import config as config_lib
from vision_jax.train import run_info

VARIANTS = ('bench', 'tiny')
COLUMNS = ('family', 'experiment', 'backend', 'devices', 'kernels', 'batch', 'compile s',
           'train steps/s', 'images/s', 'GFLOP/s', '/ matmul', 'predict images/s', 'note')


def experiment_files(directory: str = 'experiments') -> list[str]:
  return sorted(glob.glob(os.path.join(directory, '*.py')))


def pick_variant(path: str, variants: Sequence[str] = VARIANTS):
  """(spec, config, None) of the file's first variant among `variants` (:bench, else
  :tiny), or (None, default config or None, reason) when it has none of them."""
  try:
    default = config_lib.load_config(path)
  except Exception as e:  # pylint: disable=broad-except
    return None, None, f'its default config does not load ({type(e).__name__}: {e})'
  default_json = config_lib.to_json_dict(default)
  for variant in variants:
    spec = f'{path}:{variant}'
    try:
      config = config_lib.load_config(spec)
    except Exception:  # pylint: disable=broad-except
      continue  # the file has no such variant
    if config_lib.to_json_dict(config) != default_json:
      return spec, config, None
  return None, default, f"no {' or '.join(':' + v for v in variants)} variant"


def _dataset(config) -> str | None:
  return (config.get('data') or {}).get('dataset')


def _has_predict_step(task) -> bool:
  return type(task).predict_step is not tasks_base.Task.predict_step


def _rows(batch: dict) -> int:
  return int(np.shape(jax.tree.leaves(batch)[0])[0])


def predict_batches(task, config, count: int) -> tuple[list[dict], str]:
  """`count` host batches for the task's predict_step, and where they come from."""
  example = task.prediction_batch(task.example_prediction_request())
  keys = list(example)
  rows = int((config.get('eval') or {}).get('batch_size') or config.train.batch_size)
  eval_data = task.eval_data(process_index=0, process_count=1)
  if eval_data is not None:
    batches = []
    for batch in eval_data:
      if not all(k in batch for k in keys):
        break
      batches.append({k: batch[k] for k in keys})
      if len(batches) == count:
        break
    if batches:  # a short split is cycled
      return [batches[i % len(batches)] for i in range(count)], 'evaluation batches'
  index = np.arange(rows) % _rows(example)
  tiled = {k: np.take(np.asarray(v), index, axis=0) for k, v in example.items()}
  return [tiled] * count, 'the example prediction batch, repeated'


def time_predict(task, config, steps: int, state=None) -> dict:
  """Times task.predict_step (module doc) on `state` (None: random weights, `config.seed`);
  {} when the task has no predict step."""
  if not _has_predict_step(task):
    return {}
  batches, source = predict_batches(task, config, steps + 1)
  if state is None:
    state = task.init_state_once(jax.random.key(config.seed), int(config.train.steps))
  # The batch placed like the weights (replicated over the trainer's mesh).
  sharding = jax.tree.leaves(state)[0].sharding
  args = [(state, jax.device_put(b, sharding)) for b in batches]
  jax.block_until_ready(args)
  timed = inference.time_function(task.predict_step, args, _rows(batches[0]))
  return {'predict_images_per_s': timed['images_per_s'], 'predict_s': timed['s'],
          'predict_compile_s': timed['compile_s'], 'predict_flops': timed['flops'],
          'predict_batch_size': _rows(batches[0]), 'predict_finite': timed['finite'],
          'predict_inputs': source}


def run_experiment(spec: str, config, *, steps: int, matmul_flops_per_s: float) -> dict:
  """One experiment's row (module doc); raises what the experiment raises."""
  notes = []
  devices = jax.device_count()
  batch = int(config.train.batch_size)
  if batch % devices:
    rounded = -(-batch // devices) * devices
    with config.unlocked():
      config.train.batch_size = rounded
    notes.append(f'train batch {batch} -> {rounded} ({devices} devices)')
  start = time.perf_counter()
  state = []  # the state after the timed train steps: the predict step's weights
  with tempfile.TemporaryDirectory(prefix='benchmark_suite_') as workdir:
    train = train_step.run(config, workdir, steps=steps, pipeline_batches=1,
                           matmul_flops_per_s=matmul_flops_per_s, used_state=state)
  kernels = backend.kernels()  # the trainer set config.kernels before tracing
  setting = config.get('kernels', 'auto')
  predict = time_predict(tasks_base.create_task(config), config, steps, state[0])
  upper_bound = train['flops_count'].startswith('upper')
  if upper_bound:
    notes.append('FLOPs: upper bound (every branch of a conditional counts)')
  if predict and predict['predict_inputs'] != 'evaluation batches':
    notes.append(f"predict on {predict['predict_inputs']}")
  if predict and devices > 1:
    notes.append('predict: one device\'s rate (each runs the whole batch)')
  return {
      'status': 'ok', 'kernels': kernels, 'kernels_setting': setting,
      'batch_size': int(config.train.batch_size), 'compile_s': train['compile_s'],
      'train_steps_per_s': train['train_steps_per_s'],
      'train_images_per_s': train['train_images_per_s'],
      'flops_per_step': train['flops_per_step'],
      'achieved_flops_per_s': train['achieved_flops_per_s'],
      'ratio_to_matmul': train['ratio_to_matmul'], 'flops_upper_bound': upper_bound,
      'final_loss': train.get('final_loss'), 'timed_steps': steps,
      **predict, 'seconds': time.perf_counter() - start, 'note': '; '.join(notes)}


def header(*, steps: int, matmul_size: int, matmul_flops_per_s: float) -> dict:
  devices = jax.devices()
  return {'backend': jax.default_backend(),
          'devices': f'{len(devices)} x {devices[0].device_kind}',
          'machine': run_info.describe(run_info.machine()),
          'jax': jax.__version__, 'timed_steps': steps,
          'matmul_size': matmul_size, 'matmul_flops_per_s': matmul_flops_per_s}


def run(directory: str = 'experiments', *, families: Iterable[str] | None = None,
        steps: int = 3, variants: Sequence[str] = VARIANTS, matmul_size: int | None = None,
        log=print) -> dict:
  """Benchmarks every experiment in `directory` whose task is in `families` (all when
  None): {'header': ..., 'rows': [...]}. An experiment that fails gets status 'error'
  (its traceback is logged) and the suite goes on."""
  if steps < 1:
    raise ValueError(f'steps must be >= 1, got {steps}')
  wanted = {f.strip() for f in families or () if f.strip()} or None
  suite_start = time.perf_counter()
  plan = []  # (path, spec, config, reason, family)
  for path in experiment_files(directory):
    spec, config, reason = pick_variant(path, variants)
    plan.append((path, spec, config, reason, config.task if config is not None else '—'))
  known = {family for *_, family in plan} - {'—'}
  if wanted is not None and wanted - known:
    raise ValueError(f'--families={",".join(sorted(wanted - known))}: no experiment has '
                     'that task; '
                     f'the tasks are {", ".join(sorted(known))}')
  size = matmul_size or (2048 if jax.default_backend() == 'cpu' else 8192)
  matmul = machine.matmul_flops_per_second(size=size)
  head = header(steps=steps, matmul_size=size, matmul_flops_per_s=matmul)
  rows = []
  for path, spec, config, reason, family in plan:
    if wanted is not None and family not in wanted:
      continue
    row = {'family': family, 'experiment': os.path.basename(spec or path),
           'backend': head['backend'], 'devices': head['devices']}
    if reason is None and not _embedded(_dataset(config)):
      reason = f'needs prepared data ({_dataset(config)})'
    if reason is not None:
      rows.append({**row, 'status': 'skipped', 'note': f'skipped: {reason}'})
      log(f'[suite] {row["experiment"]}: skipped: {reason}')
      continue
    log(f'[suite] {row["experiment"]} ({family}) ...')
    try:
      row.update(run_experiment(spec, config, steps=steps, matmul_flops_per_s=matmul))
    except Exception as e:  # pylint: disable=broad-except
      log(traceback.format_exc())
      first = str(e).splitlines()[0] if str(e) else ''
      row.update(status='error', note=f'error: {type(e).__name__}: {first}'[:300])
    rows.append(row)
    log(f'[suite] {row["experiment"]}: {row["status"]}')
    jax.clear_caches()
  head['wall_s'] = time.perf_counter() - suite_start
  return {'header': head, 'rows': rows}


def _embedded(dataset: str | None) -> bool:
  from vision_jax.data import datasets  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return datasets.is_embedded(dataset)


def _number(value, digits: int = 3) -> str:
  """3 significant digits, without exponents up to 10^9 ('1234', '56.7', '0.0123')."""
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return '—'
  if abs(value) >= 10 ** digits and abs(value) < 1e9:
    return f'{value:.0f}'
  return f'{value:.{digits}g}'


def markdown(results: dict) -> str:
  """The suite's table, with the machine and the matmul reference above it."""
  head = results['header']
  lines = [
      f"Backend {head['backend']} ({head['devices']}; {head['machine']}), jax "
      f"{head['jax']}. Matmul reference: {head['matmul_size']}x{head['matmul_size']} f32 "
      f"= {head['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s. Per experiment: compile, 1 "
      f"warm-up and {head['timed_steps']} timed train steps / predict calls, random init. "
      f"Suite wall time {head.get('wall_s', 0.0):.0f} s.", '',
      '| ' + ' | '.join(COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
  for row in results['rows']:
    if row['status'] != 'ok':
      cells = [row['family'], row['experiment'], row['backend'], row['devices']]
      cells += ['—'] * (len(COLUMNS) - 5) + [row['note']]
    else:
      bound = '≤ ' if row['flops_upper_bound'] else ''
      kernels = row['kernels'] + ('' if row['kernels_setting'] == 'auto'
                                  else f" (set: {row['kernels_setting']})")
      cells = [row['family'], row['experiment'], row['backend'], row['devices'], kernels,
               str(row['batch_size']), f"{row['compile_s']:.1f}",
               _number(row['train_steps_per_s']), _number(row['train_images_per_s']),
               bound + _number(row['achieved_flops_per_s'] / 1e9),
               bound + _number(row['ratio_to_matmul'], 2),
               _number(row.get('predict_images_per_s')), row['note']]
    lines.append('| ' + ' | '.join(c.replace('|', '\\|') for c in cells) + ' |')
  return '\n'.join(lines) + '\n'


def write(results: dict, directory: str) -> tuple[str, str]:
  """Writes <directory>/suite.json and suite.md; returns their paths."""
  os.makedirs(directory, exist_ok=True)
  json_path = os.path.join(directory, 'suite.json')
  md_path = os.path.join(directory, 'suite.md')
  with open(json_path, 'w', encoding='utf-8') as f:
    json.dump(results, f, indent=2)
  with open(md_path, 'w', encoding='utf-8') as f:
    f.write(markdown(results))
  return json_path, md_path
