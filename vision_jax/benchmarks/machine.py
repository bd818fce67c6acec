"""What this machine can do: large-matmul FLOP/s and memory copy bandwidth.

Benchmarks report their own speed as ratios to these rates, measured in the same run.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.benchmarks import threads


def time_fn(fn, *args, repeats=5, warmup=1, usage: dict | None = None):
  """Median wall time in seconds of `fn(*args)` with its outputs blocked on.

  With `usage` (a dict), fills it with the CPU use of the timed repeats (warm-up
  excluded): `threads.CpuUsage`'s wall_s, cpu_s, cpu_per_wall, busy_threads,
  cpu_s_per_call.
  """
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  with threads.CpuUsage(calls=repeats) as meter:
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times.append(time.perf_counter() - start)
  if usage is not None:
    usage.update(meter.result)
  return float(np.median(times))


def matmul_flops_per_second(size=2048, dtype=jnp.float32, repeats=5):
  """Achieved FLOP/s of a jit-compiled [size, size] x [size, size] matmul."""
  keys = jax.random.split(jax.random.key(0))
  a = jax.random.normal(keys[0], (size, size), dtype)
  b = jax.random.normal(keys[1], (size, size), dtype)
  matmul = jax.jit(jnp.matmul)
  seconds = time_fn(matmul, a, b, repeats=repeats)
  return 2.0 * size**3 / seconds


def copy_bytes_per_second(num_bytes=256 * 2**20, repeats=5):
  """Achieved bandwidth (bytes read + written per second) of a jit-compiled array copy."""
  x = jnp.ones((num_bytes // 4,), jnp.float32)
  copy = jax.jit(lambda v: v + 1.0)
  seconds = time_fn(copy, x, repeats=repeats)
  return 2.0 * num_bytes / seconds
