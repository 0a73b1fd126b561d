"""Entity typing on Open Entity.

The paper's recipe (Yamada et al., EMNLP 2020, arXiv:2010.01057; code: github.com/studio-ousia/luke,
`examples/legacy/entity_typing/` and the AllenNLP `examples/entity_typing/`).

Input: `<s> ... <ent> mention <ent> ... </s>` with one `[MASK]` entity spanning the markers;
`LukeForEntityClassification` scores every type from the entity's state. Training minimises
BCE-with-logits averaged over all (example, type) entries; a type is predicted when its
logit is > 0; the metric is micro P/R/F1 over (example, type) pairs.

Files:
- the UFET crowd JSON lines (`left_context_token`, `mention_span`, `right_context_token`,
  `y_str`), which the AllenNLP reference filters to the 9 general types; types outside the
  label list are dropped there (counted in the log). Examples left with no type are kept, as
  the reference keeps them: they teach the model to say "none of these";
- ERNIE's Open Entity release used by the paper (a JSON list of `sent`, `start`, `end`
  (character offsets), `labels`), whose types must all be in the label list.
`--predict_only` reads plain sentences with the mention marked `<e>...</e>`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from luke_jax.finetune.task import DataError, Features, Task
from luke_jax.finetune.tasks import classification_metrics, entity_inputs
from luke_jax.models import losses

# Open Entity's general types, in the sorted order the reference's label list has.
GENERAL_TYPES = ("entity", "event", "group", "location", "object", "organization", "person",
                 "place", "time")
MARKERS = (("<e>", "</e>"),)
_CROWD_KEYS = ("left_context_token", "mention_span", "right_context_token")
_ERNIE_KEYS = ("sent", "start", "end")


@dataclasses.dataclass
class TypingExample:
  """One mention in context.

  Attributes:
    id: `annot_id` (crowd), `id` (ERNIE) or else the line number / index.
    text: the sentence (PTB bracket escapes turned back into brackets).
    span: the mention's character span `[start, end)` in `text`.
    types: gold types (crowd: only those in the label list); None for unlabelled input.
    path, line: where it came from, as `DataError` reports it.
  """
  id: str
  text: str
  span: tuple[int, int]
  types: list[str] | None
  path: str
  line: int | str

  @property
  def mention(self) -> str:
    return self.text[self.span[0]:self.span[1]]


class EntityTypingTask(Task):
  """Open Entity typing (multi-label, sigmoid per type).

  Config (`config.data`): `labels` (the type list; empty = the 9 general types),
  `max_seq_length`, `max_mention_length`.
  """

  name = "open_entity"
  architecture = "LukeForEntityClassification"
  tokenizer_task = "entity_classification"
  input_keys = ("input_ids", "attention_mask", "entity_ids", "entity_attention_mask",
                "entity_position_ids")
  target_keys = ("labels",)
  metric = "f1"
  prediction_suffix = ".jsonl"

  @property
  def type_list(self) -> list[str]:
    return list(self.config.get("labels", None) or GENERAL_TYPES)

  # ---- data -------------------------------------------------------------------------------
  def read(self, path: str | os.PathLike, split: str) -> list[TypingExample]:
    records, is_list = entity_inputs.read_json_records(path)
    known = set(self.type_list)
    examples, dropped = [], 0
    for index, (line, record) in enumerate(records):
      where = line if line is not None else f"example #{index}"
      if not isinstance(record, dict):
        raise DataError(path, where, f"expected a JSON object, got {type(record).__name__}")
      if all(k in record for k in _CROWD_KEYS):
        example, n = self._crowd(path, index, line, record, known, split != "predict")
        dropped += n
      elif all(k in record for k in _ERNIE_KEYS):
        example = self._ernie(path, index, line, record, split != "predict")
      else:
        raise DataError(path, where, "missing keys: expected the crowd format "
                        f"({', '.join(_CROWD_KEYS)}, y_str) or ERNIE's ({', '.join(_ERNIE_KEYS)}, "
                        "labels)")
      examples.append(example)
    if dropped:
      logging.info("%s: dropped %d gold types outside the %d types %s", path, dropped,
                   len(known), sorted(known))
    return examples

  def _crowd(self, path, index, line, record, known, need_label):
    example_id = str(record.get("annot_id", line if line is not None else index))
    where = line if line is not None else f"example {example_id!r}"
    fail = lambda reason: DataError(path, where, f"{reason} (id {example_id!r})")
    left, right = record["left_context_token"], record["right_context_token"]
    for name, words in (("left_context_token", left), ("right_context_token", right)):
      if not (isinstance(words, list) and all(isinstance(w, str) for w in words)):
        raise fail(f"`{name}` must be a list of strings")
    mention = record["mention_span"]
    if not isinstance(mention, str) or not mention.strip():
      raise fail(f"`mention_span` must be a non-blank string, got {mention!r}")
    types = None
    if need_label or "y_str" in record:
      raw = record.get("y_str")
      if not (isinstance(raw, list) and all(isinstance(t, str) for t in raw)):
        raise fail(f"`y_str` must be a list of type strings, got {raw!r}")
      types = list(dict.fromkeys(t for t in raw if t in known))
      dropped = len(set(raw)) - len(types)
    else:
      dropped = 0
    norm = entity_inputs.normalize_token
    words = ([norm(w) for w in left] + [" ".join(norm(w) for w in mention.split())]
             + [norm(w) for w in right])
    text, (span,) = entity_inputs.join_words(words, [(len(left), len(left) + 1)])
    return TypingExample(example_id, text, span, types, str(path), where), dropped

  def _ernie(self, path, index, line, record, need_label):
    example_id = str(record.get("id", line if line is not None else index))
    where = line if line is not None else f"example {example_id!r}"
    fail = lambda reason: DataError(path, where, f"{reason} (id {example_id!r})")
    sent, start, end = record["sent"], record["start"], record["end"]
    if not isinstance(sent, str):
      raise fail("`sent` must be a string")
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
      raise fail(f"`start` / `end` must be integers, got {start!r} / {end!r}")
    if not 0 <= start < end <= len(sent):
      raise fail(f"mention [{start}, {end}) is not inside the {len(sent)}-character sentence")
    types = None
    if need_label or "labels" in record:
      types = record.get("labels")
      if not (isinstance(types, list) and all(isinstance(t, str) for t in types)):
        raise fail(f"`labels` must be a list of type strings, got {types!r}")
      types = list(dict.fromkeys(types))
    # Normalise each part apart so the mention span stays exact; the mention loses the
    # surrounding spaces (the reference `rstrip`s it).
    left, mention, right = (_normalize_text(p) for p in (sent[:start], sent[start:end],
                                                         sent[end:]))
    stripped = mention.strip()
    if not stripped:
      raise fail("the mention is blank")
    lead = len(mention) - len(mention.lstrip())
    text = left + mention + right
    span = (len(left) + lead, len(left) + lead + len(stripped))
    return TypingExample(example_id, text, span, types, str(path), where)

  def read_raw(self, path: str | os.PathLike) -> list[TypingExample]:
    """One sentence per line with the mention marked `<e>...</e>`."""
    return [TypingExample(str(n), text, span, None, str(path), n)
            for n, text, (span,) in entity_inputs.read_marked_lines(path, MARKERS)]

  def labels(self, train_examples: Sequence[TypingExample]) -> list[str]:
    del train_examples  # fixed: the 9 general types (or the configured list)
    return self.type_list

  def featurize(self, examples: Sequence[TypingExample], labels: Sequence[str],
                split: str) -> Features:
    label_ids = {label: i for i, label in enumerate(labels)}
    targets = np.zeros((len(examples), len(labels)), np.float32)
    for i, e in enumerate(examples):
      for t in e.types or ():
        if t not in label_ids:
          raise DataError(e.path, e.line, f"type {t!r} of example {e.id!r} is not among the "
                          f"{len(labels)} labels {list(labels)}")
        targets[i, label_ids[t]] = 1.0
    return entity_inputs.features(self.tokenizer, examples, [[e.span] for e in examples], targets,
                                  num_entities=1, data_config=self.config, split=split)

  # ---- model ------------------------------------------------------------------------------
  def loss(self, outputs, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Per-row BCE summed over types, weighted by the type count: the trainer's ratio is then
    the reference's mean over every (row, type) entry."""
    return losses.sigmoid_cross_entropy_sums(outputs.logits, batch["labels"])

  def outputs(self, outputs) -> dict[str, jax.Array]:
    return {"logits": jnp.asarray(outputs.logits, jnp.float32)}

  # ---- predictions and metrics ------------------------------------------------------------
  def decode(self, examples: Sequence[TypingExample], features: Features,
             outputs: Mapping[str, np.ndarray], labels: Sequence[str]) -> list[list[str]]:
    chosen = np.asarray(outputs["logits"]) > 0
    predictions: list[list[str] | None] = [None] * len(examples)
    for row, index in enumerate(features.example_index):
      predictions[index] = [labels[j] for j in np.flatnonzero(chosen[row])]
    if any(p is None for p in predictions):
      raise ValueError("some examples have no feature row; decode needs every row's outputs")
    return predictions

  def evaluate(self, examples: Sequence[TypingExample],
               predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    if any(e.types is None for e in examples):
      raise ValueError("evaluate needs gold types; these examples have none")
    return classification_metrics.multilabel_scores([e.types for e in examples], predictions)

  def write_predictions(self, path: Path, examples: Sequence[TypingExample],
                        predictions: Sequence[Sequence[str]]) -> Path:
    """JSON lines `{"id", "mention", "types"}`, in input order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      for e, types in zip(examples, predictions):
        f.write(json.dumps({"id": e.id, "mention": e.mention, "types": list(types)},
                           ensure_ascii=False) + "\n")
    return path


def _normalize_text(text: str) -> str:
  for escape, bracket in entity_inputs.PTB_BRACKETS.items():
    text = text.replace(escape, bracket)
  return text
