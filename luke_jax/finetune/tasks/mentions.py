"""Entity mentions by exact dictionary match, for tasks that feed Wikipedia entities to LUKE.

The paper's SQuAD runs linked anchor texts of the passage's Wikipedia article (a link database
not distributed with the data). This module is the portable stand-in: a dictionary
`mention text -> entity title`, either the entity vocabulary's own titles or a user JSON file,
matched exactly (case-sensitive) at word boundaries, longest match first, left to right,
without overlaps -- the reference's greedy longest-match detection.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping

from absl import logging

from luke_jax.finetune.task import DataError
from luke_jax.tokenization.entity_vocab import SPECIALS, EntityVocab

# A word is a run of letters/digits/underscore; any other non-space character stands alone, so
# "Tokyo's" offers "Tokyo" and "U.S." offers "U", ".", "S", "." as boundaries.
_WORD = re.compile(r"\w+|[^\w\s]")

Mention = tuple[int, int, int]  # character start, end, entity id


class MentionMatcher:
  """Finds dictionary mentions in text.

  Args:
    mentions: mention text -> entity id.
  """

  def __init__(self, mentions: Mapping[str, int]):
    self.mentions = dict(mentions)
    # First word -> most words any mention starting with it has: bounds the lookups per word.
    self._longest: dict[str, int] = {}
    for text in self.mentions:
      words = _WORD.findall(text)
      if words:
        self._longest[words[0]] = max(self._longest.get(words[0], 0), len(words))

  def __len__(self) -> int:
    return len(self.mentions)

  def find(self, text: str) -> list[Mention]:
    """Non-overlapping mentions in `text`, longest first at each word, in text order."""
    words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]
    found, i = [], 0
    while i < len(words):
      longest = self._longest.get(words[i][2], 0)
      for n in range(min(longest, len(words) - i), 0, -1):
        start, end = words[i][0], words[i + n - 1][1]
        entity = self.mentions.get(text[start:end])
        if entity is not None:
          found.append((start, end, entity))
          i += n
          break
      else:
        i += 1
    return found


def from_titles(entity_vocab: EntityVocab) -> MentionMatcher:
  """Every non-special title of the vocabulary as its own mention.

  A multilingual vocabulary's titles match without their language (`en:Tokyo` matches
  "Tokyo"); where two languages spell a title alike, the smaller id wins, so the result does
  not depend on dictionary order.
  """
  mentions: dict[str, int] = {}
  for idx in sorted(set(entity_vocab.to_dict().values())):
    for entity in entity_vocab.get_entities(idx):
      if entity.title not in SPECIALS:
        mentions.setdefault(entity.title, idx)
  return MentionMatcher(mentions)


def from_file(path: str | os.PathLike, entity_vocab: EntityVocab) -> MentionMatcher:
  """A JSON object `{"mention text": "Entity Title", ...}`; titles are vocabulary keys.

  Mentions whose title is not in the vocabulary are dropped (counted in the log), as the
  reference drops links to entities the model does not know.
  """
  path = Path(path)
  try:
    mapping = json.loads(path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise DataError(path, e.lineno, f"not valid JSON: {e.msg}") from None
  if not isinstance(mapping, dict) or not mapping:
    raise DataError(path, None, 'expected a non-empty JSON object {"mention text": "Title"}')
  mentions, unknown = {}, 0
  for text, title in mapping.items():
    if not isinstance(title, str) or not text.strip():
      raise DataError(path, repr(text), f"mention must be non-blank text mapped to a title "
                      f"string, got {title!r}")
    if title in SPECIALS or title not in entity_vocab:
      unknown += 1
      continue
    mentions[text] = entity_vocab.lookup(title)
  if unknown:
    logging.info("%s: %d of %d mentions name titles outside the entity vocabulary; dropped",
                 path, unknown, len(mapping))
  return MentionMatcher(mentions)


def from_config(spec: str, entity_vocab: EntityVocab) -> MentionMatcher | None:
  """`"none"` (no entities), `"titles"` or a path to a mention dictionary JSON."""
  if spec in ("", "none", None):
    return None
  if spec == "titles":
    return from_titles(entity_vocab)
  if not Path(spec).is_file():
    raise FileNotFoundError(f"entities={spec!r}: expected 'none', 'titles' or a mention "
                            "dictionary JSON file")
  return from_file(spec, entity_vocab)
