"""`EntityVocab`: the entity vocabulary in its three file formats.

- legacy TSV: `title<TAB>count` per line, id = line number (0-based); as in the reference's
  reader, every line must be an entry (a blank line would shift every later id, so it is an
  error, as are a missing or non-integer count and an extra tab);
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
      if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
        raise ValueError(f"{source}: id of {key!r} is not a non-negative integer: {idx!r}")
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
      if not isinstance(mapping, dict):
        raise ValueError(f"{path}: not a JSON object of title -> id (found a "
                         f"{type(mapping).__name__}); want {{\"[PAD]\": 0, ...}}")
      _check_unique_ids_json(mapping, path)
      return cls.from_dict(mapping, str(path))
    if path.suffix == ".jsonl":
      return cls(_read_jsonl(text, path), str(path))
    if path.suffix == ".tsv":
      return cls(_read_tsv(text, path), str(path))
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
      bad = [self._entities[i][0].title for i in ids
             if any(c in self._entities[i][0].title for c in "\t\r\n")]
      if bad:  # a tab or line break in a title would shift the ids when read back
        raise ValueError(f"{path}: title {bad[0]!r} holds a tab or line break, which TSV "
                         "cannot store; save as .jsonl")
      with open(path, "w", encoding="utf-8") as f:
        for idx in ids:
          f.write(f"{self._entities[idx][0].title}\t{self._counts.get(idx, 0)}\n")
    else:
      raise ValueError(f"{path}: unknown entity vocabulary format (want .json, .jsonl or .tsv)")
    return path


def read_entries(path: str | os.PathLike) -> list[tuple[int, list[Entity], int]]:
  """`[(id, entities, count), ...]` of an official `.jsonl` or legacy `.tsv` file, checked line
  by line as `EntityVocab.load` checks them (errors name the file and line)."""
  path = Path(path)
  text = path.read_text(encoding="utf-8")
  if path.suffix == ".jsonl":
    return list(_read_jsonl(text, path))
  if path.suffix == ".tsv":
    return list(_read_tsv(text, path))
  raise ValueError(f"{path}: not an entity vocabulary of entries (want .jsonl or .tsv)")


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


def _lines(text: str) -> list[str]:
  """Lines split at "\n" (and "\r\n") only, numbered as editors number them.

  `str.splitlines` also splits at U+2028, U+0085, form feeds, ...: characters a title (and a
  JSON string written with `ensure_ascii=False`) may hold, and a split there would shift ids.
  """
  lines = text.split("\n")
  if lines and lines[-1] == "":
    lines.pop()  # the newline ending the last line
  return [line[:-1] if line.endswith("\r") else line for line in lines]


_JSONL_EXAMPLE = '{"id": 3, "entities": [["Tokyo", "en"]], "count": 42}'


def _jsonl_entities(value, where: str) -> list[Entity]:
  if not isinstance(value, list) or not value:
    raise ValueError(f"{where}: no entities; want a non-empty list of [title, language] pairs "
                     f"as in {_JSONL_EXAMPLE}")
  entities = []
  for pair in value:
    if not isinstance(pair, list) or len(pair) != 2:
      raise ValueError(f"{where}: entity {pair!r} is not a [title, language] pair")
    title, language = pair
    if not isinstance(title, str) or not title:
      raise ValueError(f"{where}: title {title!r} is not a non-empty string")
    if language is not None and not isinstance(language, str):
      raise ValueError(f"{where}: language {language!r} of {title!r} is neither a string nor "
                       "null")
    entities.append(Entity(title, language))
  return entities


def _read_jsonl(text: str, path: Path):
  seen: set[int] = set()
  first: dict[tuple[str, str | None], int] = {}  # entity -> line that gave it its id
  for line_no, line in enumerate(_lines(text), 1):
    if not line.strip():
      continue  # ids are explicit: a blank line shifts nothing
    where = f"{path}:{line_no}"
    try:
      item = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{where}: not an entity vocabulary line ({e}); want "
                       f"{_JSONL_EXAMPLE}") from None
    if not isinstance(item, dict) or "id" not in item or "entities" not in item:
      raise ValueError(f"{where}: not an entity vocabulary line ({line[:80]!r}); want "
                       f"{_JSONL_EXAMPLE}")
    idx = item["id"]
    if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
      raise ValueError(f"{where}: id {idx!r} is not a non-negative integer")
    entities = _jsonl_entities(item["entities"], where)
    try:
      count = int(item.get("count", 0))
    except (TypeError, ValueError):
      raise ValueError(f"{where}: count {item.get('count')!r} is not an integer") from None
    if idx in seen:
      raise ValueError(f"{where}: duplicate id {idx}")
    seen.add(idx)
    for entity in entities:
      key = (entity.title, entity.language)
      if first.get(key, line_no) != line_no:
        raise ValueError(f"{where}: {entity.title!r} is already on line {first[key]} "
                         f"(language {entity.language!r}); an entity takes one id")
      first[key] = line_no
    yield idx, entities, count


def _read_tsv(text: str, path: Path):
  """`title<TAB>count` on every line; the id is the 0-based line number (the reference's
  `EntityVocab._parse_tsv_vocab_file`, which fails on a blank line as well)."""
  first: dict[str, int] = {}  # title -> its line
  for idx, line in enumerate(_lines(text)):
    line_no = idx + 1
    where = f"{path}:{line_no}"
    if not line.strip():
      raise ValueError(f"{where}: blank line; a line's id is its number, so it would shift "
                       "every later id: delete it (every line is `title<TAB>count`)")
    fields = line.split("\t")
    if len(fields) != 2:
      plural = "" if len(fields) == 1 else "s"
      raise ValueError(f"{where}: {len(fields)} tab-separated field{plural} in {line[:80]!r}; "
                       "want `title<TAB>count`")
    title, count = fields
    if not title.strip():
      raise ValueError(f"{where}: empty title; want `title<TAB>count`")
    try:
      count = int(count)
    except ValueError:
      raise ValueError(f"{where}: count {count!r} is not an integer; want "
                       "`title<TAB>count`") from None
    if title in first:
      raise ValueError(f"{where}: {title!r} is already on line {first[title]}; a title takes "
                       "one line (one id)")
    first[title] = line_no
    yield idx, [Entity(title)], count
