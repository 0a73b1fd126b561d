"""The encoding pipeline behind `LukeTokenizer.__call__`, column-wise over every text of a call.

The reference builds each example in Python, token list by token list. Here a call's texts are
*sides* (all first texts, then all pair texts) whose word pieces lie in one flat id array, and
each step is a handful of numpy operations over the whole call, one example or thousands:

0. `entity_inputs.collect`: every span of the call, checked, with its entity id;
1. `segment`: the cut points of every side (span boundaries, moved left over one space, as the
   reference does), found for all spans at once;
2. `encode`: one backend call for the pieces between the cuts of all sides (and one native call
   for the byte-level BPE texts that can be encoded whole), and the token index at every cut;
3. `insert_markers`: `<ent>`/`<ent2>` for the classification tasks;
4. `rows.example_rows` / `rows.window_rows`, then `rows.assemble`: which tokens and entities
   each output row keeps (truncation), and where they go;
5. `outputs.outputs`: the padded arrays, or the lists, that the call returns.

Only rows that truncate, and windows, take a short Python step each; everything else is flat.
A numpy operation costs about a microsecond whatever its size, and a call of one example pays
that for each: the steps keep their operations few (none of `np.unique`, `np.roll`,
`np.stack`, whose Python wrappers cost several times that), skip what the usual call does not
need (sorting spans given in order, filtering entities no truncation dropped), and take the
one-text form of a computation where it has one (a text's piece bounds, a row's word index).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Sequence

import numpy as np

_I64 = np.int64


def ragged_arange(lengths: np.ndarray) -> np.ndarray:
  """`concatenate([arange(n) for n in lengths])` without the Python loop."""
  ends = lengths.cumsum()
  total = int(ends[-1]) if len(ends) else 0
  if not total:
    return np.zeros(0, _I64)
  return np.arange(total, dtype=_I64) - (ends - lengths).repeat(lengths)


def empty() -> np.ndarray:
  """A new empty int64 array."""
  return np.zeros(0, _I64)


class Texts:
  """The texts of a call, every side, joined into one string.

  Attributes:
    texts: [S] the texts, first sides then pair sides.
    joined: all of them, concatenated.
    length, start: [S] each text's length in characters and where it starts in `joined`
      (computed when first asked for: a call of one text rarely needs them).
  """

  def __init__(self, texts: list[str]):
    self.texts = texts
    self.joined = "".join(texts)

  @functools.cached_property
  def length(self) -> np.ndarray:
    return np.fromiter(map(len, self.texts), _I64, len(self.texts))

  @functools.cached_property
  def start(self) -> np.ndarray:
    return self.length.cumsum() - self.length


@dataclasses.dataclass
class Entities:
  """Every entity of a call, in span order side after side.

  Attributes:
    side: [E] the side (text) each entity belongs to.
    ids: [E] entity vocabulary ids.
    char: [E, 2] character span `[start, end)` in its text.
    start, end: [E] token span `[start, end)` in its side (set after `encode`).
  """
  side: np.ndarray
  ids: np.ndarray
  char: np.ndarray
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
  """The cut points of every side, one per span boundary (equal ones repeated).

  Attributes:
    side, pos: [2E] cut points sorted by side, then position.
    of_start, of_end: [E] which cut each entity's start and end boundary maps to.
  """
  side: np.ndarray
  pos: np.ndarray
  of_start: np.ndarray
  of_end: np.ndarray


def segment(texts: Texts, entities: Entities) -> Cuts:
  """The reference's splitting at span boundaries, for all texts at once.

  A boundary preceded by a space cuts one character earlier, so that the space stays with the
  following token (byte-level BPE's `Ġ`); the token index at a boundary is then the number of
  tokens before its cut. Equal cuts are kept: the piece between them is empty, which is
  cheaper to encode than to remove.
  """
  e = len(entities.side)
  if not e:
    return Cuts(empty(), empty(), empty(), empty())
  side = entities.side.repeat(2)
  pos = entities.char.ravel()  # start, end, start, end, ...
  one = len(texts.texts) == 1
  # A boundary's place in "\0" + "\0".join(texts), less one: the index of the character
  # before it, the separator at a text's start. Sorted by side, then position.
  key = pos if one else texts.start[side] + side + pos
  of = np.arange(2 * e)
  if e > 1 and np.count_nonzero(key[1:] < key[:-1]):  # spans out of order: sort
    order = key.argsort(kind="stable")
    side, pos, key = side[order], pos[order], key[order]
    of[order] = of.copy()
  code = np.frombuffer(("\0" + "\0".join(texts.texts)).encode("utf-32-le", "surrogatepass"),
                       np.uint32)
  # Moving a boundary left by one never passes the previous boundary's cut: cuts stay sorted.
  cut = pos - (code[key] == ord(" "))
  return Cuts(side, cut, of[0::2], of[1::2])


# -- 2. word pieces --------------------------------------------------------------------------
def encode(word_pieces, texts: Texts, cuts: Cuts, offsets: bool) -> tuple[Tokens, np.ndarray]:
  """Word pieces of every side and the token index at every cut.

  As the reference, each side is encoded piece by piece between its cuts, all pieces of the
  call in one backend call. For byte-level BPE without offsets, a side the backend cannot
  encode in Python (`WordPieces.is_plain`) whose cuts all fall between pre-tokens is encoded
  whole instead (the same ids; see `WordPieces.encode_whole`), in one native call for all such
  sides.
  """
  plain = word_pieces.kind == "bpe" and word_pieces.is_plain(texts.joined)
  if offsets or plain or word_pieces.kind != "bpe":
    return _encode_pieces(word_pieces, texts, cuts.side, cuts.pos, offsets, plain)
  num = len(texts.texts)
  cut_side, cut_pos = cuts.side, cuts.pos
  bounds = cut_side.searchsorted(np.arange(num + 1)).tolist() if num > 1 else [0, len(cut_pos)]
  tried = {}  # side -> its cuts
  for s, text in enumerate(texts.texts):
    if not word_pieces.is_plain(text):
      at = cut_pos[bounds[s]:bounds[s + 1]].tolist()
      # A cut inside a run of letters or of digits never falls between pre-tokens.
      if not any(0 < c < len(text) and ((p := text[c - 1:c + 1]).isalpha() or p.isdigit())
                 for c in at):
        tried[s] = at
  done = {s: result for s, result in zip(tried, word_pieces.encode_whole(
      [texts.texts[s] for s in tried], list(tried.values()))) if result is not None}
  if not done:
    return _encode_pieces(word_pieces, texts, cut_side, cut_pos, False)
  whole_ids = [side_ids for side_ids, _ in done.values()]
  if len(done) == num:
    length = np.fromiter(map(len, whole_ids), _I64, num)
    return (Tokens(np.fromiter(itertools.chain.from_iterable(whole_ids), _I64),
                   length.cumsum() - length, length),
            np.fromiter(itertools.chain.from_iterable(at for _, at in done.values()), _I64,
                        len(cut_pos)))
  whole = np.zeros(num, bool)
  whole[list(done)] = True
  length = np.zeros(num, _I64)
  cut_tok = np.zeros(len(cut_pos), _I64)
  for s, (side_ids, at) in done.items():
    length[s] = len(side_ids)
    cut_tok[bounds[s]:bounds[s + 1]] = at
  # Every other side in pieces.
  rest = np.flatnonzero(~whole)
  rest_cut = ~whole[cut_side]
  index = np.cumsum(~whole) - 1  # side -> its index among the others
  pieces, cut_tok[rest_cut] = _encode_pieces(
      word_pieces, Texts([texts.texts[s] for s in rest.tolist()]), index[cut_side[rest_cut]],
      cut_pos[rest_cut], False)
  length[rest] = pieces.length
  start = length.cumsum() - length
  ids = np.empty(int(length.sum()), _I64)
  _scatter(ids, pieces.ids, start[rest], pieces.length)
  w = np.flatnonzero(whole)
  _scatter(ids, np.fromiter(itertools.chain.from_iterable(whole_ids), _I64), start[w],
           length[w])
  return Tokens(ids, start, length), cut_tok


def _encode_pieces(word_pieces, texts: Texts, cut_side: np.ndarray, cut_pos: np.ndarray,
                   offsets: bool, plain: bool = False) -> tuple[Tokens, np.ndarray]:
  """Encodes every side in pieces `[0, c1), [c1, c2), ..., [ck, len)` at its sorted cuts, all
  in one backend call (`plain`: texts known to pass `WordPieces.is_plain`); returns the tokens
  and the token index at each cut.

  The sides lie one after the other in `texts.joined`, so the pieces do too: each ends where
  the next one starts.
  """
  joined = texts.joined
  num = len(texts.texts)
  if num == 1:  # one side (a call of one example): pieces at 0, then at each cut
    bound = np.zeros(len(cut_pos) + 1, _I64)
    bound[1:] = cut_pos
  else:
    count = np.bincount(cut_side, minlength=num) + 1
    first = count.cumsum() - count
    at_cut = np.empty(num + len(cut_pos), bool)
    at_cut.fill(True)
    at_cut[first] = False
    bound = np.empty(len(at_cut), _I64)  # where each piece starts, in `joined`
    bound[first] = texts.start
    bound[at_cut] = texts.start[cut_side] + cut_pos
  starts = bound.tolist()
  pieces = [joined[a:b] for a, b in zip(starts, starts[1:] + [len(joined)])]
  piece_offsets = None
  if offsets:
    encoded = word_pieces.encode_batch_with_offsets(pieces)
    piece_len = np.fromiter((len(e[0]) for e in encoded), _I64, len(pieces))
    piece_ids = np.fromiter(itertools.chain.from_iterable(e[0] for e in encoded), _I64)
    piece_offsets = np.array([o for e in encoded for o in e[1]], _I64).reshape(-1, 2)
    if num > 1:  # offsets in the side, not in the piece
      bound[first] = 0
      bound[at_cut] = cut_pos
    piece_offsets += bound.repeat(piece_len)[:, None]
  else:
    piece_ids, piece_len = word_pieces.encode_flat(pieces, plain)
  # Token index at each cut: the tokens of the side's pieces before it.
  before = piece_len.cumsum() - piece_len
  if num == 1:
    return (Tokens(piece_ids, np.zeros(1, _I64), np.array([len(piece_ids)]), piece_offsets),
            before[1:])
  side_start = before[first]
  cut_tok = before[at_cut] - side_start[cut_side]
  length = np.empty(num, _I64)
  length[:-1] = side_start[1:]
  length[-1:] = len(piece_ids)  # (no sides: nothing)
  return Tokens(piece_ids, side_start, length - side_start, piece_offsets), cut_tok


def _scatter(out: np.ndarray, values: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
  """Writes consecutive blocks of `values` (of `lengths`) to `out` at `starts`."""
  out[starts.repeat(lengths) + ragged_arange(lengths)] = values


# -- 3. task markers -------------------------------------------------------------------------
def insert_markers(tokens: Tokens, n: int, pos: np.ndarray, value: np.ndarray,
                   closing: Sequence[bool]) -> Tokens:
  """Inserts marker ids into the first `n` sides, step by step as the reference's list slicing.

  Args:
    tokens: the word pieces.
    n: the sides that get markers (the first texts of the examples).
    pos, value: [n, m] for each step, in the reference's order, the index to insert at (in the
      side as it is at that step, earlier markers included) and the marker id.
    closing: [m] whether each step's marker closes a mention.

  With offsets, a marker is zero-width where its mention starts (opening) or ends (closing),
  read from the side as it is at that step, exactly as the reference-order insertion would.
  """
  m = pos.shape[1]
  length = tokens.length[:n]
  base = tokens.start[:n]
  anchor = np.zeros((n, m), _I64) if tokens.offsets is not None else None
  steps = range(m)
  if anchor is None and not np.count_nonzero(pos[:, 1:] > pos[:, :-1]):
    # Positions that never grow (the reference's orders, but for mentions of no tokens): every
    # later marker goes in at or before each earlier one and moves it one place.
    at = pos + np.arange(m - 1, -1, -1)
    steps = ()
  else:
    at = np.zeros((n, m), _I64)  # current index of each marker inserted so far
  for j in steps:
    p = pos[:, j]
    if anchor is not None:
      size = length + j
      # Opening: start of the element at p (end of the last one at the very end); closing:
      # end of the element before p (0 at the very start).
      q = p - 1 if closing[j] else np.minimum(p, size - 1)
      use_end = True if closing[j] else p >= size
      start_q, end_q = _element(tokens.offsets, base, at[:, :j], anchor[:, :j], q)
      anchor[:, j] = np.where(use_end, end_q, start_q)
      anchor[:, j] = np.where((q < 0) | (size == 0), 0, anchor[:, j])
    if j:
      at[:, :j] += at[:, :j] >= p[:, None]
    at[:, j] = p
  if n == len(tokens.length):  # no pair texts: every side gets markers
    new_length = tokens.length + m
    new_start = tokens.start + np.arange(0, n * m, m)
  else:
    new_length = tokens.length.copy()
    new_length[:n] += m
    new_start = new_length.cumsum() - new_length
  total = len(tokens.ids) + n * m
  slot = (new_start[:n, None] + at).ravel()
  is_word = np.empty(total, bool)
  is_word.fill(True)
  is_word[slot] = False
  ids = np.empty(total, _I64)
  ids[slot] = value.ravel()
  ids[is_word] = tokens.ids
  offsets = None
  if anchor is not None:
    offsets = np.empty((total, 2), _I64)
    offsets[slot] = anchor.ravel()[:, None]
    offsets[is_word] = tokens.offsets
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
