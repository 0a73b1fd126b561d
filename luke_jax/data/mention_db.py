"""A mention dictionary: normalised names -> candidate entities with counts, memory-mapped.

Candidate generation for entity disambiguation and linking (the role of the reference's
`examples/utils/wiki_entity_linker/mention_db.py` in studio-ousia/luke, whose marisa tries are
replaced here by sorted numpy arrays that `np.load(mmap_mode="r")` opens without reading them:
a database of full Wikipedia opens in milliseconds and costs only the pages a lookup touches).
`luke_jax.data.mention_db_builder` builds one from a Wikipedia dump.

**Names.** Names are normalised text (`luke_jax.data.mention_names`: BERT's uncased basic
tokenization, tokens joined by one space); `normalize_mention`, `tokenize` and `words` are
re-exported here.

**Storage.** A database is a directory: `meta.json` (format, version, build options, counts,
source) and one `.npy` array per column:

  name_hashes [N] uint64, sorted     64-bit hash of each name (`name_hashes`)
  name_offsets [N+1] int64           name i = name_bytes[name_offsets[i]:name_offsets[i+1]] (UTF-8)
  name_bytes [*] uint8
  total_link_count [N] int32         links with name i as anchor text (all targets, before cuts)
  doc_count [N] int32                pages mentioning name i (0: not counted at build time)
  candidate_offsets [N+1] int64      name i's candidates: rows candidate_offsets[i]:...[i+1],
  candidate_title [C] int32            by link count (descending), then title
  candidate_link_count [C] int32
  title_offsets [T+1] int64          title j = title_bytes[title_offsets[j]:title_offsets[j+1]]
  title_bytes [*] uint8

Names are found by their 64-bit hash (`mention_names.name_hashes`): `detect` looks every token
n-gram of a text up with one `np.searchsorted`, and every hit of `query` and `detect` is
checked against the stored name string.

A database is written to a temporary sibling directory that is renamed into place once
complete (`meta.json` is its last file), so an interrupted write never leaves a directory that
loads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

# normalize_mention, tokenize and words are re-exported: callers import them from here.
from luke_jax.data.mention_names import (  # pylint: disable=unused-import
    name_hash, name_hashes, ngram_hashes, normalize_mention, token_hashes, tokenize, words)

FORMAT = "luke-jax-mention-db"
VERSION = 1
HASH = "blake2b64-token-fold-v1"
META_FILE = "meta.json"
# Column name -> dtype; every column is `<name>.npy`.
COLUMNS = {
    "name_hashes": np.uint64, "name_offsets": np.int64, "name_bytes": np.uint8,
    "total_link_count": np.int32, "doc_count": np.int32, "candidate_offsets": np.int64,
    "candidate_title": np.int32, "candidate_link_count": np.int32,
    "title_offsets": np.int64, "title_bytes": np.uint8,
}


class MentionDBError(ValueError):
  """A mention database directory is missing, foreign or damaged; or bad arguments to write."""


# -- results ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MentionCandidate:
  """An entity a name may refer to.

  `prior_prob` is p(entity | name) = link_count / total_link_count; `link_prob` is how often
  the name is a link where it occurs, min(1, total_link_count / doc_count), 0.0 for a database
  built without doc counts (`min_link_prob=0`).
  """
  title: str
  link_count: int
  total_link_count: int
  doc_count: int
  prior_prob: float
  link_prob: float


@dataclasses.dataclass(frozen=True)
class DetectedMention:
  """A name found in a text: `text[start:end]` of the searched text is `self.text`."""
  start: int
  end: int
  text: str
  candidates: list[MentionCandidate]


# -- writing ---------------------------------------------------------------------------------
def _is_database(path: Path) -> bool:
  try:
    return json.loads((path / META_FILE).read_text(encoding="utf-8")).get("format") == FORMAT
  except (OSError, ValueError, AttributeError):
    return False


def check_output(path: str | os.PathLike, overwrite: bool = False) -> None:
  """Raises unless `path` may receive a database: absent, an empty directory, or (with
  `overwrite`) a database holding nothing but its own files. Builders call it before the
  hours of work, `write` again before replacing anything."""
  path = Path(path)
  if not path.exists() and not path.is_symlink():
    return
  if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
    return
  if not overwrite:
    raise FileExistsError(f"{path}: already exists; pass --overwrite to replace a mention "
                          "database")
  if not path.is_dir() or path.is_symlink() or not _is_database(path):
    raise FileExistsError(f"{path}: exists and is not a mention database; not replaced")
  ours = {META_FILE} | {f"{name}.npy" for name in COLUMNS}
  others = sorted(p.name for p in path.iterdir() if p.name not in ours)
  if others:
    raise FileExistsError(f"{path}: holds files that are not the database's ({others[:3]}); "
                          "not replaced")


def _blob(strings: Sequence[str], what: str) -> tuple[np.ndarray, np.ndarray]:
  """UTF-8 bytes of `strings` end to end and [len+1] offsets (newlines find the boundaries)."""
  data = "\n".join(strings).encode("utf-8")
  blob = np.frombuffer(data, np.uint8)
  breaks = np.flatnonzero(blob == 10)
  if len(breaks) != max(len(strings) - 1, 0):
    raise MentionDBError(f"a {what} holds a newline; {what}s are single lines")
  offsets = np.empty(len(strings) + 1, np.int64)
  offsets[0] = 0
  offsets[1:-1] = breaks
  offsets[-1] = len(blob)
  blob = np.delete(blob, breaks) if len(breaks) else blob
  offsets[1:-1] -= np.arange(len(breaks))  # each earlier newline removed
  offsets[-1] = len(blob)
  return blob, offsets


def write(path: str | os.PathLike, names: Sequence[str], total_link_count: np.ndarray,
          doc_count: np.ndarray, candidate_offsets: np.ndarray, candidate_title: np.ndarray,
          candidate_link_count: np.ndarray, titles: Sequence[str],
          meta: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
  """Writes a database atomically (see the module docstring).

  Args:
    path: the directory to create.
    names: N distinct normalised names (`normalize_mention` outputs), in any order.
    total_link_count: [N] links per name.
    doc_count: [N] pages mentioning each name (zeros when not counted).
    candidate_offsets: [N+1] name i's candidates are rows `offsets[i]:offsets[i+1]` of the
      next two arrays, already in the order `query` returns them.
    candidate_title: [C] indices into `titles`.
    candidate_link_count: [C] links of the name to that title.
    titles: T entity titles.
    meta: stored in `meta.json` next to the format fields (options, source, `partial`).
    overwrite: replace an existing database (see `check_output`).

  Returns:
    `path`.

  Raises:
    MentionDBError: inconsistent arrays.
    FileExistsError: see `check_output`.
  """
  path = Path(path)
  n, t = len(names), len(titles)
  total_link_count = np.asarray(total_link_count)
  doc_count = np.asarray(doc_count)
  candidate_offsets = np.asarray(candidate_offsets, np.int64)
  candidate_title = np.asarray(candidate_title)
  candidate_link_count = np.asarray(candidate_link_count)
  c = len(candidate_title)
  if (total_link_count.shape != (n,) or doc_count.shape != (n,)
      or candidate_offsets.shape != (n + 1,) or candidate_link_count.shape != (c,)):
    raise MentionDBError(f"array shapes disagree with {n} names and {c} candidates")
  if candidate_offsets[0] != 0 or candidate_offsets[-1] != c or np.any(
      np.diff(candidate_offsets) < 0):
    raise MentionDBError("candidate_offsets must rise from 0 to the number of candidates")
  if c and (candidate_title.min() < 0 or candidate_title.max() >= t):
    raise MentionDBError(f"candidate_title holds an index outside the {t} titles")
  for name, array in (("total_link_count", total_link_count), ("doc_count", doc_count),
                      ("candidate_link_count", candidate_link_count)):
    if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int32).max):
      raise MentionDBError(f"{name} must hold counts in [0, 2**31)")
  check_output(path, overwrite)

  hashes = name_hashes(names)
  order = np.argsort(hashes, kind="stable")
  same = np.flatnonzero(hashes[order][1:] == hashes[order][:-1])  # duplicates or collisions
  for i in same:
    if names[order[i]] == names[order[i + 1]]:
      raise MentionDBError(f"the name {names[order[i]]!r} is given twice")
  if n and min(map(len, names)) == 0:
    raise MentionDBError("an empty name (names have at least one token)")
  sizes = np.diff(candidate_offsets)[order]
  new_offsets = np.zeros(n + 1, np.int64)
  np.cumsum(sizes, out=new_offsets[1:])
  # Row r of the new candidate arrays comes from old row: start of its name + rank in it.
  rows = (np.repeat(candidate_offsets[:-1][order] - new_offsets[:-1], sizes)
          + np.arange(c, dtype=np.int64))
  name_bytes, name_offsets = _blob([names[i] for i in order], "name")
  title_bytes, title_offsets = _blob(titles, "title")
  columns = {
      "name_hashes": hashes[order], "name_offsets": name_offsets, "name_bytes": name_bytes,
      "total_link_count": total_link_count[order], "doc_count": doc_count[order],
      "candidate_offsets": new_offsets, "candidate_title": candidate_title[rows],
      "candidate_link_count": candidate_link_count[rows],
      "title_offsets": title_offsets, "title_bytes": title_bytes,
  }
  info = {"format": FORMAT, "version": VERSION, "hash": HASH,
          "longest_name": int(max((name.count(" ") + 1 for name in names), default=0)),
          "num_names": n, "num_candidates": c, "num_titles": t, **(meta or {})}

  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)  # our own leftover from a crashed write
  tmp.mkdir()
  try:
    for name, array in columns.items():
      np.save(tmp / f"{name}.npy", np.ascontiguousarray(array, COLUMNS[name]))
    (tmp / META_FILE).write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n",
                                 encoding="utf-8")
    _publish(tmp, path, overwrite)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return path


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
  check_output(path, overwrite)
  if path.is_dir() and not any(path.iterdir()):
    path.rmdir()
  if not path.exists():
    os.rename(tmp, path)
    return
  old = path.with_name(f".{path.name}.old-{os.getpid()}")
  os.rename(path, old)  # checked above: a database of our files only
  os.rename(tmp, path)
  shutil.rmtree(old)


# -- reading ---------------------------------------------------------------------------------
class MentionDB:
  """A database opened read-only with memory-mapped columns (see the module docstring)."""

  def __init__(self, path: Path, columns: Mapping[str, np.ndarray], meta: Mapping[str, Any]):
    self.path = path
    self.meta = dict(meta)
    # Plain ndarray views of the memory maps: `np.memmap.__getitem__` runs Python code on
    # every index, which was half the time of a query.
    self._c = {name: column.view(np.ndarray) for name, column in columns.items()}
    self._name_bytes = memoryview(self._c["name_bytes"])
    self._title_bytes = memoryview(self._c["title_bytes"])
    self._num_names = len(self._c["name_hashes"])
    self._longest = int(meta.get("longest_name", 0))

  @classmethod
  def load(cls, path: str | os.PathLike) -> "MentionDB":
    """Opens the database directory `path`.

    Raises:
      FileNotFoundError: no such directory, or a file of the database is missing.
      MentionDBError: not a mention database, an unsupported version, or damaged files.
    """
    path = Path(path)
    if not path.is_dir():
      raise FileNotFoundError(f"{path}: no such mention database directory")
    meta_file = path / META_FILE
    if not meta_file.exists():
      raise FileNotFoundError(f"{meta_file}: missing; {path} is not a (complete) mention "
                              "database")
    try:
      meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
      raise MentionDBError(f"{meta_file}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
      raise MentionDBError(f"{meta_file}: not a luke-jax mention database (format "
                           f"{meta.get('format') if isinstance(meta, dict) else None!r}, "
                           f"expected {FORMAT!r})")
    if meta.get("version") != VERSION or meta.get("hash") != HASH:
      raise MentionDBError(f"{meta_file}: version {meta.get('version')!r} with hash "
                           f"{meta.get('hash')!r}; this luke-jax reads version {VERSION} "
                           f"({HASH}); rebuild it with build_mention_db")
    columns = {}
    for name, dtype in COLUMNS.items():
      file = path / f"{name}.npy"
      if not file.exists():
        raise FileNotFoundError(f"{file}: missing from the mention database {path}")
      try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
      except (ValueError, OSError, EOFError) as e:
        raise MentionDBError(f"{file}: not a readable .npy array ({e})") from None
      if array.dtype != dtype or array.ndim != 1:
        raise MentionDBError(f"{file}: {array.dtype}{list(array.shape)}, expected a 1-d "
                             f"{np.dtype(dtype).name} array")
      columns[name] = array
    _check_shapes(path, columns, meta)
    return cls(path, columns, meta)

  # -- lookups -------------------------------------------------------------------------------
  def __len__(self) -> int:
    return self._num_names

  @property
  def num_titles(self) -> int:
    return len(self._c["title_offsets"]) - 1

  @property
  def has_doc_counts(self) -> bool:
    return bool(self.meta.get("doc_counts", False))

  def title(self, index: int) -> str:
    offsets = self._c["title_offsets"]
    return str(self._title_bytes[offsets[index]:offsets[index + 1]], "utf-8")

  def titles(self) -> Iterator[str]:
    """Every candidate title, in id (alphabetical) order."""
    for i in range(self.num_titles):
      yield self.title(i)

  def name(self, index: int) -> str:
    offsets = self._c["name_offsets"]
    return str(self._name_bytes[offsets[index]:offsets[index + 1]], "utf-8")

  def names(self) -> Iterator[str]:
    """Every name, in hash order."""
    for i in range(len(self)):
      yield self.name(i)

  def _find(self, hashes: np.ndarray, name_of) -> np.ndarray:
    """[K] index of each hash's name (-1: none); `name_of(k)` is the k-th looked-up name."""
    table = self._c["name_hashes"]
    where = np.searchsorted(table, hashes)
    found = np.full(len(hashes), -1, np.int64)
    inside = where < len(table)
    hit = np.flatnonzero(inside)[table[where[inside]] == hashes[inside]]
    for k in hit:
      wanted = name_of(k)
      i = int(where[k])
      while i < len(table) and table[i] == hashes[k]:  # more than one only on a collision
        if self.name(i) == wanted:
          found[k] = i
          break
        i += 1
    return found

  def _index(self, text: str) -> int:
    tokens = words(text)
    if not tokens:
      return -1
    name = " ".join(tokens)
    key = name_hash(tokens)
    table = self._c["name_hashes"]
    i = int(table.searchsorted(np.uint64(key)))
    while i < len(table) and int(table[i]) == key:  # more than one only on a collision
      if self.name(i) == name:
        return i
      i += 1
    return -1

  def __contains__(self, text: str) -> bool:
    return self._index(text) >= 0

  def _candidates(self, index: int, max_candidates: int | None) -> list[MentionCandidate]:
    offsets = self._c["candidate_offsets"]
    first, last = int(offsets[index]), int(offsets[index + 1])
    if max_candidates is not None:
      last = min(last, first + max_candidates)
    total = int(self._c["total_link_count"][index])
    docs = int(self._c["doc_count"][index])
    link_prob = min(1.0, total / docs) if docs > 0 else 0.0
    titles = self._c["candidate_title"][first:last]
    starts = self._c["title_offsets"][titles].tolist()
    ends = self._c["title_offsets"][titles + 1].tolist()
    blob = self._title_bytes
    return [MentionCandidate(str(blob[start:end], "utf-8"), count, total, docs,
                             count / total if total else 0.0, link_prob)
            for start, end, count in zip(starts, ends,
                                         self._c["candidate_link_count"][first:last].tolist())]

  def query(self, text: str, max_candidates: int | None = None) -> list[MentionCandidate]:
    """Candidates of a name (raw text or already normalised), most probable first; [] when
    the name is unknown."""
    index = self._index(text)
    return [] if index < 0 else self._candidates(index, max_candidates)

  def link_prob(self, text: str) -> float | None:
    """min(1, total links / doc count) of a name; None when unknown."""
    candidates = self.query(text, max_candidates=1)
    return candidates[0].link_prob if candidates else None

  def detect(self, text: str, min_link_prob: float | None = None,
             max_candidates: int | None = None, max_mention_length: int | None = None
             ) -> list[DetectedMention]:
    """Known names in `text`: longest first, then leftmost, never overlapping.

    Every token n-gram up to `max_mention_length` tokens (default: the longest stored name)
    is looked up at once; a shorter match inside or across a chosen longer one is dropped.

    Args:
      text: raw text.
      min_link_prob: skip names linked less often than this where they occur (needs a
        database built with doc counts).
      max_candidates: candidates kept per mention.
      max_mention_length: longest mention in tokens.

    Returns:
      The mentions in text order, character offsets into `text`.

    Raises:
      MentionDBError: `min_link_prob` on a database without doc counts.
    """
    if min_link_prob and not self.has_doc_counts:
      raise MentionDBError(f"{self.path}: built without doc counts (min_link_prob=0), so "
                           "detect cannot filter by min_link_prob")
    tokens = tokenize(text)
    longest = self._longest if max_mention_length is None else min(max_mention_length,
                                                                   self._longest)
    if not tokens or longest < 1:
      return []
    words = [token for token, _, _ in tokens]
    hashes, starts, lengths = ngram_hashes(token_hashes(words), longest)
    found = self._find(hashes, lambda k: " ".join(words[starts[k]:starts[k] + lengths[k]]))
    hit = np.flatnonzero(found >= 0)
    if min_link_prob:
      total = self._c["total_link_count"][found[hit]].astype(np.float64)
      docs = self._c["doc_count"][found[hit]]
      prob = np.where(docs > 0, np.minimum(1.0, total / np.maximum(docs, 1)), 0.0)
      hit = hit[prob >= min_link_prob]
    # ngram_hashes orders by length, then start: reversed stable order = longest, leftmost.
    hit = hit[np.lexsort((starts[hit], -lengths[hit]))]
    taken = bytearray(len(tokens))
    chosen = []
    for first, length, index in zip(starts[hit].tolist(), lengths[hit].tolist(),
                                    found[hit].tolist()):
      last = first + length
      if not any(taken[first:last]):
        taken[first:last] = b"\1" * length
        chosen.append((first, last, index))
    mentions = []
    for first, last, index in sorted(chosen):
      start, end = tokens[first][1], tokens[last - 1][2]
      mentions.append(DetectedMention(start, end, text[start:end],
                                      self._candidates(index, max_candidates)))
    return mentions


def _check_shapes(path: Path, c: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
  """Cheap consistency checks (lengths and final offsets); the data are not read."""
  n = len(c["name_hashes"])
  expected = {
      "name_offsets": n + 1, "total_link_count": n, "doc_count": n, "candidate_offsets": n + 1,
      "candidate_link_count": len(c["candidate_title"]),
  }
  for name, length in expected.items():
    if len(c[name]) != length:
      raise MentionDBError(f"{path / (name + '.npy')}: {len(c[name])} entries, expected "
                           f"{length} (damaged database)")
  for offsets, data in (("name_offsets", "name_bytes"), ("candidate_offsets", "candidate_title"),
                        ("title_offsets", "title_bytes")):
    if len(c[offsets]) == 0 or c[offsets][0] != 0 or c[offsets][-1] != len(c[data]):
      raise MentionDBError(f"{path / (offsets + '.npy')}: does not span {data}.npy "
                           "(damaged database)")
  if meta.get("num_names") != n:
    raise MentionDBError(f"{path / META_FILE}: num_names {meta.get('num_names')!r} but "
                         f"name_hashes.npy holds {n} (files from different builds?)")
