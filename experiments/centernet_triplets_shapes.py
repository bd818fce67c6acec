r"""CenterNet with keypoint triplets (Duan et al. 2019) on the embedded synthetic_shapes.

  python -m launch.train --config=experiments/centernet_triplets_shapes.py \
      --workdir=workdirs/centernet_triplets_shapes

The `cornernet_shapes` recipe (same network size, data, schedule, decoding) plus the
center keypoint: center pooling and a center heatmap, cascade corner pooling, and the
central-region check at decoding. Variants as cornernet_shapes (`:tiny`).
"""
import importlib.util
import os


def _cornernet_shapes():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cornernet_shapes.py')
  spec = importlib.util.spec_from_file_location('cornernet_shapes', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg=None):
  return _cornernet_shapes().get_config(arg, centers=True)
