"""Entity vocabulary from a Wikipedia dump (reference C.2, `luke build-entity-vocab`).

Every internal link of every article is counted under its target title resolved through the
dump's redirects. The vocabulary is `[PAD]`=0, `[UNK]`=1, `[MASK]`=2 (count 0), then the
white-listed titles that are linked at least once (in file order), then the most linked
titles that are real articles (not redirects, not `Category:` pages) by count, ties broken by
title so that the result does not depend on the order of the dump or of the workers, until
`vocab_size` entries (specials included). Titles linked fewer than `min_count` times are left
out; `[MASK2]`, when asked for, comes last and is not counted in `vocab_size`.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import multiprocessing
import os
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from absl import logging

from luke_jax.data.wikipedia import (DumpStats, RawPage, check_complete, iter_raw_pages,
                                     normalize_title, parse_page, resolve)
from luke_jax.tokenization.entity_vocab import Entity, EntityVocab

SPECIALS = ("[PAD]", "[UNK]", "[MASK]")
MASK2 = "[MASK2]"


@dataclasses.dataclass
class LinkCounts:
  """What one pass over a dump tells about its links."""
  counts: collections.Counter  # resolved target title -> number of links
  articles: set[str]  # titles of non-redirect pages
  redirects: dict[str, str]  # normalised source -> normalised target
  stats: DumpStats
  # For a dump that ended early and was accepted (`allow_truncated_dump`), the one-line
  # "PARTIAL: ..." notice of `wikipedia.check_complete`; None for a dump read to its end.
  partial: str | None = None


@dataclasses.dataclass(frozen=True)
class _PageResult:
  links: list[str] | None  # None when the page failed to convert
  paragraphs: int = 0
  dropped: int = 0
  error: str = ""


def _page_links(raw: RawPage) -> _PageResult:
  """Runs in the workers: link targets of one article, failures returned, not raised."""
  try:
    page, dropped = parse_page(raw)
  except Exception as e:  # noqa: BLE001 - one bad page must not end the count
    return _PageResult(None, error=f"page {raw.title!r}: {type(e).__name__}: {e}")
  links = [link.title for paragraph in page.paragraphs for link in paragraph.links]
  return _PageResult(links, len(page.paragraphs), dropped)


def _batches(items: Iterable, size: int) -> Iterator[list]:
  iterator = iter(items)
  while batch := list(itertools.islice(iterator, size)):
    yield batch


def eta(stats: DumpStats, elapsed: float) -> str:
  """Time left, from the share of the compressed dump read so far."""
  if not stats.bytes_read or not stats.total_bytes:
    return "ETA unknown"
  left = elapsed * (stats.total_bytes / stats.bytes_read - 1)
  return f"{100 * stats.bytes_read / stats.total_bytes:.1f}% of the dump, ETA {left / 60:.1f} min"


def count_links(dump_path: str | os.PathLike, workers: int = 1, chunk_size: int = 16,
                log_every_s: float = 30.0, allow_truncated_dump: bool = False) -> LinkCounts:
  """Counts the links of every article of a dump, targets resolved through its redirects.

  Args:
    dump_path: a MediaWiki XML dump (see `wikipedia.iter_pages`).
    workers: processes converting wikitext; 1 converts in this process, 0 uses every CPU.
    chunk_size: pages per task sent to a worker.
    log_every_s: seconds between progress lines.
    allow_truncated_dump: count the pages of a truncated or corrupt dump up to the damage
      (`LinkCounts.partial` then says so) instead of raising.

  Returns:
    The counts, article titles, redirects and reading statistics.

  Raises:
    wikipedia.DumpError: no page could be read from the dump, or it ends early (truncated or
      corrupt) and `allow_truncated_dump` is False.
  """
  stats = DumpStats()
  raw_counts: collections.Counter = collections.Counter()
  articles: set[str] = set()
  redirects: dict[str, str] = {}
  workers = workers or os.cpu_count() or 1

  def article_pages() -> Iterator[RawPage]:
    for raw in iter_raw_pages(dump_path, stats):
      if raw.redirect is not None:
        redirects[normalize_title(raw.title)] = raw.redirect
      else:
        yield raw

  started = last_log = time.monotonic()

  def add(raw_titles: Sequence[str], results: Iterable[_PageResult]) -> None:
    nonlocal last_log
    for title, result in zip(raw_titles, results):
      if result.links is None:
        stats.record_error(f"{os.fspath(dump_path)}: {result.error}")
        logging.warning("%s: skipping %s", os.fspath(dump_path), result.error)
        continue
      articles.add(normalize_title(title))
      stats.articles += 1
      stats.paragraphs += result.paragraphs
      stats.dropped_paragraphs += result.dropped
      stats.links += len(result.links)
      stats.empty += result.paragraphs == 0
      raw_counts.update(result.links)
    now = time.monotonic()
    if now - last_log >= log_every_s:
      last_log = now
      logging.info("%d pages read (%.0f pages/s), %d links, %s", stats.pages,
                   stats.pages / (now - started), stats.links, eta(stats, now - started))

  if workers == 1:
    for batch in _batches(article_pages(), 256):
      add([raw.title for raw in batch], map(_page_links, batch))
  else:
    # Batches keep the parent from reading the whole dump into the task queue; two in flight
    # keep the workers busy while the parent reads the next one.
    batch_size = workers * chunk_size * 4
    # spawn, not fork: callers (the trainer, tests) may have started JAX's threads already.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      pending: collections.deque = collections.deque()
      for batch in _batches(article_pages(), batch_size):
        pending.append(([raw.title for raw in batch],
                        pool.map_async(_page_links, batch, chunk_size)))
        if len(pending) > 2:
          titles, result = pending.popleft()
          add(titles, result.get())
      while pending:
        titles, result = pending.popleft()
        add(titles, result.get())

  counts: collections.Counter = collections.Counter()
  for title, count in raw_counts.items():
    counts[resolve(title, redirects)] += count
  elapsed = max(time.monotonic() - started, 1e-9)
  logging.info("%s: %d pages in %.1f s (%.0f pages/s)", os.fspath(dump_path), stats.pages,
               elapsed, stats.pages / elapsed)
  partial = check_complete(stats, dump_path, allow_truncated_dump)
  return LinkCounts(counts, articles, redirects, stats, partial)


def select_titles(link_counts: LinkCounts, vocab_size: int, min_count: int = 1,
                  white_list: Sequence[str] = (), white_list_only: bool = False
                  ) -> list[tuple[str, int]]:
  """The `(title, count)` entries after the specials, in id order.

  Args:
    link_counts: the result of `count_links`.
    vocab_size: entries wanted, the three specials included.
    min_count: fewest links a title needs.
    white_list: titles to take first (normalised and resolved through redirects here); one
      is kept when linked at least once, as in the reference, even if not an article.
    white_list_only: take no other title.

  Returns:
    At most `vocab_size - 3` titles with their link counts.
  """
  limit = max(vocab_size - len(SPECIALS), 0)
  counts = link_counts.counts
  chosen: dict[str, int] = {}
  for title in white_list:
    title = resolve(normalize_title(title), link_counts.redirects)
    if len(chosen) < limit and counts[title] >= max(min_count, 1) and title not in SPECIALS:
      chosen.setdefault(title, counts[title])
  if not white_list_only:
    ranked = sorted(((title, count) for title, count in counts.items()
                     if count >= min_count and title in link_counts.articles
                     and not title.startswith("Category:") and title not in chosen),
                    key=lambda item: (-item[1], item[0]))
    for title, count in ranked[:limit - len(chosen)]:
      chosen[title] = count
  return list(chosen.items())


def build_entity_vocab(link_counts: LinkCounts, vocab_size: int, min_count: int = 1,
                       language: str | None = None, white_list: Sequence[str] = (),
                       white_list_only: bool = False, include_mask2: bool = False,
                       source: str = "<built>") -> EntityVocab:
  """The entity vocabulary (see the module docstring); `language` is stored in every entry."""
  entries = [(name, 0) for name in SPECIALS]
  entries += select_titles(link_counts, vocab_size, min_count, white_list, white_list_only)
  if include_mask2:
    entries.append((MASK2, 0))
  return EntityVocab(((i, [Entity(name, language)], count)
                      for i, (name, count) in enumerate(entries)), source)


def save_atomic(vocab: EntityVocab, path: str | os.PathLike) -> Path:
  """Saves in the format the suffix names, through a temporary file renamed into place."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
  try:
    vocab.save(tmp)
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)
  return path
