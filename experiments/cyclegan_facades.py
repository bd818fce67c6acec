r"""CycleGAN on TFDS `cycle_gan/facades` (A: facade photos, B: colour label maps, as the
CycleGAN release; unpaired, since the TFDS records keep no file names to pair them), with
the reference recipe of `cyclegan_horse2zebra.py`. Prepare the data first:

  tfds build cycle_gan/facades --data_dir=$TFDS_DATA_DIR     # on a machine with network
  python -m launch.train --config=experiments/cyclegan_facades.py \
      --workdir=workdirs/cyclegan_facades
"""
import os

from vision_jax.train import config as config_lib


def get_config(arg=None):
  horse2zebra = config_lib.load_module(
      os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cyclegan_horse2zebra.py'))
  return horse2zebra.get_config(arg, dataset='cycle_gan/facades', epoch=400)
