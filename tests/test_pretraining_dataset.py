"""Pages -> examples -> ArrayRecord dataset -> `read_pretraining_examples`, on the real sample."""

import collections

import numpy as np
import pytest

from luke_jax.data import dataset, wikipedia
from luke_jax.data.examples import ExampleBuilder, ExampleConfig
from luke_jax.tokenization.entity_vocab import Entity, EntityVocab
from luke_jax.tokenization.tokenizer import LukeTokenizer

CONFIG = dict(max_seq_length=96, max_entity_length=16, max_mention_length=6)
N_DOCS = 12


@pytest.fixture(scope="module")
def corpus(wiki_dump, luke_dir, tmp_path_factory):
  """The first pages of the sample, their redirects, and an entity vocabulary of their links."""
  redirects = wikipedia.read_redirects(wiki_dump)
  pages = [p for p in wikipedia.iter_pages(wiki_dump) if p.redirect is None][:N_DOCS]
  counts = collections.Counter(wikipedia.resolve(link.title, redirects)
                               for p in pages for par in p.paragraphs for link in par.links)
  # Leave the rarest titles out so unknown links are exercised too.
  kept = [t for t, c in counts.most_common() if c > 1]
  vocab = EntityVocab([(0, [Entity("[PAD]")], 0), (1, [Entity("[UNK]")], 0),
                       (2, [Entity("[MASK]")], 0)]
                      + [(i + 3, [Entity(t)], counts[t]) for i, t in enumerate(kept)])
  path = tmp_path_factory.mktemp("vocab") / "entity_vocab.jsonl"
  vocab.save(path)
  return pages, redirects, vocab, path


def _check_examples(examples, pages, tokenizer, vocab, max_mention_length):
  anchors = collections.defaultdict(set)
  for page in pages:
    for par in page.paragraphs:
      for link in par.links:
        anchors[page.page_id].add(link.anchor.strip())
  assert examples
  for ex in examples:
    words = ex["word_ids"]
    positions = ex["entity_position_ids"]
    assert positions.shape == (len(ex["entity_ids"]), max_mention_length)
    assert len(words) <= CONFIG["max_seq_length"] - 2
    assert len(ex["entity_ids"]) <= CONFIG["max_entity_length"]
    for eid, row in zip(ex["entity_ids"], positions):
      pos = row[row >= 0]
      assert len(pos) >= 1 and pos.max() < len(words), "mention outside the words"
      assert np.array_equal(pos, np.arange(pos[0], pos[0] + len(pos))), "mention not contiguous"
      text = tokenizer.decode(words[pos]).strip()
      if len(pos) < max_mention_length:  # a full row may have been cut at the mention limit
        assert text in anchors[int(ex["page_id"])], (text, int(ex["page_id"]))
      assert eid != vocab.pad_id and eid != vocab.mask_id


@pytest.mark.slow
def test_examples_decode_to_their_anchors(corpus, luke_dir):
  pages, redirects, vocab, _ = corpus
  tokenizer = LukeTokenizer.from_pretrained(luke_dir)
  builder = ExampleBuilder(tokenizer, vocab, redirects, ExampleConfig(**CONFIG))
  examples = [ex for page in pages for ex in builder(page)]
  _check_examples(examples, pages, tokenizer, vocab, CONFIG["max_mention_length"])
  assert builder.stats["links_unknown"] > 0
  assert all(vocab.unk_id not in ex["entity_ids"] for ex in examples)
  with_unk = ExampleBuilder(tokenizer, vocab, redirects,
                            ExampleConfig(include_unk_entities=True, **CONFIG))
  unk_examples = [ex for page in pages for ex in with_unk(page)]
  assert any(vocab.unk_id in ex["entity_ids"] for ex in unk_examples)


@pytest.mark.slow
def test_dataset_build_read_and_resume(corpus, luke_dir, wiki_dump, tmp_path, monkeypatch):
  pages, _, vocab, vocab_path = corpus
  out = tmp_path / "dataset"
  # First attempt dies part-way (as a killed job would): nothing may look complete.
  real = dataset.generate_examples

  def dying(**kwargs):
    for i, item in enumerate(real(**kwargs)):
      if i == 20:
        raise KeyboardInterrupt("killed")
      yield item

  monkeypatch.setattr(dataset, "generate_examples", dying)
  with pytest.raises(KeyboardInterrupt):
    dataset.build(wiki_dump, luke_dir, vocab_path, out, config=CONFIG, workers=1,
                  max_num_documents=N_DOCS)
  assert not (out / "metadata.json").exists()
  with pytest.raises(FileNotFoundError, match="did not finish"):
    list(dataset.read_pretraining_examples(out))
  monkeypatch.setattr(dataset, "generate_examples", real)

  meta = dataset.build(wiki_dump, luke_dir, vocab_path, out, config=CONFIG, workers=2,
                       max_num_documents=N_DOCS)
  examples = list(dataset.read_pretraining_examples(out))
  assert meta["number_of_items"] == len(examples) > 0
  assert not list((out / dataset.RECORDS / dataset.NAME).glob("incomplete.*"))
  tokenizer = LukeTokenizer.from_pretrained(out)  # the tokenizer travels with the data
  _check_examples(examples, pages, tokenizer, EntityVocab.load(out / "entity_vocab.jsonl"),
                  CONFIG["max_mention_length"])
  # The same examples as building in-process, none duplicated or lost.
  builder = ExampleBuilder(tokenizer, vocab, wikipedia.read_redirects(wiki_dump),
                           ExampleConfig(**CONFIG))
  expected = sorted((int(e["page_id"]), e["word_ids"].tobytes()) for p in pages
                    for e in builder(p))
  assert sorted((int(e["page_id"]), e["word_ids"].tobytes()) for e in examples) == expected
  for key in ("word_ids", "entity_ids", "entity_position_ids"):
    assert examples[0][key].dtype == np.int32
  # Rerunning with the same arguments is a no-op; with others it refuses.
  assert dataset.build(wiki_dump, luke_dir, vocab_path, out, config=CONFIG, workers=1,
                       max_num_documents=N_DOCS) == meta
  with pytest.raises(FileExistsError):
    dataset.build(wiki_dump, luke_dir, vocab_path, out, config=dict(CONFIG, max_seq_length=64),
                  workers=1, max_num_documents=N_DOCS)
