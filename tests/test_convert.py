"""Converters: exact HF round trips, the studio-ousia archive, RoBERTa initialisation, heads, CLI.

The reference for every format is `transformers` 5.24 PyTorch: a converted model must load there
(or in luke-jax) with nothing missing, unexpected or changed, and compute the same numbers.
"""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import luke_jax
from luke_jax.convert import hf, original, roberta, weights_io
from luke_jax.convert.torch_to_flax import params_to_state_dict
from conftest import (ALL_HEADS, CONFIGS, flatten_outputs, make_inputs, make_labels,
                      save_torch_model, torch_model, torch_outputs)

pytestmark = pytest.mark.torch
TOL = 1e-5

# The original archive is a pretraining checkpoint: plain attention, no w2e/e2w/e2e queries.
ORIGINAL_CONFIG = CONFIGS["plain_attention"]
MARKER_WORDS = {"@": 40, "#": 41}  # rows the reference copies into <ent> and <ent2>
MULTILINGUAL_ID = 5  # one entity id shared by two (title, language) pairs in the jsonl variant


def _quiet(_):
  pass


def randomise(model, seed: int = 0):
  """Moves every parameter off its initial value, so that a swapped LayerNorm or bias shows."""
  import torch
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():  # tied parameters are one object and stay tied
      p.add_(torch.randn(p.shape, generator=gen) * 0.05)
  return model


def jax_outputs(model, params, inputs, labels=None):
  apply = jax.jit(lambda p, kw: model.apply({"params": p}, **kw, output_attentions=True,
                                            output_hidden_states=True))
  return flatten_outputs(apply(params, {**inputs, **(labels or {})}), np.asarray)


def assert_close(ref, got, names=None):
  names = sorted(set(ref) & set(got)) if names is None else names
  assert names
  for name in names:
    assert ref[name].shape == got[name].shape, name
    diff = float(np.max(np.abs(ref[name] - got[name]))) if ref[name].size else 0.0
    assert diff <= TOL, f"{name}: max |diff| {diff:.3g} > {TOL}"


def assert_state_dicts_equal(want, got):
  import torch
  assert set(want) == set(got), sorted(set(want) ^ set(got))
  for key in want:
    assert want[key].dtype == got[key].dtype, key
    assert torch.equal(want[key], got[key]), key


def assert_loads_cleanly(info):
  for field in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
    assert not info[field], f"{field}: {info[field]}"


# --------------------------------------------------------------------------------------------
# HF -> luke-jax -> HF


@pytest.mark.parametrize("arch", ALL_HEADS)
def test_hf_round_trip_is_bit_exact(tmp_path, arch):
  import transformers
  config = CONFIGS["projected_eaa"]
  if arch == "LukeForQuestionAnswering":
    config = dict(config, num_labels=2)
  reference = randomise(torch_model(arch, **config))
  if arch == "LukeForMaskedLM":
    # Sharded: the weights are found through model.safetensors.index.json.
    reference.save_pretrained(tmp_path / "hf", max_shard_size="40KB")
    assert len(list((tmp_path / "hf").glob("model-*.safetensors"))) > 1
    src = tmp_path / "hf"
  else:
    src = save_torch_model(reference, tmp_path / "hf")
  hf.convert(src, tmp_path / "flax", log=_quiet)
  hf.flax_to_hf(tmp_path / "flax", tmp_path / "back", log=_quiet)

  loaded, info = getattr(transformers, arch).from_pretrained(tmp_path / "back",
                                                             output_loading_info=True)
  assert_loads_cleanly(info)
  assert_state_dicts_equal(reference.state_dict(), loaded.state_dict())
  for field in ("vocab_size", "entity_vocab_size", "hidden_size", "entity_emb_size",
                "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
                "use_entity_aware_attention", "num_labels", "pad_token_id"):
    assert getattr(loaded.config, field) == getattr(reference.config, field), field


# --------------------------------------------------------------------------------------------
# The studio-ousia archive (reference sections A.11, C.2, C.9)


def original_state_dict(seed: int = 0) -> dict:
  """Tensors named as in a studio-ousia `pytorch_model.bin` (no `luke.` prefix, tied decoders)."""
  pretrained = randomise(torch_model("LukeForMaskedLM", seed=seed, **ORIGINAL_CONFIG), seed)
  state = {}
  for key, value in pretrained.state_dict().items():
    if key == "lm_head.decoder.bias":
      continue  # the original LM decoder has no bias of its own, only `lm_head.bias`
    state[key[len("luke."):] if key.startswith("luke.") else key] = value.clone()
  state["lm_head.decoder.weight"] = state["embeddings.word_embeddings.weight"].clone()
  state["entity_predictions.decoder.weight"] = (
      state["entity_embeddings.entity_embeddings.weight"].clone())
  # Present in archives pretrained with `cls_entity_prediction`; HF LUKE has no such head.
  state["cls_entity_predictions.bias"] = state["entity_predictions.bias"].clone()
  return state


def entity_titles(vocab_format: str) -> list[tuple[int, list[tuple[str, str | None]]]]:
  specials = [(0, [("[PAD]", None)]), (1, [("[UNK]", None)]), (2, [("[MASK]", None)])]
  lang = None if vocab_format == "tsv" else "en"
  entries = specials + [(i, [(f"Title {i}", lang)])
                        for i in range(3, ORIGINAL_CONFIG["entity_vocab_size"])]
  if vocab_format == "jsonl":
    entries[MULTILINGUAL_ID] = (MULTILINGUAL_ID, [("Japan", "en"), ("日本", "ja")])
  return entries


def write_original_archive(directory, state: dict, *, vocab_format: str = "tsv",
                           weights_name: str = "pytorch_model.bin", model_config=None):
  """A model archive as `luke create-model-archive` (or pretraining with DeepSpeed) leaves it."""
  import torch
  directory.mkdir(parents=True)
  if weights_name == "mp_rank_00_model_states.pt":
    torch.save({"module": state}, directory / weights_name)
  else:
    torch.save(state, directory / weights_name)
  cfg = ORIGINAL_CONFIG
  model_config = model_config or dict(
      attention_probs_dropout_prob=0.1, bert_model_name="roberta-base",
      entity_emb_size=cfg["entity_emb_size"], entity_vocab_size=cfg["entity_vocab_size"],
      hidden_act="gelu", hidden_dropout_prob=0.1, hidden_size=cfg["hidden_size"],
      initializer_range=0.02, intermediate_size=cfg["intermediate_size"],
      layer_norm_eps=cfg["layer_norm_eps"],
      max_position_embeddings=cfg["max_position_embeddings"],
      num_attention_heads=cfg["num_attention_heads"],
      num_hidden_layers=cfg["num_hidden_layers"], type_vocab_size=cfg["type_vocab_size"],
      vocab_size=cfg["vocab_size"], pad_token_id=1)
  (directory / "metadata.json").write_text(json.dumps(dict(
      model_config=model_config, max_seq_length=512, max_entity_length=128,
      max_mention_length=30)))
  entries = entity_titles(vocab_format)
  if vocab_format == "tsv":
    lines = [f"{names[0][0]}\t{0 if idx < 3 else 1000 - idx}" for idx, names in entries]
    (directory / "entity_vocab.tsv").write_text("\n".join(lines) + "\n")
  else:
    lines = [json.dumps({"id": idx, "entities": [list(n) for n in names],
                         "count": 0 if idx < 3 else 1000 - idx}, ensure_ascii=False)
             for idx, names in entries]
    (directory / "entity_vocab.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
  words = {f"tok{i}": i for i in range(cfg["vocab_size"])}
  words = {k: v for k, v in words.items() if v not in MARKER_WORDS.values()}
  words.update(MARKER_WORDS)
  (directory / "vocab.json").write_text(json.dumps(words))
  return directory


def reference_conversion(state: dict):
  """`transformers.LukeForMaskedLM` built the way the reference HF converter builds it."""
  import torch
  import transformers
  cfg = ORIGINAL_CONFIG
  markers = list(MARKER_WORDS.values())
  mask = 2
  sd = {}
  for key, value in state.items():
    if key.startswith("cls_entity_predictions."):
      continue
    sd[key if key.startswith(("lm_head.", "entity_predictions.")) else "luke." + key] = value
  words = sd["luke.embeddings.word_embeddings.weight"]
  sd["luke.embeddings.word_embeddings.weight"] = torch.cat([words, words[markers]])
  sd["lm_head.bias"] = torch.cat([sd["lm_head.bias"], sd["lm_head.bias"][markers]])
  sd["lm_head.decoder.bias"] = sd["lm_head.bias"]
  # Tied in the transformers of the reference converter; transformers 5 stores a copy.
  sd["lm_head.decoder.weight"] = sd["luke.embeddings.word_embeddings.weight"]
  entities = sd["luke.entity_embeddings.entity_embeddings.weight"]
  sd["luke.entity_embeddings.entity_embeddings.weight"] = torch.cat([entities,
                                                                     entities[[mask]]])
  bias = sd["entity_predictions.bias"]
  sd["entity_predictions.bias"] = torch.cat([bias, bias[[mask]]])
  sd["entity_predictions.decoder.weight"] = sd["luke.entity_embeddings.entity_embeddings.weight"]
  for i in range(cfg["num_hidden_layers"]):
    prefix = f"luke.encoder.layer.{i}.attention.self."
    for new in ("w2e_query", "e2w_query", "e2e_query"):
      for leaf in ("weight", "bias"):
        sd[prefix + f"{new}.{leaf}"] = sd[prefix + f"query.{leaf}"]
  torch.manual_seed(0)
  model = transformers.LukeForMaskedLM(transformers.LukeConfig(**dict(
      cfg, vocab_size=cfg["vocab_size"] + 2, entity_vocab_size=cfg["entity_vocab_size"] + 1,
      use_entity_aware_attention=True))).eval()
  model.load_state_dict({k: v.clone() for k, v in sd.items()}, strict=True)
  return model


def inputs_with_new_rows(config: dict) -> dict:
  """`make_inputs` plus the appended rows: <ent>, <ent2> words and the [MASK2] entity."""
  inputs = make_inputs("LukeForMaskedLM", config)
  inputs["input_ids"][0, 2:4] = [config["vocab_size"] - 2, config["vocab_size"] - 1]
  inputs["entity_ids"][0, 0] = config["entity_vocab_size"] - 1
  return inputs


@pytest.mark.slow
def test_original_archive_matches_reference_converter(tmp_path):
  state = original_state_dict()
  src = write_original_archive(tmp_path / "archive", state)
  logs = []
  original.convert(src, tmp_path / "jax", log=logs.append)
  assert any("cls_entity_predictions.bias" in line for line in logs)

  reference = reference_conversion(state)
  model, params = luke_jax.from_pretrained(tmp_path / "jax")
  assert type(model).__name__ == "LukeForMaskedLM"
  assert model.config.use_entity_aware_attention and model.config.tie_word_decoder
  config = dict(ORIGINAL_CONFIG, vocab_size=ORIGINAL_CONFIG["vocab_size"] + 2,
                entity_vocab_size=ORIGINAL_CONFIG["entity_vocab_size"] + 1)
  assert (model.config.vocab_size, model.config.entity_vocab_size) == (
      config["vocab_size"], config["entity_vocab_size"])
  inputs = inputs_with_new_rows(config)
  labels = make_labels("LukeForMaskedLM", config, inputs)
  ref = torch_outputs(reference, inputs, labels)
  got = jax_outputs(model, params, inputs, labels)
  assert set(ref) == set(got), sorted(set(ref) ^ set(got))
  assert {"logits", "entity_logits", "hidden_states.0", "attentions.1"} <= set(ref)
  assert_close(ref, got, sorted(ref))

  vocab = json.loads((tmp_path / "jax" / "entity_vocab.json").read_text())
  assert vocab["[MASK2]"] == ORIGINAL_CONFIG["entity_vocab_size"]  # max id + 1
  assert vocab["[PAD]"] == 0 and vocab["[MASK]"] == 2 and vocab["Title 7"] == 7
  assert (tmp_path / "jax" / "vocab.json").exists()


def test_original_jsonl_deepspeed_archive_to_hf(tmp_path):
  """Multilingual jsonl vocabulary, DeepSpeed's `module` nesting, and `--dst_format=hf`."""
  import transformers
  state = original_state_dict(seed=1)
  src = write_original_archive(tmp_path / "archive", state, vocab_format="jsonl",
                               weights_name="mp_rank_00_model_states.pt")
  dst = original.convert(src, tmp_path / "hf", dst_format="hf", log=_quiet)

  loaded, info = transformers.LukeForMaskedLM.from_pretrained(dst, output_loading_info=True)
  assert_loads_cleanly(info)
  assert loaded.config.use_entity_aware_attention
  assert_state_dicts_equal(reference_conversion(state).state_dict(), loaded.state_dict())

  vocab = json.loads((dst / "entity_vocab.json").read_text(encoding="utf-8"))
  assert vocab["[MASK2]"] == max(idx for idx, _ in entity_titles("jsonl")) + 1
  assert vocab["[PAD]"] == 0 and vocab["[UNK]"] == 1 and vocab["[MASK]"] == 2
  assert vocab["en:Japan"] == vocab["ja:日本"] == MULTILINGUAL_ID
  assert vocab["en:Title 7"] == 7 and "Title 7" not in vocab
  assert (dst / "vocab.json").exists() and (dst / "entity_vocab.jsonl").exists()


# --------------------------------------------------------------------------------------------
# RoBERTa -> LUKE initialisation (reference section C.8)


@pytest.mark.slow
def test_roberta_initialisation(tmp_path):
  import torch
  import transformers
  cfg = ORIGINAL_CONFIG
  torch.manual_seed(0)
  rob = randomise(transformers.RobertaForMaskedLM(transformers.RobertaConfig(
      vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
      num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
      intermediate_size=cfg["intermediate_size"],
      max_position_embeddings=cfg["max_position_embeddings"], type_vocab_size=1,
      layer_norm_eps=cfg["layer_norm_eps"])).eval())
  src = save_torch_model(rob, tmp_path / "roberta")
  logs = []
  roberta.convert(src, tmp_path / "luke", entity_vocab_size=37, entity_emb_size=16,
                  log=logs.append)
  model, params = luke_jax.from_pretrained(tmp_path / "luke")
  assert type(model).__name__ == "LukeForMaskedLM"
  assert not model.config.use_entity_aware_attention  # pretraining used plain attention

  # Everything RoBERTa has arrives unchanged (compared in HF naming and layout).
  converted = params_to_state_dict(params, model.config, "LukeForMaskedLM")
  for key, value in rob.state_dict().items():
    key = key.replace("roberta.", "luke.", 1)
    if key == "lm_head.decoder.bias":
      key = "lm_head.bias"
    assert np.array_equal(converted[key], value.numpy()), key

  fresh = {line.split(": ", 1)[1] for line in logs if line.startswith("newly initialised")}
  expected = {"luke/entity_embeddings/entity_embeddings/embedding",
              "luke/entity_embeddings/entity_embedding_dense/kernel",
              "luke/pooler/dense/kernel", "entity_predictions/transform_dense/kernel",
              "entity_predictions/bias"}
  assert expected <= fresh
  assert all(p.startswith(("luke/entity_embeddings/", "luke/pooler/", "entity_predictions/"))
             for p in fresh), fresh
  table = np.asarray(params["luke"]["entity_embeddings"]["entity_embeddings"]["embedding"])
  assert table.shape == (37, 16)
  assert 0.01 < table.std() < 0.04  # N(0, initializer_range=0.02)

  # Without entities LUKE is RoBERTa.
  inputs = make_inputs("LukeForMaskedLM", dict(cfg, type_vocab_size=1))
  words = {k: inputs[k] for k in ("input_ids", "attention_mask")}
  ref = torch_outputs(rob, words)
  got = jax_outputs(model, params, words)
  assert_close(ref, got, ["logits", "hidden_states.0", "hidden_states.2"])


# --------------------------------------------------------------------------------------------
# A base checkpoint under a new task head


def test_base_checkpoint_into_new_head(tmp_path):
  """Also the one place a `pytorch_model.bin` is read: transformers 5 writes only safetensors."""
  import torch
  config = CONFIGS["projected_eaa"]
  base = randomise(torch_model("LukeModel", **config))
  src = tmp_path / "base"
  base.config.save_pretrained(src)
  torch.save(base.state_dict(), src / "pytorch_model.bin")
  logs = []
  hf.convert(src, tmp_path / "jax", architecture="LukeForEntityClassification", num_labels=5,
             log=logs.append)
  fresh = sorted(line.split(": ", 1)[1] for line in logs
                 if line.startswith("newly initialised"))
  assert fresh == ["classifier/bias", "classifier/kernel"]

  model, params = luke_jax.from_pretrained(tmp_path / "jax")
  assert type(model).__name__ == "LukeForEntityClassification"
  assert model.config.num_labels == 5
  assert params["classifier"]["kernel"].shape == (config["hidden_size"], 5)
  inputs = make_inputs("LukeForEntityClassification", config)
  ref = torch_outputs(base, inputs)
  got = jax_outputs(model, params, inputs)
  assert got["logits"].shape == (2, 5)
  encoder = [k for k in ref if k.startswith(("hidden_states.", "entity_hidden_states.",
                                             "attentions."))]
  assert len(encoder) == 3 * config["num_hidden_layers"] + 2
  assert_close(ref, got, encoder)


# --------------------------------------------------------------------------------------------
# Command line


@pytest.mark.slow
def test_cli_hf_to_flax_and_back(tmp_path):
  config = CONFIGS["projected_eaa"]
  reference = randomise(torch_model("LukeForEntityPairClassification", **config))
  src = save_torch_model(reference, tmp_path / "hf")
  run = lambda *args: subprocess.run([sys.executable, "-m", "luke_jax.convert", *args],
                                     capture_output=True, text=True, timeout=300)
  first = run("--src_format=hf", f"--src={src}", f"--dst={tmp_path / 'jax'}")
  assert first.returncode == 0, first.stderr
  assert (tmp_path / "jax" / "config.json").exists() and (tmp_path / "jax" / "params").is_dir()
  second = run("--src_format=flax", f"--src={tmp_path / 'jax'}", "--dst_format=hf",
               f"--dst={tmp_path / 'back'}")
  assert second.returncode == 0, second.stderr
  back = weights_io.read_safetensors(tmp_path / "back" / "model.safetensors")
  want = {k: v.numpy() for k, v in reference.state_dict().items()}
  assert set(back) == set(want)
  assert all(np.array_equal(back[k], want[k]) for k in want)
  assert not list(tmp_path.glob(".*tmp-*"))


# --------------------------------------------------------------------------------------------
# Layering


def test_checkpoint_module_does_not_import_conversion():
  # Conversion writes through luke_jax.checkpoint; the reverse would be an import circle.
  code = ("import sys, luke_jax.checkpoint; "
          "print(sorted(m for m in sys.modules if m.startswith('luke_jax.convert')))")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == "[]"
