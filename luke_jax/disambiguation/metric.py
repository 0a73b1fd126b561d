"""In-KB accuracy as precision / recall / F1, as the entity disambiguation papers report it.

As the reference (github.com/studio-ousia/luke `examples/entity_disambiguation/evaluate.py`,
after Le and Titov 2018): a mention is correct when the predicted candidate's title is the gold
title; precision divides by the mentions that have candidates, recall by all mentions (those
without candidates can never be right), and F1 is their harmonic mean.
"""

from __future__ import annotations

from typing import Sequence

from luke_jax.disambiguation.documents import Document


def scores(documents: Sequence[Document], predicted: Sequence[Sequence[str | None]]
           ) -> dict[str, float]:
  """`f1`, `precision`, `recall` (fractions) and the counts `mentions`,
  `mentions_with_candidates`, `correct`.

  Args:
    documents: with gold titles.
    predicted: per document, per mention, the predicted title (None: no prediction).
  """
  mentions = with_candidates = correct = 0
  for doc, titles in zip(documents, predicted, strict=True):
    if len(titles) != len(doc.mentions):
      raise ValueError(f"document {doc.id!r}: {len(titles)} predictions for "
                       f"{len(doc.mentions)} mentions")
    for mention, title in zip(doc.mentions, titles):
      mentions += 1
      if mention.candidates:
        with_candidates += 1
        correct += int(title is not None and title == mention.title)
  precision = correct / with_candidates if with_candidates else 0.0
  recall = correct / mentions if mentions else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return dict(f1=f1, precision=precision, recall=recall, mentions=float(mentions),
              mentions_with_candidates=float(with_candidates), correct=float(correct))
