"""Entity disambiguation documents from Wikipedia pages: their links are the gold mentions.

A page's paragraphs become one document: words split as the raw-text pipelines split text
(`luke_jax.tokenization.words`, an empty word between paragraphs), every link whose anchor
starts and ends on word boundaries becomes a mention with its target (redirects resolved) as
gold, and the candidates come from a mention dictionary (`luke_jax.data.mention_db`) in prior
order. This is the standard "Wikipedia as ED data" setting (WNED-WIKI, Guo and Barbosa 2018,
is built the same way); held-out pages whose links did not feed the dictionary give an
evaluation set without leakage, and the other pages a training set.

The documents are written as JSON lines (`luke_jax.disambiguation.documents.write_jsonl`),
which the fine-tuning task and the evaluation CLI read besides the official format.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Collection, Sequence

from luke_jax.data import wikipedia
from luke_jax.data.mention_db import MentionDB
from luke_jax.disambiguation.documents import Candidate, Document, Mention
from luke_jax.tokenization.words import split_words


@dataclasses.dataclass
class AnchorStats:
  """What happened to the links of the pages read."""
  pages: int = 0
  links: int = 0
  mentions: int = 0
  off_word_boundaries: int = 0  # "[[dog]]s": the anchor ends inside a word; skipped
  without_candidates: int = 0  # kept (they count against recall, as in the official sets)
  gold_in_candidates: int = 0


def page_document(page: wikipedia.Page, mention_db: MentionDB, redirects: dict[str, str],
                  max_candidates: int = 30, stats: AnchorStats | None = None) -> Document:
  """The document of one article: its words and one mention per word-aligned link."""
  stats = stats if stats is not None else AnchorStats()
  stats.pages += 1
  words: list[str] = []
  mentions: list[Mention] = []
  for paragraph in page.paragraphs:
    split = split_words(paragraph.text)
    if not split:
      continue
    if words:
      words.append("")  # paragraph break (an empty word, as the official word files have)
    offset = len(words)
    starts = {w.start: i for i, w in enumerate(split)}
    ends = {w.end: i for i, w in enumerate(split)}
    words.extend(w.text for w in split)
    for link in sorted(paragraph.links, key=lambda l: (l.start, l.end)):
      stats.links += 1
      first, last = starts.get(link.start), ends.get(link.end)
      if first is None or last is None or last < first:
        stats.off_word_boundaries += 1
        continue
      if mentions and mentions[-1].end > offset + first:
        continue  # nested links do not occur in wikitext; never overlap two mentions
      text = paragraph.text[link.start:link.end]
      title = wikipedia.resolve(link.title, redirects)
      candidates = [Candidate(c.title, c.prior_prob)
                    for c in mention_db.query(text, max_candidates)]
      stats.mentions += 1
      stats.without_candidates += not candidates
      stats.gold_in_candidates += any(c.title == title for c in candidates)
      mentions.append(Mention(text, title, offset + first, offset + last + 1, candidates))
  return Document(page.title, words, mentions)


def documents_from_dump(dump: str | os.PathLike, mention_db: MentionDB, *,
                        titles: Collection[str] | None = None,
                        exclude_titles: Collection[str] = (), max_candidates: int = 30,
                        stats: AnchorStats | None = None) -> list[Document]:
  """One document per article of `dump` (only `titles` when given, never `exclude_titles`)
  that holds at least one mention."""
  redirects = wikipedia.read_redirects(dump)
  exclude = frozenset(exclude_titles)
  documents = []
  for page in wikipedia.iter_pages(dump):
    if page.is_redirect or page.title in exclude or (titles is not None
                                                      and page.title not in titles):
      continue
    document = page_document(page, mention_db, redirects, max_candidates, stats)
    if document.mentions:
      documents.append(document)
  return documents


def informative_paragraphs(documents: Sequence[Document]) -> list[Document]:
  """The paragraphs (runs of words between empty words) that hold a mention with two or more
  candidates, its gold among them, each as a document of its own (`<id>#<paragraph>`).

  The training signal of entity disambiguation: the candidate cross entropy of a mention with
  one candidate is zero, so on Wikipedia's links (most of which are unambiguous) training on
  these paragraphs alone gives the same gradient signal for a fraction of the compute.
  """
  out = []
  for document in documents:
    breaks = [i for i, word in enumerate(document.words) if word == ""]
    for index, (start, end) in enumerate(zip([0] + [b + 1 for b in breaks],
                                             breaks + [len(document.words)])):
      mentions = [m for m in document.mentions if start <= m.start and m.end <= end]
      if any(len(m.candidates) > 1 and any(c.title == m.title for c in m.candidates)
             for m in mentions):
        out.append(Document(f"{document.id}#{index}", document.words[start:end],
                            [dataclasses.replace(m, start=m.start - start, end=m.end - start)
                             for m in mentions]))
  return out


def in_kb_prior_accuracy(documents: Sequence[Document]) -> dict[str, float]:
  """The prior-only baseline (the most probable candidate) in the metric's terms: precision
  over mentions with candidates, recall over all mentions, and the in-KB accuracy over
  mentions whose gold is among their candidates."""
  mentions = [m for d in documents for m in d.mentions]
  with_candidates = [m for m in mentions if m.candidates]
  in_kb = [m for m in with_candidates if any(c.title == m.title for c in m.candidates)]
  correct = sum(m.candidates[0].title == m.title for m in with_candidates)
  return {"precision": correct / max(len(with_candidates), 1),
          "recall": correct / max(len(mentions), 1),
          "in_kb_accuracy": correct / max(len(in_kb), 1),
          "mentions": len(mentions), "in_kb_mentions": len(in_kb)}
