"""`luke_jax.pipeline("entity-typing")`: a text and a mention's character span -> its types.

Open Entity's task code featurizes (`luke_jax.finetune.tasks.entity_typing`): the mention is
wrapped in `<ent>` markers with one `[MASK]` entity, as transformers'
`LukeForEntityClassification` example passes `entity_spans=[(start, end)]`. A text longer than
`max_seq_length` loses context words at its edges, never mention words, as in the task.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from luke_jax.finetune.tasks.entity_typing import EntityTypingTask, TypingExample
from luke_jax.inference import base

Typing = dict[str, Any]  # {"mention", "start", "end", "labels", "scores"}


class EntityTypingPipeline(base.Pipeline):
  """Entity typing with a `LukeForEntityClassification` (multi-label, a sigmoid per type).

  `typing(text, span=(start, end))` gives `{"mention", "start", "end", "labels", "scores"}`:
  `labels` the types whose sigmoid probability is above `threshold` (default 0.5, which is the
  task's `logit > 0`), `scores` every type; both lists of `{"label", "score"}` sorted by
  descending score. `typing([text, ...], spans=[(start, end), ...])` gives one per text;
  `entity_spans=[(start, end)]` per text is transformers' spelling of the same.

  Options besides `base.Pipeline`'s: `threshold`.
  """

  name = "entity-typing"
  task_class = EntityTypingTask

  def __init__(self, module, params, tokenizer, *, threshold: float = 0.5, **options):
    super().__init__(module, params, tokenizer, **options)
    self.threshold = float(threshold)

  def __call__(self, texts: str | Sequence[str], span=None, *, spans=None, entity_spans=None,
               threshold: float | None = None) -> Typing | list[Typing]:
    batch, single = base.as_batch(texts)
    if not batch:
      return []
    given = base.spans_argument(batch, single, 1, span=span, spans=spans,
                                entity_spans=entity_spans)
    examples = []
    for i, (text, (mention,)) in enumerate(zip(batch, given)):
      examples.append(TypingExample(str(i), text, base.check_span(text, mention, f"text {i}"),
                                    None, "<input>", i))
    features = self.task.featurize(examples, self.labels, "predict")
    logits = self.outputs(features)["logits"]
    threshold = self.threshold if threshold is None else float(threshold)
    results = [None] * len(examples)
    for row, i in enumerate(features.example_index):
      probabilities = 1.0 / (1.0 + np.exp(-logits[row].astype(np.float64)))
      order = np.argsort(-probabilities, kind="stable")
      scores = [{"label": self.labels[j], "score": float(probabilities[j])} for j in order]
      start, end = examples[i].span
      results[i] = {"mention": batch[i][start:end], "start": start, "end": end,
                    "labels": [s for s in scores if s["score"] > threshold], "scores": scores}
    return results[0] if single else results
