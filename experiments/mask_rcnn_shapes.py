r"""Mask R-CNN (R18-FPN, CPU-sized) on the embedded synthetic_shapes dataset.

Boxes and masks of circles, squares and triangles at 128 x 128; trains on a 2-core CPU
in well under 45 minutes and reaches box/AP and mask/AP >= 0.55.

  python -m launch.train --config=experiments/mask_rcnn_shapes.py \
      --workdir=workdirs/mask_rcnn_shapes

Variants: `:tiny` (a few steps on the `tiny` builder config, for smoke tests).
`experiments/keypoint_rcnn_shapes.py` is the same model with a keypoint head.
"""
import ml_collections


def get_config(arg=None):
  variant = arg or 'default'
  if variant not in ('default', 'tiny'):
    raise ValueError(f"mask_rcnn_shapes has variants 'default' and 'tiny', not {variant!r}")
  tiny = variant == 'tiny'
  config = ml_collections.ConfigDict()
  config.task = 'mask_rcnn'
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

  # Keys and meanings: vision_jax.models.mask_rcnn.MaskRCNNConfig.
  config.model = ml_collections.ConfigDict()
  config.model.backbone = 'resnet18'
  config.model.width = 8 if tiny else 32
  config.model.norm = 'batch'
  config.model.fpn_channels = 16 if tiny else 64
  config.model.anchor_sizes = ((16,), (32,), (64,), (128,), (256,))
  config.model.aspect_ratios = (0.5, 1.0, 2.0)
  config.model.rpn_pre_nms_top_n_train = 64 if tiny else 600
  config.model.rpn_post_nms_top_n_train = 32 if tiny else 300
  config.model.rpn_pre_nms_top_n_test = 64 if tiny else 600
  config.model.rpn_post_nms_top_n_test = 32 if tiny else 300
  config.model.rpn_batch_size_per_image = 256
  config.model.roi_batch_size_per_image = 32 if tiny else 64
  config.model.roi_positive_fraction = 0.25
  config.model.box_fc_dim = 32 if tiny else 256
  config.model.mask_head = True
  config.model.mask_conv_dim = 16 if tiny else 64
  config.model.mask_num_convs = 4
  config.model.keypoint_head = False
  config.model.detections_per_image = 100
  config.model.dtype = 'float32'

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 1e-4
  config.optimizer.warmup_steps = 5 if tiny else 100
  config.optimizer.schedule = 'cosine'
  config.optimizer.grad_clip_norm = 10.0

  config.train = ml_collections.ConfigDict()
  config.train.steps = 6 if tiny else 2000
  config.train.batch_size = 4 if tiny else 8
  config.train.log_every = 3 if tiny else 50
  config.train.checkpoint_every = 3 if tiny else 500
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 4 if tiny else 25
  config.eval.num_pictures = 4 if tiny else 8
  config.eval.draw_score_threshold = 0.5
  return config
