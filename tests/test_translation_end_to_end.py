"""pix2pix and CycleGAN through the train launcher on `synthetic_shapes/styles_tiny`:
train, the task-owned evaluation with the FCN-score judge; predict from a file
(tests/launcher.predict, in-process); bad inputs."""
import json

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from tests import catalog_metadata
from tests import launcher
from vision_jax.evaluation import translation
from vision_jax.tasks import base
from vision_jax.train import config as config_lib
from vision_jax.train import loop

PIX2PIX = launcher.experiment('pix2pix_shapes.py', 'tiny')
CYCLEGAN = launcher.experiment('cyclegan_shapes.py', 'tiny')
# Measured on the tiny runs (2 CPU cores): pix2pix l1 0.101, judge pixel accuracy 0.93
# (the judge on the real targets 0.92); CycleGAN a2b l1 0.089, judge 0.90. A grey
# untrained output is at l1 ~0.3; learning must clear these.
MAX_TRAINED_L1 = 0.15
MIN_TRAINED_JUDGE_ACCURACY = 0.75


def _write_png(path, array):
  Image.fromarray(np.asarray(array, np.uint8)).save(path)
  return path


@pytest.mark.slow(seconds=62)
def test_pix2pix_trains_is_judged_and_translates_a_label_map(tmp_path):
  data_dir, workdir = tmp_path / 'tfds', tmp_path / 'work'
  code, log = launcher.launch('train', PIX2PIX, f'--workdir={workdir}', data_dir=data_dir)
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert set(results) == {'step', *translation.TRANSLATION_KEYS}
  assert results['l1'] < MAX_TRAINED_L1, results
  assert results['judge/pixel_accuracy'] >= MIN_TRAINED_JUDGE_ACCURACY, results
  assert results['judge_real/pixel_accuracy'] >= MIN_TRAINED_JUDGE_ACCURACY, results
  # 8 rows of input | output | target at 2x (64 -> 128 px, 2-px gaps).
  assert Image.open(workdir / 'predictions.png').size == (3 * 130 - 2, 8 * 130 - 2)

  # A label map at another size: resized (nearest) to 64 x 64, drawn input | output.
  labels = np.zeros((80, 96, 3), np.uint8)
  labels[:40] = (70, 130, 180)
  labels[20:60, 30:70] = (220, 20, 60)
  out = tmp_path / 'translated.png'
  launcher.predict(PIX2PIX, workdir, out, image=_write_png(tmp_path / 'labels.png', labels),
                   data_dir=data_dir)
  assert Image.open(out).size == (2 * 130 - 2, 128)

  config = config_lib.load_config(PIX2PIX, ['data.image_size=(48,48)'])
  config.data.data_dir = str(data_dir)
  with pytest.raises(config_lib.ConfigError, match='must be a positive multiple of 64'):
    base.create_task(config)


@pytest.mark.slow(seconds=92)
def test_cyclegan_trains_unpaired_and_is_judged_both_ways(tmp_path):
  data_dir, workdir = tmp_path / 'tfds', tmp_path / 'work'
  code, log = launcher.launch('train', CYCLEGAN, f'--workdir={workdir}', data_dir=data_dir)
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert set(results) == {'step'} | {f'{d}/{k}' for d in ('a2b', 'b2a')
                                     for k in translation.TRANSLATION_KEYS}
  for direction in ('a2b', 'b2a'):
    assert results[f'{direction}/l1'] < MAX_TRAINED_L1, results
    assert results[f'{direction}/judge/pixel_accuracy'] >= MIN_TRAINED_JUDGE_ACCURACY
  # Rows of a | G_ab(a) | G_ba(G_ab(a)) | b.
  assert Image.open(workdir / 'predictions.png').size == (4 * 130 - 2, 8 * 130 - 2)
  assert len(list((data_dir / 'judges').glob('synthetic_shapes_styles_tiny_*.msgpack'))) == 2

  photo = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
  out = tmp_path / 'a2b2a.png'
  launcher.predict(CYCLEGAN, workdir, out, image=_write_png(tmp_path / 'a.png', photo),
                   data_dir=data_dir)
  assert Image.open(out).size == (3 * 130 - 2, 128)

  config = config_lib.load_config(CYCLEGAN, ['model.generator=vgg'])
  config.data.data_dir = str(data_dir)
  with pytest.raises(config_lib.ConfigError, match="config.model.generator='vgg'"):
    base.create_task(config)


@pytest.mark.parametrize('name', ['cyclegan_horse2zebra.py', 'cyclegan_facades.py'])
def test_catalog_configs_train_and_evaluate_under_mock_data(tmp_path, name):
  """The real-catalog recipes, shrunk (32 px, narrow networks, 2 steps), through the trainer
  on mocked cycle_gan records: unpaired test domains get the set-level metrics only."""
  config = config_lib.load_config(launcher.experiment(name))
  dataset = config.data.dataset
  root = catalog_metadata.write_metadata(
      str(tmp_path), dataset, num_examples=3, splits=('trainA', 'trainB', 'testA', 'testB'))
  config.data.data_dir = root
  config.data.image_size = (32, 32)
  config.model.generator_features = config.model.discriminator_features = 4
  config.model.generator_blocks = 1
  config.train.steps = config.train.checkpoint_every = 2
  config.eval.batch_size = 2
  with tfds.testing.mock_data(num_examples=3, data_dir=root):
    results = loop.train_and_evaluate(config, str(tmp_path / 'work'))
  assert {k for k in results if k != 'step'} == {
      f'{d}/{k}' for d in ('a2b', 'b2a') for k in ('sharpness_ratio', 'input_dependence')}
  assert all(np.isfinite(v) for v in results.values())
