r"""UPSNet (R18-FPN, CPU-sized) on the embedded synthetic_shapes dataset: panoptic
segmentation of circles, squares and triangles (things) on sky and ground (stuff).

  python -m launch.train --config=experiments/upsnet_shapes.py --workdir=workdirs/upsnet_shapes

Writes eval_results.json with panoptic/PQ, PQ_th, PQ_st (and SQ, RQ) beside box/AP and
mask/AP of the instance branch, and the COCO panoptic files (panoptic_predictions.json
+ PNGs, panoptic_ground_truth.json + PNGs) to re-score with panopticapi.

Variants after the colon:
  default     the embedded default.
  no_unknown  the same without the unknown channel (and without dropping instances):
              the ablation row of the README.
  tiny        a small model on the `tiny` builder config for end-to-end tests.
"""
import ml_collections

from vision_jax.models import upsnet

VARIANTS = ('default', 'no_unknown', 'tiny')


def get_config(arg=None):
  variant = arg or 'default'
  if variant not in VARIANTS:
    raise ValueError(f'upsnet_shapes has variants {VARIANTS}, not {variant!r}')
  tiny = variant == 'tiny'
  config = ml_collections.ConfigDict()
  config.task = 'upsnet'
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

  # Every field of vision_jax.models.upsnet.UPSNetConfig (Mask R-CNN's, sized as
  # experiments/mask_rcnn_shapes.py, plus the semantic and panoptic heads).
  config.model = ml_collections.ConfigDict(upsnet.config_dict(
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
      semantic_channels=16 if tiny else 32,
      semantic_layers=3,
      unknown_channel=variant != 'no_unknown',
      detections_per_image=20,
      panoptic_detections=10,
      panoptic_score_threshold=0.5,
      min_stuff_area=64))

  # Mask R-CNN's terms at 1, the semantic and panoptic terms, and the instances left
  # out of the panoptic head per training image (the reference's 1 - 0.7).
  config.loss = ml_collections.ConfigDict(dict(
      semantic_weight=1.0, panoptic_weight=0.5, drop_fraction=0.3))

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
