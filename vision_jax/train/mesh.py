"""The device mesh and the shardings of data-parallel training.

One mesh axis, `data`, over every device of every process. Batches are split along
their leading dimension over `data`; parameters and optimizer state are replicated.
"""
import jax
from jax.experimental import multihost_utils
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


def to_host(tree):
  """Device arrays -> numpy arrays of the whole global value (gathered over processes)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def local_rows(tree):
  """Batch-sharded device arrays -> numpy arrays of this process's rows, in order."""

  def rows(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return np.asarray(jax.device_get(x))
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    seen, parts = set(), []
    for shard in shards:  # Replicas of a row block sit on several local devices.
      start = shard.index[0].start or 0
      if start not in seen:
        seen.add(start)
        parts.append(np.asarray(shard.data))
    return np.concatenate(parts)

  return jax.tree.map(rows, tree)


def gather_batch(batch: dict) -> dict:
  """This process's numpy batch -> the global batch (rows of process p at p * B/P)."""
  if jax.process_count() == 1:
    return batch
  return multihost_utils.process_allgather(batch, tiled=True)
