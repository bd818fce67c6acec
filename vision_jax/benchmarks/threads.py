"""Benchmarks at a thread setting, each in a fresh subprocess; CPU use of a timed loop.

  from vision_jax.benchmarks import threads
  result = threads.run_isolated('vision_jax.benchmarks.ops:run', {'op': 'nms'}, '1')
  result['threads']   # {'setting': '1', 'cores': 1, 'jax_threads': 1, 'torch_threads': 1, ...}

A setting is 'all' (every core this process may run on) or a count N ('1'). XLA:CPU sizes
its thread pools when its backend starts, so a limit must be in place before the process
imports jax: `run_isolated` starts `python -m vision_jax.benchmarks.threads`, which before
anything else

* pins itself to N of the cores it may use (`os.sched_setaffinity`; every thread started
  later inherits it): the process gets at most N cores of CPU time, whatever threads the
  libraries start;
* at N = 1 runs with `--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`
  in XLA_FLAGS, and OMP/MKL/OpenBLAS thread counts of N. The pin is what holds XLA to
  one thread: with jaxlib 0.10.2 the flags alone left a 3x3 convolution's forward and
  backward running on two `tf_XLAEigen` pool threads (0.86 + 0.83 CPU s in 3.5 s); pinned,
  XLA sizes its pool from the one allowed core and the work ran on the calling thread;
* imports torch first when it is installed (torchvision imported after TensorFlow
  crashes) and calls `torch.set_num_threads(N)`;
* applies the launchers' XLA defaults (`vision_jax.xla_flags`),

then calls `module:function(**kwargs)` and hands its dict back (through a JSON file) with
a 'threads' record: the setting, the cores the process may use, the thread counts each
library was given, XLA_FLAGS, the most cores any thread of the process was allowed at
the end (1 at one thread), and the machine's load average at the start and the end (how
much other work there was).

`CpuUsage` measures a timed loop: wall time, process CPU time (all threads) and their
ratio, and how many threads did work (per-thread CPU time from /proc). At one thread the
CPU time cannot exceed the wall time; `one_thread_holds` checks that of a result.

This module imports neither jax nor torch at the top: the subprocess imports it first.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterable

ALL = 'all'
ONE_THREAD_XLA_FLAGS = '--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1'
_THREAD_ENV = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')
# CPU time may exceed wall time by this factor at one thread before it counts as a breach
# (the two clocks are read a few microseconds apart).
ONE_THREAD_TOLERANCE = 1.05


def parse_settings(spec: str | Iterable[str]) -> list[str]:
  """'all,1' -> ['all', '1']; each entry is 'all' or a positive core count."""
  parts = spec.split(',') if isinstance(spec, str) else list(spec)
  settings = []
  for part in (str(p).strip().lower() for p in parts):
    if not part:
      continue
    if part != ALL and not (part.isdigit() and int(part) > 0):
      raise ValueError(f"thread setting {part!r}: use 'all' or a positive count, e.g. all,1")
    if part not in settings:
      settings.append(part)
  if not settings:
    raise ValueError(f'no thread settings in {spec!r}; e.g. all,1')
  return settings


def available_cores() -> list[int]:
  """The cores this process may run on."""
  try:
    return sorted(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return list(range(os.cpu_count() or 1))


def cores_for(setting: str) -> list[int]:
  """The cores a subprocess at `setting` pins itself to (the first N of ours)."""
  cores = available_cores()
  return cores if setting == ALL else cores[:int(setting)]


def jax_threads() -> int:
  """Threads XLA:CPU runs an op on in this process, from XLA_FLAGS and the cores."""
  if '--xla_cpu_multi_thread_eigen=false' in os.environ.get('XLA_FLAGS', ''):
    return 1
  return len(available_cores())


def environment(setting: str, environ=None) -> dict:
  """The environment of a subprocess at `setting` (thread-count variables, XLA_FLAGS)."""
  env = dict(os.environ if environ is None else environ)
  count = len(cores_for(setting))
  for name in _THREAD_ENV:
    env[name] = str(count)
  if setting != ALL and count == 1:
    env['XLA_FLAGS'] = ' '.join([env.get('XLA_FLAGS', ''), ONE_THREAD_XLA_FLAGS]).strip()
  return env


# ---- CPU use of a timed loop ----

def _clock_ticks() -> float:
  try:
    return float(os.sysconf('SC_CLK_TCK'))
  except (AttributeError, ValueError, OSError):
    return 100.0


def thread_cpu_seconds() -> dict[int, float]:
  """CPU seconds (user + system) of each live thread of this process; {} without /proc."""
  ticks = _clock_ticks()
  result = {}
  try:
    tids = os.listdir('/proc/self/task')
  except OSError:
    return {}
  for tid in tids:
    try:
      with open(f'/proc/self/task/{tid}/stat', encoding='ascii') as f:
        fields = f.read().rsplit(')', 1)[1].split()
      result[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
      continue
  return result


def max_cores_per_thread() -> int | None:
  """The most cores any live thread of this process may run on (None without /proc)."""
  most = None
  try:
    tids = os.listdir('/proc/self/task')
  except OSError:
    return None
  for tid in tids:
    try:
      with open(f'/proc/self/task/{tid}/status', encoding='ascii') as f:
        for line in f:
          if line.startswith('Cpus_allowed_list:'):
            count = 0
            for part in line.split(':', 1)[1].strip().split(','):
              low, _, high = part.partition('-')
              count += int(high or low) - int(low) + 1
            most = count if most is None else max(most, count)
    except (OSError, ValueError):
      continue
  return most


class CpuUsage:
  """Context manager: wall time, process CPU time and busy threads of the block.

    with CpuUsage(calls=10) as usage:
      loop()   # 10 calls of the thing timed
    usage.result  # {'wall_s', 'cpu_s', 'cpu_per_wall', 'busy_threads', 'cpu_s_per_call'}

  cpu_per_wall is the average number of cores the process kept busy (all its threads).
  busy_threads counts threads whose CPU time in the block is at least 10% of its wall time
  (and two clock ticks): the threads that did the work. /proc counts in clock ticks
  (10 ms), so busy_threads means little for blocks shorter than ~0.1 s. cpu_s_per_call
  (with `calls`) is the mean CPU time of one call: at one thread, the time the call takes
  on a core of its own, which other work on the machine disturbs much less than the wall
  time (it still pays for the caches others evict).
  """

  def __init__(self, calls: int | None = None):
    self.calls = calls

  def __enter__(self):
    self._threads = thread_cpu_seconds()
    # The CPU-time window lies inside the wall-time window: on one core, cpu_s <= wall_s.
    self._wall = time.perf_counter()
    self._cpu = time.process_time()
    self.result: dict[str, Any] = {}
    return self

  def __exit__(self, *exc):
    cpu = time.process_time() - self._cpu
    wall = time.perf_counter() - self._wall
    after = thread_cpu_seconds()
    floor = max(2.0 / _clock_ticks(), 0.1 * wall)
    busy = sum(1 for tid, seconds in after.items()
               if seconds - self._threads.get(tid, 0.0) >= floor)
    self.result = {'wall_s': wall, 'cpu_s': cpu, 'cpu_per_wall': cpu / wall if wall else 0.0,
                   'busy_threads': busy if after else None}
    if self.calls:
      self.result['cpu_s_per_call'] = cpu / self.calls
    return False


def record_usage(results: dict, time_key: str, usage: dict) -> None:
  """Stores `usage` (CpuUsage.result) next to `time_key`: 'x_s' -> 'x_cpu_per_wall',
  'x_busy_threads' and (when measured) 'x_cpu_s' (CPU seconds per call)."""
  stem = time_key[:-2] if time_key.endswith('_s') else time_key
  results[f'{stem}_cpu_per_wall'] = usage['cpu_per_wall']
  results[f'{stem}_busy_threads'] = usage['busy_threads']
  if 'cpu_s_per_call' in usage:
    results[f'{stem}_cpu_s'] = usage['cpu_s_per_call']


def load_average() -> float | None:
  """The 1-minute load average of the machine (runnable processes), or None."""
  try:
    return os.getloadavg()[0]
  except (AttributeError, OSError):
    return None


def one_thread_holds(results: dict) -> tuple[bool, str]:
  """Whether a result measured at one thread stayed there; and the evidence, in words.

  Holds when every thread of the process was allowed one core at the end, and no timed
  loop used more CPU time than wall time (every '*_cpu_per_wall' <= ONE_THREAD_TOLERANCE).
  """
  record = results.get('threads') or {}
  ratios = {k: v for k, v in results.items()
            if k.endswith('_cpu_per_wall') and isinstance(v, (int, float))}
  worst = max(ratios.values()) if ratios else None
  cores = record.get('max_cores_per_thread')
  holds = (record.get('cores') == 1 and cores in (1, None) and worst is not None
           and worst <= ONE_THREAD_TOLERANCE)
  evidence = (f"cores allowed: process {record.get('cores')}, any thread {cores}; "
              + (f'max CPU/wall over {len(ratios)} timed loops {worst:.2f}' if ratios
                 else 'no timed loop measured'))
  return holds, evidence


# ---- the subprocess ----

def _json_default(value):
  if hasattr(value, 'item'):
    return value.item()
  if hasattr(value, 'tolist'):
    return value.tolist()
  if isinstance(value, (set, tuple)):
    return list(value)
  return str(value)


def run_isolated(target: str, kwargs: dict | None = None, setting: str = ALL, *,
                 timeout: float | None = None, quiet: bool = False) -> dict:
  """Runs `module:function(**kwargs)` in a fresh Python at `setting`; returns its dict.

  The dict gains 'threads' (module doc). kwargs must be JSON-serialisable; so must the
  result (numpy scalars and arrays are converted, tuples become lists). The subprocess
  inherits this process's stdout and stderr (quiet=True discards its stdout). Raises
  RuntimeError when it fails.
  """
  (setting,) = parse_settings([setting])
  with tempfile.TemporaryDirectory(prefix='vision_jax_bench_') as tmp:
    spec_path = os.path.join(tmp, 'spec.json')
    out_path = os.path.join(tmp, 'result.json')
    with open(spec_path, 'w', encoding='utf-8') as f:
      json.dump({'target': target, 'kwargs': kwargs or {}, 'setting': setting,
                 'output': out_path}, f)
    proc = subprocess.run(
        [sys.executable, '-m', 'vision_jax.benchmarks.threads', spec_path],
        env=environment(setting), timeout=timeout, check=False,
        stdout=subprocess.DEVNULL if quiet else None)
    if proc.returncode != 0 or not os.path.exists(out_path):
      raise RuntimeError(f'{target} at threads={setting} failed in its subprocess '
                         f'(exit status {proc.returncode}); its output is above')
    with open(out_path, encoding='utf-8') as f:
      return json.load(f)


def _child(spec_path: str) -> None:
  with open(spec_path, encoding='utf-8') as f:
    spec = json.load(f)
  setting = spec['setting']
  cores = cores_for(setting)
  if hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, cores)  # the only thread so far: every later one inherits it
  count = len(cores)
  load_at_start = load_average()
  torch_threads = None
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    torch = None
  if torch is not None:
    torch.set_num_threads(count)
    try:
      torch.set_num_interop_threads(count)
    except RuntimeError:
      pass
  from vision_jax import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_defaults()

  import importlib  # pylint: disable=g-import-not-at-top
  module_name, _, function_name = spec['target'].partition(':')
  function = getattr(importlib.import_module(module_name), function_name)
  result = dict(function(**spec['kwargs']))
  if torch is not None:
    torch_threads = torch.get_num_threads()
  result['threads'] = {
      'setting': setting,
      'cores': len(available_cores()),
      'max_cores_per_thread': max_cores_per_thread(),
      'jax_threads': jax_threads(),
      'torch_threads': torch_threads,
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'machine_cores': os.cpu_count(),
      'load_average_at_start': load_at_start,
      'load_average_at_end': load_average(),
  }
  with open(spec['output'], 'w', encoding='utf-8') as f:
    json.dump(result, f, default=_json_default)


if __name__ == '__main__':
  _child(sys.argv[1])
