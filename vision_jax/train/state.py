"""The train state: one parameter tree, named optimizers over parts of it, an optional EMA.

  optimizers = optim.make_optimizers(config, total_steps)     # {'model': ...}
  state = TrainState.create(params, optimizers, model_state={'batch_stats': ...},
                            ema=optim.ema_from_config(config))
  state, metrics = state.minimize(loss_fn, batch, rng)         # all optimizers
  state, d_metrics = state.minimize(d_loss_fn, batch, rng, optimizers=('discriminator',))

A GAN keeps both networks in one tree ({'generator': ..., 'discriminator': ...}) and one
optimizer per network (`params='generator/.*'`, ...); each `minimize` call differentiates
and updates only the parameters of the optimizers it names.

`step` counts completed train steps. The trainer advances it once per step, after the
task's `train_step`, however many optimizer updates the step made.
"""
from typing import Any, Callable, Mapping, Sequence

import flax.struct
from flax import traverse_util
import jax
import jax.numpy as jnp
import optax

from vision_jax.train import config as config_lib
from vision_jax.train import optim


def param_path(key: tuple) -> str:
  """A parameter's path as matched by optimizer / EMA selections: keys joined by '/'."""
  return '/'.join(str(k) for k in key)


def _flat(tree) -> dict:
  return traverse_util.flatten_dict(tree) if tree else {}


def _subtree(flat: dict, keys) -> dict:
  return traverse_util.unflatten_dict({k: flat[k] for k in keys})


def _partition(params, optimizers: Sequence[optim.NamedOptimizer]) -> dict[str, tuple]:
  """{optimizer name: the flat keys it updates}; every leaf must be selected exactly once."""
  keys = list(_flat(params))
  owners = {k: [o.name for o in optimizers if o.selects(param_path(k))] for k in keys}
  twice = [f'{param_path(k)} ({", ".join(n)})' for k, n in owners.items() if len(n) > 1]
  never = [param_path(k) for k, n in owners.items() if not n]
  if twice or never:
    problems = []
    if twice:
      problems.append(f'selected by several optimizers: {twice[:10]}')
    if never:
      problems.append(f'selected by no optimizer: {never[:10]}'
                      + (f' (+{len(never) - 10} more)' if len(never) > 10 else ''))
    raise config_lib.ConfigError(
        'the optimizers\' `params` patterns must select every parameter exactly once; '
        + '; '.join(problems) + '. Patterns: '
        + ', '.join(f'optimizers.{o.name}.params={o.params!r}' for o in optimizers))
  return {o.name: tuple(k for k in keys if owners[k] == [o.name]) for o in optimizers}


class TrainState(flax.struct.PyTreeNode):
  """step: int32 scalar, completed train steps; params: trainable variables; opt_states:
  {optimizer name: its optax state over its parameters}; model_state: the other flax
  collections (e.g. {'batch_stats': ...}), {} if none; ema_params: the EMA copies of the
  parameters that `ema` selects (a sub-tree of params), {} without an EMA."""
  step: jax.Array
  params: Any
  opt_states: dict
  model_state: Any
  ema_params: Any
  optimizers: tuple = flax.struct.field(pytree_node=False)
  partition: tuple = flax.struct.field(pytree_node=False)  # ((name, keys), ...)
  ema: Any = flax.struct.field(pytree_node=False, default=None)

  @classmethod
  def create(cls, params, optimizers: Mapping[str, optim.NamedOptimizer] |
             optax.GradientTransformation, model_state=None,
             ema: optim.EmaSpec | None = None) -> 'TrainState':
    """A fresh state at step 0.

    Args:
      params: the parameter tree (nested dicts).
      optimizers: {name: NamedOptimizer} (`optim.make_optimizers`), or one optax
        transformation for every parameter (named 'model').
      model_state: other flax collections.
      ema: what to average (`optim.ema_from_config`), or None.
    Raises:
      ConfigError: a parameter selected by no optimizer or by several.
    """
    if isinstance(optimizers, optax.GradientTransformation):
      optimizers = optim.single(optimizers)
    optimizers = tuple(optimizers.values())
    partition = _partition(params, optimizers)
    flat = _flat(params)
    opt_states = {o.name: o.tx.init(_subtree(flat, partition[o.name])) for o in optimizers}
    ema_params = {}
    if ema is not None:
      chosen = [k for k in flat if ema.selects(param_path(k))]
      if not chosen:
        raise config_lib.ConfigError(f'ema.params={ema.params!r} selects no parameter')
      ema_params = _subtree(flat, chosen)
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_states=opt_states,
               model_state={} if model_state is None else model_state,
               ema_params=ema_params, optimizers=optimizers,
               partition=tuple(partition.items()), ema=ema)

  def _names(self, optimizers: Sequence[str] | str | None) -> tuple[str, ...]:
    known = tuple(o.name for o in self.optimizers)
    if optimizers is None:
      return known
    names = (optimizers,) if isinstance(optimizers, str) else tuple(optimizers)
    unknown = [n for n in names if n not in known]
    if unknown:
      raise ValueError(f'no optimizer named {unknown}; this state has {list(known)}')
    return names

  def _keys(self, names) -> list:
    owned = dict(self.partition)
    return [k for n in names for k in owned[n]]

  def select(self, optimizers: Sequence[str] | str | None = None):
    """The sub-tree of params that the named optimizers (default: all) update."""
    return _subtree(_flat(self.params), self._keys(self._names(optimizers)))

  def with_params(self, subtree):
    """The full parameter tree with the leaves of `subtree` replaced."""
    return traverse_util.unflatten_dict({**_flat(self.params), **_flat(subtree)})

  def apply_gradients(self, grads, *, optimizers: Sequence[str] | str | None = None,
                      model_state=None) -> 'TrainState':
    """Updates the parameters of the named optimizers (default: all) from `grads`.

    Args:
      grads: gradients of (at least) those parameters, as a (sub-)tree of params.
      optimizers: names; the other optimizers' parameters and states stay unchanged.
      model_state: updated collections, merged over the current ones.
    Returns:
      The new state; the EMA follows the parameters updated here. `step` is unchanged.
    """
    names = self._names(optimizers)
    flat_params, flat_grads = dict(_flat(self.params)), _flat(grads)
    owned = dict(self.partition)
    opt_states = dict(self.opt_states)
    by_name = {o.name: o for o in self.optimizers}
    for name in names:
      keys = owned[name]
      missing = [param_path(k) for k in keys if k not in flat_grads]
      if missing:
        raise ValueError(f'grads lack parameters of optimizer {name!r}: {missing[:5]}')
      params = _subtree(flat_params, keys)
      updates, opt_states[name] = by_name[name].tx.update(
          _subtree(flat_grads, keys), self.opt_states[name], params)
      flat_params.update(_flat(optax.apply_updates(params, updates)))
    ema_params = self.ema_params
    if self.ema is not None:
      updated = set(self._keys(names))
      decay = self.ema.decay
      ema_params = traverse_util.unflatten_dict({
          k: (decay * v + (1.0 - decay) * flat_params[k]) if k in updated else v
          for k, v in _flat(self.ema_params).items()})
    new_model_state = self.model_state
    if model_state:
      new_model_state = {**self.model_state, **model_state}
    return self.replace(params=traverse_util.unflatten_dict(flat_params),
                        opt_states=opt_states, model_state=new_model_state,
                        ema_params=ema_params)

  def minimize(self, loss_fn: Callable, *args, optimizers: Sequence[str] | str | None = None
               ) -> tuple['TrainState', dict]:
    """One gradient update: the shared value_and_grad -> apply of every task.

    Args:
      loss_fn: `loss_fn(params, *args) -> (loss, (metrics, model_state_updates))` with
        the FULL parameter tree; only the named optimizers' parameters are
        differentiated.
      *args: passed through to loss_fn.
      optimizers: names (default: all).
    Returns:
      (new state, metrics).
    """
    names = self._names(optimizers)

    def selected_loss(subtree):
      return loss_fn(self.with_params(subtree), *args)

    grads, (metrics, updates) = jax.grad(selected_loss, has_aux=True)(self.select(names))
    return self.apply_gradients(grads, optimizers=names, model_state=updates), metrics

  @property
  def variables(self) -> dict:
    """All flax collections, ready for `module.apply`."""
    return {'params': self.params, **self.model_state}

  @property
  def ema_variables(self) -> dict:
    """`variables` with the EMA copies in place of the averaged parameters."""
    return {'params': self.with_params(self.ema_params), **self.model_state}
