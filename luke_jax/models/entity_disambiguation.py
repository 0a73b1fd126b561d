"""`LukeForEntityDisambiguation`: masked entity prediction restricted to each mention's candidates.

The model of studio-ousia/luke `examples/entity_disambiguation/model.py` (Yamada et al., 2022,
"Global Entity Disambiguation with BERT"): the encoder plus the pretraining entity head, whose
decoder is the (tied) entity embedding table. Mentions enter as [MASK] entities; a mention's
score for an entity is its masked-entity-prediction logit.

The reference scores every mention against the whole entity vocabulary and fills the
non-candidates with -1e32. Here, given candidates, only their rows of the table are gathered
and scored (`[B, E, C, D]` against `[B, E, D]`): the same softmax over the candidates (when a
row's candidate ids are distinct), without the `[B, E, Ve]` product (500K entities for LUKE).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from luke_jax.models import losses, matmul
from luke_jax.models.heads import (EntityPredictionHead, _decode, _Head, _head_call,
                                   embedding_table)

Array = jax.Array

# The reference's fill for non-candidates; finite, so a row without any candidate gives a
# uniform softmax instead of NaNs.
NOT_A_CANDIDATE = -1e32


def candidate_targets(entity_candidate_ids: Array, labels: Array) -> tuple[Array, Array]:
  """Where each gold entity id sits among its candidates.

  Args:
    entity_candidate_ids: `[B, E, C]` candidate entity ids; ids <= 0 are padding.
    labels: `[B, E]` gold entity ids, -1 = ignore.

  Returns:
    `(index [B, E] int32, valid [B, E] bool)`: the gold id's candidate slot (its first), and
    whether the entity counts for the loss (labelled, and the gold id is one of its candidates).
  """
  labels = jnp.asarray(labels).astype(jnp.int32)
  hit = (entity_candidate_ids == labels[..., None]) & (entity_candidate_ids > 0)
  valid = (labels != -1) & jnp.any(hit, axis=-1)
  return jnp.argmax(hit, axis=-1).astype(jnp.int32), valid


class LukeForEntityDisambiguation(_Head):
  """The entity disambiguation model; the parameters are `LukeForMaskedLM`'s minus `lm_head`.

  Call it as the other heads, with two extra keywords:
    entity_candidate_ids: `[B, E, C]` int (optional). Without it `logits` is `[B, E, Ve]`, every
      entity of the vocabulary; with it `logits` is `[B, E, C]` float32, candidate c's score,
      `NOT_A_CANDIDATE` where the id is <= 0 (0 = [PAD], no candidate).
    labels: `[B, E]` gold entity ids (-1 = ignore), as the reference. `loss` is the mean cross
      entropy over the labelled entities; with candidates, over the C candidate logits, and an
      entity whose gold id is not among its candidates is ignored (the reference would give it
      a loss of about 1e32).
  """

  @_head_call
  def __call__(self, outputs, deterministic, entity_candidate_ids=None, labels=None):
    del deterministic  # the reference's head has no dropout
    cfg = self.config
    if outputs.entity_last_hidden_state is None:
      raise ValueError("LukeForEntityDisambiguation needs entity_ids (the mentions, as [MASK])")
    table = embedding_table(self, "entity_embeddings", "entity_embeddings")
    features, bias = EntityPredictionHead(cfg, decode=False, name="entity_predictions")(
        outputs.entity_last_hidden_state)
    loss = None
    if entity_candidate_ids is None:
      logits = _decode(features, table, bias, cfg.compute_dtype)
      if labels is not None:
        loss = losses.cross_entropy(logits, labels, ignore_index=-1)
    else:
      ids = jnp.asarray(entity_candidate_ids).astype(jnp.int32)
      safe = jnp.maximum(ids, 0)
      rows = jnp.take(jnp.asarray(table, cfg.compute_dtype), safe, axis=0)  # [B, E, C, D]
      # Accumulated and returned in float32, as the softmax over the candidates wants.
      logits = matmul.einsum_f32("bed,becd->bec", features, rows)
      logits = logits + jnp.take(jnp.asarray(bias, jnp.float32), safe, axis=0)
      logits = jnp.where(ids > 0, logits, NOT_A_CANDIDATE)
      if labels is not None:
        index, valid = candidate_targets(ids, labels)
        loss = losses.cross_entropy(logits, jnp.where(valid, index, -1), ignore_index=-1)
    return self.passthrough(outputs, logits=logits, loss=loss)
