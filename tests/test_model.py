"""Module-level properties: axis annotations, scan == loop, dtypes, dropout, remat, sharding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from luke_jax import sharding
from luke_jax.models import attention, layout, registry
from luke_jax.models.config import preset
from conftest import make_inputs

LOGICAL_AXES = {"vocab", "entity_vocab", "embed", "entity_embed", "heads", "kv", "mlp", "layers",
                None}
CFG = preset("tiny", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
             id2label=((0, "a"), (1, "b"), (2, "c")))


def _inputs(arch="LukeForMaskedLM"):
  cfg = dict(vocab_size=CFG.vocab_size, entity_vocab_size=CFG.entity_vocab_size,
             type_vocab_size=1, num_labels=3)
  return {k: jnp.asarray(v) for k, v in make_inputs(arch, cfg).items()}


@pytest.mark.parametrize("scan", [False, True])
@pytest.mark.parametrize("arch", sorted(registry.ARCHITECTURES))
def test_every_parameter_has_logical_axes(arch, scan):
  boxed = registry.abstract_params(arch, CFG.replace(scan_layers=scan), boxed=True)
  leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  for leaf in leaves:
    assert isinstance(leaf, nn.LogicallyPartitioned), leaf
    assert set(leaf.names) <= LOGICAL_AXES, leaf.names
    assert len(leaf.names) == len(leaf.value.shape)
  if scan:
    assert any(leaf.names[0] == "layers" for leaf in leaves)


@pytest.mark.slow
def test_scan_equals_loop():
  params = registry.init_params("LukeForMaskedLM", CFG, jax.random.PRNGKey(0))
  loop_model = registry.build("LukeForMaskedLM", CFG)
  scan_model = registry.build("LukeForMaskedLM", CFG.replace(scan_layers=True))
  scanned = layout.loop_to_scan(params)
  inputs = _inputs()
  run = lambda model, p: jax.jit(lambda p: model.apply(
      {"params": p}, **inputs, output_hidden_states=True, output_attentions=True))(p)
  a, b = run(loop_model, params), run(scan_model, scanned)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, atol=1e-6)
  back = layout.scan_to_loop(scanned)
  assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), params, back))


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_params_and_statistics():
  cfg = CFG.replace(dtype="bfloat16")
  params = registry.init_params("LukeForMaskedLM", cfg, jax.random.PRNGKey(0))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  inputs = _inputs()
  run = lambda c: jax.jit(lambda p: registry.build("LukeForMaskedLM", c).apply(
      {"params": p}, **inputs, output_attentions=True))(params)
  out16, out32 = run(cfg), run(CFG)
  assert out16.logits.dtype == jnp.bfloat16
  assert out16.attentions[0].dtype == jnp.float32  # softmax runs in float32
  np.testing.assert_allclose(np.asarray(out16.logits, np.float32), out32.logits, atol=0.1)


@pytest.mark.slow
def test_dropout_is_active_only_when_not_deterministic():
  model = registry.build("LukeModel", CFG)
  params = registry.init_params("LukeModel", CFG, jax.random.PRNGKey(0))
  inputs = _inputs("LukeModel")
  apply = jax.jit(lambda p, rng, det: model.apply({"params": p}, **inputs, deterministic=det,
                                                  rngs={"dropout": rng}), static_argnums=2)
  eval_a = apply(params, jax.random.PRNGKey(1), True).last_hidden_state
  eval_b = apply(params, jax.random.PRNGKey(2), True).last_hidden_state
  train_a = apply(params, jax.random.PRNGKey(1), False).last_hidden_state
  train_b = apply(params, jax.random.PRNGKey(2), False).last_hidden_state
  np.testing.assert_array_equal(eval_a, eval_b)
  assert not np.allclose(train_a, train_b)
  assert not np.allclose(train_a, eval_a)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["minimal", "full"])
def test_remat_changes_memory_not_numbers(policy):
  params = registry.init_params("LukeForMaskedLM", CFG, jax.random.PRNGKey(0))
  inputs = _inputs()

  def grads(cfg):
    model = registry.build("LukeForMaskedLM", cfg)
    loss = lambda p: jnp.mean(model.apply({"params": layout.to_layout(p, cfg.scan_layers)},
                                          **inputs).logits ** 2)
    return jax.jit(jax.grad(loss))(params)

  base = grads(CFG)
  for cfg in (CFG.replace(remat_policy=policy), CFG.replace(remat_policy=policy,
                                                            scan_layers=True)):
    got = grads(cfg)
    for x, y in zip(jax.tree.leaves(base), jax.tree.leaves(got)):
      np.testing.assert_allclose(x, y, atol=1e-6)


def test_entity_aware_attention_with_equal_queries_is_plain_attention():
  rng = np.random.RandomState(0)
  batch, words, entities, heads, dim = 2, 5, 3, 2, 4
  q = jnp.asarray(rng.randn(batch, words + entities, heads, dim), jnp.float32)
  k = jnp.asarray(rng.randn(batch, words + entities, heads, dim), jnp.float32)
  v = jnp.asarray(rng.randn(batch, words + entities, heads, dim), jnp.float32)
  mask = np.ones((batch, words + entities))
  mask[1, -1] = 0
  bias = attention.attention_bias(jnp.asarray(mask))
  plain, plain_p = attention.entity_aware_attention(q, k, v, bias, words)
  split = dict(w2w=q[:, :words], w2e=q[:, :words], e2w=q[:, words:], e2e=q[:, words:])
  aware, aware_p = attention.entity_aware_attention(split, k, v, bias, words)
  np.testing.assert_allclose(plain, aware, atol=1e-6)
  np.testing.assert_allclose(plain_p, aware_p, atol=1e-7)
  # A masked key receives no probability mass.
  assert float(jnp.max(aware_p[1, :, :, -1])) == 0.0
  # Different entity queries change only the entity rows.
  split2 = dict(split, e2e=split["e2e"] + 1.0)
  other, _ = attention.entity_aware_attention(split2, k, v, bias, words)
  np.testing.assert_allclose(other[:, :words], aware[:, :words], atol=1e-6)
  assert not np.allclose(other[:, words:], aware[:, words:])


@pytest.mark.slow
def test_sharded_init_and_forward_on_8_devices():
  """Parameters initialise straight into their shardings and give the unsharded numbers."""
  assert jax.device_count() == 8, "conftest forces 8 CPU devices"
  mesh = sharding.create_mesh([("data", 2), ("fsdp", 2), ("tensor", -1)])
  cfg = CFG.replace(scan_layers=True)
  arch = "LukeForMaskedLM"
  boxed = registry.abstract_params(arch, cfg, boxed=True)
  shardings = sharding.param_shardings(boxed, mesh)
  init = jax.jit(lambda rng: registry.init_params(arch, cfg, rng), out_shardings=shardings)
  params = init(jax.random.PRNGKey(0))
  table = params["luke"]["entity_embeddings"]["entity_embeddings"]["embedding"]
  assert table.sharding.spec == jax.sharding.PartitionSpec(("fsdp", "tensor"), None)
  query = params["luke"]["encoder"]["scan"]["layer"]["attention_self"]["query"]["kernel"]
  assert query.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
  model = registry.build(arch, cfg)
  inputs = _inputs()
  with jax.set_mesh(mesh), nn.logical_axis_rules(list(sharding.DEFAULT_RULES)):
    sharded_out = jax.jit(lambda p: model.apply({"params": p}, **inputs).logits)(params)
  reference = registry.init_params(arch, cfg, jax.random.PRNGKey(0))
  plain_out = jax.jit(lambda p: model.apply({"params": p}, **inputs).logits)(reference)
  np.testing.assert_allclose(sharded_out, plain_out, atol=1e-5)


def test_outputs_read_by_name_as_transformers():
  """`out["logits"]`, `out.logits`, `out[0]` and `"logits" in out`, as with transformers'
  ModelOutput; fields the model does not produce are left out of the mapping view."""
  config = preset("tiny", vocab_size=50, entity_vocab_size=20, max_position_embeddings=20)
  inputs = dict(input_ids=np.ones((1, 4), np.int32), entity_ids=np.ones((1, 1), np.int32),
                entity_position_ids=np.zeros((1, 1, 2), np.int32))
  for arch, first in (("LukeModel", "last_hidden_state"),
                      ("LukeForEntityClassification", "logits")):
    module = registry.build(arch, config)
    params = registry.init_params(arch, config, jax.random.PRNGKey(0))
    out = jax.jit(lambda p, x: module.apply({"params": p}, **x))(params, inputs)
    assert out[first] is getattr(out, first) and out[0] is getattr(out, first)
    assert first in out and "loss" not in out and out.keys()[0] == first
    assert dict(out.items())[first] is getattr(out, first)
    with pytest.raises(KeyError, match="'loss': not an output"):
      out["loss"]
