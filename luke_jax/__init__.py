"""luke-jax: LUKE (Yamada et al., EMNLP 2020) in JAX/Flax."""

from luke_jax.checkpoint import from_pretrained, save_checkpoint
from luke_jax.models.config import PRESETS, LukeConfig, preset
from luke_jax.models.heads import (LukeForEntityClassification, LukeForEntityPairClassification,
                                   LukeForEntitySpanClassification, LukeForMaskedLM,
                                   LukeForMultipleChoice, LukeForQuestionAnswering,
                                   LukeForSequenceClassification, LukeForTokenClassification)
from luke_jax.models.luke import LukeModel
from luke_jax.models.registry import ARCHITECTURES, build

__version__ = "0.1.0"
