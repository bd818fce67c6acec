r"""YOLACT-550 on COCO 2017, the reference recipe (R50-FPN; R101-FPN with `:r101`).

Reads COCO 2017 unzipped on disk (annotations/instances_{train,val}2017.json and the
train2017/, val2017/ image folders) through the local `coco_format` builder, which
prepares TFDS records (with instance masks) in the data_dir on first use; nothing is
downloaded. The backbone starts from a torchvision ImageNet ResNet on disk (the
reference's resnet50-19c8e357.pth / resnet101-5d3b4d8f.pth are torchvision's).

  python -m launch.train --config=experiments/yolact_coco.py \
      --workdir=workdirs/yolact_coco --config.data.coco_root=/data/coco \
      --config.init.torchvision_checkpoint=/weights/resnet50-19c8e357.pth

Recipe (yolact_base_config / yolact_resnet50_config) with two differences: images are
letterboxed (aspect kept) into 544 x 544, where the reference stretches them to
550 x 550, and the augmentation is a horizontal flip only (the reference adds SSD's
photometric distortion, expand and random crop), so expect lower AP. Otherwise: SGD momentum
0.9, weight decay 5e-4, lr 1e-3 with 500 warmup steps (linear from 0 here, from 1e-4 in
the reference), x0.1 at 280k, 600k, 700k and 750k of 800k steps at batch 8; frozen
BatchNorm in the backbone; 32 prototypes at stride 4 (138 x 138); anchors of scales
24..384 and aspect ratios 1, 1/2, 2 on P3..P7; Fast NMS top 200 per class at IoU 0.5,
100 detections.

Variants
  :r101   ResNet-101 backbone (the paper's YOLACT-550 headline model).
  :proto2 prototypes at stride 2 (276 x 276) for finer mask edges.
  :bench  the R50-FPN at 544 on the embedded synthetic_shapes data (no COCO needed), for
          `python -m launch.benchmark --config=experiments/yolact_coco.py:bench`: YOLACT
          vs our Mask R-CNN inference at the same backbone, size and batch.
"""
import ml_collections

from vision_jax.models import yolact

VARIANTS = ('default', 'r101', 'proto2', 'bench')


def get_config(arg=None):
  variant = arg or 'default'
  if variant not in VARIANTS:
    raise ValueError(f'yolact_coco has variants {VARIANTS}, not {variant!r}')
  bench = variant == 'bench'
  config = ml_collections.ConfigDict()
  config.task = 'yolact'
  config.seed = 0
  config.kernels = 'auto'  # 'cpu' | 'plain': vision_jax.ops.backend

  config.data = ml_collections.ConfigDict()
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  if bench:
    config.data.dataset = 'synthetic_shapes'
    config.data.train_split = 'train'
    config.data.eval_split = 'validation'
  else:
    config.data.dataset = 'coco_format'
    config.data.coco_root = ml_collections.config_dict.placeholder(str)
    config.data.coco_annotations = 'instances'
    config.data.train_split = 'train2017'
    config.data.eval_split = 'val2017'
  # 550 is not a multiple of 32; 544 is the nearest size every FPN level divides.
  config.data.image_size = (544, 544)
  config.data.max_instances = 100
  config.data.hflip_prob = 0.5
  config.data.scale_range = (1.0, 1.0)

  config.init = ml_collections.ConfigDict()
  config.init.torchvision_checkpoint = ml_collections.config_dict.placeholder(str)

  # Every field of vision_jax.models.yolact.YolactConfig; its defaults are the paper's.
  config.model = ml_collections.ConfigDict(yolact.config_dict(
      backbone='resnet101' if variant == 'r101' else 'resnet50',
      norm='frozen_batch',
      proto_stride=2 if variant == 'proto2' else 4))

  config.loss = ml_collections.ConfigDict(dict(
      class_weight=1.0, box_weight=1.5, mask_weight=6.125, semantic_weight=1.0))

  config.optimizers = ml_collections.ConfigDict()
  config.optimizers.model = ml_collections.ConfigDict(dict(
      name='sgd', learning_rate=1e-3, momentum=0.9, weight_decay=5e-4, decay_params='all',
      warmup_steps=500, schedule='step',
      decay_steps=(280_000, 600_000, 700_000, 750_000), decay_factor=0.1))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 800_000
  config.train.batch_size = 8
  config.train.log_every = 20
  config.train.checkpoint_every = 10_000
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 2  # full-image masks are [batch, 100, 544, 544]
  config.eval.num_pictures = 8
  config.eval.draw_upscale = 1
  config.eval.draw_score_threshold = 0.3

  if bench:
    # vision_jax/benchmarks/inference.py: predict steps side by side on the same images.
    config.benchmark = ml_collections.ConfigDict()
    config.benchmark.mode = 'predict'  # launch.benchmark's default here (--mode overrides)
    config.benchmark.batch_size = 2
    # Our Mask R-CNN (R50-FPN, detectron2's test settings: 1000 proposals, 100
    # detections) on this data block: the same images, size and number of classes.
    config.benchmark.inference_against = 'mask_rcnn_coco'
    config.benchmark.inference_against_overrides = ()
    config.benchmark.target_speedup = 2.0  # YOLACT vs Mask R-CNN; reported, not asserted
    # torchvision's maskrcnn_resnet50_fpn (eval, no_grad) beside our Mask R-CNN.
    config.benchmark.torchvision_reference = 'mask_rcnn'
  return config
