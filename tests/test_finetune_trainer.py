"""The task-independent fine-tuning loop, driven by a small task defined here."""

import json

import jax
import numpy as np
import optax
import pytest

from luke_jax.finetune import batching, tasks, trainer
from luke_jax.finetune.config import base_config
from luke_jax.finetune.task import DataError, Features, Task

pytestmark = pytest.mark.slow  # end to end: `make test` runs it, `make test-fast` does not


class SentimentTask(Task):
  """JSONL `{"text", "span": [start, end], "label"}`: classify the marked entity's sentiment."""

  name = "toy_sentiment"
  architecture = "LukeForEntityClassification"
  tokenizer_task = "entity_classification"
  input_keys = ("input_ids", "attention_mask", "entity_ids", "entity_position_ids",
                "entity_attention_mask")
  target_keys = ("labels",)
  metric = "accuracy"

  def read(self, path, split):
    out = []
    for i, line in enumerate(open(path, encoding="utf-8"), 1):
      d = json.loads(line)
      if "text" not in d:
        raise DataError(path, i, "no text")
      out.append((path, i, d))
    return out

  def labels(self, train_examples):
    return sorted({d["label"] for _, _, d in train_examples})

  def featurize(self, examples, labels, split):
    enc = self.tokenizer([d["text"] for _, _, d in examples],
                         entity_spans=[[tuple(d["span"])] for _, _, d in examples],
                         padding="max_length", truncation=True,
                         max_length=self.config.max_seq_length, return_tensors="np")
    ids = []
    for path, line, d in examples:
      if "label" in d and d["label"] not in labels:
        raise DataError(path, line, f"label {d['label']!r} unseen in training")
      ids.append(labels.index(d["label"]) if "label" in d else -1)
    arrays = {k: np.asarray(enc[k]) for k in self.input_keys}
    arrays["labels"] = np.asarray(ids, np.int32)
    return Features(arrays, np.arange(len(examples)), [None] * len(examples))

  def loss(self, outputs, batch):
    logits = outputs.logits.astype("float32")
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]), \
        jax.numpy.ones(logits.shape[0])

  def outputs(self, outputs):
    return {"logits": outputs.logits}

  def decode(self, examples, features, outputs, labels):
    return [labels[i] for i in outputs["logits"].argmax(-1)]

  def evaluate(self, examples, predictions):
    gold = [d.get("label") for _, _, d in examples]
    return {"accuracy": float(np.mean([g == p for g, p in zip(gold, predictions)]))}

  def write_predictions(self, path, examples, predictions):
    path.write_text("".join(json.dumps({"label": p}) + "\n" for p in predictions))
    return path


WORDS = {"good": "positive", "great": "positive", "bad": "negative", "awful": "negative"}


def _write(path, n, seed):
  rng = np.random.default_rng(seed)
  names = ["Tokyo", "Japan", "New York", "Los Angeles"]
  with open(path, "w", encoding="utf-8") as f:
    for _ in range(n):
      name, word = rng.choice(names), rng.choice(list(WORDS))
      text = f"I think {name} is {word} ."
      start = text.index(name)
      f.write(json.dumps({"text": text, "span": [start, start + len(name)],
                          "label": WORDS[word]}) + "\n")
  return str(path)


@pytest.fixture()
def toy(monkeypatch, tmp_path, finetune_base):
  monkeypatch.setitem(tasks._TASKS, "toy_sentiment", (__name__, "SentimentTask"))
  config = base_config("toy_sentiment")
  config.train.init_checkpoint = str(finetune_base)
  config.data.max_seq_length = 24
  config.data.train_file = _write(tmp_path / "train.jsonl", 24, 0)
  config.data.dev_file = _write(tmp_path / "dev.jsonl", 10, 1)
  config.data.test_file = _write(tmp_path / "test.jsonl", 9, 2)
  config.optim.update(learning_rate=3e-3, warmup_ratio=0.0)
  config.train.update(num_epochs=4, batch_size=8, eval_batch_size=4, log_every=3, ckpt_every=2,
                      seed=0)
  config.mesh = [("data", 2), ("fsdp", 1), ("tensor", 1)]
  return config


def test_trains_keeps_best_and_writes_results(toy, tmp_path):
  result = trainer.finetune(toy, tmp_path / "w")
  losses = [l for _, l in result.losses]
  assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])
  results = json.loads((tmp_path / "w" / "results.json").read_text())
  assert results["dev"] == result.dev and results["test"] == result.test
  assert set(results["dev"]) == {"accuracy"} and 0 <= results["test"]["accuracy"] <= 1
  state = json.loads((tmp_path / "w" / "best" / "finetune_state.json").read_text())
  assert state["step"] == results["best_step"] and state["step"] % 3 == 0
  # The best checkpoint's dev score is the one the final evaluation reproduces.
  assert state["dev"]["accuracy"] == pytest.approx(results["dev"]["accuracy"])
  lines = (tmp_path / "w" / "test_predictions.jsonl").read_text().splitlines()
  assert len(lines) == 9
  # predict() through the saved model gives the same test predictions.
  preds = trainer.predict(toy, tmp_path / "w" / "best", toy.data.test_file,
                          tmp_path / "p.jsonl", raw=False)
  assert [json.loads(l)["label"] for l in lines] == preds
  assert (tmp_path / "p.jsonl").exists()


def test_resume_is_bitwise_equal(toy, tmp_path):
  full = trainer.finetune(toy, tmp_path / "a")
  first = trainer.finetune(toy, tmp_path / "b", stop_after=5)
  assert first.preempted and first.step == 5
  assert not (tmp_path / "b" / "results.json").exists()
  rest = trainer.finetune(toy, tmp_path / "b")
  assert rest.step == full.step
  assert dict(rest.losses) == {s: l for s, l in full.losses if s > 5}
  assert rest.test == full.test


def test_grad_accumulation_equals_one_batch(toy, tmp_path):
  toy.train.update(num_epochs=1, steps=2)
  toy.model.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  one = trainer.finetune(toy, tmp_path / "one")
  toy.train.grad_accum_steps = 2
  two = trainer.finetune(toy, tmp_path / "two")
  np.testing.assert_allclose([l for _, l in one.losses], [l for _, l in two.losses], rtol=1e-5)


def test_batches_are_a_function_of_the_step():
  rows = [batching.train_rows(s, 10, 4, seed=3) for s in range(6)]
  assert all(len(r) == 4 for r in rows)
  epoch0 = np.concatenate(rows[:3])
  assert sorted(epoch0[epoch0 >= 0]) == list(range(10)) and (epoch0 < 0).sum() == 2
  assert not np.array_equal(rows[0], rows[3])  # a new order each epoch
  np.testing.assert_array_equal(rows[4], batching.train_rows(4, 10, 4, seed=3))


def test_bad_inputs_fail_before_training(toy, tmp_path):
  toy.data.dev_file = str(tmp_path / "missing.jsonl")
  with pytest.raises(FileNotFoundError, match="dev_file.*missing.jsonl"):
    trainer.finetune(toy, tmp_path / "w")
  toy.data.dev_file = _write(tmp_path / "dev.jsonl", 3, 1)
  with open(toy.data.dev_file, "a") as f:
    f.write(json.dumps({"text": "x is y .", "span": [0, 1], "label": "neutral"}) + "\n")
  with pytest.raises(DataError, match=r"dev.jsonl:4: label 'neutral' unseen"):
    trainer.finetune(toy, tmp_path / "w")
  assert not (tmp_path / "w" / "checkpoints").exists()
  toy.data.dev_file = ""
  toy.model.no_such_field = 1
  with pytest.raises(ValueError, match="no_such_field"):
    trainer.finetune(toy, tmp_path / "w2")
