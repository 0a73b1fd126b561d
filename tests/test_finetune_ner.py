"""CoNLL-2003 NER task: reader, span features, loss, greedy decoding, seqeval-equal metric."""

import random
import warnings

import jax
import numpy as np
import pytest

from conftest import finetune_config, run_tiny_finetune
from luke_jax.finetune.task import DataError, Features
from luke_jax.finetune.tasks import ner, ner_metric
from luke_jax.tokenization.tokenizer import LukeTokenizer

CONLL = """-DOCSTART- -X- -X- O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
to TO I-VP O
boycott VB I-VP O
British JJ I-NP I-MISC
lamb NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP I-NP I-LOC
1996-08-22 CD I-NP O

The DT I-NP O
European NNP I-NP I-ORG
Commission NNP I-NP I-ORG
said VBD I-VP O
Germany NNP I-NP I-LOC
's POS B-NP O
Spain NNP I-NP I-LOC
France NNP I-NP B-LOC
"""


@pytest.fixture(scope="module")
def tokenizer(luke_dir):
  return LukeTokenizer.from_pretrained(luke_dir)


def make_task(tokenizer, **data):
  config = finetune_config("conll2003")
  config.data.update(dict(dict(max_seq_length=40, max_entity_length=16,
                               max_mention_length=6), **data))
  return ner.NerTask(config.data, tokenizer)


def write(tmp_path, text, name="eng.train"):
  path = tmp_path / name
  path.write_text(text, encoding="utf-8")
  return path


# ---- metric ---------------------------------------------------------------------------------

def random_tags(rng, length, scheme):
  """IOB1, IOB2 or arbitrary ("mixed": I- openings, B- after O, type changes inside)."""
  types = ["PER", "LOC", "ORG", "MISC-X"]
  if scheme == "mixed":
    return [rng.choice(["O", "O", "O"] + [f"{p}-{t}" for p in "BI" for t in types])
            for _ in range(length)]
  spans, i = [], 0
  while i < length:
    if rng.random() < 0.4:
      end = min(length, i + rng.randint(1, 3))
      spans.append((i, end, rng.choice(types)))
      i = end
    else:
      i += 1
  return ner_metric.spans_to_tags(spans, length, scheme)


def test_metric_equals_seqeval_on_random_tags():
  seqeval = pytest.importorskip("seqeval.metrics")
  from seqeval.metrics.sequence_labeling import get_entities
  rng = random.Random(0)
  for trial in range(300):
    scheme = ("iob1", "iob2", "mixed")[trial % 3]
    lengths = [rng.randint(1, 12) for _ in range(rng.randint(1, 6))]
    gold = [random_tags(rng, n, scheme) for n in lengths]
    # Predictions: a perturbed copy (so some spans match) or unrelated tags.
    pred = []
    for g in gold:
      if rng.random() < 0.5:
        pred.append([t if rng.random() < 0.8 else rng.choice(["O", "I-PER", "B-LOC"]) for t in g])
      else:
        pred.append(random_tags(rng, len(g), rng.choice(("iob1", "iob2", "mixed"))))
    ours = ner_metric.tag_prf(gold, pred)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      expected = (seqeval.precision_score(gold, pred), seqeval.recall_score(gold, pred),
                  seqeval.f1_score(gold, pred))
    assert (ours["precision"], ours["recall"], ours["f1"]) == expected, (gold, pred)
    for tags in gold + pred:
      assert ner_metric.tags_to_spans(tags) == [(s, e + 1, t) for t, s, e in get_entities(tags)]


def test_tag_schemes_round_trip():
  spans = [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC")]
  assert ner_metric.spans_to_tags(spans, 6, "iob1") == ["I-PER", "I-PER", "B-PER", "O", "I-LOC",
                                                         "O"]
  assert ner_metric.spans_to_tags(spans, 6, "iob2") == ["B-PER", "I-PER", "B-PER", "O", "B-LOC",
                                                         "O"]
  rng = random.Random(1)
  for _ in range(100):
    tags = random_tags(rng, rng.randint(1, 15), "mixed")
    spans = ner_metric.tags_to_spans(tags)
    for scheme in ("iob1", "iob2"):
      assert ner_metric.tags_to_spans(ner_metric.spans_to_tags(spans, len(tags), scheme)) == spans
  assert ner_metric.span_prf([[]], [[]]) == dict(precision=0.0, recall=0.0, f1=0.0, num_gold=0,
                                                  num_predicted=0, num_correct=0)


# ---- reading --------------------------------------------------------------------------------

def test_read_conll_documents_sentences_and_scheme(tmp_path, tokenizer):
  task = make_task(tokenizer)
  examples = task.read(write(tmp_path, CONLL), "train")
  assert [ex.words[0] for ex in examples] == ["EU", "Peter", "BRUSSELS", "The"]
  assert [ex.doc_start for ex in examples] == [True, False, True, False]
  assert examples[0].document is examples[1].document is not examples[2].document
  assert [ex.index for ex in examples] == [0, 1, 0, 1]
  assert {ex.scheme for ex in examples} == {"iob1"}
  assert examples[0].spans == [(0, 1, "ORG"), (2, 3, "MISC"), (6, 7, "MISC")]
  assert examples[1].spans == [(0, 2, "PER")]
  assert examples[3].spans == [(1, 3, "ORG"), (4, 5, "LOC"), (6, 7, "LOC"), (7, 8, "LOC")]
  assert examples[0].lines[:2] == [3, 4] and examples[3].lines[-1] == 28
  assert task.labels(examples) == ["O", "LOC", "MISC", "ORG", "PER"]

  # Two columns, IOB2, no -DOCSTART-: one unmarked document.
  iob2 = "John B-PER\nSmith I-PER\nvisited O\nParis B-LOC\n\nHe O\nleft O\n"
  examples = task.read(write(tmp_path, iob2, "two.txt"), "dev")
  assert [ex.scheme for ex in examples] == ["iob2", "iob2"]
  assert [ex.doc_start for ex in examples] == [False, False]
  assert examples[0].spans == [(0, 2, "PER"), (3, 4, "LOC")]
  assert make_task(tokenizer, tag_scheme="iob1").read(write(tmp_path, iob2, "two.txt"),
                                                      "dev")[0].scheme == "iob1"


@pytest.mark.parametrize("text, line, reason", [
    ("EU I-ORG\nrejects\n", 2, "one column"),
    ("EU X-ORG\n", 1, "invalid tag 'X-ORG'"),
    ("EU NNP B-\n", 1, "invalid tag 'B-'"),
    ("EU E-ORG\n", 1, "invalid tag 'E-ORG'"),
    ("John B-PER\n\nsaid O\nEU I-ORG\n", 4, "I-ORG after O opens an entity"),
    ("", None, "no sentences"),
    ("-DOCSTART- -X- -X- O\n\n\n", None, "no sentences"),
])
def test_bad_input_names_file_and_line(tmp_path, tokenizer, text, line, reason):
  path = write(tmp_path, text, "bad.txt")
  with pytest.raises(DataError, match=reason) as info:
    make_task(tokenizer, tag_scheme="iob2").read(path, "train")
  assert info.value.path == str(path) and info.value.line == line
  with pytest.raises(ValueError, match="tag_scheme"):
    make_task(tokenizer, tag_scheme="bio")


def test_unseen_gold_label_is_a_data_error(tmp_path, tokenizer):
  task = make_task(tokenizer)
  train = task.read(write(tmp_path, CONLL), "train")
  dev = task.read(write(tmp_path, "Obama I-PER\nspoke O\n\nin O\nYen I-MONEY\n", "dev"), "dev")
  with pytest.raises(DataError, match="'MONEY'") as info:
    task.featurize(dev, task.labels(train), "dev")
  assert info.value.line == 5


def test_word_tokenization_follows_the_paper():
  assert ner._with_prefix_space("EU") == " EU"
  assert ner._with_prefix_space("'s") == "'s"
  assert ner._with_prefix_space(".") == "."
  assert ner._with_prefix_space("--") == " --"
  assert ner._with_prefix_space("\u201c") == "\u201c"


# ---- features -------------------------------------------------------------------------------

def span_text(tokenizer, ids, start, end):
  return tokenizer.decode(ids[start:end + 1]).replace(" ", "")


def test_features_enumerate_word_spans_with_document_context(tmp_path, tokenizer):
  task = make_task(tokenizer)
  examples = task.read(write(tmp_path, CONLL), "train")
  labels = task.labels(examples)
  features = task.featurize(examples, labels, "train")
  a = features.arrays
  assert set(a) == set(task.input_keys + task.target_keys)
  n = len(features)
  assert a["input_ids"].shape == (n, 40) and a["entity_position_ids"].shape == (n, 16, 6)
  assert a["labels"].shape == (n, 16) and all(v.dtype == np.int32 for v in a.values())
  # Sentence 0: 9 one-subword words, 9 + 8 + ... + 4 = 39 spans of <= 6 subwords -> 3 rows of
  # 13; "BRUSSELS 1996-08-22" (3 + 5 subwords) has 2 spans of <= 6; the last sentence 33 spans.
  assert features.example_index.tolist() == [0, 0, 0, 1, 2, 3, 3, 3]
  assert [len(m["spans"]) for m in features.meta] == [13, 13, 13, 3, 2, 11, 11, 11]
  mask, pad = tokenizer.entity_mask_token_id, tokenizer.entity_pad_token_id
  assert mask != pad  # the fixture's vocabulary puts [MASK] at 0 and [PAD] at 2
  seen = {}
  for row in range(n):
    ex = examples[features.example_index[row]]
    spans = features.meta[row]["spans"]
    k = len(spans)
    assert 0 < k <= 16
    assert (a["entity_ids"][row, :k] == mask).all() and (a["entity_ids"][row, k:] == pad).all()
    assert a["entity_attention_mask"][row].tolist() == [1] * k + [0] * (16 - k)
    assert (a["labels"][row, k:] == -1).all() and (a["entity_position_ids"][row, k:] == -1).all()
    ids = a["input_ids"][row]
    for j, (s, e) in enumerate(spans):
      start, end = a["entity_start_positions"][row, j], a["entity_end_positions"][row, j]
      positions = a["entity_position_ids"][row, j]
      assert positions[positions >= 0].tolist() == list(range(start, end + 1))
      assert span_text(tokenizer, ids, start, end) == "".join(ex.words[s:e])
      gold = {(gs, ge): labels.index(t) for gs, ge, t in ex.spans}
      assert a["labels"][row, j] == gold.get((s, e), 0)
      seen.setdefault(features.example_index[row], []).append((s, e))
  # Every span of at most 6 subwords, each once; gold spans all among them.
  for i, ex in enumerate(examples):
    assert len(seen[i]) == len(set(seen[i]))
    assert {(s, e) for s, e, _ in ex.spans} <= set(seen[i])
  # Context: the second sentence of document 1 sees the first before it; the window is full.
  row = features.example_index.tolist().index(1)
  text = tokenizer.decode(a["input_ids"][row][a["attention_mask"][row] > 0])
  assert text.startswith("<s>") and "Peter Blackburn</s>" in text and "lamb." in text
  assert a["attention_mask"][row].sum() == min(40, 2 + len(tokenizer.tokenize(
      " EU rejects German call to boycott British lamb. Peter Blackburn")))

  # Sentence-level: only the sentence's own subwords.
  alone = make_task(tokenizer, document_context=False).featurize(examples, labels, "train")
  row = alone.example_index.tolist().index(1)
  assert tokenizer.decode(alone.arrays["input_ids"][row][:alone.arrays["attention_mask"][row]
                                                         .sum()]) == "<s> Peter Blackburn</s>"


def test_context_budget_split():
  # The shorter side gets all it has, the longer side the rest (up to the window).
  assert ner._context(start=2, end=6, total=30, budget=10) == (2, 4)
  assert ner._context(start=20, end=24, total=25, budget=10) == (5, 1)
  assert ner._context(start=10, end=14, total=30, budget=10) == (3, 3)
  assert ner._context(start=0, end=10, total=10, budget=10) == (0, 0)


def test_long_sentence_is_cut_at_words_and_spans_chunked(tmp_path, tokenizer):
  words = [f"word{i}" for i in range(30)]
  text = "\n".join(f"{w} {'I-PER' if i == 25 else 'O'}" for i, w in enumerate(words)) + "\n"
  task = make_task(tokenizer, max_seq_length=24, max_entity_length=4, max_mention_length=3)
  examples = task.read(write(tmp_path, text), "train")
  features = task.featurize(examples, task.labels(examples), "train")
  spans = [s for m in features.meta for s in m["spans"]]
  assert len(spans) == len(set(spans)) and all(0 <= s < e <= 30 for s, e in spans)
  assert (25, 26) in spans and len(features) > 2
  assert (features.arrays["attention_mask"].sum(-1) <= 24).all()
  assert max(len(m["spans"]) for m in features.meta) <= 4


# ---- model, loss, decoding ------------------------------------------------------------------

@pytest.mark.slow
def test_head_loss_is_mean_cross_entropy_over_real_spans(tmp_path, tokenizer, finetune_base):
  from luke_jax import checkpoint
  from luke_jax.models import losses, registry
  task = make_task(tokenizer)
  examples = task.read(write(tmp_path, CONLL), "train")
  labels = task.labels(examples)
  features = task.featurize(examples, labels, "train")
  config, _, _ = checkpoint.read_config(finetune_base)
  config = config.replace(**task.head_config(labels))
  module = registry.build(task.architecture, config)
  params = registry.init_params(task.architecture, config, jax.random.PRNGKey(0))
  batch = features.arrays
  out = jax.jit(module.apply)({"params": params}, **{k: batch[k] for k in task.input_keys})
  assert out.logits.shape == (len(features), 16, len(labels))
  loss_sum, weight = jax.jit(task.loss)(out, batch)
  assert loss_sum.shape == weight.shape == (len(features),) and loss_sum.dtype == np.float32
  np.testing.assert_array_equal(weight, (batch["labels"] >= 0).sum(-1))
  np.testing.assert_allclose(loss_sum.sum() / weight.sum(),
                             losses.cross_entropy(out.logits, batch["labels"], -1), rtol=1e-6)
  assert task.outputs(out)["logits"].dtype == np.float32


def test_decode_keeps_best_non_overlapping_spans(tmp_path, tokenizer):
  task = make_task(tokenizer)
  examples = task.read(write(tmp_path, "a O\nb O\nc O\nd O\ne O\n\nf O\n"), "dev")
  labels = ["O", "LOC", "PER"]
  meta = [{"spans": [(0, 2), (1, 3), (3, 4)]}, {"spans": [(2, 3), (4, 5), (0, 5)]},
          {"spans": [(0, 1)]}]
  logits = np.full((3, 4, 3), -5.0, np.float32)
  logits[0, 0] = [0, 3, 1]     # (0, 2) LOC at 3
  logits[0, 1] = [0, 1, 4]     # (1, 3) PER at 4: beats (0, 2), which it overlaps
  logits[0, 2] = [5, 1, 2]     # (3, 4) is "O"
  logits[1, 0] = [0, 2, 1]     # (2, 3) LOC at 2: overlaps (1, 3), dropped
  logits[1, 1] = [0, 0.5, 0]   # (4, 5) LOC
  logits[1, 2] = [9, 0, 0]     # (0, 5) "O"
  logits[2, 0] = [0, 0, 1]     # the second sentence: (0, 1) PER
  features = Features({}, np.array([0, 0, 1]), meta)
  preds = task.decode(examples, features, {"logits": logits}, labels)
  assert preds == [["O", "B-PER", "I-PER", "O", "B-LOC"], ["B-PER"]]
  scores = task.evaluate(examples, preds)
  assert scores["precision"] == 0.0 and scores["num_predicted"] == 3 and scores["num_gold"] == 0


def test_write_predictions_round_trip(tmp_path, tokenizer):
  task = make_task(tokenizer)
  examples = task.read(write(tmp_path, CONLL), "test")
  preds = [ner_metric.spans_to_tags(ex.spans, len(ex.words), "iob2") for ex in examples]
  preds[3] = ["B-ORG"] + ["O"] * 7  # one wrong sentence
  path = task.write_predictions(tmp_path / "out" / "test_predictions.txt", examples, preds)
  lines = path.read_text().splitlines()
  assert lines[:3] == ["-DOCSTART- O O", "", "EU I-ORG I-ORG"]
  assert lines.count("-DOCSTART- O O") == 2 and "France B-LOC O" in lines
  # The file reads back as a gold file: the last column is the prediction, in IOB1.
  back = task.read(path, "test")
  assert [ex.words for ex in back] == [ex.words for ex in examples]
  assert [ex.spans for ex in back] == [ner_metric.tags_to_spans(p) for p in preds]
  assert back[0].tags == examples[0].tags  # the file's scheme (IOB1)
  scores = task.evaluate(examples, preds)
  assert scores["num_gold"] == 9 and scores["num_correct"] == 5 and scores["num_predicted"] == 6

  # Raw text: one sentence per line, blank line between documents, `token predicted` out.
  raw = write(tmp_path, "Peter Blackburn visited Paris\nHe left\n\n\nNew text here\n", "raw.txt")
  examples = task.read_raw(raw)
  assert [ex.doc_start for ex in examples] == [True, False, True]
  assert examples[1].document is examples[0].document is not examples[2].document
  features = task.featurize(examples, ["O", "LOC", "PER"], "predict")
  assert (features.arrays["labels"][features.arrays["entity_attention_mask"] > 0] == 0).all()
  preds = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "O"], ["O", "O", "O"]]
  path = task.write_predictions(tmp_path / "raw_predictions.txt", examples, preds)
  assert path.read_text().splitlines()[:4] == ["-DOCSTART- O", "", "Peter B-PER", "Blackburn I-PER"]
  assert [ex.spans for ex in task.read(path, "predict")] == [[(0, 2, "PER"), (3, 4, "LOC")], [],
                                                             []]
  with pytest.raises(DataError, match="no sentences"):
    task.read_raw(write(tmp_path, "\n \n", "empty.txt"))


def test_config_has_the_paper_settings():
  config = finetune_config("conll2003")
  assert config.task == "conll2003"
  assert (config.data.max_seq_length, config.data.max_entity_length,
          config.data.max_mention_length) == (512, 128, 16)
  assert (config.optim.learning_rate, config.train.batch_size, config.train.num_epochs,
          config.train.seed) == (1e-5, 8, 5, 35)
  assert config.data.tag_scheme == "auto" and config.data.document_context
  from luke_jax.finetune import tasks
  assert tasks.get("conll2003") is ner.NerTask


# ---- end to end -----------------------------------------------------------------------------

def conll_documents(rng, documents, sentences):
  """Two-column IOB1 text where names and places are learnable from their words."""
  people, places = ["John Smith", "Mary", "Peter Blackburn"], ["Paris", "New York", "Tokyo"]
  out = []
  for _ in range(documents):
    out.append("-DOCSTART- -X- -X- O\n")
    for _ in range(sentences):
      person, place = rng.choice(people).split(), rng.choice(places).split()
      out += [f"{w} I-PER" for w in person] + ["visited O"] + [f"{w} I-LOC" for w in place]
      out += [". O", ""]
  return "\n".join(out) + "\n"


@pytest.mark.slow
def test_finetune_end_to_end(tmp_path, finetune_base, fast_compile):
  from luke_jax.finetune import trainer
  rng = random.Random(0)
  config = finetune_config("conll2003")
  config.data.update(max_seq_length=64, max_entity_length=32, max_mention_length=8)
  for split, n in (("train", 4), ("dev", 2), ("test", 2)):
    config.data[f"{split}_file"] = str(write(tmp_path, conll_documents(rng, 2, n), split))
  workdir = tmp_path / "w"
  result, results = run_tiny_finetune(config, finetune_base, workdir, num_epochs=10,
                                      log_every=5)
  losses = [l for _, l in result.losses]
  assert np.mean(losses[-3:]) < 0.75 * np.mean(losses[:3])
  for split in ("dev", "test"):
    assert {"precision", "recall", "f1"} <= set(results[split])
    assert 0 <= results[split]["f1"] <= 1
    # The prediction file parses as CoNLL (token gold predicted) and its gold is the input's.
    task = ner.NerTask(config.data, LukeTokenizer.from_pretrained(finetune_base))
    lines = (workdir / f"{split}_predictions.txt").read_text().splitlines()
    assert all(len(l.split()) == 3 for l in lines if l)
    gold = task.read(config.data[f"{split}_file"], split)
    predicted = task.read(workdir / f"{split}_predictions.txt", split)
    assert [ex.words for ex in predicted] == [ex.words for ex in gold]
    scores = task.evaluate(gold, [ner_metric.spans_to_tags(ex.spans, len(ex.words))
                                  for ex in predicted])
    assert scores["f1"] == pytest.approx(results[split]["f1"])
  # Raw text through the saved model: `token predicted` lines.
  raw = write(tmp_path, "Mary visited Tokyo .\n\nJohn Smith visited Paris .\n", "raw.txt")
  trainer.predict(config, workdir / "best", raw, tmp_path / "raw_predictions.txt", raw=True)
  lines = (tmp_path / "raw_predictions.txt").read_text().splitlines()
  assert [l.split()[0] for l in lines if l and not l.startswith("-DOCSTART-")] == [
      "Mary", "visited", "Tokyo", ".", "John", "Smith", "visited", "Paris", "."]
  assert all(len(l.split()) == 2 for l in lines if l)
