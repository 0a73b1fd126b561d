"""Length buckets: the few padded shapes that every input is rounded up to.

`jax.jit` compiles one program per input shape. Padding each row only to its own length would
compile for nearly every new input (seconds each); padding everything to the longest allowed
length (512 words x 128 spans) wastes most of the compute on padding. Rounding the used length
up to the next of a few sizes bounds the programs at one per bucket while keeping the padding
below half of the row.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Word-axis sizes (subwords, `<s>` and `</s>` included) and entity-axis sizes (spans, mentions).
WORD_BUCKETS = (32, 64, 128, 256, 512)
ENTITY_BUCKETS = (16, 32, 64, 128)


def sizes(buckets: Sequence[int], limit: int) -> tuple[int, ...]:
  """The bucket sizes below `limit`, then `limit` itself: every length up to `limit` fits one.

  Raises:
    ValueError: a bucket that is not a positive integer, or a `limit` below 1.
  """
  if limit < 1:
    raise ValueError(f"bucket limit {limit} must be at least 1")
  for size in buckets:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
      raise ValueError(f"bucket sizes must be positive integers, got {list(buckets)}")
  return tuple(sorted({int(s) for s in buckets if s < limit})) + (int(limit),)


def pick(length: int, options: Sequence[int]) -> int:
  """The smallest of `options` (ascending) that holds `length` (the largest if none does)."""
  index = int(np.searchsorted(np.asarray(options), length))
  return int(options[min(index, len(options) - 1)])


def used_lengths(mask: np.ndarray) -> np.ndarray:
  """Per row of a `[rows, length]` mask, one past its last nonzero position (0 for none): the
  prefix a row needs whatever side it is padded on."""
  mask = np.asarray(mask) != 0
  if mask.shape[1] == 0:
    return np.zeros(len(mask), np.int64)
  last = mask.shape[1] - np.argmax(mask[:, ::-1], axis=1)
  return np.where(mask.any(axis=1), last, 0)
