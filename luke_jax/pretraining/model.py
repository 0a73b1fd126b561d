"""`LukePretrainingModel`: `LukeForMaskedLM`'s parameters, heads applied at masked slots only.

The official pretraining model (github.com/studio-ousia/luke, `luke/pretraining/model.py`)
scores only the masked positions (`masked_select`); `transformers.LukeForMaskedLM` scores all
of them: at the pretraining shapes (512 words, 128 entities, 500K entities) about 17% more
step FLOPs and 256 MB of float32 entity logits per sequence. Here the masked positions come
pre-gathered into static buffers (`luke_jax.data.masking`), the head transforms run on those
`[batch, max_masked]` states only, and the entity softmax is chunked over the vocabulary
(`losses.chunked_softmax_cross_entropy`).

The parameter tree is exactly `heads.LukeForMaskedLM`'s (same module names, shapes, dtypes and
logical axes), so a `LukeForMaskedLM` checkpoint (e.g. one converted from RoBERTa) loads into
it and its parameters export with the existing converter.
"""

from __future__ import annotations

from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from luke_jax.models import heads
from luke_jax.models.config import LukeConfig
from luke_jax.models.luke import LukeModel
from luke_jax.models import losses
from luke_jax.training.steps import Objective

Array = jax.Array

# Batch keys (luke_jax.data.masking) handed to the encoder unchanged.
_ENCODER_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "entity_ids",
                 "entity_attention_mask", "entity_token_type_ids", "entity_position_ids")

METRIC_KEYS = ("mlm_loss_sum", "mlm_correct", "mlm_weight", "mep_loss_sum", "mep_correct",
               "mep_weight")


def _gather(states: Array, positions: Array) -> Array:
  """`states[b, positions[b, m]]` -> `[B * M, H]` (static shape; padded slots gather index 0)."""
  picked = jnp.take_along_axis(states, positions.astype(jnp.int32)[..., None], axis=1)
  return picked.reshape((-1, states.shape[-1]))


class LukePretrainingModel(nn.Module):
  """Masked language modelling + masked entity prediction losses, as summed metrics.

  Attributes:
    config: the model configuration. LUKE was pretrained with plain self-attention, the
      entity-aware queries added only for fine-tuning (studio-ousia/luke issue #76), i.e.
      `use_entity_aware_attention=False`; that is the caller's choice.
  """

  config: LukeConfig

  @nn.compact
  def __call__(self, batch: Mapping[str, Array], *, deterministic: bool = True,
               entity_chunk_size: int = 8192, word_chunk_size: int = 8192) -> dict[str, Array]:
    """Runs the encoder on `batch` and scores the gathered masked positions.

    Args:
      batch: the `luke_jax.data.masking` batch: `input_ids`, `attention_mask` `[B, T]`;
        `entity_ids`, `entity_attention_mask` `[B, E]`, `entity_position_ids` `[B, E, M]`
        (entity keys may be absent for word-only batches); `mlm_positions`, `mlm_labels`,
        `mlm_weights` `[B, max_masked_words]` (positions index `input_ids`, `<s>` included);
        `mep_positions`, `mep_labels`, `mep_weights` `[B, max_masked_entities]`. Other keys
        (`page_id`, ...) are ignored.
      deterministic: False applies dropout (needs a `dropout` rng).
      entity_chunk_size: entity vocabulary rows per softmax chunk.
      word_chunk_size: word vocabulary rows per softmax chunk.

    Returns:
      float32 scalars `mlm_loss_sum`, `mlm_correct`, `mlm_weight`, `mep_loss_sum`,
      `mep_correct`, `mep_weight`: weighted sums over the masked slots of the batch. The
      reference losses are `mlm_loss_sum / mlm_weight` and `mep_loss_sum / mep_weight`.
    """
    cfg = self.config
    encoder_inputs = {k: batch.get(k) for k in _ENCODER_KEYS}
    has_entities = encoder_inputs["entity_ids"] is not None
    # The pooler stays in the tree (LukeForMaskedLM has it); its output is unused, so XLA drops it.
    outputs = LukeModel(cfg, add_pooling_layer=True, name="luke")(
        **encoder_inputs, deterministic=deterministic)

    word_table = heads.embedding_table(self, "embeddings", "word_embeddings")
    features, table, bias = heads.LukeLMHead(cfg, decode=False, name="lm_head")(
        _gather(outputs.last_hidden_state, batch["mlm_positions"]), word_table)
    mlm = losses.chunked_softmax_cross_entropy(
        features, table, bias, batch["mlm_labels"].reshape(-1),
        batch["mlm_weights"].reshape(-1), word_chunk_size)

    entity_head = heads.EntityPredictionHead(cfg, decode=False, name="entity_predictions")
    if has_entities and "mep_positions" in batch:
      entity_table = heads.embedding_table(self, "entity_embeddings", "entity_embeddings")
      features, bias = entity_head(
          _gather(outputs.entity_last_hidden_state, batch["mep_positions"]))
      mep = losses.chunked_softmax_cross_entropy(
          features, entity_table, bias, batch["mep_labels"].reshape(-1),
          batch["mep_weights"].reshape(-1), entity_chunk_size)
    else:
      if self.is_initializing():
        # Create the entity head's parameters even when initialising from a word-only batch.
        entity_head(jnp.zeros((1, cfg.hidden_size), cfg.compute_dtype))
      mep = (jnp.zeros((), jnp.float32),) * 3

    values = tuple(mlm) + tuple(mep)
    return {k: jnp.asarray(v, jnp.float32) for k, v in zip(METRIC_KEYS, values)}


class PretrainingObjective(Objective):
  """`mlm_loss_sum / mlm_weight + mep_loss_sum / mep_weight` over the whole global batch.

  The reference's two means (over masked words, over masked entities). Their denominators are
  the batch's weights, known before the forward, so each micro-batch divides its sums by the
  global totals and the accumulated gradient is the whole batch's.
  """

  def __init__(self, model: LukePretrainingModel):
    self.model = model

  def totals(self, batch):
    return (jnp.maximum(batch["mlm_weights"].astype(jnp.float32).sum(), 1.0),
            jnp.maximum(batch["mep_weights"].astype(jnp.float32).sum(), 1.0))

  def __call__(self, params, batch, rng, totals):
    sums = self.model.apply({"params": params}, batch, deterministic=False, rngs={"dropout": rng})
    mlm_total, mep_total = totals
    return sums["mlm_loss_sum"] / mlm_total + sums["mep_loss_sum"] / mep_total, sums
