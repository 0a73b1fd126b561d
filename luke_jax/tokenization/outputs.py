"""The model inputs of the column-wise pipeline's rows (step 5 of `batch`): arrays or lists.

Every key's values first lie in one flat array, row after row. Unpadded lists cut it into rows;
padded rows are written through a boolean mask of the cells they fill (the attention mask
itself), so that padding on either side is only a different mask.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from luke_jax.tokenization.batch import Entities, Tokens
from luke_jax.tokenization.rows import Layout

_I64 = np.int64


@dataclasses.dataclass
class Padding:
  """Pad rows to `length` words and `entity_length` entities, on the left or the right."""
  length: int
  entity_length: int
  left: bool


@dataclasses.dataclass
class Specials:
  """The ids that `outputs` writes: word specials, word padding, entity padding."""
  cls: int
  sep: int
  pad: int
  entity_pad: int


def position_grid(starts: np.ndarray, ends: np.ndarray, mention_length: int) -> np.ndarray:
  """`[n, mention_length]` token positions of each mention `[start, end)`, -1 padded."""
  grid = starts[:, None] + np.arange(mention_length)
  grid[grid >= ends[:, None]] = -1
  return grid


def outputs(tokens: Tokens, entities: Entities, layout: Layout, specials: Specials, *,
            add_special_tokens: bool, with_entities: bool, span_positions: bool,
            token_types: bool, offsets: bool, attention_mask: bool, mention_length: int,
            padding: Padding | None, as_numpy: bool) -> dict:
  """The model inputs of every row, in the reference's key order.

  Returns [R, ...] int64 arrays when `as_numpy` (then `padding` is required and no row may be
  longer than it); otherwise per-row lists, padded when `padding` is given (rows longer than
  the padding length stay as they are, as the reference leaves them).
  """
  length, count = layout.length, layout.entity_count
  index = _word_index(layout, len(tokens.ids), add_special_tokens)
  flat = {"input_ids": np.concatenate([tokens.ids, [specials.cls, specials.sep]])[index]}
  if token_types:
    flat["token_type_ids"] = 0
  if offsets:
    flat["offset_mapping"] = np.concatenate([tokens.offsets, np.zeros((2, 2), _I64)])[index]
  if with_entities:
    flat["entity_ids"] = (entities.ids if layout.entity is None
                          else entities.ids[layout.entity])
    if span_positions:
      flat["entity_start_positions"] = layout.entity_start
      flat["entity_end_positions"] = layout.entity_end - 1
    if token_types:
      flat["entity_token_type_ids"] = 0
    flat["entity_position_ids"] = position_grid(layout.entity_start, layout.entity_end,
                                                mention_length)
  if attention_mask:
    flat["attention_mask"] = 1
    if with_entities:
      flat["entity_attention_mask"] = 1
  if padding is None and not as_numpy:
    return _lists(flat, length.tolist(), count.tolist(), offsets)
  return _padded(flat, length, count, padding, specials, as_numpy, offsets)


def _lists(flat: dict, lengths: list[int], counts: list[int], offsets: bool) -> dict:
  """Unpadded rows: each key's flat values cut into rows (a constant fills rows of its own)."""
  out = {}
  for key, values in flat.items():
    sizes = counts if key.startswith("entity") else lengths
    if isinstance(values, int):
      out[key] = [[values] * k for k in sizes]
      continue
    values = values.tolist()
    if key == "offset_mapping":
      values = list(map(tuple, values))
    if len(sizes) == 1:
      out[key] = [values]
    else:
      ends = list(itertools.accumulate(sizes))
      out[key] = [values[b - k:b] for k, b in zip(sizes, ends)]
  return out


def _padded(flat: dict, length: np.ndarray, count: np.ndarray, padding: Padding,
            specials: Specials, as_numpy: bool, offsets: bool) -> dict:
  """Rows padded to `padding` (arrays), or to at least it (lists), through cell masks."""
  width, entity_width = int(length.max(initial=0)), int(count.max(initial=0))
  if as_numpy and (width > padding.length or entity_width > padding.entity_length):
    key, limit = (("input_ids", padding.length) if width > padding.length
                  else ("entity_ids", padding.entity_length))
    raise ValueError(f"cannot make a rectangular array of {key!r}: a row is longer than the "
                     f"padding length {limit}; pass truncation=True")
  width, entity_width = max(width, padding.length), max(entity_width, padding.entity_length)
  shift = entity_shift = None
  if padding.left:
    shift = np.maximum(padding.length - length, 0)
    entity_shift = np.maximum(padding.entity_length - count, 0)
  cells = _cells(width, length, shift)
  entity_cells = _cells(entity_width, count, entity_shift) if "entity_ids" in flat else None
  fill = {"input_ids": specials.pad, "entity_ids": specials.entity_pad,
          "entity_position_ids": -1}
  out = {}
  for key, values in flat.items():
    where = entity_cells if key.startswith("entity") else cells
    if isinstance(values, int):
      out[key] = where.astype(_I64) if values else np.zeros(where.shape, _I64)
    else:
      out[key] = np.full(where.shape + values.shape[1:], fill.get(key, 0), _I64)
      out[key][where] = values
  if as_numpy:
    return out
  # Lists: each row cut to its own length, or to the padding length where it is shorter.
  keep = np.maximum(length, padding.length).tolist()
  entity_keep = np.maximum(count, padding.entity_length).tolist()
  for key, value in out.items():
    rows = value.tolist()
    sizes = entity_keep if key.startswith("entity") else keep
    if sizes.count(len(rows[0]) if rows else 0) != len(sizes):
      rows = [row[:k] for row, k in zip(rows, sizes)]
    out[key] = rows
  if offsets:
    out["offset_mapping"] = [list(map(tuple, row)) for row in out["offset_mapping"]]
  return out


def _cells(width: int, length: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
  """[R, width] bool: the cells of each row's `length` values, from column `shift` (or 0)."""
  columns = np.arange(width)
  if shift is None:
    return columns < length[:, None]
  return (columns >= shift[:, None]) & (columns < (shift + length)[:, None])


def _word_index(layout: Layout, specials_at: int, add_special_tokens: bool) -> np.ndarray:
  """Where each word cell's value comes from, row after row: `<s> A </s></s> B </s>`, with
  `<s>` and `</s>` at `specials_at` and `specials_at + 1` (after the word pieces)."""
  length = layout.length
  if layout.has_b is None:
    # One run of word pieces per row, between the specials.
    first = 1 if add_special_tokens else 0
    if len(length) == 1:  # one row: one range
      row_start, row_end = 0, int(length[0])
      src = int(layout.src_a[0]) - first
      index = np.arange(src, src + row_end)
    else:
      row_end = length.cumsum()
      row_start = row_end - length
      index = np.arange(row_end[-1] if len(row_end) else 0) + (
          layout.src_a - first - row_start).repeat(length)
    if add_special_tokens:
      index[row_start] = specials_at
      index[row_end - 1] = specials_at + 1
    return index
  # Runs of the two parts and of each special. A row whose pair text truncation dropped keeps
  # no separators for it.
  cls, sep, sep_b = specials_at, specials_at + 1, layout.has_b
  parts = ((cls, 1), (layout.src_a, layout.len_a), (sep, 1), (sep, sep_b),
           (layout.src_b, layout.len_b), (sep, sep_b))
  if not add_special_tokens:
    parts = parts[1::3]
  start = np.empty((len(length), len(parts)), _I64)
  size = np.empty((len(length), len(parts)), _I64)
  for k, (a, n) in enumerate(parts):
    start[:, k] = a
    size[:, k] = n
  size = size.ravel()
  ends = size.cumsum()
  return np.arange(ends[-1] if len(ends) else 0) + (start.ravel() - ends + size).repeat(size)
