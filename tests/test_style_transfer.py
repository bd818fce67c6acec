"""Fast style transfer (Johnson et al.) against Gatys: the objective, the Gatys loops,
the config variants, and the :tiny experiment end to end through the train launcher
(predict in-process, tests/launcher.predict)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from tests import launcher
from vision_jax.benchmarks import style_transfer as st_benchmark
from vision_jax.evaluation import style_transfer as st_eval
from vision_jax.nn import vgg_weights
from vision_jax.tasks import base
from vision_jax.train import config as config_lib
from vision_jax.train import state as state_lib

TINY = launcher.experiment('style_transfer.py', 'tiny')
WEIGHTS = st_eval.LossWeights(content=1.0, style=1e5, tv=1.0,
                              style_layers={t: 1.0 for t in st_eval.STYLE_LAYERS})
# Measured on the tiny run (2 CPU cores): the untrained net's held-out total ~690, after 60
# steps ~85 (Gatys after 20 updates ~21). Learning must at least halve the loss.
MAX_TRAINED_OVER_UNTRAINED = 0.5


@pytest.fixture(scope='module')
def objective():
  rng = np.random.default_rng(0)
  style = rng.integers(0, 256, (40, 48, 3), np.uint8)
  return st_eval.PerceptualObjective.create(style, WEIGHTS, vgg_weights.vgg16_variables())


def _images(n, size=32, seed=1):
  return jnp.asarray(np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)),
                     jnp.float32)


def test_per_image_parts_are_each_images_own_loss(objective):
  contents, outputs = _images(3), _images(3, seed=2)
  parts = objective.per_image(outputs, contents)
  assert set(parts) == set(st_eval.PARTS) and parts['total'].shape == (3,)
  np.testing.assert_allclose(parts['total'], parts['content'] + parts['style'] + parts['tv'],
                             rtol=1e-6)
  one = objective.per_image(outputs[1:2], contents[1:2])
  for part in st_eval.PARTS:
    np.testing.assert_allclose(parts[part][1], one[part][0], rtol=1e-5)
  total, means = objective.mean_total(outputs,
                                      content_features=objective.content_features(contents))
  np.testing.assert_allclose(total, np.mean(parts['total']), rtol=1e-6)
  assert set(means) == set(st_eval.PARTS)
  # The content image's own content loss is zero.
  assert float(objective.per_image(contents, contents)['content'].max()) == 0.0


def test_gatys_lowers_the_loss_and_stops_at_a_target(objective):
  contents = _images(2)
  images, history = jax.jit(lambda x: st_eval.gatys(
      objective, x, iterations=8, learning_rate=0.03))(contents)
  assert history.shape == (9, 2) and images.shape == contents.shape
  assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
  assert np.all(history[-1] < 0.7 * history[0])
  np.testing.assert_allclose(history[-1], objective.per_image(images, contents)['total'],
                             rtol=1e-4)
  # Stops at the first iterate at or under the target: here the loss after 3 updates.
  target = history[3] * (1 + 1e-5)
  _, done, totals = jax.jit(lambda x, t: st_eval.gatys_until(
      objective, x, t, max_iterations=8, learning_rate=0.03))(contents, target)
  assert int(done) <= 3 and np.all(totals <= target)
  _, done, _ = st_eval.gatys_until(objective, contents, jnp.zeros(2), max_iterations=4,
                                   learning_rate=0.03)
  assert int(done) == 4  # An unreachable target: the whole budget.


@pytest.mark.parametrize('variant', [None, 'tiny', 'coco'])
def test_config_variants_load(variant):
  config = config_lib.load_config(launcher.experiment('style_transfer.py', variant))
  assert config.task == 'style_transfer'
  assert config.optimizers.model.name == 'adam'
  assert config.data.dataset == ('coco/2017' if variant == 'coco' else 'bundled_photos')
  with pytest.raises(ValueError, match='variants'):
    config_lib.load_config(launcher.experiment('style_transfer.py', 'huge'))


def test_task_state_holds_the_transform_net_only_and_bad_configs(tmp_path):
  config = config_lib.load_config(TINY)
  task = base.create_task(config)
  state = jax.eval_shape(lambda key: task.init_state(key, 10), jax.random.key(0))
  paths = [state_lib.param_path(k)
           for k in state_lib._flat(state.params)]  # pylint: disable=protected-access
  assert paths and all(p.startswith('transform/') for p in paths)
  assert not any('conv1_1' in str(leaf_path) for leaf_path, _ in
                 jax.tree_util.tree_leaves_with_path(state))  # No VGG in the state.
  batch = task.prediction_batch({'image': np.zeros((50, 70, 3), np.uint8)})
  assert batch['image'].shape == (1, 64, 64, 3)
  with pytest.raises(base.PredictionRequestError, match='--image'):
    task.prediction_batch({'image': None})

  missing = str(tmp_path / 'no_such_style.jpg')
  config = config_lib.load_config(TINY, [f'style.image_path={missing}'])
  with pytest.raises(config_lib.ConfigError, match='no_such_style.jpg'):
    base.create_task(config)
  path = tmp_path / 'style.png'
  Image.fromarray(np.full((30, 90, 3), 200, np.uint8)).save(path)
  config = config_lib.load_config(TINY, [f'style.image_path={path}'])
  assert base.create_task(config).style_image.shape == (64, 192, 3)  # Shorter side 64.
  for override, match in (['predict.image_size=(62,64)', 'multiple of 4'],
                          ['style.photo=mona_lisa', 'no bundled photo']):
    with pytest.raises(config_lib.ConfigError, match=match):
      base.create_task(config_lib.load_config(TINY, [override]))


@pytest.mark.slow(seconds=110)
def test_tiny_trains_beats_its_untrained_net_and_stylises_a_file(tmp_path):
  data_dir, workdir = tmp_path / 'tfds', tmp_path / 'work'
  code, log = launcher.launch('train', TINY, f'--workdir={workdir}', data_dir=data_dir)
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  for key in ('style/transform_total_loss', 'style/transform_content_loss',
              'style/transform_style_loss', 'style/transform_tv_loss',
              'style/gatys_total_loss_at_20', 'style/transform_over_gatys_at_20',
              'style/gatys_best_total_loss', 'style/content_image_total_loss'):
    assert np.isfinite(results[key]), key
  assert results['style/gatys_total_loss_at_20'] < results['style/content_image_total_loss']
  # 3 rows of content | transform | Gatys | style at 64 px, 2-px gaps.
  assert Image.open(workdir / 'predictions.png').size == (4 * 66 - 2, 3 * 66 - 2)

  # The untrained net on the same held-out images (the trainer's initialisation key).
  config = config_lib.load_config(TINY, [f'data.data_dir={data_dir}'])
  task = base.create_task(config)
  init_key = jax.random.split(jax.random.key(config.seed), 3)[0]
  state = task.init_state_once(init_key, 1)  # as the trainer
  untrained = float(np.mean(task.transform_losses(state.params,
                                                  task.content_images())['total']))
  assert results['style/transform_total_loss'] < MAX_TRAINED_OVER_UNTRAINED * untrained, (
      results, untrained)

  photo = np.random.default_rng(0).integers(0, 255, (80, 100, 3), np.uint8)
  Image.fromarray(photo).save(tmp_path / 'photo.png')
  out = tmp_path / 'stylised.png'
  launcher.predict(TINY, workdir, out, image=tmp_path / 'photo.png', data_dir=data_dir)
  assert Image.open(out).size == (2 * 66 - 2, 64)  # content | stylised at 64 x 64.
  # A missing style image is refused in-process above (the launcher's exit code 2 for a
  # ConfigError is checked once, in tests/test_centernet_end_to_end.py).


def test_benchmark_reports_both_sides_and_the_ratio():
  results = st_benchmark.run(launcher.experiment('style_transfer.py', 'tiny'), size=32,
                             repeats=1, max_iterations=3)
  assert results['transform_s'] > 0 and results['gatys_s'] > 0
  assert not results['trained'] and 0 <= results['gatys_iterations'] <= 3
  assert results['speedup_transform_net_over_gatys'] == pytest.approx(
      results['gatys_s'] / results['transform_s'])
  assert results['measurements'][0]['target_speedup'] == st_benchmark.TARGET_SPEEDUP
