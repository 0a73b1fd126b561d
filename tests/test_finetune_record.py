"""ReCoRD: the entity-span QA head, reader, features, loss, decoding, metric, end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from luke_jax import checkpoint, pretrained
from luke_jax.finetune.task import DataError
from luke_jax.finetune.tasks import record_metric
from luke_jax.finetune.tasks.record import RecordTask, _windows
from luke_jax.models import registry
from luke_jax.models.config import preset
from luke_jax.tokenization.tokenizer import LukeTokenizer
from conftest import finetune_config, run_tiny_finetune

ARCH = "LukeForEntitySpanQA"
CFG = preset("tiny", hidden_dropout_prob=0.1, num_hidden_layers=1)

PASSAGE = ("Tokyo is the capital of Japan. Shinzo Abe met Barack Obama in Tokyo.\n"
           "@highlight\nAbe and Obama talked")


def _spans(text, *words):
  """Inclusive SuperGLUE spans of every occurrence of each word."""
  out = []
  for w in words:
    start = text.find(w)
    while start >= 0:
      out.append({"start": start, "end": start + len(w) - 1})
      start = text.find(w, start + 1)
  return out


def _record(idx, passage, entities, questions):
  qas = []
  for q, (query, answer) in enumerate(questions):
    answers = [dict(s, text=answer) for s in _spans(passage, answer)] if answer else []
    qas.append({"idx": idx * 10 + q, "query": query, "answers": answers})
  return {"idx": idx, "passage": {"text": passage, "entities": _spans(passage, *entities)},
          "qas": qas}


RECORDS = [
    _record(0, PASSAGE, ["Tokyo", "Japan", "Shinzo Abe", "Barack Obama", "Abe", "Obama"],
            [("@placeholder is the capital of Japan.", "Tokyo"),
             ("Abe met @placeholder in Tokyo", "Barack Obama")]),
    _record(1, "Paris is in France. Berlin is in Germany.", ["Paris", "France", "Berlin",
                                                            "Germany"],
            [("Berlin is a city in @placeholder.", "Germany")]),
]


def _write(path, records):
  path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
  return path


@pytest.fixture(scope="module")
def tokenizer(luke_dir):
  return LukeTokenizer.from_pretrained(luke_dir)


def _task(tokenizer, **data):
  config = finetune_config("record")
  config.data.update(dict(dict(max_seq_length=64, max_query_length=24), **data))
  return RecordTask(config.data, tokenizer)


# ---- head ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qa_params():
  # Jitted: on CPU one compilation is cheaper than initialising op by op.
  return jax.jit(lambda key: registry.init_params(ARCH, CFG, key))(jax.random.PRNGKey(0))


@pytest.mark.slow
def test_head_matches_numpy_on_the_same_parameters(qa_params):
  params = qa_params
  rng = np.random.RandomState(0)
  inputs = dict(
      input_ids=jnp.asarray(rng.randint(5, CFG.vocab_size, (2, 7))),
      entity_ids=jnp.asarray([[2, 2, 2, 2], [2, 2, 2, 0]]),
      entity_attention_mask=jnp.asarray([[1, 1, 1, 1], [1, 1, 1, 0]]),
      entity_position_ids=jnp.asarray(rng.randint(1, 7, (2, 4, 2))))
  labels = jnp.asarray([[1, 0, 0], [0, 1, 1]])
  head = registry.build(ARCH, CFG)

  @jax.jit
  def run(params):
    out = head.apply({"params": params}, **inputs, labels=labels, output_hidden_states=True)
    train = head.apply({"params": params}, **inputs, deterministic=False,
                       rngs={"dropout": jax.random.PRNGKey(1)})
    return out, train.logits

  out, train_logits = run(params)
  hidden = np.asarray(out.entity_hidden_states[-1], np.float64)  # the encoder's entity output
  kernel = np.asarray(params["classifier"]["kernel"], np.float64)
  bias = np.asarray(params["classifier"]["bias"], np.float64)
  expected = np.stack([np.concatenate([np.repeat(h[:1], 3, 0), h[1:]], -1) @ kernel[:, 0]
                       for h in hidden]) + bias[0]
  valid = np.asarray(inputs["entity_attention_mask"])[:, 1:] > 0
  assert out.logits.shape == (2, 3) and out.logits.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(out.logits)[valid], expected[valid], rtol=1e-5,
                             atol=1e-5)
  assert np.asarray(out.logits)[1, 2] == np.finfo(np.float32).min  # the padded slot
  y = np.asarray(labels, np.float64)
  bce = np.logaddexp(0, expected) - y * expected
  np.testing.assert_allclose(float(out.loss), bce[valid].mean(), rtol=1e-5)
  assert not np.allclose(train_logits, out.logits)  # dropout only when not deterministic


@pytest.mark.slow
def test_head_is_registered_and_round_trips_a_checkpoint(tmp_path, qa_params):
  params = qa_params
  assert set(params) == {"luke", "classifier"}
  checkpoint.save_checkpoint(tmp_path / "ckpt", params, CFG, ARCH)
  module, loaded = pretrained.from_pretrained(tmp_path / "ckpt")
  assert type(module).__name__ == ARCH
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), params, loaded))


# ---- reader --------------------------------------------------------------------------------


def test_reader(tmp_path, tokenizer):
  examples = _task(tokenizer).read(_write(tmp_path / "r.jsonl", RECORDS), "dev")
  assert [e.qid for e in examples] == ["0", "1", "10"]
  first = examples[0]
  assert first.passage is examples[1].passage  # one passage object for its questions
  assert first.passage.entities[0] == (0, 5)  # inclusive end made exclusive
  assert [a[2] for a in first.answers] == ["Tokyo", "Tokyo"]
  assert [PASSAGE[s:e] for s, e, _ in first.answers] == ["Tokyo", "Tokyo"]


@pytest.mark.parametrize("content, reason", [
    ('{"idx": 0, "passage": \n', "not valid JSON"),
    (json.dumps(_record(0, "Tokyo", [], [("@placeholder", None)]))[:-1]
     .replace('"entities": []', '"entities": [{"start": 3, "end": 5}]') + "}", "outside"),
    (json.dumps(_record(0, "Tokyo", ["Tokyo"], [("no slot here", None)])), "@placeholder"),
    ("\n  \n", "empty file"),
])
def test_reader_rejects_bad_input(tmp_path, tokenizer, content, reason):
  path = tmp_path / "bad.jsonl"
  path.write_text(json.dumps(RECORDS[1]) + "\n" + content + "\n"
                  if reason != "empty file" else content)
  with pytest.raises(DataError, match=reason) as info:
    _task(tokenizer).read(path, "train")
  assert info.value.path == str(path)
  if reason != "empty file":
    assert info.value.line == 2


# ---- features ------------------------------------------------------------------------------


def test_features_layout(tmp_path, tokenizer):
  task = _task(tokenizer, max_seq_length=128)
  examples = task.read(_write(tmp_path / "r.jsonl", RECORDS), "train")
  feats = task.featurize(examples, [], "train")
  assert len(feats) == 3 and list(feats.example_index) == [0, 1, 2]  # one window each
  a = feats.arrays
  ent, ent2 = tokenizer.entity_1_token_id, tokenizer.entity_2_token_id
  ids = a["input_ids"][1][a["attention_mask"][1] > 0].tolist()
  sep = tokenizer.sep_token_id
  assert ids[0] == tokenizer.cls_token_id and ids[-1] == sep
  query = ids[1:ids.index(sep)]
  assert tokenizer.decode(query) == "Abe met<ent2> in Tokyo"
  assert ids[len(query) + 1:len(query) + 3] == [sep, sep]
  passage = tokenizer.decode(ids[len(query) + 3:-1])
  assert passage.startswith("<ent>Tokyo<ent> is the capital of<ent> Japan<ent>.")
  assert "@highlight" in passage and "\n" not in passage
  # Without the markers, the passage is cut exactly as the LUKE tokenizer cuts at entity spans.
  spans = examples[1].passage.entities
  reference = tokenizer(PASSAGE.replace("\n", " "), entity_spans=spans)["input_ids"][1:-1]
  assert [t for t in ids[len(query) + 3:-1] if t != ent] == reference
  # Entity 0 is the placeholder token; the others run from marker to marker.
  pos = a["entity_position_ids"][1]
  assert ids[pos[0, 0]] == ent2 and (pos[0, 1:] == -1).all()
  candidates = feats.meta[1]
  n = len(candidates)
  assert n == len(examples[1].passage.entities) == 9
  for j, (s, e) in enumerate(candidates, 1):
    tokens = [ids[p] for p in pos[j] if p >= 0]
    assert tokens[0] == ent and tokens[-1] == ent
    inner = [t for t in tokens if t != ent]  # "Abe" nests in "Shinzo Abe", with its markers
    assert tokenizer.decode(inner).strip() == PASSAGE[s:e]
  assert a["entity_attention_mask"][1].sum() == n + 1
  assert (a["entity_ids"][1, :n + 1] == tokenizer.entity_mask_token_id).all()
  gold = [PASSAGE[s:e] == "Barack Obama" for s, e in candidates]
  np.testing.assert_array_equal(a["labels"][1, :n], gold)
  assert a["labels"][1, n:].sum() == 0 and a["labels"].shape == (3, 63)


def test_nested_candidates_keep_well_formed_spans(tmp_path, tokenizer):
  text = "New York City is big."
  rec = _record(0, text, ["New York City", "New York", "York City"],
                [("@placeholder is big.", "New York City")])
  task = _task(tokenizer)
  feats = task.featurize(task.read(_write(tmp_path / "n.jsonl", [rec]), "dev"), [], "dev")
  ids = feats.arrays["input_ids"][0]
  for j, (s, e) in enumerate(feats.meta[0], 1):
    tokens = [ids[p] for p in feats.arrays["entity_position_ids"][0, j] if p >= 0]
    inner = [t for t in tokens if t != tokenizer.entity_1_token_id]
    assert tokenizer.decode(inner).strip() == text[s:e]


def test_windows_and_chunks_cover_every_candidate(tmp_path, tokenizer):
  words = [f"Name{i}" for i in range(40)]
  text = " met ".join(words) + "."
  rec = _record(0, text, words, [("@placeholder met Name1", "Name0")])
  task = _task(tokenizer, max_seq_length=48, max_query_length=12, doc_stride=16,
               max_entity_length=4)
  examples = task.read(_write(tmp_path / "w.jsonl", [rec]), "train")
  feats = task.featurize(examples, [], "train")
  seen = {span for m in feats.meta for span in m}
  assert seen == set(examples[0].passage.entities)
  assert max(len(m) for m in feats.meta) == 3  # chunks of max_entity_length - 1
  assert len(feats) > 40 / 3  # several windows, several chunks
  assert (feats.arrays["attention_mask"].sum(1) <= 48).all()
  assert _windows(10, 4, 3) == [(0, 4), (3, 7), (6, 10)]
  assert _windows(10, 4, 9) == [(0, 4), (4, 8), (8, 10)]  # the step never exceeds a window


# ---- loss, decoding, metric ----------------------------------------------------------------


def test_loss_sums_over_valid_candidates(tokenizer):
  task = _task(tokenizer)
  logits = jnp.asarray([[2.0, -1.0, np.finfo(np.float32).min], [0.5, 0.0, 0.0]])
  batch = dict(entity_attention_mask=jnp.asarray([[1, 1, 1, 0], [1, 1, 1, 1]]),
               labels=jnp.asarray([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
  out = type("Out", (), {"logits": logits})()
  loss_sum, weight = task.loss(out, batch)
  x, y = np.asarray(logits, np.float64), np.asarray(batch["labels"], np.float64)
  bce = np.logaddexp(0, x[:, :]) - x * y
  np.testing.assert_allclose(loss_sum, [bce[0, :2].sum(), bce[1].sum()], rtol=1e-6)
  np.testing.assert_array_equal(weight, [2.0, 3.0])
  grads = jax.grad(lambda l: task.loss(type("O", (), {"logits": l})(), batch)[0].sum())(logits)
  assert np.isfinite(grads).all() and grads[0, 2] == 0


def test_decode_takes_the_best_candidate_over_all_rows(tmp_path, tokenizer):
  task = _task(tokenizer, max_seq_length=48, max_query_length=12, doc_stride=16,
               max_entity_length=4)
  examples = task.read(_write(tmp_path / "r.jsonl", RECORDS), "dev")
  feats = task.featurize(examples, [], "dev")
  logits = np.full((len(feats), 3), -5.0, np.float32)
  target = {0: "Japan", 1: "Obama", 2: "Germany"}
  for row, (i, spans) in enumerate(zip(feats.example_index, feats.meta)):
    text = examples[i].passage.text
    for j, (s, e) in enumerate(spans):
      logits[row, j] = 3.0 if text[s:e] == target[i] else -1.0
  preds = task.decode(examples, feats, {"logits": logits}, [])
  assert preds == ["Japan", "Obama", "Germany"]
  scores = task.evaluate(examples, preds)
  assert scores["exact_match"] == pytest.approx(1 / 3)
  assert scores["f1"] == pytest.approx((0 + 2 / 3 + 1) / 3)  # "Obama" vs "Barack Obama"
  path = task.write_predictions(tmp_path / "dev_predictions.json", examples, preds)
  assert json.loads(path.read_text()) == {"0": "Japan", "1": "Obama", "10": "Germany"}
  assert task.evaluate(examples, [None, None, "Germany"])["exact_match"] == pytest.approx(1 / 3)


def test_official_metric_semantics():
  norm = record_metric.normalize_answer
  assert norm("The  Barack-Obama, a man!") == "barackobama man"
  assert record_metric.token_f1("the Obama", "Barack Obama") == pytest.approx(2 / 3)
  assert record_metric.token_f1("Tokyo", "Kyoto") == 0.0
  scores = record_metric.score({"a": ["Tokyo", "Tokyo City"], "b": ["Japan"]},
                               {"a": "tokyo city."})
  assert scores == {"exact_match": 0.5, "f1": 0.5}  # fractions; "b" unanswered scores 0


def test_config_has_the_paper_settings():
  config = finetune_config("record")
  assert config.task == "record"
  assert (config.train.batch_size, config.optim.learning_rate, config.train.num_epochs,
          config.train.seed) == (32, 1e-5, 2, 4)
  assert (config.data.max_seq_length, config.data.max_query_length,
          config.data.doc_stride) == (512, 90, 128)
  assert RecordTask.metric == "exact_match" and RecordTask.prediction_suffix == ".json"


# ---- end to end ----------------------------------------------------------------------------

NAMES = ["Tokyo", "Japan", "Paris", "Obama", "Abe", "Berlin", "France", "Merkel"]


def _toy_records(n, seed):
  """`A met B in C.`: the query names B and C, the answer is A (a learnable position)."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    a, b, c = rng.choice(NAMES, 3, replace=False)
    text = f"{a} met {b} in {c}.\n@highlight\n{b} thanked {c}"
    rec = _record(i, text, [a, b, c], [(f"@placeholder met {b} in {c}", None)])
    start = text.index(a)
    rec["qas"][0]["answers"] = [{"start": start, "end": start + len(a) - 1, "text": a}]
    out.append(rec)
  return out


@pytest.mark.slow
def test_finetune_end_to_end(tmp_path, finetune_base, fast_compile):
  config = finetune_config("record")
  config.data.update(dict(
      train_file=str(_write(tmp_path / "train.jsonl", _toy_records(24, 0))),
      dev_file=str(_write(tmp_path / "val.jsonl", _toy_records(6, 1))),
      test_file=str(_write(tmp_path / "test.jsonl", _toy_records(5, 2))),
      max_seq_length=64, max_query_length=24, max_entity_length=8, max_mention_length=8))
  _, results = run_tiny_finetune(config, finetune_base, tmp_path / "w", num_epochs=3,
                                 eval_batch_size=4, log_every=1)
  for split in ("dev", "test"):
    assert set(results[split]) == {"exact_match", "f1"}
    assert 0 <= results[split]["exact_match"] <= results[split]["f1"] <= 1
  predictions = json.loads((tmp_path / "w" / "test_predictions.json").read_text())
  assert set(predictions) == {str(i * 10) for i in range(5)}
  assert set(predictions.values()) <= set(NAMES)
