"""Entity disambiguation data: the official format's reader, featurisation, splits, metric."""

import numpy as np
import pytest

from ed_fixtures import write_dataset, write_tokenizer
from luke_jax.disambiguation import dataset, features, metric
from luke_jax.disambiguation.documents import Candidate, Document, Mention
from luke_jax.finetune.task import DataError
from luke_jax.tokenization.tokenizer import LukeTokenizer


@pytest.fixture(scope="module")
def ed_dir(tmp_path_factory):
  return write_dataset(tmp_path_factory.mktemp("ed"))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  return LukeTokenizer.from_pretrained(write_tokenizer(tmp_path_factory.mktemp("ed_tok")))


@pytest.fixture(scope="module")
def data(ed_dir):
  return dataset.load_dataset(ed_dir, ("train", "test_a", "test_b", "ace2004"),
                              titles_file=ed_dir / "titles.txt",
                              redirects_file=ed_dir / "redirects.tsv")


# ---- the reader ----------------------------------------------------------------------------


def _mentions(doc):
  return [(m.text, m.title, m.start, m.end, [(c.title, c.prior) for c in m.candidates])
          for m in doc.mentions]


def test_read_train(data):
  docs = data["train"]
  # Jiří_Třanovský is excluded (as Le and Titov).
  assert [d.id for d in docs] == ["1 EU", "2 SPORT"]
  eu, sport = docs
  # The sentence break is an empty word, as the reference reads it.
  assert eu.words == ["Barack", "Obama", "met", "Merkel", "in", "Paris", ".", "", "Obama",
                      "left", "for", "Japan", "."]
  assert _mentions(eu) == [
      ("Barack Obama", "Barack Obama", 0, 2, [("Barack Obama", 0.9), ("Obama (surname)", 0.1)]),
      ("Merkel", "Angela Merkel", 3, 4, [("Angela Merkel", 0.8)]),
      # Sorted by prior, gold and candidate "Paris, France" redirected to Paris.
      ("Paris", "Paris", 5, 6, [("Paris", 0.7), ("Paris Hilton", 0.2),
                                ("Paris (mythology)", 0.1)]),
      # Coreference: the candidates of "Barack Obama" (a person), averaged over 1 mention.
      ("Obama", "Barack Obama", 8, 9, [("Barack Obama", 0.9), ("Obama (surname)", 0.1)]),
      ("Japan", "Japan", 11, 12, []),  # EMPTYCAND
  ]
  # "China" has no gold: skipped, and its marked span passed over when aligning.
  assert _mentions(sport) == [
      ("Jordan", "Michael Jordan", 0, 1, [("Jordan", 0.5), ("Michael Jordan", 0.5)]),
      ("Syria", "Syria", 6, 7, [("Syria", 1.0)]),
      ("Paris", "Paris", 8, 9, [("Paris", 0.9), ("Paris Hilton", 0.1)]),
  ]


def test_read_tests_titles_filter_and_amp(data):
  (cricket,) = data["test_a"]
  (soccer,) = data["test_b"]
  assert cricket.id == "947testa CRICKET" and [m.title for m in cricket.mentions] == [
      "France", "Japan national football team"]
  # &amp; unescaped; Michael Jordan (footballer) is not in the titles file: dropped.
  assert [(m.text, m.title, m.start, m.end) for m in soccer.mentions] == [
      ("JAPAN", "Japan national football team", 2, 3), ("CHINA", "China", 6, 7),
      ("AT&T", "AT&T", 11, 12)]
  (ace,) = data["ace2004"]
  assert [m.title for m in ace.mentions] == ["Angela Merkel", "France"]


def test_read_without_side_files(ed_dir):
  (soccer,) = dataset.load_dataset(ed_dir, ("test_b",))["test_b"]
  assert soccer.mentions[-1].title == "Michael Jordan (footballer)"
  (eu, _) = dataset.load_dataset(ed_dir, ("train",))["train"]
  assert eu.mentions[2].title == "Paris, France"
  assert [c.title for c in eu.mentions[2].candidates][:2] == ["Paris, France", "Paris Hilton"]


def test_reader_errors(ed_dir, tmp_path):
  for name in ("aida_train.txt", "aida_train.csv", "persons.txt"):
    (tmp_path / name).write_text((ed_dir / name).read_text(encoding="utf-8"), encoding="utf-8")
  persons = dataset.read_persons(tmp_path / "persons.txt")
  csv, conll = tmp_path / "aida_train.csv", tmp_path / "aida_train.txt"
  lines = csv.read_text(encoding="utf-8").splitlines()
  csv.write_text("\n".join(lines[:2] + ["1 EU\t1 EU\tParis\tno candidates here"]) + "\n",
                 encoding="utf-8")
  with pytest.raises(DataError, match=r"aida_train.csv:3: expected"):
    dataset.load_documents(csv, conll, persons=persons)
  csv.write_text(lines[0].replace(",0.9,", ",high,") + "\n", encoding="utf-8")
  with pytest.raises(DataError, match=r"aida_train.csv:1: candidate .*'high' is not a number"):
    dataset.load_documents(csv, conll, persons=persons)
  # A mention the word file does not mark.
  csv.write_text(lines[0].replace("\tBarack Obama\tleft", "\tAngela\tleft") + "\n",
                 encoding="utf-8")
  with pytest.raises(DataError, match=r"document '1 EU': mention 'Angela' matches no"):
    dataset.load_documents(csv, conll, persons=persons)
  csv.write_text(lines[0].replace("1 EU", "9 NONE") + "\n", encoding="utf-8")
  with pytest.raises(DataError, match=r"no `-DOCSTART- \(9`"):
    dataset.load_documents(csv, conll, persons=persons)
  conll.write_text("word\n", encoding="utf-8")
  with pytest.raises(DataError, match=r"aida_train.txt:1: a word before the first -DOCSTART-"):
    dataset.load_documents(csv, conll, persons=persons)
  with pytest.raises(ValueError, match="unknown entity disambiguation datasets"):
    dataset.load_dataset(tmp_path, ("test_c",))
  with pytest.raises(FileNotFoundError, match="aida_testB.csv: no such file"):
    dataset.load_dataset(tmp_path, ("test_b",))
  with pytest.raises(ValueError, match="not a mention file"):
    dataset.conll_file_for(tmp_path / "mine.csv")
  assert dataset.conll_file_for(tmp_path / "aida_testA.csv").name == (
      "testa_testb_aggregate_original")


# ---- featurisation -------------------------------------------------------------------------

CONFIG = features.FeatureConfig(max_seq_length=64, max_entity_length=4, max_mention_length=3,
                                max_candidate_length=2)


def _whole(tokenizer, doc):
  return tokenizer.word_pieces.encode_batch([" " + " ".join(w for w in doc.words if w)])[0]


def test_features_equal_whole_text_tokenisation(tokenizer, data):
  docs = data["train"] + data["test_b"]
  rows = features.featurize(docs, tokenizer, CONFIG)
  a = rows.arrays
  vocab = tokenizer.entity_vocab
  # "1 EU" has 5 mentions > 4 slots: its window repeats with the 5th.
  assert rows.document_index.tolist() == [0, 0, 1, 2]
  assert [len(s) for s in rows.slots] == [4, 1, 3, 3]
  for r, d in enumerate(rows.document_index):
    doc = docs[d]
    whole = _whole(tokenizer, doc)
    n = len(whole) + 2
    assert a["input_ids"][r, :n].tolist() == (
        [tokenizer.cls_token_id] + whole + [tokenizer.sep_token_id])
    assert a["attention_mask"][r].tolist() == [1] * n + [0] * (64 - n)
    assert (a["input_ids"][r, n:] == tokenizer.pad_token_id).all()
    for slot, (dd, m) in enumerate(rows.slots[r]):
      mention = doc.mentions[m]
      assert dd == d
      positions = [p for p in a["entity_position_ids"][r, slot] if p >= 0]
      pieces = tokenizer.decode(a["input_ids"][r, positions[0]:positions[-1] + 1])
      expected = " ".join(doc.words[mention.start:mention.end])
      # Mentions of at most 3 pieces here are whole; the gold entity id is the input's.
      assert pieces.strip() == expected and len(positions) <= 3
      assert a["entity_ids"][r, slot] == vocab.get_id(mention.title)
      assert a["eval_entity_mask"][r, slot] == 1
  eu = docs[0]
  # Candidates: first 2 by prior, ids in vocab order; "Paris (mythology)" would be [UNK].
  assert a["entity_candidate_ids"][0, :4].tolist() == [
      [vocab.get_id("Barack Obama"), vocab.get_id("Obama (surname)")],
      [vocab.get_id("Angela Merkel"), 0],
      [vocab.get_id("Paris"), vocab.get_id("Paris Hilton")],
      [vocab.get_id("Barack Obama"), vocab.get_id("Obama (surname)")]]
  assert rows.titles[0][2] == ["Paris", "Paris Hilton"]
  assert a["labels"][0, :4].tolist() == [0, 0, 0, 0]
  # The EMPTYCAND mention: a slot without candidates, label -1.
  assert a["entity_candidate_ids"][1, 0].tolist() == [0, 0] and a["labels"][1, 0] == -1
  assert eu.mentions[4].text == "Japan"
  assert (a["entity_ids"][1, 1:] == vocab.pad_id).all()
  assert (a["entity_position_ids"][1, 1:] == -1).all()


def test_unknown_candidates_and_long_mentions(tokenizer):
  doc = Document("d", ["Parisians", "love", "Paris", "."], [
      Mention("Parisians", "Paris", 0, 1, [Candidate("Nowhere", 0.5), Candidate("Elsewhere", 0.3),
                                           Candidate("Paris", 0.2)]),
      Mention("Paris", "Paris", 2, 3, [Candidate("Paris", 0.6), Candidate("Paris", 0.4)])])
  vocab = tokenizer.entity_vocab
  unk = features.featurize([doc], tokenizer, features.FeatureConfig(
      max_seq_length=32, max_entity_length=2, max_mention_length=1, max_candidate_length=3))
  # "unk": truncate, then unknown titles become one [UNK] (the first kept); duplicates go.
  assert unk.arrays["entity_candidate_ids"][0].tolist() == [
      [vocab.unk_id, vocab.get_id("Paris"), 0], [vocab.get_id("Paris"), 0, 0]]
  assert unk.titles[0] == [["Nowhere", "Paris"], ["Paris"]]
  assert unk.arrays["labels"][0].tolist() == [1, 0]
  # A mention longer than max_mention_length keeps its first pieces.
  assert len(tokenizer.tokenize(" Parisians")) > 1
  assert unk.arrays["entity_position_ids"][0, 0].tolist() == [1]
  drop = features.featurize([doc], tokenizer, features.FeatureConfig(
      max_seq_length=32, max_entity_length=2, max_candidate_length=1, unknown_candidates="drop"))
  assert drop.arrays["entity_candidate_ids"][0].tolist() == [[vocab.get_id("Paris")]] * 2
  # Training keeps only mentions whose gold is among the candidates.
  train = features.featurize([doc], tokenizer, features.FeatureConfig(
      max_seq_length=32, max_entity_length=2, max_candidate_length=1), training=True)
  assert train.slots == [[(0, 1)]]
  with pytest.raises(ValueError, match="overlaps"):
    features.featurize([Document("x", ["a", "b"], [Mention("a b", None, 0, 2, []),
                                                   Mention("b", None, 1, 2, [])])],
                       tokenizer, CONFIG)
  with pytest.raises(ValueError, match="document split mode"):
    features.featurize([doc], tokenizer, CONFIG, split_mode="halves")


def _long_document(n_sentences=6):
  """Sentences of 6 words, a 2-word mention in each: long enough to need several windows."""
  words, mentions = [], []
  names = ["Barack Obama", "Angela Merkel", "Paris Hilton", "Michael Jordan"]
  for i in range(n_sentences):
    name = names[i % len(names)]
    start = len(words) + 2
    words += ["Today", "we", *name.split(), "met", "friends", "."]
    mentions.append(Mention(name, name, start, start + 2, [Candidate(name, 1.0)]))
  return Document("long", words, mentions)


@pytest.mark.parametrize("budget", [9, 12, 17])
def test_simple_split_keeps_mentions_whole_at_evaluation(tokenizer, budget):
  doc = _long_document()
  whole = _whole(tokenizer, doc)
  config = features.FeatureConfig(max_seq_length=budget + 2, max_entity_length=4,
                                  max_candidate_length=1)
  rows = features.featurize([doc], tokenizer, config)
  a = rows.arrays
  pieces = []
  scored = []
  for r in range(len(rows)):
    n = int(a["attention_mask"][r].sum())
    assert n <= budget + 2
    pieces += a["input_ids"][r, 1:n - 1].tolist()
    scored += [m for slot, (_, m) in enumerate(rows.slots[r]) if a["eval_entity_mask"][r, slot]]
  # The windows tile the document and every mention is scored exactly once.
  assert pieces == whole
  assert sorted(scored) == list(range(len(doc.mentions)))
  sizes = [int(a["attention_mask"][r].sum()) - 2 for r in range(len(rows))]
  assert max(sizes) <= -(-len(whole) // -(-len(whole) // budget))
  # Training cuts at the equal sizes, losing the mentions that straddle a cut.
  train = features.featurize([doc], tokenizer, config, training=True)
  size = -(-len(whole) // -(-len(whole) // budget))
  lengths = train.arrays["attention_mask"].sum(1) - 2
  assert lengths[:-1].tolist() == [size] * (len(train) - 1)
  assert sum(len(s) for s in train.slots) <= len(doc.mentions)


def test_per_mention_windows_are_centred(tokenizer):
  doc = _long_document()
  whole = _whole(tokenizer, doc)
  assert len(whole) == 42  # 6 sentences of 7 pieces, mentions of 2 at 2, 9, 16, ...

  def windows(budget):
    config = features.FeatureConfig(max_seq_length=budget + 2, max_entity_length=3,
                                    max_candidate_length=1)
    rows = features.featurize([doc], tokenizer, config, split_mode="per_mention")
    assert len(rows) == len(doc.mentions)
    out = []
    for r, slots in enumerate(rows.slots):
      # The row's own mention first and the only one scored.
      assert slots[0] == (0, r)
      assert rows.arrays["eval_entity_mask"][r].tolist() == [1, 0, 0]
      n = int(rows.arrays["attention_mask"][r].sum())
      window = rows.arrays["input_ids"][r, 1:n - 1].tolist()
      positions = [p - 1 for p in rows.arrays["entity_position_ids"][r, 0] if p >= 0]
      start = 7 * r + 2 - positions[0]
      assert whole[start:start + len(window)] == window
      out.append((positions[0], len(window) - positions[-1] - 1, [m for _, m in slots[1:]]))
    return out

  # Budget 10: 4 pieces each side (half of 10 - 2) unless the document ends first; the short
  # side's rest goes to the other side.
  assert [w[:2] for w in windows(10)] == [(2, 6), (4, 4), (4, 4), (4, 4), (4, 4), (5, 3)]
  # Budget 16: whole neighbours are context, after the scored mention, in document order.
  assert windows(16) == [(2, 12, [1]), (7, 7, [0, 2]), (7, 7, [1, 3]), (7, 7, [2, 4]),
                         (7, 7, [3, 5]), (11, 3, [4])]
  # A document that fits is one row, every mention scored, whatever the mode.
  short = features.featurize([doc], tokenizer, features.FeatureConfig(max_candidate_length=1),
                             split_mode="per_mention")
  assert len(short) == 1 and short.arrays["eval_entity_mask"][0].sum() == len(doc.mentions)


def test_predictions_and_metric(tokenizer, data):
  docs = data["test_b"] + data["ace2004"]
  rows = features.featurize(docs, tokenizer, CONFIG)
  choice = np.full(rows.arrays["entity_ids"].shape, -1)
  score = np.zeros(choice.shape, np.float32)
  # test_b: JAPAN -> Japan (wrong), CHINA -> China, AT&T -> AT&T; ace: Merkel ok, France -> Paris.
  choice[0, :3] = [0, 0, 0]
  choice[1, :2] = [0, 1]
  score[0, :3] = [0.6, 1.0, 1.0]
  predicted = rows.predictions(docs, choice, score)
  assert [[p.title for p in d] for d in predicted] == [
      ["Japan", "China", "AT&T"], ["Angela Merkel", "Paris"]]
  assert predicted[0][0].score == pytest.approx(0.6) and predicted[0][0].candidate == 0
  scores = metric.scores(docs, [[p.title for p in d] for d in predicted])
  # 3 correct of 5 mentions, all with candidates.
  assert scores == pytest.approx(dict(f1=0.6, precision=0.6, recall=0.6, mentions=5,
                                      mentions_with_candidates=5, correct=3))


def test_metric_counts_mentions_without_candidates_in_recall_only():
  docs = [Document("a", ["x"] * 5, [
      Mention("x", "A", 0, 1, [Candidate("A", 1.0)]), Mention("x", "B", 1, 2, []),
      Mention("x", "C", 2, 3, [Candidate("C", 0.5), Candidate("D", 0.5)]),
      Mention("x", "E", 3, 4, [Candidate("E", 1.0)])])]
  scores = metric.scores(docs, [["A", None, "D", None]])
  # correct 1; precision 1/3 (3 with candidates), recall 1/4; F1 = 2pr/(p+r) = 2/7.
  assert scores["precision"] == pytest.approx(1 / 3) and scores["recall"] == pytest.approx(0.25)
  assert scores["f1"] == pytest.approx(2 / 7)
  assert metric.scores(docs, [[None] * 4])["f1"] == 0.0
  with pytest.raises(ValueError, match="3 predictions for 4 mentions"):
    metric.scores(docs, [["A", None, "D"]])


def test_features_with_bert_word_pieces(tmp_path, data):
  """The official ED model's tokenizer (BERT WordPiece, uncased): [CLS]/[SEP] and the
  pieces of the whole text, whatever the mention cuts."""
  import json
  import tokenizers
  from tokenizers import models, normalizers, pre_tokenizers, trainers
  docs = data["train"] + data["test_b"]
  corpus = [" ".join(d.words) for d in docs]
  tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.train_from_iterator(corpus * 5, trainers.WordPieceTrainer(
      vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
  ids = tok.get_vocab()
  (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in sorted(ids, key=ids.get)))
  (tmp_path / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "BertTokenizer", "do_lower_case": True}))
  # The reference looks titles up without a language, so the ED vocabulary has none.
  titles = ["[PAD]", "[UNK]", "[MASK]", "Barack Obama", "Paris", "China"]
  (tmp_path / "entity_vocab.jsonl").write_text("".join(
      json.dumps({"id": i, "entities": [[t, None]], "count": 0}) + "\n"
      for i, t in enumerate(titles)))
  bert = LukeTokenizer.from_pretrained(tmp_path)
  assert bert.word_pieces.kind == "wordpiece" and bert.entity_mask_token_id == 2
  rows = features.featurize(docs, bert, CONFIG)
  for r, d in enumerate(rows.document_index):
    whole = [ids["[CLS]"]] + tok.encode(corpus[d]).ids + [ids["[SEP]"]]
    assert rows.arrays["input_ids"][r, :len(whole)].tolist() == whole
    assert rows.arrays["attention_mask"][r].sum() == len(whole)
  # Candidates outside this small vocabulary are [UNK] (id 1), the first one only.
  assert rows.arrays["entity_candidate_ids"][0, 0].tolist() == [3, 1]
