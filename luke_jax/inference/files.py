"""`run_finetune.py --predict_only --output_format=jsonl`: an input file -> JSON lines.

The file is read as the task reads it (`--raw`: its plain-text format; `--noraw`: its official
format), every input goes through the task's pipeline (`luke_jax.pipeline`) with the lengths
and batch size of the fine-tuning config, and each input text gives one JSON object:

- conll2003: `{"text", "entities": [{"start", "end", "text", "label", "score"}]}` per sentence
  (a line of the plain-text file; a CoNLL sentence's tokens joined by spaces). The sentences of
  a document (lines between blank lines; `-DOCSTART-` in CoNLL files) are context for each
  other, as in fine-tuning. Words are split by `luke_jax.tokenization.words`, not only at spaces;
- open_entity: `{"text", "mention", "start", "end", "labels", "scores"}`;
- tacred: `{"text", "subj": [start, end], "obj": [start, end], "label", "score"}`.
Offsets are characters of `text`, the sentence with any `<e>`-style markers removed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, TextIO

import ml_collections

from luke_jax.finetune.task import DataError
from luke_jax.inference import base, factory

# Fine-tuning task (`config.task`) -> pipeline task.
PIPELINES = {"conll2003": "ner", "open_entity": "entity-typing",
             "tacred": "relation-classification"}


def pipeline_for(config: ml_collections.ConfigDict, checkpoint: str | os.PathLike,
                 **options) -> base.Pipeline:
  """The pipeline of `config.task` on `checkpoint`, with the config's lengths and batch size."""
  if config.task not in PIPELINES:
    raise ValueError(f"--output_format=jsonl is there for tasks {sorted(PIPELINES)}, not "
                     f"{config.task!r}; use the task's own format")
  data = config.data
  options = dict(dict(max_seq_length=int(data.max_seq_length),
                      max_mention_length=int(data.max_mention_length),
                      batch_size=int(config.train.eval_batch_size),
                      dtype=config.model.get("dtype")), **options)
  if config.task == "conll2003":
    options.update(max_entity_length=int(data.max_entity_length),
                   document_context=bool(data.get("document_context", True)))
  elif config.task == "tacred":
    options.update(negative_label=data.get("negative_label", "no_relation"))
  return factory.pipeline(PIPELINES[config.task], checkpoint, **options)


def predict(pipe: base.Pipeline, task_name: str, input_file: str | os.PathLike,
            raw: bool = True) -> list[dict[str, Any]]:
  """One JSON-ready object per input text of `input_file`, in file order (module docstring)."""
  if task_name == "conll2003":
    documents = _ner_documents(pipe, input_file, raw)
    results = pipe.documents(documents)
    return [{"text": text, "entities": entities}
            for texts, found in zip(documents, results) for text, entities in zip(texts, found)]
  examples = pipe.task.read_raw(input_file) if raw else pipe.task.read(input_file, "predict")
  texts = [e.text for e in examples]
  if task_name == "open_entity":
    return [{"text": text, **r}
            for text, r in zip(texts, pipe(texts, spans=[e.span for e in examples]))]
  results = pipe(texts, subj=[e.subj for e in examples], obj=[e.obj for e in examples])
  return [{"text": e.text, "subj": list(e.subj), "obj": list(e.obj), **r}
          for e, r in zip(examples, results)]


def write(records: Iterable[dict[str, Any]], output: str | os.PathLike | TextIO) -> int:
  """Writes `records` as JSON lines to a path or an open text stream; returns their count."""
  if hasattr(output, "write"):
    count = 0
    for record in records:
      output.write(json.dumps(record, ensure_ascii=False) + "\n")
      count += 1
    output.flush()
    return count
  path = Path(output)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    count = write(records, f)
  os.replace(tmp, path)
  return count


def _ner_documents(pipe, input_file, raw: bool) -> list[list[str]]:
  """Sentence texts grouped by document: plain-text lines between blank lines, or the
  sentences of a CoNLL file (tokens joined by spaces) between `-DOCSTART-` lines."""
  if not raw:
    documents: dict[int, list[str]] = {}
    for sentence in pipe.task.read(input_file, "predict"):
      documents.setdefault(id(sentence.document), []).append(" ".join(sentence.words))
    return list(documents.values())
  try:
    text = Path(input_file).read_text(encoding="utf-8")
  except FileNotFoundError:
    raise DataError(input_file, None, "no such file") from None
  except UnicodeDecodeError as e:
    raise DataError(input_file, None, f"not UTF-8 ({e})") from None
  documents, current = [], []
  for line in text.splitlines():
    if line.strip():
      current.append(line)
    elif current:
      documents.append(current)
      current = []
  if current:
    documents.append(current)
  if not documents:
    raise DataError(input_file, None, "no sentences (the file has no text)")
  return documents
