"""IOB tags <-> entity spans, and span-level micro precision / recall / F1 as `seqeval` scores it.

CoNLL-2003 is distributed in IOB1 (an entity opens with `I-` unless it directly follows one of
the same type, which opens with `B-`); many copies are converted to IOB2 (every entity opens
with `B-`). `seqeval`'s default mode reads both the same way: `B-X` always opens an entity, `I-X`
continues an entity of type X and opens one after anything else. `tags_to_spans` reproduces
that reading exactly, so scoring the spans equals `seqeval.metrics.{precision,recall,f1}_score`
on the tags (checked against seqeval 1.2.2 in `tests/test_finetune_ner.py`).
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

Span = tuple[int, int, str]  # word [start, end) and entity type

TAG = re.compile(r"^(?:O|[BI]-\S+)$")


def tags_to_spans(tags: Sequence[str]) -> list[Span]:
  """Entities of one sentence, read the way `seqeval.metrics.sequence_labeling.get_entities` does.

  Args:
    tags: `O`, `B-TYPE` or `I-TYPE` per word, IOB1 or IOB2.

  Returns:
    `(start, end, type)` with `end` exclusive, in order.
  """
  spans, start, current = [], 0, None
  for i, tag in enumerate(tags):
    prefix, kind = tag[0], tag[2:]
    continues = prefix == "I" and kind == current
    if current is not None and not continues:
      spans.append((start, i, current))
      current = None
    if prefix != "O" and not continues:
      start, current = i, kind
  if current is not None:
    spans.append((start, len(tags), current))
  return spans


def spans_to_tags(spans: Iterable[Span], length: int, scheme: str = "iob2") -> list[str]:
  """Tags for non-overlapping spans; `iob1` uses `B-` only after an adjacent same-type entity."""
  if scheme not in ("iob1", "iob2"):
    raise ValueError(f"unknown tag scheme {scheme!r}; use 'iob1' or 'iob2'")
  tags = ["O"] * length
  previous_end, previous_type = -1, None
  for start, end, kind in sorted(spans):
    opens = "B" if scheme == "iob2" or (start == previous_end and kind == previous_type) else "I"
    tags[start] = f"{opens}-{kind}"
    for k in range(start + 1, end):
      tags[k] = f"I-{kind}"
    previous_end, previous_type = end, kind
  return tags


def opens_with_inside(tags: Sequence[str]) -> int | None:
  """Index of the first `I-X` that opens an entity (after `O`, another type or the sentence
  start): legal in IOB1, invalid in IOB2. None when there is none."""
  previous = None
  for i, tag in enumerate(tags):
    kind = tag[2:] if tag != "O" else None
    if tag[0] == "I" and kind != previous:
      return i
    previous = kind
  return None


def span_prf(gold: Sequence[Iterable[Span]], predicted: Sequence[Iterable[Span]]) -> dict:
  """Micro precision / recall / F1 over exact `(start, end, type)` matches, sentence by sentence.

  Zero denominators give 0, as seqeval's default `zero_division="warn"` does (without the
  warning); F1 is formed as seqeval forms it so the floats agree bit for bit.
  """
  if len(gold) != len(predicted):
    raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
  tp = n_gold = n_pred = 0
  for g, p in zip(gold, predicted):
    g, p = set(g), set(p)
    tp += len(g & p)
    n_gold += len(g)
    n_pred += len(p)
  precision = tp / n_pred if n_pred else 0.0
  recall = tp / n_gold if n_gold else 0.0
  denominator = precision + recall
  f1 = 2.0 * precision * recall / denominator if denominator else 0.0
  return {"precision": precision, "recall": recall, "f1": f1,
          "num_gold": n_gold, "num_predicted": n_pred, "num_correct": tp}


def tag_prf(gold_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]) -> dict:
  """`span_prf` on tag sequences: `seqeval`'s default-mode micro scores."""
  return span_prf([tags_to_spans(t) for t in gold_tags], [tags_to_spans(t) for t in predicted_tags])
