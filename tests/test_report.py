"""The results table: what a finished run records (run_info.json) and how the report reads
new and old workdirs, and refuses a workdir without results."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests import toy_tasks
from vision_jax.train import config as config_lib
from vision_jax.train import loop
from vision_jax.train import results
from vision_jax.train import run_info

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXPERIMENT = textwrap.dedent('''
    from tests import toy_tasks

    def get_config(arg=None):
      config = toy_tasks.toy_config(steps=3 if arg == 'short' else 4, checkpoint_every=2)
      config.unlock()
      config.data = dict(dataset='synthetic_shapes/tiny')
      config.lock()
      return config
''')


@pytest.fixture(name='trained', scope='module')
def _trained(tmp_path_factory):
  """(experiments folder, a workdir trained through loop.train_and_evaluate)."""
  root = tmp_path_factory.mktemp('report')
  experiments = root / 'experiments'
  experiments.mkdir()
  (experiments / 'toy_experiment.py').write_text(EXPERIMENT)
  config = config_lib.load_config(f'{experiments}/toy_experiment.py:short',
                                  ['train.log_every=1'])
  workdir = root / 'new'
  with pytest.MonkeyPatch.context() as patch:  # the toy task has no module to import
    patch.setattr(loop.tasks_base, 'create_task', toy_tasks.ToyRegressionTask)
    loop.train_and_evaluate(config, str(workdir))
  return experiments, workdir


def test_training_records_experiment_wall_time_and_machine(trained):
  _, workdir = trained
  info = run_info.read(str(workdir))
  assert info['experiment'].endswith('toy_experiment.py:short')
  assert info['overrides'] == ['train.log_every=1']
  (start,) = info['starts']
  assert start['from_step'] == 0 and start['to_step'] == 3 and start['wall_s'] > 0
  assert start['machine']['backend'] and start['machine']['cores'] >= 1


def test_table_of_a_recorded_and_an_old_run(trained, tmp_path):
  experiments, workdir = trained
  old = tmp_path / 'old'
  shutil.copytree(workdir, old)
  os.remove(old / run_info.RUN_INFO_FILE)  # as written before run_info.json existed
  defaults = results.experiment_configs(str(experiments))
  new_run = results.read_run(str(workdir), defaults)
  old_run = results.read_run(str(old), defaults)
  eval_results = json.loads((workdir / 'eval_results.json').read_text())
  metrics = {k: v for k, v in eval_results.items() if k != 'step'}
  assert metrics and new_run['metrics'] == pytest.approx(metrics)
  assert new_run['experiment'] == 'toy_experiment.py:short with train.log_every=1'
  assert not new_run['inferred'] and not new_run['wall_estimated']
  assert new_run['machine'] == run_info.describe(run_info.machine())
  assert new_run['steps'] == 3 and new_run['family'] == 'toy'
  # The old run: the closest default (4 steps) and what differs; time from its event file.
  assert old_run['inferred'] and old_run['experiment'] == 'toy_experiment.py with train.steps=3'
  assert old_run['wall_s'] is not None and old_run['wall_estimated']
  assert old_run['machine'] == results.MISSING

  table = results.markdown([old_run, new_run], command='python -m launch.report x')
  rows = [line for line in table.splitlines() if line.startswith('| toy ')]
  assert len(rows) == 2
  assert rows[0].split(' | ')[1] == 'toy_experiment.py with train.steps=3 †'
  assert '≈ ' in rows[0] and f"`{old}`" in rows[0]
  assert rows[1].split(' | ')[1] == 'toy_experiment.py:short with train.log_every=1'
  assert len(table.splitlines()) > 10 + 2 * (len(metrics) - 1)  # a row per metric
  assert 'python -m launch.report x' in table

  # The embedded default (4 steps) has no run yet: the 3-step runs differ from it.
  (default,) = results.embedded_defaults(defaults)
  assert results.missing_defaults(defaults, [new_run, old_run]) == [default]


def test_launcher_writes_the_table_and_names_a_workdir_without_results(trained, tmp_path):
  experiments, workdir = trained
  empty = tmp_path / 'unfinished'
  empty.mkdir()
  output = tmp_path / 'RESULTS.md'
  run = lambda *args: subprocess.run(  # pylint: disable=unnecessary-lambda-assignment
      [sys.executable, '-m', 'launch.report', f'--experiments={experiments}',
       f'--output={output}', *args], cwd=ROOT, capture_output=True, text=True, check=False)
  done = run(f'--workdirs={workdir}')
  assert done.returncode == 0, done.stderr
  assert 'toy_experiment.py:short' in output.read_text()
  failed = run(f'--workdirs={workdir},{empty}')
  assert failed.returncode == 2
  assert f'{empty}/eval_results.json' in failed.stderr and 'launch.train' in failed.stderr
  assert 'Traceback' not in failed.stderr


def test_run_trains_an_experiment_after_the_run_it_initialises_from():
  defaults = {'e/a_gan.py': {'init': {'workdir': 'root/b_base'}}, 'e/b_base.py': {},
              'e/c.py': {'init': {'workdir': 'elsewhere/x'}}}
  assert results.training_order(list(defaults), defaults, 'root') == [
      'e/b_base.py', 'e/a_gan.py', 'e/c.py']
