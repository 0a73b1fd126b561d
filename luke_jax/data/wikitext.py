"""Wikitext to plain-text paragraphs with entity links, roughly as MediaWiki renders it.

Templates are not expanded:

* dropped: templates, parser functions, template arguments, comments, `<ref>` and other
  non-prose tags (`<math>`, `<gallery>`, ...), tables (`{| |}` and `<table>`), embedded
  `File:`/`Image:`/`Media:` links with their captions, category links and interlanguage
  links (`[[de:...]]`), behaviour switches (`__NOTOC__`), bold/italic quote markup;
* kept as text: the contents of other HTML tags, the title of external links (`[url title]`;
  a bare URL stays as it is shown, a bracketed one without title disappears), HTML entities
  (decoded);
* internal links `[[Target]]`, `[[Target|anchor]]` and `[[Target]]trail` (letters right after
  the link join the anchor, as in MediaWiki's "link trail") become their anchor text plus a
  `Link`; links to files or categories with a leading colon are plain text, section links
  (`[[#Foo]]`) are plain text, and targets with characters illegal in titles are plain text.

Paragraphs split at blank lines, at headings (which also end the abstract and are not
themselves text), at list items and at block-level HTML tags; inside a paragraph every
whitespace run becomes one space, and link offsets are computed on that collapsed text.
A paragraph that still holds wikitext syntax (an unclosed template or table leaves `{{`,
`{|`, `[[`... behind) is dropped and counted in the number `convert_wikitext` returns (the
dump reader in `wikipedia` adds it to `DumpStats.dropped_paragraphs`); one without any letter
or digit (the "." left of a list item made of templates) is dropped silently.

`SiteInfo` carries what conversion needs to know about the wiki (namespace names, language),
and `normalize_title` gives link targets and page titles MediaWiki's canonical form.
"""

from __future__ import annotations

import bisect
import dataclasses
import html
import re
import xml.etree.ElementTree as ET

from mwparserfromhell import parser as mwparser
from mwparserfromhell.parser import tokens as T

# Canonical (English) names work on every wiki next to the localised ones from <siteinfo>.
_FILE_NAMESPACES = (-2, 6)  # Media, File
_CATEGORY_NAMESPACE = 14
_CANONICAL_FILE_PREFIXES = ("file", "image", "media")
_CANONICAL_CATEGORY_PREFIXES = ("category",)

# MediaWiki's per-language link trails (MessagesXx.php); English's is the fallback. Languages
# written without spaces have none, or a trail would swallow the rest of the sentence.
_LINKTRAILS = {
    "de": "[äöüßa-z]+",
    "fr": "[a-zàâçéèêîôûäëïöüùÇÉÂÊÎÔÛÄËÏÖÜÀÈÙ]+",
    "es": "[a-záéíóúñ]+",
    "it": "[a-zàéèíîìóòúù]+",
    "pt": "[áâãàéêẽçíòóôõq̃úüűũa-z]+",
    "nl": "[a-zäöüïëéèà]+",
    "sv": "[a-zåäöéÅÄÖÉ]+",
    "fi": "[a-zäö]+",
    "pl": "[a-zęóąśłżźćńĘÓĄŚŁŻŹĆŃ]+",
    "ru": "[a-zа-яё]+",
    "ja": "", "zh": "", "th": "", "ko": "", "my": "", "km": "", "lo": "", "bo": "",
}
_DEFAULT_LINKTRAIL = "[a-z]+"

# Interwiki prefixes that look like language codes but are shown as links.
_NOT_LANGUAGES = frozenset({"doi", "rfc", "mw", "voy", "wmf", "arxiv"})
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]+)*|simple")

# Tags whose contents are not prose; list items, rows and cells appear outside tables too.
_DROPPED_TAGS = frozenset({
    "ref", "references", "gallery", "math", "chem", "ce", "timeline", "imagemap", "score",
    "syntaxhighlight", "source", "pre", "graph", "mapframe", "maplink", "templatedata",
    "templatestyles", "hiero", "inputbox", "categorytree", "includeonly", "indicator", "section",
    "table", "tr", "td", "th", "caption", "style", "script",
})
_BLOCK_TAGS = frozenset({
    "p", "div", "blockquote", "center", "poem", "ul", "ol", "dl", "li", "dt", "dd",
    "h1", "h2", "h3", "h4", "h5", "h6",
})
_LIST_MARKUP = frozenset({"li", "dt", "dd"})

_WHITESPACE = re.compile(r"\s+")
_WHITESPACE_RUN = re.compile(r"\s{2,}")
_HAS_WORD = re.compile(r"[^\W_]")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_BEHAVIOUR_SWITCH = re.compile(r"__[A-Z]+__")
_QUOTES = re.compile(r"''+")
_BIDI_MARKS = re.compile("[\u200e\u200f\u202a-\u202e]")
_ILLEGAL_TITLE_CHARS = re.compile(r"[<>\[\]{}|\x00-\x1f\x7f]")
# HTML tags the tokenizer left as text (unbalanced ones); <ref> stays, so that its paragraph,
# likely full of citation text, is dropped below.
_STRAY_TAG = re.compile(
    r"</?(?:b|i|u|s|del|ins|sub|sup|small|big|span|div|center|font|br|p|hr|blockquote|code|tt|"
    r"kbd|var|samp|q|cite|abbr|dfn|mark|ruby|rb|rp|rt|bdi|bdo|wbr|strong|em|strike|ol|ul|li|"
    r"dl|dt|dd|table|tr|td|th|caption|nowiki|onlyinclude|noinclude|includeonly|poem)\b[^<>]*>",
    re.IGNORECASE)
_LEFTOVER_MARKUP = re.compile(r"\{\{|\}\}|\[\[|\]\]|\{\||\|\}|<ref", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Link:
  """An internal link: `paragraph.text[start:end] == anchor`; `title` is normalised."""
  anchor: str
  title: str
  start: int
  end: int


@dataclasses.dataclass
class Paragraph:
  text: str
  links: list[Link]
  abstract: bool  # before the first section heading


@dataclasses.dataclass(frozen=True)
class SiteInfo:
  """What wikitext conversion needs to know about the wiki (from the dump's <siteinfo>)."""
  language: str = "en"
  file_prefixes: frozenset[str] = frozenset(_CANONICAL_FILE_PREFIXES)
  category_prefixes: frozenset[str] = frozenset(_CANONICAL_CATEGORY_PREFIXES)

  @property
  def linktrail(self) -> str:
    return _LINKTRAILS.get(self.language.split("-")[0], _DEFAULT_LINKTRAIL)

  @classmethod
  def from_xml(cls, siteinfo: ET.Element | None, language: str | None) -> "SiteInfo":
    files, categories = set(_CANONICAL_FILE_PREFIXES), set(_CANONICAL_CATEGORY_PREFIXES)
    if siteinfo is not None:
      for element in siteinfo.iter():
        if not element.tag.endswith("namespace") or not element.text:
          continue
        key = int(element.get("key", "0"))
        if key in _FILE_NAMESPACES:
          files.add(_namespace_key(element.text))
        elif key == _CATEGORY_NAMESPACE:
          categories.add(_namespace_key(element.text))
    return cls(language or "en", frozenset(files), frozenset(categories))


# -- titles ----------------------------------------------------------------------------------
def normalize_title(title: str) -> str:
  """MediaWiki's canonical form of a link target.

  Underscores and whitespace runs become one space, the `#section` fragment, a leading colon
  and bidi marks are dropped, and the first letter is upper-cased (wikis with `first-letter`
  case, i.e. all Wikipedias). HTML entities must be decoded by the caller.

  Args:
    title: a page title or link target as written.

  Returns:
    The normalised title; empty for section-only targets such as `#History`.
  """
  title = _BIDI_MARKS.sub("", title.partition("#")[0])
  title = _WHITESPACE.sub(" ", title.replace("_", " ")).strip()
  if title.startswith(":"):
    title = title[1:].lstrip()
  if title:
    first = title[0].upper()
    if len(first) == 1:  # "ß".upper() == "SS": MediaWiki leaves such letters alone
      title = first + title[1:]
  return title


def _namespace_key(prefix: str) -> str:
  return _WHITESPACE.sub(" ", prefix.replace("_", " ")).strip().casefold()


# -- rendering -------------------------------------------------------------------------------
# The token stream of mwparserfromhell's (C) tokenizer is rendered directly: building its node
# tree costs four times the tokenizing, and dropped constructs need no tree at all.
_CLOSERS: dict[type, tuple[type, ...]] = {
    T.TemplateOpen: (T.TemplateClose,),
    T.ArgumentOpen: (T.ArgumentClose,),
    T.WikilinkOpen: (T.WikilinkClose,),
    T.ExternalLinkOpen: (T.ExternalLinkClose,),
    T.CommentStart: (T.CommentEnd,),
    T.HeadingStart: (T.HeadingEnd,),
    T.HTMLEntityStart: (T.HTMLEntityEnd,),
    T.TagOpenOpen: (T.TagCloseSelfclose, T.TagCloseClose),  # every tag ends in exactly one
}


class MalformedWikitext(ValueError):
  """The tokenizer's output is not balanced (never seen; guards against parser changes)."""


def _tokenize(wikitext: str) -> list:
  if mwparser.use_c and mwparser.CTokenizer is not None:
    tokenizer = mwparser.CTokenizer()
  else:  # pragma: no cover - the wheels ship the C tokenizer
    from mwparserfromhell.parser.tokenizer import Tokenizer
    tokenizer = Tokenizer()
  # skip_style_tags: parsing '' and ''' as tags makes the tokenizer give up on <ref>s around
  # unbalanced quotes (14 paragraphs of the enwiki sample); the quotes are dropped as text.
  return tokenizer.tokenize(wikitext, 0, True)


class _Renderer:
  """Renders tokens to text and link spans, one block per section."""

  def __init__(self, tokens: list, site: SiteInfo):
    self.tokens = tokens
    self.pos = 0
    self.site = site
    self.linktrail = re.compile(site.linktrail) if site.linktrail else None
    self.blocks: list[tuple[str, list[list]]] = []
    self.parts: list[str] = []
    self.length = 0
    self.links: list[list] = []  # [start, end, title], mutable until the link trail is read
    self.trail_link: list | None = None
    self.in_list_item = False
    self.link_depth = 0

  # -- output --------------------------------------------------------------------------------
  def emit(self, text: str) -> None:
    if text:
      self.parts.append(text)
      self.length += len(text)

  def paragraph_break(self) -> None:
    self.emit("\n\n")

  def section_break(self) -> None:
    self.blocks.append(("".join(self.parts), self.links))
    self.parts, self.length, self.links = [], 0, []
    self.in_list_item = False

  def finish(self) -> list[tuple[str, list[list]]]:
    self.render_until(())
    self.section_break()
    return self.blocks

  # -- tokens --------------------------------------------------------------------------------
  def next(self):
    if self.pos >= len(self.tokens):
      raise MalformedWikitext("token stream ends inside a construct")
    token = self.tokens[self.pos]
    self.pos += 1
    return token

  def skip(self, opener: type) -> None:
    """Skips to the end of the construct `opener` started (already consumed)."""
    closers = _CLOSERS[opener]
    depth = 1
    while depth:
      kind = type(self.next())
      if kind is opener:
        depth += 1
      elif kind in closers:
        depth -= 1

  def render_until(self, stop: tuple[type, ...]) -> None:
    """Renders tokens up to and including the first one (at this level) of a `stop` type."""
    tokens = self.tokens
    while self.pos < len(tokens):
      token = tokens[self.pos]
      self.pos += 1
      kind = type(token)
      if kind in stop:
        return
      trail_link, self.trail_link = self.trail_link, None
      if kind is T.Text:
        self.text(token.text, trail_link)
      elif kind is T.WikilinkOpen:
        self.wikilink()
      elif kind is T.TagOpenOpen:
        self.tag(token)
      elif kind is T.HTMLEntityStart:
        self.emit(self.entity())
      elif kind is T.ExternalLinkOpen:
        self.external_link(token)
      elif kind is T.HeadingStart:
        self.skip(kind)  # heading text is not prose
        if self.link_depth == 0:
          self.section_break()
      elif kind in _CLOSERS:
        self.skip(kind)  # templates, template arguments, comments render to nothing here
    if stop:
      raise MalformedWikitext("token stream ends inside a construct")

  def text(self, value: str, trail_link: list | None) -> None:
    if trail_link is not None and self.linktrail is not None:
      match = self.linktrail.match(value)
      if match:
        self.emit(match.group())
        trail_link[1] = self.length
        value = value[match.end():]
        if not value:  # the trail may go on in the next text token
          self.trail_link = trail_link
    value = _QUOTES.sub("", _STRAY_TAG.sub("", _BEHAVIOUR_SWITCH.sub("", value)))
    if self.in_list_item and "\n" in value:
      # A list item runs to the end of its line; what follows is a new paragraph.
      value = value.replace("\n", "\n\n", 1)
      self.in_list_item = False
    self.emit(value)

  def entity(self) -> str:
    numeric, body = "", []
    while True:
      token = self.next()
      kind = type(token)
      if kind is T.HTMLEntityEnd:
        return html.unescape(f"&{numeric}{''.join(body)};")
      if kind is T.HTMLEntityNumeric:
        numeric = "#"
      elif kind is T.HTMLEntityHex:
        numeric += token.char
      elif kind is T.Text:
        body.append(token.text)

  def external_link(self, opener) -> None:
    url = []
    while True:
      token = self.next()
      kind = type(token)
      if kind is T.ExternalLinkSeparator:
        self.render_until((T.ExternalLinkClose,))
        return
      if kind is T.ExternalLinkClose:
        if not opener.brackets:  # a bare URL is shown; "[url]" renders as a footnote number
          self.emit("".join(url))
        return
      if kind is T.Text:
        url.append(token.text)
      elif kind is T.HTMLEntityStart:
        url.append(self.entity())
      elif kind in _CLOSERS:
        self.skip(kind)

  def tag(self, opener) -> None:
    name_parts, in_attributes = [], False
    while True:
      token = self.next()
      kind = type(token)
      if kind is T.TagCloseOpen or kind is T.TagCloseSelfclose:
        break
      if kind is T.TagAttrStart:
        in_attributes = True
      elif kind is T.Text and not in_attributes:
        name_parts.append(token.text)
      elif kind in _CLOSERS:
        self.skip(kind)
    name = "".join(name_parts).strip().lower()
    if kind is T.TagCloseSelfclose:
      if name in _LIST_MARKUP:
        self.paragraph_break()
        self.in_list_item = bool(opener.wiki_markup)
      elif name == "hr":
        self.paragraph_break()
      elif name == "br":
        self.emit(" ")
      return
    if name in _DROPPED_TAGS:
      self.skip(T.TagOpenOpen)
      return
    block = name in _BLOCK_TAGS
    if block:
      self.paragraph_break()
    self.render_until((T.TagOpenClose,))
    while type(self.next()) is not T.TagCloseClose:  # the closing tag's name
      pass
    if block:
      self.paragraph_break()

  def wikilink(self) -> None:
    parts, plain = [], True
    while True:
      token = self.next()
      kind = type(token)
      if kind is T.WikilinkSeparator or kind is T.WikilinkClose:
        break
      if kind is T.Text:
        parts.append(token.text)
      elif kind is T.HTMLEntityStart:
        parts.append(self.entity())
      elif kind is T.CommentStart:
        self.skip(kind)
      elif kind in _CLOSERS:
        plain = False  # a target built by a template cannot be resolved without expanding it
        self.skip(kind)
    has_anchor = kind is T.WikilinkSeparator
    shown = "".join(parts).strip()
    colon = shown.startswith(":")
    target = shown[1:].lstrip() if colon else shown
    title = None
    if plain:
      prefix, sep, _ = target.partition(":")
      namespace = _namespace_key(prefix) if sep else ""
      if sep and (namespace in self.site.file_prefixes
                  or namespace in self.site.category_prefixes):
        if not colon:  # embedded image (caption included) or page categorisation: not text
          if has_anchor:
            self.skip(T.WikilinkOpen)
          return
      elif (sep and not colon and _LANGUAGE_CODE.fullmatch(prefix.strip())
            and prefix.strip() not in _NOT_LANGUAGES):
        if has_anchor:  # interlanguage link, shown in the sidebar only
          self.skip(T.WikilinkOpen)
        return
      else:
        title = normalize_title(target)
        if not title or self.link_depth or _ILLEGAL_TITLE_CHARS.search(title):
          title = None
    start, first_part = self.length, len(self.parts)
    if has_anchor:
      self.link_depth += 1
      in_list_item = self.in_list_item
      self.render_until((T.WikilinkClose,))
      self.in_list_item = in_list_item
      self.link_depth -= 1
      if not "".join(self.parts[first_part:]).strip():  # "[[Foo|]]": show the target
        del self.parts[first_part:]
        self.length = start
        self.links = [link for link in self.links if link[0] < start]
        self.emit(target if plain else "")
    else:
      self.emit(target if plain else "")
    if title is not None and self.length > start:
      link = [start, self.length, title]
      self.links.append(link)
      self.trail_link = link


def _split_paragraphs(text: str, links: list[list], abstract: bool) -> tuple[list[Paragraph], int]:
  """Cuts a block at blank lines and collapses whitespace, carrying link offsets along."""
  bounds, start = [], 0
  for match in _PARAGRAPH_BREAK.finditer(text):
    bounds.append((start, match.start()))
    start = match.end()
  bounds.append((start, len(text)))
  paragraphs, dropped = [], 0
  links = sorted(links, key=lambda link: link[0])
  link_starts = [link[0] for link in links]
  for begin, end in bounds:
    segment = text[begin:end]
    collapsed = _WHITESPACE.sub(" ", segment).strip()
    if not _HAS_WORD.search(collapsed):  # e.g. the "." left of a list item of templates
      continue
    if _LEFTOVER_MARKUP.search(collapsed):
      dropped += 1
      continue
    # Only runs of two or more whitespace characters shift later offsets (one is replaced).
    run_ends, removed, total = [], [], 0
    for match in _WHITESPACE_RUN.finditer(segment):
      total += match.end() - match.start() - 1
      run_ends.append(match.end())
      removed.append(total)
    leading = 1 if segment[0].isspace() else 0

    def new_offset(old: int) -> int:  # `old` indexes a non-whitespace character of `segment`
      i = bisect.bisect_right(run_ends, old)
      return old - (removed[i - 1] if i else 0) - leading

    paragraph_links = []
    for link_start, link_end, title in links[bisect.bisect_left(link_starts, begin):]:
      if link_start >= end:
        break
      if link_end > end:  # an anchor spanning a paragraph break is not a link
        continue
      while link_start < link_end and text[link_start].isspace():
        link_start += 1
      while link_end > link_start and text[link_end - 1].isspace():
        link_end -= 1
      if link_start == link_end:
        continue
      new_start = new_offset(link_start - begin)
      new_end = new_offset(link_end - 1 - begin) + 1
      paragraph_links.append(Link(collapsed[new_start:new_end], title, new_start, new_end))
    paragraphs.append(Paragraph(collapsed, paragraph_links, abstract))
  return paragraphs, dropped


def convert_wikitext(wikitext: str, site: SiteInfo | None = None) -> tuple[list[Paragraph], int]:
  """Wikitext to paragraphs; also returns how many paragraphs were dropped for leftover markup.

  Args:
    wikitext: the page source.
    site: namespace names and language of the wiki; English Wikipedia when None.

  Returns:
    `(paragraphs, dropped)`.

  Raises:
    mwparserfromhell.parser.ParserError, MalformedWikitext: the page cannot be tokenized.
  """
  renderer = _Renderer(_tokenize(wikitext), site or SiteInfo())
  paragraphs, dropped = [], 0
  for index, (text, links) in enumerate(renderer.finish()):
    block, block_dropped = _split_paragraphs(text, links, abstract=index == 0)
    paragraphs.extend(block)
    dropped += block_dropped
  return paragraphs, dropped


def parse_wikitext(wikitext: str, site: SiteInfo | None = None) -> list[Paragraph]:
  """Plain-text paragraphs and links of a page's wikitext (see the module docstring)."""
  return convert_wikitext(wikitext, site)[0]
