"""Mask R-CNN and Keypoint R-CNN through the launchers: train, evaluate, predict."""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(module, config, *args, data_dir):
  out = subprocess.run(
      [sys.executable, '-m', f'launch.{module}',
       f'--config={os.path.join(ROOT, "experiments", config)}:tiny',
       f'--config.data.data_dir={data_dir}', *args],
      cwd=ROOT, capture_output=True, text=True, timeout=900)
  return out.returncode, out.stdout + out.stderr


def test_mask_rcnn_trains_evaluates_and_predicts(tmp_path):
  data_dir, workdir = tmp_path / 'tfds', tmp_path / 'work'
  code, log = _launch('train', 'mask_rcnn_shapes.py', f'--workdir={workdir}',
                      data_dir=data_dir)
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert results['step'] == 6
  for key in ('box/AP', 'mask/AP'):
    assert -1.0 <= results[key] <= 1.0, key
  detections = json.loads((workdir / 'coco_detections.json').read_text())
  assert detections and all('segmentation' in d for d in detections)
  assert (workdir / 'predictions.png').exists()

  image = tmp_path / 'in.png'
  Image.fromarray(np.full((96, 128, 3), 90, np.uint8)).save(image)
  code, log = _launch('predict', 'mask_rcnn_shapes.py', f'--workdir={workdir}',
                      f'--image={image}', f'--output={tmp_path / "out.png"}',
                      data_dir=data_dir)
  assert code == 0, log[-3000:]
  assert Image.open(tmp_path / 'out.png').size == (128 * 3, 96 * 3)


def test_keypoint_rcnn_trains_and_evaluates_keypoints(tmp_path):
  workdir = tmp_path / 'work'
  code, log = _launch('train', 'keypoint_rcnn_shapes.py', f'--workdir={workdir}',
                      '--config.train.checkpoint_every=6', data_dir=tmp_path / 'tfds')
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert -1.0 <= results['keypoints/AP'] <= 1.0 and 'mask/AP' not in results
  detections = json.loads((workdir / 'coco_detections.json').read_text())
  assert any(len(d.get('keypoints', ())) == 4 * 3 for d in detections)
