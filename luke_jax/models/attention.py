"""Entity-aware self-attention (LUKE paper, section 3.3) and its plain counterpart.

The math lives in `entity_aware_attention`, a pure function over projected queries, keys and
values; `LukeSelfAttention` only owns the projections. Keys and values are shared by all token
types; only the query depends on the (query type, key type) pair.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from luke_jax.models import layers

Array = jax.Array
_HIGHEST = jax.lax.Precision.HIGHEST


def attention_bias(mask: Array) -> Array:
  """`[batch, keys]` 0/1 mask -> additive float32 bias `[batch, 1, 1, keys]` (finfo.min at 0s)."""
  mask = jnp.asarray(mask, jnp.float32)
  return ((1.0 - mask) * jnp.finfo(jnp.float32).min)[:, None, None, :]


def _scores(q: Array, k: Array) -> Array:
  # q: [batch, q_len, heads, head_dim], k: [batch, k_len, heads, head_dim]
  return jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=_HIGHEST,
                    preferred_element_type=jnp.float32)


def entity_aware_attention(
    queries: dict[str, Array] | Array,
    key: Array,
    value: Array,
    bias: Array | None,
    num_words: int,
    *,
    dropout_rate: float = 0.0,
    dropout_rng: Array | None = None,
    deterministic: bool = True,
) -> tuple[Array, Array]:
  """Scaled dot-product attention over the concatenated word+entity sequence.

  Args:
    queries: either one `[batch, T+E, heads, head_dim]` query (plain attention), or a dict with
      `w2w` `[batch, T, h, d]`, `w2e` `[batch, T, h, d]`, `e2w` `[batch, E, h, d]` and `e2e`
      `[batch, E, h, d]` (entity-aware attention).
    key, value: `[batch, T+E, heads, head_dim]`, shared by every query type.
    bias: additive bias broadcastable to `[batch, heads, T+E, T+E]`, or None.
    num_words: T, where the word tokens end and entity tokens begin.

  Returns:
    context `[batch, T+E, heads, head_dim]` and probabilities `[batch, heads, T+E, T+E]` (float32).
  """
  head_dim = key.shape[-1]
  if isinstance(queries, dict):
    k_word, k_ent = key[:, :num_words], key[:, num_words:]
    word_rows = jnp.concatenate(
        [_scores(queries["w2w"], k_word), _scores(queries["w2e"], k_ent)], axis=-1)
    entity_rows = jnp.concatenate(
        [_scores(queries["e2w"], k_word), _scores(queries["e2e"], k_ent)], axis=-1)
    scores = jnp.concatenate([word_rows, entity_rows], axis=-2)
  else:
    scores = _scores(queries, key)
  # Scaled after the block concatenation, as the reference does.
  scores = scores / jnp.sqrt(jnp.float32(head_dim))
  if bias is not None:
    scores = scores + bias
  probs = jax.nn.softmax(scores, axis=-1)
  if not deterministic and dropout_rate > 0.0:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
    probs_used = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
  else:
    probs_used = probs
  context = jnp.einsum("bhqk,bkhd->bqhd", jnp.asarray(probs_used, value.dtype), value,
                       precision=_HIGHEST)
  return context, probs


class LukeSelfAttention(nn.Module):
  """Projections for LUKE self-attention (`attention.self` in the HF state dict)."""

  config: Any
  num_words: int
  deterministic: bool = True

  @nn.compact
  def __call__(self, hidden: Array, bias: Array | None) -> tuple[Array, Array]:
    cfg = self.config
    proj = lambda name: layers.DenseGeneral(
        features=(cfg.num_attention_heads, cfg.head_dim), kernel_axes=("embed", "heads", "kv"),
        std=cfg.initializer_range, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
        name=name)
    key = proj("key")(hidden)
    value = proj("value")(hidden)
    has_entities = hidden.shape[1] > self.num_words
    if cfg.use_entity_aware_attention:
      words, entities = hidden[:, :self.num_words], hidden[:, self.num_words:]
      # The three extra queries exist even when a call has no entities, so the parameter tree
      # never depends on the inputs.
      q_w2w, q_w2e = proj("query")(words), proj("w2e_query")(words)
      q_e2w, q_e2e = proj("e2w_query")(entities), proj("e2e_query")(entities)
      if has_entities:
        queries = {"w2w": q_w2w, "w2e": q_w2e, "e2w": q_e2w, "e2e": q_e2e}
      else:
        queries = q_w2w
    else:
      queries = proj("query")(hidden)
    rng = None
    if not self.deterministic and cfg.attention_probs_dropout_prob > 0.0:
      rng = self.make_rng("dropout")
    return entity_aware_attention(
        queries, key, value, bias, self.num_words,
        dropout_rate=cfg.attention_probs_dropout_prob, dropout_rng=rng,
        deterministic=self.deterministic)
