"""A RoBERTa / XLM-R Hugging Face checkpoint -> a LUKE initialisation for pretraining.

Word embeddings, encoder layers and the LM head come from RoBERTa; the entity embeddings, the
entity prediction head and (if RoBERTa has none) the pooler are freshly initialised, as the
reference pretraining does (`load_state_dict(strict=False)` on a new LukeForMaskedLM).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from luke_jax import checkpoint
from luke_jax.convert import hf, weights_io
from luke_jax.convert.torch_to_flax import ConversionError, state_dict_to_params
from luke_jax.models.config import LukeConfig

_CONFIG_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "hidden_act", "hidden_dropout_prob",
                "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
                "initializer_range", "layer_norm_eps", "pad_token_id", "bos_token_id",
                "eos_token_id")
_FRESH = ("luke/entity_embeddings/", "luke/pooler/", "entity_predictions/")


def read_roberta(src: str | os.PathLike, *, entity_vocab_size: int, entity_emb_size: int,
                 use_entity_aware_attention: bool, allow_pickle: bool = False):
  src = hf.source_dir(src)
  config_file = src / "config.json"
  try:
    raw = json.loads(config_file.read_text())
  except FileNotFoundError:
    raise ConversionError(f"{config_file}: missing") from None
  if raw.get("model_type") not in ("roberta", "xlm-roberta", "camembert"):
    raise ConversionError(f"{config_file}: model_type {raw.get('model_type')!r} is not RoBERTa "
                          "or XLM-R")
  fields = {k: raw[k] for k in _CONFIG_KEYS if k in raw}
  try:
    config = LukeConfig.from_hf_dict(dict(
        fields, entity_vocab_size=entity_vocab_size, entity_emb_size=entity_emb_size,
        use_entity_aware_attention=use_entity_aware_attention))
  except (TypeError, ValueError) as e:
    raise ConversionError(f"{config_file}: {e}") from None
  state, origin = weights_io.load_state_dict(src, allow_pickle=allow_pickle)
  renamed, renamed_origin, stored_names = {}, {}, {}
  for key, value in state.items():
    new = key
    if key.startswith("roberta."):
      new = "luke." + key[len("roberta."):]
    elif key.startswith(("embeddings.", "encoder.", "pooler.")):
      new = "luke." + key
    renamed[new], renamed_origin[new], stored_names[new] = value, origin[key], key
  return config, renamed, renamed_origin, stored_names


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, dst_format: str = "flax",
            entity_vocab_size: int = 500000, entity_emb_size: int = 256,
            use_entity_aware_attention: bool = False, seed: int = 0, overwrite: bool = False,
            allow_pickle: bool = False, log: Callable = print) -> Path:
  checkpoint.check_destination(dst, overwrite, sources=[src])
  config, state, origin, stored_names = read_roberta(
      src, entity_vocab_size=entity_vocab_size, entity_emb_size=entity_emb_size,
      use_entity_aware_attention=use_entity_aware_attention, allow_pickle=allow_pickle)
  params, config = state_dict_to_params(
      state, config, "LukeForMaskedLM", origin=origin, seed=seed,
      config_file=str(Path(src) / "config.json"), may_initialise=lambda p: p.startswith(_FRESH),
      log=log, stored_names=stored_names)
  return hf.write_converted(params, config, "LukeForMaskedLM", dst, dst_format=dst_format,
                            tokenizer_dir=src, overwrite=overwrite, log=log, sources=[src])
