"""The PyTorch <-> Flax name and layout table for LUKE.

Each rule names an HF module (dotted) and the Flax module holding the same weights (slashed),
with `{i}` for the layer index and `{x}` for an alternative listed in the rule, and a `kind` that
fixes how `weight`/`bias` map and reshape:

  embed:    weight [n, d]            -> embedding [n, d]
  linear:   weight [out, in]         -> kernel [in, out];             bias -> bias
  norm:     weight                   -> scale;                        bias -> bias
  heads_in: weight [h*d, in]         -> kernel [in, heads, head_dim]; bias -> [heads, head_dim]
  heads_out: weight [out, h*d]       -> kernel [heads, head_dim, out]; bias -> bias
  param:    the HF key is the parameter itself (e.g. `lm_head.bias`) -> same-shaped leaf
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator

import numpy as np

from luke_jax.models.config import LukeConfig

_QUERIES = "query|key|value|w2e_query|e2w_query|e2e_query"


@dataclasses.dataclass(frozen=True)
class Rule:
  hf: str
  flax: str
  kind: str
  alternatives: str = ""


# Relative to the encoder (`luke.` / `luke/` in head models, nothing in `LukeModel`).
ENCODER_RULES = (
    Rule("embeddings.{x}", "embeddings/{x}", "embed",
         "word_embeddings|position_embeddings|token_type_embeddings"),
    Rule("embeddings.LayerNorm", "embeddings/LayerNorm", "norm"),
    Rule("entity_embeddings.{x}", "entity_embeddings/{x}", "embed",
         "entity_embeddings|position_embeddings|token_type_embeddings"),
    Rule("entity_embeddings.entity_embedding_dense", "entity_embeddings/entity_embedding_dense",
         "linear"),
    Rule("entity_embeddings.LayerNorm", "entity_embeddings/LayerNorm", "norm"),
    # Only with `LukeConfig.mask_entity_id` (the entity disambiguation model's [MASK] vector).
    Rule("entity_embeddings.mask_embedding", "entity_embeddings/mask_embedding", "param"),
    Rule("encoder.layer.{i}.attention.self.{x}", "encoder/layer_{i}/attention_self/{x}",
         "heads_in", _QUERIES),
    Rule("encoder.layer.{i}.attention.output.dense", "encoder/layer_{i}/attention_output_dense",
         "heads_out"),
    Rule("encoder.layer.{i}.attention.output.LayerNorm",
         "encoder/layer_{i}/attention_output_LayerNorm", "norm"),
    Rule("encoder.layer.{i}.intermediate.dense", "encoder/layer_{i}/intermediate_dense", "linear"),
    Rule("encoder.layer.{i}.output.dense", "encoder/layer_{i}/output_dense", "linear"),
    Rule("encoder.layer.{i}.output.LayerNorm", "encoder/layer_{i}/output_LayerNorm", "norm"),
    Rule("pooler.dense", "pooler/dense", "linear"),
)

HEAD_RULES = (
    Rule("lm_head.dense", "lm_head/dense", "linear"),
    Rule("lm_head.layer_norm", "lm_head/layer_norm", "norm"),
    Rule("lm_head.bias", "lm_head/bias", "param"),
    Rule("lm_head.decoder", "lm_head/decoder", "linear"),  # only when untied
    Rule("entity_predictions.transform.dense", "entity_predictions/transform_dense", "linear"),
    Rule("entity_predictions.transform.LayerNorm", "entity_predictions/transform_LayerNorm",
         "norm"),
    Rule("entity_predictions.bias", "entity_predictions/bias", "param"),
    Rule("{x}", "{x}", "linear", "classifier|qa_outputs"),
)

# Tied or derived tensors HF may store; each is checked against its source, never converted.
TIED = {
    "lm_head.decoder.weight": "luke.embeddings.word_embeddings.weight",
    "lm_head.decoder.bias": "lm_head.bias",
    "entity_predictions.decoder.weight": "luke.entity_embeddings.entity_embeddings.weight",
}
# Buffers, not parameters: `position_ids` (saved by older transformers) and `token_type_ids`
# (BertEmbeddings, in the entity disambiguation model).
BUFFERS = re.compile(r"^(luke\.)?embeddings\.(position_ids|token_type_ids)$")

_SUFFIX = {
    "embed": {"weight": "embedding"},
    "linear": {"weight": "kernel", "bias": "bias"},
    "norm": {"weight": "scale", "bias": "bias", "gamma": "scale", "beta": "bias"},
    "heads_in": {"weight": "kernel", "bias": "bias"},
    "heads_out": {"weight": "kernel", "bias": "bias"},
}


def _pattern(template: str, alternatives: str) -> str:
  out = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)")
  return out.replace(r"\{x\}", f"(?P<x>{alternatives})") if alternatives else out


def _fill(template: str, groups: dict[str, str]) -> str:
  return template.format(**{k: v for k, v in groups.items() if v is not None})


def _rules(prefixed: bool) -> Iterator[tuple[Rule, str, str]]:
  """(rule, hf_prefix, flax_prefix) for a model whose encoder is/isn't under `luke`."""
  for rule in ENCODER_RULES:
    yield rule, ("luke." if prefixed else ""), ("luke/" if prefixed else "")
  if prefixed:
    for rule in HEAD_RULES:
      yield rule, "", ""


def hf_to_flax_path(hf_key: str, prefixed: bool) -> tuple[str, str] | None:
  """`(flax_path, kind)` for an HF key, or None when no rule names it."""
  for rule, hp, fp in _rules(prefixed):
    if rule.kind == "param":
      if hf_key == hp + rule.hf:
        return fp + rule.flax, "param"
      continue
    m = re.fullmatch(re.escape(hp) + _pattern(rule.hf, rule.alternatives) + r"\.(?P<s>\w+)",
                     hf_key)
    if m and m.group("s") in _SUFFIX[rule.kind]:
      groups = m.groupdict()
      leaf = _SUFFIX[rule.kind][groups.pop("s")]
      return fp + _fill(rule.flax, groups) + "/" + leaf, rule.kind
  return None


def flax_to_hf_key(flax_path: str, prefixed: bool) -> tuple[str, str]:
  """`(hf_key, kind)` for a Flax parameter path; raises if no rule names it."""
  for rule, hp, fp in _rules(prefixed):
    if rule.kind == "param":
      if flax_path == fp + rule.flax:
        return hp + rule.hf, "param"
      continue
    m = re.fullmatch(re.escape(fp) + _pattern(rule.flax, rule.alternatives) + r"/(?P<s>\w+)",
                     flax_path)
    if m:
      groups = m.groupdict()
      leaf = groups.pop("s")
      inverse = {v: k for k, v in _SUFFIX[rule.kind].items() if k in ("weight", "bias")}
      if leaf in inverse:
        return hp + _fill(rule.hf, groups) + "." + inverse[leaf], rule.kind
  raise KeyError(f"no conversion rule for Flax parameter {flax_path!r}")


def to_flax(x: np.ndarray, kind: str, leaf: str, cfg: LukeConfig) -> np.ndarray:
  """PyTorch layout -> Flax layout for one tensor."""
  heads, head_dim = cfg.num_attention_heads, cfg.head_dim
  if kind == "linear" and leaf == "kernel":
    return x.T
  if kind == "heads_in":
    return x.T.reshape(x.shape[1], heads, head_dim) if leaf == "kernel" else x.reshape(
        heads, head_dim)
  if kind == "heads_out" and leaf == "kernel":
    return x.T.reshape(heads, head_dim, x.shape[0])
  return x


def to_torch(x: np.ndarray, kind: str, leaf: str) -> np.ndarray:
  """Flax layout -> PyTorch layout for one tensor (inverse of `to_flax`)."""
  if kind == "linear" and leaf == "kernel":
    return x.T
  if kind == "heads_in":
    return x.reshape(x.shape[0], -1).T if leaf == "kernel" else x.reshape(-1)
  if kind == "heads_out" and leaf == "kernel":
    return x.reshape(-1, x.shape[-1]).T
  return x


def torch_shape(flax_shape: tuple[int, ...], kind: str, leaf: str) -> tuple[int, ...]:
  """The PyTorch-layout shape of a Flax leaf, so error messages compare like with like."""
  if kind == "linear" and leaf == "kernel":
    return tuple(reversed(flax_shape))
  if kind == "heads_in":
    if leaf == "kernel":
      return (int(np.prod(flax_shape[1:])), flax_shape[0])
    return (int(np.prod(flax_shape)),)
  if kind == "heads_out" and leaf == "kernel":
    return (flax_shape[-1], int(np.prod(flax_shape[:-1])))
  return tuple(flax_shape)
