"""SQuAD exact match and F1, scored as the official v1.1 and v2.0 evaluation scripts score them.

The two scripts share the answer normalisation (lower-case, drop ASCII punctuation, drop the
articles a/an/the, collapse whitespace) and exact match, but differ in three places that
change numbers, so both are kept:

* F1 when either side normalises to nothing: v1.1 scores 0 (no common token), v2.0 scores 1
  when both are empty and 0 otherwise.
* Gold answers: v1.1 takes every gold text; v2.0 drops golds that normalise to "" and uses
  `[""]` when none is left (unanswerable questions).
* Questions without a prediction: v1.1 keeps them in the total with score 0; v2.0 leaves them
  out. Our decoder predicts every question, so only hand-made prediction files notice.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Mapping, Sequence

_PUNCTUATION = frozenset(string.punctuation)  # ASCII only, as the scripts: "—" and "“" stay.
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
  """Lower-case, remove punctuation, articles and extra whitespace (both scripts' order)."""
  text = text.lower()
  text = "".join(ch for ch in text if ch not in _PUNCTUATION)
  text = _ARTICLES.sub(" ", text)
  return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> int:
  return int(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str, version_2: bool = False) -> float:
  """Token-level F1 between normalised answers (bag of tokens, with multiplicity)."""
  pred_tokens = normalize_answer(prediction).split()
  gold_tokens = normalize_answer(gold).split()
  if version_2 and (not pred_tokens or not gold_tokens):
    # v2.0: an empty answer is right exactly when the gold is empty too.
    return float(pred_tokens == gold_tokens)
  common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
  same = sum(common.values())
  if same == 0:
    return 0.0
  precision, recall = same / len(pred_tokens), same / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def gold_texts(answers: Sequence[str], version_2: bool) -> list[str]:
  """The golds a question is scored against; `[""]` stands for "no answer"."""
  if version_2:
    answers = [a for a in answers if normalize_answer(a)]
  # v1.1 itself fails on a question without answers; scoring it as unanswerable is the only
  # reading that keeps v2.0 files usable in v1.1 mode.
  return list(answers) or [""]


def evaluate(golds: Mapping[str, Sequence[str]], predictions: Mapping[str, str],
             version_2: bool = False) -> dict[str, float]:
  """Scores `predictions` against `golds` (question id -> gold answer texts).

  Args:
    golds: every question of the data set, in file order, with its gold texts (empty for an
      unanswerable question).
    predictions: question id -> predicted text ("" = no answer).
    version_2: score as `evaluate-v2.0.py` (else `evaluate-v1.1.py`).

  Returns:
    Percentages `exact_match` and `f1`, and `total` (questions scored). With `version_2` also
    `HasAns_exact`, `HasAns_f1`, `HasAns_total` and the `NoAns_*` triple, as the v2.0 script
    names them, for the subsets that exist.
  """
  exact_scores, f1_scores, has_answer = {}, {}, {}
  for qid, answers in golds.items():
    if qid not in predictions:
      if not version_2:  # counted, scored 0
        exact_scores[qid], f1_scores[qid] = 0, 0.0
      continue
    prediction = predictions[qid]
    texts = gold_texts(answers, version_2)
    exact_scores[qid] = max(exact_match(prediction, g) for g in texts)
    f1_scores[qid] = max(f1(prediction, g, version_2) for g in texts)
    has_answer[qid] = bool(answers)

  def summary(qids, prefix=""):
    n = len(qids)
    exact_key = f"{prefix}exact" if prefix else "exact_match"
    return {exact_key: 100.0 * sum(exact_scores[q] for q in qids) / n if n else 0.0,
            f"{prefix}f1": 100.0 * sum(f1_scores[q] for q in qids) / n if n else 0.0,
            f"{prefix}total": float(n)}

  results = summary(list(exact_scores))
  if version_2:
    has = [q for q, v in has_answer.items() if v]
    no = [q for q, v in has_answer.items() if not v]
    if has:
      results.update(summary(has, "HasAns_"))
    if no:
      results.update(summary(no, "NoAns_"))
  return results
