"""`LukeConfig` round-trips Hugging Face config.json files and describes the released models."""

import json

import jax
import numpy as np
import pytest

from luke_jax.models import registry
from luke_jax.models.config import PRESETS, LukeConfig, preset

# A Hub-era config (studio-ousia/luke-large), legacy keys included.
HUB_LUKE_LARGE = {
    "architectures": ["LukeForMaskedLM"], "attention_probs_dropout_prob": 0.1,
    "bert_model_name": "roberta-large", "bos_token_id": 0, "entity_emb_size": 256,
    "entity_vocab_size": 500000, "eos_token_id": 2, "gradient_checkpointing": False,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 1024,
    "initializer_range": 0.02, "intermediate_size": 4096, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 514, "model_type": "luke", "num_attention_heads": 16,
    "num_hidden_layers": 24, "output_past": True, "pad_token_id": 1,
    "position_embedding_type": "absolute", "transformers_version": "4.6.0.dev0",
    "type_vocab_size": 1, "use_cache": True, "use_entity_aware_attention": True,
    "vocab_size": 50267,
}


def test_released_values_come_from_the_file_not_the_defaults():
  cfg = LukeConfig.from_hf_dict(HUB_LUKE_LARGE)
  assert (cfg.layer_norm_eps, cfg.max_position_embeddings, cfg.type_vocab_size) == (1e-5, 514, 1)
  default = LukeConfig.from_hf_dict({})
  assert (default.layer_norm_eps, default.max_position_embeddings,
          default.type_vocab_size) == (1e-12, 512, 2)
  assert cfg == preset("luke-large")


@pytest.mark.torch
def test_round_trip_through_transformers(tmp_path):
  import transformers
  ours = preset("mluke-base", id2label=((0, "O"), (1, "PER"), (2, "LOC")),
                classifier_dropout=0.2, problem_type="single_label_classification")
  (tmp_path / "config.json").write_text(json.dumps(ours.to_hf_dict("LukeForTokenClassification")))
  theirs = transformers.LukeConfig.from_pretrained(tmp_path)
  for key in ("vocab_size", "entity_vocab_size", "hidden_size", "layer_norm_eps",
              "use_entity_aware_attention", "classifier_dropout", "problem_type",
              "max_position_embeddings", "type_vocab_size"):
    assert getattr(theirs, key) == getattr(ours, key), key
  assert theirs.id2label == {0: "O", 1: "PER", 2: "LOC"}
  theirs.save_pretrained(tmp_path / "saved")
  back = LukeConfig.from_hf_dict(json.loads((tmp_path / "saved" / "config.json").read_text()))
  assert back == ours


def test_luke_jax_fields_survive_config_json():
  cfg = preset("tiny", scan_layers=True, remat_policy="full", dtype="bfloat16")
  assert LukeConfig.from_hf_dict(json.loads(json.dumps(cfg.to_hf_dict()))) == cfg


def test_bad_values_are_rejected():
  with pytest.raises(ValueError, match="multiple of"):
    LukeConfig(hidden_size=30, num_attention_heads=4)
  with pytest.raises(ValueError, match="remat_policy"):
    LukeConfig(remat_policy="sometimes")
  with pytest.raises(KeyError, match="unknown preset"):
    preset("luke-huge")


def _count(arch, cfg):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(registry.abstract_params(arch, cfg)))


# README parameter counts: LukeModel with pooler, without the three entity-aware queries.
@pytest.mark.parametrize("name,millions", [("luke-base", 253), ("luke-large", 484),
                                           ("luke-base-lite", 125), ("luke-large-lite", 356),
                                           ("mluke-base", 586), ("mluke-large", 868)])
@pytest.mark.slow
def test_presets_have_the_released_sizes(name, millions):
  cfg = PRESETS[name]
  count = _count("LukeModel", preset(name, use_entity_aware_attention=False))
  assert round(count / 1e6) == millions, (name, count)
  if cfg["use_entity_aware_attention"]:
    extra = 3 * (cfg["hidden_size"] ** 2 + cfg["hidden_size"]) * cfg["num_hidden_layers"]
    assert _count("LukeModel", preset(name)) == count + extra


def test_id2label_reads_as_transformers_does():
  """`config.id2label[i]` is the name (a mapping, as in transformers), from pairs or a dict,
  and the config stays hashable (it is a static attribute of the modules)."""
  from_pairs = preset("tiny", id2label=((0, "O"), (1, "PER"), (2, "LOC")))
  from_dict = preset("tiny", id2label={"2": "LOC", "0": "O", "1": "PER"})
  assert from_pairs == from_dict and hash(from_pairs) == hash(from_dict)
  labels = from_dict.id2label
  assert labels[1] == "PER" and dict(labels) == {0: "O", 1: "PER", 2: "LOC"}
  assert labels == {0: "O", 1: "PER", 2: "LOC"} and list(labels.values()) == ["O", "PER", "LOC"]
  assert from_dict.label2id == {"O": 0, "PER": 1, "LOC": 2} and from_dict.num_labels == 3
  with pytest.raises(KeyError):
    labels[3]
  with pytest.raises(ValueError, match=r"ids must be 0\.\.1, got \[0, 2\]"):
    preset("tiny", id2label={0: "O", 2: "X"})
  assert LukeConfig.from_hf_dict(from_dict.to_hf_dict()) == from_dict
