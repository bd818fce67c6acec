"""Landmark models, losses and the landmark task: shapes, losses by hand, config errors,
and heatmap / integral / regression learning end to end (tiny)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import launcher
from vision_jax.losses import landmarks as landmark_losses
from vision_jax.models import landmarks as landmark_models
from vision_jax.ops import landmarks as landmark_ops
from vision_jax.train import config as config_lib
from vision_jax.tasks import base as tasks_base

EXPERIMENT = 'hourglass_faces.py'

# 'rbg' keys: same tests, much faster init compiles on CPU than threefry.
KEY = jax.random.key(0, impl='rbg')


@pytest.mark.parametrize('kind', landmark_models.KINDS)
def test_model_outputs_and_decoding_shapes(kind):
  model = landmark_models.LandmarkModel(kind=kind, num_points=5, num_stacks=2, features=16,
                                        depth=2, stem_widths=(8, 16), width=8)
  images = jnp.zeros((3, 64, 64, 3), jnp.uint8)
  variables = model.init(KEY, images)
  outputs = model.apply(variables, images)
  if kind == 'regression':
    assert outputs['coords'].shape == (3, 5, 2)
  else:
    assert outputs['heatmaps'].shape == (2, 3, 16, 16, 5)
  points = landmark_models.decode(outputs, kind=kind, image_size=64)
  assert points.shape == (3, 5, 2) and points.dtype == jnp.float32


def test_decode_of_target_maps_recovers_the_points_in_input_pixels():
  points = jnp.array([[[10.3, 20.7], [33.0, 5.2], [50.9, 60.1]]])
  maps = landmark_ops.gaussian_heatmaps(points / 4, jnp.ones((1, 3), bool), (16, 16), 1.0)
  decoded = landmark_models.decode({'heatmaps': maps[None]}, kind='heatmap', image_size=64)
  # The quarter-pixel rule: within a quarter heatmap pixel + half a cell's rounding.
  assert np.abs(np.asarray(decoded) - np.asarray(points)).max() <= 4 * 0.5


def test_stride_two_maps_and_dark_decoding_in_input_pixels():
  model = landmark_models.LandmarkModel(kind='heatmap', num_points=3, num_stacks=1,
                                        features=16, depth=2, stem_widths=(8, 16),
                                        heatmap_stride=2)
  images = jnp.zeros((1, 64, 64, 3), jnp.uint8)
  outputs = model.apply(model.init(KEY, images), images)
  assert outputs['heatmaps'].shape == (1, 1, 32, 32, 3)
  points = jnp.array([[[10.3, 20.7], [33.0, 15.2], [50.9, 40.1]]])
  maps = landmark_ops.gaussian_heatmaps(points / 2, jnp.ones((1, 3), bool), (32, 32), 1.5)
  decoded = landmark_models.decode({'heatmaps': maps[None]}, kind='heatmap', image_size=64,
                                   refine='dark', sigma=1.5)
  np.testing.assert_allclose(decoded, points, atol=0.01)
  with pytest.raises(ValueError, match='refinement'):
    landmark_models.decode({'heatmaps': maps[None]}, kind='heatmap', image_size=64,
                           refine='taylor')


def test_heatmap_mse_by_hand():
  targets = jnp.zeros((1, 2, 2, 2)).at[0, 0, 0, 0].set(1.0)
  maps = jnp.stack([targets, jnp.zeros((1, 2, 2, 2))])  # stack 0 exact, stack 1 zeros
  weights = jnp.ones((1, 2))
  # Stack 1 misses one unit over 8 elements.
  np.testing.assert_allclose(landmark_losses.heatmap_mse(maps, targets, weights), 1 / 8)
  # A zero weight on point 0 removes that map's error.
  np.testing.assert_allclose(
      landmark_losses.heatmap_mse(maps, targets, jnp.array([[0.0, 1.0]])), 0.0)


def test_coordinate_l1_by_hand():
  points = jnp.array([[[0.1, 0.2], [0.5, 0.5]]])
  targets = jnp.array([[[0.2, 0.4], [0.0, 0.0]]])
  np.testing.assert_allclose(
      landmark_losses.coordinate_l1(points, targets, jnp.array([[1.0, 0.0]])),
      (0.1 + 0.2) / 2, rtol=1e-6)
  stacked = jnp.stack([points, points])
  np.testing.assert_allclose(
      landmark_losses.coordinate_l1(stacked, targets, jnp.array([[1.0, 1.0]])),
      2 * (0.1 + 0.2 + 0.5 + 0.5) / 4, rtol=1e-6)


def _config(variant='tiny', *overrides):
  return config_lib.load_config(launcher.experiment(EXPERIMENT, variant), list(overrides))


@pytest.mark.parametrize('overrides, message', [
    (('model.num_points=5',), r'model.num_points=5 but .*mesh68.* has 68 landmarks'),
    (('data.dataset=synthetic_shapes/tiny',), r'no landmark adapter .*synthetic_shapes'),
    (('data.points=landmarks98',), r"no landmark set 'landmarks98'"),
    (('data.image_size=(72, 72)',), r'multiple of 16'),
    (('model.kind=pose',), r"model.kind='pose'"),
    (('model.heatmap_stride=2', 'data.image_size=(60, 60)'), r'multiple of 8'),
    (('model.heatmap_stride=3',), r'model.heatmap_stride=3'),
    (('eval.heatmap_refinement=taylor',), r"heatmap_refinement='taylor'"),
])
def test_bad_configs_are_named(tmp_path, overrides, message):
  config = _config('tiny', f'data.data_dir={tmp_path}', *overrides)
  with pytest.raises(config_lib.ConfigError, match=message):
    tasks_base.create_task(config)


def test_variants_are_checked():
  assert _config('regression,tiny').model.kind == 'regression'
  assert _config('integral').model.kind == 'integral'
  assert _config().data.dataset == 'synthetic_faces/crops_tiny'
  with pytest.raises(ValueError, match='at most one'):
    _config('regression,integral')


@pytest.fixture(scope='module')
def mean_shape_nme(tmp_path_factory):
  """NME on the crops the tiny variant scores (its 16 training crops) of the best
  constant guess, the mean shape: the level of a model that ignores its input."""
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  config = _config('tiny', f'data.data_dir={data_dir}')
  task = tasks_base.create_task(config)
  train = next(iter(task.split_data('train', False, 16)))
  mean = train['landmarks'][..., :2].mean(axis=0)
  evaluator = task.make_evaluator()
  for batch in task.eval_data(process_index=0, process_count=1):
    evaluator.add(batch, {'landmarks': np.broadcast_to(mean, batch['landmarks'][..., :2].shape)})
  return data_dir, evaluator.evaluate()['landmarks/NME']


@pytest.mark.slow(seconds=41)
# The heatmap row runs by default; the regression and integral rows (the same launcher,
# task and evaluation with another head and loss, each unit-tested) in the extended tier.
@pytest.mark.parametrize('variant, steps', [
    ('tiny', 300),
    pytest.param('regression,tiny', 300, marks=pytest.mark.extended),
    pytest.param('integral,tiny', 120, marks=pytest.mark.extended)])
def test_each_row_learns_end_to_end(tmp_path, mean_shape_nme, variant, steps):
  """Learning happened: the NME beats the mean shape's (0.26; untrained models are far
  worse; measured after 300 steps: heatmap 0.16, regression 0.13, integral 0.05, so
  integral trains 120 to keep CI short)."""
  data_dir, baseline = mean_shape_nme
  workdir = tmp_path / 'work'
  code, log = launcher.launch('train', launcher.experiment(EXPERIMENT, variant),
                              f'--workdir={workdir}', f'--config.train.steps={steps}',
                              f'--config.train.checkpoint_every={steps}', data_dir=data_dir)
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert results['landmarks/num_faces'] == 16
  assert results['landmarks/NME'] < baseline, (baseline, results)
  assert (workdir / 'predictions.png').exists()
