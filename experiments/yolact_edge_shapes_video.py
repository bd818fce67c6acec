r"""YolactEdge (R18-FPN, CPU-sized) on the embedded synthetic_shapes_video clips.

Shapes translate, rotate and scale across 10-frame clips at 128 x 128; every 5th frame
is a keyframe (whole backbone), the others reuse its P4 / P5 maps warped by FeatFlowNet.
Evaluation reports COCO's box and mask AP over all validation frames at keyframe
interval 5 and at interval 1 (every frame a keyframe), side by side.

  python -m launch.train --config=experiments/yolact_edge_shapes_video.py \
      --workdir=workdirs/yolact_edge_shapes_video

Training (one run, `vision_jax.tasks.yolact_edge`): YOLACT's losses on the current
frame, the feature-warping loss that trains the flow net from the start, and, from
`loss.transfer_start_step`, YOLACT's losses on the non-keyframe outputs too (the joint
fine-tuning). `loss.flow_weight` > 0 adds the ground-truth flow as extra supervision.

Variants
  :tiny   a small model on the `tiny` clips for end-to-end tests.
  :bench  YolactEdge R50-FPN at 544 x 544 (the paper's size, nearest multiple of 32) on
          these clips, for `python -m launch.benchmark
          --config=experiments/yolact_edge_shapes_video.py:bench`: the non-keyframe step
          vs the keyframe step on the same frames (target: 1.5x faster), and whole
          10-frame clips at keyframe interval 5 vs 1.
"""
import ml_collections

from vision_jax.models import yolact_edge

VARIANTS = ('default', 'tiny', 'bench')


def get_config(arg=None):
  variant = arg or 'default'
  if variant not in VARIANTS:
    raise ValueError(f'yolact_edge_shapes_video has variants {VARIANTS}, not {variant!r}')
  tiny = variant == 'tiny'
  bench = variant == 'bench'
  config = ml_collections.ConfigDict()
  config.task = 'yolact_edge'
  config.seed = 0
  config.kernels = 'auto'  # 'cpu' | 'plain': vision_jax.ops.backend

  config.data = ml_collections.ConfigDict()
  config.data.dataset = ('synthetic_shapes_video/tiny' if tiny
                         else 'synthetic_shapes_video')
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.image_size = (544, 544) if bench else (128, 128)
  config.data.max_instances = 8
  config.data.hflip_prob = 0.5
  config.data.max_gap = 4  # keyframe_interval - 1: the farthest a frame is from its key

  # Every field of vision_jax.models.yolact_edge.YolactEdgeConfig (YOLACT's + the flow
  # net's), sized as experiments/yolact_shapes.py.
  config.model = ml_collections.ConfigDict(yolact_edge.config_dict(
      keyframe_interval=5) if bench else yolact_edge.config_dict(
      backbone='resnet18',
      width=8 if tiny else 32,
      norm='batch',
      fpn_channels=16 if tiny else 64,
      num_prototypes=16 if tiny else 32,
      proto_channels=16 if tiny else 64,
      head_channels=16 if tiny else 64,
      anchor_scales=(12.0, 24.0, 48.0, 96.0, 192.0),
      anchor_reference_size=128,
      masks_per_image=32,
      flow_channels=16 if tiny else 64,
      flow_widths=(32, 32) if tiny else (128, 256),
      keyframe_interval=5))

  # YOLACT's weights, the non-keyframe copy of them (transfer), the warping loss, and
  # the optional ground-truth flow (0: off).
  config.loss = ml_collections.ConfigDict(dict(
      class_weight=1.0, box_weight=1.5, mask_weight=6.125, semantic_weight=1.0,
      transfer_weight=1.0, warp_weight=1.0, flow_weight=0.0,
      transfer_start_step=50 if tiny else 500,
      # From scratch, the non-keyframe losses also train the trunk (the reference
      # freezes it: it fine-tunes a trained YOLACT), and the warped maps are matched in
      # value (the reference: cosine). Measured on this config (k = 5 vs 1 mask/AP):
      # frozen + cosine 0.242 vs 0.274, trainable + cosine 0.252 vs 0.288, trainable +
      # mse 0.248 vs 0.273 (README).
      frozen_trunk=False, warp_distance='mse'))

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
  config.eval.batch_size = 2  # clips; masks are [clips, T, 100, H, W]
  config.eval.num_pictures = 5
  config.eval.draw_upscale = 3
  config.eval.draw_score_threshold = 0.5

  if bench:
    config.eval.batch_size = 1
    config.benchmark = ml_collections.ConfigDict(dict(
        mode='predict', batch_size=1,
        function_pairs=('non_keyframe/keyframe>=1.5', 'clip_k5/clip_k1')))
  return config
