"""Open Entity typing: readers, features (= transformers' tokenizer), BCE loss, micro F1."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import finetune_config, run_tiny_finetune
from luke_jax import checkpoint
from luke_jax.finetune.task import DataError
from luke_jax.finetune.tasks import classification_metrics, entity_typing
from luke_jax.models import registry
from luke_jax.tokenization.tokenizer import LukeTokenizer

CROWD = [
    dict(annot_id="c1", left_context_token="In 1975 -LRB- or so -RRB- ,".split(),
         mention_span="Bill Gates", right_context_token="founded a company .".split(),
         y_str=["person", "leader", "entity", "person"]),
    # mention at the start, only fine types: kept with no type, as the reference keeps it
    dict(annot_id="c2", left_context_token=[], mention_span="Microsoft",
         right_context_token="grew fast .".split(), y_str=["company", "business"]),
    # mention at the end
    dict(annot_id="c3", left_context_token="They moved to".split(), mention_span="Los Angeles",
         right_context_token=[], y_str=["location", "place", "city"]),
]
ERNIE = [
    dict(sent="Paris is the capital of France . ", start=0, end=6, labels=["location", "place"],
         ents=[]),
    dict(sent="A shop -LRB- Tokyo -RRB- opened .", start=13, end=19, labels=["location"]),
]


@pytest.fixture(scope="module")
def task(luke_dir):
  config = finetune_config("open_entity")
  config.data.max_seq_length = 48
  return entity_typing.EntityTypingTask(
      config.data, LukeTokenizer.from_pretrained(
          luke_dir, task=entity_typing.EntityTypingTask.tokenizer_task))


def _write_jsonl(path, records):
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  return path


# ---- the metric, worked by hand ------------------------------------------------------------

def test_micro_f1_hand_worked():
  gold = [["person", "entity"], [], ["location", "place"], ["time"]]
  pred = [["person"], ["event"], ["location", "place", "object"], []]
  # correct 1 + 0 + 2 + 0 = 3; guessed 1 + 1 + 3 + 0 = 5; gold 2 + 0 + 2 + 1 = 5.
  scores = classification_metrics.multilabel_scores(gold, pred)
  assert scores == pytest.approx(dict(precision=0.6, recall=0.6, f1=0.6))
  gold = [["person", "entity"], ["place"]]
  pred = [["person"], []]
  # correct 1, guessed 1, gold 3: P 1, R 1/3, F1 = 2 * 1/3 / (4/3) = 1/2.
  assert classification_metrics.multilabel_scores(gold, pred) == pytest.approx(
      dict(precision=1.0, recall=1 / 3, f1=0.5))
  # Nothing predicted: precision 0 here (the typing scorers), unlike TACRED's 1.0.
  assert classification_metrics.multilabel_scores([["a"]], [[]]) == dict(
      precision=0.0, recall=0.0, f1=0.0)


# ---- readers -------------------------------------------------------------------------------

def test_read_crowd(task, tmp_path):
  examples = task.read(_write_jsonl(tmp_path / "train.json", CROWD), "train")
  first, second, third = examples
  assert first.text == "In 1975 ( or so ) , Bill Gates founded a company ."
  assert first.mention == "Bill Gates" and first.types == ["person", "entity"]
  assert second.span == (0, 9) and second.types == []
  assert third.mention == "Los Angeles" and third.text.endswith("Los Angeles")
  assert [e.id for e in examples] == ["c1", "c2", "c3"] and third.line == 3
  assert task.labels(examples) == list(entity_typing.GENERAL_TYPES)


def test_read_ernie_release(task, tmp_path):
  path = tmp_path / "dev.json"
  path.write_text(json.dumps(ERNIE))
  first, second = task.read(path, "dev")
  assert first.mention == "Paris" and first.types == ["location", "place"]
  assert second.text == "A shop ( Tokyo ) opened ." and second.mention == "Tokyo"
  assert first.line == "example '0'" and second.id == "1"


def test_configured_label_list(luke_dir, tmp_path):
  config = finetune_config("open_entity")
  config.data.labels = ["person", "leader"]
  task = entity_typing.EntityTypingTask(config.data, LukeTokenizer.from_pretrained(
      luke_dir, task="entity_classification"))
  first = task.read(_write_jsonl(tmp_path / "t.json", CROWD), "train")[0]
  assert first.types == ["person", "leader"] and task.labels([first]) == ["person", "leader"]


@pytest.mark.parametrize("change, expected", [
    (lambda r: r.pop("mention_span"), "missing keys"),
    (lambda r: r.pop("y_str"), "`y_str` must be a list"),
    (lambda r: r.update(mention_span=" "), "non-blank string"),
    (lambda r: r.update(left_context_token="a b"), "`left_context_token` must be a list"),
])
def test_bad_crowd_records_name_file_and_line(task, tmp_path, change, expected):
  records = json.loads(json.dumps(CROWD))
  change(records[1])
  path = _write_jsonl(tmp_path / "train.json", records)
  with pytest.raises(DataError) as info:
    task.read(path, "train")
  assert str(info.value).startswith(f"{path}:2: ") and expected in str(info.value)


@pytest.mark.parametrize("change, expected", [
    (lambda r: r.update(end=99), "is not inside the"),
    (lambda r: r.update(start=5, end=5), "is not inside the"),
    (lambda r: r.update(start=1.5), "must be integers"),
])
def test_bad_ernie_records_name_the_example(task, tmp_path, change, expected):
  records = json.loads(json.dumps(ERNIE))
  change(records[1])
  path = tmp_path / "dev.json"
  path.write_text(json.dumps(records))
  with pytest.raises(DataError) as info:
    task.read(path, "dev")
  assert str(info.value).startswith(f"{path}:example '1': ") and expected in str(info.value)


def test_unknown_ernie_type_and_empty_files(task, tmp_path):
  path = tmp_path / "dev.json"
  path.write_text(json.dumps([dict(ERNIE[0], labels=["person", "athlete"])]))
  examples = task.read(path, "dev")
  with pytest.raises(DataError, match=r"dev.json:example '0': type 'athlete'"):
    task.featurize(examples, task.labels([]), "dev")
  for content in ("", "\n\n", "[]"):
    path.write_text(content)
    with pytest.raises(DataError, match="empty"):
      task.read(path, "dev")
  path.write_text(json.dumps(CROWD[0]) + "\nnot json\n")
  with pytest.raises(DataError, match=r"dev.json:2: not valid JSON"):
    task.read(path, "dev")


def test_read_raw(task, tmp_path):
  path = tmp_path / "raw.txt"
  path.write_text("He met <e>Barack Obama</e> in Kenya .\n\n<e> Tokyo </e>\n")
  first, second = task.read_raw(path)
  assert first.mention == "Barack Obama" and first.types is None and first.line == 1
  assert second.line == 3 and second.mention == "Tokyo"
  path.write_text("fine <e>x</e>\nno mention here\n")
  with pytest.raises(DataError, match=r"raw.txt:2: needs one <e>...</e> pair"):
    task.read_raw(path)
  path.write_text("<e></e> x\n")
  with pytest.raises(DataError, match=r"raw.txt:1: <e>...</e> marks no text"):
    task.read_raw(path)


# ---- features ------------------------------------------------------------------------------

@pytest.mark.torch
def test_features_equal_transformers_tokenizer(task, luke_dir, tmp_path):
  transformers = pytest.importorskip("transformers")
  from transformers.tokenization_python import PreTrainedTokenizer
  # transformers 5.24 workarounds, as in test_tokenizer_parity.py.
  transformers.LukeTokenizer.truncate_sequences = PreTrainedTokenizer.truncate_sequences
  hf = transformers.LukeTokenizer.from_pretrained(luke_dir, task="entity_classification")
  hf._tokenizer.no_truncation()
  hf._tokenizer.no_padding()
  path = tmp_path / "dev.json"
  path.write_text(json.dumps(ERNIE))
  examples = task.read(_write_jsonl(tmp_path / "train.json", CROWD), "train") + task.read(
      path, "dev")
  labels = task.labels(examples)
  features = task.featurize(examples, labels, "train")
  expected = hf([e.text for e in examples], entity_spans=[[e.span] for e in examples],
                padding="max_length", max_length=48, return_tensors="np")
  for key in task.input_keys:
    np.testing.assert_array_equal(features.arrays[key], np.asarray(expected[key]), err_msg=key)
  assert features.arrays["entity_position_ids"].shape == (5, 1, 30)
  # Multi-hot targets in the label order: entity=0, location=3, person=6, place=7.
  expected_targets = np.zeros((5, 9), np.float32)
  expected_targets[0, [0, 6]] = 1
  expected_targets[2, [3, 7]] = 1
  expected_targets[3, [3, 7]] = 1
  expected_targets[4, 3] = 1
  np.testing.assert_array_equal(features.arrays["labels"], expected_targets)


# ---- loss, decoding, predictions -----------------------------------------------------------

@pytest.mark.slow
def test_loss_is_bce_mean_over_all_entries(task, finetune_base, tmp_path):
  examples = task.read(_write_jsonl(tmp_path / "train.json", CROWD), "train")
  labels = task.labels(examples)
  features = task.featurize(examples, labels, "train")
  config, _, _ = checkpoint.read_config(finetune_base)
  config = config.replace(**task.head_config(labels))
  module = registry.build(task.architecture, config)
  params = registry.init_params(task.architecture, config, jax.random.PRNGKey(2))
  params["luke"] = checkpoint.load_params(finetune_base, config, "LukeModel")
  batch = {k: jnp.asarray(v) for k, v in features.arrays.items()}
  apply = jax.jit(lambda p, b: module.apply({"params": p}, **{k: b[k] for k in task.input_keys},
                                            labels=b["labels"], deterministic=True))
  out = apply(params, batch)
  assert out.logits.shape == (3, 9)
  loss_sum, weight = task.loss(out, batch)
  assert loss_sum.shape == weight.shape == (3,) and loss_sum.dtype == jnp.float32
  entries = optax.sigmoid_binary_cross_entropy(out.logits, batch["labels"])
  np.testing.assert_allclose(loss_sum, entries.sum(-1), rtol=1e-6)
  np.testing.assert_array_equal(weight, np.full(3, 9.0))
  # The trainer's ratio is the mean over all 27 entries, which is the head's (HF) loss.
  np.testing.assert_allclose(loss_sum.sum() / weight.sum(), entries.mean(), rtol=1e-6)
  np.testing.assert_allclose(loss_sum.sum() / weight.sum(), out.loss, rtol=1e-6)


def test_decode_evaluate_and_write(task, tmp_path):
  examples = task.read(_write_jsonl(tmp_path / "test.json", CROWD), "test")
  labels = task.labels(examples)
  features = task.featurize(examples, labels, "test")
  logits = np.full((3, 9), -1.0, np.float32)
  logits[0, [6, 8]] = 2.0    # person (gold), time (wrong)
  logits[1, 0] = 0.0         # exactly 0 is not > 0: nothing predicted
  logits[2, [3, 7]] = 0.5    # location, place (both gold)
  predictions = task.decode(examples, features, {"logits": logits}, labels)
  assert predictions == [["person", "time"], [], ["location", "place"]]
  # correct 1 + 0 + 2 = 3, guessed 2 + 0 + 2 = 4, gold 2 + 0 + 2 = 4.
  scores = task.evaluate(examples, predictions)
  assert scores == pytest.approx(dict(precision=0.75, recall=0.75, f1=0.75))
  path = task.write_predictions(tmp_path / f"test_predictions{task.prediction_suffix}",
                                examples, predictions)
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  assert rows[0] == {"id": "c1", "mention": "Bill Gates", "types": ["person", "time"]}
  assert [r["types"] for r in rows] == predictions


# ---- end to end through the trainer --------------------------------------------------------

CONTEXTS = [(["Yesterday"], ["said", "hello", "."], ["person", "entity"]),
            (["They", "visited"], ["-LRB-", "again", "-RRB-", "."], ["location", "place"]),
            (["Reports", "say"], ["hired", "staff", "."], ["organization", "group"])]
NAMES = ["Tokyo", "Bill Gates", "Sony", "Paris", "Apple"]


def _synthetic(path, n, seed):
  """Types a tiny model can learn from the words around the mention."""
  rng = np.random.default_rng(seed)
  records = []
  for i in range(n):
    left, right, types = CONTEXTS[i % len(CONTEXTS)]
    records.append(dict(annot_id=f"{path.stem}-{i}", left_context_token=left,
                        mention_span=NAMES[rng.integers(len(NAMES))], right_context_token=right,
                        y_str=types + ["fine_type"]))
  return str(_write_jsonl(path, records))


@pytest.mark.slow
def test_finetune_end_to_end(finetune_base, tmp_path):
  from luke_jax.finetune import trainer
  config = finetune_config("open_entity")
  config.data.max_seq_length = 64
  # 60 rows: one epoch boundary (one checkpoint save) in the 15 steps.
  config.data.train_file = _synthetic(tmp_path / "train.json", 60, 0)
  config.data.dev_file = _synthetic(tmp_path / "dev.json", 9, 1)
  config.data.test_file = _synthetic(tmp_path / "test.json", 6, 2)
  config.model.hidden_dropout_prob = 0.0  # a clean loss curve in 15 steps
  workdir = tmp_path / "work"
  _, results = run_tiny_finetune(config, finetune_base, workdir, num_epochs=2,
                                 learning_rate=3e-3)
  for split, n in (("dev", 9), ("test", 6)):
    assert {"precision", "recall", "f1"} <= set(results[split])
    rows = [json.loads(line) for line in
            (workdir / f"{split}_predictions.jsonl").read_text().splitlines()]
    assert len(rows) == n and rows[0]["id"] == f"{split}-0"
    assert all(set(r["types"]) <= set(entity_typing.GENERAL_TYPES) for r in rows)
  # --predict_only on marked plain text with the best model.
  raw = tmp_path / "raw.txt"
  raw.write_text("They visited <e>Tokyo</e> again .\n<e>Sony</e> hired staff .\n")
  predictions = trainer.predict(config, workdir / "best", raw, tmp_path / "raw.jsonl")
  rows = [json.loads(line) for line in (tmp_path / "raw.jsonl").read_text().splitlines()]
  assert [r["mention"] for r in rows] == ["Tokyo", "Sony"] and [r["id"] for r in rows] == ["1", "2"]
  assert [r["types"] for r in rows] == predictions
