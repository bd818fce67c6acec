"""Flax calls compiled as one program, for tests.

On XLA:CPU an eager `module.init` / `module.apply` compiles and dispatches every primitive
on its own: for the test models that is several times slower than compiling the whole
call once. Each call here runs once, so it is compiled by `backend.run_once` (LLVM
optimisation level 1 on XLA:CPU). Keyword arguments (`train=True`, `mutable=[...]`,
`method=...`) are closed over, so they stay static; positional arguments may be any
pytree of arrays.
"""
from vision_jax.ops import backend


def init(module, key, *args, **kwargs):
  """`module.init(key, *args, **kwargs)` under one compiled program."""
  return backend.run_once(lambda k, a: module.init(k, *a, **kwargs), key, args)


def apply(module, variables, *args, **kwargs):
  """`module.apply(variables, *args, **kwargs)` under one compiled program."""
  return backend.run_once(lambda v, a: module.apply(v, *a, **kwargs), variables, args)


def init_apply(module, key, *args, **kwargs):
  """(variables, output): `module.init(key, *args)`, then `module.apply(variables, *args,
  **kwargs)` on them, compiled as one program (the init's own forward pass is dead code
  there, except what it needs for the parameters)."""

  def run(k, a):
    variables = module.init(k, *a)
    return variables, module.apply(variables, *a, **kwargs)

  return backend.run_once(run, key, args)
