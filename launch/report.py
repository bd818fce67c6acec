r"""Write experiments/RESULTS.md from finished runs' workdirs.

  python -m launch.report --workdirs='workdirs/*'
  python -m launch.report --workdirs=workdirs/centernet,workdirs/yolact --output=/tmp/R.md
  python -m launch.report --workdirs='workdirs/*' --run   # trains missing defaults first

One row per metric of each run: family (the config's task), experiment (config file,
variant and overrides), metric, value, dataset, steps, wall time, machine and workdir
(`vision_jax/train/results.py` says where each comes from, and how runs from before the
trainer recorded experiment, wall time and machine are shown).

--run first trains, one after the other, every experiment in --experiments whose default
dataset is embedded and whose default config no listed run holds, into
<--run_root>/<experiment name> (a run already finished there is reported, not retrained;
one that initialises from another's workdir, as srgan.py from workdirs/srresnet, trains
after it). That is hours on a CPU: not for CI.
"""
import os
import shlex
import sys

from absl import flags

from launch import common

flags.DEFINE_list('workdirs', [], 'Run directories and/or glob patterns (quote them), '
                  'comma-separated: each must hold eval_results.json.')
flags.DEFINE_string('output', 'experiments/RESULTS.md', 'The Markdown file to write.')
flags.DEFINE_bool('run', False, 'First train every embedded default experiment that no '
                  'listed run holds (long: hours on a CPU).')
flags.DEFINE_string('run_root', 'workdirs', 'Where --run puts its workdirs.')
flags.DEFINE_string('experiments', 'experiments', 'The folder of experiment files.')


def main(argv):
  del argv
  FLAGS = common.FLAGS
  from vision_jax.train import results  # pylint: disable=g-import-not-at-top
  try:
    workdirs = results.expand_workdirs(FLAGS.workdirs)
    defaults = results.experiment_configs(FLAGS.experiments)
    runs = [results.read_run(w, defaults) for w in workdirs]
    if FLAGS.run:
      runs += _train_missing(results, defaults, runs, FLAGS.run_root)
  except results.ResultsError as e:
    raise common.UsageError(str(e)) from e
  if not runs:
    raise common.UsageError('no runs to report: pass --workdirs=DIR,... or glob patterns '
                            "(e.g. --workdirs='workdirs/*'), or --run")
  command = 'python -m launch.report ' + ' '.join(shlex.quote(a) for a in sys.argv[1:])
  text = results.markdown(runs, command=command)
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
  with open(FLAGS.output, 'w', encoding='utf-8') as f:
    f.write(text)
  print(text)
  print(f'wrote {os.path.abspath(FLAGS.output)} ({len(runs)} runs)')


def _train_missing(results, defaults, runs, root):
  from vision_jax.train import config as config_lib  # pylint: disable=g-import-not-at-top
  from vision_jax.train import loop  # pylint: disable=g-import-not-at-top
  missing = results.training_order(results.missing_defaults(defaults, runs), defaults, root)
  print(f'--run: {len(missing)} embedded default(s) without results: '
        + (', '.join(os.path.basename(p) for p in missing) or 'none'), flush=True)
  trained = []
  for path in missing:
    workdir = os.path.join(root, os.path.splitext(os.path.basename(path))[0])
    if not os.path.isfile(os.path.join(workdir, results.EVAL_RESULTS)):
      print(f'--run: training {path} in {workdir}', flush=True)
      loop.train_and_evaluate(config_lib.load_config(path), workdir)
    trained.append(results.read_run(workdir, defaults))
  return trained


if __name__ == '__main__':
  common.run(main)
