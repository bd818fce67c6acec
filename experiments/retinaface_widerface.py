r"""RetinaFace R50 on WIDER FACE (TFDS `wider_face`), the reference's recipe: boxes only,
since TFDS' WIDER FACE has no landmarks.

  tfds build wider_face --data_dir=$DATA     # with the archives placed as TFDS says
  python -m launch.train --config=experiments/retinaface_widerface.py \
      --config.data.data_dir=$DATA --workdir=workdirs/retinaface_widerface

The reference (Pytorch_Retinaface, R50): 840 px training crops, batch 24 on 4 GPUs,
100 epochs of SGD (lr 1e-3, momentum 0.9, weight decay 5e-4, x0.1 at epochs 70 and 90),
anchors (16, 32) / (64, 128) / (256, 512) at strides 8 / 16 / 32, SSH, positive IoU
0.35 (the paper: >= 0.5 positive, < 0.3 negative, as here). Evaluation is COCO box AP
plus AP50 per size bin at our synthetic_faces fractions (WIDER's easy / medium / hard
sets are defined by its own detector's results, not by size).
Start from ImageNet weights with --config.init.torchvision_checkpoint=resnet50.pth.
"""
import ml_collections

from vision_jax.models import retinaface


def get_config(arg=None):
  if arg not in (None, '', 'default'):
    raise ValueError(f'retinaface_widerface has no variants, got {arg!r}')
  config = ml_collections.ConfigDict()
  config.task = 'retinaface'
  config.seed = 0
  config.kernels = 'auto'

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'wider_face'
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.image_size = (832, 832)
  config.data.max_instances = 300
  config.data.hflip_prob = 0.5
  config.data.scale_range = (0.3, 1.0)

  config.model = ml_collections.ConfigDict(retinaface.config_dict(
      num_landmarks=0, num_mesh_points=0, backbone='resnet50', norm='frozen_batch',
      detections_per_image=300, pre_nms_top_k=5000))

  config.init = ml_collections.ConfigDict()
  config.init.torchvision_checkpoint = ml_collections.config_dict.placeholder(str)

  config.loss = ml_collections.ConfigDict()
  for name, weight in (('class', 1.0), ('box', 0.25), ('points', 0.1), ('mesh', 0.01)):
    config.loss[f'{name}_weight'] = weight

  steps_per_epoch = 12880 // 24
  config.optimizers = ml_collections.ConfigDict()
  config.optimizers.model = ml_collections.ConfigDict(dict(
      name='sgd', learning_rate=1e-3, momentum=0.9, weight_decay=5e-4,
      decay_params='kernels', warmup_steps=5 * steps_per_epoch, schedule='step',
      decay_fractions=(0.7, 0.9), decay_factor=0.1))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 100 * steps_per_epoch
  config.train.batch_size = 24
  config.train.log_every = 100
  config.train.checkpoint_every = 2000
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 8
  config.eval.size_bins = (0.1, 0.25)
  config.eval.num_pictures = 8
  config.eval.draw_upscale = 1
  config.eval.draw_score_threshold = 0.5
  return config
