r"""CenterNet with keypoint triplets (Duan et al. 2019), Hourglass-104 on COCO 2017: the
`cornernet_coco` recipe with the center keypoint (center pooling, cascade corner pooling,
the central-region check), batch 48, 480k iterations (a 10x drop at 450k), scales
0.6-1.4, the 70 best keypoints of each type, and CenterNet's gaussian radius rule at IoU
0.7 (Duankaiwen/CenterNet's sample code and CenterNet-104 config). Runs when coco/2017 is
prepared in the TFDS data_dir.

  python -m launch.train --config=experiments/centernet_triplets_coco.py \
      --workdir=workdirs/centernet_triplets_coco --config.data.data_dir=DIR
"""
import os

from vision_jax.train import config as config_lib


def _cornernet_coco():
  return config_lib.load_module(
      os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cornernet_coco.py'))


def get_config(arg=None):
  return _cornernet_coco().get_config(arg, centers=True, steps=480_000, drop_at=450_000,
                                      batch_size=48, scale_range=(0.6, 1.4),
                                      radius_rule='centernet', gaussian_iou=0.7, top_k=70)
