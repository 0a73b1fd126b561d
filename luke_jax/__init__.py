"""luke-jax: LUKE (Yamada et al., EMNLP 2020) in JAX/Flax.

Names are imported on first use, so the data and tokenizer tools start without loading JAX.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "from_pretrained": "luke_jax.pretrained",
    "save_checkpoint": "luke_jax.checkpoint",
    "LukeConfig": "luke_jax.models.config",
    "PRESETS": "luke_jax.models.config",
    "preset": "luke_jax.models.config",
    "LukeModel": "luke_jax.models.luke",
    "ARCHITECTURES": "luke_jax.models.registry",
    "build": "luke_jax.models.registry",
    "LukeTokenizer": "luke_jax.tokenization.tokenizer",
    "EntityVocab": "luke_jax.tokenization.entity_vocab",
    "pipeline": "luke_jax.inference.factory",
    **{name: "luke_jax.models.heads" for name in (
        "LukeForMaskedLM", "LukeForEntityClassification", "LukeForEntityPairClassification",
        "LukeForEntitySpanClassification", "LukeForSequenceClassification",
        "LukeForTokenClassification", "LukeForQuestionAnswering", "LukeForMultipleChoice")},
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f"module 'luke_jax' has no attribute {name!r}")
