"""Input sizes and ids checked against the model before any work.

An id past one of the model's tables does not fail inside a jitted program: the gather returns
NaN (see `luke_jax.models.layers.Embed`), and the run would stop at its first loss with no hint
of the cause. Both checks here name the setting or the file split to change.
"""

from __future__ import annotations

from typing import Mapping

import ml_collections
import numpy as np

from luke_jax.models.config import LukeConfig

# Feature key -> (the model config field giving the table's size, the lowest valid id).
# Entity positions use -1 for "no word" (the model masks those).
_TABLES = {
    "input_ids": ("vocab_size", 0),
    "token_type_ids": ("type_vocab_size", 0),
    "entity_ids": ("entity_vocab_size", 0),
    "entity_position_ids": ("max_position_embeddings", -1),
    "entity_token_type_ids": ("type_vocab_size", 0),
}


def check_data_config(data: ml_collections.ConfigDict, model_config: LukeConfig,
                      source: str) -> None:
  """The task's lengths against the model config of `source` (a checkpoint path).

  Raises:
    ValueError: naming the `config.data` or `config.model` setting to change.
  """
  for name in ("max_seq_length", "max_entity_length", "max_mention_length"):
    if name in data and int(data[name]) < 1:
      raise ValueError(f"config.data.{name}={data[name]} must be at least 1")
  longest = model_config.max_seq_length
  if int(data.max_seq_length) > longest:
    raise ValueError(
        f"config.data.max_seq_length={data.max_seq_length} does not fit the model of {source} "
        f"(max_position_embeddings={model_config.max_position_embeddings}, position ids from "
        f"{model_config.pad_token_id + 1}): set --config.data.max_seq_length to at most "
        f"{longest}")


def check_features(arrays: Mapping[str, np.ndarray], model_config: LukeConfig,
                   what: str) -> None:
  """Every id of the featurized `arrays` inside the model's tables.

  Raises:
    ValueError: naming `what` (e.g. the split's file), the feature, the id and the table.
  """
  for key, (field, lowest) in _TABLES.items():
    values = arrays.get(key)
    if values is None or not np.size(values):
      continue
    size = getattr(model_config, field)
    low, high = int(np.min(values)), int(np.max(values))
    if low < lowest or high >= size:
      bad = low if low < lowest else high
      hint = ("the tokenizer's entity vocabulary is larger than the model's entity table"
              if key == "entity_ids" else
              "the tokenizer does not match the model" if key == "input_ids" else
              "lower config.data.max_seq_length")
      raise ValueError(f"{what}: {key} holds id {bad} but the model's table has {size} rows "
                       f"(config.model.{field}={size}): {hint}")
