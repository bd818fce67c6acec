"""The device mesh and the shardings of data-parallel training.

One mesh axis, `data`, over every device of every process. Batches are split along
their leading dimension over `data`; parameters and optimizer state are replicated.
"""
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

DATA_AXIS = 'data'


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh named `data` over all devices."""
  # Auto axes: XLA propagates the batch sharding through the model (GSPMD).
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh) -> NamedSharding:
  """Leading (batch) dimension split over `data`, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_global_batch_size(batch_size: int) -> int:
  """Returns the per-process batch size; the global one must split over all devices."""
  if batch_size % jax.device_count():
    raise ValueError(
        f'batch size {batch_size} does not divide over {jax.device_count()} devices; '
        'set --config.train.batch_size (or eval.batch_size) to a multiple of the device count')
  return batch_size // jax.process_count()


def shard_batch(batch: dict, sharding: NamedSharding) -> dict:
  """Turns this process's numpy batch into global jax arrays split over the mesh."""
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
