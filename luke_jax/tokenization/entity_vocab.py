"""`EntityVocab`: the entity vocabulary in its three file formats.

- legacy TSV: `title<TAB>count` per line, id = line number;
- official JSONL: `{"id": 3, "entities": [["United States", "en"]], "count": 261500}`, where one
  id may carry titles in several languages (mLUKE);
- Hugging Face `entity_vocab.json`: a flat `{"title": id}` dict, `"lang:title"` keys for mLUKE.

Special entities are looked up by name in the file; their ids are never assumed (lite
vocabularies put `[PAD]` at 2).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

SPECIALS = ("[PAD]", "[UNK]", "[MASK]", "[MASK2]")
FILE_NAMES = ("entity_vocab.json", "entity_vocab.jsonl", "entity_vocab.tsv")


@dataclasses.dataclass(frozen=True)
class Entity:
  title: str
  language: str | None = None

  @property
  def key(self) -> str:
    """The Hugging Face `entity_vocab.json` key."""
    if self.language is None or self.title in SPECIALS:
      return self.title
    return f"{self.language}:{self.title}"


class EntityVocab:
  """Maps `(title, language)` to entity ids; unknown titles map to `[UNK]`."""

  def __init__(self, entries: Iterable[tuple[int, list[Entity], int]], source: str = "<memory>"):
    self.source = source
    self._ids: dict[tuple[str, str | None], int] = {}
    self._by_key: dict[str, int] = {}
    self._entities: dict[int, list[Entity]] = {}
    self._counts: dict[int, int] = {}
    for idx, entities, count in entries:
      for entity in entities:
        where = (entity.title, entity.language)
        if where in self._ids and self._ids[where] != idx:
          raise ValueError(f"{source}: entity {entity.key!r} has two ids, "
                           f"{self._ids[where]} and {idx}")
        self._ids[where] = idx
        self._by_key[entity.key] = idx
      self._entities.setdefault(idx, []).extend(entities)
      self._counts[idx] = self._counts.get(idx, 0) + count
    missing = [s for s in ("[PAD]", "[UNK]", "[MASK]") if s not in self._by_key]
    if missing:
      raise ValueError(f"{source}: special entities {missing} are missing")
    if len(set(self._entities)) != len(self._entities):  # pragma: no cover - dict keys
      raise ValueError(f"{source}: duplicate ids")

  # -- lookups ---------------------------------------------------------------------------------
  def __len__(self) -> int:
    return max(self._entities) + 1 if self._entities else 0

  def __contains__(self, key: str) -> bool:
    return key in self._by_key

  def contains(self, title: str, language: str | None = None) -> bool:
    return (title, language) in self._ids or (language is None and title in self._by_key)

  def get_id(self, title: str, language: str | None = None, default: int | None = None) -> int:
    """The id of `title` (in `language`); `[UNK]`'s id (or `default`) when unknown."""
    idx = self._ids.get((title, language))
    if idx is None and language is None:
      idx = self._by_key.get(title)
    if idx is None:
      return self.unk_id if default is None else default
    return idx

  def lookup(self, key: str) -> int:
    """Id of a Hugging Face style key (`"Tokyo"`, `"en:Tokyo"`, `"[MASK]"`), `[UNK]` if absent."""
    return self._by_key.get(key, self.unk_id)

  def lookup_many(self, keys: Sequence[str]) -> list[int]:
    """`lookup` of each key."""
    get, unk = self._by_key.get, self.unk_id
    return [get(k, unk) for k in keys]

  def get_entities(self, idx: int) -> list[Entity]:
    return list(self._entities.get(idx, []))

  def get_count(self, idx: int) -> int:
    return self._counts.get(idx, 0)

  def special_id(self, name: str) -> int:
    if name not in self._by_key:
      raise KeyError(f"{self.source}: no special entity {name}")
    return self._by_key[name]

  @property
  def pad_id(self) -> int:
    return self.special_id("[PAD]")

  @property
  def unk_id(self) -> int:
    return self.special_id("[UNK]")

  @property
  def mask_id(self) -> int:
    return self.special_id("[MASK]")

  @property
  def mask2_id(self) -> int:
    return self.special_id("[MASK2]")

  def to_dict(self) -> dict[str, int]:
    """The flat Hugging Face mapping."""
    return dict(self._by_key)

  # -- files -----------------------------------------------------------------------------------
  @classmethod
  def from_dict(cls, mapping: dict[str, int], source: str = "<dict>") -> "EntityVocab":
    grouped: dict[int, list[Entity]] = {}
    for key, idx in mapping.items():
      if not isinstance(idx, int):
        raise ValueError(f"{source}: id of {key!r} is not an integer: {idx!r}")
      grouped.setdefault(idx, []).append(_parse_key(key))
    return cls(((idx, ents, 0) for idx, ents in sorted(grouped.items())), source)

  @classmethod
  def load(cls, path: str | os.PathLike) -> "EntityVocab":
    """Reads `.json` (HF), `.jsonl` (official) or `.tsv` (legacy); a directory is searched."""
    path = Path(path)
    if path.is_dir():
      found = [path / n for n in FILE_NAMES if (path / n).exists()]
      if not found:
        raise FileNotFoundError(f"{path}: no entity vocabulary ({', '.join(FILE_NAMES)})")
      path = found[0]
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
      try:
        mapping = json.loads(text)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
      _check_unique_ids_json(mapping, path)
      return cls.from_dict(mapping, str(path))
    if path.suffix == ".jsonl":
      return cls(_read_jsonl(text, path), str(path))
    if path.suffix == ".tsv":
      return cls(_read_tsv(text), str(path))
    raise ValueError(f"{path}: unknown entity vocabulary format (want .json, .jsonl or .tsv)")

  def save(self, path: str | os.PathLike) -> Path:
    """Writes the format the suffix names (`.json`, `.jsonl` or `.tsv`)."""
    path = Path(path)
    if path.suffix == ".json":
      path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n",
                      encoding="utf-8")
    elif path.suffix == ".jsonl":
      with open(path, "w", encoding="utf-8") as f:
        for idx in sorted(self._entities):
          item = {"id": idx, "entities": [[e.title, e.language] for e in self._entities[idx]],
                  "count": self._counts.get(idx, 0)}
          f.write(json.dumps(item, ensure_ascii=False) + "\n")
    elif path.suffix == ".tsv":
      ids = sorted(self._entities)
      if ids != list(range(len(ids))) or any(len(self._entities[i]) != 1 for i in ids):
        raise ValueError(f"{path}: TSV needs ids 0..n-1 with one title each")
      with open(path, "w", encoding="utf-8") as f:
        for idx in ids:
          f.write(f"{self._entities[idx][0].title}\t{self._counts.get(idx, 0)}\n")
    else:
      raise ValueError(f"{path}: unknown entity vocabulary format (want .json, .jsonl or .tsv)")
    return path


def _parse_key(key: str) -> Entity:
  if key in SPECIALS or ":" not in key:
    return Entity(key)
  lang, title = key.split(":", 1)
  # Language codes are short and lower-case; "Star Wars: Episode I" is a title, not a language.
  if 2 <= len(lang) <= 3 and lang.isalpha() and lang.islower():
    return Entity(title, lang)
  return Entity(key)


def _check_unique_ids_json(mapping: dict, path: Path) -> None:
  seen: dict[int, str] = {}
  for key, idx in mapping.items():
    if idx in seen and _parse_key(seen[idx]).title == _parse_key(key).title:
      raise ValueError(f"{path}: duplicate id {idx} for {seen[idx]!r} and {key!r}")
    seen.setdefault(idx, key)


def _read_jsonl(text: str, path: Path):
  seen: set[int] = set()
  for line_no, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    try:
      item = json.loads(line)
      idx = int(item["id"])
      entities = [Entity(t, lang) for t, lang in item["entities"]]
      count = int(item.get("count", 0))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
      raise ValueError(f"{path}:{line_no}: not an entity vocabulary line ({e})") from None
    if idx in seen:
      raise ValueError(f"{path}:{line_no}: duplicate id {idx}")
    seen.add(idx)
    yield idx, entities, count


def _read_tsv(text: str):
  for idx, line in enumerate(text.splitlines()):
    title, _, count = line.partition("\t")
    yield idx, [Entity(title)], int(count) if count.strip() else 0
