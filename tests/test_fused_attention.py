"""Fused attention equals the four-block reference; the pretraining step compiles once."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from luke_jax import sharding
from luke_jax.models import attention, registry
from luke_jax.models.config import preset
from luke_jax.pretraining import model as pretraining_model
from luke_jax.training import optim, state as state_lib, steps

BATCH, WORDS, ENTITIES, HEADS, DIM = 3, 7, 4, 2, 8
TOLERANCE = {jnp.float32: 1e-5, jnp.bfloat16: 2e-2}


@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
  # Tiny shapes: XLA's optimisation passes cost more than they save (as in test_train.py).
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)


def _inputs(entities: int, dtype, seed: int = 0):
  """Random queries/keys/values and a key mask with padding in words and entities; batch row 2
  has every key masked."""
  rng = np.random.RandomState(seed)
  rand = lambda n: jnp.asarray(rng.randn(BATCH, n, HEADS, DIM), dtype)
  queries = dict(w2w=rand(WORDS), w2e=rand(WORDS), e2w=rand(entities), e2e=rand(entities))
  key, value = rand(WORDS + entities), rand(WORDS + entities)
  mask = np.ones((BATCH, WORDS + entities), np.int32)
  mask[0, WORDS - 2:WORDS] = 0  # padded words
  if entities:
    mask[1, WORDS + entities - 2:] = 0  # padded entities
  mask[2] = 0  # an all-masked row
  return queries, key, value, jnp.asarray(mask)


def _reference(queries, key, value, mask):
  context, _ = attention.entity_aware_attention(queries, key, value,
                                                attention.attention_bias(mask), WORDS)
  return context


def _fused(implementation):
  def run(queries, key, value, mask):
    context, _ = attention.fused_attention(queries, key, value, mask, WORDS,
                                           implementation=implementation)
    return context
  return run


def _loss(fn, cotangent):
  return lambda q, k, v, mask: jnp.sum(jnp.asarray(fn(q, k, v, mask), jnp.float32) * cotangent)


def _close(got, want, tol, what):
  got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
  scale = max(1.0, float(np.max(np.abs(want))))
  np.testing.assert_allclose(got, want, atol=tol * scale, rtol=0, err_msg=what)


# "explicit" is the CPU path; "xla" sends the doubled heads cuDNN would get through
# jax.nn.dot_product_attention, so the doubled-head arithmetic is checked without a GPU.
@pytest.mark.parametrize("implementation", ["explicit", "xla"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("kind", ["entity_aware", "entity_aware_no_entities", "plain"])
def test_fused_matches_unfused_forward_and_gradients(implementation, dtype, kind):
  entities = 0 if kind == "entity_aware_no_entities" else ENTITIES
  queries, key, value, mask = _inputs(entities, dtype)
  if kind == "plain":
    queries = jnp.concatenate([queries["w2w"], queries["e2w"]], axis=1)
  elif not entities:
    queries = queries["w2w"]  # what the module passes when a call has no entities
  tol = TOLERANCE[dtype]
  want = _reference(queries, key, value, mask)
  got = jax.jit(_fused(implementation))(queries, key, value, mask)
  assert got.shape == want.shape and got.dtype == want.dtype
  _close(got, want, tol, "context")
  cotangent = jnp.asarray(np.random.RandomState(1).randn(*want.shape), jnp.float32)
  grad = lambda fn: jax.jit(jax.grad(_loss(fn, cotangent), argnums=(0, 1, 2)))(
      queries, key, value, mask)
  for (path, got_grad), want_grad in zip(
      jax.tree_util.tree_leaves_with_path(grad(_fused(implementation))),
      jax.tree.leaves(grad(_reference)), strict=True):
    _close(got_grad, want_grad, tol, f"gradient {jax.tree_util.keystr(path)}")


def test_all_masked_row_is_uniform_and_probabilities_match():
  queries, key, value, mask = _inputs(ENTITIES, jnp.float32)
  _, want = attention.entity_aware_attention(queries, key, value,
                                             attention.attention_bias(mask), WORDS)
  context, probs = attention.fused_attention(queries, key, value, mask, WORDS, return_probs=True)
  _close(probs, want, 1e-6, "probabilities")
  np.testing.assert_allclose(probs[2], 1.0 / (WORDS + ENTITIES), rtol=1e-6)
  assert float(jnp.max(probs[0, :, :, WORDS - 2:WORDS])) == 0.0  # padded keys get nothing
  assert np.all(np.isfinite(context))


def test_dropout_draws_the_same_mask_in_both_paths():
  queries, key, value, mask = _inputs(ENTITIES, jnp.float32)
  kw = dict(dropout_rate=0.3, dropout_rng=jax.random.PRNGKey(3), deterministic=False)
  want, _ = attention.entity_aware_attention(queries, key, value,
                                             attention.attention_bias(mask), WORDS, **kw)
  got, _ = attention.fused_attention(queries, key, value, mask, WORDS, **kw)
  _close(got, want, 1e-5, "context with dropout")
  with pytest.raises(ValueError, match="no dropout"):
    attention.fused_attention(queries, key, value, mask, WORDS, implementation="xla", **kw)


def test_doubled_heads_reproduce_every_block():
  queries, key, value, _ = _inputs(ENTITIES, jnp.float32)
  q2, k2, v2 = attention.doubled_heads(queries, key, value, WORDS)
  assert q2.shape == k2.shape == v2.shape == (BATCH, WORDS + ENTITIES, HEADS, 2 * DIM)
  scores = jnp.einsum("bqhd,bkhd->bhqk", q2, k2, precision="highest")
  block = lambda q, k: jnp.einsum("bqhd,bkhd->bhqk", q, k, precision="highest")
  _close(scores[:, :, :WORDS, :WORDS], block(queries["w2w"], key[:, :WORDS]), 1e-6, "w2w")
  _close(scores[:, :, :WORDS, WORDS:], block(queries["w2e"], key[:, WORDS:]), 1e-6, "w2e")
  _close(scores[:, :, WORDS:, :WORDS], block(queries["e2w"], key[:, :WORDS]), 1e-6, "e2w")
  _close(scores[:, :, WORDS:, WORDS:], block(queries["e2e"], key[:, WORDS:]), 1e-6, "e2e")


@pytest.mark.slow
@pytest.mark.parametrize("eaa", [True, False])
def test_model_outputs_do_not_depend_on_attention_impl(eaa):
  """Whole model, eval and train mode (same dropout draws), with and without entities."""
  cfg = preset("tiny", use_entity_aware_attention=eaa, hidden_dropout_prob=0.1,
               attention_probs_dropout_prob=0.1)
  params = registry.init_params("LukeModel", cfg, jax.random.PRNGKey(0))
  rng = np.random.RandomState(0)
  inputs = dict(input_ids=jnp.asarray(rng.randint(3, cfg.vocab_size, (2, 9))),
                attention_mask=jnp.asarray([[1] * 9, [1] * 6 + [0] * 3]),
                entity_ids=jnp.asarray(rng.randint(1, cfg.entity_vocab_size, (2, 3))),
                entity_position_ids=jnp.asarray(rng.randint(1, 6, (2, 3, 2))),
                entity_attention_mask=jnp.asarray([[1, 1, 1], [1, 0, 0]]))
  words_only = {k: v for k, v in inputs.items() if not k.startswith("entity")}

  cases = {"eval": (inputs, True), "train": (inputs, False), "words only": (words_only, True)}

  def run(impl):
    model = registry.build("LukeModel", cfg.replace(attention_impl=impl))

    def outputs(p):  # every case in one jitted function: one compile per implementation
      result = {}
      for name, (batch, deterministic) in cases.items():
        out = model.apply({"params": p}, **batch, deterministic=deterministic,
                          rngs={"dropout": jax.random.PRNGKey(5)})
        result[name] = [x for x in (out.last_hidden_state, out.entity_last_hidden_state)
                        if x is not None]
      return result
    return jax.jit(outputs)(params)

  fused, unfused = run("fused"), run("unfused")
  for name in cases:
    for got, want in zip(fused[name], unfused[name], strict=True):
      _close(got, want, 1e-5, name)


def test_attention_impl_is_validated():
  with pytest.raises(ValueError, match="attention_impl"):
    preset("tiny", attention_impl="flash")
  queries, key, value, mask = _inputs(ENTITIES, jnp.float32)
  with pytest.raises(ValueError, match="unknown attention implementation"):
    attention.fused_attention(queries, key, value, mask, WORDS, implementation="flash")


@pytest.mark.slow
def test_pretraining_step_traces_once(monkeypatch):
  """Three steps on different batches of one shape: one trace, so no recompilation."""
  cfg = preset("tiny", use_entity_aware_attention=False)
  mesh = sharding.create_mesh([("data", 1), ("fsdp", 1), ("tensor", 1)], jax.devices()[:1])
  objective = pretraining_model.PretrainingObjective(pretraining_model.LukePretrainingModel(cfg))
  boxed = registry.abstract_params("LukeForMaskedLM", cfg, boxed=True)
  tx = optim.make_optimizer(dict(learning_rate=1e-3, warmup_steps=1, total_steps=10),
                            nn.unbox(boxed))
  abstract = state_lib.abstract_state(boxed, tx)
  shardings = state_lib.state_shardings(boxed, abstract.opt_state, mesh, sharding.DEFAULT_RULES)
  counted = chex.assert_max_traces(steps.train_step, n=1)
  monkeypatch.setattr(steps, "train_step", counted)
  with jax.set_mesh(mesh):
    state = state_lib.create_state(
        lambda: registry.init_params("LukeForMaskedLM", cfg, jax.random.PRNGKey(0)), tx,
        shardings, jax.random.PRNGKey(1))
    train_step = steps.make_train_step(objective, tx, 1, shardings,
                                       sharding.batch_sharding(mesh))
    losses = []
    for seed in range(3):
      state, metrics = train_step(state, _batch(cfg, seed))
      losses.append(float(metrics["loss"]))
  assert int(state.step) == 3 and np.all(np.isfinite(losses))
  chex.clear_trace_counter()


def _batch(cfg, seed, batch=2, words=8, entities=3, masked_words=2, masked_entities=1):
  rng = np.random.RandomState(seed)
  ints = lambda high, *shape: jnp.asarray(rng.randint(0, high, shape), jnp.int32)
  return dict(
      input_ids=ints(cfg.vocab_size, batch, words),
      attention_mask=jnp.ones((batch, words), jnp.int32),
      entity_ids=ints(cfg.entity_vocab_size, batch, entities),
      entity_attention_mask=jnp.ones((batch, entities), jnp.int32),
      entity_position_ids=ints(words, batch, entities, 2),
      mlm_positions=ints(words, batch, masked_words),
      mlm_labels=ints(cfg.vocab_size, batch, masked_words),
      mlm_weights=jnp.ones((batch, masked_words), jnp.int32),
      mep_positions=ints(entities, batch, masked_entities),
      mep_labels=ints(cfg.entity_vocab_size, batch, masked_entities),
      mep_weights=jnp.ones((batch, masked_entities), jnp.int32))
