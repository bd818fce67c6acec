"""One pix2pix / CycleGAN train step changes every parameter of both players (each
optimizer only touches its own networks: `TrainState.minimize`, tests/test_trainer.py),
and nothing else of the state but the history pools, which fill from the fakes."""
import jax
import numpy as np
import pytest

from tests import launcher
from vision_jax.ops import backend
from vision_jax.tasks import base
from vision_jax.tasks import cyclegan
from vision_jax.train import config as config_lib
from vision_jax.train import state as state_lib

# 'rbg' keys: the same checks, much faster init compiles on CPU than threefry. Each
# program runs once (`backend.run_once`).
KEY = jax.random.key(0, impl='rbg')
STEP_KEY = jax.random.key(1, impl='rbg')


def _task(name, data_dir, **model):
  """The tiny config's task, its networks shrunk further (`model` overrides): compiling
  the step is what these tests pay for."""
  config = config_lib.load_config(launcher.experiment(name, 'tiny'))
  config.data.data_dir = str(data_dir)
  config.model.update(model)
  return base.create_task(config)


def _leaves(tree) -> dict:
  """{'generator/Conv_0/kernel': array, ...}"""
  return {state_lib.param_path(tuple(p.key for p in path)): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _changed(before, after, prefixes) -> tuple[set, set, set]:
  """(paths under `prefixes` that changed, paths elsewhere that changed, all paths under
  `prefixes`)."""
  a, b = _leaves(before), _leaves(after)
  moved = {k for k in a if not np.array_equal(a[k], b[k])}
  mine = {k for k in a if k.startswith(prefixes)}
  return moved & mine, moved - mine, mine


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('tfds')


def _images(seed, n=2):
  return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), np.uint8)


def test_pix2pix_step_updates_each_player_only(data_dir):
  task = _task('pix2pix_shapes.py', data_dir, generator_features=4, generator_max_features=8,
               discriminator_features=4)
  state = task.init_state_once(KEY, 10)
  new, metrics = backend.run_once(
      task.train_step, state, {'input': _images(1), 'target': _images(2)}, STEP_KEY)
  assert np.isfinite([float(v) for v in metrics.values()]).all()
  for network in ('generator', 'discriminator'):
    moved, _, mine = _changed(state.params, new.params, (network,))
    assert mine and moved == mine, sorted(mine - moved)[:5]
  assert int(new.step) == int(state.step)  # (the trainer advances it)
  assert set(new.opt_states) == {'generator', 'discriminator'}


def test_cyclegan_step_updates_each_player_only_and_fills_the_pools(data_dir):
  task = _task('cyclegan_shapes.py', data_dir, generator_features=4, generator_blocks=1,
               discriminator_features=4)
  state = task.init_state_once(KEY, 10)
  batch = {'a': _images(3, 4), 'b': _images(4, 4)}
  new, metrics = backend.run_once(task.train_step, state, batch, STEP_KEY)
  assert set(metrics) == {'g_loss', 'g_gan', 'g_cycle', 'g_identity', 'd_loss'}
  assert np.isfinite([float(v) for v in metrics.values()]).all()
  for prefix in cyclegan.GENERATORS + cyclegan.DISCRIMINATORS:
    moved, _, mine = _changed(state.params, new.params, (prefix,))
    assert mine and moved == mine, (prefix, sorted(mine - moved)[:5])
  # Four fakes each way entered the empty 50-image pools; the rest stays zeros.
  for name in ('fake_a', 'fake_b'):
    pool = new.model_state[cyclegan.POOL][name]
    assert int(pool['count']) == 4
    assert np.abs(np.asarray(pool['images'][:4])).sum() > 0
    assert not np.asarray(pool['images'][4:]).any()
  assert set(new.model_state) == {cyclegan.POOL}  # instance norms keep no statistics
