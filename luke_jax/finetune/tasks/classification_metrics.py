"""Micro precision / recall / F1 from counts, as the relation and typing scorers define them."""

from __future__ import annotations

from typing import Iterable, Sequence


def micro_prf(correct: int, guessed: int, gold: int,
              precision_if_no_guess: float = 0.0) -> dict[str, float]:
  """Micro scores from pooled counts.

  Args:
    correct: predictions that match the gold answer.
    guessed: predictions made (the precision denominator).
    gold: gold answers (the recall denominator).
    precision_if_no_guess: precision when nothing was predicted. The official TACRED scorer
      says 1.0 (no guess, no wrong guess); the typing scorers say 0.0.

  Returns:
    `precision`, `recall`, `f1`; recall is 0 without gold and F1 is 0 when both are 0.
  """
  precision = correct / guessed if guessed else precision_if_no_guess
  recall = correct / gold if gold else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
  return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def relation_scores(gold: Sequence[str], predicted: Sequence[str],
                    negative: str = "no_relation") -> dict[str, float]:
  """The official TACRED scorer (micro over relations, `negative` left out), plus accuracy.

  A prediction counts as guessed when it is not `negative`, a gold label when it is not
  `negative`, and as correct when both hold and they are equal.
  """
  if len(gold) != len(predicted):
    raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
  correct = guessed = num_gold = equal = 0
  for g, p in zip(gold, predicted):
    equal += g == p
    guessed += p != negative
    num_gold += g != negative
    correct += g == p and g != negative
  scores = micro_prf(correct, guessed, num_gold, precision_if_no_guess=1.0)
  scores["accuracy"] = equal / len(gold) if gold else 0.0
  return scores


def multilabel_scores(gold: Sequence[Iterable[str]],
                      predicted: Sequence[Iterable[str]]) -> dict[str, float]:
  """Micro P/R/F1 over (example, label) pairs, as `F1MultiLabelMeasure(average="micro")`."""
  if len(gold) != len(predicted):
    raise ValueError(f"{len(gold)} gold label sets but {len(predicted)} predictions")
  correct = guessed = num_gold = 0
  for g, p in zip(gold, predicted):
    g, p = set(g), set(p)
    correct += len(g & p)
    guessed += len(p)
    num_gold += len(g)
  return micro_prf(correct, guessed, num_gold)
