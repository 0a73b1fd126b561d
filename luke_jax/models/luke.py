"""The LUKE encoder: word and entity embeddings, post-LN layers, pooler.

Submodule names mirror the Hugging Face `LukeModel` state dict (`embeddings/word_embeddings`,
`encoder/layer_3/attention/self/query`, ...), which keeps the converter a readable table.
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from luke_jax.models import layers
from luke_jax.models.attention import LukeSelfAttention
from luke_jax.models.config import LukeConfig
from luke_jax.models.dropout import Dropout
from luke_jax.models.outputs import OutputMapping

Array = jax.Array


@flax.struct.dataclass
class LukeModelOutput(OutputMapping):
  """Field names follow `transformers`' `BaseLukeModelOutputWithPooling`."""
  last_hidden_state: Array
  entity_last_hidden_state: Array | None = None
  pooler_output: Array | None = None
  hidden_states: tuple[Array, ...] | None = None
  entity_hidden_states: tuple[Array, ...] | None = None
  attentions: tuple[Array, ...] | None = None


def _dense(cfg: LukeConfig, features, axes, name, use_bias=True, axis=-1):
  return layers.DenseGeneral(features=features, kernel_axes=axes, axis=axis, use_bias=use_bias,
                             std=cfg.initializer_range, dtype=cfg.compute_dtype,
                             param_dtype=cfg.weight_dtype, name=name)


def _embed(cfg: LukeConfig, num, features, axes, name):
  return layers.Embed(num_embeddings=num, features=features, axes=axes, std=cfg.initializer_range,
                      dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype, name=name)


def _layer_norm(cfg: LukeConfig, name, axis_name="embed"):
  return layers.LayerNorm(epsilon=cfg.layer_norm_eps, axis_name=axis_name,
                          dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype, name=name)


def position_ids_from_input_ids(input_ids: Array, pad_token_id: int) -> Array:
  """RoBERTa positions: count of non-pad tokens so far, offset by the pad id; pads get the pad id."""
  mask = (input_ids != pad_token_id).astype(jnp.int32)
  return jnp.cumsum(mask, axis=1) * mask + pad_token_id


class LukeEmbeddings(nn.Module):
  config: LukeConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids, token_type_ids, position_ids, inputs_embeds) -> Array:
    cfg = self.config
    if inputs_embeds is None:
      inputs_embeds = _embed(cfg, cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"),
                             "word_embeddings")(input_ids)
    else:
      # Keep the table in the tree so checkpoints do not depend on how the model was called.
      _embed(cfg, cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"), "word_embeddings")
    batch, length = inputs_embeds.shape[:2]
    if position_ids is None:
      if cfg.word_positions == "absolute":
        position_ids = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
      elif input_ids is not None:
        position_ids = position_ids_from_input_ids(input_ids, cfg.pad_token_id)
      else:
        position_ids = jnp.broadcast_to(
            jnp.arange(length, dtype=jnp.int32) + cfg.pad_token_id + 1, (batch, length))
    if token_type_ids is None:
      token_type_ids = jnp.zeros((batch, length), jnp.int32)
    x = (inputs_embeds
         + _embed(cfg, cfg.max_position_embeddings, cfg.hidden_size, (None, "embed"),
                  "position_embeddings")(position_ids)
         + _embed(cfg, cfg.type_vocab_size, cfg.hidden_size, (None, "embed"),
                  "token_type_embeddings")(token_type_ids))
    x = _layer_norm(cfg, "LayerNorm")(x)
    return Dropout(cfg.hidden_dropout_prob)(x, deterministic=self.deterministic)


class LukeEntityEmbeddings(nn.Module):
  config: LukeConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, entity_ids, entity_position_ids, entity_token_type_ids) -> Array:
    cfg = self.config
    e = _embed(cfg, cfg.entity_vocab_size, cfg.entity_emb_size, ("entity_vocab", "entity_embed"),
               "entity_embeddings")(entity_ids)
    if cfg.mask_entity_id is not None:
      # A vector of its own for [MASK], so fine-tuning can learn it with the table frozen
      # (studio-ousia/luke examples/entity_disambiguation/model.py; zeros, as there).
      mask_vector = self.param(
          "mask_embedding", nn.with_logical_partitioning(nn.initializers.zeros, ("entity_embed",)),
          (cfg.entity_emb_size,), cfg.weight_dtype)
      e = jnp.where((entity_ids == cfg.mask_entity_id)[..., None],
                    jnp.asarray(mask_vector, e.dtype), e)
    if cfg.entity_emb_size != cfg.hidden_size:
      e = _dense(cfg, cfg.hidden_size, ("entity_embed", "embed"), "entity_embedding_dense",
                 use_bias=False)(e)
    # Mean of the mention's position vectors; -1 marks padding, an all -1 row gives zeros.
    pos_table = _embed(cfg, cfg.max_position_embeddings, cfg.hidden_size, (None, "embed"),
                       "position_embeddings")
    pos = pos_table(jnp.maximum(entity_position_ids, 0))  # [batch, entities, mention, embed]
    valid = (entity_position_ids != -1).astype(pos.dtype)[..., None]
    pos = jnp.sum(pos * valid, axis=-2) / jnp.maximum(jnp.sum(valid, axis=-2), 1e-7)
    if entity_token_type_ids is None:
      entity_token_type_ids = jnp.zeros(entity_ids.shape, jnp.int32)
    types = _embed(cfg, cfg.type_vocab_size, cfg.hidden_size, (None, "embed"),
                   "token_type_embeddings")(entity_token_type_ids)
    x = _layer_norm(cfg, "LayerNorm")(e + pos + types)
    return Dropout(cfg.hidden_dropout_prob)(x, deterministic=self.deterministic)


class LukeLayer(nn.Module):
  """One post-LN block over the concatenated `[words; entities]` sequence."""

  config: LukeConfig
  num_words: int
  deterministic: bool = True
  output_attentions: bool = False

  @nn.compact
  def __call__(self, hidden: Array, mask: Array | None):
    """`hidden` `[batch, T+E, embed]`; `mask` `[batch, T+E]` key mask (nonzero = attend)."""
    cfg = self.config
    drop = lambda x: Dropout(cfg.hidden_dropout_prob)(x, deterministic=self.deterministic)
    hidden = nn.with_logical_constraint(
        hidden, ("activation_batch", "activation_length", "activation_embed"))
    context, probs = LukeSelfAttention(cfg, self.num_words, self.deterministic,
                                       self.output_attentions,
                                       name="attention_self")(hidden, mask)
    attn = _dense(cfg, cfg.hidden_size, ("heads", "kv", "embed"), "attention_output_dense",
                  axis=(-2, -1))(context)
    attn = _layer_norm(cfg, "attention_output_LayerNorm")(drop(attn) + hidden)
    inter = layers.gelu(_dense(cfg, cfg.intermediate_size, ("embed", "mlp"),
                               "intermediate_dense")(attn))
    out = _dense(cfg, cfg.hidden_size, ("mlp", "embed"), "output_dense")(inter)
    out = _layer_norm(cfg, "output_LayerNorm")(drop(out) + attn)
    return out, probs


_REMAT = {
    "minimal": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    "full": jax.checkpoint_policies.nothing_saveable,
}


class _ScannedLayer(nn.Module):
  """`LukeLayer` in the `(carry, x) -> (carry, y)` form `nn.scan` wants."""

  config: LukeConfig
  num_words: int
  deterministic: bool = True
  output_attentions: bool = False
  output_hidden_states: bool = False

  @nn.compact
  def __call__(self, hidden, mask):
    layer_cls = LukeLayer
    if self.config.remat_policy != "none":
      layer_cls = nn.remat(LukeLayer, policy=_REMAT[self.config.remat_policy], prevent_cse=False)
    out, probs = layer_cls(self.config, self.num_words, self.deterministic,
                           self.output_attentions, name="layer")(hidden, mask)
    return out, (hidden if self.output_hidden_states else None, probs)


class LukeEncoder(nn.Module):
  """The stack of layers: a Python loop (`layer_0`, `layer_1`, ...) or one `nn.scan` (`layer`)."""

  config: LukeConfig
  num_words: int
  deterministic: bool = True
  output_attentions: bool = False
  output_hidden_states: bool = False

  @nn.compact
  def __call__(self, hidden: Array, mask: Array | None):
    cfg = self.config
    if cfg.scan_layers:
      scanned = nn.scan(
          _ScannedLayer, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
          in_axes=nn.broadcast, length=cfg.num_hidden_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})
      hidden, (states, probs) = scanned(cfg, self.num_words, self.deterministic,
                                        self.output_attentions, self.output_hidden_states,
                                        name="scan")(hidden, mask)
      all_hidden = None
      if self.output_hidden_states:
        all_hidden = tuple(states[i] for i in range(cfg.num_hidden_layers)) + (hidden,)
      all_probs = (tuple(probs[i] for i in range(cfg.num_hidden_layers))
                   if self.output_attentions else None)
      return hidden, all_hidden, all_probs
    layer_cls = LukeLayer
    if cfg.remat_policy != "none":
      layer_cls = nn.remat(LukeLayer, policy=_REMAT[cfg.remat_policy])
    all_hidden, all_probs = [], []
    for i in range(cfg.num_hidden_layers):
      all_hidden.append(hidden)
      hidden, probs = layer_cls(cfg, self.num_words, self.deterministic, self.output_attentions,
                                name=f"layer_{i}")(hidden, mask)
      all_probs.append(probs)
    all_hidden.append(hidden)
    return (hidden, tuple(all_hidden) if self.output_hidden_states else None,
            tuple(all_probs) if self.output_attentions else None)


class LukePooler(nn.Module):
  config: LukeConfig

  @nn.compact
  def __call__(self, word_hidden: Array) -> Array:
    return jnp.tanh(_dense(self.config, self.config.hidden_size, ("embed", "mlp"), "dense")(
        word_hidden[:, 0]))


class LukeModel(nn.Module):
  """The bare LUKE encoder; `__call__` takes the Hugging Face argument names.

  Attributes:
    config: the model configuration.
    add_pooling_layer: False for the token-classification and QA heads, as in HF.
  """

  config: LukeConfig
  add_pooling_layer: bool = True

  @nn.compact
  def __call__(self, input_ids: Array | None = None, attention_mask: Array | None = None,
               token_type_ids: Array | None = None, position_ids: Array | None = None,
               entity_ids: Array | None = None, entity_attention_mask: Array | None = None,
               entity_token_type_ids: Array | None = None,
               entity_position_ids: Array | None = None, inputs_embeds: Array | None = None,
               *, deterministic: bool = True, output_attentions: bool = False,
               output_hidden_states: bool = False) -> LukeModelOutput:
    cfg = self.config
    if (input_ids is None) == (inputs_embeds is None):
      raise ValueError("pass exactly one of input_ids and inputs_embeds")
    batch, num_words = (input_ids.shape if input_ids is not None else inputs_embeds.shape[:2])
    words = LukeEmbeddings(cfg, deterministic, name="embeddings")(
        input_ids, token_type_ids, position_ids, inputs_embeds)
    if attention_mask is None:
      attention_mask = jnp.ones((batch, num_words), jnp.int32)
    entity_module = LukeEntityEmbeddings(cfg, deterministic, name="entity_embeddings")
    if entity_ids is not None:
      if entity_position_ids is None:
        raise ValueError("entity_ids given without entity_position_ids")
      if entity_attention_mask is None:
        entity_attention_mask = jnp.ones(entity_ids.shape, jnp.int32)
      entities = entity_module(entity_ids, entity_position_ids, entity_token_type_ids)
      hidden = jnp.concatenate([words, entities], axis=1)
      mask = jnp.concatenate([attention_mask, entity_attention_mask], axis=-1)
    else:
      if self.is_initializing():
        entity_module(jnp.zeros((batch, 1), jnp.int32), jnp.zeros((batch, 1, 1), jnp.int32), None)
      hidden, mask = words, attention_mask
    # The key mask goes down as is: the attention turns it into what its kernel wants (an
    # additive [B, 1, 1, S] bias for the explicit math), never a [B, heads, S, S] tensor.
    hidden, all_hidden, all_probs = LukeEncoder(
        cfg, num_words, deterministic, output_attentions, output_hidden_states,
        name="encoder")(hidden, mask)
    has_entities = entity_ids is not None
    split = lambda h: (h[:, :num_words], h[:, num_words:] if has_entities else None)
    word_last, entity_last = split(hidden)
    pooled = LukePooler(cfg, name="pooler")(word_last) if self.add_pooling_layer else None
    word_states = entity_states = None
    if all_hidden is not None:
      word_states = tuple(split(h)[0] for h in all_hidden)
      entity_states = tuple(split(h)[1] for h in all_hidden) if has_entities else None
    return LukeModelOutput(
        last_hidden_state=word_last, entity_last_hidden_state=entity_last, pooler_output=pooled,
        hidden_states=word_states, entity_hidden_states=entity_states, attentions=all_probs)
