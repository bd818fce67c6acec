r"""CornerNet Hourglass-104 on COCO 2017, the paper's recipe: 2 stacks, 511 px inputs (512
here: the hourglass halves five times from stride 4), batch 49, Adam 2.5e-4 for 500k
iterations with a 10x drop for the last 50k, random scales 0.6-1.3 and flips. Runs when
coco/2017 is prepared in the TFDS data_dir (`tfds build coco/2017 --data_dir=DIR`);
nothing is downloaded.

  python -m launch.train --config=experiments/cornernet_coco.py \
      --workdir=workdirs/cornernet_coco --config.data.data_dir=DIR

`experiments/centernet_triplets_coco.py` is the keypoint-triplet recipe on the same base.
"""
import ml_collections

from vision_jax.models import cornernet


def get_config(arg=None, *, centers: bool = False, steps: int = 500_000,
               drop_at: int = 450_000, batch_size: int = 49,
               scale_range=(0.6, 1.3), **model):
  del arg
  config = ml_collections.ConfigDict()
  config.task = 'cornernet'
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
  config.data.scale_range = scale_range

  # CornerNetConfig's defaults are Hourglass-104 and the references' decoding.
  config.model = ml_collections.ConfigDict(cornernet.config_dict(centers=centers, **model))

  config.loss = ml_collections.ConfigDict(
      {f'{name}_weight': weight for name, weight in (
          ('heatmap', 1.0), ('pull', 0.1), ('push', 0.1), ('offset', 1.0))})

  config.optimizers = ml_collections.ConfigDict()
  config.optimizers.model = ml_collections.ConfigDict(dict(
      name='adam', learning_rate=2.5e-4, warmup_steps=0, schedule='step',
      decay_fractions=(drop_at / steps,), decay_factor=0.1))

  config.train = ml_collections.ConfigDict()
  config.train.steps = steps
  config.train.batch_size = batch_size
  config.train.log_every = 100
  config.train.checkpoint_every = 5000
  config.train.keep_checkpoints = 3
  config.train.eval_every = 50_000

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 16
  config.eval.num_pictures = 8
  config.eval.draw_upscale = 1
  config.eval.draw_score_threshold = 0.3
  return config
