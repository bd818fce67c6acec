"""Ours against torchvision at thread settings, each in a fresh process; the table.

  from vision_jax.benchmarks import compare
  by_setting = compare.run_op('nms', ['all', '1'], num_boxes=2000)
  print(compare.table('nms', by_setting))

Every side-by-side comparison runs once per thread setting ('all': every core this
process may use; '1': one core, one thread on each side) in a subprocess of its own
(`threads.run_isolated`: XLA reads its thread flags when its backend starts). The table
gives, per measurement, setting and side: the threads that side was given, its median
wall seconds, its mean CPU seconds per call, the CPU use of its timed loop (CPU time /
wall time: the cores it kept busy on average; and the threads that did work), and ours /
torchvision's wall time and CPU time. At one thread, CPU / wall above 1 would mean the
limit did not hold (`threads.one_thread_holds`, printed under the table). Any loop that
kept less than SHARED_CPU_BELOW of a core busy is starred: other work shared the CPU and
its wall time is disturbed; at one thread its CPU seconds (and the CPU-time ratio) are
then the steadier figure. Each setting's line gives the machine's load average.
"""
from typing import Any, Iterable

from vision_jax.benchmarks import threads

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
# A timed loop keeping less than this many cores busy on average shared the CPU with
# other work (every loop here computes without waiting on anything but the CPU).
SHARED_CPU_BELOW = 0.8


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


def _stem(key: str) -> str:
  return key[:-2] if key.endswith('_s') else key


def _side_threads(results: dict, side: str):
  record = results.get('threads') or {}
  if side == 'ours':
    return record.get('jax_threads', results.get('jax_threads'))
  return results.get('torch_threads', record.get('torch_threads'))


def rows(kind: str, by_setting: dict[str, dict]) -> list[dict[str, Any]]:
  """One row per measurement, setting and side (see the module doc)."""
  out = []
  for name, ours_key, theirs_key in MEASUREMENTS[kind]:
    for setting, results in by_setting.items():
      ours, theirs = results.get(ours_key), results.get(theirs_key)
      for side, key, seconds in (('ours', ours_key, ours), ('torchvision', theirs_key, theirs)):
        row = {'measurement': name, 'setting': setting, 'side': side,
               'threads': _side_threads(results, side), 'seconds': seconds,
               'cpu_s': results.get(f'{_stem(key)}_cpu_s'),
               'cpu_per_wall': results.get(f'{_stem(key)}_cpu_per_wall'),
               'busy_threads': results.get(f'{_stem(key)}_busy_threads')}
        if seconds is None:
          row['skipped'] = str(results.get('torchvision')
                               or results.get('torchvision_reference') or 'not measured')
        if side == 'ours' and ours and theirs:
          row['ours_over_torchvision'] = ours / theirs
          row['torchvision_over_ours'] = theirs / ours
          ours_cpu = results.get(f'{_stem(ours_key)}_cpu_s')
          theirs_cpu = results.get(f'{_stem(theirs_key)}_cpu_s')
          if ours_cpu and theirs_cpu:
            row['cpu_ours_over_torchvision'] = ours_cpu / theirs_cpu
        out.append(row)
  return out


def summary(kind: str, by_setting: dict[str, dict]) -> dict[str, Any]:
  """The ratios (ours / torchvision's time) by measurement and setting, and the checks."""
  result: dict[str, Any] = {}
  for row in rows(kind, by_setting):
    where = f"{row['measurement']}@threads={row['setting']}"
    if 'ours_over_torchvision' in row:
      result[f'ratio_ours_to_torchvision_{where}'] = row['ours_over_torchvision']
    if 'cpu_ours_over_torchvision' in row:
      result[f'cpu_ratio_ours_to_torchvision_{where}'] = row['cpu_ours_over_torchvision']
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
  header = ('measurement', 'threads', 'side', 'side threads', 'seconds', 'cpu s',
            'cpu/wall', 'busy', 'ours/tv', 'tv/ours', 'ours/tv cpu')
  body = []
  shared = False
  for row in rows(kind, by_setting):
    cpu = row['cpu_per_wall']
    flag = ''
    if cpu is not None and cpu < SHARED_CPU_BELOW:
      flag, shared = '*', True
    body.append((row['measurement'], row['setting'], row['side'], _fmt(row['threads'], 'd'),
                 row.get('skipped') or _fmt(row['seconds'], '.4g'), _fmt(row['cpu_s'], '.4g'),
                 _fmt(cpu, '.2f') + flag, _fmt(row['busy_threads'], 'd'),
                 _fmt(row.get('ours_over_torchvision'), '.3f'),
                 _fmt(row.get('torchvision_over_ours'), '.2f'),
                 _fmt(row.get('cpu_ours_over_torchvision'), '.3f')))
  widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
  for r in [header, *body]:
    lines.append('  '.join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
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
