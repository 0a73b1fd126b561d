"""The entity disambiguation fine-tuning task: masking, loss, reading, and runs end to end
(`run_finetune.py` on a tiny random LukeForMaskedLM, then `python -m
luke_jax.disambiguation.evaluate` on the fine-tuned model)."""

import json
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import finetune_config
from ed_fixtures import (write_dataset, write_masked_lm, write_synthetic_dataset,
                         write_tokenizer)
import luke_jax
from luke_jax.disambiguation import dataset, evaluate, features, runner
from luke_jax.finetune import tasks
from luke_jax.finetune.tasks.entity_disambiguation import EntityDisambiguationTask
from luke_jax.tokenization.tokenizer import LukeTokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
LENGTHS = dict(max_seq_length=32, max_entity_length=4, max_mention_length=4,
               max_candidate_length=3)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
  return write_tokenizer(tmp_path_factory.mktemp("ed_tok"))


@pytest.fixture(scope="module")
def base(tmp_path_factory, tokenizer_dir):
  return write_masked_lm(tmp_path_factory.mktemp("ed_base") / "mlm", tokenizer_dir)


def _task(tokenizer_dir, **data):
  config = finetune_config("entity_disambiguation")
  config.data.update(dict(LENGTHS, **data))
  return EntityDisambiguationTask(config.data, LukeTokenizer.from_pretrained(tokenizer_dir))


def test_registered_and_options_checked(tokenizer_dir):
  assert tasks.get("entity_disambiguation") is EntityDisambiguationTask
  for key, value, message in (("inference_mode", "both", "inference_mode"),
                              ("document_split_mode", "halves", "document_split_mode"),
                              ("masked_entity_prob", 1.5, "masked_entity_prob")):
    with pytest.raises(ValueError, match=f"config.data.{message}"):
      _task(tokenizer_dir, **{key: value})


def test_train_inputs_mask_the_reference_count(tokenizer_dir):
  task = _task(tokenizer_dir, max_entity_length=16)
  mask_id = task.tokenizer.entity_mask_token_id
  counts = [0, 1, 2, 5, 7, 15, 16]
  n_rows, entities = len(counts), 16
  mention = (np.arange(entities)[None] < np.asarray(counts)[:, None]).astype(np.int32)
  gold = np.where(mention > 0, 4 + np.arange(entities)[None] % 10, 0).astype(np.int32)
  labels = np.where(mention > 0, np.arange(entities)[None] % 3, -1).astype(np.int32)
  batch = {"entity_attention_mask": jnp.asarray(mention), "entity_ids": jnp.asarray(gold),
           "labels": jnp.asarray(labels), "other": jnp.ones(n_rows)}
  step = jax.jit(task.train_inputs)
  masks = []
  for seed in range(40):
    out = {k: np.asarray(v) for k, v in step(batch, jax.random.PRNGKey(seed)).items()}
    masked = out["entity_ids"] == mask_id
    # max(1, round(n * 0.9)) in Python: round(4.5) = 4, round(15 * 0.9) = round(13.500...02) = 14.
    assert masked.sum(1).tolist() == [0, 1, 2, 4, 6, 14, 14]
    assert not (masked & (mention == 0)).any()
    np.testing.assert_array_equal(out["entity_ids"][~masked], gold[~masked])
    np.testing.assert_array_equal(out["labels"], np.where(masked, labels, -1))
    assert (out["other"] == 1).all()
    masks.append(masked)
  masks = np.stack(masks)
  # Random subsets: over 40 keys every mention of the row of 5 is left unmasked sometimes.
  assert len({m[3].tobytes() for m in masks}) > 1
  assert ((~masks[:, 3, :5]).sum(0) > 0).all()


def test_loss_is_candidate_cross_entropy_over_scored_mentions(tokenizer_dir):
  task = _task(tokenizer_dir)
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 4)), jnp.float32)
  labels = jnp.asarray([[1, -1, 0], [-1, -1, 3]])
  out = type("Out", (), {"logits": logits})()
  loss_sum, weight = task.loss(out, {"labels": labels})
  per = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
  np.testing.assert_allclose(loss_sum, [per[0, 0] + per[0, 2], per[1, 2]], rtol=1e-6)
  np.testing.assert_array_equal(weight, [2.0, 1.0])


def test_read_and_featurize(tokenizer_dir, tmp_path):
  ed = write_dataset(tmp_path / "ed")
  task = _task(tokenizer_dir, titles_file=str(ed / "titles.txt"),
               redirects_file=str(ed / "redirects.tsv"))
  train = task.read(ed / "aida_train.csv", "train")
  assert [d.id for d in train] == ["1 EU", "2 SPORT"]
  assert train[0].mentions[2].title == "Paris"  # redirected
  rows = task.featurize(train, [], "train")
  # Training keeps mentions whose gold is among the first 3 candidates: not Japan (none).
  assert [[m for _, m in slots] for slots, _ in rows.meta] == [[0, 1, 2, 3], [0, 1, 2]]
  assert (rows.arrays["labels"][rows.arrays["entity_attention_mask"] > 0] >= 0).all()
  test = task.read(ed / "aida_testB.csv", "test")
  rows = task.featurize(test, [], "test")
  assert rows.arrays["eval_entity_mask"].sum() == 3
  bad = _task(tokenizer_dir, titles_file=str(tmp_path / "missing.txt"))
  with pytest.raises(FileNotFoundError, match="config.data.titles_file=.*missing.txt"):
    bad.read(ed / "aida_train.csv", "train")
  (tmp_path / "ed" / "persons.txt").unlink()
  with pytest.raises(FileNotFoundError, match="persons.txt: no such file"):
    task.read(ed / "aida_testB.csv", "test")


def test_zero_shot_from_a_masked_lm_checkpoint(base, tmp_path):
  """The evaluation path on a pretraining checkpoint: its entity head scores the candidates."""
  ed = write_dataset(tmp_path / "ed")
  module, params = luke_jax.from_pretrained(base, architecture=runner.ARCHITECTURE)
  tokenizer = LukeTokenizer.from_pretrained(base)
  docs = dataset.load_dataset(ed, ("test_b",), titles_file=ed / "titles.txt")["test_b"]
  config = features.FeatureConfig(**LENGTHS)
  results = {}
  for mode in ("local", "global"):
    predicted, scores = runner.evaluate_documents(
        module, params, tokenizer, docs, config, inference_mode=mode, split_mode="simple",
        batch_size=2)
    assert [[p.candidate >= 0 for p in d] for d in predicted] == [[True] * 3]
    assert all(0 < p.score <= 1 for p in predicted[0])
    assert scores["mentions"] == 3 and scores["mentions_per_second"] > 0
    results[mode] = [p.title for p in predicted[0]]
  # Single-candidate mentions are always right: CHINA, AT&T.
  assert results["global"][1:] == results["local"][1:] == ["China", "AT&T"]


def _losses(stdout: str) -> list[float]:
  return [float(x) for x in re.findall(r"^step \d+/\d+\s+loss ([0-9.]+)", stdout, re.M)]


@pytest.mark.slow
def test_run_finetune_then_evaluate_cli(base, tmp_path):
  ed = write_synthetic_dataset(tmp_path / "ed")
  work = tmp_path / "work"
  lengths = [f"--config.data.{k}={v}" for k, v in LENGTHS.items()]
  proc = subprocess.run(
      [sys.executable, "run_finetune.py", "--config",
       "configs/finetune/entity_disambiguation.py", f"--config.train.init_checkpoint={base}",
       f"--config.data.train_file={ed / 'aida_train.csv'}",
       f"--config.data.dev_file={ed / 'aida_testA.csv'}",
       f"--config.data.test_file={ed / 'aida_testB.csv'}", *lengths,
       "--config.train.batch_size=4", "--config.train.num_epochs=4",
       "--config.train.log_every=4", "--config.optim.learning_rate=2e-3",
       "--config.optim.warmup_ratio=0.0", "--config.model.hidden_dropout_prob=0.0",
       "--config.model.attention_probs_dropout_prob=0.0",
       "--config.mesh=(('data', 2), ('fsdp', 1), ('tensor', 1))", f"--workdir={work}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  losses = _losses(proc.stdout)
  # The context decides the entity: learnt (from a loss of ~1.5 to ~0.03 here).
  assert len(losses) == 6 and losses[-1] < losses[0] / 4, proc.stdout
  results = json.loads((work / "results.json").read_text())
  assert results["task"] == "entity_disambiguation" and results["metric"] == "f1"
  assert {"f1", "precision", "recall", "mentions"} <= set(results["test"])
  assert results["test"]["f1"] >= 0.8 and results["dev"]["f1"] >= 0.8
  assert results["test"]["mentions"] == 9.0
  lines = [json.loads(l) for l in (work / "test_predictions.jsonl").read_text().splitlines()]
  assert len(lines) == 9 and {"document", "mention", "gold", "prediction", "score"} <= set(lines[0])
  # The head started from the checkpoint's; the frozen entity table and head bias did not move.
  _, tuned = luke_jax.from_pretrained(work / "best")
  _, start = luke_jax.from_pretrained(base)
  np.testing.assert_array_equal(
      tuned["luke"]["entity_embeddings"]["entity_embeddings"]["embedding"],
      start["luke"]["entity_embeddings"]["entity_embeddings"]["embedding"])
  np.testing.assert_array_equal(tuned["entity_predictions"]["bias"],
                                start["entity_predictions"]["bias"])
  assert np.abs(start["entity_predictions"]["bias"]).min() > 0
  assert not np.array_equal(tuned["entity_predictions"]["transform_dense"]["kernel"],
                            start["entity_predictions"]["transform_dense"]["kernel"])

  # Prediction with the fine-tuned model (bucketed shapes, eval_outputs through
  # CompiledForward(apply=)) gives the run's test predictions.
  from luke_jax.finetune import trainer
  config = finetune_config("entity_disambiguation")
  config.data.update(LENGTHS)
  predicted = tmp_path / "predicted.jsonl"
  trainer.predict(config, work / "best", ed / "aida_testB.csv", predicted, raw=False)
  ours = [json.loads(l) for l in predicted.read_text().splitlines()]
  assert [dict(p, score=None) for p in ours] == [dict(p, score=None) for p in lines]
  np.testing.assert_allclose([p["score"] for p in ours], [p["score"] for p in lines], rtol=1e-5)

  output = tmp_path / "scores.json"
  cli = [sys.executable, "-m", "luke_jax.disambiguation.evaluate", f"--model={work / 'best'}",
         f"--dataset_dir={ed}", "--test_set=test_b,test_a", f"--output={output}",
         *[f"--{k}={v}" for k, v in LENGTHS.items()], "--batch_size=3"]
  proc = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "========== Dataset: test_b ==========" in proc.stdout and "mentions/s" in proc.stdout
  scores = json.loads(output.read_text())
  assert scores["inference_mode"] == "global" and scores["document_split_mode"] == "simple"
  # The command line decodes as the trainer's evaluation did (bucketed shapes, one device).
  for split, name in (("test", "test_b"), ("dev", "test_a")):
    for key in ("f1", "precision", "recall"):
      assert scores["datasets"][name][key] == pytest.approx(results[split][key])
  # An unknown dataset is one line on stderr.
  proc = subprocess.run(cli[:-1] + ["--test_set=test_c"], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "luke_jax.disambiguation.evaluate: error: unknown entity disambiguation datasets")


def test_write_candidates(tmp_path):
  ed = write_dataset(tmp_path / "ed")
  for name in ("aquaint", "clueweb", "msnbc", "wikipedia"):
    mention_file, word_file = dataset.DATASET_FILES[name]
    (ed / mention_file).write_text((ed / "wned-ace2004.csv").read_text())
    (ed / word_file).write_text((ed / "ace2004.conll").read_text())
  count = evaluate.write_candidates(ed, tmp_path / "cands.txt", max_candidate_length=1,
                                    redirects_file=ed / "redirects.tsv",
                                    titles_file=ed / "titles.txt")
  titles = (tmp_path / "cands.txt").read_text().splitlines()
  # The first candidate of each mention, redirected; Jiří_Třanovský's document excluded.
  assert titles == sorted({"Barack Obama", "Angela Merkel", "Paris", "Jordan", "Syria", "China",
                           "France", "Japan", "AT&T", "Michael Jordan"}) and count == len(titles)
