"""Feature rows -> model outputs, in fixed-size batches of bucketed shapes.

Tasks featurize to their maximum lengths (`Features.arrays` padded to `max_seq_length` words
and `max_entity_length` entities). Here each row keeps only the prefix it uses, rounded up to a
bucket (`luke_jax.bucketing.buckets`); rows of one bucket go through the jitted forward
`batch_size` at a time, the last batch padded with copies of its first row. So a stream of
inputs of any lengths compiles at most one program per (word bucket, entity bucket) pair.

Trimming changes no result: padded words and entities are masked out of attention (their mask
is 0), so what the model computes at the real positions does not depend on how many padded ones
follow, up to float rounding (another shape may sum in another order; tested to 1e-5).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from luke_jax.bucketing import buckets as buckets_lib
from luke_jax.bucketing.compiled import CompiledForward

# Arrays whose axis 1 is the word axis, and the mask that says which words are real.
WORD_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
WORD_MASK = "attention_mask"
# Arrays whose axis 1 is the entity axis (every key starting with `entity_`), and their mask.
ENTITY_PREFIX = "entity_"
ENTITY_MASK = "entity_attention_mask"


class BucketedRunner:
  """Runs feature arrays through a `CompiledForward` in bucketed, fixed-size batches.

  Args:
    forward: the jitted model.
    batch_size: rows per call (every call has exactly this many).
    word_buckets, entity_buckets: candidate sizes of the two axes; the features' own sizes are
      the largest bucket (`buckets.sizes`).
  """

  def __init__(self, forward: CompiledForward, batch_size: int,
               word_buckets: Sequence[int] = buckets_lib.WORD_BUCKETS,
               entity_buckets: Sequence[int] = buckets_lib.ENTITY_BUCKETS):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    buckets_lib.sizes(word_buckets, 1)  # checked now rather than at the first call
    buckets_lib.sizes(entity_buckets, 1)
    self.forward, self.batch_size = forward, batch_size
    self.word_buckets, self.entity_buckets = tuple(word_buckets), tuple(entity_buckets)

  @property
  def compilations(self) -> int:
    return self.forward.compilations

  def plan(self, arrays: Mapping[str, np.ndarray]) -> dict[tuple[int, int], np.ndarray]:
    """`(word bucket, entity bucket) -> row indices` (ascending) for the rows of `arrays`."""
    n, words = arrays[WORD_MASK].shape
    word_sizes = buckets_lib.sizes(self.word_buckets, words)
    word_used = buckets_lib.used_lengths(arrays[WORD_MASK])
    row_words = np.asarray([buckets_lib.pick(u, word_sizes) for u in word_used], np.int64)
    if ENTITY_MASK in arrays and arrays[ENTITY_MASK].shape[1]:
      entity_sizes = buckets_lib.sizes(self.entity_buckets, arrays[ENTITY_MASK].shape[1])
      entity_used = buckets_lib.used_lengths(arrays[ENTITY_MASK])
      row_entities = np.asarray([buckets_lib.pick(u, entity_sizes) for u in entity_used],
                                np.int64)
    else:
      row_entities = np.zeros(n, np.int64)
    plan: dict[tuple[int, int], list[int]] = {}
    for row, key in enumerate(zip(row_words.tolist(), row_entities.tolist())):
      plan.setdefault(key, []).append(row)
    return {key: np.asarray(rows, np.int64) for key, rows in sorted(plan.items())}

  def outputs(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The forward's outputs for every row of `arrays`, stacked in row order.

    Outputs with a word or entity axis come back padded with zeros to the largest bucket any
    row used; decoders read only each row's real positions, as they do with the padded
    positions of unbucketed features.
    """
    keys = [k for k in self.forward.input_keys if k in arrays]
    n = len(arrays[WORD_MASK])
    pieces: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    for (words, entities), rows in self.plan(arrays).items():
      for start in range(0, len(rows), self.batch_size):
        chunk = rows[start:start + self.batch_size]
        padded = np.concatenate([chunk, np.full(self.batch_size - len(chunk), chunk[0])])
        batch = {k: _trim(k, arrays[k][padded], words, entities) for k in keys}
        out = self.forward(batch)
        pieces.append((chunk, {k: v[:len(chunk)] for k, v in out.items()}))
    if not pieces:
      return {}
    stacked = {}
    for key in pieces[0][1]:
      shape = np.max([out[key].shape[1:] for _, out in pieces], axis=0).astype(int)
      full = np.zeros((n, *shape), pieces[0][1][key].dtype)
      for rows, out in pieces:
        value = out[key]
        full[(rows, *(slice(0, s) for s in value.shape[1:]))] = value
      stacked[key] = full
    return stacked


def _trim(key: str, value: np.ndarray, words: int, entities: int) -> np.ndarray:
  if key in WORD_KEYS:
    return value[:, :words]
  if key.startswith(ENTITY_PREFIX) and entities:
    return value[:, :entities]
  return value
