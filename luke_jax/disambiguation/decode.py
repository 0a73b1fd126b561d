"""Local and global inference over a candidate-scoring forward, as pure jit-able functions.

`forward(entity_ids [B, E]) -> logits [B, E, C]` scores each entity slot's candidates (the
`entity_candidate_ids` of the batch it closes over) given the entity ids fed to the model. All
mentions start as `[MASK]`.

- `local`: one pass; each mention takes its highest-scoring candidate.
- `global_`: the reference's confidence order (github.com/studio-ousia/luke
  `examples/entity_disambiguation/evaluate.py`): each pass, in every row, the still-masked
  mention whose best candidate has the highest probability (softmax over its candidates) is
  resolved, and its entity id replaces `[MASK]` in the model's input for the next pass. A
  `lax.while_loop` runs until no row has a masked mention with candidates left: at most E
  passes, rows independent (a row with nothing left keeps its state while others go on).

Mentions without any candidate are never chosen and stay `[MASK]` (the reference resolves them
last, after every other mention, so what it writes there changes no other choice).
Both return `choice` [B, E] int32 (candidate index; -1: padding or no candidate) and `score`
[B, E] float32 (the chosen candidate's probability; 0 where no choice).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Forward = Callable[[jax.Array], jax.Array]
INFERENCE_MODES = ("global", "local")


def initial_entity_ids(entity_attention_mask: jax.Array, mask_id: int, pad_id: int
                       ) -> jax.Array:
  """`[MASK]` at every mention, `[PAD]` elsewhere."""
  return jnp.where(entity_attention_mask > 0, mask_id, pad_id).astype(jnp.int32)


def candidate_probabilities(logits: jax.Array, candidate_ids: jax.Array) -> jax.Array:
  """Softmax over each slot's real candidates (ids > 0), float32; padded candidates get 0."""
  valid = candidate_ids > 0
  logits = jnp.where(valid, jnp.asarray(logits, jnp.float32), -jnp.inf)
  # A slot without candidates would be all -inf (NaN softmax): give it zeros instead.
  logits = jnp.where(valid.any(-1, keepdims=True), logits, 0.0)
  return jnp.where(valid, jax.nn.softmax(logits, axis=-1), 0.0)


def local(forward: Forward, candidate_ids: jax.Array, entity_attention_mask: jax.Array, *,
          mask_id: int, pad_id: int) -> tuple[jax.Array, jax.Array]:
  """Every mention resolved from one pass with all mentions masked."""
  has = _has_candidates(candidate_ids, entity_attention_mask)
  probs = candidate_probabilities(
      forward(initial_entity_ids(entity_attention_mask, mask_id, pad_id)), candidate_ids)
  choice = jnp.where(has, jnp.argmax(probs, axis=-1), -1).astype(jnp.int32)
  return choice, jnp.where(has, jnp.max(probs, axis=-1), 0.0)


def global_(forward: Forward, candidate_ids: jax.Array, entity_attention_mask: jax.Array, *,
            mask_id: int, pad_id: int) -> tuple[jax.Array, jax.Array]:
  """Mentions resolved one per row per pass, most confident first (see the module docstring)."""
  batch, entities = entity_attention_mask.shape
  pending = _has_candidates(candidate_ids, entity_attention_mask)
  state = (initial_entity_ids(entity_attention_mask, mask_id, pad_id),
           jnp.full((batch, entities), -1, jnp.int32), jnp.zeros((batch, entities), jnp.float32),
           pending, jnp.zeros((), jnp.int32))

  def unfinished(state):
    *_, pending, passes = state
    return jnp.any(pending) & (passes < entities)

  def one_pass(state):
    ids, choice, score, pending, passes = state
    probs = candidate_probabilities(forward(ids), candidate_ids)  # [B, E, C]
    best = jnp.argmax(probs, axis=-1).astype(jnp.int32)           # [B, E]
    confidence = jnp.max(probs, axis=-1)
    # The row's most confident pending mention (first on ties); rows with none change nothing.
    target = jnp.argmax(jnp.where(pending, confidence, -1.0), axis=-1)  # [B]
    resolve = (jnp.arange(entities)[None, :] == target[:, None]) & pending
    entity = jnp.take_along_axis(candidate_ids, best[..., None], axis=-1)[..., 0]
    return (jnp.where(resolve, entity, ids), jnp.where(resolve, best, choice),
            jnp.where(resolve, confidence, score), pending & ~resolve, passes + 1)

  _, choice, score, _, _ = jax.lax.while_loop(unfinished, one_pass, state)
  return choice, score


def _has_candidates(candidate_ids: jax.Array, entity_attention_mask: jax.Array) -> jax.Array:
  return (entity_attention_mask > 0) & jnp.any(candidate_ids > 0, axis=-1)


def run(model: Callable, batch, *, inference_mode: str, mask_id: int, pad_id: int
        ) -> dict[str, jax.Array]:
  """`{"choice", "score"}` for a batch of rows (`luke_jax.disambiguation.features`).

  Args:
    model: `model(inputs).logits` [B, E, C], the head's forward on the batch's input arrays.
    batch: the rows' `entity_candidate_ids`, `entity_attention_mask` and the other inputs.
    inference_mode: "global" or "local".
    mask_id, pad_id: the entity vocabulary's `[MASK]` and `[PAD]`.
  """
  if inference_mode not in INFERENCE_MODES:
    raise ValueError(f"inference mode {inference_mode!r} not in {INFERENCE_MODES}")
  forward = lambda entity_ids: model({**batch, "entity_ids": entity_ids}).logits
  decoder = global_ if inference_mode == "global" else local
  choice, score = decoder(forward, batch["entity_candidate_ids"], batch["entity_attention_mask"],
                          mask_id=mask_id, pad_id=pad_id)
  return {"choice": choice, "score": score}
