r"""CenterNet with keypoint triplets (Duan et al. 2019) on the embedded synthetic_shapes.

  python -m launch.train --config=experiments/centernet_triplets_shapes.py \
      --workdir=workdirs/centernet_triplets_shapes

The `cornernet_shapes` recipe (same network size, data, schedule, decoding) plus the
center keypoint: center pooling and a center heatmap, cascade corner pooling, and the
central-region check at decoding. Variants as cornernet_shapes (`:tiny`).
"""
import os

from vision_jax.train import config as config_lib


def _cornernet_shapes():
  return config_lib.load_module(
      os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cornernet_shapes.py'))


def get_config(arg=None):
  return _cornernet_shapes().get_config(arg, centers=True)
