r"""CenterNet ResNet-18 on COCO 2017, the paper's recipe (512x512, batch 114, Adam 5e-4,
140 epochs with 10x drops at 90 and 120 epochs). Runs when coco/2017 is prepared in the
TFDS data_dir (`tfds build coco/2017 --data_dir=DIR`); nothing is downloaded.

  python -m launch.train --config=experiments/centernet_coco.py \
      --workdir=workdirs/centernet_coco --config.data.data_dir=DIR
"""
import ml_collections

COCO_TRAIN2017_IMAGES = 118287  # examples in TFDS coco/2017 'train'


def get_config(arg=None):
  del arg
  config = ml_collections.ConfigDict()
  config.task = 'centernet'
  config.seed = 0
  config.kernels = 'auto'  # 'cpu' | 'plain': vision_jax.ops.backend

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'coco/2017'
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.image_size = (512, 512)
  config.data.max_instances = 128
  config.data.hflip_prob = 0.5
  config.data.scale_range = (0.6, 1.4)

  config.model = ml_collections.ConfigDict()
  config.model.backbone = 'resnet18'
  config.model.width = 64
  config.model.neck_channels = (256, 128, 64)
  config.model.head_channels = 64
  config.model.norm = 'batch'
  config.model.dtype = 'float32'

  config.loss = ml_collections.ConfigDict()
  config.loss.heatmap_weight = 1.0
  config.loss.size_weight = 0.1
  config.loss.offset_weight = 1.0
  # The paper's weights were tuned with the official RegL1Loss, which averages over the
  # (w, h) entries: 'elements' keeps size_weight 0.1 meaning what it meant there.
  config.loss.normalize = 'elements'

  # 140 epochs, x0.1 at epochs 90 and 120: the boundaries are fractions of train.steps,
  # and train.steps follows train.batch_size (both stay right under an override).
  config.optimizers = ml_collections.ConfigDict()
  config.optimizers.model = ml_collections.ConfigDict(dict(
      name='adam', learning_rate=5e-4, warmup_steps=0, schedule='step',
      decay_fractions=(90 / 140, 120 / 140), decay_factor=0.1))

  config.train = ml_collections.ConfigDict()
  batch_size = ml_collections.FieldReference(114)
  config.train.batch_size = batch_size
  config.train.steps = 140 * (COCO_TRAIN2017_IMAGES // batch_size)
  config.train.log_every = 100
  config.train.checkpoint_every = 5000
  config.train.keep_checkpoints = 3
  config.train.eval_every = 10 * (COCO_TRAIN2017_IMAGES // batch_size)

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 32
  config.eval.max_detections = 100
  config.eval.num_pictures = 8
  config.eval.draw_upscale = 1
  config.eval.draw_score_threshold = 0.3
  return config
