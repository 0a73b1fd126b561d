"""`config.train.init_checkpoint`: stage 2 from stage 1, stage 1 from a RoBERTa conversion.

The official two-stage recipe (studio-ousia/luke `pretraining.md`): stage 1 starts from RoBERTa
converted by `python -m luke_jax.convert --src_format=roberta` and trains only the entity
parameters; stage 2 starts from stage 1's exported `model/` with a fresh optimizer and trains
everything.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import luke_jax
from luke_jax import checkpoint as luke_checkpoint
from luke_jax.models import registry
from luke_jax.pretraining import train
from luke_jax.tokenization.entity_vocab import EntityVocab
from luke_jax.tokenization.tokenizer import LukeTokenizer
from conftest import save_torch_model
# The tiny dataset, its config and the fast-compile setting are test_train's.
from test_train import ENTITY_PREFIXES, _fast_compiles, flat, make_config  # noqa: F401

pytestmark = pytest.mark.slow  # end to end: `make test` runs it, `make test-fast` does not

REPO = Path(__file__).resolve().parents[1]
POOLER = "luke/pooler/"  # outside the optimiser in both stages, as in the reference


def name(key: str) -> str:
  """`['luke']['encoder']...` (a `flat` key) -> `luke/encoder/...`."""
  return "/".join(re.findall(r"\['([^']+)'\]", key))


def saved_state(workdir: Path, step: int) -> dict:
  """The raw tree of `checkpoints/<step>/state` (numpy arrays, no target needed)."""
  checkpointer = ocp.StandardCheckpointer()
  try:
    return checkpointer.restore((workdir / "checkpoints" / str(step) / "state").absolute())
  finally:
    checkpointer.close()


def moment_arrays(opt_state) -> list[np.ndarray]:
  # Adam's mu and nu; the step counts are scalars.
  return [np.asarray(x) for x in jax.tree.leaves(opt_state) if np.ndim(x) > 0]


def test_stage2_starts_from_the_stage1_export_with_a_fresh_optimizer(dataset_dir, tmp_path):
  stage1 = train.train_and_evaluate(make_config(dataset_dir, steps=2, stage=1, export=True),
                                   tmp_path / "stage1")
  assert stage1.model_dir == tmp_path / "stage1" / "model"

  config = make_config(dataset_dir, steps=2, stage=2, init_checkpoint=str(stage1.model_dir))
  start = train.train_and_evaluate(config, tmp_path / "stage2", stop_after=0)
  assert start.preempted and start.step == 0
  before, exported = flat(start.params), flat(stage1.params)
  assert before.keys() == exported.keys()
  for k in before:
    np.testing.assert_array_equal(before[k], exported[k], err_msg=k)

  # A fresh optimizer: zero moments for every trained parameter (the pooler excepted), and
  # the schedule's step counts at 0.
  state = saved_state(tmp_path / "stage2", 0)
  assert int(state["step"]) == 0
  moments = moment_arrays(state["opt_state"])
  trained = {k: v for k, v in before.items() if not name(k).startswith(POOLER)}
  assert len(moments) == 2 * len(trained)
  assert sum(m.size for m in moments) == 2 * sum(v.size for v in trained.values())
  assert all(not m.any() for m in moments)
  assert all(int(c) == 0 for c in jax.tree.leaves(state["opt_state"]) if np.ndim(c) == 0)

  # Every parameter trains. The run resumes from its step-0 checkpoint, which no longer needs
  # the init checkpoint.
  shutil.rmtree(stage1.model_dir)
  after = flat(train.train_and_evaluate(config, tmp_path / "stage2").params)
  for k in before:
    moved = not np.array_equal(before[k], after[k])
    assert moved != name(k).startswith(POOLER), f"{name(k)} moved={moved} in stage 2"


def roberta_conversion(dataset_dir: Path, dst: Path) -> Path:
  """A random tiny `RobertaForMaskedLM` with the dataset's vocabulary, converted by the CLI."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  tokenizer = LukeTokenizer.from_pretrained(dataset_dir)
  entity_vocab = EntityVocab.load(dataset_dir / "entity_vocab.jsonl")
  config = make_config(dataset_dir).model
  torch.manual_seed(0)
  roberta = transformers.RobertaForMaskedLM(transformers.RobertaConfig(
      vocab_size=len(tokenizer), hidden_size=config.hidden_size,
      num_hidden_layers=config.num_hidden_layers,
      num_attention_heads=config.num_attention_heads,
      intermediate_size=config.intermediate_size,
      max_position_embeddings=config.max_position_embeddings,
      type_vocab_size=config.type_vocab_size, layer_norm_eps=config.layer_norm_eps,
      pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
      eos_token_id=tokenizer.sep_token_id)).eval()
  src = save_torch_model(roberta, dst.parent / "roberta")
  proc = subprocess.run(
      [sys.executable, "-m", "luke_jax.convert", "--src_format=roberta", f"--src={src}",
       f"--dst={dst}", f"--entity_vocab_size={len(entity_vocab)}",
       f"--entity_emb_size={config.entity_emb_size}"],
      cwd=REPO, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  return dst


def test_stage1_from_roberta_trains_only_the_entity_parameters(dataset_dir, tmp_path):
  init = roberta_conversion(dataset_dir, tmp_path / "roberta_luke")
  result = train.train_and_evaluate(
      make_config(dataset_dir, steps=3, stage=1, init_checkpoint=str(init)), tmp_path / "run")
  _, converted = luke_jax.from_pretrained(init)
  before, after = flat(converted), flat(result.params)
  assert before.keys() == after.keys()
  entity = {k for k in before if name(k).startswith(ENTITY_PREFIXES)}
  assert entity and len(entity) < len(before) // 3
  for k in before:
    if k in entity:
      assert not np.array_equal(before[k], after[k]), f"{name(k)} did not train in stage 1"
    else:  # RoBERTa's word embeddings, encoder and LM head (and the fresh pooler)
      np.testing.assert_array_equal(before[k], after[k], err_msg=f"{name(k)} moved in stage 1")

  # Frozen leaves hold no optimizer state: Adam moments for the entity parameters only.
  moments = moment_arrays(saved_state(tmp_path / "run", 3)["opt_state"])
  assert len(moments) == 2 * len(entity)
  assert sum(m.size for m in moments) == 2 * sum(before[k].size for k in entity)


def test_an_init_checkpoint_that_does_not_fit_names_its_directory(dataset_dir, tmp_path):
  config = make_config(dataset_dir, stage=2)
  model_config = train.model_config_from(config, LukeTokenizer.from_pretrained(dataset_dir),
                                        EntityVocab.load(dataset_dir / "entity_vocab.jsonl"))

  # Another shape (found from config.json, before any work).
  other = model_config.replace(entity_emb_size=8)
  wrong_shape = luke_checkpoint.save_checkpoint(
      tmp_path / "entity_emb_8", registry.init_params("LukeForMaskedLM", other,
                                                      jax.random.PRNGKey(0)),
      other, "LukeForMaskedLM")
  config.train.init_checkpoint = str(wrong_shape)
  with pytest.raises(ValueError, match=re.escape(str(wrong_shape)) + ".*entity_emb_size=8"):
    train.train_and_evaluate(config, tmp_path / "work1")
  assert not (tmp_path / "work1").exists()

  # The right config but no LM or entity head (a LukeModel checkpoint).
  headless = luke_checkpoint.save_checkpoint(
      tmp_path / "headless", registry.init_params("LukeModel", model_config,
                                                  jax.random.PRNGKey(0)),
      model_config, "LukeModel")
  config.train.init_checkpoint = str(headless)
  with pytest.raises(ValueError, match=re.escape(str(headless)) + " holds a LukeModel"):
    train.train_and_evaluate(config, tmp_path / "work2")

  config.train.init_checkpoint = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    train.train_and_evaluate(config, tmp_path / "work3")
