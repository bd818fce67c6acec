r"""UPSNet R50-FPN 1x on COCO 2017 panoptic (TFDS `coco/2017_panoptic`): the reference's
upsnet_resnet50_coco_16gpu recipe.

Reads the TFDS catalog dataset coco/2017_panoptic, prepared beforehand in the data_dir
(`tfds build coco/2017_panoptic --data_dir=DIR`; the error says which zips to place
where when it is absent); nothing is downloaded. Things are COCO's 80 detection classes,
stuff its 53 panoptic stuff classes (`vision_jax.data.sources.coco`).

  python -m launch.train --config=experiments/upsnet_coco.py \
      --workdir=workdirs/upsnet_coco --config.data.data_dir=/data/tensorflow_datasets \
      --config.init.torchvision_checkpoint=/weights/resnet50-0676ba61.pth

Writes eval_results.json with panoptic/PQ, PQ_th, PQ_st (and SQ, RQ) beside box/AP and
mask/AP of the instance branch (scored against the original annotations), and the COCO
panoptic files to re-score with panopticapi.

Recipe (uber-research/UPSNet upsnet/experiments/upsnet_resnet50_coco_16gpu.yaml): 90k
steps at batch 16, SGD momentum 0.9, lr 0.02, weight decay 1e-4, linear warmup over 1500
steps, lr x0.1 at 60k and 80k; semantic (FCN) loss weight 0.2, panoptic loss weight 0.1,
70% of the ground-truth boxes kept in the panoptic head (drop_fraction 0.3); at test,
detections with a score >= 0.6 enter the panoptic head and stuff segments under 4096
pixels become void. Mask R-CNN's parts keep detectron2's R50-FPN sizes (frozen
BatchNorm, 512 RoIs per image, 100 detections). The reference trains from a Caffe
ImageNet ResNet-50; `init.torchvision_checkpoint` starts from torchvision's (backbone
only) or a whole maskrcnn_resnet50_fpn checkpoint. Images are resized (aspect kept) into
a 1024 x 1024 canvas (static shapes; the reference uses shortest edge 800, longest
<= 1333). Not reproduced: the reference's extra RoI-cropped semantic loss
(fcn_with_roi_loss).
"""
import ml_collections

from vision_jax.models import upsnet


def get_config(arg=None):
  variant = arg or 'default'
  if variant != 'default':
    raise ValueError(f"upsnet_coco has one variant, 'default', not {variant!r}")
  config = ml_collections.ConfigDict()
  config.task = 'upsnet'
  config.seed = 0
  config.kernels = 'auto'  # 'cpu' | 'plain': vision_jax.ops.backend

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'coco/2017_panoptic'
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.image_size = (1024, 1024)
  config.data.max_instances = 100
  config.data.hflip_prob = 0.5
  config.data.scale_range = (1.0, 1.0)

  config.init = ml_collections.ConfigDict()
  config.init.torchvision_checkpoint = ml_collections.config_dict.placeholder(str)

  # Every field of vision_jax.models.upsnet.UPSNetConfig: detectron2's R50-FPN Mask
  # R-CNN plus the semantic (128 wide, deformable) and panoptic heads.
  config.model = ml_collections.ConfigDict(upsnet.config_dict(
      semantic_channels=128,
      detections_per_image=100,
      panoptic_detections=100,
      panoptic_score_threshold=0.6,
      min_stuff_area=4096))

  # Mask R-CNN's terms at 1 (the reference's), the semantic (fcn_loss_weight) and
  # panoptic terms, and 1 - panoptic_box_keep_fraction.
  config.loss = ml_collections.ConfigDict(dict(
      semantic_weight=0.2, panoptic_weight=0.1, drop_fraction=0.3))

  config.optimizers = ml_collections.ConfigDict()
  config.optimizers.model = ml_collections.ConfigDict(dict(
      name='sgd', learning_rate=0.02, momentum=0.9, weight_decay=1e-4, decay_params='all',
      warmup_steps=1500, schedule='step', decay_steps=(60000, 80000), decay_factor=0.1))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 90000
  config.train.batch_size = 16
  config.train.log_every = 20
  config.train.checkpoint_every = 2000
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 2  # pasted masks are [batch, 100, 1024, 1024]
  config.eval.num_pictures = 8
  config.eval.draw_upscale = 1
  config.eval.draw_score_threshold = 0.5
  return config
