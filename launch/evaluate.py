"""Evaluate a checkpoint (newest, or --step) and write <workdir>/eval_results.json.

  python -m launch.evaluate --config=experiments/centernet_shapes.py --workdir=workdirs/centernet
"""
from absl import flags

from launch import common
from vision_jax.train import loop

flags.DEFINE_integer('step', None, 'Checkpoint step to evaluate (default: newest).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  loop.evaluate_checkpoint(common.load_config(), common.FLAGS.workdir, common.FLAGS.step)


if __name__ == '__main__':
  common.run(main)
