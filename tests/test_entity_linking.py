"""`luke_jax.pipeline("entity-linking")` and entity similarity on a tiny random model.

The model is random, so these tests check the plumbing the answers go through, against what
the pieces give on their own: mention spans and candidates from the dictionary, the decoder's
choice on the featurised document (global and local), offsets, refusals, and the entity table.
"""

from __future__ import annotations

import numpy as np
import pytest

import luke_jax
from ed_fixtures import TITLES, write_masked_lm, write_tokenizer
from luke_jax.data import mention_db as mention_db_lib
from luke_jax.disambiguation import features as features_lib
from luke_jax.disambiguation import runner
from luke_jax.disambiguation.documents import Candidate, Document, Mention
from luke_jax.inference.entity_linking import EntityLinkingPipeline
from luke_jax.inference.entity_similarity import EntityIndex
from luke_jax.tokenization.words import split_words

# name -> [(title, links)], most linked first; "Paris (mythology)" is outside the model's
# entity vocabulary, "covid" can only match inside the word "COVID-19".
NAMES = {
    "obama": [("Barack Obama", 8), ("Obama (surname)", 2)],
    "barack obama": [("Barack Obama", 5)],
    "paris": [("Paris (mythology)", 9), ("Paris", 5), ("Paris Hilton", 3)],
    "merkel": [("Angela Merkel", 4)],
    "france": [("France", 7)],
    "jordan": [("Jordan", 3), ("Michael Jordan", 2)],
    "covid": [("China", 1)],
    "nowhere land": [("Paris (mythology)", 1)],
}
TEXTS = ["Barack Obama met Merkel in Paris, France.",
         "Jordan scored; Obama watched from Paris while COVID-19 spread.",
         "Nothing to link here at all.",
         "In Nowhere Land only."]


def _write_db(path):
  names = list(NAMES)
  titles = sorted({t for cands in NAMES.values() for t, _ in cands})
  offsets, title_ids, counts = [0], [], []
  for name in names:
    for title, count in NAMES[name]:
      title_ids.append(titles.index(title))
      counts.append(count)
    offsets.append(len(title_ids))
  totals = [sum(c for _, c in NAMES[n]) for n in names]
  return mention_db_lib.write(path, names, np.array(totals), np.zeros(len(names), np.int64),
                              np.array(offsets), np.array(title_ids), np.array(counts), titles)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("linking")
  tokenizer_dir = write_tokenizer(root / "tokenizer")
  model_dir = write_masked_lm(root / "mlm", tokenizer_dir)
  db_dir = _write_db(root / "mention_db")
  return model_dir, db_dir


@pytest.fixture(scope="module")
def linker(setup):
  model_dir, db_dir = setup
  return luke_jax.pipeline("entity-linking", model=str(model_dir), mention_db=str(db_dir))


def _expected(linker, text, mode):
  """The answers computed from the pieces: words, dictionary, featurisation, decoder."""
  words = split_words(text)
  starts = {w.start: i for i, w in enumerate(words)}
  ends = {w.end: i for i, w in enumerate(words)}
  mentions = []
  for found in linker.mention_db.detect(text):
    if found.start in starts and found.end in ends:
      cands = [Candidate(c.title, c.prior_prob) for c in found.candidates
               if c.title in TITLES]
      if cands:
        mentions.append(Mention(found.text, None, starts[found.start], ends[found.end] + 1,
                                cands))
  document = Document("0", [w.text for w in words], mentions)
  rows = features_lib.featurize([document], linker.tokenizer, linker.feature_config)
  forward = runner.compiled_forward(linker.module, linker.params, linker.tokenizer, mode)
  out = forward({k: v for k, v in rows.arrays.items() if k in runner.INPUT_KEYS})
  answers = rows.predictions([document], out["choice"], out["score"])[0]
  return [(words[m.start].start, words[m.end - 1].end, a.title, a.score)
          for m, a in zip(mentions, answers)]


@pytest.mark.parametrize("mode", ["global", "local"])
def test_links_equal_the_pieces_answers(setup, mode):
  model_dir, db_dir = setup
  linker = luke_jax.pipeline("entity-linking", model=str(model_dir), mention_db=str(db_dir),
                             inference_mode=mode)
  results = linker(TEXTS)
  assert len(results) == len(TEXTS)
  for text, links in zip(TEXTS, results):
    expected = _expected(linker, text, mode)
    assert [(l["start"], l["end"], l["title"]) for l in links] == [e[:3] for e in expected]
    np.testing.assert_allclose([l["score"] for l in links], [e[3] for e in expected],
                               rtol=1e-5)
    for link in links:
      assert set(link) == {"start", "end", "text", "title", "score"}
      assert link["text"] == text[link["start"]:link["end"]]
      assert link["title"] in TITLES and 0.0 < link["score"] <= 1.0
  first = [l["text"] for l in results[0]]
  assert first == ["Barack Obama", "Merkel", "Paris", "France"]  # longest match first
  # Paris's most linked title is outside the entity table: never answered.
  assert all(l["title"] != "Paris (mythology)" for links in results for l in links)
  # "COVID" ends inside the word "COVID-19"; "Nowhere Land" has no candidate the model knows.
  assert "COVID" not in [l["text"] for l in results[1]]
  assert results[2] == [] and results[3] == []


def test_single_text_gives_one_list_and_mentions_are_listed(linker):
  links = linker(TEXTS[0])
  assert isinstance(links, list) and all(isinstance(l, dict) for l in links)
  spans = linker.mentions(TEXTS[0])
  assert [(s, e) for s, e, _ in spans] == [(l["start"], l["end"]) for l in links]
  paris = next(c for s, e, c in spans if TEXTS[0][s:e] == "Paris")
  assert [c.title for c in paris] == ["Paris", "Paris Hilton"]


def test_ner_spans_are_the_mentions(setup):
  model_dir, db_dir = setup

  class FixedNer:  # a NER pipeline's output: entities with character spans
    def __call__(self, text):
      start = text.index("Obama")
      return [{"start": start, "end": start + 5, "text": "Obama", "label": "PER", "score": 1.0}]

  linker = luke_jax.pipeline("entity-linking", model=str(model_dir), mention_db=str(db_dir),
                             ner=FixedNer())
  links = linker(TEXTS[1])
  assert [l["text"] for l in links] == ["Obama"]
  assert links[0]["title"] in ("Barack Obama", "Obama (surname)")


def test_long_text_is_split_and_every_mention_answered(setup):
  model_dir, db_dir = setup
  linker = luke_jax.pipeline("entity-linking", model=str(model_dir), mention_db=str(db_dir),
                             max_seq_length=32, document_split_mode="per_mention")
  text = " ".join(["Obama met Merkel in Paris and France ."] * 12)
  links = linker(text)
  assert len(links) == 12 * 4
  assert all(link["text"] == text[link["start"]:link["end"]] for link in links)


def test_refusals(setup, tmp_path):
  model_dir, db_dir = setup
  with pytest.raises(ValueError, match="inference_mode"):
    luke_jax.pipeline("entity-linking", model=str(model_dir), mention_db=str(db_dir),
                      inference_mode="greedy")
  with pytest.raises(TypeError, match="mention_db"):
    luke_jax.pipeline("entity-linking", model=str(model_dir))
  with pytest.raises(FileNotFoundError, match="not a .*mention database"):
    luke_jax.pipeline("entity-linking", model=str(model_dir), mention_db=str(tmp_path))
  # A checkpoint without the masked-entity head cannot link.
  from conftest import write_finetune_base
  base = write_finetune_base(tmp_path / "base", model_dir)
  with pytest.raises(ValueError, match="masked-entity head"):
    luke_jax.pipeline("entity-linking", model=str(base), mention_db=str(db_dir))


def test_entity_embeddings_and_nearest(linker):
  table = np.asarray(linker.params["luke"]["entity_embeddings"]["entity_embeddings"]["embedding"])
  vocab = linker.tokenizer.entity_vocab
  got = linker.entity_embeddings(["Paris", "Japan"])
  np.testing.assert_array_equal(got, table[[vocab.get_id("Paris"), vocab.get_id("Japan")]])
  nearest = linker.nearest_entities("Paris", k=3)
  unit = table / np.linalg.norm(table, axis=1, keepdims=True)
  scores = unit[4:4 + len(TITLES)] @ unit[vocab.get_id("Paris")]
  order = [TITLES[i] for i in np.argsort(-scores) if TITLES[i] != "Paris"][:3]
  assert [t for t, _ in nearest] == order
  np.testing.assert_allclose([s for _, s in nearest], sorted(scores)[-4:-1][::-1], rtol=1e-5)
  by_vector = linker.nearest_entities(table[vocab.get_id("Paris")], k=1)
  assert by_vector[0][0] == "Paris"  # a vector is nearest to its own title
  with pytest.raises(KeyError, match="Atlantis"):
    linker.entity_embeddings(["Atlantis"])
  with pytest.raises(KeyError, match="MASK"):
    linker.entity_embeddings(["[MASK]"])


def test_entity_index_never_returns_specials():
  from luke_jax.tokenization.entity_vocab import EntityVocab
  vocab = EntityVocab.from_dict({"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "A": 3, "B": 4})
  table = np.eye(5, 3, dtype=np.float32) + 0.1
  index = EntityIndex(table, vocab)
  assert {t for t, _ in index.nearest("A", k=10)} == {"B"}
  with pytest.raises(ValueError, match="wide"):
    index.nearest(np.zeros(4, np.float32))
