r"""CycleGAN on the embedded synthetic_shapes scenes: style A <-> style B, trained
UNPAIRED (A and B images of disjoint scenes), scored on the validation pairs. 64 x 64,
CPU-sized.

  python -m launch.train --config=experiments/cyclegan_shapes.py --workdir=workdirs/cyclegan_shapes
  python -m launch.predict --config=experiments/cyclegan_shapes.py \
      --workdir=workdirs/cyclegan_shapes --image=scene_a.png --output=a2b2a.png

Writes eval_results.json with the keys of pix2pix_shapes under a2b/ (G_ab(a) against b,
judged by a segmenter of real B images) and b2a/ (G_ba(b) against a, judge of real A
images). predictions.png: rows of a | G_ab(a) | G_ba(G_ab(a)) | b.

Variants after the colon, comma-separated:
  (none)       cycle weight 10, identity 5 (the reference's 0.5 x lambda).
  no_cycle     GAN losses alone (cycle and identity 0, as the paper's "GAN alone" row).
  no_identity  identity 0.
  tiny         a few steps of small networks on `synthetic_shapes/styles_tiny` (tests).
"""
import ml_collections

TOKENS = ('no_cycle', 'no_identity', 'tiny')


def get_config(arg=None):
  tokens = [t for t in (arg or '').split(',') if t and t != 'default']
  unknown = [t for t in tokens if t not in TOKENS]
  if unknown:
    raise ValueError(f'cyclegan_shapes variants are comma-separated tokens of {TOKENS}, '
                     f'not {arg!r}')
  tiny = 'tiny' in tokens

  config = ml_collections.ConfigDict()
  config.task = 'cyclegan'
  config.seed = 0
  config.kernels = 'auto'  # 'cpu' | 'plain': vision_jax.ops.backend
  config.predict_direction = 'a2b'  # launch.predict reads domain A

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'synthetic_shapes/styles_tiny' if tiny else 'synthetic_shapes/styles'
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.judge_split = 'train'
  config.data.image_size = (64, 64)
  config.data.hflip_prob = 0.5

  config.model = ml_collections.ConfigDict()
  config.model.generator = 'resnet'  # or 'unet'
  config.model.generator_features = 8 if tiny else 16
  config.model.generator_blocks = 3 if tiny else 6
  config.model.generator_depth = 6  # (unet only)
  config.model.discriminator_features = 16 if tiny else 32
  config.model.discriminator_layers = 3
  config.model.norm = 'instance'
  config.model.pool_size = 50
  config.model.dtype = 'float32'

  config.loss = ml_collections.ConfigDict()
  config.loss.kind = 'lsgan'  # the reference's default; 'vanilla' | 'hinge'
  config.loss.cycle_weight = 0.0 if 'no_cycle' in tokens else 10.0
  config.loss.identity_weight = 0.0 if ({'no_cycle', 'no_identity'} & set(tokens)) else 5.0

  config.optimizers = ml_collections.ConfigDict()
  for name in ('generators', 'discriminators'):
    config.optimizers[name] = ml_collections.ConfigDict(dict(
        name='adam', learning_rate=1e-3 if tiny else 2e-4, b1=0.5, b2=0.999,
        schedule='linear_decay', decay_start_fraction=0.5,
        params=f'{name[:-1]}_.*'))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 100 if tiny else 1500
  config.train.batch_size = 4
  config.train.log_every = 50 if tiny else 100
  config.train.checkpoint_every = 100 if tiny else 500
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 16 if tiny else 100
  config.eval.num_pictures = 8
  config.eval.draw_upscale = 2
  config.eval.judge_cache_dir = ml_collections.config_dict.placeholder(str)
  config.eval.judge = ml_collections.ConfigDict(dict(seed=0, steps=100 if tiny else 600))
  return config
