"""The data model of entity disambiguation: documents, their mentions, and candidates."""

from __future__ import annotations

import dataclasses


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
