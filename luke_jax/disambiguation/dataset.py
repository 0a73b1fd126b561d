"""The official entity disambiguation datasets (AIDA-CoNLL and the five WNED/ACE sets).

The directory distributed with "Global Entity Disambiguation with BERT" (github.com/studio-ousia/
luke `examples/entity_disambiguation/README.md`), in the format of Le and Titov (2018,
github.com/lephong/mulrel-nel):

- `<name>.csv`: one mention per line, tab-separated: document id (twice), mention text, left
  and right context, `CANDIDATES`, then `wikiid,prior,title` per candidate (or `EMPTYCAND`),
  `GT:`, and the gold as `-1,wikiid,title` (not among the candidates) or
  `index,wikiid,prior,title`; a mention without a gold title is skipped;
- `<name>.conll` (AIDA: `aida_train.txt`, `testa_testb_aggregate_original`): the documents'
  words, one per line, `-DOCSTART- (<id>` opening a document; a mention's words carry `B`/`I`
  in the second of at least six tab-separated columns; an empty line is an empty word;
- `persons.txt`: titles of people. A mention whose text is a word-bounded part of a longer
  mention of a person in the same document (`Obama` of `Barack Obama`) takes the candidates of
  those mentions instead, priors averaged (Le and Titov's coreference heuristic).

Optionally a titles file (one title per line; gold titles outside it are dropped, as
out-of-KB mentions) and a redirects file (`source<TAB>target`; applied to gold and candidate
titles). The reader follows the reference's `dataset.py` (which excludes the document
`Jiří_Třanovský`, as Le and Titov do); malformed lines are `DataError`s naming file and line.
"""

from __future__ import annotations

import collections
import os
import re
from pathlib import Path
from typing import AbstractSet, Mapping, Sequence

from luke_jax.disambiguation.documents import Candidate, Document, Mention
from luke_jax.data_error import DataError

# Dataset name -> (mention file, word file), as the reference names them.
DATASET_FILES = {
    "train": ("aida_train.csv", "aida_train.txt"),
    "test_a": ("aida_testA.csv", "testa_testb_aggregate_original"),
    "test_b": ("aida_testB.csv", "testa_testb_aggregate_original"),
    "ace2004": ("wned-ace2004.csv", "ace2004.conll"),
    "aquaint": ("wned-aquaint.csv", "aquaint.conll"),
    "clueweb": ("wned-clueweb.csv", "clueweb.conll"),
    "msnbc": ("wned-msnbc.csv", "msnbc.conll"),
    "wikipedia": ("wned-wikipedia.csv", "wikipedia.conll"),
}
NAMES = tuple(DATASET_FILES)
PERSONS_FILE = "persons.txt"
# Excluded by Le and Titov (2018) (mulrel-nel `nel/dataset.py`), hence by every later paper.
EXCLUDED_DOCUMENTS = frozenset({"Jiří_Třanovský"})

_NON_WORD = re.compile(r"\W+")


# ---- side files -----------------------------------------------------------------------------


def read_titles(path: str | os.PathLike) -> frozenset[str]:
  """The titles of a titles file, one per line (trailing whitespace dropped)."""
  with open(path, encoding="utf-8") as f:
    return frozenset(line.rstrip() for line in f)


def read_redirects(path: str | os.PathLike) -> dict[str, str]:
  """`source -> target` from `source<TAB>target` lines."""
  redirects = {}
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      parts = line.rstrip("\r\n").split("\t")
      if len(parts) != 2:
        raise DataError(path, number, f"expected `source<TAB>target`, got {len(parts)} fields")
      redirects[parts[0]] = parts[1]
  return redirects


def read_persons(path: str | os.PathLike) -> frozenset[str]:
  with open(path, encoding="utf-8") as f:
    return frozenset(line.strip() for line in f)


def conll_file_for(csv_path: str | os.PathLike) -> Path:
  """The word file that goes with a mention file of `DATASET_FILES` (same directory).

  Raises:
    ValueError: a mention file name the table does not know.
  """
  csv_path = Path(csv_path)
  for mention_file, word_file in DATASET_FILES.values():
    if csv_path.name == mention_file:
      return csv_path.with_name(word_file)
  known = ", ".join(sorted({m for m, _ in DATASET_FILES.values()}))
  raise ValueError(f"{csv_path}: not a mention file of the entity disambiguation datasets "
                   f"(known: {known})")


# ---- datasets -------------------------------------------------------------------------------


def load_dataset(dataset_dir: str | os.PathLike, names: Sequence[str] = NAMES, *,
                 titles_file: str | os.PathLike | None = None,
                 redirects_file: str | os.PathLike | None = None
                 ) -> dict[str, list[Document]]:
  """`name -> documents` for each of `names` (keys of `DATASET_FILES`) in `dataset_dir`."""
  unknown = [n for n in names if n not in DATASET_FILES]
  if unknown:
    raise ValueError(f"unknown entity disambiguation datasets {unknown}; known: "
                     f"{', '.join(NAMES)}")
  dataset_dir = Path(dataset_dir)
  persons = read_persons(_existing(dataset_dir / PERSONS_FILE))
  titles = read_titles(_existing(titles_file)) if titles_file else None
  redirects = read_redirects(_existing(redirects_file)) if redirects_file else {}
  out = {}
  for name in names:
    mention_file, word_file = DATASET_FILES[name]
    out[name] = load_documents(_existing(dataset_dir / mention_file),
                               _existing(dataset_dir / word_file), persons=persons,
                               titles=titles, redirects=redirects)
  return out


def load_documents(csv_path: str | os.PathLike, conll_path: str | os.PathLike, *,
                   persons: AbstractSet[str], titles: AbstractSet[str] | None = None,
                   redirects: Mapping[str, str] | None = None) -> list[Document]:
  """The documents of one mention file and its word file.

  Args:
    csv_path, conll_path: see the module docstring.
    persons: titles of people (coreference heuristic).
    titles: when given, mentions whose gold title (after redirects) is not in it are dropped.
    redirects: applied to gold titles and, of the mentions kept, to candidate titles.

  Returns:
    Documents in the order of the mention file, each with its mentions in order.
  """
  redirects = redirects or {}
  by_document = _read_mentions(csv_path)
  words, spans = _read_words(conll_path)
  documents = []
  for doc_id, mentions in by_document.items():
    if doc_id in EXCLUDED_DOCUMENTS:
      continue
    mentions = _with_coreference(mentions, persons)
    name = doc_id.split()[0]
    if name not in words:
      raise DataError(csv_path, None, f"document {doc_id!r} has no `-DOCSTART- ({name}` in "
                      f"{conll_path}")
    _align(mentions, spans[name], words[name], csv_path, doc_id)
    kept = []
    for mention in mentions:
      mention.title = redirects.get(mention.title, mention.title)
      if titles is not None and mention.title not in titles:
        continue  # out of the knowledge base: not scored, as the reference
      for candidate in mention.candidates:
        candidate.title = redirects.get(candidate.title, candidate.title)
      kept.append(mention)
    documents.append(Document(doc_id, words[name], kept))
  return documents


# ---- the two files --------------------------------------------------------------------------


def _read_mentions(path) -> dict[str, list[Mention]]:
  """`document id -> mentions` (word spans not yet known: start = end = -1)."""
  by_document: dict[str, list[Mention]] = collections.defaultdict(list)
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      items = line.strip().split("\t")
      if items == [""]:
        continue
      if len(items) < 8 or items[5] != "CANDIDATES" or items[-2] != "GT:":
        raise DataError(path, number, "expected `doc<TAB>doc<TAB>mention<TAB>left<TAB>right"
                        "<TAB>CANDIDATES<TAB>candidates...<TAB>GT:<TAB>gold`")
      candidates = []
      if items[6] != "EMPTYCAND":
        for field in items[6:-2]:
          parts = field.split(",")
          if len(parts) < 2:
            raise DataError(path, number, f"candidate {field!r} is not `wikiid,prior,title`")
          try:
            prior = float(parts[1])
          except ValueError:
            raise DataError(path, number, f"candidate {field!r}: prior {parts[1]!r} is not a "
                            "number") from None
          title = ",".join(parts[2:])
          if title:
            candidates.append(Candidate(title, prior))
        candidates.sort(key=lambda c: c.prior, reverse=True)
      gold = items[-1].split(",")
      title = ",".join(gold[2:] if gold[0] == "-1" else gold[3:])
      if not title:
        continue  # no referent entity: not used, as the reference
      by_document[items[0]].append(
          Mention(items[2], title.replace("&amp;", "&"), -1, -1, candidates))
  return by_document


def _read_words(path) -> tuple[dict[str, list[str]], dict[str, list[list[int]]]]:
  """`document name -> words` and `-> mention word spans [start, end)`."""
  words: dict[str, list[str]] = collections.defaultdict(list)
  spans: dict[str, list[list[int]]] = collections.defaultdict(list)
  name = None
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      line = line.strip()
      if line.startswith("-DOCSTART-"):
        fields = line.split()
        if len(fields) < 2:
          raise DataError(path, number, "expected `-DOCSTART- (<document id>`")
        name = fields[1][1:]
        words[name]  # pylint: disable=pointless-statement  (a document may have no words)
        continue
      if name is None:
        raise DataError(path, number, "a word before the first -DOCSTART- line")
      items = line.split("\t")
      if len(items) >= 6:
        if items[1] == "B":
          start = len(words[name])
          spans[name].append([start, start + 1])
        elif items[1] == "I" and spans[name]:
          spans[name][-1][1] += 1  # the reference extends the last mention, wherever it is
        else:
          raise DataError(path, number, f"tag {items[1]!r}: a mention word needs B, or I after "
                          "a B")
      words[name].append(items[0])
  return dict(words), dict(spans)


def _align(mentions: list[Mention], spans: list[list[int]], words: list[str], path,
           doc_id: str) -> None:
  """Word spans of the mentions: each the next marked span whose words, lowercased and without
  non-word characters, equal the mention's text (marked spans the mention file skipped, e.g.
  mentions without gold, are passed over)."""
  k = 0
  for mention in mentions:
    key = _NON_WORD.sub("", mention.text.lower())
    while True:
      if k == len(spans):
        # (The reference fails with an IndexError here.)
        raise DataError(path, None, f"document {doc_id!r}: mention {mention.text!r} matches no "
                        "remaining marked span of its word file")
      start, end = spans[k]
      k += 1
      if _NON_WORD.sub("", " ".join(words[start:end]).lower()) == key:
        mention.start, mention.end = start, end
        break


def _with_coreference(mentions: list[Mention], persons: AbstractSet[str]) -> list[Mention]:
  """Each mention that is a word-bounded part of other mentions of people takes the average
  of their candidate priors (computed from the original candidates of every mention)."""
  original = [(m.text.lower(), list(m.candidates)) for m in mentions]
  for mention in mentions:
    text = mention.text.lower()
    sources = [cands for other, cands in original
               if cands and cands[0].title in persons and other != text
               and _contains_word_bounded(other, text)]
    if not sources:
      continue
    priors: dict[str, float] = {}
    for cands in sources:
      for c in cands:
        priors[c.title] = priors.get(c.title, 0.0) + c.prior
    merged = [Candidate(title, prior / len(sources)) for title, prior in priors.items()]
    mention.candidates = sorted(merged, key=lambda c: c.prior, reverse=True)
  # Every mention gets candidate objects of its own: redirects rewrite them in place later.
  for mention in mentions:
    mention.candidates = [Candidate(c.title, c.prior) for c in mention.candidates]
  return mentions


def _contains_word_bounded(text: str, part: str) -> bool:
  """Whether the first occurrence of `part` in `text` is bounded by spaces or the ends (the
  reference looks at the first occurrence only)."""
  start = text.find(part)
  if start < 0:
    return False
  end = start + len(part)
  return (start == 0 or text[start - 1] == " ") and (end == len(text) or text[end] == " ")


def _existing(path) -> Path:
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such file")
  return path
