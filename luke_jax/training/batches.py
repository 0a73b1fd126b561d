"""Global batches from per-host rows: which rows a host reads, and their global arrays."""

from __future__ import annotations

from typing import Mapping

import jax
import numpy as np
from jax.sharding import NamedSharding

from luke_jax import sharding


def check_batch_size(batch_size: int, grad_accum_steps: int, batch: NamedSharding,
                     setting: str = "config.train.batch_size") -> None:
  """Refuses a batch that does not split into equal micro-batches over the data shards.

  Raises:
    ValueError: naming `setting`, `grad_accum_steps` and the data-parallel size.
  """
  shards = sharding.batch_shards(batch)
  accum = grad_accum_steps
  if accum < 1 or batch_size % accum or (batch_size // accum) % shards:
    raise ValueError(f"{setting}={batch_size} must split into config.train.grad_accum_steps="
                     f"{accum} micro-batches divisible by the data-parallel size {shards} "
                     "(the mesh axes of the activation_batch rule)")
  if batch_size % jax.process_count():
    raise ValueError(f"{setting}={batch_size} does not divide over {jax.process_count()} hosts")


def host_rows(batch: NamedSharding, global_batch_size: int) -> tuple[int, int]:
  """This process's rows of every global batch, as `(index, count)`: block `index` of `count`.

  `jax.make_array_from_process_local_data` wants from each process exactly the rows its devices
  hold. Split over the data-parallel mesh axes those form one contiguous block per host (the
  mesh is laid out from `jax.devices()`, which groups devices by process); hosts whose devices
  hold the same rows (a batch replicated over a `tensor` axis that spans hosts) read the same
  block.

  Raises:
    ValueError: if the mesh gives this process rows that are not one block of equal-sized
      blocks (a hand-made device order); nothing could feed such a layout from a slice.
  """
  index_map = batch.addressable_devices_indices_map((global_batch_size,))
  ranges = sorted({s[0].indices(global_batch_size)[:2] for s in index_map.values()})
  lo, hi = ranges[0][0], ranges[-1][1]
  covered = sum(stop - start for start, stop in ranges)
  size = hi - lo
  if covered != size or global_batch_size % size or lo % size:
    raise ValueError(f"process {jax.process_index()} holds batch rows {ranges} of "
                     f"{global_batch_size}, not one block of equal blocks; lay out the mesh "
                     "so that each host's devices are adjacent along the data axes")
  return lo // size, global_batch_size // size


def to_global(host_batch: Mapping[str, np.ndarray], batch: NamedSharding,
              global_rows: int) -> dict[str, jax.Array]:
  """The global arrays of a batch of which this host holds its `host_rows` block."""
  return {k: jax.make_array_from_process_local_data(batch, v, (global_rows,) + v.shape[1:])
          for k, v in host_batch.items()}
