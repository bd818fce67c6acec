r"""Mask R-CNN (R18-FPN, CPU-sized) on the embedded synthetic_shapes dataset.

Boxes and masks of circles, squares and triangles at 128 x 128; trains on a 2-core CPU
in well under 45 minutes and reaches box/AP and mask/AP >= 0.55.

  python -m launch.train --config=experiments/mask_rcnn_shapes.py \
      --workdir=workdirs/mask_rcnn_shapes

Variants: `:tiny` (a small model on the `tiny` builder config for end-to-end tests:
150 steps, long enough to learn measurably).
`experiments/keypoint_rcnn_shapes.py` is the same model with a keypoint head.
"""
import ml_collections

from vision_jax.models import mask_rcnn


def get_config(arg=None):
  variant = arg or 'default'
  if variant not in ('default', 'tiny'):
    raise ValueError(f"mask_rcnn_shapes has variants 'default' and 'tiny', not {variant!r}")
  tiny = variant == 'tiny'
  config = ml_collections.ConfigDict()
  config.task = 'mask_rcnn'
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

  # Every field of vision_jax.models.mask_rcnn.MaskRCNNConfig (defaults: detectron2's
  # R50-FPN), here sized for a CPU and 128 x 128 shapes.
  config.model = ml_collections.ConfigDict(mask_rcnn.config_dict(
      backbone='resnet18',
      width=8 if tiny else 32,
      norm='batch',
      fpn_channels=16 if tiny else 64,
      anchor_sizes=((16,), (32,), (64,), (128,), (256,)),
      rpn_pre_nms_top_n_train=64 if tiny else 600,
      rpn_post_nms_top_n_train=32 if tiny else 300,
      rpn_pre_nms_top_n_test=64 if tiny else 600,
      rpn_post_nms_top_n_test=32 if tiny else 300,
      roi_batch_size_per_image=32 if tiny else 64,
      box_fc_dim=32 if tiny else 256,
      mask_conv_dim=16 if tiny else 64,
      keypoint_conv_dim=16 if tiny else 64,
      keypoint_num_convs=4))

  # Named optimizers (vision_jax/train/optim.py); one for the whole model.
  config.optimizers = ml_collections.ConfigDict()
  config.optimizers.model = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=3e-3 if tiny else 1e-3, weight_decay=1e-4,
      decay_params='kernels', warmup_steps=20 if tiny else 100, schedule='cosine',
      grad_clip_norm=10.0))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 150 if tiny else 2000
  config.train.batch_size = 4 if tiny else 8
  config.train.log_every = 25 if tiny else 50
  config.train.checkpoint_every = 75 if tiny else 500
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 4 if tiny else 25
  config.eval.num_pictures = 4 if tiny else 8
  config.eval.draw_upscale = 3
  config.eval.draw_score_threshold = 0.5
  return config
