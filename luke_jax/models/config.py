"""`LukeConfig`: the frozen model configuration, round-tripping Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from absl import logging
import jax.numpy as jnp

from luke_jax.models.labels import LabelMap

# Keys found in released Hub configs that describe nothing we model; accepted and dropped.
_IGNORED_HF_KEYS = frozenset({
    "bert_model_name", "gradient_checkpointing", "output_past", "position_embedding_type",
    "use_cache", "cls_entity_prediction", "deepspeed_transformer_layer_args",
    "use_deepspeed_transformer_layer", "classifier_bias", "transformers_version", "model_type",
    "architectures", "torch_dtype", "dtype", "return_dict", "output_hidden_states",
    "output_attentions", "chunk_size_feed_forward", "is_decoder", "add_cross_attention",
    "tie_word_embeddings", "tie_encoder_decoder", "_name_or_path",
    "finetuning_task", "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id",
    "is_encoder_decoder",
    "task_specific_params", "num_labels",
})

# Fields that only luke-jax knows about; kept in config.json under this key.
_JAX_KEY = "luke_jax"


@dataclasses.dataclass(frozen=True)
class LukeConfig:
  """Hyper-parameters of a LUKE model.

  The HF-named fields keep `transformers.LukeConfig`'s defaults so that a config.json missing a
  key means the same thing in both libraries; released checkpoints carry their own values (eps
  1e-5, 514 positions, one token type) and those always come from the file.
  """

  vocab_size: int = 50267
  entity_vocab_size: int = 500000
  hidden_size: int = 768
  entity_emb_size: int = 256
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02
  layer_norm_eps: float = 1e-12
  use_entity_aware_attention: bool = True
  classifier_dropout: float | None = None
  pad_token_id: int = 1
  bos_token_id: int = 0
  eos_token_id: int = 2
  # Task heads: class names by id. Given as a dict or (id, name) pairs; kept as a hashable
  # read-only mapping (`LabelMap`), so `config.id2label[i]` is the name, as in transformers.
  id2label: LabelMap = LabelMap(((0, "LABEL_0"), (1, "LABEL_1")))
  problem_type: str | None = None
  # luke-jax only: layout and numerics, never written into the HF part of config.json.
  dtype: str = "float32"
  param_dtype: str = "float32"
  scan_layers: bool = False
  remat_policy: str = "none"
  # "fused" (fewer, larger attention ops; cuDNN flash on GPU when it applies), "unfused" (the
  # four-block reference) or "splash" (a Pallas flash kernel for TPU; no attention dropout,
  # no probabilities). Same numbers every way, up to summation order.
  attention_impl: str = "fused"
  # transformers 5 no longer ties `lm_head.decoder.weight` to the word embeddings; released
  # checkpoints store equal tensors (tied), models trained with transformers 5 may not.
  tie_word_decoder: bool = True
  # How word position ids are made when none are given: "roberta" (count of non-pad tokens so
  # far, offset by pad_token_id, as HF LUKE) or "absolute" (0..L-1, BERT's; the official entity
  # disambiguation model replaces LUKE's word embeddings with BERT's).
  word_positions: str = "roberta"
  # Entity id whose input embedding is the learned `mask_embedding` vector instead of its table
  # row (the entity disambiguation model's [MASK], id 2); None: every id reads the table.
  mask_entity_id: int | None = None

  def __post_init__(self):
    if not isinstance(self.id2label, LabelMap):
      object.__setattr__(self, "id2label", LabelMap(self.id2label))
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                       f"num_attention_heads {self.num_attention_heads}")
    if self.hidden_act not in ("gelu",):
      raise ValueError(f"hidden_act {self.hidden_act!r} is not supported (LUKE uses exact 'gelu')")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"remat_policy {self.remat_policy!r} not in {sorted(REMAT_POLICIES)}")
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ValueError(f"attention_impl {self.attention_impl!r} not in {sorted(ATTENTION_IMPLS)}")
    if self.word_positions not in WORD_POSITIONS:
      raise ValueError(f"word_positions {self.word_positions!r} not in {sorted(WORD_POSITIONS)}")
    if self.mask_entity_id is not None and (
        isinstance(self.mask_entity_id, bool) or not isinstance(self.mask_entity_id, int)
        or not 0 <= self.mask_entity_id < self.entity_vocab_size):
      raise ValueError(f"mask_entity_id {self.mask_entity_id!r} is not None or an entity id in "
                       f"[0, entity_vocab_size={self.entity_vocab_size})")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @property
  def num_labels(self) -> int:
    return len(self.id2label)

  @property
  def max_seq_length(self) -> int:
    """The longest word sequence (`<s>` and `</s>` included) the position table holds:
    RoBERTa-style position ids run from `pad_token_id + 1` to `length + pad_token_id`,
    absolute ones from 0 to `length - 1`."""
    if self.word_positions == "absolute":
      return self.max_position_embeddings
    return self.max_position_embeddings - self.pad_token_id - 1

  @property
  def label2id(self) -> dict[str, int]:
    return self.id2label.label2id

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def weight_dtype(self):
    return jnp.dtype(self.param_dtype)

  def replace(self, **changes) -> "LukeConfig":
    return dataclasses.replace(self, **changes)

  @classmethod
  def from_hf_dict(cls, d: Mapping[str, Any], **overrides) -> "LukeConfig":
    """Builds a config from a Hugging Face `config.json` dict (legacy keys tolerated)."""
    d = dict(d)
    jax_fields = d.pop(_JAX_KEY, {}) or {}
    if (d.get("architectures") or [None])[0] == "LukeForEntityDisambiguation":
      # The official checkpoint's class (studio-ousia/luke examples/entity_disambiguation/
      # model.py) hard-codes BERT's embeddings and [MASK] = 2; its config.json says neither.
      jax_fields = {**ED_DEFAULTS, **jax_fields}
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    if "id2label" in d and d["id2label"] is not None:
      kwargs["id2label"] = tuple(sorted((int(k), str(v)) for k, v in d.pop("id2label").items()))
    elif "num_labels" in d:
      kwargs["id2label"] = tuple((i, f"LABEL_{i}") for i in range(int(d["num_labels"])))
    d.pop("label2id", None)
    unknown = []
    for key, value in d.items():
      if key in names and key != "id2label":
        kwargs[key] = value
      elif key not in _IGNORED_HF_KEYS:
        unknown.append(key)
    if unknown:
      # Hub configs carry generation and framework keys of their era; they do not change the model.
      logging.warning("ignoring config keys luke-jax does not use: %s", sorted(unknown))
    if kwargs.get("eos_token_id") is not None and isinstance(kwargs["eos_token_id"], list):
      kwargs["eos_token_id"] = kwargs["eos_token_id"][0]
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
      if key in kwargs and kwargs[key] is None:
        kwargs.pop(key)
    kwargs.update({k: v for k, v in jax_fields.items() if k in names})
    kwargs.update(overrides)
    return cls(**kwargs)

  def to_hf_dict(self, architecture: str | None = None) -> dict[str, Any]:
    """The `config.json` dict `transformers.LukeConfig` reads, plus a `luke_jax` section."""
    d: dict[str, Any] = {"model_type": "luke"}
    if architecture:
      d["architectures"] = [architecture]
    jax_only = {"dtype", "param_dtype", "scan_layers", "remat_policy", "tie_word_decoder",
                "attention_impl", "word_positions", "mask_entity_id"}
    for f in dataclasses.fields(self):
      if f.name in jax_only:
        continue
      value = getattr(self, f.name)
      if f.name == "id2label":
        d["id2label"] = {str(i): name for i, name in value.items()}
        d["label2id"] = value.label2id
      else:
        d[f.name] = value
    d[_JAX_KEY] = {name: getattr(self, name) for name in sorted(jax_only)}
    return d


REMAT_POLICIES = ("none", "minimal", "full")
# `LukeConfig.attention_impl` values (luke_jax.models.attention).
# "splash": the Pallas TPU flash kernel (luke_jax.models.splash); no attention dropout.
ATTENTION_IMPLS = ("fused", "unfused", "splash")
WORD_POSITIONS = ("roberta", "absolute")
# What an HF config.json naming LukeForEntityDisambiguation implies (see `from_hf_dict`).
ED_DEFAULTS = {"word_positions": "absolute", "mask_entity_id": 2}

_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
_RELEASED = dict(layer_norm_eps=1e-5, max_position_embeddings=514, type_vocab_size=1,
                 entity_emb_size=256)
_LUKE = dict(vocab_size=50267, use_entity_aware_attention=True, **_RELEASED)
_MLUKE = dict(vocab_size=250004, entity_vocab_size=1200001, use_entity_aware_attention=False,
              **_RELEASED)

PRESETS: dict[str, dict[str, Any]] = {
    "luke-base": dict(entity_vocab_size=500000, **_LUKE, **_BASE),
    "luke-large": dict(entity_vocab_size=500000, **_LUKE, **_LARGE),
    "luke-base-lite": dict(entity_vocab_size=4, **_LUKE, **_BASE),
    "luke-large-lite": dict(entity_vocab_size=4, **_LUKE, **_LARGE),
    "mluke-base": dict(**_MLUKE, **_BASE),
    "mluke-large": dict(**_MLUKE, **_LARGE),
    "tiny": dict(vocab_size=128, entity_vocab_size=64, hidden_size=32, entity_emb_size=16,
                 num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=40, type_vocab_size=1, layer_norm_eps=1e-5),
}


def preset(name: str, **overrides) -> LukeConfig:
  """A `LukeConfig` with the shapes of a released checkpoint (or `tiny` for tests)."""
  if name not in PRESETS:
    raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
  return LukeConfig(**{**PRESETS[name], **overrides})
