r"""CenterNet ("Objects as Points") on the embedded synthetic_shapes dataset.

The main job of the README: trains on CPU in minutes and reaches box/AP >= 0.5.

  python -m launch.train --config=experiments/centernet_shapes.py \
      --workdir=workdirs/centernet_shapes

Variants: `:tiny` (a few steps on the `tiny` builder config, for smoke tests).
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
  config.model.width = 8 if tiny else 32
  config.model.neck_channels = (32, 16, 16) if tiny else (128, 64, 64)
  config.model.head_channels = 16 if tiny else 64
  config.model.norm = 'batch'
  config.model.dtype = 'float32'

  config.loss = ml_collections.ConfigDict()
  config.loss.heatmap_weight = 1.0
  config.loss.size_weight = 0.1
  config.loss.offset_weight = 1.0

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 2e-3
  config.optimizer.weight_decay = 1e-4
  config.optimizer.warmup_steps = 5 if tiny else 100
  config.optimizer.schedule = 'cosine'
  config.optimizer.grad_clip_norm = 10.0

  config.train = ml_collections.ConfigDict()
  config.train.steps = 8 if tiny else 1800
  config.train.batch_size = 8 if tiny else 16
  config.train.log_every = 4 if tiny else 50
  config.train.checkpoint_every = 4 if tiny else 500
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 8 if tiny else 50
  config.eval.max_detections = 100
  config.eval.num_pictures = 8
  return config
