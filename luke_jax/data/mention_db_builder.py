"""A mention database (`luke_jax.data.mention_db`) from a Wikipedia dump.

What counts, following the reference's `MentionDB.build_from_wikipedia`
(studio-ousia/luke, examples/utils/wiki_entity_linker/mention_db.py), with the additions
marked (+):

* **Anchors.** Every internal link of every article counts one link from its anchor text's
  name (`normalize_mention`) to its target title resolved through the dump's redirects.
  Anchors longer than `max_mention_length` tokens, or without any token, are skipped, and so
  are targets in another namespace (`Category:`, `Wikipedia:`, `Template:`..., the namespaces
  of the dump's own pages and MediaWiki's canonical ones) or another wiki (`wikt:`...).
* (+) **Titles** (`include_titles`): each article title counts one link to itself, and, when
  it ends in a parenthesised qualifier ("Mercury (planet)"), so does the title without it
  ("Mercury"). Disambiguation pages (title ending in "(disambiguation)", or a
  `{{disambiguation}}`-family template) are not counted.
* (+) **Redirects** (`include_redirects`): each redirect title, and its form without a
  qualifier, counts one link to the redirect's final target, unless that is a disambiguation
  page or lies in another namespace.
* **Cuts.** A name's `total_link_count` is the sum over all its targets; its candidates are
  the `max_candidates` most linked targets (ties: by title), those with at least
  `min_link_count` links. `prior_prob = link_count / total_link_count`, so priors sum to 1
  over a name's targets before the cut.
* **Link probability.** With `min_link_prob > 0` a second pass over the dump counts, for each
  name, the pages that mention it: whose text holds its tokens as an n-gram (inside a link or
  not, within one paragraph), (+) or that link it, or (+) whose own title or redirects give
  it (when those are counted). Names with `min(1, total_link_count / doc_count)` below
  `min_link_prob` are dropped (the reference's filter). With the (+) rules a name from an
  anchor or a title is mentioned by at least one page; one that no page mentions (a redirect
  to a page missing from the dump, in no text) is dropped, as the reference drops names with
  no doc count. `min_link_prob=0` skips that pass and stores `doc_count` 0.
* **Held-out pages** (`exclude_titles`): their text is not read in either pass (neither their
  anchors nor their words count); their titles and the redirects to them still count as
  names, as knowledge-base facts rather than annotations.

Memory: a name, a title and a redirect are each stored once as Python strings, a (name,
target) pair as one uint64 key in numpy arrays merged every few million anchors. For English
Wikipedia (~15M names, ~7M link targets, ~10M redirects, ~20M distinct pairs) that is an
estimated 6-8 GB in the parent process (not measured here). The second pass's workers
memory-map the sorted name hashes from a scratch directory next to the output.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import multiprocessing
import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator

import numpy as np
from absl import logging

from luke_jax.data import mention_db, mention_names
from luke_jax.data.entity_vocab_builder import eta
from luke_jax.data.wikipedia import (DumpStats, RawPage, check_complete, iter_raw_pages,
                                     normalize_title, parse_page, resolve)

# MediaWiki's canonical namespace names (and aliases) and the Wikimedia interwiki prefixes
# whose links leave the article namespace; the dump's own namespaces are added as read.
_CANONICAL_NAMESPACES = frozenset(s.casefold() for s in (
    "Media", "Special", "Talk", "User", "User talk", "Wikipedia", "Wikipedia talk", "Project",
    "Project talk", "WP", "WT", "File", "File talk", "Image", "Image talk", "MediaWiki",
    "MediaWiki talk", "Template", "Template talk", "Help", "Help talk", "Category",
    "Category talk", "Portal", "Portal talk", "Draft", "Draft talk", "TimedText",
    "TimedText talk", "Module", "Module talk", "Book", "Book talk", "Education Program",
    "Education Program talk", "Gadget", "Gadget talk", "Gadget definition",
    "Gadget definition talk", "Topic", "MOS",
    "wikt", "wiktionary", "s", "wikisource", "q", "wikiquote", "b", "wikibooks", "n",
    "wikinews", "v", "wikiversity", "voy", "wikivoyage", "commons", "c", "meta", "m", "mw",
    "species", "d", "wikidata", "wmf", "foundation", "phab", "w", "metawikimedia",
    "mediawikiwiki", "wikispecies", "wikimedia", "outreach", "incubator"))
_QUALIFIER = re.compile(r"^(.+?) \([^()]*\)$")
_DISAMBIGUATION_TITLE = re.compile(r"\(disambiguation\)$", re.IGNORECASE)
_DISAMBIGUATION_TEMPLATE = re.compile(
    r"\{\{\s*(?:[\w ]*\s)?(?:disambiguation|disambig|disamb|dab|hndis|geodis|numberdis)"
    r"\s*(?:\||\}\})", re.IGNORECASE)
_MERGE_EVERY = 4_000_000  # buffered (name, target) keys before a numpy merge


@dataclasses.dataclass
class BuildSummary:
  """What a build read and wrote."""
  path: Path
  stats: DumpStats  # the first pass
  articles: int = 0
  redirects: int = 0
  other_namespaces: int = 0
  excluded: int = 0  # articles of `exclude_titles` found in the dump
  anchors: int = 0  # anchors read (at most `max_mention_length` tokens), any namespace
  names: int = 0
  candidates: int = 0
  titles: int = 0
  seconds: float = 0.0
  partial: str | None = None


# -- names of titles -------------------------------------------------------------------------
def title_names(title: str) -> set[str]:
  """The names a title (or redirect title) gives: itself, and without its qualifier."""
  names = {mention_names.normalize_mention(title)}
  match = _QUALIFIER.match(title)
  if match:
    names.add(mention_names.normalize_mention(match.group(1)))
  names.discard("")
  return names


def is_disambiguation(title: str, wikitext: str) -> bool:
  return bool(_DISAMBIGUATION_TITLE.search(title) or _DISAMBIGUATION_TEMPLATE.search(wikitext))


def _length(name: str) -> int:
  return name.count(" ") + 1 if name else 0


# -- workers ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Anchors:
  title: str  # normalised
  disambiguation: bool
  pairs: list[tuple[str, str]] | None  # (name, raw target) per anchor; None: page failed
  error: str = ""


def _anchors(raw: RawPage, max_length: int) -> _Anchors:
  """Runs in the workers: the anchors of an article, failures returned, not raised."""
  title = normalize_title(raw.title)
  disambiguation = is_disambiguation(title, raw.text)  # here: it reads the whole wikitext
  try:
    page, _ = parse_page(raw)
  except Exception as e:  # noqa: BLE001 - one bad page must not end the build
    return _Anchors(title, disambiguation, None, f"page {raw.title!r}: {type(e).__name__}: {e}")
  pairs = []
  for paragraph in page.paragraphs:
    for link in paragraph.links:
      name = mention_names.normalize_mention(paragraph.text[link.start:link.end])
      if 0 < _length(name) <= max_length:
        pairs.append((name, link.title))
  return _Anchors(title, disambiguation, pairs)


_SCRATCH = ("names", "prefixes", "redirect_targets", "redirect_names")


@functools.lru_cache(maxsize=2)
def _scratch(directory: str) -> dict[str, np.ndarray]:
  """The second pass's lookup tables, memory-mapped once per worker."""
  return {name: np.load(os.path.join(directory, f"{name}.npy"), mmap_mode="r")
          for name in _SCRATCH}


@dataclasses.dataclass(frozen=True)
class _DocTask:
  raw: RawPage
  excluded: bool
  scratch: str
  max_length: int
  include_titles: bool


def _mentioned(task: _DocTask) -> tuple[np.ndarray | None, str]:
  """Runs in the workers: indices of the names a page mentions (see the module docstring)."""
  tables = _scratch(task.scratch)
  found = []
  if not task.excluded:
    try:
      page, _ = parse_page(task.raw)
    except Exception as e:  # noqa: BLE001
      return None, f"page {task.raw.title!r}: {type(e).__name__}: {e}"
    words, paragraph_ids, anchors = [], [], []
    for i, paragraph in enumerate(page.paragraphs):
      tokens = mention_names.words(paragraph.text)
      words += tokens
      paragraph_ids += [i] * len(tokens)
      anchors += [mention_names.normalize_mention(paragraph.text[link.start:link.end])
                  for link in paragraph.links]
    found.append(_text_names(mention_names.token_hashes(words), np.array(paragraph_ids, np.int64),
                             tables["prefixes"], tables["names"], task.max_length))
    found.append(_lookup(tables["names"], mention_names.name_hashes([a for a in anchors if a])))
  if task.include_titles:
    own = mention_names.name_hashes(sorted(title_names(normalize_title(task.raw.title))))
    found.append(_lookup(tables["names"], own))
  # Redirects to this page: their names are rows first:last of the redirect tables.
  key = mention_names.string_hashes([normalize_title(task.raw.title)])
  first, last = (int(np.searchsorted(tables["redirect_targets"], key, side=side)[0])
                 for side in ("left", "right"))
  found.append(np.asarray(tables["redirect_names"][first:last]))
  return np.unique(np.concatenate(found)).astype(np.int32), ""


def _text_names(tokens: np.ndarray, paragraph: np.ndarray, prefixes: np.ndarray,
                names: np.ndarray, max_length: int) -> np.ndarray:
  """Indices into `names` of the token n-grams of a page that are names.

  An n-gram is extended only while it is a prefix of some name (`prefixes`, which holds the
  names too) and within one paragraph, as the reference's trie walk does: most positions stop
  after one or two tokens instead of trying all `max_length`.
  """
  starts = np.arange(len(tokens))
  state = tokens
  found = []
  for n in range(1, max_length + 1):
    if n > 1:
      last = starts + n - 1
      inside = last < len(tokens)
      starts, state, last = starts[inside], state[inside], last[inside]
      same = paragraph[last] == paragraph[starts]
      starts, state, last = starts[same], state[same], last[same]
      state = mention_names.fold(state, tokens[last])
    if not len(starts):
      break
    hashes = mention_names.finish(state, np.full(len(starts), n, np.int64))
    alive = _member(prefixes, hashes)
    starts, state = starts[alive], state[alive]
    found.append(_lookup(names, hashes[alive]))
  return np.concatenate(found) if found else np.zeros(0, np.int64)


def _member(table: np.ndarray, hashes: np.ndarray) -> np.ndarray:
  """[len(hashes)] bool: which hashes the sorted `table` holds."""
  where = np.minimum(np.searchsorted(table, hashes), len(table) - 1)
  return table[where] == hashes


def _lookup(table: np.ndarray, hashes: np.ndarray) -> np.ndarray:
  """Unique indices into the sorted `table` of the `hashes` it holds (unverified: a 64-bit
  collision counts a page for the wrong name, about once in 1e8 pages)."""
  where = np.searchsorted(table, hashes)
  inside = where < len(table)
  where = where[inside]
  return np.unique(where[table[where] == hashes[inside]])


def _batches(items: Iterable, size: int) -> Iterator[list]:
  iterator = iter(items)
  while batch := list(itertools.islice(iterator, size)):
    yield batch


def _map(function: Callable, tasks: Iterable, workers: int, chunk_size: int) -> Iterator:
  """`map(function, tasks)` in order, over `workers` spawned processes when more than one."""
  if workers == 1:
    yield from map(function, tasks)
    return
  # Batches keep the parent from queueing the whole dump; two in flight keep workers busy.
  # spawn, not fork: callers may have started JAX's threads.
  with multiprocessing.get_context("spawn").Pool(workers) as pool:
    pending: collections.deque = collections.deque()
    for batch in _batches(tasks, workers * chunk_size * 4):
      pending.append(pool.map_async(function, batch, chunk_size))
      if len(pending) > 2:
        yield from pending.popleft().get()
    while pending:
      yield from pending.popleft().get()


# -- counting --------------------------------------------------------------------------------
class _PairCounts:
  """(name id, target id) -> links, as sorted unique uint64 keys and counts."""

  def __init__(self):
    self.keys = np.zeros(0, np.uint64)
    self.counts = np.zeros(0, np.int64)
    self._buffer: list[int] = []

  def add(self, name_id: int, target_id: int) -> None:
    self._buffer.append(name_id << 32 | target_id)
    if len(self._buffer) >= _MERGE_EVERY:
      self.merge()

  def merge(self) -> None:
    if not self._buffer:
      return
    keys = np.concatenate([self.keys, np.array(self._buffer, np.uint64)])
    counts = np.concatenate([self.counts, np.ones(len(self._buffer), np.int64)])
    self._buffer = []
    self.keys, inverse = np.unique(keys, return_inverse=True)
    self.counts = np.bincount(inverse, weights=counts, minlength=len(self.keys)).astype(np.int64)


class _Ids(dict):
  """String -> dense id, assigned in first-seen order."""

  def __missing__(self, key: str) -> int:
    value = self[key] = len(self)
    return value


def _other_namespace(title: str, prefixes: Collection[str]) -> bool:
  prefix, colon, _ = title.partition(":")
  return bool(colon) and prefix.strip().casefold() in prefixes


@dataclasses.dataclass
class _Dump:
  """What the first pass learns about the dump."""
  names: _Ids = dataclasses.field(default_factory=_Ids)
  targets: _Ids = dataclasses.field(default_factory=_Ids)  # link targets as written
  pairs: _PairCounts = dataclasses.field(default_factory=_PairCounts)
  articles: list[str] = dataclasses.field(default_factory=list)
  disambiguations: set[str] = dataclasses.field(default_factory=set)
  redirects: dict[str, str] = dataclasses.field(default_factory=dict)
  prefixes: set[str] = dataclasses.field(default_factory=lambda: set(_CANONICAL_NAMESPACES))

  def redirect_names(self, max_length: int) -> Iterator[tuple[str, str, str]]:
    """(name, target as written, final target) per counted redirect name."""
    for source, target in self.redirects.items():
      final = resolve(target, self.redirects)
      if final not in self.disambiguations and not _other_namespace(final, self.prefixes):
        for name in title_names(source):
          if _length(name) <= max_length:
            yield name, target, final


def _read_anchors(dump_path, summary: BuildSummary, excluded: set[str], max_length: int,
                  workers: int, chunk_size: int, log_every_s: float, passes: int) -> _Dump:
  """The first pass: anchors of the articles not excluded, titles, redirects, namespaces."""
  found = _Dump()
  stats = summary.stats
  dump = os.fspath(dump_path)

  def pages() -> Iterator[RawPage]:
    for raw in iter_raw_pages(dump_path, stats, namespaces=None):
      if raw.namespace != 0:
        summary.other_namespaces += 1
        prefix, colon, _ = raw.title.partition(":")
        if colon:
          found.prefixes.add(prefix.strip().casefold())
        continue
      title = normalize_title(raw.title)
      if raw.redirect is not None:
        summary.redirects += 1
        found.redirects[title] = raw.redirect
        continue
      summary.articles += 1
      found.articles.append(title)
      if title in excluded:
        summary.excluded += 1
        if is_disambiguation(title, raw.text):
          found.disambiguations.add(title)
        continue
      yield raw

  started = last_log = time.monotonic()
  task = functools.partial(_anchors, max_length=max_length)
  for result in _map(task, pages(), workers, chunk_size):
    if result.disambiguation:
      found.disambiguations.add(result.title)
    if result.pairs is None:
      stats.record_error(f"{dump}: {result.error}")
      logging.warning("%s: skipping %s", dump, result.error)
      continue
    for name, target in result.pairs:
      found.pairs.add(found.names[name], found.targets[target])
    summary.anchors += len(result.pairs)
    if time.monotonic() - last_log >= log_every_s:
      last_log = time.monotonic()
      logging.info("pass 1/%d: %d pages read, %d anchors, %d names, %s", passes, stats.pages,
                   summary.anchors, len(found.names), eta(stats, last_log - started))
  return found


@dataclasses.dataclass
class _Candidates:
  """Candidate rows grouped by name id (ascending), each name's by links, then title."""
  name_ids: np.ndarray  # [N] ids (into the first pass's names) of the names kept
  names: list[str]  # [N] those names
  total: np.ndarray  # [N] links of each name, before the cuts
  row_name: np.ndarray  # [C] name id of each row
  row_title: np.ndarray  # [C] index into `titles`
  row_count: np.ndarray  # [C] links
  titles: list[str]  # final targets, sorted


def _cut(found: _Dump, max_candidates: int, min_link_count: int) -> _Candidates:
  """Targets resolved and filtered, counts summed per (name, title), the top-k and count cut."""
  resolved = [resolve(t, found.redirects) for t in found.targets]
  titles = sorted({t for t in resolved if t and not _other_namespace(t, found.prefixes)})
  title_id = {t: i for i, t in enumerate(titles)}
  target_map = np.array([title_id.get(t, -1) for t in resolved], np.int64)
  del resolved, title_id
  pairs = found.pairs
  key_name = (pairs.keys >> np.uint64(32)).astype(np.int64)
  key_title = target_map[(pairs.keys & np.uint64(0xFFFFFFFF)).astype(np.int64)]
  keep = key_title >= 0
  keys, inverse = np.unique(key_name[keep] << 32 | key_title[keep], return_inverse=True)
  counts = np.bincount(inverse, weights=pairs.counts[keep], minlength=len(keys)).astype(np.int64)
  key_name, key_title = keys >> 32, keys & 0xFFFFFFFF
  order = np.lexsort((key_title, -counts, key_name))
  key_name, key_title, counts = key_name[order], key_title[order], counts[order]
  group_start = np.flatnonzero(np.r_[True, key_name[1:] != key_name[:-1]]) if len(keys) else (
      np.zeros(0, np.int64))
  group_size = np.diff(np.r_[group_start, len(key_name)])
  rank = np.arange(len(key_name)) - np.repeat(group_start, group_size)
  total = np.zeros(len(found.names), np.int64)
  if len(counts):
    total[key_name[group_start]] = np.add.reduceat(counts, group_start)
  chosen = (rank < max_candidates) & (counts >= min_link_count)
  key_name, key_title, counts = key_name[chosen], key_title[chosen], counts[chosen]
  name_ids = np.unique(key_name)
  all_names = list(found.names)
  return _Candidates(name_ids, [all_names[i] for i in name_ids], total[name_ids], key_name,
                     key_title, counts, titles)


def _keep_names(candidates: _Candidates, good: np.ndarray) -> _Candidates:
  name_ids = candidates.name_ids[good]
  rows = np.isin(candidates.row_name, name_ids)
  return _Candidates(name_ids, [n for n, g in zip(candidates.names, good) if g],
                     candidates.total[good], candidates.row_name[rows],
                     candidates.row_title[rows], candidates.row_count[rows], candidates.titles)


def build(dump_path: str | os.PathLike, output: str | os.PathLike, *, min_link_count: int = 1,
          max_candidates: int = 100, min_link_prob: float = 0.01, max_mention_length: int = 20,
          include_titles: bool = True, include_redirects: bool = True,
          exclude_titles: Collection[str] = (), workers: int = 1, chunk_size: int = 16,
          overwrite: bool = False, allow_truncated_dump: bool = False,
          log_every_s: float = 30.0) -> BuildSummary:
  """Builds a mention database from a dump (see the module docstring for the rules).

  Args:
    dump_path: a MediaWiki XML dump (see `wikipedia.iter_raw_pages`).
    output: the database directory to create.
    min_link_count: fewest links a candidate needs.
    max_candidates: candidates kept per name (the most linked).
    min_link_prob: fewest links per mentioning page a name needs; 0 skips the doc counts.
    max_mention_length: longest name, in tokens.
    include_titles: count article titles as names of their article.
    include_redirects: count redirect titles as names of their target.
    exclude_titles: articles whose text is not read (held-out pages); normalised here.
    workers: processes converting wikitext; 1 converts in this process, 0 uses every CPU.
    chunk_size: pages per task sent to a worker.
    overwrite: replace an existing database at `output`.
    allow_truncated_dump: build from a truncated or corrupt dump up to the damage
      (`meta.json`'s `partial` says so) instead of raising.
    log_every_s: seconds between progress lines.

  Returns:
    What was read and written.

  Raises:
    wikipedia.DumpError: an unreadable dump, or a truncated one without
      `allow_truncated_dump` (nothing is written).
    FileExistsError: `output` exists (see `mention_db.check_output`).
  """
  if max_candidates < 1 or max_mention_length < 1 or min_link_count < 0:
    raise ValueError("max_candidates and max_mention_length must be >= 1, min_link_count >= 0")
  if not 0.0 <= min_link_prob <= 1.0:
    raise ValueError(f"min_link_prob must be in [0, 1], got {min_link_prob}")
  mention_db.check_output(output, overwrite)  # before hours of work, not after
  started = time.monotonic()
  workers = workers or os.cpu_count() or 1
  excluded = {normalize_title(t) for t in exclude_titles} - {""}
  summary = BuildSummary(Path(output), DumpStats())
  found = _read_anchors(dump_path, summary, excluded, max_mention_length, workers, chunk_size,
                        log_every_s, 2 if min_link_prob > 0 else 1)
  summary.partial = check_complete(summary.stats, dump_path, allow_truncated_dump)

  if include_titles:
    for title in found.articles:
      if title not in found.disambiguations:
        for name in title_names(title):
          if _length(name) <= max_mention_length:
            found.pairs.add(found.names[name], found.targets[title])
  if include_redirects:
    for name, target, _ in found.redirect_names(max_mention_length):
      found.pairs.add(found.names[name], found.targets[target])
  found.pairs.merge()
  candidates = _cut(found, max_candidates, min_link_count)
  del found.names, found.targets, found.pairs  # the largest tables, no longer needed

  doc_count = np.zeros(len(candidates.names), np.int64)
  if min_link_prob > 0 and candidates.names:
    redirect_names = (list(found.redirect_names(max_mention_length)) if include_redirects
                      else [])
    doc_count = _count_docs(dump_path, output, candidates.names, redirect_names, excluded,
                            max_mention_length, include_titles, allow_truncated_dump, workers,
                            chunk_size, log_every_s)
    # The reference's filter; names no page mentions (a redirect to a page missing from the
    # dump, in no text) have no link probability and go too, as in the reference.
    good = (doc_count > 0) & (
        np.minimum(1.0, candidates.total / np.maximum(doc_count, 1)) >= min_link_prob)
    candidates, doc_count = _keep_names(candidates, good), doc_count[good]

  used_titles, row_title = np.unique(candidates.row_title, return_inverse=True)
  sizes = np.bincount(np.searchsorted(candidates.name_ids, candidates.row_name),
                      minlength=len(candidates.name_ids))
  offsets = np.zeros(len(sizes) + 1, np.int64)
  np.cumsum(sizes, out=offsets[1:])
  stats = summary.stats
  meta = {
      "source": os.path.abspath(os.fspath(dump_path)),
      "partial": summary.partial,
      "doc_counts": bool(min_link_prob > 0),
      "options": dict(min_link_count=min_link_count, max_candidates=max_candidates,
                      min_link_prob=min_link_prob, max_mention_length=max_mention_length,
                      include_titles=include_titles, include_redirects=include_redirects,
                      excluded_titles=len(excluded)),
      "stats": dict(pages=stats.pages, articles=summary.articles, redirects=summary.redirects,
                    other_namespaces=summary.other_namespaces, excluded=summary.excluded,
                    anchors=summary.anchors, errors=stats.errors),
  }
  mention_db.write(output, candidates.names, candidates.total, doc_count, offsets, row_title,
                   candidates.row_count, [candidates.titles[i] for i in used_titles], meta,
                   overwrite)
  summary.names, summary.candidates = len(candidates.names), len(candidates.row_count)
  summary.titles = len(used_titles)
  summary.seconds = time.monotonic() - started
  logging.info("%s: %d names, %d candidates, %d titles in %.1f s", output, summary.names,
               summary.candidates, summary.titles, summary.seconds)
  return summary


def _count_docs(dump_path, output, names: list[str],
                redirect_names: list[tuple[str, str, str]], excluded: set[str],
                max_length: int, include_titles: bool, allow_truncated_dump: bool, workers: int,
                chunk_size: int, log_every_s: float) -> np.ndarray:
  """The second pass: [len(names)] pages mentioning each name (see the module docstring).

  The workers memory-map the tables they look names up in from a scratch directory next to
  `output`: the sorted name hashes, the hashes of every name prefix (to stop n-grams early)
  and, keyed by the hash of their target's title, the redirect names.
  """
  output = Path(output)
  scratch = output.with_name(f".{output.name}.scratch-{os.getpid()}")
  shutil.rmtree(scratch, ignore_errors=True)  # our own leftover from a crashed build
  scratch.mkdir(parents=True)
  try:
    hashes = mention_names.name_hashes(names)
    order = np.argsort(hashes, kind="stable")
    table = hashes[order]
    np.save(scratch / "names.npy", table)
    np.save(scratch / "prefixes.npy", np.unique(mention_names.name_hashes(names, prefixes=True)))
    source_hashes = mention_names.name_hashes([name for name, _, _ in redirect_names])
    where = np.minimum(np.searchsorted(table, source_hashes), len(table) - 1)
    known = table[where] == source_hashes
    target_hashes = mention_names.string_hashes([final for _, _, final in redirect_names])[known]
    by_target = np.argsort(target_hashes, kind="stable")
    np.save(scratch / "redirect_targets.npy", target_hashes[by_target])
    np.save(scratch / "redirect_names.npy", where[known][by_target])

    stats = DumpStats()
    dump = os.fspath(dump_path)

    def tasks() -> Iterator[_DocTask]:
      for raw in iter_raw_pages(dump_path, stats):
        if raw.redirect is None:
          yield _DocTask(raw, normalize_title(raw.title) in excluded, str(scratch), max_length,
                         include_titles)

    counts = np.zeros(len(names), np.int64)  # by position in `table`
    seen: list[np.ndarray] = []
    started = last_log = time.monotonic()
    for indices, error in _map(_mentioned, tasks(), workers, chunk_size):
      if indices is None:
        logging.warning("%s: skipping %s", dump, error)
        continue
      seen.append(indices)
      if len(seen) >= 4096:
        counts += np.bincount(np.concatenate(seen), minlength=len(counts))
        seen = []
      if time.monotonic() - last_log >= log_every_s:
        last_log = time.monotonic()
        logging.info("pass 2/2: %d pages read, %s", stats.pages, eta(stats, last_log - started))
    if seen:
      counts += np.bincount(np.concatenate(seen), minlength=len(counts))
    check_complete(stats, dump_path, allow_truncated_dump)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  result = np.zeros(len(names), np.int64)
  result[order] = counts
  return result
