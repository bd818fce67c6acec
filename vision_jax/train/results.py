"""The results table of finished runs, read from their workdirs (`launch.report`).

  runs = [results.read_run(w, defaults) for w in results.expand_workdirs(['workdirs/*'])]
  print(results.markdown(runs))

Each workdir gives what the trainer wrote there:
  eval_results.json  the metrics (every numeric key but 'step' is one row) and the step;
  config.json        the family (`task`) and dataset (`data.dataset`);
  run_info.json      the experiment (config file, variant, overrides), wall time and
                     machine (`vision_jax.train.run_info`).
Runs from before run_info.json existed are read as far as they allow: the experiment is
inferred (the experiment file whose default config is closest to config.json, with the
settings that differ and change the optimisation) and the wall time estimated from the
workdir's TensorBoard event files (each start's file is named by its start time and last
written by the final summary); their machine is unknown.

`embedded_defaults` / `missing_defaults` pick the experiments whose default dataset is
embedded (drawn by the project's builders, no user files) and that no given run holds yet:
what `launch.report --run` trains first, in `training_order` (a run that initialises from
another's workdir after it).
"""
import glob
import json
import os
import re
from typing import Iterable, Sequence

from vision_jax.train import config as config_lib
from vision_jax.train import run_info

EVAL_RESULTS = 'eval_results.json'  # written by loop.Trainer.evaluate
NOT_METRICS = ('step',)
MISSING = '—'
_EVENTS = re.compile(r'events\.out\.tfevents\.(\d+)\.')


class ResultsError(ValueError):
  """A workdir that cannot be reported (the message names the path and the fix)."""


def expand_workdirs(entries: Iterable[str]) -> list[str]:
  """Directories from paths and glob patterns, in the given order (each glob sorted);
  a pattern that matches no directory is an error."""
  found = []
  for entry in entries:
    if glob.has_magic(entry):
      matches = sorted(p for p in glob.glob(entry) if os.path.isdir(p))
      if not matches:
        raise ResultsError(f'--workdirs pattern {entry!r} matches no directory')
    else:
      matches = [entry]
    found += [m for m in matches if m not in found]
  return found


def experiment_configs(directory: str = 'experiments') -> dict[str, dict]:
  """{path: default config as JSON} of every experiment file in `directory` that loads."""
  configs = {}
  for path in sorted(glob.glob(os.path.join(directory, '*.py'))):
    try:
      configs[path] = config_lib.to_json_dict(config_lib.load_config(path))
    except Exception:  # pylint: disable=broad-except
      continue  # not an experiment file, or one that needs arguments
  return configs


def optimisation_changes(default: dict, config: dict) -> list[tuple[str, object, object]]:
  """The differences between two JSON configs that change the optimisation."""
  return [d for d in config_lib.differences(default, config)
          if config_lib.changes_optimisation(d[0])]


def infer_experiment(config: dict, defaults: dict[str, dict]) -> tuple[str, list] | None:
  """(path, changes) of the experiment of the same task whose default `config` is closest
  to (fewest optimisation changes), or None when no experiment has that task."""
  scored = sorted((len(optimisation_changes(d, config)), path) for path, d in defaults.items()
                  if d.get('task') == config.get('task'))
  if not scored:
    return None
  path = scored[0][1]
  return path, optimisation_changes(defaults[path], config)


def _describe_changes(changes: list, limit: int = 4) -> str:
  shown = ', '.join(f'{key}={new!r}' for key, _, new in changes[:limit])
  return shown + (f' (+{len(changes) - limit} more)' if len(changes) > limit else '')


def estimated_wall_seconds(workdir: str) -> float | None:
  """Wall time from the event files in `workdir` (not its eval/ subfolder): for each, its
  last write minus the start time in its name; None without event files."""
  total, found = 0.0, False
  for name in os.listdir(workdir):
    match = _EVENTS.match(name)
    if match:
      found = True
      total += max(0.0, os.path.getmtime(os.path.join(workdir, name)) - int(match.group(1)))
  return total if found else None


def _read_json(path: str) -> dict:
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except ValueError as e:
    raise ResultsError(f'{path} is not valid JSON ({e})') from e


def read_run(workdir: str, defaults: dict[str, dict] | None = None) -> dict:
  """One run's row data: {'workdir', 'family', 'experiment', 'inferred', 'dataset',
  'steps', 'wall_s', 'wall_estimated', 'machine', 'metrics', 'config'}.

  defaults: `experiment_configs()`, to infer the experiment of a run without
  run_info.json (None: such runs show '—').
  Raises ResultsError when the workdir holds no eval_results.json.
  """
  results_path = os.path.join(workdir, EVAL_RESULTS)
  if not os.path.isfile(results_path):
    where = (f'workdir {workdir} does not exist' if not os.path.isdir(workdir)
             else f'{results_path} does not exist: the run has no evaluation yet')
    raise ResultsError(
        f'{where}. Train that run to its end (python -m launch.train) or evaluate its '
        'checkpoint (python -m launch.evaluate), or leave it out of --workdirs.')
  results = _read_json(results_path)
  config_path = os.path.join(workdir, config_lib.CONFIG_FILE)
  config = _read_json(config_path) if os.path.isfile(config_path) else {}
  info = run_info.read(workdir)

  inferred = False
  if info and info.get('experiment'):
    path, _, variant = info['experiment'].partition(':')
    experiment = os.path.basename(path) + (f':{variant}' if variant else '')
    if info.get('overrides'):
      experiment += ' with ' + ', '.join(info['overrides'])
  else:
    match = infer_experiment(config, defaults or {}) if config else None
    if match is None:
      experiment = MISSING
    else:
      inferred = True
      experiment = os.path.basename(match[0])
      if match[1]:
        experiment += ' with ' + _describe_changes(match[1])
  if info and info.get('starts'):
    wall_s, estimated = run_info.wall_seconds(info), False
    machine = run_info.describe(info['starts'][-1].get('machine'))
  else:
    wall_s, estimated, machine = estimated_wall_seconds(workdir), True, MISSING
  metrics = {k: float(v) for k, v in results.items()
             if k not in NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}
  return {'workdir': workdir, 'family': config.get('task', MISSING),
          'experiment': experiment, 'inferred': inferred,
          'dataset': (config.get('data') or {}).get('dataset') or MISSING,
          'steps': results.get('step'), 'wall_s': wall_s, 'wall_estimated': estimated,
          'machine': machine, 'metrics': metrics, 'config': config}


def format_seconds(seconds: float | None) -> str:
  if seconds is None:
    return MISSING
  if seconds < 120:
    return f'{seconds:.0f} s'
  if seconds < 7200:
    return f'{seconds / 60:.1f} min'
  return f'{seconds / 3600:.1f} h'


def _value(value: float) -> str:
  return f'{value:.4g}'


HEADER = ('family', 'experiment', 'metric', 'value', 'dataset', 'steps', 'wall time',
          'machine', 'workdir')


def markdown(runs: Sequence[dict], *, command: str | None = None) -> str:
  """RESULTS.md: a short legend and one table, a row per metric of each run.

  Runs are sorted by family, experiment and workdir, their metrics by name; a run's
  family, experiment, dataset, steps, wall time, machine and workdir are written on its
  first row only.
  """
  lines = ['# Results', '',
           'Measured by the runs listed, read from each workdir\'s `eval_results.json`, '
           '`config.json` and `run_info.json`; regenerate this file rather than edit it'
           + (f':\n\n    {command}' if command else '.'), '',
           '- **metric**: every numeric key of `eval_results.json` (but `step`); '
           '**steps**: the step evaluated.',
           '- **wall time**: from building the trainer to the end of the final evaluation, '
           'summed over the run\'s starts (`run_info.json`). `≈`: a run from before that '
           'was recorded, estimated from its event files (from their creation, as '
           'training starts, to their last write, the final evaluation\'s summaries; the '
           'process start-up is missing).',
           '- **experiment** `†`: not recorded (a run from before `run_info.json`): the '
           'experiment file whose default config is closest to the run\'s `config.json`, '
           'with the settings that differ and change the optimisation.',
           '- **machine** `—`: not recorded (a run from before `run_info.json`).', '',
           '| ' + ' | '.join(HEADER) + ' |', '|' + '---|' * len(HEADER)]
  order = sorted(runs, key=lambda r: (r['family'], r['experiment'], r['workdir']))
  for run in order:
    experiment = run['experiment'] + (' †' if run['inferred'] else '')
    wall = format_seconds(run['wall_s'])
    if run['wall_estimated'] and run['wall_s'] is not None:
      wall = '≈ ' + wall
    steps = MISSING if run['steps'] is None else str(run['steps'])
    metrics = sorted(run['metrics'].items()) or [(MISSING, None)]
    for index, (name, value) in enumerate(metrics):
      value = MISSING if value is None else _value(value)
      if index == 0:
        cells = [run['family'], experiment, name, value, run['dataset'], steps, wall,
                 run['machine'], f"`{run['workdir']}`"]
      else:
        cells = ['', '', name, value] + [''] * 5
      lines.append('| ' + ' | '.join(c.replace('|', '\\|') for c in cells) + ' |')
  return '\n'.join(lines) + '\n'


# --run: the embedded defaults that have no results yet.

def embedded_defaults(defaults: dict[str, dict]) -> list[str]:
  """The experiment files (of `experiment_configs()`) whose default dataset is embedded."""
  from vision_jax.data import datasets  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return [path for path, config in defaults.items()
          if datasets.is_embedded((config.get('data') or {}).get('dataset'))]


def missing_defaults(defaults: dict[str, dict], runs: Sequence[dict]) -> list[str]:
  """The embedded defaults that no run holds: no run's config.json equals the default's
  in every setting that changes the optimisation."""
  return [path for path in embedded_defaults(defaults)
          if not any(run['config'] and not optimisation_changes(defaults[path], run['config'])
                     for run in runs)]


def training_order(paths: Sequence[str], defaults: dict[str, dict], root: str) -> list[str]:
  """`paths` with each experiment after the one whose run it initialises from: an
  experiment whose default `init.workdir` is another's `<root>/<name>` (SRGAN from
  SRResNet's workdir) comes after it; the order is kept otherwise."""
  workdir_of = {os.path.normpath(os.path.join(root, _name(p))): p for p in paths}
  after = {p: workdir_of.get(os.path.normpath(str((defaults[p].get('init') or {})
                                                  .get('workdir') or '')))
           for p in paths}
  ordered: list[str] = []

  def place(path, seen=()):
    if path in ordered or path in seen:
      return
    if after[path] is not None:
      place(after[path], (*seen, path))
    ordered.append(path)

  for path in paths:
    place(path)
  return ordered


def _name(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]
