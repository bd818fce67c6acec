r"""CenterNet ("Objects as Points") on the embedded synthetic_shapes dataset.

The main job of the README: trains on CPU in minutes and reaches box/AP >= 0.7.

  python -m launch.train --config=experiments/centernet_shapes.py \
      --workdir=workdirs/centernet_shapes

Measured with that command on 2 CPU cores (seed 0, 500 validation images): box/AP 0.751,
AP50 0.944, AP75 0.842 (circle 0.795, square 0.825, triangle 0.632) in 5 min 58 s of wall
time for first-use preparation of the dataset (19 s), 1,400 training steps (~4.9 steps/s)
and evaluation; a new venv and `pip install -e .` come on top.
The recipe: ResNet-18 at width 24, a (96, 48, 48) neck with skips from C4, C3, C2
(`model.skips`), 32-channel heads, AdamW 4e-3, the paper's loss weights. The skips matter
most: at 128 x 128 C5 is a 4 x 4 grid, and in 600 steps at AdamW 2e-3 the same network
reaches box/AP 0.565 with them and 0.204 without. The former recipe (width 32,
(128, 64, 64) neck, 64-channel heads, no skips, AdamW 2e-3, 1,800 steps) reached 0.595
in 10.5 min.

Variants: `:tiny` (a small model on the `tiny` builder config for end-to-end tests:
160 steps, long enough to learn measurably, about 20 s of training on a CPU; no skips).
"""
import ml_collections


def get_config(arg=None):
  variant = arg or 'default'
  if variant not in ('default', 'tiny'):
    raise ValueError(f"centernet_shapes has variants 'default' and 'tiny', not {variant!r}")
  tiny = variant == 'tiny'
  config = ml_collections.ConfigDict()
  config.task = 'centernet'
  config.seed = 0
  config.kernels = 'auto'  # 'cpu' | 'plain': vision_jax.ops.backend

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'synthetic_shapes/tiny' if tiny else 'synthetic_shapes'
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.image_size = (128, 128)
  config.data.max_instances = 8
  config.data.hflip_prob = 0.5
  config.data.scale_range = (0.8, 1.25)

  config.model = ml_collections.ConfigDict()
  config.model.backbone = 'resnet18'
  config.model.width = 8 if tiny else 24
  config.model.neck_channels = (32, 16, 16) if tiny else (96, 48, 48)
  config.model.head_channels = 16 if tiny else 32
  config.model.norm = 'batch'
  # Skips from C4, C3, C2 into the neck: at 128 x 128, C5 is a 4 x 4 grid (docstring).
  config.model.skips = not tiny
  config.model.dtype = 'float32'

  config.loss = ml_collections.ConfigDict()
  config.loss.heatmap_weight = 1.0
  config.loss.size_weight = 0.1
  config.loss.offset_weight = 1.0
  config.loss.normalize = 'objects'  # L1 per object (see vision_jax.losses.regression)

  # Named optimizers (vision_jax/train/optim.py); one for the whole model.
  config.optimizers = ml_collections.ConfigDict()
  config.optimizers.model = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=5e-3 if tiny else 4e-3, weight_decay=1e-4,
      decay_params='kernels', warmup_steps=20 if tiny else 100, schedule='cosine',
      grad_clip_norm=10.0))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 160 if tiny else 1400
  config.train.batch_size = 8 if tiny else 16
  config.train.log_every = 40 if tiny else 100
  config.train.checkpoint_every = 80 if tiny else 500
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 8 if tiny else 50
  config.eval.max_detections = 100
  config.eval.num_pictures = 8
  config.eval.draw_upscale = 3
  # 0.4: of the labels drawn over the validation split, 2.5% name a wrong class and 9.7%
  # of the objects go unlabelled (0.3: 5.6% and 7.4%; 0.5: 1.3% and 15.1%).
  config.eval.draw_score_threshold = 0.3 if tiny else 0.4
  return config
