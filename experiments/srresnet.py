r"""SRResNet (Ledig et al. 2017): x4 super-resolution trained on the pixel MSE, on the
embedded `bundled_photos` (8 training photos, 3 held out; no download), CPU-sized.

  python -m launch.train --config=experiments/srresnet.py --workdir=workdirs/srresnet
  python -m launch.predict --config=experiments/srresnet.py --workdir=workdirs/srresnet \
      --image=photo.png --output=big.png

Writes eval_results.json with bicubic/{psnr_y,ssim_y,lpips} (the LR upsampled by
`jax.image.resize` bicubic) and model/{psnr_y,ssim_y,lpips} on the centre 256 x 256 crops
of the validation photos (LR 64 x 64); predictions.png: rows of bicubic | model | HR.
`launch.predict` fits the image into predict.lr_size (shrunk if larger, edge-padded) and
writes the x4 output of its pixels. SRGAN starts from this run (experiments/srgan.py).

Variants after the colon:
  (default)  64 features, 16 residual blocks, without batch norm and adding the bicubic
             upsampling to the output (model.skip='bicubic': it starts as bicubic and
             learns the residual; the paper's generator has BN and no such skip, both
             CPU-budget choices), random 64 x 64 HR crops (the paper's 96 are too slow),
             batch 16, Adam(b1 0.9) at 1e-3 with 20 warmup steps and cosine decay over
             2000 steps (paper: 1e-4 for 10^6 steps). Measured: PSNR_Y 28.21 vs bicubic
             27.10 on the held-out crops in 20.6 min on 2 CPU cores (1500 steps: 28.10
             in 14.5 min).
  tiny       8 features, 2 blocks, BN, no skip, 32 x 32 crops, a few steps (end-to-end
             tests).
  div2k      the paper's recipe on TFDS div2k/bicubic_x4 (prepare it first with
             `tfds build div2k/bicubic_x4`): 96 crops, batch 16, Adam 1e-4, 10^6 steps.
"""
import ml_collections

TOKENS = ('tiny', 'div2k')


def get_config(arg=None):
  tokens = [t for t in (arg or '').split(',') if t and t != 'default']
  unknown = [t for t in tokens if t not in TOKENS]
  if unknown or len(tokens) > 1:
    raise ValueError(f'srresnet variants: one of {TOKENS} (or none), not {arg!r}')
  tiny, div2k = 'tiny' in tokens, 'div2k' in tokens

  config = ml_collections.ConfigDict()
  config.task = 'super_resolution'
  config.seed = 0
  config.kernels = 'auto'

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'div2k/bicubic_x4' if div2k else 'bundled_photos'
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.hr_size = 96 if div2k else (32 if tiny else 64)  # random HR crops
  config.data.hflip_prob = 0.5

  config.model = ml_collections.ConfigDict()
  config.model.kind = 'srresnet'
  config.model.upscale = 4
  config.model.features = 8 if tiny else 64
  config.model.num_blocks = 2 if tiny else 16
  # CPU-sized default: no batch norm (as EDSR) and the residual over bicubic upsampling,
  # which starts at bicubic's PSNR; the paper's generator is norm='batch', skip='none'
  # (:tiny and :div2k keep it).
  cpu_default = not (tiny or div2k)
  config.model.norm = 'none' if cpu_default else 'batch'
  config.model.skip = 'bicubic' if cpu_default else 'none'
  config.model.dtype = 'float32'

  config.optimizers = ml_collections.ConfigDict()
  config.optimizers.generator = ml_collections.ConfigDict(dict(
      name='adam', learning_rate=1e-4 if div2k else (5e-3 if tiny else 1e-3), b1=0.9,
      b2=0.999, schedule='constant' if div2k else 'cosine', warmup_steps=0 if div2k else 20,
      params='generator/.*'))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 10**6 if div2k else (120 if tiny else 2000)
  config.train.batch_size = 8 if tiny else 16
  config.train.log_every = 20 if tiny else 50
  config.train.checkpoint_every = 120 if tiny else (10000 if div2k else 500)
  config.train.keep_checkpoints = 2
  config.train.eval_every = 0 if (tiny or div2k) else 500

  config.eval = ml_collections.ConfigDict()
  config.eval.hr_size = 128 if tiny else 256  # centre crops of the validation photos
  config.eval.batch_size = 3
  config.eval.num_pictures = 3

  config.predict = ml_collections.ConfigDict()
  config.predict.lr_size = (32, 32) if tiny else (128, 128)  # images are fitted into it
  return config
