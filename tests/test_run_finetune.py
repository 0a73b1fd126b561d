"""`run_finetune.py` end to end: train, results, and --predict_only equal to the public API."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import luke_jax
from luke_jax.finetune.tasks.ner import NerTask
from luke_jax.tokenization.tokenizer import LukeTokenizer

pytestmark = pytest.mark.slow  # end to end: `make test` runs it, `make test-fast` does not

ROOT = pathlib.Path(__file__).resolve().parents[1]
SENTENCES = [
    [("Alice", "B-PER"), ("visited", "O"), ("Tokyo", "B-LOC"), (".", "O")],
    [("Bob", "B-PER"), ("Smith", "I-PER"), ("left", "O"), ("Japan", "B-LOC"), (".", "O")],
    [("Acme", "B-ORG"), ("hired", "O"), ("Alice", "B-PER"), ("in", "O"), ("Paris", "B-LOC")],
]


def _conll(path, repeats):
  lines = []
  for r in range(repeats):
    lines += ["-DOCSTART- -X- -X- O", ""]
    for sentence in SENTENCES[r % 3:] + SENTENCES[:r % 3]:
      lines += [f"{w} NNP B-NP {t}" for w, t in sentence] + [""]
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return str(path)


def _run(*args):
  proc = subprocess.run([sys.executable, "run_finetune.py", "--config",
                         "configs/finetune/conll2003.py", *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def test_train_then_predict_only_matches_from_pretrained(tmp_path, finetune_base):
  work = tmp_path / "work"
  data = [f"--config.data.train_file={_conll(tmp_path / 'train.txt', 4)}",
          f"--config.data.dev_file={_conll(tmp_path / 'dev.txt', 1)}",
          f"--config.data.test_file={_conll(tmp_path / 'test.txt', 1)}"]
  _run(f"--config.train.init_checkpoint={finetune_base}", *data, "--config.data.max_seq_length=48",
       "--config.data.max_entity_length=32", "--config.data.max_mention_length=4",
       "--config.train.batch_size=4", "--config.train.num_epochs=12",
       "--config.optim.learning_rate=1e-2", "--config.train.log_every=6",
       "--config.optim.warmup_ratio=0.0", "--config.model.hidden_dropout_prob=0.0",
       "--config.mesh=(('data', 2), ('fsdp', 1), ('tensor', 1))", f"--workdir={work}")
  results = json.loads((work / "results.json").read_text())
  assert {"precision", "recall", "f1"} <= set(results["test"])
  assert (work / "test_predictions.txt").exists() and (work / "best" / "params").exists()

  raw = tmp_path / "raw.txt"
  raw.write_text("Alice visited Paris .\nBob Smith hired Alice .\n\nAcme left Japan .\n")
  proc = _run("--predict_only", f"--predict_file={raw}", f"--workdir={work}",
              "--config.data.max_seq_length=48", "--config.data.max_entity_length=32",
              "--config.data.max_mention_length=4")
  assert "wrote 3 predictions" in proc.stdout
  lines = [l.split() for l in (work / "predictions.txt").read_text().splitlines()]
  cli_tags = [t for w, t in (l for l in lines if l and l[0] != "-DOCSTART-")]

  # The same through the public API: from_pretrained, the tokenizer, the task's decoding.
  model, params = luke_jax.from_pretrained(work / "best")
  labels = list(model.config.id2label.values())
  config = __import__("conftest").finetune_config("conll2003")
  config.data.update(max_seq_length=48, max_entity_length=32, max_mention_length=4)
  task = NerTask(config.data, LukeTokenizer.from_pretrained(work / "best"))
  examples = task.read_raw(raw)
  features = task.featurize(examples, labels, "predict")
  out = model.apply({"params": params}, **{k: features.arrays[k] for k in task.input_keys})
  api = task.decode(examples, features, {"logits": np.asarray(out.logits)}, labels)
  assert cli_tags == [t for tags in api for t in tags]
  assert len(cli_tags) == 13 and results["test"]["f1"] > 0  # the model learnt something
