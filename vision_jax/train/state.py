"""The train state of one model with one optimizer.

Tasks with several models (GANs) hold several of these inside their own
`flax.struct` state; the trainer only needs a pytree with a scalar `step`.
"""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


class TrainState(flax.struct.PyTreeNode):
  """step: int32 scalar, completed optimizer steps; params: trainable variables;
  model_state: the other flax collections (e.g. {'batch_stats': ...}), {} if none."""
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @classmethod
  def create(cls, params, tx: optax.GradientTransformation, model_state=None):
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
               model_state={} if model_state is None else model_state, tx=tx)

  def apply_gradients(self, grads, model_state=None) -> 'TrainState':
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(
        step=self.step + 1, params=optax.apply_updates(self.params, updates),
        opt_state=opt_state,
        model_state=self.model_state if model_state is None else model_state)

  @property
  def variables(self) -> dict:
    """All flax collections, ready for `module.apply`."""
    return {'params': self.params, **self.model_state}
