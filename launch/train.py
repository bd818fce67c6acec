"""Train an experiment, resuming from the newest checkpoint in --workdir.

  python -m launch.train --config=experiments/centernet_shapes.py --workdir=workdirs/centernet

The workdir remembers the config of its first start (config.json); resuming with a
config that changes the optimisation (steps, schedules, learning rates, batch size,
model, data) is refused unless --allow_config_change.
"""
from absl import flags

from launch import common
from vision_jax.train import loop

flags.DEFINE_bool('allow_config_change', False,
                  'Resume even when the config changes the optimisation of the run saved '
                  'in --workdir (the former config is kept beside it).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  loop.train_and_evaluate(common.load_config(), common.FLAGS.workdir,
                          allow_config_change=common.FLAGS.allow_config_change)


if __name__ == '__main__':
  common.run(main)
