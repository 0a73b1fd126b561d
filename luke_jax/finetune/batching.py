"""Which feature rows make each batch: a seeded permutation per epoch, padded last batches.

A step number alone fixes its batch (epoch = step // steps_per_epoch), so resuming needs no
iterator state and a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math

import numpy as np

VALID = "_valid"  # 1 for real rows, 0 for the rows that pad a batch to its fixed size


def steps_per_epoch(num_rows: int, batch_size: int) -> int:
  return max(1, math.ceil(num_rows / batch_size))


def train_rows(step: int, num_rows: int, batch_size: int, seed: int) -> np.ndarray:
  """Row indices of global batch `step` (0-based); -1 marks padding."""
  per_epoch = steps_per_epoch(num_rows, batch_size)
  epoch, index = divmod(step, per_epoch)
  order = np.random.default_rng([seed, epoch]).permutation(num_rows)
  rows = order[index * batch_size:(index + 1) * batch_size]
  return np.concatenate([rows, np.full(batch_size - len(rows), -1, rows.dtype)])


def eval_batches(num_rows: int, batch_size: int):
  """Consecutive row blocks of `batch_size`, the last padded with -1."""
  for start in range(0, num_rows, batch_size):
    rows = np.arange(start, min(start + batch_size, num_rows))
    yield np.concatenate([rows, np.full(batch_size - len(rows), -1, rows.dtype)])


def gather(arrays: dict[str, np.ndarray], rows: np.ndarray, keys,
           block: tuple[int, int] = (0, 1)) -> dict[str, np.ndarray]:
  """Block `block = (index, count)` of the global batch `rows` (`training.batches.host_rows`:
  the rows this host's devices hold); padding rows copy row 0 with VALID 0."""
  index, count = block
  size = len(rows) // count
  mine = rows[index * size:(index + 1) * size]
  safe = np.where(mine < 0, 0, mine)
  batch = {k: arrays[k][safe] for k in keys}
  batch[VALID] = (mine >= 0).astype(np.float32)
  return batch
