r"""Tiny model configuration for smoke runs and tests.

  python run_pretrain.py --config configs/tiny.py --workdir /tmp/luke_tiny
"""

import dataclasses

import ml_collections

from luke_jax.models.config import preset


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = ml_collections.ConfigDict()
  config.model = dataclasses.asdict(preset("tiny"))
  config.model.id2label = None  # heads are task-specific; set by fine-tuning configs
  return config
