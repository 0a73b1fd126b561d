"""The MediaWiki dump reader: a hand-written dump with every construct, the real enwiki sample
(gensim's test dump, `wiki_dump` fixture) and damaged inputs."""

import bz2
import gzip
import logging
import tracemalloc
from xml.sax.saxutils import escape

import pytest

from luke_jax.data import wikipedia
from luke_jax.data.wikipedia import DumpStats, Link, Paragraph, normalize_title

FOO = """{{Infobox thing|name=[[Foo]]|x={{nested|[[Bar]]}}}}
'''Foo''' is a [[bar baz|Baz]]s thing in [[Tokyo]].<ref>See [[Citation Target]].</ref> It uses \
{{cite|[[Foo]]}} nothing.<ref name="x" />
See [[#History|history]], [[Foo_bar#Section]] and [[AT&amp;T]].

{| class="wikitable"
| [[Table Link]] || cell
|}
[[File:Example.jpg|thumb|A caption with [[Caption Link]].]]
Second &amp; ''italic'' paragraph with [http://example.org external title], \
[http://example.com] and [[Foo|<b>bold</b> anchor]]<!-- a comment [[Hidden]] -->.

== History ==
Text under [[Category:Not a link]] heading, [[:Category:Visible]], [[de:Foo]] and \
[[wikt:word|word]].
* item one [[Item Link]]
* item two
After list.
__NOTOC__
[[Category:Things]]
"""

UNICODE = """[[東京タワー]]は[[日本]]の電波塔。[[ß-Test]], [[éclair]]s and [[  spaced_out   title ]].

==見出し==
[[Ünïcödé|ü]] [[Straße]]n."""

PAGES = [
    dict(title="Foo", ns=0, id=1, text=FOO),
    dict(title="Foo bar", ns=0, id=2, redirect="Foo", text="#REDIRECT [[Foo]]"),
    dict(title="Template:Cite", ns=10, id=3, text="{{{1}}} [[Template Link]]"),
    dict(title="Empty", ns=0, id=4, text="{{stub}}\n[[Category:Stubs]]"),
    dict(title="東京 (曖昧さ回避)", ns=0, id=5, text=UNICODE),
    dict(title="Chain", ns=0, id=6, redirect="Foo bar", text="#REDIRECT [[Foo bar]]"),
]


def page_xml(title, ns, id, text, redirect=None):
  redirect_tag = f'<redirect title="{escape(redirect)}" />' if redirect else ""
  return (f"  <page>\n    <title>{escape(title)}</title>\n    <ns>{ns}</ns>\n    <id>{id}</id>\n"
          f"    {redirect_tag}\n    <revision>\n      <id>{100 + id}</id>\n"
          f'      <model>wikitext</model>\n      <text xml:space="preserve">{escape(text)}</text>\n'
          f"    </revision>\n  </page>\n")


HEADER = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" \
xml:lang="en">
  <siteinfo>
    <sitename>Wikipedia</sitename>
    <case>first-letter</case>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="6" case="first-letter">File</namespace>
      <namespace key="14" case="first-letter">Category</namespace>
    </namespaces>
  </siteinfo>
"""


def dump_xml(pages=PAGES) -> str:
  return HEADER + "".join(page_xml(**p) for p in pages) + "</mediawiki>\n"


@pytest.fixture(scope="module")
def tiny_dump(tmp_path_factory):
  path = tmp_path_factory.mktemp("tiny") / "tiny.xml.bz2"
  path.write_bytes(bz2.compress(dump_xml().encode()))
  return path


@pytest.fixture(scope="module")
def sample(wiki_dump):
  stats = DumpStats()
  return list(wikipedia.iter_pages(wiki_dump, stats)), stats


def by_title(pages):
  return {p.title: p for p in pages}


def at(text: str, anchor: str, title: str) -> Link:
  """The link on the first occurrence of `anchor` in `text`."""
  start = text.index(anchor)
  return Link(anchor, title, start, start + len(anchor))


# -- titles ----------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, want", [
    ("foo_bar", "Foo bar"), ("  foo   bar ", "Foo bar"), ("Foo#Section", "Foo"), ("#Section", ""),
    (":Foo", "Foo"), ("éclair", "Éclair"), ("ß", "ß"), ("東京", "東京"), ("iPhone", "IPhone"),
    ("Foo\u200e", "Foo"), ("a\u00a0b", "A b"),
])
def test_normalize_title(raw, want):
  assert normalize_title(raw) == want


def test_resolve_follows_chains_and_stops_on_cycles():
  redirects = {"A": "B", "B": "C", "X": "Y", "Y": "X", "S": "S"}
  assert wikipedia.resolve("A", redirects) == "C"
  assert wikipedia.resolve("C", redirects) == "C"
  assert wikipedia.resolve("X", redirects) == "Y"
  assert wikipedia.resolve("S", redirects) == "S"


# -- the hand-written dump -------------------------------------------------------------------
def test_tiny_dump_pages_and_stats(tiny_dump):
  stats = DumpStats()
  pages = by_title(wikipedia.iter_pages(tiny_dump, stats))
  assert list(pages) == ["Foo", "Foo bar", "Empty", "東京 (曖昧さ回避)", "Chain"]
  assert (stats.pages, stats.articles, stats.redirects, stats.skipped_namespace,
          stats.empty, stats.errors, stats.truncated) == (6, 3, 2, 1, 1, 0, False)
  assert pages["Foo bar"].redirect == "Foo" and pages["Foo bar"].paragraphs == []
  assert pages["Foo"].redirect is None and pages["Foo"].page_id == 1
  assert pages["Empty"].paragraphs == []
  assert stats.links == sum(len(par.links) for p in pages.values() for par in p.paragraphs)


def test_tiny_dump_text_and_links(tiny_dump):
  foo = by_title(wikipedia.iter_pages(tiny_dump))["Foo"]
  first = ("Foo is a Bazs thing in Tokyo. It uses nothing. "
           "See history, Foo_bar#Section and AT&T.")
  second = "Second & italic paragraph with external title, and bold anchor."
  third = "Text under heading, Category:Visible, and word."
  want = [
      Paragraph(first, [at(first, "Bazs", "Bar baz"), at(first, "Tokyo", "Tokyo"),
                        at(first, "Foo_bar#Section", "Foo bar"), at(first, "AT&T", "AT&T")],
                True),
      Paragraph(second, [at(second, "bold anchor", "Foo")], True),
      Paragraph(third, [at(third, "word", "Wikt:word")], False),
      Paragraph("item one Item Link", [Link("Item Link", "Item Link", 9, 18)], False),
      Paragraph("item two", [], False),
      Paragraph("After list.", [], False),
  ]
  assert foo.paragraphs == want


def test_tiny_dump_unicode(tiny_dump):
  page = by_title(wikipedia.iter_pages(tiny_dump))["東京 (曖昧さ回避)"]
  first, second = page.paragraphs
  assert first.text == "東京タワーは日本の電波塔。ß-Test, éclairs and spaced_out title."
  assert first.links == [
      at(first.text, "東京タワー", "東京タワー"), at(first.text, "日本", "日本"),
      at(first.text, "ß-Test", "ß-Test"), at(first.text, "éclairs", "Éclair"),
      at(first.text, "spaced_out title", "Spaced out title")]
  assert second == Paragraph("ü Straßen.", [Link("ü", "Ünïcödé", 0, 1),
                                           Link("Straßen", "Straße", 2, 9)], False)


def test_links_inside_templates_refs_tables_and_files_are_not_links(tiny_dump):
  titles = {link.title for p in wikipedia.iter_pages(tiny_dump) for par in p.paragraphs
            for link in par.links}
  for hidden in ("Bar", "Citation Target", "Table Link", "Caption Link", "Hidden",
                 "Category:Not a link", "Category:Visible", "De:Foo", "Template Link"):
    assert hidden not in titles
  assert "Foo" in titles  # from the anchor with bold markup, not from {{cite|[[Foo]]}}


def test_redirects(tiny_dump):
  redirects = wikipedia.read_redirects(tiny_dump)
  assert redirects == {"Foo bar": "Foo", "Chain": "Foo bar"}
  assert wikipedia.resolve("Chain", redirects) == "Foo"


def test_redirect_target_from_text_in_old_exports(tmp_path):
  old = page_xml("Old", 0, 9, "#REDIRECT [[old_style#Part]]", redirect="X")
  broken = page_xml("Nowhere", 0, 10, "#REDIRECT", redirect="X")
  path = tmp_path / "old.xml"
  path.write_text(HEADER + (old + broken).replace('<redirect title="X" />', "<redirect />")
                  + "</mediawiki>\n", encoding="utf-8")
  stats = DumpStats()
  assert [(p.title, p.redirect) for p in wikipedia.iter_pages(path, stats)] == [
      ("Old", "Old style")]
  assert stats.errors == 1 and "'Nowhere'" in stats.error_examples[0]


def test_namespaces_none_yields_every_page(tiny_dump):
  stats = DumpStats()
  pages = by_title(wikipedia.iter_pages(tiny_dump, stats, namespaces=None))
  assert pages["Template:Cite"].namespace == 10 and stats.skipped_namespace == 0


def test_plain_gzip_and_multistream_dumps_read_alike(tmp_path, tiny_dump):
  want = list(wikipedia.iter_pages(tiny_dump))
  text = dump_xml().encode()
  (tmp_path / "plain.xml").write_bytes(text)
  (tmp_path / "dump.xml.gz").write_bytes(gzip.compress(text))
  cut = text.index(b"  <page>", text.index(b"<title>Empty"))  # streams break between pages
  (tmp_path / "multistream.xml.bz2").write_bytes(bz2.compress(text[:cut])
                                                 + bz2.compress(text[cut:]))
  for name in ("plain.xml", "dump.xml.gz", "multistream.xml.bz2"):
    assert list(wikipedia.iter_pages(tmp_path / name)) == want, name


def test_page_that_fails_to_convert_is_counted_and_skipped(tiny_dump, monkeypatch, caplog):
  convert = wikipedia.convert_wikitext

  def failing(wikitext, site=None):
    if "Tokyo" in wikitext:
      raise RuntimeError("boom")
    return convert(wikitext, site)

  monkeypatch.setattr(wikipedia, "convert_wikitext", failing)
  stats = DumpStats()
  titles = [p.title for p in wikipedia.iter_pages(tiny_dump, stats)]
  assert "Foo" not in titles and "Empty" in titles and "Chain" in titles
  assert stats.errors == 1 and "'Foo'" in stats.error_examples[0]
  assert "boom" in caplog.text


# -- the real sample -------------------------------------------------------------------------
@pytest.mark.slow
def test_sample_counts(sample):
  pages, stats = sample
  assert (stats.pages, stats.articles, stats.redirects, stats.skipped_namespace) == (206, 106,
                                                                                    99, 1)
  assert (stats.links, stats.paragraphs, stats.empty, stats.errors) == (22649, 9062, 0, 0)
  assert stats.dropped_paragraphs == 0 and not stats.truncated
  assert len(pages) == 205 and sum(p.is_redirect for p in pages) == 99
  assert pages[0].title == "AccessibleComputing"
  assert pages[0].redirect == "Computer accessibility"


def test_sample_links_and_text_are_clean(sample):
  pages, stats = sample
  n_links = 0
  for page in pages:
    for paragraph in page.paragraphs:
      for bad in ("{{", "}}", "[[", "]]", "<ref", "{|", "|}", "''", "__NOTOC__"):
        assert bad not in paragraph.text, (page.title, paragraph.text)
      assert paragraph.text == paragraph.text.strip() and "  " not in paragraph.text
      for link in paragraph.links:
        n_links += 1
        assert paragraph.text[link.start:link.end] == link.anchor
        assert link.anchor == link.anchor.strip() and link.anchor
        assert link.title == normalize_title(link.title)
        for bad in ("|", "[[", "]]", "{{", "}}", "#"):
          assert bad not in link.title, (page.title, link)
        assert not link.title.startswith(("File:", "Image:", "Category:"))
  assert n_links == stats.links


def test_sample_anarchism_abstract(sample):
  anarchism = by_title(sample[0])["Anarchism"]
  first = anarchism.paragraphs[0]
  assert first.abstract and first.text.startswith(
      "Anarchism is a political philosophy that advocates self-governed societies based on "
      "voluntary institutions.")
  assert first.links[:3] == [Link("political philosophy", "Political philosophy", 15, 35),
                             Link("self-governed", "Self-governance", 51, 64),
                             Link("stateless societies", "Stateless society", 137, 156)]
  assert not anarchism.paragraphs[-1].abstract


# -- damaged input ---------------------------------------------------------------------------
def test_truncated_bz2_ends_the_stream_with_a_logged_error(tmp_path, wiki_dump, caplog):
  data = wiki_dump.read_bytes()
  cut = tmp_path / "cut.xml.bz2"
  cut.write_bytes(data[:len(data) // 2])
  stats = DumpStats()
  with caplog.at_level(logging.ERROR, logger="luke_jax.data.wikipedia"):
    pages = list(wikipedia.iter_pages(cut, stats))
  assert 0 < len(pages) < 205 and stats.truncated and stats.errors == 1
  assert str(cut) in caplog.text and repr(stats.last_title) in caplog.text
  assert "EOFError" in stats.error_examples[0]


def test_malformed_xml_after_a_page_ends_the_stream(tmp_path, caplog):
  broken = tmp_path / "broken.xml"
  broken.write_text(HEADER + page_xml(**PAGES[0]) + "  <page><title>Bad</title><ns>0</ns></pag>\n",
                    encoding="utf-8")
  stats = DumpStats()
  with caplog.at_level(logging.ERROR, logger="luke_jax.data.wikipedia"):
    pages = list(wikipedia.iter_pages(broken, stats))
  assert [p.title for p in pages] == ["Foo"]
  assert stats.truncated and stats.errors == 1 and "ParseError" in stats.error_examples[0]
  assert "broken.xml" in caplog.text and "'Foo'" in caplog.text


@pytest.mark.parametrize("name, content", [
    ("empty.xml.bz2", b""), ("empty.xml", b""), ("garbage.xml.bz2", b"BZh91AY&SYgarbage"),
    ("not_a_dump.xml", b"<html><body>hello</body></html>"),
    ("no_pages.xml", HEADER.encode()),
])
def test_input_without_any_page_raises(tmp_path, name, content):
  path = tmp_path / name
  path.write_bytes(content)
  stats = DumpStats()
  with pytest.raises(wikipedia.DumpError, match=name):
    list(wikipedia.iter_pages(path, stats))
  assert stats.errors == 1 and stats.pages == 0


def test_complete_dump_without_pages_is_empty_not_an_error(tmp_path):
  path = tmp_path / "none.xml"
  path.write_text(HEADER + "</mediawiki>\n", encoding="utf-8")
  stats = DumpStats()
  assert list(wikipedia.iter_pages(path, stats)) == [] and stats.errors == 0


def test_memory_stays_flat(tmp_path):
  text = "Some text with a [[Link]]. " * 150
  path = tmp_path / "big.xml"
  path.write_text(HEADER + "".join(page_xml(f"Page {i}", 0, i + 1, text) for i in range(2000))
                  + "</mediawiki>\n", encoding="utf-8")
  tracemalloc.start()
  try:
    n = sum(1 for _ in wikipedia.iter_raw_pages(path))
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert n == 2000
  assert peak < 1_000_000, f"{peak} bytes traced for an {path.stat().st_size} byte dump"
