"""Benchmarks at a thread setting in a fresh process, and the side-by-side table.

No timing is asserted. What is: a subprocess at one thread reports one core, one XLA
thread (and one torch thread, where torch is installed), and its timed loops used no more
CPU time than wall time (the invariant of a process pinned to one core).
"""
import json
import os
import subprocess
import sys
import time

import pytest

from vision_jax.benchmarks import compare
from vision_jax.benchmarks import threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_parse_settings():
  assert threads.parse_settings('all,1') == ['all', '1']
  assert threads.parse_settings(' ALL , 1,1,') == ['all', '1']
  assert threads.parse_settings(['1']) == ['1']
  for bad in ('', 'some', '0', '-1', '1.5'):
    with pytest.raises(ValueError):
      threads.parse_settings(bad)


def test_environment_of_a_one_thread_process():
  env = threads.environment('1', {'XLA_FLAGS': '--xla_foo=1', 'PATH': '/bin'})
  assert env['XLA_FLAGS'] == '--xla_foo=1 ' + threads.ONE_THREAD_XLA_FLAGS
  assert env['OMP_NUM_THREADS'] == env['MKL_NUM_THREADS'] == '1'
  assert env['PATH'] == '/bin'
  everything = threads.environment('all', {})
  assert 'XLA_FLAGS' not in everything
  assert everything['OMP_NUM_THREADS'] == str(len(threads.available_cores()))
  assert threads.cores_for('1') == threads.available_cores()[:1]


def test_cpu_usage_of_a_block():
  with threads.CpuUsage() as usage:
    deadline = time.perf_counter() + 0.05
    while time.perf_counter() < deadline:
      pass
  result = usage.result
  assert result['wall_s'] >= 0.05 and result['cpu_s'] >= 0.0
  assert set(result) == {'wall_s', 'cpu_s', 'cpu_per_wall', 'busy_threads'}


def test_one_thread_check():
  record = {'cores': 1, 'max_cores_per_thread': 1}
  assert threads.one_thread_holds({'threads': record, 'a_cpu_per_wall': 0.97})[0]
  assert not threads.one_thread_holds({'threads': record, 'a_cpu_per_wall': 1.6})[0]
  assert not threads.one_thread_holds({'threads': {**record, 'cores': 2},
                                       'a_cpu_per_wall': 0.9})[0]
  assert not threads.one_thread_holds({'threads': record})[0]  # nothing measured


def test_a_tiny_op_at_one_thread_in_a_fresh_process():
  result = threads.run_isolated('vision_jax.benchmarks.ops:run',
                                {'op': 'nms', 'num_boxes': 40, 'repeats': 2}, '1', quiet=True)
  record = result['threads']
  assert record['setting'] == '1' and record['cores'] == 1
  assert record['max_cores_per_thread'] in (1, None)
  assert record['jax_threads'] == 1 and result['jax_threads'] == 1
  assert '--xla_cpu_multi_thread_eigen=false' in record['xla_flags']
  assert record['torch_threads'] in (None, 1)
  assert result['kept_ours'] > 0 and result['nms_s'] > 0 and result['nms_cpu_s'] >= 0
  assert 'load_average_at_start' in record and 'load_average_at_end' in record
  holds, evidence = threads.one_thread_holds(result)
  assert holds, evidence
  if record['torch_threads'] is None:
    assert result['torchvision'].startswith('skipped')
  else:
    assert result['torch_threads'] == 1 and result['same_kept_list']
    assert result['kept_torchvision'] == result['kept_ours']


def test_a_failing_subprocess_raises():
  with pytest.raises(RuntimeError, match='threads=1'):
    threads.run_isolated('vision_jax.benchmarks.ops:run', {'op': 'no_such_op'}, '1',
                         quiet=True)


def _fake(setting, torch=True):
  one = setting == '1'
  result = {'case': '10 boxes', 'note': 'a note', 'kept_ours': 7, 'equal_work': True,
            'nms_s': 0.002, 'nms_cpu_s': 0.002, 'nms_cpu_per_wall': 0.99 if one else 1.7,
            'nms_busy_threads': 1,
            'threads': {'setting': setting, 'cores': 1 if one else 2,
                        'max_cores_per_thread': 1 if one else 2,
                        'jax_threads': 1 if one else 2,
                        'torch_threads': (1 if one else 2) if torch else None,
                        'xla_flags': '', 'load_average_at_start': 3.0,
                        'load_average_at_end': 2.5, 'machine_cores': 2}}
  if torch:
    result.update({'torch_threads': 1 if one else 2, 'kept_torchvision': 7,
                   'same_kept_list': True, 'torchvision_nms_s': 0.004,
                   'torchvision_nms_cpu_s': 0.0025,
                   'torchvision_nms_cpu_per_wall': 0.5, 'torchvision_nms_busy_threads': 1})
  else:
    result['torchvision'] = 'skipped: not importable (ModuleNotFoundError)'
  return result


def test_table_rows_and_summary():
  by_setting = {'all': _fake('all'), '1': _fake('1')}
  rows = compare.rows('nms', by_setting)
  assert [(r['setting'], r['side'], r['threads']) for r in rows] == [
      ('all', 'ours', 2), ('all', 'torchvision', 2), ('1', 'ours', 1), ('1', 'torchvision', 1)]
  assert rows[0]['ours_over_torchvision'] == pytest.approx(0.5)
  summary = compare.summary('nms', by_setting)
  assert summary['ratio_ours_to_torchvision_nms@threads=1'] == pytest.approx(0.5)
  assert summary['cpu_ratio_ours_to_torchvision_nms@threads=1'] == pytest.approx(0.8)
  assert summary['one_thread_holds']
  text = compare.table('nms', by_setting)
  assert 'side threads' in text and 'one thread holds' in text
  assert 'load average 3.0 -> 2.5 on 2 cores' in text
  assert 'ours 7, torchvision 7; identical lists: True' in text
  assert '0.50*' in text and 'other work shared the CPU' in text  # torch's 0.5 CPU/wall


def test_table_without_torch_says_skipped():
  by_setting = {'1': _fake('1', torch=False)}
  text = compare.table('nms', by_setting)
  assert 'skipped: not importable' in text
  assert 'ratio_ours_to_torchvision_nms@threads=1' not in compare.summary('nms', by_setting)


def test_launcher_prints_the_table_and_writes_json(tmp_path):
  output = tmp_path / 'nms.json'
  proc = subprocess.run(
      [sys.executable, '-m', 'launch.benchmark', '--op=nms', '--threads=1',
       '--op_kwargs={"num_boxes": 30, "repeats": 1}', f'--output={output}'],
      cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'measurement' in proc.stdout and 'side threads' in proc.stdout
  assert 'one thread holds' in proc.stdout, proc.stdout
  results = json.loads(output.read_text())
  assert results['benchmark'] == 'nms' and results['summary']['one_thread_holds']
  assert results['threads=1']['threads']['jax_threads'] == 1
  bad = subprocess.run([sys.executable, '-m', 'launch.benchmark', '--op=nms', '--threads=x'],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
  assert bad.returncode != 0 and '--threads' in bad.stderr
