"""The batch pipeline behind `LukeTokenizer.__call__`, vectorised over every text of a call.

The reference builds each example in Python, token list by token list. Here a call's texts are
*sides* (all first texts, then all pair texts) whose word pieces lie in one flat id array, and
each step is a handful of numpy operations over the whole batch:

1. `segment`: the cut points of every side (span boundaries, moved left over one space, as the
   reference does), found for all spans at once;
2. `encode`: one backend call for the pieces between the cuts of all sides (and one native call
   for the byte-level BPE texts that can be encoded whole), and the token index at every cut;
3. `insert_markers`: `<ent>`/`<ent2>` for the classification tasks;
4. `example_rows` / `window_rows`, then `assemble`: which tokens and entities each output row
   keeps (truncation), and where they go;
5. `outputs`: the padded arrays, or the lists, that the call returns.

Only rows that truncate, and windows, take a short Python step each; everything else is flat.
The scalar rules (`encoding.truncate`, `encoding.truncate_native`) stay the one source of truth
for truncation: rows apply them to `range` objects, whose slices say what a list would keep.
The numpy steps cost ~0.5 ms per call whatever its size, so `LukeTokenizer` takes this path for
batches only, and encodes a few examples one by one with `encoding`'s helpers; tests hold the
two paths to the same outputs.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Sequence

import numpy as np

from luke_jax.tokenization import encoding

_I64 = np.int64


def ragged_arange(lengths: np.ndarray) -> np.ndarray:
  """`concatenate([arange(n) for n in lengths])` without the Python loop."""
  total = int(lengths.sum())
  if not total:
    return np.zeros(0, _I64)
  return np.arange(total, dtype=_I64) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _flatten(lists, count: int | None = None) -> np.ndarray:
  return np.fromiter(itertools.chain.from_iterable(lists), _I64, -1 if count is None else count)


@dataclasses.dataclass
class Entities:
  """Every entity of a call, in span order side after side.

  Attributes:
    side: [E] the side (text) each entity belongs to.
    ids: [E] entity vocabulary ids.
    char_start, char_end: [E] character span in its text.
    start, end: [E] token span `[start, end)` in its side (set by `encode`).
  """
  side: np.ndarray
  ids: np.ndarray
  char_start: np.ndarray
  char_end: np.ndarray
  start: np.ndarray | None = None
  end: np.ndarray | None = None


@dataclasses.dataclass
class Tokens:
  """The word pieces of every side, one flat array.

  Attributes:
    ids: [T] ids, side after side.
    start: [S] where each side begins in `ids`.
    length: [S] tokens per side.
    offsets: [T, 2] character offsets, or None when not asked for.
  """
  ids: np.ndarray
  start: np.ndarray
  length: np.ndarray
  offsets: np.ndarray | None = None


# -- 1. cut points ---------------------------------------------------------------------------
@dataclasses.dataclass
class Cuts:
  """The distinct cut points of every side (position 0 included where a boundary falls there).

  Attributes:
    side, pos: [C] cut points sorted by side, then position.
    of_start, of_end: [E] which cut each entity's start and end boundary maps to.
  """
  side: np.ndarray
  pos: np.ndarray
  of_start: np.ndarray
  of_end: np.ndarray


def segment(texts: Sequence[str], entities: Entities) -> Cuts:
  """The reference's splitting at span boundaries (`encoding.segment`), for all texts at once.

  A boundary preceded by a space cuts one character earlier, so that the space stays with the
  following token (byte-level BPE's `Ġ`); the token index at a boundary is then the number of
  tokens before its cut.
  """
  e = len(entities.side)
  if not e:
    empty = np.zeros(0, _I64)
    return Cuts(empty, empty, empty, empty)
  lengths = np.fromiter(map(len, texts), _I64, len(texts))
  stride = int(lengths.max()) + 2  # (side, position) -> one sortable key
  keys = np.concatenate([entities.side * stride + entities.char_start,
                         entities.side * stride + entities.char_end])
  boundary, boundary_of = np.unique(keys, return_inverse=True)
  side, pos = np.divmod(boundary, stride)
  # The character before each boundary, from the code points of the joined texts (not empty:
  # a span holds at least one character).
  text_start = np.cumsum(lengths) - lengths
  code = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), np.uint32)
  before = code[np.maximum(text_start[side] + pos - 1, 0)]
  cut = pos - ((pos > 0) & (before == ord(" ")))
  cut_key, cut_of = np.unique(side * stride + cut, return_inverse=True)
  cut_side, cut_pos = np.divmod(cut_key, stride)
  of = cut_of[boundary_of]
  return Cuts(cut_side, cut_pos, of[:e], of[e:])


# -- 2. word pieces --------------------------------------------------------------------------
def encode(word_pieces, texts: Sequence[str], cuts: Cuts, offsets: bool
           ) -> tuple[Tokens, np.ndarray]:
  """Word pieces of every side and the token index at every cut.

  As the reference, each side is encoded piece by piece between its cuts, all pieces of the
  batch in one backend call. For byte-level BPE without offsets, a side the backend cannot
  encode in Python (`WordPieces.is_plain`) whose cuts all fall between pre-tokens is encoded
  whole instead (the same ids; see `WordPieces.encode_whole`), in one native call for all such
  sides.
  """
  num = len(texts)
  lengths = np.fromiter(map(len, texts), _I64, num)
  text_start = np.cumsum(lengths) - lengths
  joined = "".join(texts)
  inner = cuts.pos > 0  # a cut at 0 splits nothing
  cut_side, cut_pos = cuts.side[inner], cuts.pos[inner]
  whole = np.zeros(num, bool)
  if not offsets and word_pieces.kind == "bpe":
    whole[:] = [not word_pieces.is_plain(t) for t in texts]
  if whole.any():
    # A cut inside a run of letters or digits never falls between pre-tokens: skip the attempt.
    middle = np.flatnonzero((cut_pos < lengths[cut_side]) & whole[cut_side])
    at = text_start[cut_side[middle]] + cut_pos[middle]
    split = [p.isalpha() or p.isdigit() for p in map(joined.__getitem__,
                                                      map(slice, at - 1, at + 1))]
    whole[cut_side[middle[np.asarray(split, bool)]]] = False
  length = np.zeros(num, _I64)
  inner_tok = np.zeros(len(cut_pos), _I64)
  whole_ids = []
  if whole.any():
    sides = np.flatnonzero(whole)
    bounds = np.searchsorted(cut_side, np.stack([sides, sides + 1]))
    cut_lists = [cut_pos[a:b].tolist() for a, b in bounds.T]
    for s, (a, b), result in zip(sides.tolist(), bounds.T.tolist(), word_pieces.encode_whole(
        [texts[s] for s in sides], cut_lists)):
      if result is None:
        whole[s] = False
      else:
        whole_ids.append(result[0])
        length[s] = len(result[0])
        inner_tok[a:b] = result[1]

  # Every other side in pieces [0, c1), [c1, c2), ..., [ck, len), all in one call.
  rest = np.flatnonzero(~whole)
  rest_cut = ~whole[cut_side]
  piece_side = np.concatenate([rest, cut_side[rest_cut]])
  order = np.argsort(piece_side, kind="stable")  # each side's 0 first, then its cuts
  piece_side = piece_side[order]
  piece_start = np.concatenate([np.zeros(len(rest), _I64), cut_pos[rest_cut]])[order]
  last = np.append(piece_side[1:] != piece_side[:-1], True)
  piece_end = np.where(last, lengths[piece_side], np.roll(piece_start, -1))
  base = text_start[piece_side]
  pieces = list(map(joined.__getitem__, map(slice, base + piece_start, base + piece_end)))
  piece_offsets = None
  if offsets:
    encoded = word_pieces.encode_batch_with_offsets(pieces)
    piece_ids, piece_len = _flat_lists([e[0] for e in encoded])
    piece_offsets = np.asarray([o for e in encoded for o in e[1]], _I64).reshape(-1, 2)
    piece_offsets += np.repeat(piece_start, piece_len)[:, None]
  else:
    piece_ids, piece_len = word_pieces.encode_flat(pieces)
  length[rest] = np.bincount(piece_side, weights=piece_len, minlength=num)[rest].astype(_I64)
  # Token index at each cut: the tokens of the side's pieces before it.
  before = np.cumsum(piece_len) - piece_len
  first = piece_start == 0
  side_base = np.repeat(before[first], np.bincount(np.cumsum(first) - 1))
  inner_tok[rest_cut] = (before - side_base)[~first]

  start = np.cumsum(length) - length
  if not whole_ids:
    ids = piece_ids
  else:
    ids = np.empty(int(length.sum()), _I64)
    _scatter(ids, piece_ids, start[rest], length[rest])
    w = np.flatnonzero(whole)
    _scatter(ids, _flat_lists(whole_ids)[0], start[w], length[w])
  cut_tok = np.zeros(len(cuts.pos), _I64)
  cut_tok[inner] = inner_tok
  return Tokens(ids, start, length, piece_offsets), cut_tok


def _flat_lists(lists) -> tuple[np.ndarray, np.ndarray]:
  lengths = np.fromiter(map(len, lists), _I64, len(lists))
  return _flatten(lists, int(lengths.sum())), lengths


def _scatter(out: np.ndarray, values: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
  """Writes consecutive blocks of `values` (of `lengths`) to `out` at `starts`."""
  out[np.repeat(starts, lengths) + ragged_arange(lengths)] = values


# -- 3. task markers -------------------------------------------------------------------------
def insert_markers(tokens: Tokens, sides: np.ndarray, pos: np.ndarray, value: np.ndarray,
                   closing: np.ndarray) -> Tokens:
  """Inserts marker ids into some sides, step by step as the reference's list slicing does.

  Args:
    tokens: the word pieces.
    sides: [K] the sides that get markers.
    pos, value, closing: [K, m] for each step, in the reference's order, the index to insert
      at (in the side as it is at that step, earlier markers included), the marker id, and
      whether it closes a mention.

  With offsets, a marker is zero-width where its mention starts (opening) or ends (closing),
  read from the side as it is at that step, exactly as the reference-order insertion would.
  """
  k, m = pos.shape
  length = tokens.length[sides]
  base = tokens.start[sides]
  at = np.zeros((k, m), _I64)  # current index of each marker inserted so far
  anchor = np.zeros((k, m), _I64)
  for j in range(m):
    p = pos[:, j]
    if tokens.offsets is not None:
      size = length + j
      # Opening: start of the element at p (end of the last one at the very end); closing:
      # end of the element before p (0 at the very start).
      q = np.where(closing[:, j], p - 1, np.minimum(p, size - 1))
      use_end = closing[:, j] | (p >= size)
      start_q, end_q = _element(tokens.offsets, base, at[:, :j], anchor[:, :j], q)
      anchor[:, j] = np.where(use_end, end_q, start_q)
      anchor[:, j] = np.where((q < 0) | (size == 0), 0, anchor[:, j])
    at[:, :j] += at[:, :j] >= p[:, None]
    at[:, j] = p
  new_length = tokens.length.copy()
  new_length[sides] += m
  new_start = np.cumsum(new_length) - new_length
  total = int(new_length.sum())
  slot = (new_start[sides][:, None] + at).ravel()
  is_marker = np.zeros(total, bool)
  is_marker[slot] = True
  ids = np.empty(total, _I64)
  ids[slot] = value.ravel()
  ids[~is_marker] = tokens.ids
  offsets = None
  if tokens.offsets is not None:
    offsets = np.empty((total, 2), _I64)
    offsets[slot] = anchor.ravel()[:, None]
    offsets[~is_marker] = tokens.offsets
  return Tokens(ids, new_start, new_length, offsets)


def _element(offsets, base, at, anchor, q):
  """(start, end) of element `q` of each side as it is now (markers `at` already inserted)."""
  hit = at == q[:, None]
  is_marker = hit.any(axis=1)
  mark = (anchor * hit).sum(axis=1)
  original = q - (at < q[:, None]).sum(axis=1)
  index = np.clip(base + original, 0, max(len(offsets) - 1, 0))
  if not len(offsets):
    return mark, mark
  return (np.where(is_marker, mark, offsets[index, 0]),
          np.where(is_marker, mark, offsets[index, 1]))


# -- 4. rows ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Rows:
  """Output rows: each takes a token range of one side, and optionally of a second side.

  Attributes:
    example: [R] the input example of each row (several rows per example with windows).
    side_a, lo_a, len_a: [R] first side, first token and token count of its part.
    side_b, lo_b, len_b: [R] the same for the pair part; `side_b` is -1 without one.
    entity, part, shift: [N] candidate entities of each row (indices into `Entities`), sorted
      by row, then part (0 or 1), then span order; `shift` is subtracted from their token span
      (a window's first token).
    entity_row: [N] the row of each candidate.
  """
  example: np.ndarray
  side_a: np.ndarray
  lo_a: np.ndarray
  len_a: np.ndarray
  side_b: np.ndarray
  lo_b: np.ndarray
  len_b: np.ndarray
  entity: np.ndarray
  entity_row: np.ndarray
  part: np.ndarray
  shift: np.ndarray


def example_rows(tokens: Tokens, entities: Entities, n: int, pair: bool) -> Rows:
  """One row per example: side i, and side n + i as its pair."""
  rows = np.arange(n, dtype=_I64)
  zeros = np.zeros(n, _I64)
  side_b = rows + n if pair else np.full(n, -1, _I64)
  len_b = tokens.length[n:2 * n] if pair else zeros
  part = (entities.side >= n).astype(_I64)
  row = entities.side - part * n
  order = np.argsort(row * 2 + part, kind="stable")
  return Rows(rows, rows, zeros, tokens.length[:n].copy(), side_b, zeros.copy(), len_b.copy(),
              order, row[order], part[order], np.zeros(len(order), _I64))


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
  as_array = lambda values: np.asarray(values, _I64)
  return Rows(**{k: as_array(v) for k, v in columns.items()},
              **{k: as_array(v) for k, v in cand.items()})


@dataclasses.dataclass
class Layout:
  """What each row keeps and where it goes.

  Attributes:
    src_a, len_a, src_b, len_b: [R] flat start in `Tokens.ids` and count of the kept tokens of
      each part (`len_b` is 0 and `has_b` False without a pair).
    has_b: [R] whether the row has a pair part (with its separators).
    length: [R] row length, special tokens included.
    entity: [M] kept entities, in row order; entity_row, entity_slot: [M] their row and index
      in it; entity_start, entity_end: [M] their token span in the row.
    entity_count: [R] kept entities per row.
  """
  src_a: np.ndarray
  len_a: np.ndarray
  src_b: np.ndarray
  len_b: np.ndarray
  has_b: np.ndarray
  length: np.ndarray
  entity: np.ndarray
  entity_row: np.ndarray
  entity_slot: np.ndarray
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
  has_b = rows.side_b >= 0
  specials = np.where(has_b, 4, 2) if add_special_tokens else np.zeros(num, _I64)
  lo_a, len_a = rows.lo_a.copy(), rows.len_a.copy()
  lo_b, len_b = rows.lo_b.copy(), np.where(has_b, rows.len_b, 0)
  total = len_a + len_b + specials
  truncating = strategy != "do_not_truncate" and bool(max_length)
  if truncating:
    for r in np.flatnonzero(total > max_length).tolist():
      a = range(int(len_a[r]))
      b = range(int(len_b[r])) if has_b[r] else None
      if with_entities:
        a, b = encoding.truncate(a, b, int(total[r]) - max_length, strategy, side)
      else:
        a, b = encoding.truncate_native(a, b, max_length - int(specials[r]), strategy, side)
      lo_a[r] += a.start
      len_a[r] = len(a)
      if b is None:
        has_b[r], len_b[r] = False, 0  # left-truncating an empty pair drops it, as the reference
      else:
        lo_b[r] += b.start
        len_b[r] = len(b)
  if add_special_tokens:
    specials = np.where(has_b, 4, 2)
  length = len_a + len_b + specials
  src_a = tokens.start[rows.side_a] + lo_a
  src_b = np.where(has_b, tokens.start[np.maximum(rows.side_b, 0)] + lo_b, 0)

  # Entities: keep those whose span ends within the kept tokens of their part.
  er, part = rows.entity_row, rows.part
  end = entities.end[rows.entity] - rows.shift
  start = entities.start[rows.entity] - rows.shift
  keep = np.where(part == 0, end <= len_a[er], has_b[er] & (end <= len_b[er]))
  entity, er, part, start, end = (x[keep] for x in (rows.entity, er, part, start, end))
  counts = np.zeros((num, 2), _I64)
  np.add.at(counts, (er, part), 1)
  rank = ragged_arange(np.bincount(er * 2 + part, minlength=2 * num))
  lo = np.zeros((num, 2), _I64)
  hi = counts.copy()
  if strategy != "do_not_truncate":
    for r in np.flatnonzero(counts.sum(axis=1) > entity_limit).tolist():
      # A pair part without spans holds an empty list; `truncate` treats it as None.
      a = range(int(counts[r, 0]))
      b = range(int(counts[r, 1])) if has_b[r] else None
      a, b = encoding.truncate(a, b, int(counts[r].sum()) - entity_limit, strategy, side)
      lo[r, 0], hi[r, 0] = a.start, a.stop
      if b is None:
        hi[r, 1] = 0
      else:
        lo[r, 1], hi[r, 1] = b.start, b.stop
  keep = (rank >= lo[er, part]) & (rank < hi[er, part])
  entity, er, part, start, end = (x[keep] for x in (entity, er, part, start, end))
  base = np.where(part == 0, 1 if add_special_tokens else 0,
                  len_a[er] + (3 if add_special_tokens else 0))
  entity_count = np.bincount(er, minlength=num).astype(_I64)
  return Layout(src_a, len_a, src_b, len_b, has_b, length, entity, er,
                ragged_arange(entity_count), start + base, end + base, entity_count)


# -- 5. outputs ------------------------------------------------------------------------------
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
  width, entity_width = int(length.max(initial=0)), int(count.max(initial=0))
  shift = entity_shift = np.zeros(len(length), _I64)
  if padding is not None:
    if as_numpy and (width > padding.length or entity_width > padding.entity_length):
      key, limit = (("input_ids", padding.length) if width > padding.length
                    else ("entity_ids", padding.entity_length))
      raise ValueError(f"cannot make a rectangular array of {key!r}: a row is longer than the "
                       f"padding length {limit}; pass truncation=True")
    width, entity_width = max(width, padding.length), max(entity_width, padding.entity_length)
    if padding.left:
      shift = np.maximum(padding.length - length, 0)
      entity_shift = np.maximum(padding.entity_length - count, 0)
  out = {"input_ids": _lay_words(layout, tokens.ids, width, shift, specials.pad,
                                 (specials.cls, specials.sep), add_special_tokens)}
  if token_types:
    out["token_type_ids"] = np.zeros((len(length), width), _I64)
  if offsets:
    out["offset_mapping"] = _lay_words(layout, tokens.offsets, width, shift, 0, (0, 0),
                                       add_special_tokens)
  if with_entities:
    lay = lambda values, fill: _lay_entities(layout, values, entity_width, entity_shift, fill)
    out["entity_ids"] = lay(entities.ids[layout.entity], specials.entity_pad)
    if span_positions:
      out["entity_start_positions"] = lay(layout.entity_start, 0)
      out["entity_end_positions"] = lay(layout.entity_end - 1, 0)
    if token_types:
      out["entity_token_type_ids"] = np.zeros((len(length), entity_width), _I64)
    out["entity_position_ids"] = lay(
        encoding.position_grid(layout.entity_start, layout.entity_end, mention_length), -1)
  if attention_mask:
    out["attention_mask"] = mask(width, shift, length)
    if with_entities:
      out["entity_attention_mask"] = mask(entity_width, entity_shift, count)
  if as_numpy:
    return out
  # Lists: each row cut to its own length, or to the padding length where it is shorter.
  keep = (length if padding is None else np.maximum(length, padding.length)).tolist()
  entity_keep = (count if padding is None
                 else np.maximum(count, padding.entity_length)).tolist()
  for key, value in out.items():
    out[key] = [row[:k] for row, k in zip(value.tolist(),
                                          entity_keep if key.startswith("entity") else keep)]
  if offsets:
    out["offset_mapping"] = [list(map(tuple, row)) for row in out["offset_mapping"]]
  return out


def _lay_words(layout: Layout, src: np.ndarray, width: int, shift: np.ndarray, fill,
               special_values: tuple, add_special_tokens: bool) -> np.ndarray:
  """[R, width, ...]: `<s> A </s></s> B </s>` of each row from column `shift`, else `fill`."""
  num = len(layout.length)
  out = np.full((num, width) + src.shape[1:], fill, _I64)
  first = 1 if add_special_tokens else 0
  _place(out, src, layout.src_a, layout.len_a, shift + first)
  after_a = shift + first + layout.len_a
  pair_at = after_a + (2 if add_special_tokens else 0)
  _place(out, src, layout.src_b, layout.len_b, pair_at)
  if add_special_tokens:
    cls, sep = special_values
    rows = np.arange(num)
    out[rows, shift] = cls
    out[rows, after_a] = sep
    b = np.flatnonzero(layout.has_b)
    out[b, after_a[b] + 1] = sep
    out[b, pair_at[b] + layout.len_b[b]] = sep
  return out


def _place(out, src, src_start, count, col_start):
  rows = np.repeat(np.arange(len(count)), count)
  within = ragged_arange(count)
  out[rows, col_start[rows] + within] = src[src_start[rows] + within]


def _lay_entities(layout: Layout, values: np.ndarray, width: int, shift: np.ndarray,
                  fill) -> np.ndarray:
  out = np.full((len(layout.length), width) + values.shape[1:], fill, _I64)
  out[layout.entity_row, shift[layout.entity_row] + layout.entity_slot] = values
  return out


def mask(width: int, shift: np.ndarray, length: np.ndarray) -> np.ndarray:
  """[R, width] attention mask: 1 on columns `[shift, shift + length)` of each row."""
  columns = np.arange(width)[None, :]
  return ((columns >= shift[:, None]) & (columns < (shift + length)[:, None])).astype(_I64)
