"""Which kernels the library traces: CPU-tuned ones or the plain `lax` ones. One place.

  from vision_jax.ops import backend
  backend.set_kernels('auto')     # default: 'cpu' on XLA:CPU, 'plain' on GPU / TPU
  with backend.use_kernels('plain'):
    ...                           # trace something with the plain kernels (tests)

Some XLA:CPU weaknesses are worked around with kernels that only pay off on a CPU; GPUs
and TPUs get the plain formulation, which their compilers handle well. Both compute the
same function (`tests/test_backend_paths.py` checks outputs and gradients agree on CPU).

Kernels that consult `cpu_tuned()`:

  vision_jax.nn.conv.Conv                  'cpu': 1x1 convolutions as [N, C] x [C, O]
                                           dots (XLA:CPU: 4-5x faster than a 1x1
                                           conv_general_dilated), and k x k stride-1
                                           convolutions of a module built with
                                           `in_switch=True` as k*k shifted dots
                                           (`conv_by_dots`; the gradient of a convolution
                                           inside a lax.switch / cond branch is ~100x
                                           slower on XLA:CPU). 'plain': lax.conv_general_dilated.
  vision_jax.nn.upsample.ConvTranspose4x4  with `in_switch=True`: its four sub-pixel
                                           2x2 convolutions as dots on 'cpu'.
  vision_jax.ops.pooling (roi_align, multilevel_roi_align)
                                           'cpu': boxes in chunks (a fori_loop over chunks
                                           of 16 in the backward scatter-add, so updates
                                           stay in cache; per-level chunk ranges in the
                                           multilevel forward; boxes sorted by cost for the
                                           adaptive grid). 'plain': one vectorised gather
                                           and one scatter-add over all boxes (the pyramid
                                           as one concatenated table).
  vision_jax.ops.suppression (nms, batched_nms)
                                           'cpu': greedy lax.while_loop, one box per step.
                                           'plain': tiled fixed-point NMS, whole tiles per
                                           step; exactly the same kept indices.

Programs that run once (parameter initialisation) are compiled by `run_once`: on XLA:CPU
at LLVM optimisation level 1 (see `run_once`); elsewhere as `jax.jit`.

The choice is read at TRACE time: set it before anything is jitted (the trainer calls
`set_kernels(config.kernels)` before compiling its steps). A function already traced
keeps the kernels it was traced with, and jit's cache does not know about this setting,
so re-jit (a new function object) after changing it.
"""
import contextlib
from typing import Any, Callable, Iterator

import jax

KERNELS = ('auto', 'cpu', 'plain')

_kind = 'auto'


def _check(kind: str) -> str:
  if kind not in KERNELS:
    raise ValueError(f'unknown kernels {kind!r}; choose one of {KERNELS} '
                     "('auto' = 'cpu' on XLA:CPU, 'plain' on GPU / TPU)")
  return kind


def set_kernels(kind: str) -> None:
  """Sets the process-wide kernel choice: 'auto' (default), 'cpu' or 'plain'."""
  global _kind
  _kind = _check(kind)


def kernels() -> str:
  """The resolved choice, 'cpu' or 'plain' ('auto' looks at `jax.default_backend()`)."""
  if _kind == 'auto':
    return 'cpu' if jax.default_backend() == 'cpu' else 'plain'
  return _kind


def cpu_tuned() -> bool:
  """True when the CPU-tuned kernels are to be traced."""
  return kernels() == 'cpu'


@contextlib.contextmanager
def use_kernels(kind: str) -> Iterator[None]:
  """Sets the kernel choice inside a `with` block and restores the previous one after."""
  global _kind
  previous = _kind
  set_kernels(kind)
  try:
    yield
  finally:
    _kind = previous


# XLA:CPU compiles the straight-line code of an initialisation (a threefry stream and a
# normal transform per parameter) slowly, and LLVM's full optimisation buys nothing for one
# run. Level 1 keeps the values bit for bit (level 0 rounds some differently). Measured
# (jaxlib 0.10, 2 cores), init_state of the :tiny configs, compile s default -> level 1:
# CenterNet 10.9 -> 3.1, CycleGAN 9.1 -> 3.2, YolactEdge 11.0 -> 4.1; identical values.
_RUN_ONCE_CPU_OPTIONS = {'xla_backend_optimization_level': 1}


def run_once(fn: Callable[..., Any], *args, **jit_kwargs) -> Any:
  """`jax.jit(fn, **jit_kwargs)(*args)` for a program run once (parameter
  initialisation, a test's single call): compiled with LLVM's optimisation level 1 on
  XLA:CPU, where the full level costs seconds of compile time to save milliseconds of
  run time; as plain `jax.jit` on other backends. The persistent compilation cache keys
  the options too."""
  lowered = jax.jit(fn, **jit_kwargs).lower(*args)
  options = _RUN_ONCE_CPU_OPTIONS if jax.default_backend() == 'cpu' else None
  return lowered.compile(compiler_options=options)(*args)
