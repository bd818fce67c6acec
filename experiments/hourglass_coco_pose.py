r"""Stacked Hourglass on COCO person keypoints, the paper's network: 8 stacks, 256
features, 256 x 256 input (64 x 64 heatmaps, sigma 2 as the reference's COCO code),
RMSprop at 2.5e-4, flip testing.

  python -m launch.train --config=experiments/hourglass_coco_pose.py \
      --config.data.coco_root=/data/coco --workdir=workdirs/hourglass_coco_pose

Reads the unzipped COCO 2017 folder (annotations/person_keypoints_{train,val}2017.json
and the image folders) through the local `coco_format` builder, one person per image
(`vision_jax.data.sources.coco_format.landmark_source`: the one with the most labelled
keypoints), cropped around its box with 25% context. NME is normalised by the box
diagonal (bodies have no inter-ocular distance); COCO's OKS AP needs every person and is
Mask R-CNN's keypoint branch's metric (`experiments/mask_rcnn_coco.py:keypoints`).
"""
import ml_collections


def get_config(arg=None):
  if arg not in (None, '', 'default'):
    raise ValueError(f'hourglass_coco_pose has no variants, got {arg!r}')
  config = ml_collections.ConfigDict()
  config.task = 'landmarks'
  config.seed = 0
  config.kernels = 'auto'

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'coco_format'
  config.data.coco_root = ml_collections.config_dict.placeholder(str)
  config.data.coco_annotations = 'person_keypoints'
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.train_split = 'train2017'
  config.data.eval_split = 'val2017'
  config.data.points = 'keypoints'
  config.data.image_size = (256, 256)
  config.data.crop_scale = 1.25
  config.data.scale_jitter = 0.25
  config.data.shift_jitter = 0.0
  config.data.max_rotation = 30.0
  config.data.hflip_prob = 0.5

  config.model = ml_collections.ConfigDict()
  config.model.kind = 'heatmap'
  config.model.num_points = 17
  config.model.num_stacks = 8
  config.model.features = 256
  config.model.depth = 4
  config.model.stem_widths = (64, 128)
  config.model.heatmap_stride = 4  # or 2: maps at S / 2 (no stem max-pool)
  config.model.backbone = 'resnet18'
  config.model.width = 64
  config.model.norm = 'batch'
  config.model.dtype = 'float32'

  config.loss = ml_collections.ConfigDict()
  config.loss.sigma = 2.0
  config.loss.heatmap_weight = 1.0
  config.loss.coord_weight = 1.0

  config.optimizers = ml_collections.ConfigDict()
  config.optimizers.model = ml_collections.ConfigDict(dict(
      name='rmsprop', learning_rate=2.5e-4, schedule='constant', warmup_steps=0))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 150_000
  config.train.batch_size = 16
  config.train.log_every = 100
  config.train.checkpoint_every = 5000
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 32
  config.eval.normalization = 'box_diagonal'
  config.eval.flip_test = True
  config.eval.heatmap_refinement = 'quarter'  # or 'dark' (models.landmarks.REFINEMENTS)
  config.eval.num_pictures = 8
  config.eval.draw_upscale = 1
  return config
