"""Entity vocabulary building (reference C.2) on a hand-written dump and on the real enwiki
sample, the CLI, and the multilingual merge through Wikidata sitelinks (C.3)."""

import bz2
import json
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from luke_jax.data import multilingual
from luke_jax.data.entity_vocab_builder import (build_entity_vocab, count_links, save_atomic,
                                                select_titles)
from luke_jax.tokenization.entity_vocab import Entity, EntityVocab

REPO = Path(__file__).resolve().parents[1]


def write_dump(path: Path, pages: list[tuple[str, str | None, str]]) -> Path:
  """A bz2 MediaWiki dump of `(title, redirect target or None, wikitext)` main-namespace pages."""
  body = []
  for i, (title, redirect, text) in enumerate(pages, 1):
    tag = f'<redirect title="{escape(redirect)}" />' if redirect else ""
    body.append(f"<page><title>{escape(title)}</title><ns>0</ns><id>{i}</id>{tag}"
                f"<revision><text>{escape(text)}</text></revision></page>\n")
  xml = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" xml:lang="en">\n'
         + "".join(body) + "</mediawiki>\n")
  path.write_bytes(bz2.compress(xml.encode()))
  return path


TINY = [
    ("A", None, "[[B]] and [[b]]s, [[R]], [[Missing]], [[:Category:Cat|cat]], [[Cycle1]]. "
                "{{cite|[[A]]}}<ref>[[A]]</ref>[[Category:Cat]]"),
    ("B", None, "[[A]] and [[R|again]]."),
    ("R", "B", "#REDIRECT [[B]]"),
    ("Cycle1", "Cycle2", "#REDIRECT [[Cycle2]]"),
    ("Cycle2", "Cycle1", "#REDIRECT [[Cycle1]]"),
]


@pytest.fixture(scope="module")
def tiny_counts(tmp_path_factory):
  return count_links(write_dump(tmp_path_factory.mktemp("vocab") / "tiny.xml.bz2", TINY))


@pytest.fixture(scope="module")
def sample_counts(wiki_dump):
  return count_links(wiki_dump)


def entries(vocab: EntityVocab) -> list[tuple[str, int]]:
  return [(vocab.get_entities(i)[0].title, vocab.get_count(i)) for i in range(len(vocab))]


# -- hand-written dump -----------------------------------------------------------------------
def test_counts_resolve_redirects_and_skip_hidden_links(tiny_counts):
  assert dict(tiny_counts.counts) == {"B": 4, "A": 1, "Missing": 1, "Cycle2": 1}
  assert tiny_counts.articles == {"A", "B"}
  assert tiny_counts.redirects == {"R": "B", "Cycle1": "Cycle2", "Cycle2": "Cycle1"}
  stats = tiny_counts.stats
  assert (stats.pages, stats.articles, stats.redirects, stats.links) == (5, 2, 3, 7)


def test_vocab_order_and_options(tiny_counts):
  specials = [("[PAD]", 0), ("[UNK]", 0), ("[MASK]", 0)]
  assert entries(build_entity_vocab(tiny_counts, 100)) == specials + [("B", 4), ("A", 1)]
  assert entries(build_entity_vocab(tiny_counts, 4)) == specials + [("B", 4)]
  assert entries(build_entity_vocab(tiny_counts, 100, min_count=2)) == specials + [("B", 4)]
  vocab = build_entity_vocab(tiny_counts, 100, include_mask2=True, language="en")
  assert entries(vocab)[-1] == ("[MASK2]", 0) and vocab.mask2_id == 5
  assert vocab.get_entities(3) == [Entity("B", "en")]
  # White-listed titles come first, resolved through redirects, when linked at all.
  assert select_titles(tiny_counts, 100, white_list=["missing", "r", "Nowhere"]) == [
      ("Missing", 1), ("B", 4), ("A", 1)]
  assert select_titles(tiny_counts, 100, white_list=["missing"], white_list_only=True) == [
      ("Missing", 1)]


def test_save_is_atomic_and_loads(tmp_path, tiny_counts):
  path = save_atomic(build_entity_vocab(tiny_counts, 100), tmp_path / "out" / "vocab.jsonl")
  assert sorted(p.name for p in path.parent.iterdir()) == ["vocab.jsonl"]
  lines = [json.loads(line) for line in path.read_text().splitlines()]
  assert lines[0] == {"id": 0, "entities": [["[PAD]", None]], "count": 0}
  assert lines[3] == {"id": 3, "entities": [["B", None]], "count": 4}
  loaded = EntityVocab.load(path)
  assert (loaded.pad_id, loaded.unk_id, loaded.mask_id, loaded.get_id("A")) == (0, 1, 2, 4)


# -- real sample -----------------------------------------------------------------------------
@pytest.mark.slow
def test_sample_vocab(tmp_path, sample_counts):
  stats = sample_counts.stats
  assert (stats.pages, stats.articles, stats.redirects, stats.links) == (206, 106, 99, 22649)
  assert len(sample_counts.counts) == 16961
  vocab = build_entity_vocab(sample_counts, 1000)
  got = entries(vocab)
  assert got[:3] == [("[PAD]", 0), ("[UNK]", 0), ("[MASK]", 0)]
  assert len(got) == 50  # every article of the sample linked from another one of it
  assert got[3:8] == [("Angola", 12), ("Aristotle", 12), ("Apollo", 7), ("Algeria", 4),
                      ("Appellate court", 4)]
  counts = [count for _, count in got[3:]]
  assert counts == sorted(counts, reverse=True) and min(counts) >= 1
  titles = [title for title, _ in got[3:]]
  assert set(titles) <= sample_counts.articles
  assert not set(titles) & set(sample_counts.redirects)
  loaded = EntityVocab.load(save_atomic(vocab, tmp_path / "entity_vocab.jsonl"))
  assert entries(loaded) == got


def test_workers_count_the_same(wiki_dump, sample_counts):
  parallel = count_links(wiki_dump, workers=2, chunk_size=4)
  assert parallel.counts == sample_counts.counts
  assert parallel.articles == sample_counts.articles
  assert parallel.stats == sample_counts.stats


def test_cli(tmp_path, wiki_dump):
  out = tmp_path / "entity_vocab.jsonl"
  result = subprocess.run(
      [sys.executable, "-m", "luke_jax.data.build_entity_vocab", f"--dump={wiki_dump}",
       f"--output={out}", "--vocab_size=20", "--language=en", "--include_mask2"],
      cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr
  print(result.stdout)
  assert "pages: 206 (articles 106, redirects 99, other namespaces 1, errors 0)" in result.stdout
  assert "links: 22649 to 16961 distinct targets" in result.stdout
  assert "  3\tAngola\t12" in result.stdout and "  12\t" in result.stdout
  assert "  13\t" not in result.stdout  # ten entities printed
  vocab = EntityVocab.load(out)
  assert len(vocab) == 21 and vocab.mask2_id == 20
  assert vocab.get_id("Aristotle", "en") == 4


def test_cli_rejects_a_missing_dump(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "luke_jax.data.build_entity_vocab", f"--dump={tmp_path / 'no.bz2'}",
       f"--output={tmp_path / 'v.jsonl'}"], cwd=REPO, capture_output=True, text=True,
      timeout=60, check=False)
  assert result.returncode != 0 and "no.bz2" in result.stderr
  assert not (tmp_path / "v.jsonl").exists()


# -- multilingual ----------------------------------------------------------------------------
def language_vocab(language: str, titles: list[tuple[str, int]]) -> EntityVocab:
  names = [("[PAD]", 0), ("[UNK]", 0), ("[MASK]", 0)] + titles
  return EntityVocab((i, [Entity(t, language)], c) for i, (t, c) in enumerate(names))


VOCABS = {
    "en": language_vocab("en", [("OnlyEn", 100), ("Tokyo", 10), ("Japan", 8), ("Paris", 5)]),
    "ja": language_vocab("ja", [("東京", 7), ("日本", 6), ("パリ", 1)]),
    "fr": language_vocab("fr", [("SansLien", 50), ("Paris", 9), ("Tokyo", 3), ("Japon", 2)]),
}
SITELINKS = {("en", "Tokyo"): "Q1490", ("ja", "東京"): "Q1490", ("fr", "Tokyo"): "Q1490",
             ("en", "Japan"): "Q17", ("ja", "日本"): "Q17", ("fr", "Japon"): "Q17",
             ("en", "Paris"): "Q90", ("ja", "パリ"): "Q90", ("fr", "Paris"): "Q90",
             ("en", "OnlyEn"): "Q999"}


def test_merge_shares_ids_sums_counts_and_drops_rare_items():
  vocab = multilingual.merge_vocabularies(VOCABS, SITELINKS, vocab_size=100)
  assert len(vocab) == 6
  assert vocab.get_entities(0) == [Entity("[PAD]", lang) for lang in ("en", "fr", "ja")]
  assert [vocab.get_count(i) for i in range(3, 6)] == [20, 16, 15]
  assert vocab.get_entities(3) == [Entity("Tokyo", "en"), Entity("Tokyo", "fr"),
                                   Entity("東京", "ja")]
  assert vocab.get_id("東京", "ja") == vocab.get_id("Tokyo", "fr") == 3
  assert vocab.get_id("Japon", "fr") == vocab.get_id("日本", "ja") == 4
  assert vocab.get_id("パリ", "ja") == 5
  assert not vocab.contains("OnlyEn", "en") and not vocab.contains("SansLien", "fr")


def test_merge_options(tmp_path):
  every = multilingual.merge_vocabularies(VOCABS, SITELINKS, 100, min_num_languages=1)
  assert [every.get_entities(i)[0].title for i in range(3, len(every))] == [
      "OnlyEn", "SansLien", "Tokyo", "Japan", "Paris"]
  small = multilingual.merge_vocabularies(VOCABS, SITELINKS, 5, include_mask2=True)
  assert len(small) == 6 and small.mask2_id == 5 and small.get_count(4) == 16
  loaded = EntityVocab.load(save_atomic(small, tmp_path / "mluke.jsonl"))
  assert loaded.get_id("東京", "ja") == 3 and loaded.lookup("fr:Japon") == 4


def test_load_sitelinks_formats(tmp_path):
  tsv = tmp_path / "sitelinks.tsv"
  tsv.write_text("# qid\tlang\ttitle\nQ1490\ten\tTokyo\nQ1490\tjawiki\t東京\n\nQ17\tfr\tJapon\n",
                 encoding="utf-8")
  jsonl = tmp_path / "sitelinks.jsonl"
  jsonl.write_text('{"qid": "Q1490", "lang": "en", "title": "Tokyo"}\n'
                   '{"id": "Q1490", "sitelinks": {"jawiki": {"title": "東京"}}}\n'
                   '{"id": "Q17", "sitelinks": {"frwiki": "Japon", "frwikiquote": "X"}}\n',
                   encoding="utf-8")
  wikidata = tmp_path / "latest-all.json.bz2"  # the Wikidata dump: an array, one entity a line
  entity = {"type": "item", "id": "Q1490", "sitelinks": {
      "enwiki": {"site": "enwiki", "title": "Tokyo", "badges": []},
      "jawiki": {"site": "jawiki", "title": "東京", "badges": []},
      "commonswiki": {"site": "commonswiki", "title": "Category:Tokyo", "badges": []},
      "enwikivoyage": {"site": "enwikivoyage", "title": "Tokyo", "badges": []}}}
  japon = {"type": "item", "id": "Q17", "sitelinks": {"frwiki": {"title": "Japon"}}}
  wikidata.write_bytes(bz2.compress(
      f"[\n{json.dumps(entity)},\n{json.dumps(japon)}\n]\n".encode()))
  want = {("en", "Tokyo"): "Q1490", ("ja", "東京"): "Q1490", ("fr", "Japon"): "Q17"}
  for path in (tsv, jsonl, wikidata):
    assert multilingual.load_sitelinks(path) == want, path.name
  assert multilingual.load_sitelinks(tsv, languages={"ja"}) == {("ja", "東京"): "Q1490"}
  bad = tmp_path / "bad.tsv"
  bad.write_text("Q1\ten\n", encoding="utf-8")
  with pytest.raises(ValueError, match="bad.tsv:1"):
    multilingual.load_sitelinks(bad)
