"""Orbax checkpoints of the whole train state under `<workdir>/checkpoints/<step>`.

Saves every `every` steps and at the end, keeps the newest `keep`, and restores the
newest (or a chosen) step into a state of the same structure and shardings. A
checkpoint that cannot be read is reported with its path and the way out; nothing
already saved is ever deleted by a failed restore.

Initialising from another run (`initialize_from`, called by the trainer on a fresh start
only, never on resume, evaluation or prediction): `config.init` names a finished workdir
and a pattern of parameters, which are copied into the new state (a GAN's generator from
its pretrained regression run, e.g. SRGAN from SRResNet):

  init.workdir   the other run's workdir ('' / None: no initialisation)
  init.params    regular expression, full match on '/'-joined parameter paths
                 ('generator/.*'); the same paths inside every other flax collection of
                 `model_state` (batch_stats/generator/...) are copied too
  init.step      its checkpoint step (None: the newest, which must reach the train.steps
                 of its config.json)
  init.command   how that workdir is made (quoted in the error when it is missing)
Optimizer states are not copied: the new run's optimizers start fresh.
"""
import json
import os
import re
from typing import Mapping

from flax import traverse_util
import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint that is missing or cannot be restored."""


class Checkpoints:
  """A thin, synchronous wrapper of `orbax.checkpoint.CheckpointManager`."""

  def __init__(self, workdir: str, *, every: int = 1000, keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=every, create=True,
            enable_async_checkpointing=False))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state, *, force: bool = False) -> bool:
    """Saves when `step` is on the interval (or `force`); returns whether it saved."""
    return self._manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def restore(self, state, step: int | None = None):
    """Restores `step` (default: newest) into the structure and shardings of `state`."""
    step = self.latest_step() if step is None else step
    if step is None or step not in self.all_steps():
      raise CheckpointError(
          f'no checkpoint for step {step} in {self.directory}; available steps: '
          f'{self.all_steps() or "none"}. Train first, or pass an available --step.')
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as e:  # orbax raises many types for unreadable files.
      path = os.path.join(self.directory, str(step))
      raise CheckpointError(
          f'checkpoint {path} cannot be restored ({type(e).__name__}: {e}). It is corrupt or '
          'from a different model/config. Move that folder aside to resume from an earlier '
          f'step ({[s for s in self.all_steps() if s != step] or "none left"}), or use a '
          'fresh --workdir.') from e

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


def _path(key: tuple) -> str:
  return '/'.join(str(k) for k in key)


def _finished_steps(workdir: str) -> int | None:
  """train.steps of the run's saved config.json, None without one."""
  try:
    with open(os.path.join(workdir, 'config.json')) as f:
      return int(json.load(f)['train']['steps'])
  except (OSError, ValueError, KeyError, TypeError):
    return None


def initialize_from(state, init, sharding=None):
  """`state` with the parameters that `init.params` selects taken from `init.workdir`.

  Args:
    state: a freshly initialised TrainState (params, model_state).
    init: `config.init` (see the module docstring).
    sharding: where the copied arrays go (the trainer's replicated sharding).
  Returns:
    The new state; everything that is not copied is unchanged.
  Raises:
    CheckpointError: the workdir has no checkpoint, its newest checkpoint has not reached
      its train.steps (unless init.step names one), the pattern selects nothing, or a
      selected array is missing there or has another shape. Messages name the path and,
      for a missing run, `init.command`.
  """
  workdir = os.path.abspath(init.workdir)
  pattern = init.get('params', '.*') or '.*'
  command = init.get('command') or 'python -m launch.train --config=... --workdir=' + workdir
  directory = os.path.join(workdir, 'checkpoints')
  steps = []
  if os.path.isdir(directory):
    manager = ocp.CheckpointManager(directory)
    steps = list(manager.all_steps())
  if not steps:
    raise CheckpointError(
        f'config.init.workdir={init.workdir!r}: no checkpoint in {directory}. This run starts '
        f'from that run\'s parameters ({pattern}): make it first with\n  {command}')
  step = init.get('step')
  if step is None:
    step = max(steps)
    total = _finished_steps(workdir)
    if total is not None and step < total:
      raise CheckpointError(
          f'config.init.workdir={init.workdir!r} is unfinished: its newest checkpoint is step '
          f'{step} of train.steps={total}. Finish it ({command}), or pin a step with '
          f'--config.init.step={step}.')
  elif step not in steps:
    raise CheckpointError(f'config.init.step={step}: {directory} has steps {sorted(steps)}')
  try:
    saved = manager.restore(step, args=ocp.args.StandardRestore())
  except Exception as e:  # orbax raises many types for unreadable files.
    raise CheckpointError(f'{directory}/{step} cannot be read for config.init '
                          f'({type(e).__name__}: {e})') from e
  finally:
    manager.close()

  def copy(tree, source, what):
    flat, given = traverse_util.flatten_dict(tree), traverse_util.flatten_dict(source or {})
    chosen = [k for k in flat if re.fullmatch(pattern, _path(k))]
    for key in chosen:
      if key not in given:
        raise CheckpointError(f'config.init: {what}/{_path(key)} is not in {directory}/{step}')
      if tuple(np.shape(given[key])) != tuple(np.shape(flat[key])):
        raise CheckpointError(
            f'config.init: {what}/{_path(key)} has shape {np.shape(given[key])} in '
            f'{directory}/{step}, this model wants {np.shape(flat[key])} (another model '
            'config?)')
      flat[key] = jax.device_put(np.asarray(given[key], np.asarray(flat[key]).dtype), sharding)
    return traverse_util.unflatten_dict(flat) if flat else tree, len(chosen)

  params, count = copy(state.params, saved.get('params'), 'params')
  if not count:
    raise CheckpointError(f'config.init.params={pattern!r} selects no parameter of this model')
  model_state = dict(state.model_state)
  for collection, value in state.model_state.items():
    if isinstance(value, Mapping) and value:
      model_state[collection], _ = copy(value, (saved.get('model_state') or {}).get(collection),
                                        f'model_state/{collection}')
  return state.replace(params=params, model_state=model_state)
