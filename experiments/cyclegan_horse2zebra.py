r"""CycleGAN on TFDS `cycle_gan/horse2zebra`: the reference recipe (256 x 256, ResNet
generator with 9 blocks and 64 features, 70 x 70 PatchGANs, LSGAN, batch 1, Adam(2e-4,
b1 0.5), 100 epochs constant then 100 decaying linearly to zero, cycle 10, identity 5,
50-image pools). Real data: prepare it first (nothing is downloaded at run time):

  tfds build cycle_gan/horse2zebra --data_dir=$TFDS_DATA_DIR     # on a machine with network
  python -m launch.train --config=experiments/cyclegan_horse2zebra.py \
      --workdir=workdirs/cyclegan_horse2zebra

horse2zebra has no semantic maps and no pairs: evaluation on testA / testB reports
a2b/ and b2a/ sharpness_ratio and input_dependence only (against the real images of
the target domain). Variants: those of cyclegan_shapes (`no_cycle`, `no_identity`).
"""
import os

from vision_jax.train import config as config_lib

DATASET = 'cycle_gan/horse2zebra'
EPOCH = 1334  # iterations per epoch at batch 1: max(|trainA| 1067, |trainB| 1334)


def _cyclegan_shapes():
  return config_lib.load_module(
      os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cyclegan_shapes.py'))


def get_config(arg=None, dataset=DATASET, epoch=EPOCH):
  tokens = [t for t in (arg or '').split(',') if t and t != 'default']
  if 'tiny' in tokens:
    raise ValueError(f'{dataset} has no tiny variant: tests use cyclegan_shapes:tiny')
  config = _cyclegan_shapes().get_config(arg)
  config.data.dataset = dataset
  config.data.train_split = 'train'  # trainA + trainB
  config.data.eval_split = 'test'    # testA + testB
  config.data.image_size = (256, 256)
  config.model.generator_features = 64
  config.model.generator_blocks = 9
  config.model.discriminator_features = 64
  config.train.batch_size = 1
  config.train.steps = 200 * epoch
  config.train.log_every = 500
  config.train.checkpoint_every = 10 * epoch
  config.eval.batch_size = 8
  return config
