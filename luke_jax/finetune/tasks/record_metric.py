"""The official ReCoRD v1.0 metric: exact match and token F1, best over the gold answers.

Semantics of the ReCoRD evaluation script (shared with SQuAD 1.1 up to the scale): answers are
normalised (lower case, punctuation removed, the articles a/an/the removed, whitespace
collapsed); a question scores the maximum over its gold answer texts; a question without a
prediction scores 0; the totals are **fractions** in [0, 1] (the ReCoRD script does not
multiply by 100, unlike SQuAD's).
"""

from __future__ import annotations

import collections
import re
import string
from typing import Mapping, Sequence

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
  """Lower case, no punctuation, no articles, single spaces (the order matters: as official)."""
  text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
  return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
  """Harmonic mean of token precision and recall after normalisation (0 with no overlap)."""
  predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
  overlap = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
  if overlap == 0:
    return 0.0
  precision, recall = overlap / len(predicted), overlap / len(expected)
  return 2 * precision * recall / (precision + recall)


def score(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str | None]
          ) -> dict[str, float]:
  """`{"exact_match", "f1"}` as fractions over the questions of `gold` (id -> answer texts).

  A question missing from `predictions` (or predicted None) scores 0, as in the official
  script; questions without gold answers cannot be scored and must not be passed.
  """
  if not gold:
    raise ValueError("no questions with gold answers to score")
  em = f1 = 0.0
  for qid, answers in gold.items():
    if not answers:
      raise ValueError(f"question {qid} has no gold answers")
    prediction = predictions.get(qid)
    if prediction is None:
      continue
    em += max(exact_match(prediction, a) for a in answers)
    f1 += max(token_f1(prediction, a) for a in answers)
  return {"exact_match": em / len(gold), "f1": f1 / len(gold)}

