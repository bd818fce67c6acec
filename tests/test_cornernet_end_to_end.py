"""Keypoint-triplet CenterNet (the CornerNet task with its center head) through the
launcher: train, evaluate (COCO AP and the false-discovery rate); predict (in-process,
tests/launcher.predict); bad sizes."""
import json
import re

import numpy as np
from PIL import Image
import pytest

from tests import launcher
from vision_jax.tasks import base
from vision_jax.train import config as config_lib

CONFIG = launcher.experiment('centernet_triplets_shapes.py', 'tiny')

# box/AP50 on the tiny validation split after the tiny config's 160 steps: 0.355 measured
# (seed 0, 2-core CPU); the untrained model scores 0.000. Learning must clear this.
MIN_TRAINED_AP50 = 0.15


@pytest.mark.slow(seconds=233)
def test_train_evaluate_predict_and_bad_sizes(tmp_path):
  data_dir, workdir = tmp_path / 'tfds', tmp_path / 'work'
  code, log = launcher.launch('train', CONFIG, f'--workdir={workdir}', data_dir=data_dir)
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert results['step'] == 160
  assert results['box/AP50'] >= MIN_TRAINED_AP50, results  # learning happened
  assert 0.0 <= results['box/false_discovery_rate'] <= 1.0
  assert (workdir / 'predictions.png').exists()

  image = tmp_path / 'in.png'
  Image.fromarray(np.full((100, 150, 3), 128, np.uint8)).save(image)
  launcher.predict(CONFIG, workdir, tmp_path / 'out.png', image=image, data_dir=data_dir)
  assert Image.open(tmp_path / 'out.png').size == (128 * 3, round(100 * 128 / 150) * 3)

  # Checked in-process (a ConfigError is the launchers' exit code 2 without a traceback,
  # tested once in tests/test_centernet_end_to_end.py).
  config = config_lib.load_config(CONFIG, ['data.image_size=(112,112)',
                                           f'data.data_dir={data_dir}'])
  with pytest.raises(config_lib.ConfigError,
                     match=re.escape('data.image_size (112, 112) must be multiples of 32')):
    base.create_task(config)
