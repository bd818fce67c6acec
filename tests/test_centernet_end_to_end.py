"""CenterNet through every room via the launchers: train, export, resume, evaluate, predict,
bad input."""
import json
import os

import numpy as np
from PIL import Image
import pytest

from tests import launcher
from tests import test_export
from tests import test_launch_output
from vision_jax.data import single_image
from vision_jax.tasks import base

CONFIG = launcher.experiment('centernet_shapes.py', 'tiny')


def _launch(module, *args, data_dir, **kwargs):
  return launcher.launch(module, CONFIG, *args, data_dir=data_dir, **kwargs)


# box/AP50 on the tiny validation split after the tiny config's 160 steps: 0.09 and 0.049
# in two measurements (seed 0, 2-core CPU); the untrained model scores 0.000. Learning
# must clear this.
MIN_TRAINED_AP50 = 0.03


@pytest.mark.slow(seconds=88)
def test_train_evaluate_predict_and_bad_inputs(tmp_path):
  data_dir, workdir = tmp_path / 'tfds', tmp_path / 'work'
  code, log = _launch('train', f'--workdir={workdir}', data_dir=data_dir)
  assert code == 0, log[-3000:]
  test_launch_output.check_quiet_train_log(log, steps=160)
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert results['step'] == 160
  assert results['box/AP50'] >= MIN_TRAINED_AP50, results  # learning happened
  for name in ('coco_detections.json', 'coco_ground_truth.json', 'predictions.png',
               'config.json'):
    assert (workdir / name).exists(), name
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['160', '80']

  # launch.export on this workdir (test_export's CenterNet case, sharing this training).
  test_export.check_centernet_export(workdir, data_dir, tmp_path, step=160)

  # Resuming with more steps changes the schedule: refused, naming the key, unless allowed.
  code, log = _launch('train', f'--workdir={workdir}', '--config.train.steps=168',
                      data_dir=data_dir)
  assert code == 2 and 'train.steps: 160 -> 168' in log and '--allow_config_change' in log
  assert 'Traceback' not in log
  code, log = _launch('train', f'--workdir={workdir}', '--config.train.steps=168',
                      '--allow_config_change', data_dir=data_dir)
  assert code == 0, log[-3000:]
  assert 'Resuming from' in log and '/checkpoints/160' in log
  assert json.loads((workdir / 'eval_results.json').read_text())['step'] == 168
  assert (workdir / 'config.before_step_160.json').exists()

  code, log = _launch('evaluate', f'--workdir={workdir}', '--step=80', data_dir=data_dir)
  assert code == 0, log[-3000:]
  assert json.loads((workdir / 'eval_results.json').read_text())['step'] == 80

  image = tmp_path / 'in.png'
  Image.fromarray(np.full((100, 150, 3), 128, np.uint8)).save(image)
  code, log = _launch('predict', f'--workdir={workdir}', f'--image={image}',
                      f'--output={tmp_path / "out.png"}', data_dir=data_dir,
                      report_modules=['tensorflow'])
  assert code == 0, log[-3000:]
  assert 'imported: tensorflow=False' in log, log  # a detection predict needs no TF
  scale = 128 / 150  # the tiny config's 128x128 input, aspect kept; drawn at 3x
  assert Image.open(tmp_path / 'out.png').size == (128 * 3, round(100 * scale) * 3)

  # Bad predict input, in-process: the launchers' exit code 2 for these errors is checked
  # by the unknown-key launch below (the same handler, launch/common.py).
  not_image = tmp_path / 'notes.txt'
  not_image.write_text('not an image')
  with pytest.raises(single_image.ImageReadError, match='notes.txt.* is not an image'):
    launcher.predict(CONFIG, workdir, tmp_path / 'x.png', image=not_image, data_dir=data_dir)
  with pytest.raises(base.PredictionRequestError, match='pass --image=FILE'):
    launcher.predict(CONFIG, workdir, tmp_path / 'x.png', data_dir=data_dir)

  code, log = _launch('train', f'--workdir={workdir}', '--config.train.stepz=3',
                      data_dir=data_dir)
  assert code == 2 and "unknown config key 'train.stepz'" in log and 'Traceback' not in log


def test_missing_catalog_dataset_names_data_dir_and_preparation(tmp_path):
  code, log = launcher.launch('train', launcher.experiment('centernet_coco.py'),
                              f'--workdir={tmp_path}/w', data_dir=f'{tmp_path}/empty_tfds')
  assert code == 2
  assert f'{tmp_path}/empty_tfds' in log and 'tfds build coco/2017' in log
  assert 'Traceback' not in log
