"""The workdir's record of how a run was made: experiment, wall time, machine.

  <workdir>/run_info.json
  {"experiment": "experiments/cyclegan_shapes.py:no_cycle",   # null: not from load_config
   "overrides": ["train.steps=200"],
   "starts": [{"started": "2026-12-01T11:13:58Z", "from_step": 0, "to_step": 1500,
               "wall_s": 605.2, "machine": {...}}, ...]}

`loop.train_and_evaluate` appends one entry to "starts" per start that finishes (a resume
adds one); its wall_s runs from building the Trainer to the end of the final evaluation
(compilation, training, checkpoints and evaluation included). The experiment and overrides
are those of the newest start (`config.origin`). `machine()` describes where it ran.
"""
import datetime
import json
import os
import platform

import jax

RUN_INFO_FILE = 'run_info.json'


def _cpu_model() -> str | None:
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          return ' '.join(line.split(':', 1)[1].split())
  except OSError:
    pass
  return platform.processor() or None


def _cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def machine() -> dict:
  """{'backend', 'devices' ('1 x cpu', '8 x TPU v3'), 'cpu' (model name or None),
  'cores' (this process may use), 'host'} of this process."""
  devices = jax.devices()
  return {'backend': jax.default_backend(),
          'devices': f'{len(devices)} x {devices[0].device_kind}',
          'cpu': _cpu_model(), 'cores': _cores(), 'host': platform.node()}


def describe(info: dict | None) -> str:
  """One line for tables: 'cpu: 2 cores, Intel(R) Xeon(R) ...' or 'gpu: 1 x NVIDIA H200'."""
  if not info:
    return '—'
  if info.get('backend') == 'cpu':
    cpu = f", {info['cpu']}" if info.get('cpu') else ''
    return f"cpu: {info.get('cores')} cores{cpu}"
  return f"{info.get('backend')}: {info.get('devices')}"


def read(workdir: str) -> dict | None:
  """The workdir's run_info.json, or None when it has none (runs from before it existed)."""
  path = os.path.join(workdir, RUN_INFO_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def record_start(workdir: str, *, origin: dict | None, started: float, wall_s: float,
                 from_step: int, to_step: int) -> dict:
  """Appends one finished start to `<workdir>/run_info.json`; returns the new record.

  origin: `config.origin(config)` ({'experiment', 'overrides'}) or None.
  started: time.time() at the start.
  """
  info = read(workdir) or {'experiment': None, 'overrides': [], 'starts': []}
  if origin is not None:
    info['experiment'] = origin['experiment']
    info['overrides'] = list(origin['overrides'])
  info['starts'].append({
      'started': datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
                 .strftime('%Y-%m-%dT%H:%M:%SZ'),
      'from_step': int(from_step), 'to_step': int(to_step), 'wall_s': float(wall_s),
      'machine': machine()})
  path = os.path.join(workdir, RUN_INFO_FILE)
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    json.dump(info, f, indent=2)
  os.replace(path + '.tmp', path)
  return info


def wall_seconds(info: dict) -> float:
  """Total wall time of the recorded starts."""
  return float(sum(start['wall_s'] for start in info.get('starts', ())))
