"""The entity inputs of a call (spans, titles), checked, as the pipeline's `Entities`.

`check_spans` and `check_side` are the rules, in the reference's order, with errors that name
the example, the span and the rule. A call of many texts is first checked with a few array
operations (`_valid_pairs`), and only input that fails them goes through the rules one side
at a time, to raise the first example's error; a few texts go through the rules directly.
"""

from __future__ import annotations

import itertools

import numpy as np

from luke_jax.tokenization.batch import Entities

Span = tuple[int, int]
_I64 = np.int64
_INTS = (int, np.integer)
# Sides up to which the rules check a call directly; beyond, the array check is cheaper
# (measured with three spans a side).
_CHECK_SIDES_UP_TO = 8


def check_spans(spans, text: str, example: int, task: str | None, which: str) -> list[Span]:
  """Validates character spans; errors name the example, the span and the rule."""
  if not isinstance(spans, (list, tuple)):
    raise ValueError(f"example {example}: {which} must be a list of (start, end) tuples")
  out = []
  for span in spans:
    if not (isinstance(span, (list, tuple)) and len(span) == 2
            and isinstance(span[0], _INTS) and isinstance(span[1], _INTS)):
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


def check_side(text, spans, entities, example: int, which: str, task: str | None):
  """The checks of one side, in the reference's order; returns the normalised spans."""
  if not isinstance(text, str):
    raise ValueError(f"example {example}: text must be a string, got {type(text).__name__}")
  if spans is None:
    if entities is not None:
      raise ValueError(f"example {example}: entities given without {which}")
    if task in ("entity_classification", "entity_pair_classification"):
      raise ValueError(f"example {example}: task {task} needs entity_spans")
    return None
  spans = check_spans(spans, text, example, task, which)
  if task is None and entities is not None and len(entities) != len(spans):
    name = "entities" if which == "entity_spans" else "entities_pair"
    raise ValueError(f"example {example}: {name} has {len(entities)} titles but {which} "
                     f"has {len(spans)} spans {spans}; give one title per span")
  return spans


def collect(texts: list, spans: list, titles: list, n: int, task: str | None, entity_vocab,
            mask_id: int, mask2_id: int) -> Entities:
  """Every side's spans (first sides, then pair sides), checked, with their entity ids.

  Entities get `[MASK]` (the pair task's tail `[MASK2]`) unless titles name them, which they
  do where no task decides the ids (the pair side always). Raises the first bad example's
  error.
  """
  num = len(texts)
  found = None if num <= _CHECK_SIDES_UP_TO else _valid_pairs(texts, spans, titles, n, task)
  if found is None:
    checked = [None] * num
    for i in range(n):
      for s, which in ((i, "entity_spans"), (n + i, "entity_spans_pair")):
        if s < num:
          checked[s] = check_side(texts[s], spans[s], titles[s], i, which,
                                  task if s < n else None)
    count = [len(s) if s else 0 for s in checked]
    pairs = np.array(list(itertools.chain.from_iterable(s for s in checked if s)),
                     _I64).reshape(-1, 2)
  else:
    count, pairs = found
  # Titles name the entities where no task decides them (the pair side always).
  named = [s for s in range(n if task is not None else 0, num) if titles[s] is not None]
  if len(named) == num and num:
    ids = np.array(entity_vocab.lookup_many(list(itertools.chain.from_iterable(titles))), _I64)
  else:
    ids = np.empty(len(pairs), _I64)
    ids.fill(mask_id)
    if task == "entity_pair_classification":
      ids[1:2 * n:2] = mask2_id
    if named:
      has_titles = np.zeros(num, bool)
      has_titles[named] = True
      ids[has_titles.repeat(count)] = entity_vocab.lookup_many(
          list(itertools.chain.from_iterable(titles[s] for s in named)))
  side = np.zeros(len(pairs), _I64) if num == 1 else np.arange(num).repeat(count)
  return Entities(side, ids, pairs)


def _valid_pairs(texts, spans, titles, n, task):
  """(spans per side, [E, 2] spans) when every side is plainly valid, else None."""
  num = len(texts)
  if not all(isinstance(t, str) for t in texts):
    return None
  if not all(s is None or isinstance(s, (list, tuple)) for s in spans):
    return None
  if any(t is not None and s is None for s, t in zip(spans, titles)):
    return None
  count = [0 if s is None else len(s) for s in spans]
  flat = list(itertools.chain.from_iterable(s for s in spans if s is not None))
  if not all(isinstance(p, (list, tuple)) for p in flat):
    return None
  try:
    pairs = np.asarray(flat) if flat else np.zeros((0, 2), _I64)
  except (ValueError, TypeError, OverflowError):
    return None
  if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.dtype.kind not in "iu":
    return None
  pairs = pairs.astype(_I64, copy=False)
  per_side = np.array(count, _I64)
  start, end = pairs[:, 0], pairs[:, 1]
  lengths = np.fromiter(map(len, texts), _I64, num)
  if ((start < 0) | (start >= end) | (end > lengths.repeat(per_side))).any():
    return None
  first = per_side[:n]
  given = np.fromiter((s is not None for s in spans[:n]), bool, n)
  if task in ("entity_classification", "entity_pair_classification") and not given.all():
    return None
  if task == "entity_classification" and (first[given] != 1).any():
    return None
  if task == "entity_span_classification" and (first[given] < 1).any():
    return None
  if task == "entity_pair_classification":
    if (first != 2).any():
      return None
    head, tail = pairs[0:2 * n:2], pairs[1:2 * n:2]
    if ((head[:, 0] < tail[:, 1]) & (tail[:, 0] < head[:, 1])).any():
      return None
  named = [s for s in range(n if task is not None else 0, num) if titles[s] is not None]
  if any(len(titles[s]) != count[s] for s in named):
    return None
  return count, pairs
