"""Shared test setup.

torchvision imported after TensorFlow crashes in one process, and `vision_jax.data`
imports TensorFlow. Where torch is installed (the torchvision parity tests' venv), import
it first so that test order cannot matter.

The tests run with the XLA flags the launchers set (`vision_jax.xla_flags`).

Scheduling (CI's two xdist workers, setup.cfg's `--dist=loadfile`): each test file runs on
one worker, so its module fixtures (prepared datasets, a launched benchmark) are built
once, and files are handed out in collection order. Files holding tests marked
`@pytest.mark.slow(seconds=...)` (their measured CI seconds) are moved to the front,
longest first: the long end-to-end files start at once on both workers and the short
files fill in behind them, instead of one worker finishing a 4-minute test alone.

One persistent JAX compilation cache serves the whole session (CI time): the pytest
processes (xdist workers too) and every launcher, trainer and benchmark subprocess they
start inherit JAX_COMPILATION_CACHE_DIR, so a program that one of them compiled (the
tiny trainings' steps, init and predict functions, compiled again by each `launch.*`
call of an end-to-end test) is loaded instead of compiled again. Its key holds the
program, the devices, the compile options and XLA_FLAGS: a hit is the executable the
compiler gives for the same input. The directory is made fresh for the session and
removed at its end; a JAX_COMPILATION_CACHE_DIR already set is used as it is.

Tiers: tests marked `@pytest.mark.extended` are skipped unless pytest gets `--extended`.
They are the minutes-long runs whose behaviour the default run already covers in another
form (a second end-to-end training of a family's variant, a whole-model agreement
check whose parts have unit tests, several processes): the README's test command and
CI (30 minutes on 2 cores) run without them; `python -m pytest -n 2 tests --extended`
runs everything.
"""
import os
import shutil
import sys
import tempfile

import pytest

from vision_jax import xla_flags

xla_flags.apply_defaults()

try:
  import torch  # pylint: disable=unused-import
  import torchvision  # pylint: disable=unused-import
except ImportError:
  pass

_CACHE_ENV = 'JAX_COMPILATION_CACHE_DIR'
# Compilations shorter than this are not written (JAX's default is 1 s).
_MIN_COMPILE_S_ENV = 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'


def pytest_configure(config):
  if hasattr(config, 'workerinput') or _CACHE_ENV in os.environ:
    return  # an xdist worker (it inherited the controller's), or the user's cache
  path = tempfile.mkdtemp(prefix='vision_jax_tests_jax_cache_')
  config.vision_jax_cache_dir = path
  os.environ[_CACHE_ENV] = path  # for the xdist workers and every subprocess
  os.environ.setdefault(_MIN_COMPILE_S_ENV, '0.5')
  if 'jax' in sys.modules:  # already imported: its config read the environment before
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_compilation_cache_dir', path)
    jax.config.update('jax_persistent_cache_min_compile_time_secs',
                      float(os.environ[_MIN_COMPILE_S_ENV]))


def pytest_unconfigure(config):
  path = getattr(config, 'vision_jax_cache_dir', None)
  if path:
    shutil.rmtree(path, ignore_errors=True)


def _slow_seconds(item) -> float:
  return sum(mark.kwargs.get('seconds', 60) for mark in item.iter_markers('slow'))


def pytest_addoption(parser):
  parser.addoption('--extended', action='store_true',
                   help='also run the tests marked `extended` (module doc)')


def pytest_collection_modifyitems(config, items):
  """Files with slow tests first, by their summed `slow` seconds; `extended` tests skipped
  without --extended (module doc)."""
  skip_extended = not config.getoption('--extended')
  skip = pytest.mark.skip(reason='extended tier, left out of the default run (CI time): '
                          'pytest --extended runs it')
  per_file = {}
  for item in items:
    if skip_extended and item.get_closest_marker('extended'):
      item.add_marker(skip)
      continue  # takes no time
    per_file[item.path] = per_file.get(item.path, 0.0) + _slow_seconds(item)
  items.sort(key=lambda item: -per_file.get(item.path, 0.0))  # stable: file order kept otherwise
