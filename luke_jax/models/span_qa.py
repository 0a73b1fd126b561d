"""Cloze-style QA head (ReCoRD): scores candidate entity spans against a placeholder entity.

`transformers` has no such class; this is the paper's `LukeForEntitySpanQA` (Yamada et al.,
EMNLP 2020, arXiv:2010.01057; code: github.com/studio-ousia/luke,
`examples/legacy/entity_span_qa/model.py`). Entity 0 is the `[MASK]` entity over the query's
placeholder token, entities 1.. are `[MASK]` entities over the candidate spans of the passage,
and candidate i is scored by `Linear(2H, 1)(dropout([h_0; h_i]))`, dropout at the hidden rate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from luke_jax.models import losses
from luke_jax.models.heads import _Head, _head_call

Array = jax.Array


class LukeForEntitySpanQA(_Head):
  """Scores entities 1.. as the filler of the placeholder entity 0.

  Returns `LukeHeadOutput.logits` of shape `[batch, entities - 1]` (one per candidate slot, in
  float32) with padded slots (`entity_attention_mask == 0`) at the float32 minimum, so an argmax
  or a top-k over a row never picks one. With `labels` (`[batch, entities - 1]`, 0/1) the loss
  is the reference's: BCE-with-logits summed over real candidates and divided by their number.
  """

  def encode(self, kwargs, deterministic, output_attentions, output_hidden_states):
    # `_head_call` hands the inputs only to the encoder; the scorer also needs the entity mask
    # to tell real candidates from padding, so it travels along with the encoder outputs.
    entity_mask = kwargs.get("entity_attention_mask")
    outputs = super().encode(kwargs, deterministic, output_attentions, output_hidden_states)
    return outputs, entity_mask

  @_head_call
  def __call__(self, encoded, deterministic, labels=None):
    outputs, entity_mask = encoded
    entities = outputs.entity_last_hidden_state  # [batch, entities, hidden]
    if entities is None or entities.shape[1] < 2:
      raise ValueError("LukeForEntitySpanQA needs the placeholder entity and at least one "
                       "candidate entity (entity_ids of shape [batch, >= 2])")
    candidates = entities[:, 1:]  # [batch, candidates, hidden]
    placeholder = jnp.broadcast_to(entities[:, :1], candidates.shape)
    features = self.dropout(jnp.concatenate([placeholder, candidates], axis=-1), deterministic)
    logits = jnp.asarray(self.classifier(1)(features)[..., 0], jnp.float32)  # [batch, cand]
    valid = (jnp.ones(logits.shape, bool) if entity_mask is None
             else jnp.asarray(entity_mask)[:, 1:] > 0)
    logits = jnp.where(valid, logits, jnp.finfo(jnp.float32).min)
    loss = None
    if labels is not None:
      # The mean over the valid candidate slots of all rows (the padded slots' huge negative
      # logits are dropped by `where`, never multiplied away, so they cannot turn into NaN).
      loss_sum, weight = losses.sigmoid_cross_entropy_sums(logits, labels, valid)
      loss = jnp.sum(loss_sum) / jnp.maximum(jnp.sum(weight), 1.0)
    return self.passthrough(outputs, logits=logits, loss=loss)

