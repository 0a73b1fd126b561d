"""The fields every pretraining config has; `configs/pretrain*.py` set the recipe's values.

The shared sections (`model`, `mesh`, `sharding`, `optim`, `train`) are
`luke_jax.training.config`'s; pretraining adds `data` (the dataset and its masking) and
`train.stage` (1: only the entity parameters train, unless `optim.trainable` says otherwise)
and `train.export` (write `model/` at the end). `data.include_unk_entities=True` (the entity
disambiguation recipe, `configs/pretrain_ed.py`) requires a dataset built with
`--include_unk_entities`.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from luke_jax.models.config import LukeConfig
from luke_jax.training.config import shared_config


def base_config(model: LukeConfig, preset: str = "", **data) -> ml_collections.ConfigDict:
  """`model` as `config.model` (vocabulary sizes 0 = the dataset's), `data` over defaults.

  `preset` names the released model `model` has the shapes of (`luke-large`, `mluke-base`,
  ...): where no dataset gives the vocabulary sizes (`python -m luke_jax.aot`), they are that
  model's.
  """
  config = shared_config()
  config.preset = preset
  fields = dataclasses.asdict(model)
  fields.pop("id2label")  # heads are task-specific; pretraining has none
  config.model = fields
  config.data = ml_collections.ConfigDict(dict(
      dataset_dir="", max_seq_length=512, max_entity_length=128, max_mention_length=30,
      whole_word_masking=True, masked_lm_prob=0.15, masked_entity_prob=0.15, num_workers=4,
      include_unk_entities=False))
  config.data.update(data)
  config.train.update(stage=2, export=True)
  return config


def parse_arg(arg: str | None, defaults: dict[str, str]) -> dict[str, str]:
  """`--config configs/X.py:key=value,key=value` -> `defaults` updated; unknown keys refused."""
  out = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    if key not in out:
      raise ValueError(f"unknown config argument {key!r}; known: {sorted(out)}")
    out[key] = value
  return out
