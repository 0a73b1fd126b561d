"""Output rows of the column-wise pipeline (step 4 of `batch`): what each row keeps, and where.

A row is one example, or one window of it with `return_overflowing_tokens=True`. `assemble`
applies transformers' truncation rules (`truncation`) to the rows that are too long, drops the
entities cut off by it, truncates the entity lists and places the mentions in the row.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from luke_jax.tokenization import truncation
from luke_jax.tokenization.batch import Entities, Tokens, ragged_arange

_I64 = np.int64


@dataclasses.dataclass
class Rows:
  """Output rows: each takes a token range of one side, and optionally of a second side.

  Attributes:
    example: [R] the input example of each row (several rows per example with windows).
    side_a, lo_a, len_a: [R] first side, first token and token count of its part (`lo_a` None:
      from the first token).
    side_b, lo_b, len_b: [R] the same for the pair part; None without pairs.
    entity, part, shift: [N] candidate entities of each row (indices into `Entities`; None:
      all of them, in order), sorted by row, then part (0 or 1; None: all 0), then span order;
      `shift` (None: 0) is subtracted from their token span (a window's first token).
    entity_row: [N] the row of each candidate.
  """
  example: np.ndarray
  side_a: np.ndarray
  lo_a: np.ndarray | None
  len_a: np.ndarray
  side_b: np.ndarray | None
  lo_b: np.ndarray | None
  len_b: np.ndarray | None
  entity: np.ndarray | None
  entity_row: np.ndarray
  part: np.ndarray | None
  shift: np.ndarray | None


def example_rows(tokens: Tokens, entities: Entities, n: int, pair: bool) -> Rows:
  """One row per example: side i, and side n + i as its pair."""
  rows = np.arange(n)
  if not pair:  # entities are in side order, which is row order
    return Rows(rows, rows, None, tokens.length, None, None, None, None, entities.side, None,
                None)
  part = (entities.side >= n).astype(_I64)
  row = entities.side - part * n
  order = (row * 2 + part).argsort(kind="stable")
  return Rows(rows, rows, None, tokens.length[:n], rows + n, None, tokens.length[n:2 * n],
              order, row[order], part[order], None)


def window_rows(tokens: Tokens, entities: Entities, n: int, pair: bool, max_length: int,
                stride: int, strategy: str, specials: int) -> Rows:
  """Overlapping windows over the longer text; entities fully inside a window move with it."""
  columns = {k: [] for k in ("example", "side_a", "lo_a", "len_a", "side_b", "lo_b", "len_b")}
  cand = {k: [] for k in ("entity", "entity_row", "part", "shift")}
  by_side = [[] for _ in range(len(tokens.length))]
  for e, s in enumerate(entities.side.tolist()):
    by_side[s].append(e)
  starts, ends = entities.start.tolist(), entities.end.tolist()
  length = tokens.length.tolist()
  for i in range(n):
    a, b = i, (n + i if pair else -1)
    target, other = (b, a) if (pair and strategy == "only_second") else (a, b)
    fixed = (length[other] if other >= 0 else 0) + specials
    room = max_length - fixed
    if room <= 0:
      raise ValueError(f"max_length {max_length} leaves no room for text after the "
                       f"{fixed} tokens of specials and the other sequence")
    if stride >= room:
      raise ValueError(f"stride {stride} must be smaller than the window ({room} tokens)")
    lo = 0
    while True:
      hi = min(lo + room, length[target])
      r = len(columns["example"])
      ranges = {target: (lo, hi - lo)}
      if other >= 0:
        ranges[other] = (0, length[other])
      for key, side in (("a", a), ("b", b)):
        columns[f"side_{key}"].append(side)
        columns[f"lo_{key}"].append(ranges.get(side, (0, 0))[0])
        columns[f"len_{key}"].append(ranges.get(side, (0, 0))[1])
      columns["example"].append(i)
      for part, side in ((0, a), (1, b)):
        if side < 0:
          continue
        for e in by_side[side]:
          if side == target and not (starts[e] >= lo and ends[e] <= hi):
            continue
          cand["entity"].append(e)
          cand["entity_row"].append(r)
          cand["part"].append(part)
          cand["shift"].append(lo if side == target else 0)
      if hi >= length[target]:
        break
      lo = hi - stride
  out = {k: np.array(v, _I64) for k, v in itertools.chain(columns.items(), cand.items())}
  if not pair:
    out.update(side_b=None, lo_b=None, len_b=None)
  return Rows(**out)


@dataclasses.dataclass
class Layout:
  """What each row keeps and where it goes.

  Attributes:
    src_a, len_a: [R] flat start in `Tokens.ids` and count of the kept tokens of the first part.
    src_b, len_b, has_b: [R] the same for the pair part, and whether the row has one (with its
      separators); None without pairs.
    length: [R] row length, special tokens included.
    entity: [M] kept entities, in row order (None: all, in order); entity_start, entity_end:
      [M] their token span in their row.
    entity_count: [R] kept entities per row.
  """
  src_a: np.ndarray
  len_a: np.ndarray
  src_b: np.ndarray | None
  len_b: np.ndarray | None
  has_b: np.ndarray | None
  length: np.ndarray
  entity: np.ndarray | None
  entity_start: np.ndarray
  entity_end: np.ndarray
  entity_count: np.ndarray


def assemble(tokens: Tokens, entities: Entities, rows: Rows, *, add_special_tokens: bool,
             with_entities: bool, strategy: str, max_length: int | None, entity_limit: int,
             side: str) -> Layout:
  """Word truncation, dropping of entities cut off by it, entity truncation, positions.

  As the reference: with entities, words are truncated with transformers' Python rule, without
  them with the `tokenizers` library's; an entity survives if its token span ends within its
  part's kept tokens (its positions do not move, also when truncating on the left); then the
  entity list is truncated to `entity_limit` with the same strategy.
  """
  num = len(rows.example)
  pair = rows.side_b is not None
  specials = (4 if pair else 2) if add_special_tokens else 0
  lo_a, len_a, lo_b, len_b = rows.lo_a, rows.len_a, rows.lo_b, rows.len_b
  has_b = np.ones(num, bool) if pair else None
  total = (len_a + len_b if pair else len_a) + specials
  long = []
  if strategy != "do_not_truncate" and max_length:
    long = (total > max_length).nonzero()[0].tolist()
  if long:
    lo_a = np.zeros(num, _I64) if lo_a is None else lo_a.copy()
    len_a = len_a.copy()
    if pair:
      lo_b = np.zeros(num, _I64) if lo_b is None else lo_b.copy()
      len_b = len_b.copy()
    for r in long:
      a = range(int(len_a[r]))
      b = range(int(len_b[r])) if pair else None
      if with_entities:
        a, b = truncation.truncate(a, b, int(total[r]) - max_length, strategy, side)
      else:
        a, b = truncation.truncate_native(a, b, max_length - specials, strategy, side)
      lo_a[r] += a.start
      len_a[r] = len(a)
      if not pair:
        continue
      if b is None:
        has_b[r], len_b[r] = False, 0  # left-truncating an empty pair drops it, as the reference
      else:
        lo_b[r] += b.start
        len_b[r] = len(b)
    total = len_a + (len_b if pair else 0)
    if add_special_tokens:
      total += has_b * 2 + 2 if pair else 2
  src_a = tokens.start[rows.side_a]
  if lo_a is not None:
    src_a = src_a + lo_a
  src_b = None
  if pair:
    src_b = tokens.start[rows.side_b]
    if lo_b is not None:
      src_b = src_b + lo_b

  # Entities. Untruncated, a row keeps every candidate (each ends within its part); truncated,
  # those whose span ends within the kept tokens of their part.
  entity, er, part = rows.entity, rows.entity_row, rows.part
  start, end = entities.start, entities.end
  if entity is not None:
    start, end = start[entity], end[entity]
  if rows.shift is not None:
    start, end = start - rows.shift, end - rows.shift
  if long and len(er):
    if entity is None:
      entity = np.arange(len(er))
    if pair:
      keep = end <= np.where(part == 0, len_a[er], np.where(has_b[er], len_b[er], -1))
    else:
      keep = end <= len_a[er]
    entity, er, start, end = entity[keep], er[keep], start[keep], end[keep]
    part = None if part is None else part[keep]
  entity_count = np.bincount(er, minlength=num)
  if strategy != "do_not_truncate" and num and int(entity_count.max()) > entity_limit:
    if entity is None:
      entity = np.arange(len(er))
    if part is None:
      part = np.zeros(len(er), _I64)
    counts = np.bincount(er * 2 + part, minlength=2 * num).reshape(num, 2)
    lo = np.zeros((num, 2), _I64)
    hi = counts.copy()
    for r in (entity_count > entity_limit).nonzero()[0].tolist():
      # A pair part without spans holds an empty list; `truncate` treats it as None.
      a = range(int(counts[r, 0]))
      b = range(int(counts[r, 1])) if pair and has_b[r] else None
      a, b = truncation.truncate(a, b, int(entity_count[r]) - entity_limit, strategy, side)
      lo[r, 0], hi[r, 0] = a.start, a.stop
      if b is None:
        hi[r, 1] = 0
      else:
        lo[r, 1], hi[r, 1] = b.start, b.stop
    rank = ragged_arange(counts.ravel())
    keep = (rank >= lo[er, part]) & (rank < hi[er, part])
    entity, er, part, start, end = (x[keep] for x in (entity, er, part, start, end))
    entity_count = np.bincount(er, minlength=num)
  first = 1 if add_special_tokens else 0
  if pair:
    base = np.where(part == 0, first, len_a[er] + 3 * first)
  else:
    base = first
  return Layout(src_a, len_a, src_b, len_b, has_b, total, entity, start + base, end + base,
                entity_count)
