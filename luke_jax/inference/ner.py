"""`luke_jax.pipeline("ner")`: raw text -> entity spans with character offsets.

The CoNLL-2003 task's own code does the work (`luke_jax.finetune.tasks.ner`): each text is
split into words (`luke_jax.tokenization.words`), every span of up to `max_mention_length`
subwords is classified, and the paper's greedy decoding keeps the best non-overlapping spans
(`NerTask.predict_spans`). A text longer than `max_seq_length` is cut into pieces as the task
cuts a long sentence (no span crosses a cut, none is dropped), and a text with more spans than
`max_entity_length` takes several rows.
"""

from __future__ import annotations

from typing import Any, Sequence

from luke_jax.finetune.tasks.ner import Document, NerTask, Sentence
from luke_jax.inference import base
from luke_jax.tokenization.words import Word, split_words

Entity = dict[str, Any]  # {"start", "end", "text", "label", "score"}


class NerPipeline(base.Pipeline):
  """Named entity recognition with a `LukeForEntitySpanClassification`.

  `ner(text)` gives a list of entities `{"start", "end", "text", "label", "score"}`, sorted by
  `start`, with `text == input[start:end]`; `ner([text, ...])` one such list per text. The
  score is the softmax probability of the label over all classes (the non-entity class
  included); spans are ranked by logit, as the task decodes.

  Options besides `base.Pipeline`'s: `max_entity_length` (spans per row, default 128, the
  paper's), `max_mention_length` (default 16 subwords, the paper's CoNLL-2003 setting).
  """

  name = "ner"
  task_class = NerTask
  default_mention_length = 16

  def task_defaults(self) -> dict[str, Any]:
    return dict(max_entity_length=128, tag_scheme="iob2", document_context=True)

  def __call__(self, texts: str | Sequence[str]) -> list[Entity] | list[list[Entity]]:
    batch, single = base.as_batch(texts)
    results = [document[0] for document in self.documents([[text] for text in batch])]
    return results[0] if single else results

  def documents(self, documents: Sequence[Sequence[str]]) -> list[list[list[Entity]]]:
    """Entities of every sentence of every document, each sentence read with its document's
    other sentences around it as context (the paper's document-level setting)."""
    examples: list[Sentence] = []
    words: list[list[Word]] = []
    where: list[tuple[int, int]] = []
    results: list[list[list[Entity]]] = []
    for d, texts in enumerate(documents):
      if isinstance(texts, str):
        raise TypeError(f"documents[{d}] is a str; a document is a list of sentence strings")
      texts, _ = base.as_batch(list(texts), f"documents[{d}]")
      document = Document([])
      results.append([[] for _ in texts])
      for s, text in enumerate(texts):
        split = split_words(text)
        if not split:
          continue
        tokens = [w.text for w in split]
        examples.append(Sentence(tokens, None, [], document, len(document.sentences),
                                 f"documents[{d}][{s}]", [s + 1] * len(tokens)))
        document.sentences.append(tokens)
        words.append(split)
        where.append((d, s))
    if not examples:
      return results
    features = self.task.featurize(examples, self.labels, "predict")
    spans = self.task.predict_spans(examples, features, self.outputs(features), self.labels)
    for (d, s), split, accepted, text in zip(where, words, spans,
                                            (documents[d][s] for d, s in where)):
      entities = []
      for p in sorted(accepted, key=lambda p: p.start):
        start, end = split[p.start].start, split[p.end - 1].end
        entities.append({"start": start, "end": end, "text": text[start:end], "label": p.label,
                         "score": p.probability})
      results[d][s] = entities
    return results
