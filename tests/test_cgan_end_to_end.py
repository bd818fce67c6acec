"""The class-conditional GAN through the launchers: train, task-owned evaluation with a
judge, predict by labels, and its bad inputs."""
import json
import re

import numpy as np
from PIL import Image
import pytest

from tests import launcher
from vision_jax.tasks import base

CONFIG = launcher.experiment('cgan_digits.py', 'tiny')
# The judge's accuracy on the tiny run's 100 samples: 0.98 measured after 300 steps;
# 0.12 after 20 (chance is 0.10). Learning must clear this.
MIN_TRAINED_CONDITIONING = 0.5


def _launch(module, *args, data_dir):
  return launcher.launch(module, CONFIG, *args, data_dir=data_dir)


@pytest.mark.slow(seconds=71)
def test_cgan_trains_is_judged_and_draws_labels(tmp_path):
  data_dir, workdir = tmp_path / 'tfds', tmp_path / 'work'
  code, log = _launch('train', f'--workdir={workdir}', data_dir=data_dir)
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert results['step'] == 300
  assert set(results) == {'step', 'cgan/judge_real_accuracy', 'cgan/conditioning_accuracy',
                          'cgan/frechet_distance', 'cgan/frechet_distance_floor'}
  assert results['cgan/judge_real_accuracy'] >= 0.9
  assert results['cgan/conditioning_accuracy'] >= MIN_TRAINED_CONDITIONING, results
  assert 0 < results['cgan/frechet_distance_floor'] < results['cgan/frechet_distance']
  # One row per class, 10 samples each, drawn at 2x with 2-pixel gaps.
  assert Image.open(workdir / 'predictions.png').size == (10 * 66 - 2, 10 * 66 - 2)
  caches = list((data_dir / 'judges').glob('digits_train_*.msgpack'))
  assert len(caches) == 1

  code, log = _launch('predict', f'--workdir={workdir}', '--labels=3,7',
                      f'--output={tmp_path / "grid.png"}', data_dir=data_dir)
  assert code == 0, log[-3000:]
  grid = np.asarray(Image.open(tmp_path / 'grid.png'))
  assert grid.shape == (2 * 66 - 2, 10 * 66 - 2, 3) and grid.max() > 128

  # Bad labels: the flag's parsing through the launcher, the rest in-process (the same
  # exit-code-2 handler, launch/common.py).
  code, log = _launch('predict', f'--workdir={workdir}', '--labels=3,x',
                      f'--output={tmp_path / "bad.png"}', data_dir=data_dir)
  assert code == 2 and 'labels are integers' in log and 'Traceback' not in log, log[-2000:]
  for labels, expected in (([3, 12], '[12] outside 0..9'), (None, '--labels')):
    with pytest.raises(base.PredictionRequestError, match=re.escape(expected)):
      launcher.predict(CONFIG, workdir, tmp_path / 'bad.png', labels=labels,
                       data_dir=data_dir)
  assert not (tmp_path / 'bad.png').exists()

  caches[0].write_bytes(b'\x00 not msgpack')
  code, log = _launch('evaluate', f'--workdir={workdir}', data_dir=data_dir)
  assert code == 2 and str(caches[0]) in log and 'Delete the file' in log, log[-2000:]
  assert 'Traceback' not in log

