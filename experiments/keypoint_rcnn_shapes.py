r"""Keypoint R-CNN (R18-FPN, CPU-sized) on the embedded synthetic_shapes dataset.

`experiments/mask_rcnn_shapes.py` with the mask head replaced by a keypoint head that
predicts each shape's 4 extreme points (top, right, bottom, left) as 56 x 56 heatmaps.
Reaches keypoints/AP >= 0.5 on a 2-core CPU.

  python -m launch.train --config=experiments/keypoint_rcnn_shapes.py \
      --workdir=workdirs/keypoint_rcnn_shapes

Variants: `:tiny` (a few steps on the `tiny` builder config, for smoke tests).
"""
import os

from vision_jax.train import config as config_lib


def _mask_rcnn_shapes():
  return config_lib.load_module(
      os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mask_rcnn_shapes.py'))


def get_config(arg=None):
  config = _mask_rcnn_shapes().get_config(arg)
  config.model.mask_head = False
  config.model.keypoint_head = True
  # OKS sigmas of the 4 extreme points (COCO's person sigmas range 0.025..0.107).
  config.eval.keypoint_sigmas = (0.05, 0.05, 0.05, 0.05)
  return config
