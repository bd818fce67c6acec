r"""YOLACT (R18-FPN, CPU-sized) on the embedded synthetic_shapes dataset.

Boxes and masks of circles, squares and triangles at 128 x 128, from prototypes x
coefficients; trains on a 2-core CPU within 45 minutes.

  python -m launch.train --config=experiments/yolact_shapes.py \
      --workdir=workdirs/yolact_shapes

Variants after the colon:
  default   the embedded default (prototypes at stride 4, as the paper).
  proto2    the same with prototypes at stride 2 (finer masks).
  tiny      a small model on the `tiny` builder config for end-to-end tests (learns
            measurably in a few minutes).
"""
import ml_collections

from vision_jax.models import yolact

VARIANTS = ('default', 'proto2', 'tiny')


def get_config(arg=None):
  variant = arg or 'default'
  if variant not in VARIANTS:
    raise ValueError(f'yolact_shapes has variants {VARIANTS}, not {variant!r}')
  tiny = variant == 'tiny'
  config = ml_collections.ConfigDict()
  config.task = 'yolact'
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

  # Every field of vision_jax.models.yolact.YolactConfig (defaults: the paper's
  # YOLACT-550 R50-FPN), here sized for a CPU and 12..48 px shapes at 128 x 128.
  config.model = ml_collections.ConfigDict(yolact.config_dict(
      backbone='resnet18',
      width=8 if tiny else 32,
      norm='batch',
      fpn_channels=16 if tiny else 64,
      num_prototypes=16 if tiny else 32,
      proto_channels=16 if tiny else 64,
      proto_stride=2 if variant == 'proto2' else 4,
      head_channels=16 if tiny else 64,
      anchor_scales=(12.0, 24.0, 48.0, 96.0, 192.0),
      anchor_reference_size=128,
      masks_per_image=32))

  # The reference's weights (vision_jax.losses.yolact).
  config.loss = ml_collections.ConfigDict(dict(
      class_weight=1.0, box_weight=1.5, mask_weight=6.125, semantic_weight=1.0))

  config.optimizers = ml_collections.ConfigDict()
  config.optimizers.model = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=3e-3 if tiny else 1e-3, weight_decay=1e-4,
      decay_params='kernels', warmup_steps=20 if tiny else 100, schedule='cosine',
      grad_clip_norm=10.0))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 400 if tiny else 5000
  config.train.batch_size = 4 if tiny else 8
  config.train.log_every = 25 if tiny else 50
  config.train.checkpoint_every = 200 if tiny else 500
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 4 if tiny else 25
  config.eval.num_pictures = 4 if tiny else 8
  config.eval.draw_upscale = 3
  config.eval.draw_score_threshold = 0.5
  return config
