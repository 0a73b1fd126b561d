"""Local and global entity disambiguation decoding against a plain loop of the reference's.

The reference (studio-ousia/luke `examples/entity_disambiguation/evaluate.py`) decodes one
document window at a time: the full-vocabulary logits with non-candidates at -1e32, a softmax,
probabilities zeroed at mentions already resolved, the most probable mention resolved and its
entity written into the input, `entity_length` times. `reference_global` is that loop in numpy.
"""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ed_fixtures import random_rows
from luke_jax.disambiguation import decode
from luke_jax.models import registry
from luke_jax.models.config import preset

PAD, MASK = 0, 2
VOCAB, ENTITY_VOCAB = 40, 30


def _softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def reference_global(full_logits, candidates: np.ndarray, n: int):
  """The reference's global loop for one window of `n` mentions.

  Args:
    full_logits: entity ids [n] -> logits [n, entity vocabulary].
    candidates: [n, C] candidate ids (0 = none).

  Returns:
    (candidate index, probability) per mention with candidates; None for the others.
  """
  ids = np.full(n, MASK)
  out = [None] * n
  allowed = np.zeros((n, ENTITY_VOCAB), bool)
  for e in range(n):
    allowed[e, candidates[e][candidates[e] != 0]] = True
  for _ in range(n):
    logits = np.where(allowed, np.asarray(full_logits(ids), np.float64), -1e32)
    probs = _softmax(logits) * (ids == MASK)[:, None]
    best, best_p = probs.argmax(1), probs.max(1)
    target = int(best_p.argmax())
    ids[target] = best[target]
    if candidates[target].sum():
      out[target] = (int(np.flatnonzero(candidates[target] == best[target])[0]),
                     float(best_p[target]))
  return out


def _check_against_reference(choice, score, rows, full_logits_of_row):
  for b in range(len(choice)):
    n = int(rows["entity_attention_mask"][b].sum())
    expected = reference_global(functools.partial(full_logits_of_row, b),
                                rows["entity_candidate_ids"][b, :n], n)
    for e in range(choice.shape[1]):
      if e < n and expected[e] is not None:
        assert choice[b, e] == expected[e][0], (b, e)
        assert score[b, e] == pytest.approx(expected[e][1], abs=1e-5)
      else:
        assert choice[b, e] == -1 and score[b, e] == 0.0


# ---- a stand-in model: each mention's scores depend on the other mentions' input ids --------


def _stand_in(seed=0):
  """`vocab_logits(entity_ids [B, E]) -> [B, E, V]`: a slot's scores read the mean embedding of
  the row's other entities, so feeding a choice back changes the others' scores."""
  rng = np.random.default_rng(seed)
  table = jnp.asarray(rng.normal(size=(ENTITY_VOCAB, 8)), jnp.float32)
  out = jnp.asarray(rng.normal(size=(8, ENTITY_VOCAB)) * 3, jnp.float32)
  local = jnp.asarray(rng.normal(size=(6, ENTITY_VOCAB)), jnp.float32)

  def vocab_logits(entity_ids, mask):
    emb = table[entity_ids] * mask[..., None]                     # [B, E, 8]
    others = (emb.sum(1, keepdims=True) - emb) / jnp.maximum(mask.sum(1)[:, None, None], 1)
    slot = local[jnp.arange(entity_ids.shape[1]) % 6]             # [E, V]
    return others @ out + slot[None]
  return vocab_logits


def test_global_equals_reference_loop_on_a_stand_in():
  rows = random_rows(np.random.default_rng(1), batch=6, words=12, entities=5, candidates=4,
                     vocab=VOCAB, entity_vocab=ENTITY_VOCAB)
  mask = jnp.asarray(rows["entity_attention_mask"])
  cands = jnp.asarray(rows["entity_candidate_ids"])
  vocab_logits = _stand_in()
  forward = lambda ids: jnp.take_along_axis(vocab_logits(ids, mask), cands, axis=-1)
  run = jax.jit(lambda: decode.global_(forward, cands, mask, mask_id=MASK, pad_id=PAD))
  choice, score = map(np.asarray, run())

  def full(b, ids):
    n = len(ids)
    padded = np.full((1, mask.shape[1]), PAD)
    padded[0, :n] = ids
    return np.asarray(vocab_logits(jnp.asarray(padded), mask[b:b + 1]))[0, :n]

  _check_against_reference(choice, score, rows, full)
  # Feeding back matters here: local decoding disagrees somewhere.
  local_choice, local_score = decode.local(forward, cands, mask, mask_id=MASK, pad_id=PAD)
  assert (np.asarray(local_choice) != choice).any()
  # Local: the argmax of the first pass, probability over the candidates only.
  probs = decode.candidate_probabilities(forward(decode.initial_entity_ids(mask, MASK, PAD)),
                                         cands)
  has = (np.asarray(cands) > 0).any(-1) & (np.asarray(mask) > 0)
  np.testing.assert_array_equal(local_choice, np.where(has, np.argmax(probs, -1), -1))
  np.testing.assert_allclose(local_score, np.where(has, np.max(probs, -1), 0.0), rtol=1e-6)


def test_rows_are_independent_and_passes_bounded():
  rows = random_rows(np.random.default_rng(2), batch=5, words=12, entities=6, candidates=3,
                     vocab=VOCAB, entity_vocab=ENTITY_VOCAB)
  vocab_logits = _stand_in(3)
  passes = []

  def run(r):
    mask = jnp.asarray(rows["entity_attention_mask"][r])
    cands = jnp.asarray(rows["entity_candidate_ids"][r])

    def forward(ids):
      passes.append(1)  # traced once: the loop body is one program
      return jnp.take_along_axis(vocab_logits(ids, mask), cands, axis=-1)
    return [np.asarray(x) for x in jax.jit(
        lambda: decode.global_(forward, cands, mask, mask_id=MASK, pad_id=PAD))()]

  together = run(slice(None))
  for b in range(5):
    alone = run(slice(b, b + 1))
    np.testing.assert_array_equal(alone[0][0], together[0][b])
    np.testing.assert_allclose(alone[1][0], together[1][b], rtol=1e-6)
  assert len(passes) == 6
  # Mentions with no candidate and padding: never chosen.
  no_cands = ~(rows["entity_candidate_ids"] > 0).any(-1)
  assert (together[0][no_cands] == -1).all() and (together[1][no_cands] == 0).all()
  assert (together[0][~no_cands] >= 0).all()


# ---- the real model --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
  config = preset("tiny", vocab_size=VOCAB, entity_vocab_size=ENTITY_VOCAB,
                  max_position_embeddings=40, use_entity_aware_attention=False)
  module = registry.build("LukeForEntityDisambiguation", config)
  params = registry.init_params("LukeForEntityDisambiguation", config, jax.random.PRNGKey(4))
  # At initialisation the scores are near-uniform and the other mentions barely reach a
  # mention's state; larger entity rows and encoder kernels make the order of resolution, and
  # what is fed back, change the answers.
  flat = flax.traverse_util.flatten_dict(params, sep="/")
  for key, value in flat.items():
    if key.endswith("entity_embeddings/entity_embeddings/embedding"):
      flat[key] = value * 30
    elif key.startswith("luke/encoder/") and key.endswith("kernel"):
      flat[key] = value * 20
  return module, flax.traverse_util.unflatten_dict(flat, sep="/")


@pytest.mark.parametrize("mode", ["global", "local"])
def test_decode_run_on_the_model_equals_reference(tiny_model, mode):
  module, params = tiny_model
  rows = random_rows(np.random.default_rng(5), batch=6, words=10, entities=5, candidates=4,
                     vocab=VOCAB, entity_vocab=ENTITY_VOCAB)
  model = lambda p, inputs: module.apply({"params": p}, **inputs, deterministic=True)
  run = jax.jit(lambda p, b, mode: decode.run(functools.partial(model, p), b,
                                              inference_mode=mode, mask_id=MASK, pad_id=PAD),
                static_argnums=2)
  out = run(params, rows, mode)
  choice, score = np.asarray(out["choice"]), np.asarray(out["score"])
  other = np.asarray(run(params, rows, "local" if mode == "global" else "global")["choice"])
  jitted = jax.jit(model)  # one program per window length
  assert (other != choice).sum() >= 2  # what is fed back matters for this model

  def full(b, ids):
    """The reference's forward: this row alone, trimmed to its mentions, every entity scored."""
    n = len(ids)
    one = {k: v[b:b + 1] for k, v in rows.items() if k != "entity_candidate_ids"}
    one.update(entity_ids=np.asarray(ids)[None], entity_attention_mask=np.ones((1, n), np.int32),
               entity_position_ids=rows["entity_position_ids"][b:b + 1, :n])
    return np.asarray(jitted(params, one).logits)[0]

  if mode == "global":
    _check_against_reference(choice, score, rows, full)
  else:
    for b in range(6):
      n = int(rows["entity_attention_mask"][b].sum())
      logits = full(b, np.full(n, MASK))
      for e in range(n):
        c = rows["entity_candidate_ids"][b, e]
        if c.any():
          # The reference: argmax of the masked vocabulary logits, then its candidate index.
          best = int(np.argmax(np.where(np.isin(np.arange(ENTITY_VOCAB), c[c > 0]),
                                        logits[e], -1e32)))
          assert choice[b, e] == int(np.flatnonzero(c == best)[0])
        else:
          assert choice[b, e] == -1
  with pytest.raises(ValueError, match="inference mode"):
    decode.run(None, rows, inference_mode="both", mask_id=MASK, pad_id=PAD)
