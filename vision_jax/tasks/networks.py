"""Several flax networks in one train state, for the GAN-family tasks.

The parameters of all networks live in one tree keyed by network name, and each of their
other collections (batch statistics) is keyed the same way inside the collection:

  params      = {'generator': {...}, 'discriminator': {...}}
  model_state = {'batch_stats': {'generator': {...}, 'discriminator': {...}}}

so that named optimizers select networks by pattern (`params='generator/.*'`) and the
trainer checkpoints everything as one state. A task may keep state of its own beside
the collections (CycleGAN's image pools); `apply` ignores keys that are not the network's.

  params, model_state = init_networks({'generator': (g, (z, labels))}, rng)
  fake, updates = apply(g, 'generator', params, model_state, z, labels, train=True)
  model_state = merge(model_state, updates)
"""
from typing import Any, Mapping

import flax.linen as nn
import jax

# Collections a network may update while training (normalisation statistics).
MUTABLE = ('batch_stats',)


def init_networks(networks: Mapping[str, tuple[nn.Module, tuple]], rng: jax.Array,
                  **kwargs) -> tuple[dict, dict]:
  """Initialises each network on its example arguments (in eval mode).

  Args:
    networks: {name: (module, example positional arguments)}.
    rng: split into one key per network, in the mapping's order.
    **kwargs: keyword arguments of every module call (default: train=False).
  Returns:
    (params {name: ...}, model_state {collection: {name: ...}}).
  """
  kwargs = {'train': False, **kwargs}
  params, model_state = {}, {}
  for key, (name, (module, args)) in zip(jax.random.split(rng, len(networks)),
                                          networks.items()):
    variables = dict(module.init(key, *args, **kwargs))
    params[name] = variables.pop('params', {})
    for collection, value in variables.items():
      model_state.setdefault(collection, {})[name] = value
  return params, model_state


def variables_of(name: str, params, model_state) -> dict:
  """The flax variables of network `name`."""
  return {'params': params[name],
          **{c: v[name] for c, v in model_state.items()
             if c in MUTABLE and isinstance(v, Mapping) and name in v}}


def apply(module: nn.Module, name: str, params, model_state, *args, train: bool,
          rngs: dict[str, jax.Array] | None = None, **kwargs) -> tuple[Any, dict]:
  """Runs network `name`: (output, {collection: {name: updated}}).

  In training the normalisation statistics are updated and returned (merge them with
  `merge` to keep them); in evaluation nothing changes and the updates are {}.
  """
  variables = variables_of(name, params, model_state)
  if not train or len(variables) == 1:
    return module.apply(variables, *args, train=train, rngs=rngs, **kwargs), {}
  out, updates = module.apply(variables, *args, train=True, rngs=rngs,
                              mutable=list(MUTABLE), **kwargs)
  return out, {c: {name: v} for c, v in updates.items()}


def merge(model_state, updates) -> dict:
  """model_state with the networks' updated collections in place (new dicts)."""
  merged = {c: dict(v) if isinstance(v, Mapping) else v for c, v in model_state.items()}
  for collection, by_name in updates.items():
    merged.setdefault(collection, {}).update(by_name)
  return merged
