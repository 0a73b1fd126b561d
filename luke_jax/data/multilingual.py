"""Multilingual entity vocabulary (mLUKE, reference C.3): one id per Wikidata item.

Per-language vocabularies (from `build_entity_vocab --language=xx`) are merged through
Wikidata sitelinks: titles of the same item share one id and their counts are summed; items
found in fewer than `min_num_languages` of the vocabularies are dropped; the rest are sorted by
count (descending; ties by item id, for determinism) after `[PAD]`, `[UNK]`, `[MASK]`, cut to
`vocab_size` entries (specials included) and numbered from 0. A title without a sitelink is an
item of its own, in one language. Specials carry one `(name, language)` pair per language, as in
the reference's merged files.

Sitelinks files (`load_sitelinks`), optionally `.bz2`/`.gz` compressed:

* TSV, one sitelink a line: `Q90<TAB>fr<TAB>Paris`; the language may also be written as a
  Wikipedia site id (`frwiki`); blank lines and lines starting with `#` are skipped.
* JSON lines, each either one sitelink, `{"qid": "Q90", "lang": "fr", "title": "Paris"}`, or one
  Wikidata entity, `{"id": "Q90", "sitelinks": {"frwiki": {"title": "Paris"}, ...}}` (a title
  may also be given as a plain string). The Wikidata JSON dump itself (`latest-all.json.bz2`:
  an array with one entity a line) is read as is; only `xxwiki` sites (Wikipedias) count.
"""

from __future__ import annotations

import bz2
import collections
import gzip
import json
import os
from typing import IO, Collection, Iterator, Mapping

from luke_jax.data.wikipedia import normalize_title
from luke_jax.tokenization.entity_vocab import SPECIALS as _ALL_SPECIALS
from luke_jax.tokenization.entity_vocab import Entity, EntityVocab

SPECIALS = ("[PAD]", "[UNK]", "[MASK]")
MASK2 = "[MASK2]"
# Sites ending in "wiki" that are not Wikipedias.
_NOT_WIKIPEDIAS = frozenset({"commons", "species", "meta", "mediawiki", "wikidata", "sources",
                             "outreach", "incubator", "wikimania", "foundation", "test",
                             "test2", "testwikidata", "beta", "wikifunctions", "abstract"})

Sitelinks = dict[tuple[str, str], str]


def merge_vocabularies(vocabs: Mapping[str, EntityVocab], sitelinks: Sitelinks,
                       vocab_size: int, min_num_languages: int = 3,
                       include_mask2: bool = False) -> EntityVocab:
  """Merges per-language vocabularies into one multilingual vocabulary.

  Args:
    vocabs: language code -> that language's vocabulary (its titles are taken to be in that
      language, whatever language the file stored).
    sitelinks: `(language, title)` -> Wikidata item id, e.g. `("fr", "Paris") -> "Q90"`.
    vocab_size: entries wanted, `[PAD]`, `[UNK]` and `[MASK]` included.
    min_num_languages: fewest languages an item must appear in.
    include_mask2: append `[MASK2]` after the entities (not counted in `vocab_size`).

  Returns:
    The merged vocabulary.
  """
  languages = sorted(vocabs)
  counts: collections.Counter = collections.Counter()
  titles: dict[str, dict[tuple[str, str], None]] = collections.defaultdict(dict)
  for language in languages:
    vocab = vocabs[language]
    for idx in range(len(vocab)):
      for entity in vocab.get_entities(idx):
        if entity.title in _ALL_SPECIALS:
          continue
        # A title without sitelink stays an item of its own, keyed so it cannot meet a QID.
        item = sitelinks.get((language, entity.title)) or f"\t{language}\t{entity.title}"
        titles[item][(language, entity.title)] = None
        counts[item] += vocab.get_count(idx)
  kept = [item for item in titles
          if len({language for language, _ in titles[item]}) >= min_num_languages]
  kept.sort(key=lambda item: (-counts[item], item))
  kept = kept[:max(vocab_size - len(SPECIALS), 0)]
  entries = [(i, [Entity(name, language) for language in languages], 0)
             for i, name in enumerate(SPECIALS)]
  for item in kept:
    entities = [Entity(title, language) for language, title in sorted(titles[item])]
    entries.append((len(entries), entities, counts[item]))
  if include_mask2:
    entries.append((len(entries), [Entity(MASK2, language) for language in languages], 0))
  return EntityVocab(entries, "<merged>")


def _open_text(path: str) -> IO[str]:
  with open(path, "rb") as f:
    magic = f.read(3)
  if magic == b"BZh":
    return bz2.open(path, "rt", encoding="utf-8")
  if magic[:2] == b"\x1f\x8b":
    return gzip.open(path, "rt", encoding="utf-8")
  return open(path, encoding="utf-8")


def _language_of_site(site: str) -> str | None:
  """`frwiki` -> `fr`, `zh_yuewiki` -> `zh-yue`; None for other projects."""
  if site.endswith("wiki"):
    site = site[:-len("wiki")]
    if not site or site in _NOT_WIKIPEDIAS:
      return None
  elif "wiki" in site:  # frwiktionary, enwikiquote, ...
    return None
  return site.replace("_", "-")


def _json_sitelinks(item: dict, where: str) -> Iterator[tuple[str, str, str]]:
  if "sitelinks" in item:
    qid = item.get("id")
    if not qid:
      return  # an entity without id cannot be grouped
    for site, link in item["sitelinks"].items():
      title = link.get("title") if isinstance(link, dict) else link
      language = _language_of_site(site)
      if language and isinstance(title, str):
        yield qid, language, title
  elif {"qid", "lang", "title"} <= item.keys():
    language = _language_of_site(item["lang"])
    if language:
      yield item["qid"], language, item["title"]
  else:
    raise ValueError(f"{where}: neither a sitelink nor a Wikidata entity")


def load_sitelinks(path: str | os.PathLike,
                   languages: Collection[str] | None = None) -> Sitelinks:
  """Reads a sitelinks file (formats in the module docstring).

  Args:
    path: TSV (`.tsv`) or JSON lines (anything else), optionally `.bz2`/`.gz` compressed.
    languages: keep these languages only (what a full Wikidata dump needs to fit in memory).

  Returns:
    `(language, normalised title)` -> item id.

  Raises:
    ValueError: a line is neither format; the message names the file and line.
  """
  path = os.fspath(path)
  wanted = set(languages) if languages is not None else None
  tsv = path.removesuffix(".bz2").removesuffix(".gz").endswith(".tsv")
  sitelinks: Sitelinks = {}
  with _open_text(path) as f:
    for line_no, line in enumerate(f, 1):
      line = line.strip()
      where = f"{path}:{line_no}"
      if tsv:
        if not line or line.startswith("#"):
          continue
        fields = line.split("\t")
        if len(fields) != 3:
          raise ValueError(f"{where}: want qid<TAB>language<TAB>title, got {line[:80]!r}")
        language = _language_of_site(fields[1].strip())
        links = [(fields[0].strip(), language, fields[2])] if language else []
      else:
        line = line.rstrip(",")  # the Wikidata dump is one array, one entity a line
        if line in ("", "[", "]"):
          continue
        try:
          links = list(_json_sitelinks(json.loads(line), where))
        except (json.JSONDecodeError, AttributeError, TypeError) as e:
          raise ValueError(f"{where}: not a sitelinks line ({e})") from None
      for qid, language, title in links:
        if wanted is None or language in wanted:
          sitelinks[(language, normalize_title(title))] = qid
  return sitelinks
