"""From text and character entity spans to word and entity ids, one example at a time.

The reference's rules as scalar helpers: `check_spans` validates spans, `segment` splits one
text at every span boundary (the reference's boundary-forced splitting), `fill` / `fill_whole`
map the boundaries to tokens once the pieces are encoded, `insert_markers` adds the
classification tasks' markers, and `truncate` / `truncate_native` are transformers' two
truncation rules. `LukeTokenizer` encodes a few examples with these (see `_encode_examples`);
the column-wise batch path (`batch`) reuses the validation and truncation rules.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

Span = tuple[int, int]
TASKS = (None, "entity_classification", "entity_pair_classification",
         "entity_span_classification")


@dataclasses.dataclass
class Side:
  """One text of an example (the first or the pair), segmented at its span boundaries."""
  text: str
  spans: list[Span] | None
  entity_ids: list[int] | None
  pieces: list[tuple[int, int]]  # character [start, end) of each segment
  boundary_segment: dict[int, int]  # span boundary (char) -> number of segments before it
  ids: list[int] = dataclasses.field(default_factory=list)
  offsets: list[tuple[int, int]] = dataclasses.field(default_factory=list)
  token_spans: list[Span] | None = None


def check_spans(spans, text: str, example: int, task: str | None, which: str) -> list[Span]:
  """Validates character spans; errors name the example, the span and the rule."""
  if not isinstance(spans, (list, tuple)):
    raise ValueError(f"example {example}: {which} must be a list of (start, end) tuples")
  out = []
  for span in spans:
    if not (isinstance(span, (list, tuple)) and len(span) == 2
            and all(isinstance(x, (int, np.integer)) for x in span)):
      raise ValueError(f"example {example}: {which} {span!r} is not a (start, end) pair of ints")
    start, end = int(span[0]), int(span[1])
    if not 0 <= start <= len(text) or not 0 <= end <= len(text):
      raise ValueError(f"example {example}: {which} {(start, end)} is out of range for a text "
                       f"of {len(text)} characters")
    if start >= end:
      raise ValueError(f"example {example}: {which} {(start, end)} is empty or reversed "
                       "(start must be < end)")
    out.append((start, end))
  if task == "entity_classification" and len(out) != 1:
    raise ValueError(f"example {example}: task entity_classification takes exactly one span, "
                     f"got {len(out)}: {out}")
  if task == "entity_pair_classification":
    if len(out) != 2:
      raise ValueError(f"example {example}: task entity_pair_classification takes exactly two "
                       f"spans (head, tail), got {len(out)}: {out}")
    (a0, a1), (b0, b1) = out
    if a0 < b1 and b0 < a1:
      raise ValueError(f"example {example}: head span {out[0]} and tail span {out[1]} overlap; "
                       "entity_pair_classification wraps each in its own markers")
  if task == "entity_span_classification" and not out:
    raise ValueError(f"example {example}: task entity_span_classification needs at least one "
                     "span")
  return out


def segment(text: str, spans: list[Span] | None) -> tuple[list[tuple[int, int]], dict[int, int]]:
  """Character pieces of `text` cut at every span boundary.

  As in the reference, a cut preceded by a space moves one character left, so the space stays
  with the following token (byte-level BPE's `Ġ`); empty pieces are skipped.
  """
  if spans is None:
    return [(0, len(text))], {}
  pieces, boundary_segment = [], {}
  cur = 0
  for boundary in sorted({p for span in spans for p in span}):
    cut = boundary - 1 if boundary > 0 and text[boundary - 1] == " " else boundary
    if cur != cut:
      pieces.append((cur, cut))
      cur = cut
    boundary_segment[boundary] = len(pieces)
  pieces.append((cur, len(text)))
  return pieces, boundary_segment


def fill(side: Side, piece_ids: Sequence[list[int]], piece_offsets=None) -> None:
  """Concatenates the encoded pieces and maps span boundaries to token positions."""
  starts = [0]
  for ids in piece_ids:
    starts.append(starts[-1] + len(ids))
  side.ids = [i for ids in piece_ids for i in ids]
  if piece_offsets is not None:
    side.offsets = [(a + base, b + base) for (base, _), offs in zip(side.pieces, piece_offsets)
                    for a, b in offs]
  if side.spans is not None:
    side.token_spans = [(starts[side.boundary_segment[s]], starts[side.boundary_segment[e]])
                        for s, e in side.spans]


def cuts(side: Side) -> list[int]:
  """The character positions where `segment` cut the text (piece starts after the first)."""
  return [start for start, _ in side.pieces[1:]]


def cuts_between_words(side: Side) -> bool:
  """False when a cut splits a run of letters or of digits, which no pre-tokenizer splits;
  such texts go straight to piece-by-piece encoding instead of a wasted whole-text attempt."""
  text = side.text
  for c in cuts(side):
    if 0 < c < len(text):
      a, b = text[c - 1], text[c]
      if (a.isalpha() and b.isalpha()) or (a.isdigit() and b.isdigit()):
        return False
  return True


def fill_whole(side: Side, ids: list[int], token_at: dict[int, int]) -> None:
  """`fill` for a text encoded whole: boundaries map through the token index at each cut."""
  side.ids = ids
  if side.spans is not None:
    token_at = {0: 0, **token_at}  # the first piece starts the text
    position = {b: token_at[side.pieces[k][0]] for b, k in side.boundary_segment.items()}
    side.token_spans = [(position[s], position[e]) for s, e in side.spans]


def insert_markers(side: Side, task: str | None, marker_1: int, marker_2: int,
                   offsets: bool = False) -> None:
  """`<ent>`/`<ent2>` around the spans of the classification tasks; spans cover the markers."""
  if task == "entity_classification":
    (start, end), = side.token_spans
    _insert(side, [(end, marker_1, True), (start, marker_1, False)], offsets)
    side.token_spans = [(start, end + 2)]
  elif task == "entity_pair_classification":
    head, tail = side.token_spans
    if head[0] < tail[0]:
      side.token_spans = [(head[0], head[1] + 2), (tail[0] + 2, tail[1] + 4)]
      order = [(tail, marker_2), (head, marker_1)]
    else:
      side.token_spans = [(head[0] + 2, head[1] + 4), (tail[0], tail[1] + 2)]
      order = [(head, marker_1), (tail, marker_2)]
    inserts = []
    for (start, end), marker in order:
      inserts += [(end, marker, True), (start, marker, False)]
    _insert(side, inserts, offsets)


def _insert(side: Side, inserts: list[tuple[int, int, bool]], offsets: bool) -> None:
  """Inserts marker ids at token positions, applied in the given order (as the reference).

  With offsets, a marker is zero-width where its mention starts (opening) or ends (closing),
  so `text[start:end]` of the marked mention runs from one marker to the other.
  """
  for pos, marker, closing in inserts:
    side.ids = side.ids[:pos] + [marker] + side.ids[pos:]
    if offsets:
      if closing:
        anchor = side.offsets[pos - 1][1] if pos > 0 else 0
      elif pos < len(side.offsets):
        anchor = side.offsets[pos][0]
      else:
        anchor = side.offsets[-1][1] if side.offsets else 0
      side.offsets = side.offsets[:pos] + [(anchor, anchor)] + side.offsets[pos:]


def truncate(first: list, second: list | None, remove: int, strategy: str,
             side: str = "right") -> tuple[list, list | None]:
  """transformers' `truncate_sequences` (without overflow), for word and for entity lists."""
  if remove <= 0:
    return first, second
  if strategy == "only_first" or (strategy == "longest_first" and second is None):
    return (first[remove:] if side == "left" else first[:-remove]), second
  if strategy == "longest_first":
    len_first, len_second = len(first), len(second) if second else 0
    first_remove = min(abs(len_second - len_first), remove)
    second_remove = remove - first_remove
    if len_first > len_second:
      from_first = first_remove + second_remove // 2
      from_second = second_remove - second_remove // 2
    else:
      from_first = second_remove // 2
      from_second = first_remove + second_remove - second_remove // 2
    if side == "right":
      first = first[:-from_first] if from_first > 0 else first
      second = second[:-from_second] if second and from_second > 0 else second
    else:
      first = first[from_first:]
      second = second[from_second:] if second else None
    return first, second
  if strategy == "only_second" and second:
    return first, (second[:-remove] if side == "right" else second[remove:])
  return first, second


def truncate_native(first: list, second: list | None, budget: int, strategy: str,
                    side: str = "right") -> tuple[list, list | None]:
  """The `tokenizers` library's truncation, which transformers uses when there are no entities.

  `budget` is what the texts may keep (max_length minus the special tokens). For pairs,
  `longest_first` keeps the shorter text whole if it can and splits evenly otherwise.
  """
  cut = (lambda x, n: x[:n]) if side == "right" else (lambda x, n: x[len(x) - n:])
  if second is None:
    if strategy == "only_second":
      raise ValueError("truncation='only_second' needs a text pair")
    return cut(first, max(budget, 0)), None
  if strategy == "longest_first":
    n1, n2 = len(first), len(second)
    swap = n1 > n2
    if swap:
      n1, n2 = n2, n1
    n2 = n1 if n1 > budget else max(n1, budget - n1)
    if n1 + n2 > budget:
      n1 = budget // 2
      n2 = n1 + budget % 2
    if swap:
      n1, n2 = n2, n1
    return cut(first, n1), cut(second, n2)
  target, other = (first, second) if strategy == "only_first" else (second, first)
  keep = budget - len(other)
  if keep <= 0:
    raise ValueError(f"truncation={strategy!r}: the other text alone has {len(other)} tokens, "
                     f"more than the {budget} that max_length leaves")
  return (cut(first, keep), second) if strategy == "only_first" else (first, cut(second, keep))


def position_ids(starts: Sequence[int], ends: Sequence[int],
                 mention_length: int) -> list[list[int]]:
  """`[n, mention_length]` token positions of each mention, -1 padded.

  Plain lists: an example has a handful of mentions, too few for numpy to pay off.
  """
  return [[p if p < end else -1 for p in range(start, start + mention_length)]
          for start, end in zip(starts, ends)]


def position_grid(starts: np.ndarray, ends: np.ndarray, mention_length: int) -> np.ndarray:
  """`position_ids` for many mentions at once: `[n, mention_length]`, -1 padded."""
  grid = starts[:, None] + np.arange(mention_length)[None, :]
  return np.where(grid < ends[:, None], grid, -1)


def pad_rows(rows: list[list], length: int, value, left: bool) -> list[list]:
  return [([value] * (length - len(r)) + list(r)) if left else (list(r) + [value] * (
      length - len(r))) for r in rows]


def round_up(n: int, multiple: int | None) -> int:
  if multiple and n % multiple:
    return (n // multiple + 1) * multiple
  return n
