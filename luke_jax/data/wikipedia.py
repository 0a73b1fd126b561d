"""Streaming reader of MediaWiki XML dumps: pages as plain-text paragraphs with entity links.

This replaces wikipedia2vec's `DumpDB` (reference C.1) without the intermediate database: the
dump (`*.xml.bz2`, multistream or not, `*.xml.gz` or plain `*.xml`; the compression is sniffed
from the first bytes) is parsed with `xml.etree.ElementTree.iterparse` and every finished
`<page>` is dropped from the tree, so memory stays flat whatever the dump size.

The wikitext of each article is converted by `luke_jax.data.wikitext` (see its docstring for
what is kept and dropped); `Link`, `Paragraph`, `SiteInfo`, `convert_wikitext`,
`parse_wikitext` and `normalize_title` are re-exported from here.

Bad input never crashes the stream in the middle:

* a page whose wikitext cannot be parsed is skipped and counted in `DumpStats.errors`;
* a dump that ends early (truncated `.bz2`, malformed XML) ends the stream: the error, naming
  the file and the last page read, is logged and counted in `DumpStats.errors`, and
  `DumpStats.truncated` is set; the pages read before it have been yielded;
* an input from which not a single page could be read (empty file, not XML, not a dump) raises
  `DumpError`, because that is a wrong argument rather than a damaged dump.

The reader itself never refuses a damaged dump; the tools that build something from one
(`build_entity_vocab`, `train_sentencepiece`, `build_pretraining_dataset`) call
`check_complete` once they have read it, which raises `DumpError` unless the user accepted a
partial dump with `--allow_truncated_dump`: an output built from half a dump must not look
like one built from all of it.
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import logging
import os
import re
import xml.etree.ElementTree as ET
from typing import BinaryIO, Collection, Iterator

# Link, Paragraph and parse_wikitext are only re-exported: callers import them from here.
from luke_jax.data.wikitext import (  # pylint: disable=unused-import
    Link, Paragraph, SiteInfo, convert_wikitext, normalize_title, parse_wikitext)

logger = logging.getLogger(__name__)

MAX_ERROR_EXAMPLES = 20
# The command-line flag (and keyword argument) of every tool that accepts a truncated dump.
ALLOW_TRUNCATED_FLAG = "--allow_truncated_dump"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_REDIRECT_TARGET = re.compile(r"\s*#[^\[\n]*\[\[([^\]|\n]*)")


class DumpError(ValueError):
  """The input is not a readable MediaWiki dump at all (no page could be read)."""


@dataclasses.dataclass
class Page:
  """A main-namespace article, or a redirect (`redirect` set, no paragraphs)."""
  page_id: int
  title: str
  namespace: int
  redirect: str | None
  paragraphs: list[Paragraph]

  @property
  def is_redirect(self) -> bool:
    return self.redirect is not None


@dataclasses.dataclass
class DumpStats:
  """Counters filled while a dump is read; pass one instance to accumulate over files."""
  pages: int = 0  # every <page> element
  articles: int = 0  # non-redirect pages yielded (including empty ones)
  redirects: int = 0  # redirect pages in the requested namespaces
  skipped_namespace: int = 0
  links: int = 0
  paragraphs: int = 0
  empty: int = 0  # articles without any paragraph left
  dropped_paragraphs: int = 0  # paragraphs dropped for leftover wikitext syntax
  errors: int = 0
  truncated: bool = False
  truncation: str = ""  # why the dump ended early ("EOFError: ..."), when `truncated`
  last_title: str | None = None
  error_examples: list[str] = dataclasses.field(default_factory=list)
  # Compressed bytes consumed and the file size: progress and ETA for streaming readers.
  bytes_read: int = 0
  total_bytes: int = 0

  def record_error(self, message: str) -> None:
    self.errors += 1
    if len(self.error_examples) < MAX_ERROR_EXAMPLES:
      self.error_examples.append(message)


@dataclasses.dataclass(frozen=True)
class RawPage:
  """A page as stored in the dump, wikitext not yet converted."""
  page_id: int
  title: str
  namespace: int
  redirect: str | None
  text: str
  site: SiteInfo


# -- redirects -------------------------------------------------------------------------------
def resolve(title: str, redirects: dict[str, str]) -> str:
  """Follows redirects from `title`; on a cycle, stops at the last title before it repeats."""
  seen = {title}
  while title in redirects:
    target = redirects[title]
    if target in seen:
      break
    seen.add(target)
    title = target
  return title


# -- XML -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _open_dump(path: str) -> Iterator[tuple[BinaryIO, BinaryIO]]:
  """(decompressed stream, underlying file); the file's position measures progress."""
  with open(path, "rb") as raw:
    magic = raw.read(3)
    raw.seek(0)
    if magic == b"BZh":
      with bz2.open(raw, "rb") as f:  # reads every stream of a multistream dump
        yield f, raw
    elif magic[:2] == b"\x1f\x8b":
      with gzip.open(raw, "rb") as f:
        yield f, raw
    else:
      yield raw, raw


def iter_raw_pages(dump_path: str | os.PathLike, stats: DumpStats | None = None,
                   namespaces: Collection[int] | None = (0,)) -> Iterator[RawPage]:
  """Pages of a dump in file order, their wikitext unconverted.

  Args:
    dump_path: a `.xml.bz2` (multistream too), `.xml.gz` or `.xml` MediaWiki export.
    stats: counters to update (`pages`, `redirects`, `skipped_namespace`, `errors`, ...).
    namespaces: namespaces to yield; None for all.

  Yields:
    One `RawPage` per page (articles and redirects) of the requested namespaces, with the text
    of its last revision.

  Raises:
    DumpError: not a single page could be read from the file.
  """
  stats = stats if stats is not None else DumpStats()
  path = os.fspath(dump_path)
  read_here = 0
  with _open_dump(path) as (f, compressed):
    stats.total_bytes = os.fstat(compressed.fileno()).st_size
    events = ET.iterparse(f, events=("start", "end"))
    root = None
    xmlns = ""
    site = SiteInfo()
    language = None
    while True:
      try:
        event, element = next(events)
      except StopIteration:
        return
      except (ET.ParseError, EOFError, OSError) as e:
        message = (f"{path}: dump unreadable after page {stats.last_title!r} "
                   f"({type(e).__name__}: {e})")
        stats.record_error(message)
        stats.truncated = True
        stats.truncation = f"{type(e).__name__}: {e}"
        if read_here == 0:
          raise DumpError(f"{path}: no page could be read ({type(e).__name__}: {e})") from None
        logger.error("%s; the stream ends here", message)
        return
      if event == "start":
        if root is None:
          root = element
          xmlns = element.tag[:element.tag.index("}") + 1] if element.tag[:1] == "{" else ""
          language = element.get(_XML_LANG)
          if element.tag != f"{xmlns}mediawiki":
            message = f"{path}: not a MediaWiki dump (root element {element.tag!r})"
            stats.record_error(message)
            raise DumpError(message)
        continue
      if element.tag == f"{xmlns}siteinfo":
        site = SiteInfo.from_xml(element, language)
        root.clear()
      elif element.tag == f"{xmlns}page":
        stats.pages += 1
        stats.bytes_read = compressed.tell()
        read_here += 1
        raw = _raw_page(element, xmlns, site, path, stats)
        root.clear()  # the finished page (and any earlier sibling) leaves the tree
        if raw is None:
          continue
        if namespaces is not None and raw.namespace not in namespaces:
          stats.skipped_namespace += 1
          continue
        if raw.redirect is not None:
          stats.redirects += 1
        yield raw


def _raw_page(element: ET.Element, xmlns: str, site: SiteInfo, path: str,
              stats: DumpStats) -> RawPage | None:
  title = element.findtext(f"{xmlns}title") or ""
  stats.last_title = title
  try:
    page_id = int(element.findtext(f"{xmlns}id") or "")
    namespace = int(element.findtext(f"{xmlns}ns") or "0")
  except ValueError as e:
    stats.record_error(f"{path}: page {title!r}: bad id or namespace ({e})")
    return None
  revisions = element.findall(f"{xmlns}revision")
  text = (revisions[-1].findtext(f"{xmlns}text") or "") if revisions else ""
  redirect_element = element.find(f"{xmlns}redirect")
  redirect = None
  if redirect_element is not None:
    target = redirect_element.get("title")
    if target is None:  # exports before MediaWiki 1.21 leave the target in the text only
      match = _REDIRECT_TARGET.match(text)
      target = match.group(1) if match else ""
    redirect = normalize_title(target)
    if not redirect:
      stats.record_error(f"{path}: redirect page {title!r} has no target")
      return None
  return RawPage(page_id, title, namespace, redirect, text, site)


# -- pages -----------------------------------------------------------------------------------
def parse_page(raw: RawPage) -> tuple[Page, int]:
  """Converts a raw page; returns the page and its number of dropped paragraphs.

  Raises:
    Exception: whatever the wikitext parser raises on a page it cannot handle.
  """
  if raw.redirect is not None:
    return Page(raw.page_id, raw.title, raw.namespace, raw.redirect, []), 0
  paragraphs, dropped = convert_wikitext(raw.text, raw.site)
  return Page(raw.page_id, raw.title, raw.namespace, None, paragraphs), dropped


def _count_page(page: Page, dropped: int, stats: DumpStats) -> None:
  if page.is_redirect:
    return
  stats.articles += 1
  stats.paragraphs += len(page.paragraphs)
  stats.links += sum(len(p.links) for p in page.paragraphs)
  stats.dropped_paragraphs += dropped
  if not page.paragraphs:
    stats.empty += 1


def iter_pages(dump_path: str | os.PathLike, stats: DumpStats | None = None,
               namespaces: Collection[int] | None = (0,)) -> Iterator[Page]:
  """Articles and redirects of a dump, wikitext converted to paragraphs with links.

  Args:
    dump_path: a `.xml.bz2` (multistream too), `.xml.gz` or `.xml` MediaWiki export.
    stats: counters to update; see `DumpStats`.
    namespaces: namespaces to yield (main namespace by default); None for all.

  Yields:
    Pages in file order; redirects have `redirect` set and no paragraphs. Pages whose
    wikitext fails to convert are skipped and counted in `stats.errors`.

  Raises:
    DumpError: not a single page could be read (see the module docstring).
  """
  stats = stats if stats is not None else DumpStats()
  for raw in iter_raw_pages(dump_path, stats, namespaces):
    try:
      page, dropped = parse_page(raw)
    except Exception as e:  # noqa: BLE001 - one bad page must not end the stream
      stats.record_error(f"{os.fspath(dump_path)}: page {raw.title!r}: {type(e).__name__}: {e}")
      logger.warning("%s: skipping page %r: %s: %s", os.fspath(dump_path), raw.title,
                     type(e).__name__, e)
      continue
    _count_page(page, dropped, stats)
    yield page


def read_redirects(dump_path: str | os.PathLike, namespaces: Collection[int] | None = (0,),
                   stats: DumpStats | None = None) -> dict[str, str]:
  """Normalised source title -> normalised target, without converting any wikitext.

  Args:
    dump_path: the dump (see `iter_raw_pages`).
    namespaces: namespaces to read; None for all.
    stats: counters to update; `stats.truncated` tells whether the whole dump was read.
  """
  return {normalize_title(raw.title): raw.redirect
          for raw in iter_raw_pages(dump_path, stats, namespaces=namespaces)
          if raw.redirect is not None}


def check_complete(stats: DumpStats, dump_path: str | os.PathLike,
                   allow_truncated_dump: bool = False) -> str | None:
  """Refuses a dump that ended early, unless the user accepted a partial one.

  Call it after reading the dump with `stats`, before writing anything that marks an output
  complete.

  Args:
    stats: the counters of the pass over the dump.
    dump_path: the dump, for the messages.
    allow_truncated_dump: accept a truncated or corrupt dump (the `--allow_truncated_dump`
      flag): log a warning and return the notice instead of raising.

  Returns:
    None for a dump read to its end; for an accepted partial dump, a one-line notice (starting
    with "PARTIAL") that callers store with their output.

  Raises:
    DumpError: the dump is truncated or corrupt and `allow_truncated_dump` is False.
  """
  if not stats.truncated:
    return None
  cause = " ".join((stats.truncation or "malformed input").split())  # one line
  where = (f"{os.fspath(dump_path)}: the dump is truncated or corrupt: reading stopped after "
           f"page {stats.last_title!r} ({cause}), {stats.pages} pages read")
  if not allow_truncated_dump:
    raise DumpError(f"{where}; download the dump again (compare its size and checksum with "
                    f"the published ones), or pass {ALLOW_TRUNCATED_FLAG} to build from the "
                    "pages before the damage")
  notice = f"PARTIAL: {where}; the output covers only those pages ({ALLOW_TRUNCATED_FLAG})"
  logger.warning("%s", notice)
  return notice
