"""TACRED relation classification: reader, features (= transformers' tokenizer), loss, scorer."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import finetune_config, run_tiny_finetune
from luke_jax import checkpoint
from luke_jax.finetune.task import DataError
from luke_jax.finetune.tasks import classification_metrics, relation
from luke_jax.models import registry
from luke_jax.tokenization.tokenizer import LukeTokenizer

RECORDS = [
    dict(id="a1", token="In 1975 , Bill Gates founded Microsoft -LRB- MSFT -RRB- .".split(),
         subj_start=3, subj_end=4, obj_start=6, obj_end=6, relation="org:founded_by"),
    # object before subject; a one-word sentence piece at either edge
    dict(id="a2", token="Microsoft hired Satya Nadella in Redmond".split(),
         subj_start=2, subj_end=3, obj_start=0, obj_end=0, relation="per:employee_of"),
    dict(id="a3", token="Tokyo is in Japan".split(), subj_start=0, subj_end=0, obj_start=3,
         obj_end=3, relation="no_relation"),
    dict(id="a4", token="Los Angeles , a city in the USA , is big .".split(), subj_start=0,
         subj_end=1, obj_start=7, obj_end=7, relation="org:founded_by"),
]


@pytest.fixture(scope="module")
def task(luke_dir):
  config = finetune_config("tacred")
  config.data.max_seq_length = 64
  tokenizer = LukeTokenizer.from_pretrained(luke_dir, task=relation.RelationTask.tokenizer_task)
  return relation.RelationTask(config.data, tokenizer)


def _write(path, records, jsonl=False):
  if jsonl:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
  else:
    path.write_text(json.dumps(records, indent=1))
  return path


def _hf_tokenizer(directory):
  """transformers' LukeTokenizer in pair mode (workarounds: see test_tokenizer_parity.py)."""
  transformers = pytest.importorskip("transformers")
  from transformers.tokenization_python import PreTrainedTokenizer
  transformers.LukeTokenizer.truncate_sequences = PreTrainedTokenizer.truncate_sequences
  hf = transformers.LukeTokenizer.from_pretrained(directory, task="entity_pair_classification")
  hf._tokenizer.no_truncation()
  hf._tokenizer.no_padding()
  return hf


# ---- the scorer, worked by hand ------------------------------------------------------------

def test_scorer_hand_worked():
  gold = ["no_relation", "A", "A", "B", "no_relation", "B", "C"]
  pred = ["no_relation", "A", "B", "no_relation", "A", "B", "no_relation"]
  # guessed (pred != no_relation): rows 1, 2, 4, 5 -> 4; gold (!= no_relation): rows 1, 2, 3,
  # 5, 6 -> 5; correct: rows 1 and 5 -> 2. P = 2/4, R = 2/5, F1 = 2 * .5 * .4 / .9 = 4/9.
  scores = classification_metrics.relation_scores(gold, pred)
  assert scores["precision"] == pytest.approx(0.5)
  assert scores["recall"] == pytest.approx(0.4)
  assert scores["f1"] == pytest.approx(4 / 9)
  assert scores["accuracy"] == pytest.approx(3 / 7)  # rows 0, 1, 5


def test_scorer_edge_cases():
  # Nothing guessed: the official scorer's precision is 1.0, recall 0, F1 0.
  assert classification_metrics.relation_scores(["A", "no_relation"], ["no_relation"] * 2) == (
      dict(precision=1.0, recall=0.0, f1=0.0, accuracy=0.5))
  # Only no_relation in gold, one false alarm: P 0, R 0 (no gold), F1 0.
  scores = classification_metrics.relation_scores(["no_relation"] * 2, ["A", "no_relation"])
  assert (scores["precision"], scores["recall"], scores["f1"]) == (0.0, 0.0, 0.0)
  # A custom negative label (KBP37 style).
  scores = classification_metrics.relation_scores(["Other", "x"], ["x", "x"], negative="Other")
  assert (scores["precision"], scores["recall"]) == (0.5, 1.0)


# ---- reader --------------------------------------------------------------------------------

def test_read_json_and_jsonl(task, tmp_path):
  examples = task.read(_write(tmp_path / "train.json", RECORDS), "train")
  same = task.read(_write(tmp_path / "train.jsonl", RECORDS, jsonl=True), "train")
  assert [(e.text, e.subj, e.obj, e.relation) for e in examples] == [
      (e.text, e.subj, e.obj, e.relation) for e in same]
  first = examples[0]
  assert first.text == "In 1975 , Bill Gates founded Microsoft ( MSFT ) ."
  assert first.text[slice(*first.subj)] == "Bill Gates"
  assert first.text[slice(*first.obj)] == "Microsoft"
  second = examples[1]
  assert second.text[slice(*second.subj)] == "Satya Nadella" and second.obj == (0, 9)
  assert [e.id for e in examples] == ["a1", "a2", "a3", "a4"]
  assert examples[0].line == "example 'a1'" and same[2].line == 3
  labels = task.labels(examples)
  assert labels == ["no_relation", "org:founded_by", "per:employee_of"]
  # no_relation stays id 0 even when the training file lacks it.
  assert task.labels(examples[:1]) == ["no_relation", "org:founded_by"]


def test_missing_id_falls_back_to_the_index(task, tmp_path):
  record = {k: v for k, v in RECORDS[2].items() if k != "id"}
  (example,) = task.read(_write(tmp_path / "x.jsonl", [record], jsonl=True), "test")
  assert example.id == "0"


@pytest.mark.parametrize("change, expected", [
    (lambda r: r.pop("obj_end"), "missing key(s) obj_end"),
    (lambda r: r.pop("relation"), "missing key(s) relation"),
    (lambda r: r.update(subj_end=len(r["token"])), "is not inside the"),
    (lambda r: r.update(subj_start=3, subj_end=2), "subj_start 3 > subj_end 2"),
    (lambda r: r.update(obj_start=3, obj_end=3), "overlap"),
    (lambda r: r.update(token=[]), "non-empty list of strings"),
    (lambda r: r.update(subj_start="3"), "must be integers"),
])
def test_bad_records_name_file_and_example(task, tmp_path, change, expected):
  records = json.loads(json.dumps(RECORDS))
  change(records[1])
  path = _write(tmp_path / "train.json", records)
  with pytest.raises(DataError) as info:
    task.read(path, "train")
  message = str(info.value)
  assert expected in message and str(path) in message and "'a2'" in message
  # JSON lines: the error names the line.
  path = _write(tmp_path / "train.jsonl", records, jsonl=True)
  with pytest.raises(DataError) as info:
    task.read(path, "train")
  assert str(info.value).startswith(f"{path}:2: ") and expected in str(info.value)


@pytest.mark.parametrize("content, where", [("", None), ("  \n", None), ("[]", None),
                                            ('{"id": 1}\n{oops\n', 2), ("[{]", 1)])
def test_empty_or_broken_files(task, tmp_path, content, where):
  path = tmp_path / "dev.json"
  path.write_text(content)
  with pytest.raises(DataError) as info:
    task.read(path, "dev")
  assert info.value.path == str(path) and info.value.line == where


def test_unseen_dev_relation_is_an_error(task, tmp_path):
  train = task.read(_write(tmp_path / "train.json", RECORDS[:2]), "train")
  dev = task.read(_write(tmp_path / "dev.json", RECORDS[2:] + [dict(
      RECORDS[0], id="d9", relation="per:title")]), "dev")
  labels = task.labels(train)
  with pytest.raises(DataError) as info:
    task.featurize(dev, labels, "dev")
  message = str(info.value)
  assert message.startswith(f"{tmp_path / 'dev.json'}:example 'd9': ")
  assert "'per:title'" in message


def test_read_raw(task, tmp_path):
  path = tmp_path / "raw.txt"
  path.write_text("<e2>Microsoft</e2> was founded by <e1>Bill Gates</e1> .\n\n"
                  "In 1975 <e1> Paul Allen </e1> met <e2>Gates</e2>\n")
  first, second = task.read_raw(path)
  assert first.text == "Microsoft was founded by Bill Gates ."
  assert first.text[slice(*first.subj)] == "Bill Gates" and first.obj == (0, 9)
  assert second.line == 3 and second.text[slice(*second.subj)] == "Paul Allen"
  assert first.relation is None
  path.write_text("ok <e1>a</e1> <e2>b</e2>\n<e1>only one</e1>\n")
  with pytest.raises(DataError, match=r"raw.txt:2: needs one <e2>...</e2> pair"):
    task.read_raw(path)
  path.write_text("<e1>a <e2>b</e1> c</e2>\n")
  with pytest.raises(DataError, match=r"raw.txt:1: .*overlap"):
    task.read_raw(path)


# ---- features ------------------------------------------------------------------------------

@pytest.mark.torch
def test_features_equal_transformers_tokenizer(task, luke_dir, tmp_path):
  examples = task.read(_write(tmp_path / "train.json", RECORDS), "train")
  labels = task.labels(examples)
  features = task.featurize(examples, labels, "train")
  hf = _hf_tokenizer(luke_dir)
  expected = hf([e.text for e in examples], entity_spans=[[e.subj, e.obj] for e in examples],
                padding="max_length", max_length=64, return_tensors="np")
  for key in relation.RelationTask.input_keys:
    np.testing.assert_array_equal(features.arrays[key], np.asarray(expected[key]), err_msg=key)
  assert features.arrays["entity_position_ids"].shape == (4, 2, 30)
  np.testing.assert_array_equal(features.arrays["labels"], [1, 2, 0, 1])
  np.testing.assert_array_equal(features.example_index, np.arange(4))
  # [MASK] on the subject, [MASK2] on the object, whatever their order in the sentence.
  np.testing.assert_array_equal(features.arrays["entity_ids"], [[0, 3]] * 4)


@pytest.mark.torch
def test_long_sentences_lose_context_not_entities(task, luke_dir, tmp_path):
  words = ("word " * 80).split()
  record = dict(id="long", token=words[:30] + ["Bill", "Gates", "met", "Paul"] + words[:40],
                subj_start=30, subj_end=31, obj_start=33, obj_end=33, relation="no_relation")
  examples = task.read(_write(tmp_path / "long.json", [record]), "dev")
  features = task.featurize(examples, ["no_relation"], "dev")
  assert features.arrays["attention_mask"].sum() <= 64
  text, spans = features.meta[0]
  assert text[slice(*spans[0])] == "Bill Gates" and text[slice(*spans[1])] == "Paul"
  assert len(text) < len(examples[0].text)
  hf = _hf_tokenizer(luke_dir)
  expected = hf(text, entity_spans=spans, padding="max_length", max_length=64,
                return_tensors="np")
  for key in relation.RelationTask.input_keys:
    np.testing.assert_array_equal(features.arrays[key], np.asarray(expected[key]), err_msg=key)
  # Entities 73 words apart cannot fit 64 tokens: an error names the example.
  record.update(subj_start=0, subj_end=0, obj_start=73, obj_end=73)
  examples = task.read(_write(tmp_path / "long.json", [record]), "dev")
  with pytest.raises(DataError, match=r"long.json:example 'long': the entities alone take"):
    task.featurize(examples, ["no_relation"], "dev")


# ---- loss, decoding, predictions -----------------------------------------------------------

@pytest.mark.slow
def test_loss_matches_softmax_ce_and_the_head(task, finetune_base, tmp_path):
  examples = task.read(_write(tmp_path / "train.json", RECORDS), "train")
  labels = task.labels(examples)
  features = task.featurize(examples, labels, "train")
  config, _, _ = checkpoint.read_config(finetune_base)
  config = config.replace(**task.head_config(labels))
  module = registry.build(task.architecture, config)
  params = registry.init_params(task.architecture, config, jax.random.PRNGKey(1))
  params["luke"] = checkpoint.load_params(finetune_base, config, "LukeModel")
  batch = {k: jnp.asarray(v) for k, v in features.arrays.items()}
  apply = jax.jit(lambda p, b: module.apply({"params": p}, **{k: b[k] for k in task.input_keys},
                                            labels=b["labels"], deterministic=True))
  out = apply(params, batch)
  assert out.logits.shape == (4, len(labels))
  loss_sum, weight = task.loss(out, batch)
  assert loss_sum.shape == weight.shape == (4,) and loss_sum.dtype == jnp.float32
  expected = optax.softmax_cross_entropy(out.logits, jax.nn.one_hot(batch["labels"], len(labels)))
  np.testing.assert_allclose(loss_sum, expected, rtol=1e-6)
  np.testing.assert_array_equal(weight, np.ones(4))
  # The head's own (HF) loss is the same mean.
  np.testing.assert_allclose(loss_sum.sum() / weight.sum(), out.loss, rtol=1e-6)
  kept = task.outputs(out)
  assert set(kept) == {"logits"} and kept["logits"].dtype == jnp.float32


def test_decode_evaluate_and_write(task, tmp_path):
  examples = task.read(_write(tmp_path / "test.json", RECORDS), "test")
  labels = ["no_relation", "org:founded_by", "per:employee_of"]
  features = task.featurize(examples, labels, "test")
  logits = np.array([[0, 5, 1], [0, 1, 2], [3, 0, 0], [1, 0, 4]], np.float32)
  predictions = task.decode(examples, features, {"logits": logits}, labels)
  assert predictions == ["org:founded_by", "per:employee_of", "no_relation", "per:employee_of"]
  # gold: founded_by, employee_of, no_relation, founded_by -> guessed 3, gold 3, correct 2.
  scores = task.evaluate(examples, predictions)
  assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
  assert scores["f1"] == pytest.approx(2 / 3)
  path = task.write_predictions(tmp_path / "out" / f"test_predictions{task.prediction_suffix}",
                                examples, predictions)
  assert path.read_text().splitlines() == predictions


# ---- end to end through the trainer --------------------------------------------------------

PATTERNS = [("founded", "org:founded_by"), ("works for", "per:employee_of"),
            ("met", "no_relation")]
PEOPLE = ["Bill Gates", "Paul Allen", "Satya Nadella", "Steve Jobs"]
ORGS = ["Microsoft", "Apple", "Intel", "Sony"]


def _synthetic(path, n, seed):
  """Relations a tiny model can learn from the verb between subject and object."""
  rng = np.random.default_rng(seed)
  records = []
  for i in range(n):
    verb, relation = PATTERNS[i % len(PATTERNS)]
    person, org = PEOPLE[rng.integers(4)].split(), ORGS[rng.integers(4)]
    tokens = ["Yesterday", ","] + person + verb.split() + [org, "-LRB-", "reports", "-RRB-", "."]
    records.append(dict(id=f"{path.stem}-{i}", token=tokens, subj_start=2,
                        subj_end=1 + len(person), obj_start=2 + len(person) + len(verb.split()),
                        obj_end=2 + len(person) + len(verb.split()), relation=relation))
  return str(_write(path, records))


@pytest.mark.slow
def test_finetune_end_to_end(finetune_base, tmp_path):
  from luke_jax.finetune import trainer
  config = finetune_config("tacred")
  config.data.max_seq_length = 64
  # 60 rows: one epoch boundary (one checkpoint save) in the 15 steps.
  config.data.train_file = _synthetic(tmp_path / "train.json", 60, 0)
  config.data.dev_file = _synthetic(tmp_path / "dev.json", 9, 1)
  config.data.test_file = _synthetic(tmp_path / "test.json", 6, 2)
  config.model.hidden_dropout_prob = 0.0  # a clean loss curve in 15 steps
  workdir = tmp_path / "work"
  _, results = run_tiny_finetune(config, finetune_base, workdir, num_epochs=2,
                                 learning_rate=3e-3)
  for split in ("dev", "test"):
    assert {"precision", "recall", "f1"} <= set(results[split])
    lines = (workdir / f"{split}_predictions.txt").read_text().splitlines()
    assert len(lines) == {"dev": 9, "test": 6}[split]
    assert set(lines) <= {"no_relation", "org:founded_by", "per:employee_of"}
  # --predict_only on marked plain text with the best model.
  raw = tmp_path / "raw.txt"
  raw.write_text("<e1>Bill Gates</e1> founded <e2>Sony</e2> .\n<e2>Intel</e2> met <e1>Paul</e1>\n")
  predictions = trainer.predict(config, workdir / "best", raw, tmp_path / "raw_predictions.txt")
  assert (tmp_path / "raw_predictions.txt").read_text().splitlines() == predictions
  assert len(predictions) == 2
