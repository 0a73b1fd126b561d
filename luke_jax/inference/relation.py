"""`luke_jax.pipeline("relation-classification")`: a text, a subject and an object -> relation.

TACRED's task code featurizes (`luke_jax.finetune.tasks.relation`): the subject is wrapped in
`<ent>` and the object in `<ent2>` with the `[MASK]` and `[MASK2]` entities, as transformers'
`LukeForEntityPairClassification` example passes `entity_spans=[subject, object]`. A text longer
than `max_seq_length` loses context words at its edges, never entity words, as in the task.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from luke_jax.finetune.tasks.relation import RelationExample, RelationTask
from luke_jax.inference import base

Relation = dict[str, Any]  # {"label", "score"}


class RelationClassificationPipeline(base.Pipeline):
  """Relation classification with a `LukeForEntityPairClassification` (softmax over labels).

  `rc(text, subj=(start, end), obj=(start, end))` gives `{"label", "score"}`, the best
  relation and its softmax probability; `rc([text, ...], subj=[...], obj=[...])` one per text;
  `entity_spans=[subject, object]` per text is transformers' spelling of the same.

  Options besides `base.Pipeline`'s: `negative_label` (the no-relation class, default
  `no_relation`; informative only: every label can be predicted).
  """

  name = "relation-classification"
  task_class = RelationTask

  def task_defaults(self) -> dict[str, Any]:
    return dict(negative_label="no_relation")

  def __call__(self, texts: str | Sequence[str], subj=None, obj=None, *,
               entity_spans=None) -> Relation | list[Relation]:
    batch, single = base.as_batch(texts)
    if not batch:
      return []
    if (subj is None) != (obj is None):
      raise ValueError("give both subj= and obj= (or entity_spans=[subject, object])")
    if subj is not None:
      if entity_spans is not None:
        raise ValueError("give the entity spans once, as subj= and obj= or entity_spans=")
      subjects, objects = ([subj], [obj]) if single else (list(subj), list(obj))
      if not len(subjects) == len(objects) == len(batch):
        raise ValueError(f"{len(batch)} texts, {len(subjects)} subj and {len(objects)} obj "
                         "spans: give one of each per text")
      given = [[s, o] for s, o in zip(subjects, objects)]
    else:
      given = base.spans_argument(batch, single, 2, entity_spans=entity_spans)
    examples = []
    for i, (text, (subject, object_)) in enumerate(zip(batch, given)):
      s = base.check_span(text, subject, f"text {i} subject")
      o = base.check_span(text, object_, f"text {i} object")
      if s[0] < o[1] and o[0] < s[1]:
        raise ValueError(f"text {i}: subject {s} and object {o} overlap")
      examples.append(RelationExample(str(i), text, s, o, None, "<input>", i))
    features = self.task.featurize(examples, self.labels, "predict")
    logits = self.outputs(features)["logits"].astype(np.float64)
    results = [None] * len(examples)
    for row, i in enumerate(features.example_index):
      shifted = logits[row] - logits[row].max()
      probabilities = np.exp(shifted) / np.exp(shifted).sum()
      best = int(np.argmax(logits[row]))
      results[i] = {"label": self.labels[best], "score": float(probabilities[best])}
    return results[0] if single else results

