"""Predict with a trained checkpoint and draw the result.

  python -m launch.predict --config=experiments/centernet_shapes.py \
      --workdir=workdirs/centernet --image=photo.png --output=photo_pred.png
  python -m launch.predict --config=experiments/cgan_digits.py \
      --workdir=workdirs/cgan_digits --labels=3,7 --output=grid.png
"""
from absl import flags

from launch import common
from vision_jax.train import predict

flags.DEFINE_string('image', None, 'Image file to predict on (detection tasks).')
flags.DEFINE_list('labels', None, 'Class labels to generate, e.g. 3,7 (conditional '
                  'generators).')
flags.DEFINE_string('output', None, 'Where to write the drawn predictions (PNG).')
flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')
flags.mark_flags_as_required(['config', 'workdir', 'output'])


def main(argv):
  del argv
  FLAGS = common.FLAGS
  labels = None
  if FLAGS.labels is not None:
    try:
      labels = [int(label) for label in FLAGS.labels]
    except ValueError as e:
      raise common.UsageError(f'--labels={",".join(FLAGS.labels)}: labels are integers, '
                              'e.g. --labels=3,7') from e
  predict.predict_file(common.load_config(), FLAGS.workdir, FLAGS.output,
                       image_path=FLAGS.image, labels=labels, step=FLAGS.step)
  print(f'wrote {FLAGS.output}')


if __name__ == '__main__':
  common.run(main)
