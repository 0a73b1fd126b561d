"""Task heads over `LukeModel`, with `transformers` 5.x formulas (features, bias, dropout, loss).

Each head holds the encoder as the submodule `luke`, as HF head classes hold it under `luke.`.
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from luke_jax.models import layers, losses, matmul
from luke_jax.models.config import LukeConfig
from luke_jax.models.luke import LukeModel, LukeModelOutput, _dense, _layer_norm
from luke_jax.models.outputs import OutputMapping

Array = jax.Array

_ENCODER_ARGS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "entity_ids",
                 "entity_attention_mask", "entity_token_type_ids", "entity_position_ids",
                 "inputs_embeds")


@flax.struct.dataclass
class LukeHeadOutput(OutputMapping):
  """Union of the HF head outputs; fields a head does not produce stay None."""
  loss: Array | None = None
  logits: Array | None = None
  entity_logits: Array | None = None
  start_logits: Array | None = None
  end_logits: Array | None = None
  mlm_loss: Array | None = None
  mep_loss: Array | None = None
  hidden_states: tuple[Array, ...] | None = None
  entity_hidden_states: tuple[Array, ...] | None = None
  attentions: tuple[Array, ...] | None = None


class _Head(nn.Module):
  """Shared call plumbing: run `luke`, then `self.head(outputs, ...)`."""

  config: LukeConfig
  add_pooling_layer = True

  def encode(self, kwargs, deterministic, output_attentions, output_hidden_states):
    encoder_kwargs = {k: kwargs.pop(k, None) for k in _ENCODER_ARGS}
    outputs = LukeModel(self.config, self.add_pooling_layer, name="luke")(
        **encoder_kwargs, deterministic=deterministic, output_attentions=output_attentions,
        output_hidden_states=output_hidden_states)
    return outputs

  def dropout(self, x, deterministic, rate=None):
    rate = self.config.hidden_dropout_prob if rate is None else rate
    return nn.Dropout(rate)(x, deterministic=deterministic)

  def classifier(self, num: int, name="classifier", use_bias=True):
    return _dense(self.config, num, ("embed", None), name, use_bias=use_bias)

  @staticmethod
  def passthrough(outputs: LukeModelOutput, **fields) -> LukeHeadOutput:
    return LukeHeadOutput(hidden_states=outputs.hidden_states,
                          entity_hidden_states=outputs.entity_hidden_states,
                          attentions=outputs.attentions, **fields)


def _head_call(head_fn):
  """Turns `head_fn(self, outputs, deterministic, **extra)` into a full HF-style `__call__`."""

  def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
               entity_ids=None, entity_attention_mask=None, entity_token_type_ids=None,
               entity_position_ids=None, inputs_embeds=None, *, deterministic: bool = True,
               output_attentions: bool = False, output_hidden_states: bool = False, **extra):
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask,
                  token_type_ids=token_type_ids, position_ids=position_ids, entity_ids=entity_ids,
                  entity_attention_mask=entity_attention_mask,
                  entity_token_type_ids=entity_token_type_ids,
                  entity_position_ids=entity_position_ids, inputs_embeds=inputs_embeds)
    outputs = self.encode(kwargs, deterministic, output_attentions, output_hidden_states)
    return head_fn(self, outputs, deterministic, **extra)

  __call__.__doc__ = head_fn.__doc__
  return nn.compact(__call__)


class LukeLMHead(nn.Module):
  """RoBERTa LM head; the decoder is the word embedding table (tied), bias separate.

  With `decode=False` it returns `(features, table [V, H], bias [V])` instead of logits, so
  pretraining can score only masked positions in vocabulary chunks with the same parameters.
  """
  config: LukeConfig
  decode: bool = True

  @nn.compact
  def __call__(self, hidden: Array, word_embeddings: Array):
    cfg = self.config
    x = layers.gelu(_dense(cfg, cfg.hidden_size, ("embed", "mlp"), "dense")(hidden))
    x = _layer_norm(cfg, "layer_norm")(x)
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                      (cfg.vocab_size,), cfg.weight_dtype)
    if cfg.tie_word_decoder:
      table = word_embeddings
    else:  # an untied decoder keeps the Linear layout of its PyTorch origin: kernel [H, V]
      table = layers.Kernel((cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"),
                            cfg.initializer_range, cfg.weight_dtype, name="decoder")().T
    if not self.decode:
      return x, table, bias
    return _decode(x, table, bias, cfg.compute_dtype)


class EntityPredictionHead(nn.Module):
  """Masked entity prediction; the decoder is the entity embedding table (tied), bias separate.

  With `decode=False` it returns `(features, bias [Ve])` instead of logits.
  """
  config: LukeConfig
  decode: bool = True

  @nn.compact
  def __call__(self, hidden: Array, entity_embeddings: Array | None = None):
    cfg = self.config
    x = _dense(cfg, cfg.entity_emb_size, ("embed", "entity_embed"), "transform_dense")(hidden)
    x = _layer_norm(cfg, "transform_LayerNorm", "entity_embed")(layers.gelu(x))
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros,
                                                           ("entity_vocab",)),
                      (cfg.entity_vocab_size,), cfg.weight_dtype)
    if not self.decode:
      return x, bias
    return _decode(x, entity_embeddings, bias, cfg.compute_dtype)


def _decode(features: Array, table: Array, bias: Array, dtype) -> Array:
  """Logits against every row of `table` [V, D], plus the bias."""
  logits = jnp.einsum("...d,vd->...v", features, jnp.asarray(table, dtype),
                      precision=matmul.precision(dtype))
  return logits + jnp.asarray(bias, dtype)


def embedding_table(module: nn.Module, block: str, name: str) -> Array:
  """The encoder's embedding table `luke/<block>/<name>`, read by a tied decoder."""
  return nn.unbox(module.variables["params"]["luke"][block][name]["embedding"])


class LukeForMaskedLM(_Head):
  """MLM + masked entity prediction (`transformers.LukeForMaskedLM`)."""

  @_head_call
  def __call__(self, outputs, deterministic, labels=None, entity_labels=None):
    cfg = self.config
    word_table = embedding_table(self, "embeddings", "word_embeddings")
    logits = LukeLMHead(cfg, name="lm_head")(outputs.last_hidden_state, word_table)
    entity_logits = mlm_loss = mep_loss = loss = None
    if labels is not None:
      mlm_loss = loss = losses.cross_entropy(logits, labels)
    if outputs.entity_last_hidden_state is not None:
      entity_table = embedding_table(self, "entity_embeddings", "entity_embeddings")
      entity_logits = EntityPredictionHead(cfg, name="entity_predictions")(
          outputs.entity_last_hidden_state, entity_table)
      if entity_labels is not None:
        mep_loss = losses.cross_entropy(entity_logits, entity_labels)
        loss = mep_loss if loss is None else loss + mep_loss
    return self.passthrough(outputs, loss=loss, mlm_loss=mlm_loss, mep_loss=mep_loss,
                            logits=logits, entity_logits=entity_logits)



class LukeForEntityClassification(_Head):
  """Classifier on the first entity's state (Open Entity typing)."""

  @_head_call
  def __call__(self, outputs, deterministic, labels=None):
    features = self.dropout(outputs.entity_last_hidden_state[:, 0], deterministic)
    logits = self.classifier(self.config.num_labels)(features)
    return self.passthrough(outputs, logits=logits, loss=losses.classification_loss(logits, labels))


class LukeForEntityPairClassification(_Head):
  """Bias-free classifier on `[head entity; tail entity]` (TACRED)."""

  @_head_call
  def __call__(self, outputs, deterministic, labels=None):
    e = outputs.entity_last_hidden_state
    features = self.dropout(jnp.concatenate([e[:, 0], e[:, 1]], axis=-1), deterministic)
    logits = self.classifier(self.config.num_labels, use_bias=False)(features)
    return self.passthrough(outputs, logits=logits, loss=losses.classification_loss(logits, labels))


class LukeForEntitySpanClassification(_Head):
  """Classifier on `[word at start; word at end; entity]` per span (CoNLL-2003 NER)."""

  @_head_call
  def __call__(self, outputs, deterministic, entity_start_positions=None,
               entity_end_positions=None, labels=None):
    if entity_start_positions is None or entity_end_positions is None:
      raise ValueError("entity_start_positions and entity_end_positions are required")
    words = outputs.last_hidden_state
    take = lambda idx: jnp.take_along_axis(words, idx[..., None].astype(jnp.int32), axis=1)
    features = jnp.concatenate([take(entity_start_positions), take(entity_end_positions),
                                outputs.entity_last_hidden_state], axis=-1)
    logits = self.classifier(self.config.num_labels)(
        self.dropout(features, deterministic))
    loss = None
    if labels is not None:
      loss = (losses.cross_entropy(logits, labels) if labels.ndim == 2
              else losses.binary_cross_entropy(logits, labels))
    return self.passthrough(outputs, logits=logits, loss=loss)


class LukeForSequenceClassification(_Head):
  """Classifier (or regressor) on the pooled `<s>` state."""

  @_head_call
  def __call__(self, outputs, deterministic, labels=None):
    cfg = self.config
    features = self.dropout(outputs.pooler_output, deterministic, cfg.classifier_dropout)
    logits = self.classifier(cfg.num_labels)(features)
    loss = None
    if labels is not None:
      loss = losses.sequence_classification_loss(logits, labels, cfg.problem_type)
    return self.passthrough(outputs, logits=logits, loss=loss)


class LukeForTokenClassification(_Head):
  """Per-token classifier over the word states (no pooler)."""
  add_pooling_layer = False

  @_head_call
  def __call__(self, outputs, deterministic, labels=None):
    cfg = self.config
    features = self.dropout(outputs.last_hidden_state, deterministic, cfg.classifier_dropout)
    logits = self.classifier(cfg.num_labels)(features)
    loss = losses.cross_entropy(logits, labels) if labels is not None else None
    return self.passthrough(outputs, logits=logits, loss=loss)


class LukeForQuestionAnswering(_Head):
  """Start/end span scorer over word states; no dropout, as in HF."""
  add_pooling_layer = False

  @_head_call
  def __call__(self, outputs, deterministic, start_positions=None, end_positions=None):
    del deterministic
    logits = self.classifier(self.config.num_labels, name="qa_outputs")(outputs.last_hidden_state)
    start_logits, end_logits = logits[..., 0], logits[..., 1]
    loss = None
    if start_positions is not None and end_positions is not None:
      loss = losses.span_loss(start_logits, end_logits, start_positions, end_positions)
    return self.passthrough(outputs, start_logits=start_logits, end_logits=end_logits, loss=loss)


class LukeForMultipleChoice(nn.Module):
  """Scores each choice from its pooled state; inputs are `[batch, num_choices, ...]`."""

  config: LukeConfig

  @nn.compact
  def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
               entity_ids=None, entity_attention_mask=None, entity_token_type_ids=None,
               entity_position_ids=None, inputs_embeds=None, *, deterministic: bool = True,
               output_attentions: bool = False, output_hidden_states: bool = False, labels=None):
    cfg = self.config
    ref = input_ids if input_ids is not None else inputs_embeds
    num_choices = ref.shape[1]
    flat = lambda x: None if x is None else x.reshape((-1,) + x.shape[2:])
    outputs = LukeModel(cfg, name="luke")(
        flat(input_ids), flat(attention_mask), flat(token_type_ids), flat(position_ids),
        flat(entity_ids), flat(entity_attention_mask), flat(entity_token_type_ids),
        flat(entity_position_ids), flat(inputs_embeds), deterministic=deterministic,
        output_attentions=output_attentions, output_hidden_states=output_hidden_states)
    features = nn.Dropout(cfg.classifier_dropout if cfg.classifier_dropout is not None
                          else cfg.hidden_dropout_prob)(outputs.pooler_output,
                                                        deterministic=deterministic)
    logits = _dense(cfg, 1, ("embed", None), "classifier")(features).reshape(-1, num_choices)
    loss = losses.cross_entropy(logits, labels) if labels is not None else None
    return _Head.passthrough(outputs, logits=logits, loss=loss)
