"""Orbax checkpoints of the whole train state under `<workdir>/checkpoints/<step>`.

Saves every `every` steps and at the end, keeps the newest `keep`, and restores the
newest (or a chosen) step into a state of the same structure and shardings. A
checkpoint that cannot be read is reported with its path and the way out; nothing
already saved is ever deleted by a failed restore.
"""
import os

import jax
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
