"""Side-by-side speed at thread settings, each in a fresh process; the table.

  from vision_jax.benchmarks import compare
  by_setting = compare.run_op('nms', ['all', '1'], num_boxes=2000)
  print(compare.table('nms', by_setting))
  by_setting = compare.run_predict('experiments/yolact_coco.py:bench', [], ['all', '1'],
                                   steps=5)
  print(compare.table('predict', by_setting))

Every side-by-side comparison runs once per thread setting ('all': every core this
process may use; '1': one core, one thread on each side) in a subprocess of its own
(`threads.run_isolated`: XLA reads its thread flags when its backend starts). A
measurement pairs two sides: ours and torchvision's for the ops and the train step
(`MEASUREMENTS`); for the predict comparison (`inference.run`) the results name their
own sides and pairs (e.g. yolact vs mask_rcnn, mask_rcnn vs torchvision) and may set a
target speedup, reported as met or not. The table gives, per pair of sides, measurement,
setting and side: the threads that side was given ('jax' sides: XLA's, 'torch' sides:
torch's), its wall seconds per call, images/s (where the results have them), its mean
CPU seconds per call, the CPU use of its timed loop (CPU time / wall time: the cores it
kept busy on average; and the threads that did work), and the first side's wall time and
CPU time over the second's (ours / torchvision's). At one thread, CPU / wall above 1
would mean the limit did not hold (`threads.one_thread_holds`, printed under the table).
Any loop that kept less than SHARED_CPU_BELOW of a core busy is starred: other work
shared the CPU and its wall time is disturbed; at one thread its CPU seconds (and the
CPU-time ratio) are then the steadier figure. Each setting's line gives the machine's
load average.
"""
from typing import Any, Iterable

from vision_jax.benchmarks import threads
from vision_jax.train import config as config_lib

# kind -> ((measurement, our seconds key, torchvision's seconds key), ...)
MEASUREMENTS = {
    'roi_align': (
        ('roi_align_p2_fwd', 'roi_align_p2_fwd_s', 'torchvision_roi_align_p2_fwd_s'),
        ('roi_align_p2_fwd_bwd', 'roi_align_p2_fwd_bwd_s',
         'torchvision_roi_align_p2_fwd_bwd_s'),
        ('multilevel_fwd', 'multilevel_fwd_s', 'torchvision_multilevel_fwd_s'),
        ('multilevel_fwd_bwd', 'multilevel_fwd_bwd_s', 'torchvision_multilevel_fwd_bwd_s'),
    ),
    'nms': (('nms', 'nms_s', 'torchvision_nms_s'),),
    'conv3x3': (('conv_fwd', 'conv_fwd_s', 'torch_conv_fwd_s'),
                ('conv_fwd_bwd', 'conv_fwd_bwd_s', 'torch_conv_fwd_bwd_s')),
    'train_step': (('train_step', 'step_s', 'torchvision_step_s'),),
}
# What an experiment's benchmark times (`benchmark_mode`).
MODES = ('train_step', 'predict')
# A timed loop keeping less than this many cores busy on average shared the CPU with
# other work (every loop here computes without waiting on anything but the CPU).
SHARED_CPU_BELOW = 0.8


def benchmark_mode(config, flag: str | None = None) -> str:
  """What `launch.benchmark` times for an experiment: `flag` (--mode), else
  config.benchmark.mode, else 'train_step'."""
  value = flag or (config.get('benchmark') or {}).get('mode') or 'train_step'
  if value not in MODES:
    raise config_lib.ConfigError(f'benchmark mode {value!r}: use one of {", ".join(MODES)}')
  return value


def run_op(op: str, settings: Iterable[str], *, timeout: float | None = None,
           **kwargs) -> dict[str, dict]:
  """{setting: `ops.run(op, **kwargs)` in a fresh process at that setting}."""
  return {setting: threads.run_isolated('vision_jax.benchmarks.ops:run',
                                        {'op': op, **kwargs}, setting, timeout=timeout)
          for setting in threads.parse_settings(settings)}


def run_train_step(config_spec: str, overrides: Iterable[str], settings: Iterable[str], *,
                   steps: int, pipeline_batches: int = 20, workdir: str | None = None,
                   timeout: float | None = None) -> dict[str, dict]:
  """{setting: `train_step.run_config(...)` (ours, then torchvision's) in a fresh process}."""
  kwargs = dict(config_spec=config_spec, overrides=list(overrides), workdir=workdir,
                steps=steps, pipeline_batches=pipeline_batches)
  return {setting: threads.run_isolated('vision_jax.benchmarks.train_step:run_config',
                                        kwargs, setting, timeout=timeout)
          for setting in threads.parse_settings(settings)}


def run_predict(config_spec: str, overrides: Iterable[str], settings: Iterable[str], *,
                steps: int, timeout: float | None = None) -> dict[str, dict]:
  """{setting: `inference.run_config(...)` (every side's predict) in a fresh process}."""
  kwargs = dict(config_spec=config_spec, overrides=list(overrides), steps=steps)
  return {setting: threads.run_isolated('vision_jax.benchmarks.inference:run_config',
                                        kwargs, setting, timeout=timeout)
          for setting in threads.parse_settings(settings)}


def _stem(key: str) -> str:
  return key[:-2] if key.endswith('_s') else key


def _abbreviation(label: str) -> str:
  return 'tv' if label == 'torchvision' else label


def measurements(kind: str, results: dict) -> list[dict]:
  """[{'name', 'sides': [(label, seconds key, library 'jax' | 'torch'), ...],
  'target_speedup'}]: a kind's fixed measurements (ours, then torchvision), else those
  the results describe (`results['measurements']`, e.g. `inference.run`'s)."""
  if kind in MEASUREMENTS:
    return [{'name': name, 'sides': [('ours', ours, 'jax'), ('torchvision', theirs, 'torch')],
             'target_speedup': None} for name, ours, theirs in MEASUREMENTS[kind]]
  return [{'name': m['name'], 'sides': [tuple(side) for side in m['sides']],
           'target_speedup': m.get('target_speedup')}
          for m in results.get('measurements', ())]


def _side_threads(results: dict, library: str):
  record = results.get('threads') or {}
  if library == 'jax':
    return record.get('jax_threads', results.get('jax_threads'))
  return results.get('torch_threads', record.get('torch_threads'))


def _skipped(results: dict, library: str) -> str:
  if library == 'torch':
    return str(results.get('torchvision') or results.get('torchvision_reference')
               or 'not measured')
  return 'not measured'


def rows(kind: str, by_setting: dict[str, dict]) -> list[dict[str, Any]]:
  """One row per measurement, setting and side (see the module doc).

  The first side's row of a two-sided measurement carries the ratios: 'ratio' (its
  seconds / the other side's; also as '<a>_over_<b>'), 'inverse_ratio' ('<b>_over_<a>'),
  'cpu_ratio' ('cpu_<a>_over_<b>'), and with a target 'speedup' (the other's seconds /
  its own), 'target_speedup' and 'target_met'.
  """
  out = []
  first = next(iter(by_setting.values()))
  for measurement in measurements(kind, first):
    sides = measurement['sides']
    labels = tuple(label for label, _, _ in sides)
    for setting, results in by_setting.items():
      seconds = [results.get(key) for _, key, _ in sides]
      for i, (label, key, library) in enumerate(sides):
        stem = _stem(key)
        row = {'measurement': measurement['name'], 'setting': setting, 'side': label,
               'pair': labels, 'threads': _side_threads(results, library),
               'seconds': seconds[i], 'images_per_s': results.get(f'{stem}_images_per_s'),
               'cpu_s': results.get(f'{stem}_cpu_s'),
               'cpu_per_wall': results.get(f'{stem}_cpu_per_wall'),
               'busy_threads': results.get(f'{stem}_busy_threads')}
        if seconds[i] is None:
          row['skipped'] = _skipped(results, library)
        if i == 0 and len(sides) == 2 and seconds[0] and seconds[1]:
          a, b = labels
          row['ratio'] = row[f'{a}_over_{b}'] = seconds[0] / seconds[1]
          row['inverse_ratio'] = row[f'{b}_over_{a}'] = seconds[1] / seconds[0]
          cpu_a = results.get(f'{stem}_cpu_s')
          cpu_b = results.get(f'{_stem(sides[1][1])}_cpu_s')
          if cpu_a and cpu_b:
            row['cpu_ratio'] = row[f'cpu_{a}_over_{b}'] = cpu_a / cpu_b
          target = measurement.get('target_speedup')
          if target:
            row['speedup'] = seconds[1] / seconds[0]
            row['target_speedup'] = float(target)
            row['target_met'] = row['speedup'] >= float(target)
        out.append(row)
  return out


def _where(row: dict) -> str:
  """'_<measurement>@threads=<setting>' ('@threads=<setting>' where the measurement is
  named after its pair, '<a>_vs_<b>')."""
  a, b = row['pair']
  name = '' if row['measurement'] == f'{a}_vs_{b}' else f"_{row['measurement']}"
  return f"{name}@threads={row['setting']}"


def summary(kind: str, by_setting: dict[str, dict]) -> dict[str, Any]:
  """The ratios (one side's time / the other's) by measurement and setting, the targets,
  and the checks."""
  result: dict[str, Any] = {}
  for row in rows(kind, by_setting):
    if 'ratio' not in row:
      continue
    a, b = row['pair']
    where = _where(row)
    result[f'ratio_{a}_to_{b}{where}'] = row['ratio']
    if 'cpu_ratio' in row:
      result[f'cpu_ratio_{a}_to_{b}{where}'] = row['cpu_ratio']
    if 'target_speedup' in row:
      result[f'speedup_{a}_over_{b}{where}'] = row['speedup']
      result[f'target_speedup_{a}_over_{b}'] = row['target_speedup']
      result[f'target_met_{a}_over_{b}{where}'] = row['target_met']
  for setting, results in by_setting.items():
    if setting == '1':
      holds, evidence = threads.one_thread_holds(results)
      result['one_thread_holds'] = holds
      result['one_thread_evidence'] = evidence
  return result


def _fmt(value, spec):
  if value is None:
    return '-'
  return format(value, spec) if isinstance(value, (int, float)) else str(value)


def table(kind: str, by_setting: dict[str, dict]) -> str:
  """The side-by-side table, with the case, notes and the one-thread check as text."""
  first = next(iter(by_setting.values()))
  lines = [f"{kind}: {first.get('case', '')}".rstrip(': ')]
  if first.get('note'):
    lines.append(f"note: {first['note']}")
  if kind == 'nms':
    for setting, results in by_setting.items():
      lines.append(f"kept boxes at threads={setting}: ours {results.get('kept_ours')}, "
                   f"torchvision {results.get('kept_torchvision', '-')}; identical lists: "
                   f"{results.get('same_kept_list', '-')}; equal work: "
                   f"{results.get('equal_work')}")
  if kind == 'train_step':
    for setting, results in by_setting.items():
      lines.append(
          f"threads={setting}: {results.get('timed_batches')} timed steps on distinct batches "
          f"(ours: instances/image {_fmt(results.get('instances_per_image'), '.2f')}, "
          f"positive RoIs/step {_fmt(results.get('mean_positive_rois'), '.1f')}; torchvision: "
          f"{results.get('torchvision_data', '-')}, objects/image "
          f"{_fmt(results.get('torchvision_objects_per_image'), '.2f')}), compile "
          f"{_fmt(results.get('compile_s'), '.1f')} s")
  if kind == 'predict':
    lines.extend(_predict_lines(by_setting))
  groups: dict[tuple, list[dict]] = {}  # one block per pair of sides: its own ratio headers
  for row in rows(kind, by_setting):
    groups.setdefault(row['pair'], []).append(row)
  shared = False
  for i, (pair, group) in enumerate(groups.items()):
    block, flagged = _block(pair, group)
    lines.extend(([''] if i else []) + block)
    shared = shared or flagged
  for row in (r for group in groups.values() for r in group):
    if 'target_met' in row:
      a, b = row['pair']
      lines.append(f"target: {a} at least {row['target_speedup']:g}x as fast as {b} at "
                   f"threads={row['setting']}: {row['speedup']:.2f}x, "
                   f"{'met' if row['target_met'] else 'NOT met'}")
  for setting, results in by_setting.items():
    record = results.get('threads') or {}
    lines.append(f"threads={setting}: process allowed {record.get('cores')} core(s); XLA "
                 f"{record.get('jax_threads')} thread(s), torch {record.get('torch_threads')}; "
                 f"load average {_fmt(record.get('load_average_at_start'), '.1f')} -> "
                 f"{_fmt(record.get('load_average_at_end'), '.1f')} on "
                 f"{record.get('machine_cores', '?')} cores; "
                 f"XLA_FLAGS={record.get('xla_flags', '')!r}")
    if setting == '1':
      holds, evidence = threads.one_thread_holds(results)
      lines.append(f"one thread {'holds' if holds else 'NOT verified'}: {evidence}")
  if shared:
    lines.append(f'* CPU/wall below {SHARED_CPU_BELOW}: other work shared the CPU during that '
                 'loop (or, for sub-millisecond calls, it waited on thread hand-offs), so its '
                 'wall time is disturbed; at one thread, compare CPU seconds')
  return '\n'.join(lines)


def _block(pair: tuple, group: list[dict]) -> tuple[list[str], bool]:
  """The table lines of one pair of sides' rows, and whether a loop was starred."""
  with_images = any(row.get('images_per_s') is not None for row in group)
  header = ['measurement', 'threads', 'side', 'side threads', 'seconds']
  if with_images:
    header.append('images/s')
  header += ['cpu s', 'cpu/wall', 'busy']
  if len(pair) == 2:
    a, b = (_abbreviation(label) for label in pair)
    header += [f'{a}/{b}', f'{b}/{a}', f'{a}/{b} cpu']
  body, shared = [], False
  for row in group:
    cpu = row['cpu_per_wall']
    flag = ''
    if cpu is not None and cpu < SHARED_CPU_BELOW:
      flag, shared = '*', True
    line = [row['measurement'], row['setting'], row['side'], _fmt(row['threads'], 'd'),
            row.get('skipped') or _fmt(row['seconds'], '.4g')]
    if with_images:
      line.append(_fmt(row.get('images_per_s'), '.3g'))
    line += [_fmt(row['cpu_s'], '.4g'), _fmt(cpu, '.2f') + flag,
             _fmt(row['busy_threads'], 'd')]
    if len(pair) == 2:
      line += [_fmt(row.get('ratio'), '.3f'), _fmt(row.get('inverse_ratio'), '.2f'),
               _fmt(row.get('cpu_ratio'), '.3f')]
    body.append(tuple(line))
  widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
  return ['  '.join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
          for r in [header, *body]], shared


def _predict_lines(by_setting: dict[str, dict]) -> list[str]:
  """What each setting's predict comparison ran on, and how much work each side did."""
  lines = []
  for setting, results in by_setting.items():
    sides = results.get('sides') or {}
    lines.append(
        f"threads={setting}: seconds per batch of {results.get('batch_size')} images, "
        f"{results.get('timed_batches')} timed calls per side after one warm-up "
        f"({results.get('distinct_batches')} distinct batches); compile s: "
        + ', '.join(f"{label} {_fmt(results.get(f'{label}_compile_s'), '.1f')}"
                    for label in sides)
        + '; GFLOP per batch (XLA): '
        + ', '.join(f"{label} {_fmt((results.get(f'{label}_flops') or 0) / 1e9, '.3g')}"
                    for label in sides)
        + '; valid detections per image (last call): '
        + ', '.join(f"{label} {_fmt(results.get(f'{label}_detections_per_image'), '.1f')}"
                    for label in sides))
    if 'torchvision_s' in results:
      ours = next((label for label in sides if f'{label}_box_head_rois_per_image' in results),
                  None)
      lines.append(
          f"threads={setting}: torchvision ran its box head on "
          f"{_fmt(results.get('torchvision_box_head_rois_per_image'), '.1f')} proposals per "
          f"image and its mask head on "
          f"{_fmt(results.get('torchvision_detections_per_image'), '.1f')} detections per "
          f"image ({ours}: {results.get(f'{ours}_box_head_rois_per_image')} and "
          f"{results.get(f'{ours}_mask_head_rois_per_image')} static slots); equal work: "
          f"{results.get('equal_work')}; outputs finite: "
          f"{results.get('torchvision_finite')}")
  first = next(iter(by_setting.values()))
  models = {label: side.get('model') or {} for label, side in (first.get('sides') or {}).items()}
  if models:
    lines.append('models: ' + '; '.join(
        f"{label} {m.get('backbone', '?')} (width {m.get('width', '?')}, "
        f"{m.get('norm', '?')} norm), FPN {m.get('fpn_channels', '?')} channels"
        for label, m in models.items()))
  if first.get('torchvision_differences'):
    lines.append('networks unlike torchvision\'s: '
                 + '; '.join(first['torchvision_differences']))
  return lines
