"""Fault cases of issue #16 about settings: degenerate or oversized settings are refused before
any work, with a message naming the setting; nothing the user had is deleted on refusal; an id
beyond a model table never reads a valid-looking row.

Each case is triggered the way a user would: a fine-tuning or pretraining config with one bad
value, run through `finetune` / `train_and_evaluate` / `predict` on tiny inputs.
"""

import json
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import finetune_config, load_config
from luke_jax.finetune import trainer
from luke_jax.models import registry
from luke_jax.models.config import preset


def _conll(rng, sentences):
  people, places = ["John Smith", "Mary"], ["Paris", "New York"]
  out = ["-DOCSTART- -X- -X- O", ""]
  for _ in range(sentences):
    out += [f"{w} I-PER" for w in rng.choice(people).split()] + ["visited O"]
    out += [f"{w} I-LOC" for w in rng.choice(places).split()] + [". O", ""]
  return "\n".join(out) + "\n"


@pytest.fixture()
def ner(tmp_path, finetune_base):
  """A conll2003 run of 2 steps on the tiny checkpoint (258 positions)."""
  rng = random.Random(0)
  config = finetune_config("conll2003")
  config.data.update(max_seq_length=32, max_entity_length=16, max_mention_length=4)
  for split in ("train", "dev"):
    path = tmp_path / f"{split}.txt"
    path.write_text(_conll(rng, 4))
    config.data[f"{split}_file"] = str(path)
  config.train.init_checkpoint = str(finetune_base)
  config.optim.update(learning_rate=1e-3, warmup_ratio=0.0)
  config.train.update(steps=2, batch_size=4, eval_batch_size=4, eval_every_epoch=False,
                      ckpt_every=100)
  config.mesh = (("data", 2), ("fsdp", 1), ("tensor", 1))
  return config


def _refused(config, workdir, match):
  with pytest.raises(ValueError, match=match):
    trainer.finetune(config, workdir)
  assert not (workdir / "checkpoints").exists(), "refused after work had started"


# ---- 5: input sizes against the model ----------------------------------------------------------


def test_max_seq_length_beyond_the_position_table_is_refused(ner, tmp_path):
  ner.data.max_seq_length = 512  # the checkpoint has 258 positions (256 words)
  _refused(ner, tmp_path / "w", r"config\.data\.max_seq_length=512 .*max_position_embeddings"
           r"=258.*at most 256")


def test_model_override_shrinking_the_position_table_is_refused(ner, tmp_path):
  ner.model.max_position_embeddings = 20  # words 32 need 34 positions
  _refused(ner, tmp_path / "w", r"max_seq_length=32.*max_position_embeddings=20")


def test_entity_vocabulary_larger_than_the_model_table_is_refused(ner, tmp_path, luke_dir):
  from luke_jax import checkpoint
  from luke_jax.tokenization.tokenizer import LukeTokenizer
  words = len(LukeTokenizer.from_pretrained(luke_dir))
  config = preset("tiny", vocab_size=words, entity_vocab_size=2, max_position_embeddings=258)
  params = registry.init_params("LukeModel", config, jax.random.PRNGKey(0))
  small = checkpoint.save_checkpoint(tmp_path / "small", params, config, "LukeModel",
                                     tokenizer_dir=luke_dir)
  ner.train.init_checkpoint = str(small)
  _refused(ner, tmp_path / "w",
           r"train_file=.*entity_ids holds id [23] .*entity_vocab_size=2.*entity vocabulary")


@pytest.mark.parametrize("mesh", [None, (("data", 1), ("fsdp", 4), ("tensor", 2))],
                         ids=["plain", "sharded"])
def test_ids_beyond_a_table_read_nan_never_a_row(mesh):
  """The embedding gathers of the model: an id past a table (or negative) must not read a
  valid-looking row (NumPy-style wrapping of -1, or clamping to the last row); also with the
  tables split over devices, where the gather is partitioned."""
  import flax.linen as nn
  from luke_jax import sharding
  from luke_jax.training import state as state_lib
  # 50 words over tensor=2, 24 entities over fsdp x tensor = 8: both tables really split.
  config = preset("tiny", vocab_size=50, entity_vocab_size=24, max_position_embeddings=20)
  module = registry.build("LukeModel", config)
  params = registry.init_params("LukeModel", config, jax.random.PRNGKey(0))
  ok = dict(input_ids=np.full((2, 6), 5, np.int32), attention_mask=np.ones((2, 6), np.int32),
            token_type_ids=np.zeros((2, 6), np.int32), entity_ids=np.full((2, 2), 3, np.int32),
            entity_position_ids=np.tile(np.array([[0, 1, -1]], np.int32), (2, 2, 1)),
            entity_attention_mask=np.ones((2, 2), np.int32))
  bad_cases = {  # name: (input, index in row 0, value)
      "word id past the vocabulary": ("input_ids", (0, 1), 50),
      "negative word id": ("input_ids", (0, 1), -1),
      "entity id past the vocabulary": ("entity_ids", (0, 1), 24),
      "negative entity id": ("entity_ids", (0, 1), -2),
      "entity position past the table": ("entity_position_ids", (0, 1, 0), 25),
      "token type past the table": ("token_type_ids", (0, 1), config.type_vocab_size),
  }
  fn = jax.jit(lambda p, x: module.apply({"params": p}, **x, deterministic=True))
  if mesh is None:
    run = lambda inputs: fn(params, inputs)
  else:
    m, rules = sharding.create_mesh(mesh), sharding.DEFAULT_RULES
    with nn.logical_axis_rules(rules):
      boxed = jax.eval_shape(lambda r: module.init(r, **ok)["params"], jax.random.PRNGKey(0))
    placed = jax.device_put(params, state_lib.param_shardings(boxed, m, rules))
    tables = placed["embeddings"], placed["entity_embeddings"]
    assert [len(t[name]["embedding"].sharding.device_set) > 1 and
            not t[name]["embedding"].sharding.is_fully_replicated for t, name in
            zip(tables, ("word_embeddings", "entity_embeddings"))] == [True, True]

    def run(inputs):
      with jax.set_mesh(m), nn.logical_axis_rules(rules):
        return fn(placed, inputs)

  clean = run(ok)
  assert np.isfinite(np.asarray(clean.last_hidden_state)).all()
  assert np.isfinite(np.asarray(clean.entity_last_hidden_state)).all()
  for name, (key, index, value) in bad_cases.items():
    inputs = {k: np.array(v) for k, v in ok.items()}
    inputs[key][index] = value
    out = run(inputs)
    word = np.asarray(out.last_hidden_state)
    entity = np.asarray(out.entity_last_hidden_state)
    assert np.isnan(word[0]).any() or np.isnan(entity[0]).any(), name
    assert np.isfinite(word[1]).all() and np.isfinite(entity[1]).all(), name


# ---- 9, 10: degenerate settings ------------------------------------------------------------------


@pytest.mark.parametrize("key, value, match", [
    ("train.steps", -3, r"config\.train\.steps=-3"),
    ("train.num_epochs", 0, r"num_epochs and config\.train\.steps are both 0"),
    ("train.batch_size", 0, r"config\.train\.batch_size=0"),
    ("train.batch_size", -4, r"config\.train\.batch_size=-4"),
    ("train.eval_batch_size", 0, r"config\.train\.eval_batch_size=0"),
    ("train.log_every", 0, r"config\.train\.log_every=0"),
    ("train.ckpt_every", 0, r"config\.train\.ckpt_every=0"),
    ("train.keep_ckpts", 0, r"config\.train\.keep_ckpts=0"),
    ("optim.learning_rate", -1e-3, r"config\.optim\.learning_rate=-0\.001"),
    ("optim.learning_rate", 0.0, r"config\.optim\.learning_rate=0\.0"),
    ("optim.b2", 1.5, r"config\.optim\.b2=1\.5"),
    ("optim.weight_decay", -0.1, r"config\.optim\.weight_decay=-0\.1"),
    ("optim.max_grad_norm", -1.0, r"config\.optim\.max_grad_norm=-1\.0"),
    ("optim.total_steps", -5, r"config\.optim\.total_steps=-5"),
    ("data.max_entity_length", 0, r"config\.data\.max_entity_length=0"),
    ("data.max_mention_length", 0, r"config\.data\.max_mention_length=0"),
])
def test_degenerate_finetuning_settings_are_refused(ner, tmp_path, key, value, match):
  section, name = key.split(".")
  if key == "train.num_epochs":
    ner.train.steps = 0
  ner[section][name] = value
  _refused(ner, tmp_path / "w", match)
  assert not (tmp_path / "w" / "results.json").exists()


@pytest.mark.parametrize("key, value, match", [
    ("train.steps", 0, r"config\.train\.steps=0"),
    ("train.steps", -2, r"config\.train\.steps=-2"),
    ("train.batch_size", 0, r"config\.train\.batch_size=0"),
    ("train.log_every", 0, r"config\.train\.log_every=0"),
    ("train.ckpt_every", 0, r"config\.train\.ckpt_every=0"),
    ("train.keep_ckpts", 0, r"config\.train\.keep_ckpts=0"),
    ("optim.learning_rate", -1.0, r"config\.optim\.learning_rate=-1\.0"),
])
def test_degenerate_pretraining_settings_are_refused(tmp_path, dataset_dir, key, value, match):
  from luke_jax.pretraining import train
  config = load_config("pretrain_tiny.py")
  config.data.dataset_dir = str(dataset_dir)
  section, name = key.split(".")
  config[section][name] = value
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(config, tmp_path / "w")
  assert not (tmp_path / "w" / "checkpoints").exists()
  assert not (tmp_path / "w" / "model").exists()


# ---- 3 and 5 on a finished run: a refused rerun deletes nothing; prediction checks sizes ------


def test_finished_run_refused_rerun_and_oversized_prediction(ner, tmp_path):
  workdir = tmp_path / "w"
  ner.train.steps = 1
  trainer.finetune(ner, workdir)
  results = (workdir / "results.json").read_text()
  changed = ner.copy_and_resolve_references()
  changed.optim.learning_rate = 5e-4  # another run: the workdir must be refused
  with pytest.raises(ValueError, match="holds checkpoints of another run"):
    trainer.finetune(changed, workdir)
  assert (workdir / "results.json").read_text() == results
  assert json.loads(results)["steps"] == 1

  raw = tmp_path / "raw.txt"
  raw.write_text("Mary visited Paris .\n")
  ner.data.max_seq_length = 400
  with pytest.raises(ValueError, match=r"config\.data\.max_seq_length=400"):
    trainer.predict(ner, workdir / "best", raw, tmp_path / "out.txt")
  assert not (tmp_path / "out.txt").exists()
