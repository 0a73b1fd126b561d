"""Entity-aware self-attention (LUKE paper, section 3.3) and its plain counterpart.

Keys and values are shared by all token types; only the query depends on the (query type, key
type) pair. Two pure functions compute the same thing:

* `entity_aware_attention` is the readable reference: four score blocks (word->word,
  word->entity, entity->word, entity->entity) concatenated into the full score matrix, as
  `transformers` and the original code do. Tests use it as the oracle.
* `fused_attention` is what the model runs by default (`LukeConfig.attention_impl="fused"`).
  Without a flash kernel it computes the scores with two matmuls (every query against the word
  keys with its to-word query, against the entity keys with its to-entity query) and one
  softmax: the same FLOPs as the four blocks, without the three concatenations of score tiles.
  With a flash kernel (cuDNN on GPU, bf16/fp16, no attention dropout, no probabilities asked
  for) it runs one `jax.nn.dot_product_attention` call on doubled heads: every query is
  `[q_to_words, q_to_entities]` and every key `[k * is_word, k * is_entity]`, so one dot product
  picks the right query for each key type. Elsewhere that call has no kernel to offer: on CPU
  it is the same einsums (XLA), with the value product doubled too (values must be shaped like
  keys), and `bench/attention.py --kernels` measures it slower than the explicit math.

`LukeSelfAttention` only owns the projections (`query`, `key`, `value`, `w2e_query`,
`e2w_query`, `e2e_query`, the names of the HF state dict) and picks the function.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from luke_jax.models import dropout as dropout_lib
from luke_jax.models import layers, matmul, splash

Array = jax.Array

# Dtypes cuDNN's flash attention accepts.
_KERNEL_DTYPES = (jnp.bfloat16, jnp.float16)


def attention_bias(mask: Array) -> Array:
  """`[batch, keys]` 0/1 mask -> additive float32 bias `[batch, 1, 1, keys]` (finfo.min at 0s)."""
  mask = jnp.asarray(mask, jnp.float32)
  return ((1.0 - mask) * jnp.finfo(jnp.float32).min)[:, None, None, :]


def _scores(q: Array, k: Array) -> Array:
  # q: [batch, q_len, heads, head_dim], k: [batch, k_len, heads, head_dim]
  return matmul.einsum_f32("bqhd,bkhd->bhqk", q, k)


def _softmax_dropout_values(scores: Array, value: Array, bias: Array | None, head_dim: int,
                            dropout_rate: float, dropout_rng: Array | None,
                            deterministic: bool) -> tuple[Array, Array]:
  """Scale, bias, float32 softmax, dropout and the value product, shared by both paths so the
  two differ only in how the scores are formed (and draw the same dropout mask)."""
  scores = scores / jnp.sqrt(jnp.float32(head_dim))
  if bias is not None:
    # Additive (not jnp.where), as the reference: a row with every key masked gets uniform
    # probabilities and the same gradients as in `transformers`.
    scores = scores + bias
  probs = jax.nn.softmax(scores, axis=-1)
  if not deterministic and dropout_rate > 0.0:
    # Fused random bits: jax.random.bernoulli's rolled Threefry loop was most of a CPU
    # fine-tuning step at 512 + 128 tokens (see luke_jax/models/dropout.py).
    probs_used = dropout_lib.dropout(probs, dropout_rate, dropout_rng)
  else:
    probs_used = probs
  context = jnp.einsum("bhqk,bkhd->bqhd", jnp.asarray(probs_used, value.dtype), value,
                       precision=matmul.precision(value.dtype))
  return context, probs


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
  """Scaled dot-product attention over the concatenated word+entity sequence (four blocks).

  Args:
    queries: either one `[batch, T+E, heads, head_dim]` query (plain attention), or a dict with
      `w2w` `[batch, T, h, d]`, `w2e` `[batch, T, h, d]`, `e2w` `[batch, E, h, d]` and `e2e`
      `[batch, E, h, d]` (entity-aware attention).
    key, value: `[batch, T+E, heads, head_dim]`, shared by every query type.
    bias: additive bias broadcastable to `[batch, heads, T+E, T+E]`, or None.
    num_words: T, where the word tokens end and entity tokens begin.
    dropout_rate, dropout_rng, deterministic: dropout on the attention probabilities.

  Returns:
    context `[batch, T+E, heads, head_dim]` and probabilities `[batch, heads, T+E, T+E]` (float32).
  """
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
  return _softmax_dropout_values(scores, value, bias, key.shape[-1], dropout_rate, dropout_rng,
                                 deterministic)


def doubled_heads(queries: dict[str, Array], key: Array, value: Array,
                  num_words: int) -> tuple[Array, Array, Array]:
  """Entity-aware attention as plain attention over heads of twice the size.

  Query rows become `[q_to_words, q_to_entities]` (`[w2w, w2e]` for words, `[e2w, e2e]` for
  entities) and keys `[k, 0]` for words, `[0, k]` for entities, so `q' . k'` equals the block
  score of the pair. `jax.nn.dot_product_attention` wants values shaped like keys, so values are
  zero-padded to the doubled size; the caller keeps the first half of the output.

  Returns:
    query, key and value, each `[batch, T+E, heads, 2 * head_dim]`.
  """
  query = jnp.concatenate([jnp.concatenate([queries["w2w"], queries["w2e"]], axis=-1),
                           jnp.concatenate([queries["e2w"], queries["e2e"]], axis=-1)], axis=1)
  k_word, k_ent = key[:, :num_words], key[:, num_words:]
  key = jnp.concatenate([jnp.concatenate([k_word, jnp.zeros_like(k_word)], axis=-1),
                         jnp.concatenate([jnp.zeros_like(k_ent), k_ent], axis=-1)], axis=1)
  value = jnp.concatenate([value, jnp.zeros_like(value)], axis=-1)
  return query, key, value


def _kernel_attention(queries: dict[str, Array] | Array, key: Array, value: Array,
                      mask: Array | None, num_words: int, implementation: str) -> Array:
  """One `jax.nn.dot_product_attention` call; `mask` is the key mask `[batch, T+E]`."""
  head_dim = key.shape[-1]
  if isinstance(queries, dict):
    query, key, value_in = doubled_heads(queries, key, value, num_words)
  else:
    query, value_in = queries, value
  bias = None
  if mask is not None and implementation == "cudnn":
    # cuDNN takes a mask only as a full [B, 1, T, S] bias (one head; never [B, heads, T, S]).
    length = key.shape[1]
    mask = jnp.broadcast_to(mask[:, None, None, :] != 0, (mask.shape[0], 1, length, length))
  elif mask is not None:
    # XLA broadcasts a [B, 1, 1, S] bias; additive like the reference, so rows with every key
    # masked get the reference's gradients too (a boolean mask would zero them).
    mask, bias = None, attention_bias(mask)
  # The scale stays 1/sqrt(head_dim): the doubled heads carry one real half per key.
  context = jax.nn.dot_product_attention(query, key, value_in, bias=bias, mask=mask,
                                         scale=1.0 / float(head_dim) ** 0.5,
                                         implementation=implementation)
  return context[..., :head_dim]


def _splash_attention(queries, key, value, mask, num_words: int) -> Array:
  """The Pallas splash kernel (TPU; the interpreter elsewhere) on doubled heads."""
  head_dim = key.shape[-1]
  if isinstance(queries, dict):
    query, key, value = doubled_heads(queries, key, value, num_words)
  else:
    query = queries
  context = splash.splash_attention(query, key, value, mask, scale=1.0 / float(head_dim) ** 0.5)
  return context[..., :head_dim]


def kernel_available(dtype, head_dim: int, entity_aware: bool) -> bool:
  """Whether `fused_attention` may hand the call to cuDNN's flash attention (GPU, bf16/fp16,
  doubled head size at most 128, a multiple of 8; shape checks beyond these fall back)."""
  if jax.default_backend() != "gpu" or jnp.dtype(dtype) not in map(jnp.dtype, _KERNEL_DTYPES):
    return False
  size = 2 * head_dim if entity_aware else head_dim
  return size <= 128 and size % 8 == 0


def fused_attention(
    queries: dict[str, Array] | Array,
    key: Array,
    value: Array,
    mask: Array | None,
    num_words: int,
    *,
    dropout_rate: float = 0.0,
    dropout_rng: Array | None = None,
    deterministic: bool = True,
    return_probs: bool = False,
    implementation: str | None = None,
) -> tuple[Array, Array | None]:
  """The same attention as `entity_aware_attention` with fewer, larger operations.

  Args:
    queries: as `entity_aware_attention`: one query for all tokens, or the four typed queries.
    key, value: `[batch, T+E, heads, head_dim]`.
    mask: `[batch, T+E]` key mask (nonzero = attend), or None.
    num_words: T.
    dropout_rate, dropout_rng, deterministic: dropout on the attention probabilities.
    return_probs: also return the `[batch, heads, T+E, T+E]` float32 probabilities.
    implementation: None picks: cuDNN when `kernel_available` and neither dropout nor the
      probabilities are needed (those need the scores in memory), else the explicit math.
      "explicit" forces the explicit math; "xla" or "cudnn" force one
      `jax.nn.dot_product_attention` call with that implementation (tests, benchmarks);
      "splash" runs the Pallas TPU flash kernel (`luke_jax.models.splash`).

  Returns:
    context `[batch, T+E, heads, head_dim]` and the probabilities (None unless `return_probs`).
  """
  head_dim = key.shape[-1]
  entity_aware = isinstance(queries, dict)
  needs_scores = return_probs or (not deterministic and dropout_rate > 0.0)
  if implementation is None:
    if not needs_scores and kernel_available(key.dtype, head_dim, entity_aware):
      try:
        return _kernel_attention(queries, key, value, mask, num_words, "cudnn"), None
      except (NotImplementedError, ValueError):
        pass  # a shape or cuDNN version the kernel refuses at trace time: explicit math below
  elif implementation in ("xla", "cudnn", "splash"):
    if needs_scores:
      raise ValueError(f"implementation={implementation!r} has no dropout or probabilities")
    if implementation == "splash":
      return _splash_attention(queries, key, value, mask, num_words), None
    return _kernel_attention(queries, key, value, mask, num_words, implementation), None
  elif implementation != "explicit":
    raise ValueError(f"unknown attention implementation {implementation!r}")

  if entity_aware:
    # Every query row against the word keys with its to-word query and against the entity keys
    # with its to-entity query: two matmuls, exactly the four blocks' FLOPs, one concatenation.
    to_words = jnp.concatenate([queries["w2w"], queries["e2w"]], axis=1)
    to_entities = jnp.concatenate([queries["w2e"], queries["e2e"]], axis=1)
    scores = jnp.concatenate([_scores(to_words, key[:, :num_words]),
                              _scores(to_entities, key[:, num_words:])], axis=-1)
  else:
    scores = _scores(queries, key)
  bias = None if mask is None else attention_bias(mask)
  context, probs = _softmax_dropout_values(scores, value, bias, head_dim, dropout_rate,
                                           dropout_rng, deterministic)
  return context, (probs if return_probs else None)


class LukeSelfAttention(nn.Module):
  """Projections for LUKE self-attention (`attention.self` in the HF state dict).

  Attributes:
    config: the model configuration (`attention_impl` picks the attention function).
    num_words: T, the number of word tokens at the front of the sequence.
    deterministic: False applies attention dropout (needs a `dropout` rng).
    output_attentions: return the probabilities (else None, which lets the fused path use a
      flash kernel).
  """

  config: Any
  num_words: int
  deterministic: bool = True
  output_attentions: bool = True

  @nn.compact
  def __call__(self, hidden: Array, mask: Array | None) -> tuple[Array, Array | None]:
    """`hidden` `[batch, T+E, embed]`, `mask` `[batch, T+E]` (nonzero = attend) or None."""
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
    dropout = dict(dropout_rate=cfg.attention_probs_dropout_prob, dropout_rng=rng,
                   deterministic=self.deterministic)
    if cfg.attention_impl == "splash":
      if rng is not None or self.output_attentions:
        raise ValueError("attention_impl='splash' has no attention dropout and no attention "
                         "probabilities: set model.attention_probs_dropout_prob=0 (training) "
                         "and output_attentions=False, or use attention_impl='fused'")
      return fused_attention(queries, key, value, mask, self.num_words,
                             implementation="splash")
    if cfg.attention_impl == "unfused":
      bias = None if mask is None else attention_bias(mask)
      context, probs = entity_aware_attention(queries, key, value, bias, self.num_words,
                                              **dropout)
      return context, (probs if self.output_attentions else None)
    return fused_attention(queries, key, value, mask, self.num_words,
                           return_probs=self.output_attentions, **dropout)
