"""The generic trainer: resume exactness, divergence stop, a two-optimizer GAN task,
the workdir's config memory, task-owned evaluation."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import toy_tasks
from vision_jax.train import checkpoint as checkpoint_lib
from vision_jax.train import config as config_lib
from vision_jax.train import loop


def _train(workdir, task, config):
  trainer = loop.Trainer(config, str(workdir), task=task)
  try:
    state, _ = trainer.train()
  finally:
    trainer.checkpoints.close()
  return state


def _leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(state)]


def test_interrupted_and_resumed_run_ends_with_identical_state(tmp_path):
  config = toy_tasks.toy_config(steps=6, checkpoint_every=2)
  straight = _train(tmp_path / 'straight', toy_tasks.ToyRegressionTask(config), config)

  with pytest.raises(KeyboardInterrupt):
    _train(tmp_path / 'resumed', toy_tasks.ToyRegressionTask(config, fail_at_batch=3), config)
  saved = checkpoint_lib.Checkpoints(str(tmp_path / 'resumed'))
  assert saved.all_steps() == [2]
  saved.close()
  resumed = _train(tmp_path / 'resumed', toy_tasks.ToyRegressionTask(config), config)

  assert int(resumed.step) == 6
  for a, b in zip(_leaves(straight), _leaves(resumed), strict=True):
    np.testing.assert_array_equal(a, b)


def test_training_changes_parameters_and_lowers_loss(tmp_path):
  config = toy_tasks.toy_config(steps=40, checkpoint_every=40)
  task = toy_tasks.ToyRegressionTask(config)
  trainer = loop.Trainer(config, str(tmp_path), task=task)
  state0, _ = trainer.initial_state()
  batch = next(task.train_data(start_batch=0, process_index=0, process_count=1))
  loss0 = float(task.loss(state0.params, state0.model_state, batch, jax.random.key(0))[0])
  state, _ = trainer.train()
  trainer.checkpoints.close()
  loss1 = float(task.loss(state.params, state.model_state, batch, jax.random.key(0))[0])
  assert loss1 < 0.5 * loss0
  assert int(state.step) == 40


def test_nan_loss_stops_with_step_and_last_good_checkpoint(tmp_path):
  config = toy_tasks.toy_config(steps=8, checkpoint_every=2)
  with pytest.raises(loop.TrainingDivergedError, match=r'loss=nan at step 5.*checkpoints/4'):
    _train(tmp_path, toy_tasks.ToyRegressionTask(config, nan_at_batch=4), config)
  saved = checkpoint_lib.Checkpoints(str(tmp_path))
  assert saved.all_steps() == [2, 4]  # nothing diverged was saved, nothing good was lost
  saved.close()


def test_gan_task_with_two_named_optimizers_trains_and_resumes(tmp_path):
  config = toy_tasks.toy_gan_config(steps=4, checkpoint_every=2)
  task = toy_tasks.ToyGanTask(config)
  trainer = loop.Trainer(config, str(tmp_path), task=task)
  state0, _ = trainer.initial_state()
  state = _train(tmp_path, task, config)
  assert int(state.step) == 4
  assert set(state.opt_states) == {'generator', 'discriminator'}
  for part in ('generator', 'discriminator'):
    before, after = _leaves(state0.params[part]), _leaves(state.params[part])
    assert any(not np.allclose(a, b) for a, b in zip(before, after)), part
  # The EMA follows the generator only, lagging behind it.
  assert set(state.ema_params) == {'generator'}
  for ema, start, now in zip(_leaves(state.ema_params['generator']),
                             _leaves(state0.params['generator']),
                             _leaves(state.params['generator'])):
    if not np.allclose(start, now):
      assert not np.allclose(ema, start) and not np.allclose(ema, now)
  restored = loop.Trainer(config, str(tmp_path), task=task).restore()
  for a, b in zip(_leaves(state), _leaves(restored), strict=True):
    np.testing.assert_array_equal(a, b)


def test_minimize_updates_only_the_named_optimizers_parameters():
  config = toy_tasks.toy_gan_config()
  task = toy_tasks.ToyGanTask(config)
  state = task.init_state(jax.random.key(0), 10)
  noise = jax.random.normal(jax.random.key(1), (8, 2))
  real = np.full((8, 1), 3.0, np.float32)
  new, metrics = state.minimize(task.d_loss, noise, real, optimizers='discriminator')
  assert set(metrics) == {'d_loss'}
  for a, b in zip(_leaves(state.params['generator']), _leaves(new.params['generator'])):
    np.testing.assert_array_equal(a, b)
  assert any(not np.allclose(a, b) for a, b in zip(
      _leaves(state.params['discriminator']), _leaves(new.params['discriminator'])))
  np.testing.assert_array_equal(  # The generator's Adam state did not move either.
      _leaves(state.opt_states['generator'])[0], _leaves(new.opt_states['generator'])[0])
  with pytest.raises(ValueError, match=r"no optimizer named \['critic'\]"):
    state.minimize(task.d_loss, noise, real, optimizers='critic')


def test_nan_in_any_declared_loss_stops_training(tmp_path):
  config = toy_tasks.toy_gan_config(steps=4, checkpoint_every=2)
  task = toy_tasks.ToyGanTask(config)
  original = task.g_loss
  task.g_loss = lambda params, noise: original(params, noise * jnp.nan)
  with pytest.raises(loop.TrainingDivergedError, match=r'g_loss=nan at step 1'):
    _train(tmp_path, task, config)


def test_corrupt_checkpoint_is_reported_and_kept(tmp_path):
  config = toy_tasks.toy_config(steps=2, checkpoint_every=2)
  _train(tmp_path, toy_tasks.ToyRegressionTask(config), config)
  step_dir = tmp_path / 'checkpoints' / '2'
  for path in step_dir.rglob('*'):
    if path.is_file() and path.stat().st_size > 0 and 'metadata' not in path.name:
      path.write_bytes(b'garbage')
  trainer = loop.Trainer(config, str(tmp_path), task=toy_tasks.ToyRegressionTask(config))
  with pytest.raises(checkpoint_lib.CheckpointError, match=r'checkpoints/2 cannot be restored'):
    trainer.restore()
  assert step_dir.exists()


def _launch_train(workdir, config, allow=False):
  trainer = loop.Trainer(config, str(workdir), task=toy_tasks.ToyRegressionTask(config))
  try:
    trainer.remember_config(allow_change=allow)
    return trainer.train()
  finally:
    trainer.checkpoints.close()


def test_workdir_remembers_its_config_and_refuses_optimisation_changes(tmp_path):
  config = toy_tasks.toy_config(steps=4, checkpoint_every=2)
  _, results = _launch_train(tmp_path, config)
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['train']['steps'] == 4 and saved['optimizers']['model']['name'] == 'adam'
  assert json.loads((tmp_path / 'eval_results.json').read_text()) == {'step': 4, **results}

  changed = toy_tasks.toy_config(steps=6, checkpoint_every=2, log_every=3)
  changed.optimizers.model.learning_rate = 0.01
  with pytest.raises(config_lib.ConfigError) as error:
    _launch_train(tmp_path, changed)
  message = str(error.value)
  assert 'optimizers.model.learning_rate: 0.05 -> 0.01' in message
  assert 'train.steps: 4 -> 6' in message and 'log_every' not in message
  assert '--allow_config_change' in message
  assert checkpoint_lib.Checkpoints(str(tmp_path)).all_steps() == [2, 4]  # nothing lost

  # A change that leaves the optimisation alone is accepted.
  _launch_train(tmp_path, toy_tasks.toy_config(steps=4, checkpoint_every=2, log_every=3))

  # Allowed: the run continues to the new end; the former config is kept.
  state, _ = _launch_train(tmp_path, changed, allow=True)
  assert int(state.step) == 6
  assert json.loads((tmp_path / 'config.json').read_text())['train']['steps'] == 6
  assert json.loads((tmp_path / 'config.before_step_4.json').read_text())['train']['steps'] == 4


def test_evaluation_after_resuming_past_the_end_carries_the_true_step(tmp_path):
  _launch_train(tmp_path, toy_tasks.toy_config(steps=6, checkpoint_every=2))
  state, _ = _launch_train(tmp_path, toy_tasks.toy_config(steps=4, checkpoint_every=2),
                           allow=True)
  assert int(state.step) == 6
  assert json.loads((tmp_path / 'eval_results.json').read_text())['step'] == 6
