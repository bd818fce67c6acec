"""Shared test setup.

torchvision imported after TensorFlow crashes in one process, and `vision_jax.data`
imports TensorFlow. Where torch is installed (the torchvision parity tests' venv), import
it first so that test order cannot matter.

The tests run with the XLA flags the launchers set (`vision_jax.xla_flags`).
"""
from vision_jax import xla_flags

xla_flags.apply_defaults()

try:
  import torch  # pylint: disable=unused-import
  import torchvision  # pylint: disable=unused-import
except ImportError:
  pass
