"""The generic trainer: resume exactness, divergence stop, a two-optimizer GAN task."""
import jax
import numpy as np
import pytest

from tests import toy_tasks
from vision_jax.train import checkpoint as checkpoint_lib
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
  loss0 = float(task.loss(state0.params, state0, batch, jax.random.key(0))[0])
  state, _ = trainer.train()
  trainer.checkpoints.close()
  loss1 = float(task.loss(state.params, state, batch, jax.random.key(0))[0])
  assert loss1 < 0.5 * loss0


def test_nan_loss_stops_with_step_and_last_good_checkpoint(tmp_path):
  config = toy_tasks.toy_config(steps=8, checkpoint_every=2)
  with pytest.raises(loop.TrainingDivergedError, match=r'at step 5.*checkpoints/4'):
    _train(tmp_path, toy_tasks.ToyRegressionTask(config, nan_at_batch=4), config)
  saved = checkpoint_lib.Checkpoints(str(tmp_path))
  assert saved.all_steps() == [2, 4]  # nothing diverged was saved, nothing good was lost
  saved.close()


def test_gan_task_with_two_optimizers_trains_and_resumes(tmp_path):
  config = toy_tasks.toy_config(steps=4, checkpoint_every=2)
  task = toy_tasks.ToyGanTask(config)
  trainer = loop.Trainer(config, str(tmp_path), task=task)
  state0, _ = trainer.initial_state()
  state = _train(tmp_path, task, config)
  assert int(state.step) == 4
  assert int(state.generator.step) == 4 and int(state.discriminator.step) == 4
  for before, after in [(state0.generator.params, state.generator.params),
                        (state0.discriminator.params, state.discriminator.params)]:
    assert any(not np.allclose(a, b) for a, b in zip(_leaves(before), _leaves(after)))
  restored = loop.Trainer(config, str(tmp_path), task=task).restore()
  for a, b in zip(_leaves(state), _leaves(restored), strict=True):
    np.testing.assert_array_equal(a, b)


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
