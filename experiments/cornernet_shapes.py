r"""CornerNet (Law & Deng 2018) on the embedded synthetic_shapes dataset, CPU-sized.

  python -m launch.train --config=experiments/cornernet_shapes.py \
      --workdir=workdirs/cornernet_shapes

Two hourglasses of depth 3 on 128 x 128 inputs (32 x 32 corner maps), the references'
losses, pairing and soft-NMS decoding. `experiments/centernet_triplets_shapes.py` is this
recipe with the center keypoint (the two README rows).

Variants: `:tiny` (a small model on the `tiny` builder config for end-to-end tests).
"""
import ml_collections

from vision_jax.models import cornernet


def get_config(arg=None, *, centers: bool = False):
  variant = arg or 'default'
  if variant not in ('default', 'tiny'):
    raise ValueError(f"this experiment has variants 'default' and 'tiny', not {variant!r}")
  tiny = variant == 'tiny'
  config = ml_collections.ConfigDict()
  config.task = 'cornernet'
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

  config.model = ml_collections.ConfigDict(cornernet.config_dict(
      centers=centers,
      num_stacks=2,
      depth=3,
      widths=(16, 16, 24, 32) if tiny else (32, 48, 64, 96),
      num_residuals=1,
      stem_width=16,
      cnv_dim=16 if tiny else 32,
      pool_dim=8 if tiny else 16,
      head_dim=16,
      top_k=100,
      num_pairs=1000,
      max_detections=100,
  ))

  config.loss = ml_collections.ConfigDict(
      {f'{name}_weight': weight for name, weight in (
          ('heatmap', 1.0), ('pull', 0.1), ('push', 0.1), ('offset', 1.0))})

  config.optimizers = ml_collections.ConfigDict()
  config.optimizers.model = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=5e-3 if tiny else 2e-3, weight_decay=1e-4,
      decay_params='kernels', warmup_steps=20 if tiny else 100, schedule='cosine',
      grad_clip_norm=10.0))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 160 if tiny else 2500
  config.train.batch_size = 8 if tiny else 16
  config.train.log_every = 40 if tiny else 100
  config.train.checkpoint_every = 80 if tiny else 500
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 8 if tiny else 50
  config.eval.num_pictures = 8
  config.eval.draw_upscale = 3
  config.eval.draw_score_threshold = 0.3
  return config
