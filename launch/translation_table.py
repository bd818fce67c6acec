r"""The README table of an image-translation ablation, from the runs' eval_results.json.

  python -m launch.translation_table \
      --workdirs=workdirs/pix2pix_l1_gan,workdirs/pix2pix_l1,workdirs/pix2pix_gan \
      --names=l1_gan,l1,gan
  python -m launch.translation_table --prefix=a2b/ \
      --workdirs=workdirs/cyclegan,workdirs/cyclegan_no_cycle,workdirs/cyclegan_no_identity

Prints a Markdown table: the judge on the real targets first (the upper bound, from the
first workdir), then one row per run: the FCN-scores of its outputs, L1, PSNR, SSIM,
sharpness ratio and input dependence (keys of `vision_jax.tasks.translation_eval`).
"""
from absl import app
from absl import flags

from vision_jax.evaluation import translation_table

flags.DEFINE_list('workdirs', None, 'Run directories holding eval_results.json.')
flags.DEFINE_list('names', None, 'Row names, one per workdir (default: the directory names).')
flags.DEFINE_string('prefix', '', "Key prefix: '' for pix2pix, 'a2b/' or 'b2a/' for CycleGAN.")
flags.mark_flags_as_required(['workdirs'])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  try:
    print(translation_table.markdown_table(FLAGS.workdirs, FLAGS.names, FLAGS.prefix))
  except (FileNotFoundError, KeyError, ValueError) as e:
    raise app.UsageError(str(e)) from e


if __name__ == '__main__':
  app.run(main)
