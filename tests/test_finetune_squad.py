"""SQuAD: official EM/F1 on hand-worked cases, reader errors, windows, entities, decoding, head."""

import json

import numpy as np
import pytest

from conftest import finetune_config, run_tiny_finetune
from luke_jax.finetune.task import DataError
from luke_jax.finetune.tasks import mentions, squad_metric
from luke_jax.finetune.tasks.squad import SquadExample, SquadTask
from luke_jax.tokenization.tokenizer import LukeTokenizer

LONG = ("Tokyo is the capital of Japan. " * 6 + "Beyoncé was born in Houston in 1981. "
        + "Los Angeles is far from New York. " * 4)


def squad_json(paragraphs, path=None):
  data = {"version": "1.1", "data": [{"title": "T", "paragraphs": paragraphs}]}
  if path is not None:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
  return data


def qa(qid, question, context, answer=None, impossible=None, start=None):
  item = {"id": qid, "question": question, "answers": []}
  if answer is not None:
    item["answers"] = [{"text": answer,
                        "answer_start": context.index(answer) if start is None else start}]
  if impossible is not None:
    item["is_impossible"] = impossible
  return item


def make_task(luke_dir, **data):
  config = finetune_config("squad").data
  config.update(dict(dict(max_seq_length=32, max_query_length=8, doc_stride=6,
                          max_entity_length=4, max_mention_length=3), **data))
  return SquadTask(config, LukeTokenizer.from_pretrained(luke_dir))


# ---- metric ---------------------------------------------------------------------------------

def test_normalisation_like_the_official_scripts():
  assert squad_metric.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
  assert squad_metric.normalize_answer("an apple a day, the end") == "apple day end"
  assert squad_metric.normalize_answer("Theatre of Anna") == "theatre of anna"  # not articles
  # Only ASCII punctuation goes: the curly apostrophe and the dash stay.
  assert squad_metric.normalize_answer("Beyoncé’s —  tour.") == "beyoncé’s — tour"


def test_exact_match_and_f1_hand_worked():
  assert squad_metric.f1("the big red dog", "red dog") == pytest.approx(0.8)  # P 2/3, R 1
  assert squad_metric.f1("x x y", "x y y") == pytest.approx(2 / 3)  # counts, not sets
  assert squad_metric.exact_match("The Dog.", "dog") == 1
  # Both normalise to "": exact match in both scripts; F1 0 in v1.1, 1 in v2.0.
  assert squad_metric.exact_match("the", "a") == 1
  assert squad_metric.f1("the", "a") == 0.0
  assert squad_metric.f1("the", "a", version_2=True) == 1.0
  golds = {"q1": ["Denver Broncos", "the Broncos"], "q2": ["1981"], "q3": []}
  preds = {"q1": "Broncos", "q2": "in 1981", "q3": ""}
  v1 = squad_metric.evaluate(golds, preds)
  # q1: "the Broncos" normalises to "broncos": EM 1, F1 1 (against the first gold: EM 0, F1
  # 2/3); q2: EM 0, F1 2/3; q3 (no gold -> [""]): EM 1, F1 0 in v1.1.
  assert v1["exact_match"] == pytest.approx(200 / 3)
  assert v1["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
  v2 = squad_metric.evaluate(golds, preds, version_2=True)
  assert v2["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1) / 3)
  assert (v2["HasAns_total"], v2["NoAns_total"], v2["NoAns_exact"]) == (2, 1, 100.0)
  assert v2["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
  # A missing prediction: v1.1 scores it 0 in the total, v2.0 leaves it out.
  assert squad_metric.evaluate(golds, {"q2": "1981"})["exact_match"] == pytest.approx(100 / 3)
  assert squad_metric.evaluate(golds, {"q2": "1981"}, True)["exact_match"] == 100.0


# ---- entities -------------------------------------------------------------------------------

def test_mentions_titles_longest_match_and_file(luke_dir, tmp_path):
  vocab = LukeTokenizer.from_pretrained(luke_dir).entity_vocab
  matcher = mentions.from_titles(vocab)
  text = "Beyoncé left Los Angeles for New Yorker life in Tokyo's east; [MASK] Japanese."
  found = [(text[s:e], ent) for s, e, ent in matcher.find(text)]
  assert found == [(t, vocab.lookup(t)) for t in ("Beyoncé", "Los Angeles", "Tokyo")]
  longest = mentions.MentionMatcher({"New": 1, "New York": 2, "York": 3})
  assert [(s, e, i) for s, e, i in longest.find("New York, New  York")] == [
      (0, 8, 2), (10, 13, 1), (15, 19, 3)]
  path = tmp_path / "mentions.json"
  path.write_text(json.dumps({"the Big Apple": "New York", "Edo": "Tokyo", "X": "Nowhere"}))
  matcher = mentions.from_config(str(path), vocab)
  assert len(matcher) == 2  # "Nowhere" is not in the vocabulary
  assert matcher.find("Edo and the Big Apple")[1][2] == vocab.lookup("New York")
  path.write_text("[1, 2]")
  with pytest.raises(DataError, match="non-empty JSON object"):
    mentions.from_file(path, vocab)


# ---- reader ---------------------------------------------------------------------------------

def test_reader_and_bad_input(luke_dir, tmp_path):
  task = make_task(luke_dir)
  ctx = "Beyoncé was born in Houston in 1981."
  path = tmp_path / "ok.json"
  squad_json([{"context": ctx, "qas": [
      qa("a", "Where?", ctx, "Houston"),
      qa("b", "When?", ctx, "1981", start=ctx.index("1981") + 1),  # one character off
      qa("c", "Who?", ctx, impossible=True)]}], path)
  examples = task.read(path, "train")
  assert [(e.qid, e.answers, e.is_impossible) for e in examples] == [
      ("a", [("Houston", 20)], False), ("b", [("1981", 31)], False), ("c", [], True)]

  def bad(paragraphs, split="train"):
    squad_json(paragraphs, path)
    return pytest.raises(DataError)

  with bad([{"context": ctx, "qas": [qa("a", "Where?", ctx, "Houston", start=3)]}]) as e:
    task.read(path, "train")
  assert "question a" in str(e.value) and "answer_start 3" in str(e.value)
  with bad([{"context": ctx, "qas": [{"id": "q9", "answers": []}]}]) as e:
    task.read(path, "dev")
  assert "question q9" in str(e.value) and "'question'" in str(e.value)
  with bad([{"context": ctx, "qas": [qa("a", "?", ctx, "1981"), qa("a", "?", ctx, "1981")]}]):
    task.read(path, "dev")
  with bad([{"context": ctx, "qas": [qa("n", "?", ctx)]}]) as e:
    task.read(path, "train")  # no answer, not marked impossible
  assert "question n" in str(e.value)
  with bad([{"qas": []}]) as e:
    task.read(path, "dev")
  assert "paragraphs[0]" in str(e.value) and "'context'" in str(e.value)
  path.write_text("  \n")
  with pytest.raises(DataError, match="empty file"):
    task.read(path, "train")
  # Prediction input may carry no answers at all.
  squad_json([{"context": ctx, "qas": [{"id": "p", "question": "Where?"}]}], path)
  assert task.read(path, "predict")[0].answers == []
  with pytest.raises(DataError, match="'answers'"):
    task.read(path, "dev")


# ---- features -------------------------------------------------------------------------------

def test_windows_targets_and_layout(luke_dir):
  task = make_task(luke_dir)
  tok = task.tokenizer
  answer = "Houston"
  ex = SquadExample("q", "Where was Beyoncé born, and in which year and city exactly?", LONG,
                    [(answer, LONG.index(answer))])
  feats = task.featurize([ex], [], "train")
  ids, starts, ends = (feats.arrays[k] for k in ("input_ids", "start_positions",
                                                 "end_positions"))
  assert len(feats) > 3 and set(feats.example_index) == {0}
  q_ids = tok(ex.question, add_special_tokens=False)["input_ids"][:8]  # truncated question
  hits = 0
  for row, window in enumerate(feats.meta):
    assert list(ids[row, :11]) == [tok.cls_token_id] + q_ids + [tok.sep_token_id] * 2
    assert window.offset == 11
    assert feats.arrays["attention_mask"][row].sum() == 11 + window.doc_len + 1
    assert ids[row, 11 + window.doc_len] == tok.sep_token_id
    if starts[row]:
      hits += 1
      s, e = window.doc_start + starts[row] - 11, window.doc_start + ends[row] - 11
      offsets = window.context.offsets
      assert LONG[offsets[s, 0]:offsets[e, 1]] == answer
      assert tok.decode(ids[row, starts[row]:ends[row] + 1]).strip() == answer
    else:
      assert ends[row] == 0
  assert hits >= 1  # stride 6 < window 20: the answer sits wholly in some window
  # Consecutive windows advance by doc_stride passage tokens (a step, as in legacy LUKE).
  assert [w.doc_start for w in feats.meta[:3]] == [0, 6, 12]
  last = feats.meta[-1]
  assert last.doc_start + last.doc_len == len(last.context.ids)
  # Without entities every row carries one padded entity.
  assert feats.arrays["entity_ids"].shape == (len(feats), 1)
  assert not feats.arrays["entity_attention_mask"].any()


def test_title_entities_in_question_and_window(luke_dir):
  task = make_task(luke_dir, entities="titles", max_seq_length=48)
  vocab = task.tokenizer.entity_vocab
  ctx = "Los Angeles is far from New York and from Tokyo, Japan."
  ex = SquadExample("q", "Is Tokyo in Japan?", ctx, [("Tokyo", ctx.index("Tokyo"))])
  feats = task.featurize([ex], [], "dev")
  assert len(feats) == 1
  ids, ent, pos, mask = (feats.arrays[k][0] for k in (
      "input_ids", "entity_ids", "entity_position_ids", "entity_attention_mask"))
  # Question first (Tokyo, Japan), then the passage, cut at max_entity_length 4.
  assert list(ent) == [vocab.lookup(t) for t in ("Tokyo", "Japan", "Los Angeles", "New York")]
  assert mask.all()
  texts = [task.tokenizer.decode(ids[p[p >= 0]]).strip() for p in pos]
  assert texts == ["Tokyo", "Japan", "Los Angeles", "New York"]


# ---- decoding -------------------------------------------------------------------------------

def _peaked_outputs(feats, spans, null=None):
  """Logits that put the answer at the given (row, start, end) positions."""
  n, length = feats.arrays["input_ids"].shape
  start, end = np.zeros((n, length), np.float32), np.zeros((n, length), np.float32)
  for row, s, e, score in spans:
    start[row, s] += score
    end[row, e] += score
  if null is not None:
    start[:, 0] = end[:, 0] = null
  return {"start_logits": start, "end_logits": end}


def test_decode_spans_null_and_constraints(luke_dir):
  task = make_task(luke_dir, version_2_with_negative=True, max_answer_length=4)
  ctx = "Beyoncé was born in Houston in 1981."
  examples = [SquadExample("a", "Where was she born?", ctx, [("Houston", 20)]),
              SquadExample("b", "What is her name?", ctx, [], is_impossible=True)]
  feats = task.featurize(examples, [], "dev")
  assert list(feats.example_index) == [0, 1]
  s0, e0 = int(feats.arrays["start_positions"][0]), int(feats.arrays["end_positions"][0])
  # Row 0: the gold span best; a longer span over max_answer_length and a question-token span
  # score higher but are not allowed. Row 1: the null score wins.
  out = _peaked_outputs(feats, [(0, s0, e0, 5.0), (0, 1, 2, 50.0), (0, s0 - 4, e0 + 4, 9.0),
                                (1, s0, e0, 1.0)], null=0.0)
  out["start_logits"][1, 0] = out["end_logits"][1, 0] = 3.0
  preds = task.decode(examples, feats, out, [])
  assert preds == ["Houston", ""]
  scores = task.evaluate(examples, preds)
  assert scores["exact_match"] == scores["f1"] == 100.0 and scores["NoAns_total"] == 1
  # A high threshold lets the best span through.
  task.config.null_score_diff_threshold = 100.0
  assert task.decode(examples, feats, out, [])[1] == "Houston"
  # SQuAD 1.1 never predicts "".
  task.version_2 = False
  task.config.null_score_diff_threshold = 0.0
  assert task.decode(examples, feats, out, [])[1] == "Houston"


def test_decode_uses_max_context_window(luke_dir, tmp_path):
  task = make_task(luke_dir)
  answer = "Houston"
  ex = SquadExample("q", "Where?", LONG, [(answer, LONG.index(answer))])
  feats = task.featurize([ex], [], "dev")
  rows = [r for r in range(len(feats)) if feats.arrays["start_positions"][r]]
  assert len(rows) >= 2
  # The same span scores higher in the window where it sits near the edge; the decoder still
  # reads it from the window that gives it most context, and the text is the passage's own.
  out = _peaked_outputs(feats, [(r, feats.arrays["start_positions"][r],
                                 feats.arrays["end_positions"][r], 1.0 + k)
                                for k, r in enumerate(rows)])
  assert task.decode([ex], feats, out, []) == [answer]
  path = task.write_predictions(tmp_path / "dev_predictions.json", [ex], [answer])
  assert json.loads(path.read_text()) == {"q": answer}


# ---- head -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_head_apply_and_loss(luke_dir, finetune_base):
  import jax
  from luke_jax import checkpoint
  from luke_jax.models import losses, registry

  task = make_task(luke_dir, entities="titles", max_seq_length=64)
  ex = SquadExample("q", "Where is Tokyo?", LONG, [("Japan", LONG.index("Japan"))])
  feats = task.featurize([ex], [], "train")
  base_config, _, _ = checkpoint.read_config(finetune_base)
  config = base_config.replace(**task.head_config([]))
  module = registry.build(task.architecture, config)
  rng = np.random.default_rng(0)
  params = {"luke": checkpoint.load_params(finetune_base, base_config, "LukeModel"),
            "qa_outputs": {"kernel": rng.normal(0, 0.02, (config.hidden_size, 2)).astype("f4"),
                           "bias": np.zeros(2, "f4")}}
  batch = {k: jax.numpy.asarray(v) for k, v in feats.arrays.items()}
  out = module.apply({"params": params}, **{k: batch[k] for k in task.input_keys})
  assert out.start_logits.shape == feats.arrays["input_ids"].shape
  loss, weight = task.loss(out, batch)
  assert loss.shape == weight.shape == (len(feats),) and np.all(np.asarray(weight) == 1)
  reference = losses.span_loss(out.start_logits, out.end_logits, batch["start_positions"],
                               batch["end_positions"])
  np.testing.assert_allclose(float(loss.mean()), float(reference), rtol=1e-6)
  outputs = {k: np.asarray(v) for k, v in task.outputs(out).items()}
  preds = task.decode([ex], feats, outputs, [])
  assert isinstance(preds[0], str) and preds[0] in LONG


def test_config_paper_settings_and_frozen_entity_table():
  import importlib.util
  import jax
  from conftest import REPO
  from luke_jax.models import registry
  from luke_jax.models.config import preset
  from luke_jax.training import optim

  config = finetune_config("squad")
  assert (config.train.batch_size, config.optim.learning_rate, config.train.num_epochs,
          config.train.seed) == (48, 1.5e-5, 2, 14)
  d = config.data
  assert (d.max_seq_length, d.max_query_length, d.doc_stride, d.max_answer_length,
          d.n_best_size, d.version_2_with_negative, d.entities) == (
              512, 64, 128, 30, 20, False, "none")
  spec = importlib.util.spec_from_file_location("squad_cfg", REPO / "configs/finetune/squad.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert module.get_config("v2").data.version_2_with_negative
  with pytest.raises(ValueError, match="v1"):
    module.get_config("v3")
  params = registry.abstract_params("LukeForQuestionAnswering", preset("tiny"))
  mask = optim.trainable_mask(params, config.optim.trainable)
  frozen = [optim.path_str(p) for p, t in jax.tree_util.tree_flatten_with_path(mask)[0] if not t]
  assert frozen == ["luke/entity_embeddings/entity_embeddings/embedding"]


# ---- end to end -----------------------------------------------------------------------------

@pytest.mark.slow
def test_finetune_end_to_end(finetune_base, tmp_path, fast_compile):

  short = [("Beyoncé was born in Houston in 1981.", "Where was Beyoncé born?", "Houston"),
           ("Tokyo is the capital of Japan.", "What is the capital of Japan?", "Tokyo"),
           ("New York is larger than Los Angeles.", "What is larger than Los Angeles?",
            "New York")]
  paragraphs = [{"context": c, "qas": [qa(f"s{i}", q, c, a)]} for i, (c, q, a) in
                enumerate(short)]
  # The long passage needs several 64-token windows; answers sit early and late.
  paragraphs.append({"context": LONG, "qas": [
      qa("l1", "When was Beyoncé born?", LONG, "1981"),
      qa("l2", "What is the capital of Japan?", LONG, "Tokyo"),
      qa("l3", "Is Paris in Japan?", LONG, impossible=True)]})
  config = finetune_config("squad")
  config.data.update(max_seq_length=64, max_query_length=16, doc_stride=24,
                     max_entity_length=8, max_mention_length=4, entities="titles",
                     version_2_with_negative=True,
                     train_file=str(tmp_path / "train.json"), dev_file=str(tmp_path / "dev.json"),
                     test_file=str(tmp_path / "test.json"))
  for split in ("dev", "test"):
    squad_json(paragraphs, tmp_path / f"{split}.json")
  # Five renamed copies for training: more rows than 15 steps of 4 take, so no epoch ends (and
  # forces a checkpoint) before the last step.
  squad_json([dict(p, qas=[dict(q, id=f"{q['id']}.{k}") for q in p["qas"]])
              for k in range(5) for p in paragraphs], tmp_path / "train.json")
  workdir = tmp_path / "w"
  _, results = run_tiny_finetune(config, finetune_base, workdir, num_epochs=20, log_every=1)
  for split in ("dev", "test"):
    assert {"exact_match", "f1", "HasAns_f1", "NoAns_f1"} <= set(results[split])
    assert 0 <= results[split]["f1"] <= 100
    predictions = json.loads((workdir / f"{split}_predictions.json").read_text())
    assert set(predictions) == {"s0", "s1", "s2", "l1", "l2", "l3"}
    assert all(p == "" or p in LONG or any(p in c for c, _, _ in short)
               for p in predictions.values())
