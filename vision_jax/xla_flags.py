"""XLA flags the launchers and the tests set before JAX starts its backends.

  from vision_jax import xla_flags
  xla_flags.apply_defaults()      # before the first JAX computation

XLA:CPU in jaxlib 0.10 hands dots and convolutions to YNNPACK by default. An empty
`--xla_cpu_experimental_ynn_fusion_type=` gives both back to Eigen, which on the x86
machines we measured is faster: a 4096^2 matmul 408 -> 459 GFLOP/s, a [32768, 256] x
[256, 256] dot 269 -> 319, a 3x3 256->256 convolution's forward + backward at 128 x 128
256 -> 363 GFLOP/s (keeping YNNPACK for dots only, `=individual_dot`, fixes the
convolution but not the dots); the Mask R-CNN R50-FPN train step 3.49 -> 3.00 s (2 cores).
`python -m launch.benchmark --op=conv3x3` measures the convolution under the current
XLA_FLAGS. Other backends ignore XLA:CPU flags.

A flag the user already put in XLA_FLAGS wins. Defaults are added only for the jaxlib
versions they were measured with: XLA aborts on a flag its version does not know.
"""
import os

from absl import logging

# (flag name, value) pairs; names are matched against what XLA_FLAGS already holds.
CPU_DEFAULTS = (('xla_cpu_experimental_ynn_fusion_type', ''),)
MEASURED_JAXLIB = ((0, 10),)


def _jaxlib_version() -> tuple[int, int]:
  from jaxlib import version  # pylint: disable=g-import-not-at-top
  major, minor = version.__version__.split('.')[:2]
  return int(major), int(minor)


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):
    return False


def apply_defaults(environ=None, jaxlib_version=None) -> list[str]:
  """Appends CPU_DEFAULTS to XLA_FLAGS where the user has not set them.

  Args:
    environ: the environment to change (os.environ by default).
    jaxlib_version: (major, minor) override, for tests.

  Returns:
    The flags added (empty when all were set, or for an unmeasured jaxlib).
  """
  environ = os.environ if environ is None else environ
  version = jaxlib_version or _jaxlib_version()
  if version not in MEASURED_JAXLIB:
    return []
  current = environ.get('XLA_FLAGS', '')
  added = [f'--{name}={value}' for name, value in CPU_DEFAULTS if f'--{name}' not in current]
  if not added:
    return []
  if environ is os.environ and _backends_started():
    logging.warning('XLA flags %s not applied: JAX backends already started', added)
    return []
  environ['XLA_FLAGS'] = ' '.join([current, *added]).strip()
  return added
