"""The data model of entity disambiguation: documents, their mentions, and candidates.

Documents also live in JSON lines files (`write_jsonl` / `read_jsonl`), one document a line:
`{"id", "words", "mentions": [{"text", "title", "start", "end", "candidates": [[title, prior],
...]}]}` (word indices, `end` exclusive; `title` null when unknown): the format of data that is
not one of the official sets (`luke_jax.disambiguation.wiki_anchors` writes it from Wikipedia),
read by the fine-tuning task and the evaluation CLI.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from luke_jax.data_error import DataError


@dataclasses.dataclass
class Candidate:
  """An entity a mention may refer to, with its prior `P(entity | mention text)`."""

  title: str
  prior: float


@dataclasses.dataclass
class Mention:
  """A span of a document's words that names an entity.

  Attributes:
    text: the mention as written.
    title: the gold entity (after redirects), or None when unknown (raw text).
    start, end: word indices into `Document.words`, `end` exclusive.
    candidates: sorted by `prior`, highest first (the order candidates are featurised in).
  """

  text: str
  title: str | None
  start: int
  end: int
  candidates: list[Candidate]


@dataclasses.dataclass
class Document:
  """Words (CoNLL tokens; an empty string marks a sentence break) and mentions in order."""

  id: str
  words: list[str]
  mentions: list[Mention]


# ---- JSON lines ------------------------------------------------------------------------------


def _document_json(document: Document) -> dict:
  return {"id": document.id, "words": document.words,
          "mentions": [{"text": m.text, "title": m.title, "start": m.start, "end": m.end,
                        "candidates": [[c.title, c.prior] for c in m.candidates]}
                       for m in document.mentions]}


def write_jsonl(documents: Iterable[Document], path: str | os.PathLike) -> Path:
  """Writes the documents, one JSON object a line, through a temporary file (never a partial
  file under `path`)."""
  path = Path(path)
  tmp = path.with_name(f".{path.name}.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    for document in documents:
      f.write(json.dumps(_document_json(document), ensure_ascii=False) + "\n")
  os.replace(tmp, path)
  return path


def read_jsonl(path: str | os.PathLike) -> list[Document]:
  """The documents of a JSON lines file (`write_jsonl`'s format); errors name file and line."""
  return list(iter_jsonl(path))


def iter_jsonl(path: str | os.PathLike) -> Iterator[Document]:
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        yield _document(json.loads(line))
      except json.JSONDecodeError as e:
        raise DataError(path, number, f"not JSON ({e.msg})") from None
      except (KeyError, TypeError, ValueError) as e:
        raise DataError(path, number, f"not an entity disambiguation document ({e}); expected "
                        '{"id", "words", "mentions": [{"text", "title", "start", "end", '
                        '"candidates": [[title, prior], ...]}]}') from None


def _document(data: dict) -> Document:
  words = data["words"]
  if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
    raise ValueError("words must be a list of strings")
  mentions = []
  previous_end = 0
  for i, m in enumerate(data["mentions"]):
    start, end = m["start"], m["end"]
    if not (isinstance(start, int) and isinstance(end, int)
            and previous_end <= start < end <= len(words)):
      raise ValueError(f"mention {i}: words [{start}, {end}) must lie inside the "
                       f"{len(words)} words, in order, without overlap")
    previous_end = end
    candidates = [Candidate(str(title), float(prior)) for title, prior in m["candidates"]]
    candidates.sort(key=lambda c: c.prior, reverse=True)
    title = m.get("title")
    mentions.append(Mention(str(m["text"]), None if title is None else str(title), start, end,
                            candidates))
  return Document(str(data["id"]), list(words), mentions)
