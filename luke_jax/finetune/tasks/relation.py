"""Relation classification on TACRED.

The paper's recipe (Yamada et al., EMNLP 2020, arXiv:2010.01057; code: github.com/studio-ousia/luke,
`examples/legacy/relation_classification/` and the AllenNLP `examples/relation_classification/`).

Input: `<s> ... <ent> subject <ent> ... <ent2> object <ent2> ... </s>` (markers in sentence
order) with two entities, `[MASK]` over the subject and `[MASK2]` over the object, each
spanning its markers; `LukeForEntityPairClassification` classifies `[h_subj; h_obj]` with a
bias-free linear layer and cross-entropy. Labels are `no_relation` (id 0) then the other
training relations sorted. The metric is the official TACRED scorer: micro P/R/F1 over the
predictions and gold labels that are not `no_relation`.

Files: the TACRED JSON release (a list of objects with `id`, `token`, `subj_start`,
`subj_end`, `obj_start`, `obj_end` (inclusive word indices) and `relation`) or the same
objects one per line. `--predict_only` reads plain sentences with `<e1>subject</e1>` and
`<e2>object</e2>` marked inline.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from luke_jax.finetune.task import DataError, Features, Task
from luke_jax.finetune.tasks import classification_metrics, entity_inputs
from luke_jax.models import losses

_INPUT_KEYS = ("input_ids", "attention_mask", "entity_ids", "entity_attention_mask",
               "entity_position_ids")
_REQUIRED = ("token", "subj_start", "subj_end", "obj_start", "obj_end")
MARKERS = (("<e1>", "</e1>"), ("<e2>", "</e2>"))


@dataclasses.dataclass
class RelationExample:
  """One sentence with a subject and an object.

  Attributes:
    id: the example's `id` (its index when the file has none).
    text: the sentence (PTB bracket escapes turned back into brackets).
    subj, obj: character spans `[start, end)` in `text`.
    relation: the gold relation; None for unlabelled input.
    path, line: where it came from; `line` is the line number (JSON lines, plain text) or
      `example <id>` (JSON list), as `DataError` reports it.
  """
  id: str
  text: str
  subj: tuple[int, int]
  obj: tuple[int, int]
  relation: str | None
  path: str
  line: int | str


class RelationTask(Task):
  """TACRED relation classification (also KBP37 / RELX once converted to TACRED JSON).

  Config (`config.data`): `negative_label` (the class the metric leaves out, default
  `no_relation`), `labels` (a fixed label list, e.g. a fine-tuned checkpoint's; empty = from
  the training file), `max_seq_length`, `max_mention_length`.
  """

  name = "tacred"
  architecture = "LukeForEntityPairClassification"
  tokenizer_task = "entity_pair_classification"
  input_keys = _INPUT_KEYS
  target_keys = ("labels",)
  metric = "f1"
  prediction_suffix = ".txt"

  @property
  def negative_label(self) -> str:
    return self.config.get("negative_label", "no_relation")

  # ---- data -------------------------------------------------------------------------------
  def read(self, path: str | os.PathLike, split: str) -> list[RelationExample]:
    records, is_list = entity_inputs.read_json_records(path)
    examples = []
    for index, (line, record) in enumerate(records):
      examples.append(self._example(path, index, line, record, is_list,
                                    need_label=split != "predict"))
    return examples

  def _example(self, path, index: int, line: int | None, record, is_list: bool,
               need_label: bool) -> RelationExample:
    if not isinstance(record, dict):
      where = line if line is not None else f"example #{index}"
      raise DataError(path, where, f"expected a JSON object, got {type(record).__name__}")
    example_id = str(record.get("id", index))
    where = line if not is_list else f"example {example_id!r}"
    fail = lambda reason: DataError(path, where, f"{reason} (id {example_id!r})")
    missing = [k for k in _REQUIRED + (("relation",) if need_label else ()) if k not in record]
    if missing:
      raise fail(f"missing key(s) {', '.join(missing)}")
    tokens = record["token"]
    if not (isinstance(tokens, list) and tokens and all(isinstance(t, str) for t in tokens)):
      raise fail("`token` must be a non-empty list of strings")
    bounds = {}
    for role in ("subj", "obj"):
      start, end = record[f"{role}_start"], record[f"{role}_end"]
      if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
        raise fail(f"{role}_start / {role}_end must be integers, got {start!r} / {end!r}")
      if start > end:
        raise fail(f"{role}_start {start} > {role}_end {end} (the end is inclusive)")
      if not 0 <= start <= end < len(tokens):
        raise fail(f"{role} span [{start}, {end}] (inclusive) is not inside the "
                   f"{len(tokens)} tokens (need 0 <= start <= end < {len(tokens)})")
      bounds[role] = (start, end + 1)
    (s0, s1), (o0, o1) = bounds["subj"], bounds["obj"]
    if s0 < o1 and o0 < s1:
      raise fail(f"subject tokens [{s0}, {s1 - 1}] and object tokens [{o0}, {o1 - 1}] overlap")
    relation = record.get("relation")
    if relation is not None and not isinstance(relation, str):
      raise fail(f"`relation` must be a string, got {relation!r}")
    words = [entity_inputs.normalize_token(t) for t in tokens]
    text, (subj, obj) = entity_inputs.join_words(words, [bounds["subj"], bounds["obj"]])
    for role, (start, end) in (("subject", subj), ("object", obj)):
      if not text[start:end].strip():
        raise fail(f"the {role} is blank")
    return RelationExample(example_id, text, subj, obj, relation, str(path), where)

  def read_raw(self, path: str | os.PathLike) -> list[RelationExample]:
    """One sentence per line, `<e1>subject</e1>` and `<e2>object</e2>` marked inline."""
    examples = []
    for n, text, (subj, obj) in entity_inputs.read_marked_lines(path, MARKERS):
      if subj[0] < obj[1] and obj[0] < subj[1]:
        raise DataError(path, n, "the <e1> and <e2> mentions overlap")
      examples.append(RelationExample(str(n), text, subj, obj, None, str(path), n))
    return examples

  def labels(self, train_examples: Sequence[RelationExample]) -> list[str]:
    """The negative label first (id 0, which the metric leaves out), then the rest sorted."""
    fixed = list(self.config.get("labels", None) or [])
    if fixed:
      if fixed[0] != self.negative_label:
        raise ValueError(f"data.labels must start with {self.negative_label!r}, got {fixed[:3]}")
      return fixed
    found = {e.relation for e in train_examples if e.relation is not None}
    return [self.negative_label] + sorted(found - {self.negative_label})

  def featurize(self, examples: Sequence[RelationExample], labels: Sequence[str],
                split: str) -> Features:
    label_ids = {label: i for i, label in enumerate(labels)}
    targets = np.zeros(len(examples), np.int32)  # unlabelled rows: 0, never read by a loss
    for i, e in enumerate(examples):
      if e.relation is None:
        continue
      if e.relation not in label_ids:
        raise DataError(e.path, e.line, f"relation {e.relation!r} of example {e.id!r} is not "
                        f"among the {len(labels)} training labels")
      targets[i] = label_ids[e.relation]
    return entity_inputs.features(self.tokenizer, examples, [[e.subj, e.obj] for e in examples], targets,
                                  num_entities=2, data_config=self.config, split=split)

  # ---- model ------------------------------------------------------------------------------
  def loss(self, outputs, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    return losses.softmax_cross_entropy_sums(outputs.logits, batch["labels"])

  def outputs(self, outputs) -> dict[str, jax.Array]:
    return {"logits": jnp.asarray(outputs.logits, jnp.float32)}

  # ---- predictions and metrics ------------------------------------------------------------
  def decode(self, examples: Sequence[RelationExample], features: Features,
             outputs: Mapping[str, np.ndarray], labels: Sequence[str]) -> list[str]:
    best = np.asarray(outputs["logits"]).argmax(-1)
    predictions: list[str | None] = [None] * len(examples)
    for row, index in enumerate(features.example_index):
      predictions[index] = labels[best[row]]
    if any(p is None for p in predictions):
      raise ValueError("some examples have no feature row; decode needs every row's outputs")
    return predictions

  def evaluate(self, examples: Sequence[RelationExample],
               predictions: Sequence[str]) -> dict[str, float]:
    gold = [e.relation for e in examples]
    if any(g is None for g in gold):
      raise ValueError("evaluate needs gold relations; these examples have none")
    return classification_metrics.relation_scores(gold, predictions, self.negative_label)

  def write_predictions(self, path: Path, examples: Sequence[RelationExample],
                        predictions: Sequence[str]) -> Path:
    """The official scorer's input: one relation per line, in input order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{p}\n" for p in predictions), encoding="utf-8")
    return path
