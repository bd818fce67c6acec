"""Train an experiment, resuming from the newest checkpoint in --workdir.

  python -m launch.train --config=experiments/centernet_shapes.py --workdir=workdirs/centernet
"""
from absl import flags

from launch import common
from vision_jax.train import loop

flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  loop.train_and_evaluate(common.load_config(), common.FLAGS.workdir)


if __name__ == '__main__':
  common.run(main)
