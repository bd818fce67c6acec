r"""UPSNet (R18-FPN, CPU-sized) on the embedded synthetic_shapes dataset: panoptic
segmentation of circles, squares and triangles (things) on sky and ground (stuff).

  python -m launch.train --config=experiments/upsnet_shapes.py --workdir=workdirs/upsnet_shapes

`experiments/mask_rcnn_shapes.py` (the same data, backbone, FPN and R-CNN heads) plus
the deformable semantic head and the panoptic head. Writes eval_results.json with
panoptic/PQ, PQ_th, PQ_st (and SQ, RQ) beside box/AP and mask/AP of the instance
branch, and the COCO panoptic files (panoptic_predictions.json + PNGs,
panoptic_ground_truth.json + PNGs) to re-score with panopticapi.

Variants after the colon:
  default     the embedded default (1,500 steps).
  no_unknown  the same without the unknown channel (and without dropping instances):
              the ablation row of the README.
  tiny        a small model on the `tiny` builder config for end-to-end tests
              (100 steps: compiling dominates its CI time; it learns measurably).
"""
import os

import ml_collections

from vision_jax.models import upsnet
from vision_jax.train import config as config_lib

VARIANTS = ('default', 'no_unknown', 'tiny')


def _mask_rcnn_shapes():
  return config_lib.load_module(
      os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mask_rcnn_shapes.py'))


def get_config(arg=None):
  variant = arg or 'default'
  if variant not in VARIANTS:
    raise ValueError(f'upsnet_shapes has variants {VARIANTS}, not {variant!r}')
  tiny = variant == 'tiny'
  config = _mask_rcnn_shapes().get_config('tiny' if tiny else None)
  config.task = 'upsnet'
  # Every field of vision_jax.models.upsnet.UPSNetConfig: Mask R-CNN's as set there,
  # plus the semantic and panoptic heads.
  config.model = ml_collections.ConfigDict(upsnet.config_dict(
      **config.model.to_dict(),
      semantic_channels=16 if tiny else 32,
      semantic_layers=3,
      unknown_channel=variant != 'no_unknown',
      panoptic_detections=10,
      panoptic_score_threshold=0.5,
      min_stuff_area=64))
  config.model.detections_per_image = 20

  # Mask R-CNN's terms at 1, the semantic and panoptic terms, and the instances left
  # out of the panoptic head per training image (the reference's 1 - 0.7).
  config.loss = ml_collections.ConfigDict(dict(
      semantic_weight=1.0, panoptic_weight=0.5, drop_fraction=0.3))
  if tiny:
    config.train.steps = 100
    config.train.checkpoint_every = 50
  else:
    config.train.steps = 1500
  return config
