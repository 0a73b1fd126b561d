"""The pretraining optimiser: schedule, Adam variants, decay and trainable masks, frozen leaves."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from luke_jax.models import registry
from luke_jax.models.config import preset
from luke_jax.training import optim


def _paths(tree):
  return {optim.path_str(p): v for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def _params(seed=0):
  """Random `LukeForMaskedLM` tiny parameters, built with numpy (no init compile)."""
  rng = np.random.RandomState(seed)
  abstract = registry.abstract_params("LukeForMaskedLM", preset("tiny"))
  return jax.tree.map(lambda a: jnp.asarray(rng.randn(*a.shape), a.dtype), abstract)


def test_schedule():
  sched = optim.make_schedule(1e-3, warmup_steps=10, total_steps=110)
  for step, want in [(0, 0.0), (5, 5e-4), (10, 1e-3), (60, 5e-4), (110, 0.0), (200, 0.0)]:
    np.testing.assert_allclose(float(sched(step)), want, rtol=1e-6, atol=1e-12)
  np.testing.assert_allclose(float(optim.make_schedule(2.0, 0, 4)(1)), 1.5)
  with pytest.raises(ValueError):
    optim.make_schedule(1.0, 10, 5)


def _torch_adamw(params, grads, lr, wd, steps):
  import torch
  ps = [torch.nn.Parameter(torch.tensor(p)) for p in params]
  opt = torch.optim.AdamW(ps, lr=lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=wd)
  for t in range(steps):
    for p, g in zip(ps, grads[t]):
      p.grad = torch.tensor(g)
    opt.step()
  return [p.detach().numpy() for p in ps]


def _numpy_adamw_no_correction(params, grads, lr, wd, steps, b1=0.9, b2=0.999, eps=1e-6):
  """HF `AdamW(correct_bias=False)` / DeepSpeed `bias_correction=false`, decay on the old p."""
  params = [p.astype(np.float64) for p in params]
  m = [np.zeros_like(p) for p in params]
  v = [np.zeros_like(p) for p in params]
  for t in range(steps):
    for i, g in enumerate(grads[t]):
      m[i] = b1 * m[i] + (1 - b1) * g
      v[i] = b2 * v[i] + (1 - b2) * g * g
      params[i] = params[i] - lr * (m[i] / (np.sqrt(v[i]) + eps) + wd * params[i])
  return params


@pytest.mark.parametrize("bias_correction", [True, False])
def test_adamw_matches_reference(bias_correction):
  rng = np.random.RandomState(0)
  params = [rng.randn(3, 4).astype(np.float32), rng.randn(5).astype(np.float32)]
  grads = [[rng.randn(*p.shape).astype(np.float32) for p in params] for _ in range(5)]
  lr, wd = 1e-2, 0.1
  adam = (optim.scale_by_adam(0.9, 0.999, 1e-6, bias_correction=True) if bias_correction
          else optim.scale_by_adam_no_bias_correction(0.9, 0.999, 1e-6))
  tx = optax.chain(adam, optax.add_decayed_weights(wd), optax.scale(-lr))
  state = tx.init([jnp.asarray(p) for p in params])
  got = [jnp.asarray(p) for p in params]
  update = jax.jit(tx.update)
  for t in range(5):
    updates, state = update([jnp.asarray(g) for g in grads[t]], state, got)
    got = optax.apply_updates(got, updates)
  if bias_correction:
    want = _torch_adamw(params, grads, lr, wd, 5)
  else:
    want = _numpy_adamw_no_correction(params, grads, lr, wd, 5)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_decay_mask():
  mask = _paths(optim.decay_mask(_params()))
  assert mask["lm_head/layer_norm/scale"]  # decayed, as the reference's lm_head.layer_norm.weight
  assert not mask["lm_head/layer_norm/bias"]
  assert not mask["lm_head/bias"] and not mask["entity_predictions/bias"]
  assert not mask["entity_predictions/transform_LayerNorm/scale"]
  assert not mask["luke/embeddings/LayerNorm/scale"]
  assert not mask["luke/encoder/layer_0/output_LayerNorm/scale"]
  assert not mask["luke/encoder/layer_1/attention_output_LayerNorm/bias"]
  assert not mask["luke/encoder/layer_0/attention_self/query/bias"]
  assert mask["luke/encoder/layer_0/attention_self/query/kernel"]
  assert mask["luke/embeddings/word_embeddings/embedding"]
  assert mask["luke/entity_embeddings/entity_embeddings/embedding"]
  assert mask["entity_predictions/transform_dense/kernel"]
  for name, decays in mask.items():
    assert decays == (not name.endswith("bias") and "LayerNorm" not in name), name


def test_trainable_mask_stage1():
  mask = _paths(optim.trainable_mask(_params(), optim.STAGE1_TRAINABLE))
  trainable = {k for k, v in mask.items() if v}
  assert trainable == {k for k in mask
                       if k.startswith(("luke/entity_embeddings/", "entity_predictions/"))}
  assert "luke/entity_embeddings/entity_embeddings/embedding" in trainable
  assert "luke/entity_embeddings/LayerNorm/scale" in trainable
  assert "entity_predictions/bias" in trainable
  assert all(mask[k] for k in mask if k.startswith("entity_predictions/"))


def test_unmatched_rule_raises():
  with pytest.raises(ValueError, match="parameter .lm_head/bias."):
    optim.trainable_mask(_params(), [(r"luke/.*", True), (r"entity_predictions/.*", True)])
  cfg = ml_collections.ConfigDict(dict(learning_rate=1e-3, warmup_steps=1, total_steps=10,
                                       trainable=[["entity_predictions/.*", True]]))
  with pytest.raises(ValueError, match="matches no trainable rule"):
    optim.make_optimizer(cfg, _params())


@pytest.mark.parametrize("stage", [1, 2])
def test_frozen_leaves_unchanged_and_stateless(stage):
  params = _params()
  cfg = ml_collections.ConfigDict(dict(
      learning_rate=1e-2, warmup_steps=1, total_steps=10, b1=0.9, b2=0.999, eps=1e-6,
      weight_decay=0.01, bias_correction=False, max_grad_norm=1.0,
      trainable=[list(r) for r in (optim.STAGE1_TRAINABLE if stage == 1
                                   else optim.ALL_TRAINABLE)]))
  tx = optim.make_optimizer(cfg, params)
  state = tx.init(params)
  rng = np.random.RandomState(1)

  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  new = params
  for _ in range(3):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.randn(*p.shape), p.dtype), params)
    new, state = step(new, state, grads)

  rules = (optim.STAGE1_TRAINABLE if stage == 1 else optim.ALL_TRAINABLE)
  mask = _paths(optim.trainable_mask(params, (optim.POOLER_FROZEN,) + tuple(rules)))
  before, after = _paths(params), _paths(new)
  for name, trains in mask.items():
    if trains:
      assert not np.array_equal(before[name], after[name]), name
    else:
      assert np.array_equal(before[name], after[name]), name  # bitwise
  assert not mask["luke/pooler/dense/kernel"]  # frozen in both stages
  # Moments only for trainable leaves: mu and nu, one array per trainable parameter, plus
  # scalar step counts.
  n_trainable = sum(mask.values())
  arrays = [x for x in jax.tree.leaves(state) if getattr(x, "ndim", 0) > 0]
  assert len(arrays) == 2 * n_trainable
  assert sum(x.size for x in arrays) == 2 * sum(
      before[k].size for k, t in mask.items() if t)
  if stage == 1:
    assert n_trainable < len(mask) // 3


def test_make_optimizer_matches_numpy_reference():
  """Schedule, uncorrected Adam and masked decoupled decay together, on a small tree."""
  rng = np.random.RandomState(2)
  params = {"dense": {"kernel": rng.randn(3, 2), "bias": rng.randn(2)},
            "LayerNorm": {"scale": rng.randn(2)}}
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  cfg = dict(learning_rate=0.1, warmup_steps=2, total_steps=6, weight_decay=0.5)
  tx = optim.make_optimizer(ml_collections.ConfigDict(cfg), params)
  state, got = tx.init(params), params
  sched = optim.make_schedule(0.1, 2, 6)
  names = ["dense/kernel", "dense/bias", "LayerNorm/scale"]
  want = [np.asarray(_paths(params)[n], np.float64) for n in names]
  m = [np.zeros_like(w) for w in want]
  v = [np.zeros_like(w) for w in want]
  for t in range(4):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.randn(*p.shape), jnp.float32), params)
    updates, state = tx.update(grads, state, got)
    got = optax.apply_updates(got, updates)
    lr = float(sched(t))
    for i, n in enumerate(names):
      g = np.asarray(_paths(grads)[n], np.float64)
      m[i] = 0.9 * m[i] + 0.1 * g
      v[i] = 0.999 * v[i] + 0.001 * g * g
      wd = 0.5 if n == "dense/kernel" else 0.0
      want[i] = want[i] - lr * (m[i] / (np.sqrt(v[i]) + 1e-6) + wd * want[i])
  for i, n in enumerate(names):
    np.testing.assert_allclose(_paths(got)[n], want[i], rtol=0, atol=1e-6, err_msg=n)
