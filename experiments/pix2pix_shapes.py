r"""pix2pix on the embedded synthetic_shapes scenes: coloured semantic label map -> the
style-A photo of the same scene (paired), 64 x 64, CPU-sized.

  python -m launch.train --config=experiments/pix2pix_shapes.py --workdir=workdirs/pix2pix_shapes
  python -m launch.predict --config=experiments/pix2pix_shapes.py \
      --workdir=workdirs/pix2pix_shapes --image=labels.png --output=translated.png

Writes eval_results.json with the FCN-score judge's judge/pixel_accuracy,
judge/class_accuracy, judge/class_iou on the generated images (against the input's
semantic map) and judge_real/* on the real targets (the upper bound), and l1, psnr, ssim,
sharpness_ratio, input_dependence against the paired targets. predictions.png: rows of
input | output | target.

Variants after the colon, comma-separated (the paper's loss ablation):
  l1_gan   (default) GAN + 100 L1.
  l1       L1 only (gan_weight 0).
  gan      conditional GAN only (l1_weight 0).
  tiny     a few steps of small networks on `synthetic_shapes/styles_tiny` (tests).
The README table comes from the runs' eval_results.json:
  python -m launch.translation_table --workdirs=workdirs/pix2pix_shapes_l1,...
"""
import ml_collections

LOSSES = ('l1_gan', 'l1', 'gan')
TOKENS = LOSSES + ('tiny',)


def get_config(arg=None):
  tokens = [t for t in (arg or '').split(',') if t and t != 'default']
  unknown = [t for t in tokens if t not in TOKENS]
  losses = [t for t in tokens if t in LOSSES]
  if unknown or len(losses) > 1:
    raise ValueError(f'pix2pix_shapes variants are comma-separated tokens of {TOKENS} '
                     f'(at most one of {LOSSES}), not {arg!r}')
  loss = losses[0] if losses else 'l1_gan'
  tiny = 'tiny' in tokens

  config = ml_collections.ConfigDict()
  config.task = 'pix2pix'
  config.seed = 0
  config.kernels = 'auto'  # 'cpu' | 'plain': vision_jax.ops.backend

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'synthetic_shapes/styles_tiny' if tiny else 'synthetic_shapes/styles'
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.judge_split = 'train'  # the judge's real images
  config.data.image_size = (64, 64)
  config.data.hflip_prob = 0.5

  config.model = ml_collections.ConfigDict()
  config.model.generator_features = 16 if tiny else 32
  config.model.generator_depth = 6  # 64 -> 1 at the bottleneck
  config.model.generator_max_features = 64 if tiny else 256
  config.model.dropout = 0.5
  config.model.discriminator_features = 16 if tiny else 32
  config.model.discriminator_layers = 3  # 70 x 70 receptive field
  config.model.norm = 'batch'
  config.model.dtype = 'float32'

  config.loss = ml_collections.ConfigDict()
  config.loss.kind = 'vanilla'  # 'lsgan' | 'hinge' (losses.gan)
  config.loss.gan_weight = 0.0 if loss == 'l1' else 1.0
  config.loss.l1_weight = 0.0 if loss == 'gan' else 100.0

  # Adam(2e-4, b1 0.5), constant for half the steps, then linearly to zero.
  config.optimizers = ml_collections.ConfigDict()
  for name in ('generator', 'discriminator'):
    config.optimizers[name] = ml_collections.ConfigDict(dict(
        name='adam', learning_rate=1e-3 if tiny else 2e-4, b1=0.5, b2=0.999,
        schedule='linear_decay', decay_start_fraction=0.5, params=f'{name}/.*'))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 150 if tiny else 2000
  config.train.batch_size = 8
  config.train.log_every = 50 if tiny else 100
  config.train.checkpoint_every = 150 if tiny else 500
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 16 if tiny else 100
  config.eval.dropout = True  # the paper keeps dropout on at test time, as noise
  config.eval.num_pictures = 8
  config.eval.draw_upscale = 2
  config.eval.judge_cache_dir = ml_collections.config_dict.placeholder(str)
  # The FCN-score judge (vision_jax.evaluation.segmentation_judge).
  config.eval.judge = ml_collections.ConfigDict(dict(seed=0, steps=100 if tiny else 600))
  return config
