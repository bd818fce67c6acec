r"""The course's grey-image example: an MSE regressor against a conditional GAN.

Targets are 8x8 images that are, at random, all white or all black, with
P(white | condition) = 0.25, 0.5, 0.75 for three conditions; both models get the
condition and fresh noise. The regressor learns the conditional mean (grey); the GAN
should answer with real modes, as often as the data does.

  python -m launch.train --config=experiments/regression_vs_gan_toy.py \
      --workdir=workdirs/regression_vs_gan_toy
  python -m launch.predict --config=experiments/regression_vs_gan_toy.py \
      --workdir=workdirs/regression_vs_gan_toy --labels=0,1,2 --output=modes.png

Variants: `:tiny` (fewer steps and samples, for the end-to-end test).
"""
import ml_collections


def get_config(arg=None):
  variant = arg or 'default'
  if variant not in ('default', 'tiny'):
    raise ValueError(f"regression_vs_gan_toy has variants 'default' and 'tiny', not {variant!r}")
  tiny = variant == 'tiny'
  config = ml_collections.ConfigDict()
  config.task = 'regression_vs_gan_toy'
  config.seed = 0
  config.kernels = 'auto'

  config.data = ml_collections.ConfigDict()
  config.data.white_probabilities = (0.25, 0.5, 0.75)

  config.model = ml_collections.ConfigDict()
  config.model.image_size = 8
  config.model.latent_dim = 8
  config.model.hidden = 128
  config.model.layers = 2
  config.model.minibatch_std = True  # the critic also sees its batch's spread

  config.loss = ml_collections.ConfigDict()
  config.loss.kind = 'non_saturating'  # 'lsgan' | 'hinge'

  config.optimizers = ml_collections.ConfigDict()
  for name in ('regressor', 'generator', 'discriminator'):
    config.optimizers[name] = ml_collections.ConfigDict(dict(
        name='adam', learning_rate=1e-3, b1=0.5, b2=0.999, schedule='constant',
        params=f'{name}/.*'))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 600 if tiny else 3000
  config.train.batch_size = 64
  config.train.log_every = 100 if tiny else 500
  config.train.checkpoint_every = 600 if tiny else 1500
  config.train.keep_checkpoints = 2
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 64  # (the evaluation samples all at once; kept for the loop)
  config.eval.samples_per_condition = 200 if tiny else 1000
  config.eval.tolerance = 0.1
  config.eval.picture_columns = 8
  config.eval.draw_upscale = 4
  return config
