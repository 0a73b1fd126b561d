"""The mention database: normalisation (against BERT's BasicTokenizer), building from a
hand-written dump (counts, redirects, priors, cuts, link probability, titles and redirects as
names, held-out pages), storage (memory-mapped load, damaged directories, overwriting),
`detect`, the CLI, and the real enwiki sample."""

import bz2
import json
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest

from luke_jax.data import mention_db, mention_names
from luke_jax.data.mention_db import MentionDB, MentionDBError, normalize_mention
from luke_jax.data.mention_db_builder import build, is_disambiguation, title_names
from luke_jax.data.wikipedia import DumpError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "samples" / "enwiki-sample.xml.bz2"


def dump_xml(pages: list[tuple]) -> str:
  """A MediaWiki export of `(title, redirect target or None, wikitext[, namespace])` pages."""
  body = []
  for i, (title, redirect, text, *ns) in enumerate(pages, 1):
    tag = f'<redirect title="{escape(redirect)}" />' if redirect else ""
    body.append(f"<page><title>{escape(title)}</title><ns>{ns[0] if ns else 0}</ns>"
                f"<id>{i}</id>{tag}<revision><text>{escape(text)}</text></revision></page>\n")
  return ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" xml:lang="en">\n'
          + "".join(body) + "</mediawiki>\n")


PAGES = [
    ("Mercury (planet)", None, "'''Mercury''' is a planet. [[Mercury (element)|Mercury]] is a "
                               "metal. The [[Sun]] is near [[Venus]]."),
    ("Mercury (element)", None, "[[Mercury (planet)|Mercury]] and [[Mercury (planet)|mercury]] "
                                "orbit the [[Sun|sun]], a [[Planet|planet]]? No. See [[Hg]]. "
                                "[[Category:Metals]] [[Wikipedia:About|about]] "
                                "[[wikt:mercury|mercury]]"),
    ("Sun", None, "The '''Sun''' is no planet. [[Mercury (planet)|Mercury]] is close. "
                  "[[Venus (planet)|Venus]]"),
    ("Mercury (disambiguation)", None, "'''Mercury''' may be [[Mercury (planet)]] or "
                                       "[[Mercury (element)]].\n{{disambiguation}}"),
    ("Held Out", None, "[[Sun|Mercury]] and the [[Sun]]."),
    ("Hg", "Mercury (element)", "#REDIRECT [[Mercury (element)]]"),
    ("Hydrargyrum", "Hg", "#REDIRECT [[Hg]]"),
    ("Quicksilver", "Mercury (element)", "#REDIRECT [[Mercury (element)]]"),
    ("Venus", "Venus (planet)", "#REDIRECT [[Venus (planet)]]"),
    ("Mercury (disambig)", "Mercury (disambiguation)", "#REDIRECT [[Mercury (disambiguation)]]"),
    ("Category:Metals", None, "Metals. [[Sun]]", 14),
]


@pytest.fixture(scope="module")
def tiny_dump(tmp_path_factory):
  path = tmp_path_factory.mktemp("dump") / "tiny.xml.bz2"
  path.write_bytes(bz2.compress(dump_xml(PAGES).encode()))
  return path


@pytest.fixture(scope="module")
def tiny_db(tiny_dump, tmp_path_factory):
  path = tmp_path_factory.mktemp("db") / "db"
  summary = build(tiny_dump, path, min_link_prob=0.01)
  return summary, MentionDB.load(path)


def table(db: MentionDB, name: str) -> list[tuple[str, int, int]]:
  return [(c.title, c.link_count, c.total_link_count) for c in db.query(name)]


def built(dump, tmp_path, **options) -> MentionDB:
  path = tmp_path / f"db{len(list(tmp_path.iterdir()))}"
  build(dump, path, **options)
  return MentionDB.load(path)


# -- normalisation ---------------------------------------------------------------------------
STRINGS = [
    "Barack Obama", "AC/DC", "U.S.A.", "naïve café", "Σίσυφος", "Straße", "e\u0301cole",
    "x\u1fefy", "a\u2260b ≮", "İstanbul", "line\u2028break", "a\x00b\u200bc\ufffdd\x07",
    "Ǆemal", "½ ① Ⅻ ﬁne", "“quoted” «guillemets»", "don't stop—now", "Å-ström", "C++ & C#",
    "  spaced \t out\n", "$100 ^2 `tick` ~tilde", "Zürich (city)", "François Hollande's",
    "東京タワー and 北京", "𝐀𝐁 bold 𐄀", "",
]


def test_normalisation_matches_bert_basic_tokenizer():
  try:  # transformers 5 keeps the slow BERT tokenizer's pieces in a legacy module
    from transformers.models.bert.tokenization_bert_legacy import BasicTokenizer
  except ImportError:
    try:
      from transformers.models.bert.tokenization_bert import BasicTokenizer
    except ImportError:
      pytest.skip("transformers' BasicTokenizer is not installed")
  bert = BasicTokenizer(do_lower_case=True)
  for text in STRINGS:
    assert normalize_mention(text) == " ".join(bert.tokenize(text)), repr(text)
    assert normalize_mention(normalize_mention(text)) == normalize_mention(text)


def test_tokens_carry_offsets_into_the_original_text():
  text = "Café  Müller's e\u0301x!"
  tokens = mention_db.tokenize(text)
  assert [t for t, _, _ in tokens] == ["cafe", "muller", "'", "s", "ex", "!"]
  assert [text[s:e] for _, s, e in tokens] == ["Café", "Müller", "'", "s", "e\u0301x", "!"]
  assert mention_db.words(text) == [t for t, _, _ in tokens]


def test_ngram_hashes_equal_name_hashes():
  words = ["new", "york", "city", "hall"]
  hashes, starts, lengths = mention_names.ngram_hashes(mention_names.token_hashes(words), 3)
  names = [" ".join(words[s:s + n]) for s, n in zip(starts, lengths)]
  assert len(names) == 4 + 3 + 2
  np.testing.assert_array_equal(hashes, mention_names.name_hashes(names))
  assert len(set(hashes.tolist())) == len(names)


# -- building --------------------------------------------------------------------------------
def test_title_names_and_disambiguation_pages():
  assert title_names("Mercury (planet)") == {"mercury ( planet )", "mercury"}
  assert title_names("Star Wars: Episode I") == {"star wars : episode i"}
  assert title_names("(Untitled)") == {"( untitled )"}
  for text in ("{{disambiguation}}", "{{Disambig|geo}}", "{{ dab }}", "{{hndis|Smith}}",
               "{{Human name disambiguation}}"):
    assert is_disambiguation("Foo", text), text
  for text in ("{{Disambiguation needed|date=May}}", "{{dablink}}", "disambiguation"):
    assert not is_disambiguation("Foo", text), text
  assert is_disambiguation("Foo (disambiguation)", "")


def test_counts_redirects_priors_and_titles(tiny_db):
  summary, db = tiny_db
  assert (summary.articles, summary.redirects, summary.other_namespaces) == (5, 5, 1)
  # Anchors read: 3 + 7 (the category link is none) + 2 + 2 + 2; the Wikipedia: and wikt:
  # ones are dropped with their targets.
  assert summary.anchors == 16
  # Anchors + the titles "Mercury (planet)" and "Mercury (element)" without their qualifier.
  assert table(db, "Mercury") == [("Mercury (planet)", 4, 7), ("Mercury (element)", 2, 7),
                                  ("Sun", 1, 7)]
  priors = [c.prior_prob for c in db.query("mercury")]
  assert priors == pytest.approx([4 / 7, 2 / 7, 1 / 7])
  assert table(db, "sun") == [("Sun", 4, 4)]
  assert table(db, "Venus") == [("Venus (planet)", 3, 3)]  # 2 anchors + the redirect
  assert table(db, "hg") == [("Mercury (element)", 2, 2)]  # anchor resolved + redirect
  assert table(db, "Hydrargyrum") == [("Mercury (element)", 1, 1)]  # a redirect chain
  assert table(db, "mercury (planet)") == [("Mercury (planet)", 2, 2)]
  assert table(db, "Held Out") == [("Held Out", 1, 1)]
  # Disambiguation pages give no names, nor do redirects to them.
  assert "mercury ( disambiguation )" not in db and "mercury (disambig)" not in db
  assert "Mercury (disambiguation)" not in {c.title for c in db.query("mercury")}
  assert db.query("about") == [] and db.query("metals") == []
  assert set(db.titles()) == {"Mercury (planet)", "Mercury (element)", "Sun", "Venus (planet)",
                              "Planet", "Held Out"}
  assert len(db) == summary.names == 10


def test_doc_counts_and_link_probability(tiny_dump, tiny_db, tmp_path):
  _, db = tiny_db
  docs = {name: db.query(name)[0].doc_count for name in ("mercury", "sun", "planet", "hg",
                                                         "quicksilver", "held out")}
  # "quicksilver" is in no text: the page it redirects to counts; "held out": its own page.
  assert docs == {"mercury": 5, "sun": 4, "planet": 4, "hg": 1, "quicksilver": 1,
                  "held out": 1}
  planet = db.query("planet")[0]
  assert planet.link_prob == pytest.approx(1 / 4) and db.query("mercury")[0].link_prob == 1.0
  strict = built(tiny_dump, tmp_path, min_link_prob=0.3)
  assert "planet" not in strict and "mercury" in strict and "quicksilver" in strict
  no_docs = built(tiny_dump, tmp_path, min_link_prob=0.0)
  assert no_docs.query("planet")[0].doc_count == 0 and no_docs.query("planet")[0].link_prob == 0
  assert not no_docs.has_doc_counts and db.has_doc_counts
  with pytest.raises(MentionDBError, match="without doc counts"):
    no_docs.detect("planet", min_link_prob=0.1)


def test_top_k_min_count_and_length(tiny_dump, tmp_path):
  top1 = built(tiny_dump, tmp_path, max_candidates=1)
  assert table(top1, "mercury") == [("Mercury (planet)", 4, 7)]  # total before the cut
  frequent = built(tiny_dump, tmp_path, min_link_count=2)
  assert table(frequent, "mercury") == [("Mercury (planet)", 4, 7), ("Mercury (element)", 2, 7)]
  assert "held out" not in frequent and "planet" not in frequent
  short = built(tiny_dump, tmp_path, max_mention_length=2)
  assert "mercury (planet)" not in short and "held out" in short
  assert short.meta["longest_name"] == 2


def test_titles_redirects_and_held_out_pages(tiny_dump, tmp_path):
  no_titles = built(tiny_dump, tmp_path, include_titles=False)
  assert table(no_titles, "mercury") == [("Mercury (planet)", 3, 5), ("Mercury (element)", 1, 5),
                                         ("Sun", 1, 5)]
  assert "held out" not in no_titles
  no_redirects = built(tiny_dump, tmp_path, include_redirects=False)
  assert table(no_redirects, "venus") == [("Venus (planet)", 2, 2)]
  assert "quicksilver" not in no_redirects and "hydrargyrum" not in no_redirects
  held_out = built(tiny_dump, tmp_path, exclude_titles=["Held_Out"])
  assert table(held_out, "mercury") == [("Mercury (planet)", 4, 6), ("Mercury (element)", 2, 6)]
  assert table(held_out, "sun") == [("Sun", 3, 3)]
  assert held_out.query("mercury")[0].doc_count == 4  # its text is not read
  assert table(held_out, "held out") == [("Held Out", 1, 1)]  # its title still counts
  assert held_out.meta["stats"]["excluded"] == 1


def test_workers_build_the_same_database(tiny_dump, tiny_db, tmp_path):
  parallel = built(tiny_dump, tmp_path, workers=2, chunk_size=1)
  _, db = tiny_db
  for column in mention_db.COLUMNS:
    np.testing.assert_array_equal(parallel._c[column], db._c[column], err_msg=column)


# -- storage ---------------------------------------------------------------------------------
def test_load_is_memory_mapped(tiny_db):
  _, db = tiny_db
  assert all(isinstance(column.base, np.memmap) for column in db._c.values())
  meta = json.loads((db.path / "meta.json").read_text())
  assert meta["format"] == "luke-jax-mention-db" and meta["partial"] is None
  assert meta["num_names"] == len(db) and meta["options"]["max_candidates"] == 100


def test_damaged_or_foreign_directories_are_refused(tiny_db, tmp_path):
  _, db = tiny_db
  with pytest.raises(FileNotFoundError, match="no such mention database"):
    MentionDB.load(tmp_path / "absent")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="meta.json"):
    MentionDB.load(tmp_path / "empty")

  def copy(name: str) -> Path:
    target = tmp_path / name
    target.mkdir()
    for file in db.path.iterdir():
      (target / file.name).write_bytes(file.read_bytes())
    return target

  foreign = copy("foreign")
  (foreign / "meta.json").write_text('{"format": "something-else"}')
  with pytest.raises(MentionDBError, match="not a luke-jax mention database"):
    MentionDB.load(foreign)
  missing = copy("missing")
  (missing / "doc_count.npy").unlink()
  with pytest.raises(FileNotFoundError, match="doc_count.npy"):
    MentionDB.load(missing)
  corrupt = copy("corrupt")
  data = (corrupt / "candidate_title.npy").read_bytes()
  (corrupt / "candidate_title.npy").write_bytes(data[:len(data) // 2])
  with pytest.raises(MentionDBError, match="candidate_title.npy"):
    MentionDB.load(corrupt)
  mixed = copy("mixed")
  np.save(mixed / "doc_count.npy", np.zeros(3, np.int32))
  with pytest.raises(MentionDBError, match="doc_count.npy: 3 entries"):
    MentionDB.load(mixed)


def test_existing_outputs_are_not_overwritten_by_default(tiny_dump, tmp_path):
  path = tmp_path / "db"
  build(tiny_dump, path, min_link_prob=0)
  with pytest.raises(FileExistsError, match="--overwrite"):
    build(tiny_dump, path, min_link_prob=0)
  build(tiny_dump, path, min_link_prob=0, max_candidates=1, overwrite=True)
  assert MentionDB.load(path).meta["options"]["max_candidates"] == 1
  assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]  # no temporary left
  user = tmp_path / "user"
  user.mkdir()
  (user / "notes.txt").write_text("mine")
  with pytest.raises(FileExistsError, match="not a mention database"):
    build(tiny_dump, user, min_link_prob=0, overwrite=True)
  assert (user / "notes.txt").read_text() == "mine"
  (path / "notes.txt").write_text("mine too")
  with pytest.raises(FileExistsError, match="not the database's"):
    build(tiny_dump, path, min_link_prob=0, overwrite=True)
  assert (path / "notes.txt").exists()
  (tmp_path / "empty").mkdir()
  build(tiny_dump, tmp_path / "empty", min_link_prob=0)  # an empty directory is taken
  assert len(MentionDB.load(tmp_path / "empty")) > 0


def test_truncated_dump_is_refused_unless_allowed(tmp_path):
  xml = dump_xml(PAGES)
  cut = tmp_path / "cut.xml"
  cut.write_text(xml[:xml.index("<page><title>Held Out")] + "<page><title>Bro", encoding="utf-8")
  with pytest.raises(DumpError, match="truncated"):
    build(cut, tmp_path / "db")
  assert not (tmp_path / "db").exists()
  build(cut, tmp_path / "db", allow_truncated_dump=True)
  db = MentionDB.load(tmp_path / "db")
  assert db.meta["partial"].startswith("PARTIAL") and "mercury" in db


def test_writer_checks_its_arrays(tmp_path):
  with pytest.raises(MentionDBError, match="outside the 1 titles"):
    mention_db.write(tmp_path / "db", ["a"], [1], [0], [0, 1], [1], [1], ["A"])
  with pytest.raises(MentionDBError, match="'a' is given twice"):
    mention_db.write(tmp_path / "db", ["a", "a"], [1, 1], [0, 0], [0, 1, 2], [0, 0], [1, 1],
                     ["A"])
  with pytest.raises(MentionDBError, match="newline"):
    mention_db.write(tmp_path / "db", ["a"], [1], [0], [0, 1], [0], [1], ["A\nB"])
  assert not (tmp_path / "db").exists()
  mention_db.write(tmp_path / "empty", [], [], [], [0], [], [], [])
  empty = MentionDB.load(tmp_path / "empty")
  assert len(empty) == 0 and empty.query("a") == [] and empty.detect("a b") == []


# -- detect ----------------------------------------------------------------------------------
def small_db(tmp_path, names: list[str]) -> MentionDB:
  titles = [name.title() for name in names]
  n = len(names)
  mention_db.write(tmp_path / "small", names, np.full(n, 2), np.full(n, 4), np.arange(n + 1),
                   np.arange(n), np.full(n, 2), titles, {"doc_counts": True})
  return MentionDB.load(tmp_path / "small")


def test_detect_longest_leftmost_non_overlapping(tmp_path):
  db = small_db(tmp_path, ["new york", "york city", "city", "new", "hall", "cafe muller"])
  text = "In New York City Hall, the Café Müller's."
  found = db.detect(text)
  assert [(m.text, m.candidates[0].title) for m in found] == [
      ("New York", "New York"), ("City", "City"), ("Hall", "Hall"),
      ("Café Müller", "Cafe Muller")]
  assert all(text[m.start:m.end] == m.text for m in found)
  assert [m.text for m in db.detect(text, max_mention_length=1)] == ["New", "City", "Hall"]
  assert db.detect(text, min_link_prob=0.6) == [] and len(db.detect(text, min_link_prob=0.5)) == 4
  assert db.detect("") == [] and db.detect("nothing known") == []
  assert db.query("NEW  York")[0] == mention_db.MentionCandidate("New York", 2, 2, 4, 1.0, 0.5)


def test_detect_on_the_built_database(tiny_db):
  _, db = tiny_db
  text = "Mercury orbits the Sun; mercury (planet) is near Venus."
  found = db.detect(text, max_candidates=2)
  assert [(text[m.start:m.end], m.candidates[0].title) for m in found] == [
      ("Mercury", "Mercury (planet)"), ("Sun", "Sun"), ("mercury (planet)", "Mercury (planet)"),
      ("Venus", "Venus (planet)")]
  assert len(found[0].candidates) == 2


# -- command line ----------------------------------------------------------------------------
def test_cli(tiny_dump, tmp_path):
  titles = tmp_path / "held_out.txt"
  titles.write_text("Held Out\n\n")
  result = subprocess.run(
      [sys.executable, "-m", "luke_jax.data.build_mention_db", f"--dump={tiny_dump}",
       f"--output={tmp_path / 'db'}", f"--exclude_titles={titles}", "--max_candidates=2",
       "--noinclude_redirects"], cwd=REPO, capture_output=True, text=True, timeout=120,
      check=False)
  assert result.returncode == 0, result.stderr
  assert "pages: 11 (articles 5, redirects 5, other namespaces 1, excluded 1, errors 0)" in (
      result.stdout)
  assert "anchors: 14" in result.stdout and "names," in result.stdout
  db = MentionDB.load(tmp_path / "db")
  assert table(db, "mercury") == [("Mercury (planet)", 4, 6), ("Mercury (element)", 2, 6)]
  assert "quicksilver" not in db


def test_cli_rejects_a_missing_dump(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "luke_jax.data.build_mention_db", f"--dump={tmp_path / 'no.bz2'}",
       f"--output={tmp_path / 'db'}"], cwd=REPO, capture_output=True, text=True, timeout=60,
      check=False)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "no.bz2" in lines[0] and "error" in lines[0]
  assert not (tmp_path / "db").exists()


# -- the real sample -------------------------------------------------------------------------
@pytest.mark.skipif(not SAMPLE.exists(), reason="run `make samples` for the enwiki sample")
def test_enwiki_sample(tmp_path):
  summary = build(SAMPLE, tmp_path / "db", max_candidates=1000)
  db = MentionDB.load(tmp_path / "db")
  assert summary.stats.pages == 206 and summary.anchors > 22000
  assert 10_000 < len(db) == summary.names and summary.titles > 10_000
  counts = np.diff(db._c["candidate_offsets"])
  ambiguous = np.flatnonzero(counts > 1)
  assert len(ambiguous) > 200
  # With no cut, a name's candidates hold all its links: priors sum to 1.
  for i in ambiguous[:50]:
    candidates = db._candidates(int(i), None)
    assert sum(c.prior_prob for c in candidates) == pytest.approx(1.0)
    assert [c.link_count for c in candidates] == sorted((c.link_count for c in candidates),
                                                        reverse=True)
  assert db.query("Aristotle")[0].title == "Aristotle"
  assert {c.title for c in db.query("Greek")} >= {"Greek language", "Ancient Greek"}
  found = db.detect("Aristotle taught Alexander the Great in Macedonia.")
  assert [m.text for m in found][:2] == ["Aristotle", "Alexander the Great"]
  assert all(0 < c.link_prob <= 1 for m in found for c in m.candidates)
