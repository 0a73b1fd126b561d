"""Chunked tied-decoder cross entropy and the masked-only pretraining model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from luke_jax.models import heads, registry
from luke_jax.models.config import preset
from luke_jax.models import losses
from luke_jax.pretraining import model as pretrain_model


def _full_ce(features, table, bias, labels, weights):
  """Plain full-softmax reference: (sum w*CE, sum w*[argmax == label], sum w)."""
  logits = jnp.einsum("nd,vd->nv", features, table, precision=jax.lax.Precision.HIGHEST) + bias
  per = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, labels[:, None], -1)[:, 0]
  correct = jnp.sum(jnp.where(jnp.argmax(logits, -1) == labels, weights, 0.0))
  return jnp.sum(per * weights), correct, jnp.sum(weights)


def _problem(n, v, d, seed=0):
  rng = np.random.RandomState(seed)
  features = jnp.asarray(rng.randn(n, d), jnp.float32)
  table = jnp.asarray(rng.randn(v, d) * 0.5, jnp.float32)
  bias = jnp.asarray(rng.randn(v), jnp.float32)
  labels = jnp.asarray(rng.randint(0, v, n), jnp.int32)
  weights = jnp.asarray(rng.rand(n) > 0.3, jnp.float32)
  return features, table, bias, labels, weights


# V a multiple of the chunk, not a multiple (overlapping last chunk), and chunk > V.
@pytest.mark.parametrize("v,chunk", [(64, 16), (61, 16), (37, 64)])
def test_chunked_equals_full_softmax(v, chunk):
  features, table, bias, labels, weights = _problem(13, v, 8)
  # Make some predictions right, so the correct count is not trivially 0.
  labels = labels.at[:4].set(jnp.argmax(features[:4] @ table.T + bias, -1))
  got = jax.jit(losses.chunked_softmax_cross_entropy, static_argnums=5)(
      features, table, bias, labels, weights, chunk)
  want = _full_ce(features, table, bias, labels, weights)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
  assert float(got[1]) == float(want[1]) and float(want[1]) >= 1
  assert float(got[2]) == float(want[2])

  loss = lambda f, t, b, fn: fn(f, t, b, labels, weights)[0]
  chunked = lambda f, t, b, l, w: losses.chunked_softmax_cross_entropy(f, t, b, l, w, chunk)
  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
  g_got = grad(features, table, bias, chunked)
  g_want = grad(features, table, bias, _full_ce)
  for a, b in zip(g_got, g_want):
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_ties_and_zero_weights():
  # Equal logits everywhere: argmax is the first column (as jnp.argmax), in either chunking.
  features = jnp.zeros((3, 4), jnp.float32)
  table = jnp.ones((10, 4), jnp.float32)
  bias = jnp.zeros((10,), jnp.float32)
  labels = jnp.asarray([0, 5, 0], jnp.int32)
  weights = jnp.asarray([1.0, 1.0, 0.0])
  loss, correct, total = losses.chunked_softmax_cross_entropy(
      features, table, bias, labels, weights, 3)
  np.testing.assert_allclose(loss, 2 * np.log(10), rtol=1e-6)
  assert float(correct) == 1.0 and float(total) == 2.0


def test_backward_memory_is_chunk_sized():
  n, v, d, chunk = 512, 200_000, 32, 4096
  features, table, bias, labels, weights = (
      jax.ShapeDtypeStruct((n, d), jnp.float32), jax.ShapeDtypeStruct((v, d), jnp.float32),
      jax.ShapeDtypeStruct((v,), jnp.float32), jax.ShapeDtypeStruct((n,), jnp.int32),
      jax.ShapeDtypeStruct((n,), jnp.float32))

  def loss(f, t, b, l, w):
    return losses.chunked_softmax_cross_entropy(f, t, b, l, w, chunk)[0]

  compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(
      features, table, bias, labels, weights).compile()
  analysis = compiled.memory_analysis()
  if analysis is None or not hasattr(analysis, "temp_size_in_bytes"):
    pytest.skip("compiled memory_analysis() is not available on this backend")
  full_logits = n * v * 4  # 410 MB
  # The strided chunk layout costs a few table-sized buffers (the padded table in chunk order,
  # its gradient: V*D*4 = 26 MB each; about 78 MB measured on XLA:CPU), never the logits.
  table = v * d * 4
  assert analysis.temp_size_in_bytes < min(full_logits // 4, 4 * table), (
      analysis.temp_size_in_bytes, full_logits)


def test_pretraining_tree_equals_masked_lm():
  for cfg in (preset("tiny"), preset("tiny", tie_word_decoder=False, scan_layers=True)):
    batch = _masked_batch(cfg)
    got = jax.eval_shape(
        lambda r: pretrain_model.LukePretrainingModel(cfg).init(r, batch)["params"],
        jax.random.PRNGKey(0))
    want = registry.abstract_params("LukeForMaskedLM", cfg, boxed=True)
    # Tree structure includes the logical axis names of every `LogicallyPartitioned` box.
    assert jax.tree.structure(got) == jax.tree.structure(want)
    same = jax.tree.map(lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype), got, want)
    assert all(jax.tree.leaves(same))


# One layer: the parity being tested is in the heads and gathers; compile time dominates here.
def _tiny(**overrides):
  return preset("tiny", num_hidden_layers=1, **overrides)


def _random_params(cfg, seed=0, tie=True):
  """Random parameters of `LukeForMaskedLM`'s shapes, built with numpy (no init compile)."""
  rng = np.random.RandomState(seed)
  abstract = registry.abstract_params("LukeForMaskedLM", cfg.replace(tie_word_decoder=tie))

  def fill(path, leaf):
    name = "/".join(str(k.key) for k in path)
    base = 1.0 if name.endswith("scale") else 0.0
    return jnp.asarray(base + 0.1 * rng.randn(*leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def _masked_batch(cfg, batch=3, words=12, entities=5, mention=3, masked_words=4,
                  masked_entities=3, seed=0):
  rng = np.random.RandomState(seed)
  input_ids = rng.randint(3, cfg.vocab_size, (batch, words))
  input_ids[:, 0] = 0
  input_ids[1, -4:] = cfg.pad_token_id
  attention_mask = (input_ids != cfg.pad_token_id).astype(np.int32)
  entity_ids = rng.randint(1, cfg.entity_vocab_size, (batch, entities))
  entity_attention_mask = np.ones((batch, entities), np.int32)
  entity_attention_mask[2, -2:] = 0
  entity_ids[2, -2:] = 0
  entity_position_ids = rng.randint(1, words - 4, (batch, entities, mention))
  entity_position_ids[:, :, -1] = -1
  entity_position_ids[2, -2:] = -1
  mlm_positions = np.stack([rng.choice(np.arange(1, words - 4), masked_words, replace=False)
                            for _ in range(batch)])
  mlm_weights = np.ones((batch, masked_words), np.int32)
  mlm_weights[0, -1] = 0
  mlm_positions[0, -1] = 0
  mep_positions = np.stack([rng.choice(np.arange(3), masked_entities, replace=False)
                            for _ in range(batch)])
  mep_weights = np.ones((batch, masked_entities), np.int32)
  mep_weights[1, -2:] = 0
  mep_positions[1, -2:] = 0
  out = dict(input_ids=input_ids, attention_mask=attention_mask, entity_ids=entity_ids,
             entity_attention_mask=entity_attention_mask, entity_position_ids=entity_position_ids,
             mlm_positions=mlm_positions,
             mlm_labels=rng.randint(0, cfg.vocab_size, (batch, masked_words)) * mlm_weights,
             mlm_weights=mlm_weights, mep_positions=mep_positions,
             mep_labels=rng.randint(0, cfg.entity_vocab_size, (batch, masked_entities))
             * mep_weights, mep_weights=mep_weights)
  return {k: jnp.asarray(v, jnp.int32) for k, v in out.items()}


def _reference_sums(cfg, params, batch):
  """`LukeForMaskedLM` full logits, gathered at the masked slots."""
  out = heads.LukeForMaskedLM(cfg).apply(
      {"params": params}, batch["input_ids"], batch["attention_mask"],
      entity_ids=batch["entity_ids"], entity_attention_mask=batch["entity_attention_mask"],
      entity_position_ids=batch["entity_position_ids"])
  sums = {}
  for prefix, logits, pos in (("mlm", out.logits, "mlm_positions"),
                              ("mep", out.entity_logits, "mep_positions")):
    picked = jnp.take_along_axis(logits, batch[pos][..., None], axis=1)
    picked = picked.reshape(-1, logits.shape[-1]).astype(jnp.float32)
    labels = batch[f"{prefix}_labels"].reshape(-1)
    w = batch[f"{prefix}_weights"].reshape(-1).astype(jnp.float32)
    per = (jax.nn.logsumexp(picked, -1)
           - jnp.take_along_axis(picked, labels[:, None], -1)[:, 0])
    sums[f"{prefix}_loss_sum"] = jnp.sum(per * w)
    sums[f"{prefix}_correct"] = jnp.sum(jnp.where(jnp.argmax(picked, -1) == labels, w, 0.0))
    sums[f"{prefix}_weight"] = jnp.sum(w)
  return sums


@pytest.mark.parametrize("tie", [True, False])
def test_pretraining_losses_equal_masked_lm(tie):
  cfg = _tiny(tie_word_decoder=tie, use_entity_aware_attention=False)
  params = _random_params(cfg, seed=1, tie=tie)
  batch = _masked_batch(cfg)
  want = jax.jit(lambda p, b: _reference_sums(cfg, p, b))(params, batch)
  got = jax.jit(lambda p, b: pretrain_model.LukePretrainingModel(cfg).apply(
      {"params": p}, b, entity_chunk_size=24, word_chunk_size=48))(params, batch)
  assert set(got) == set(pretrain_model.METRIC_KEYS)
  for key in pretrain_model.METRIC_KEYS:
    assert got[key].dtype == jnp.float32 and got[key].shape == ()
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5, err_msg=key)
  assert float(got["mlm_weight"]) == 11 and float(got["mep_weight"]) == 7


@pytest.mark.slow
def test_pretraining_model_gradients_and_dropout():
  cfg = _tiny(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
  params = _random_params(cfg, seed=2)
  batch = _masked_batch(cfg, seed=3)
  module = pretrain_model.LukePretrainingModel(cfg)

  def loss(p, rng):
    m = module.apply({"params": p}, batch, deterministic=False, rngs={"dropout": rng},
                     entity_chunk_size=16, word_chunk_size=32)
    return m["mlm_loss_sum"] / m["mlm_weight"] + m["mep_loss_sum"] / m["mep_weight"]

  grads = jax.jit(jax.grad(loss))(params, jax.random.PRNGKey(0))
  norms = {"/".join(str(k.key) for k in path): float(jnp.linalg.norm(g))
           for path, g in jax.tree_util.tree_leaves_with_path(grads)}
  assert all(np.isfinite(v) for v in norms.values())
  # The tied tables get gradient from both the inputs and the decoders; the pooler gets none.
  assert norms["luke/entity_embeddings/entity_embeddings/embedding"] > 0
  assert norms["entity_predictions/bias"] > 0 and norms["lm_head/bias"] > 0
  assert norms["luke/pooler/dense/kernel"] == 0


@pytest.mark.slow
def test_bfloat16_compute_gives_float32_metrics():
  cfg = _tiny(dtype="bfloat16")
  params = _random_params(cfg)
  batch = _masked_batch(cfg)
  got = jax.jit(lambda p, b: pretrain_model.LukePretrainingModel(cfg).apply({"params": p}, b))(
      params, batch)
  want = jax.jit(lambda p, b: _reference_sums(cfg.replace(dtype="float32"), p, b))(params, batch)
  for key in pretrain_model.METRIC_KEYS:
    assert got[key].dtype == jnp.float32
  np.testing.assert_allclose(got["mlm_loss_sum"], want["mlm_loss_sum"], rtol=2e-2)
  np.testing.assert_allclose(got["mep_loss_sum"], want["mep_loss_sum"], rtol=2e-2)
