r"""RetinaFace (R18-FPN + SSH, CPU-sized) on the embedded synthetic_faces: face boxes, 5
landmarks and the 68-point mesh in 160 x 160 images of 1-6 faces.

  python -m launch.train --config=experiments/retinaface_faces.py \
      --workdir=workdirs/retinaface_faces

Writes eval_results.json with box/AP, box/AP50, box/AP50_easy / _medium / _hard,
landmarks5/NME and mesh/NME (inter-ocular, on faces detected at IoU >= 0.5).

Variants after the colon, comma-separated:
  (none)      every branch, the whole train split.
  box_only    without the landmark and mesh branches (and their losses).
  small_data  10% of the train split (300 images) for 1000 steps (53 epochs): with
              box_only, the two rows of the multi-task ablation in the README.
  tiny        a few steps of a small model on `synthetic_faces/tiny` (tests).
Levels C2..C4 (strides 4 / 8 / 16) with two square anchors each cover faces of 10 to
90 pixels (the reference's C3..C5 with 16..512 pixel anchors is sized for 640 inputs).
"""
import ml_collections

from vision_jax.models import retinaface

TOKENS = ('box_only', 'small_data', 'tiny')


def get_config(arg=None):
  tokens = [t for t in (arg or '').split(',') if t and t != 'default']
  unknown = [t for t in tokens if t not in TOKENS]
  if unknown:
    raise ValueError(f'retinaface_faces variants are comma-separated tokens of {TOKENS}, '
                     f'not {arg!r}')
  tiny, box_only = 'tiny' in tokens, 'box_only' in tokens

  config = ml_collections.ConfigDict()
  config.task = 'retinaface'
  config.seed = 0
  config.kernels = 'auto'  # 'cpu' | 'plain': vision_jax.ops.backend

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'synthetic_faces/tiny' if tiny else 'synthetic_faces'
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.train_split = 'train[:10%]' if 'small_data' in tokens else 'train'
  config.data.eval_split = 'validation'
  config.data.image_size = (96, 96) if tiny else (160, 160)
  config.data.max_instances = 6
  config.data.hflip_prob = 0.5
  config.data.scale_range = (0.8, 1.25)

  config.model = ml_collections.ConfigDict(retinaface.config_dict(
      num_landmarks=0 if box_only else 5,
      num_mesh_points=0 if box_only else 68,
      backbone='resnet18',
      width=8 if tiny else 32,
      norm='batch',
      in_levels=('C2', 'C3', 'C4'),
      fpn_channels=16 if tiny else 64,
      anchor_sizes=((10.0, 16.0), (24.0, 40.0), (64.0, 100.0)),
      detections_per_image=20,
      pre_nms_top_k=400,
  ))

  config.loss = ml_collections.ConfigDict()
  for name, weight in (('class', 1.0), ('box', 0.25), ('points', 0.1), ('mesh', 0.01)):
    config.loss[f'{name}_weight'] = weight
  config.loss.points_beta = 1.0  # smooth-L1 transition of the point codes (reference: 1)

  config.optimizers = ml_collections.ConfigDict()
  config.optimizers.model = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=2e-3, weight_decay=1e-4, decay_params='kernels',
      warmup_steps=20 if tiny else 100, schedule='cosine', grad_clip_norm=10.0))

  config.train = ml_collections.ConfigDict()
  config.train.steps = 150 if tiny else (1000 if 'small_data' in tokens else 2500)
  config.train.batch_size = 8 if tiny else 16
  config.train.log_every = 25 if tiny else 100
  config.train.checkpoint_every = 150 if tiny else 500
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 8 if tiny else 50
  config.eval.size_bins = (0.1, 0.25)  # synthetic_faces' hard / easy height fractions
  config.eval.num_pictures = 8
  config.eval.draw_upscale = 3
  config.eval.draw_score_threshold = 0.5
  return config
