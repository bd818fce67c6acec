r"""Mask R-CNN R50-FPN on COCO 2017, detectron2's 1x schedule (90k steps at batch 16).

Reads COCO 2017 unzipped on disk (annotations/instances_{train,val}2017.json and the
train2017/, val2017/ image folders) through the local `coco_format` builder, which
prepares TFDS records (with instance masks) in the data_dir on first use; nothing is
downloaded.

  python -m launch.train --config=experiments/mask_rcnn_coco.py \
      --workdir=workdirs/mask_rcnn_coco --config.data.coco_root=/data/coco \
      --config.init.torchvision_checkpoint=/weights/resnet50-0676ba61.pth

Recipe (detectron2 mask_rcnn_R_50_FPN_1x): SGD momentum 0.9, lr 0.02, weight decay
1e-4, linear warmup over 1000 steps, lr x0.1 at 60k and 80k; frozen BatchNorm; RPN
2000 / 1000 proposals per level / image in training, 1000 / 1000 at test; 512 RoIs per
image, 25% foreground. Images are resized (aspect kept) into a 1024 x 1024 canvas
(static shapes; detectron2 uses shortest edge 800, longest <= 1333).
`init.torchvision_checkpoint` starts from a torchvision state dict on disk: an ImageNet
ResNet-50 (backbone only) or a whole maskrcnn_resnet50_fpn checkpoint.

Variants
  :bench  the same R50-FPN and proposal / RoI counts at 512 x 512, batch 2, on the
          embedded synthetic_shapes data (no COCO needed): for
          `python -m launch.benchmark --config=experiments/mask_rcnn_coco.py:bench`,
          which also times torchvision's maskrcnn_resnet50_fpn train step at the same
          sizes when torch is installed.
"""
import ml_collections

from vision_jax.models import mask_rcnn


def get_config(arg=None):
  variant = arg or 'default'
  if variant not in ('default', 'bench'):
    raise ValueError(f"mask_rcnn_coco has variants 'default' and 'bench', not {variant!r}")
  bench = variant == 'bench'
  config = ml_collections.ConfigDict()
  config.task = 'mask_rcnn'
  config.seed = 0
  config.kernels = 'auto'  # 'cpu' | 'plain': vision_jax.ops.backend

  config.data = ml_collections.ConfigDict()
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  if bench:
    config.data.dataset = 'synthetic_shapes'
    config.data.train_split = 'train'
    config.data.eval_split = 'validation'
    config.data.image_size = (512, 512)
  else:
    config.data.dataset = 'coco_format'
    config.data.coco_root = ml_collections.config_dict.placeholder(str)
    config.data.coco_annotations = 'instances'
    config.data.train_split = 'train2017'
    config.data.eval_split = 'val2017'
    config.data.image_size = (1024, 1024)
  config.data.max_instances = 100
  config.data.hflip_prob = 0.5
  config.data.scale_range = (1.0, 1.0)

  config.init = ml_collections.ConfigDict()
  config.init.torchvision_checkpoint = ml_collections.config_dict.placeholder(str)

  # Every field of vision_jax.models.mask_rcnn.MaskRCNNConfig; its defaults are
  # detectron2's R50-FPN.
  config.model = ml_collections.ConfigDict(mask_rcnn.config_dict())

  # detectron2 decays biases too (WEIGHT_DECAY_BIAS defaults to WEIGHT_DECAY) and norms
  # not at all (WEIGHT_DECAY_NORM 0); the norms here are frozen, without parameters, so
  # decaying 'all' parameters is detectron2's choice.
  config.optimizers = ml_collections.ConfigDict()
  config.optimizers.model = ml_collections.ConfigDict(dict(
      name='sgd', learning_rate=0.02, momentum=0.9, weight_decay=1e-4, decay_params='all',
      warmup_steps=1000, schedule='step', decay_steps=(60000, 80000), decay_factor=0.1))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 90000
  config.train.batch_size = 2 if bench else 16
  config.train.log_every = 20
  config.train.checkpoint_every = 5000
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 2  # pasted masks are [batch, 100, 1024, 1024]
  config.eval.num_pictures = 8
  config.eval.draw_upscale = 1
  config.eval.draw_score_threshold = 0.5

  if bench:
    config.benchmark = ml_collections.ConfigDict()
    config.benchmark.torchvision_reference = 'mask_rcnn'
    # The same counts on torchvision's side; frozen BatchNorm and every backbone layer
    # trainable, as our model here.
    config.benchmark.torchvision_kwargs = ml_collections.ConfigDict(dict(
        num_classes=3, rpn_pre_nms_top_n_train=2000, rpn_post_nms_top_n_train=1000,
        rpn_batch_size_per_image=256, box_batch_size_per_image=512,
        box_positive_fraction=0.25, trainable_backbone_layers=5))
  return config
