"""Predict on one image with a trained checkpoint and draw the result.

  python -m launch.predict --config=experiments/centernet_shapes.py \
      --workdir=workdirs/centernet --image=photo.png --output=photo_pred.png
"""
from absl import flags

from launch import common
from vision_jax.train import predict

flags.DEFINE_string('image', None, 'Image file to predict on.')
flags.DEFINE_string('output', None, 'Where to write the drawn predictions (PNG).')
flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')
flags.mark_flags_as_required(['config', 'workdir', 'image', 'output'])


def main(argv):
  del argv
  FLAGS = common.FLAGS
  predict.predict_file(common.load_config(), FLAGS.workdir, FLAGS.image, FLAGS.output,
                       FLAGS.step)
  print(f'wrote {FLAGS.output}')


if __name__ == '__main__':
  common.run(main)
