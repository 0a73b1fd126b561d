"""Ahead-of-time TPU compilation (`python -m luke_jax.aot`), its HLO cost model, and the TPU
numerics it checks for (precision that follows the dtype, the splash-attention kernel).

The compile tests need libtpu (the `tpu` extra; `make test` installs it) and are skipped with
the reason otherwise; the rest run anywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from luke_jax.aot import hlo_cost, search, topology
from luke_jax.models import attention, matmul

ROOT = Path(__file__).resolve().parents[1]
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
needs_libtpu = pytest.mark.skipif(not HAS_LIBTPU, reason="libtpu is not installed "
                                  "(pip install -e '.[tpu]'): no TPU compiler to run")
ROW_KEYS = {"topology", "chips", "mesh", "fits", "hbm_params_opt_bytes", "hbm_batch_bytes",
            "hbm_temp_bytes", "hbm_total_bytes", "hbm_capacity_bytes", "compiled_flops",
            "model_flops", "est_step_seconds", "est_tokens_per_s", "est_mfu", "compile_seconds"}


# ---- topology names --------------------------------------------------------------------------


@pytest.mark.parametrize("name, chips, grid", [
    ("v5p-64", 32, "2x4x4"), ("v4-128", 64, "4x4x4"), ("v4-8", 4, "2x2x1"),
    ("v5e-256", 256, "16x16"), ("v5litepod-8", 8, "2x4"), ("v6e-64", 64, "8x8"),
    ("v5p:4x4x4", 64, "4x4x4"), ("v5e:2x2", 4, "2x2"), ("V5P-16", 8, "2x2x2")])
def test_topology_names_count_cores_or_chips(name, chips, grid):
  t = topology.parse(name)
  assert (t.chips, t.grid) == (chips, grid)
  assert t.libtpu_name == f"{t.chip.generation}:{grid}"


@pytest.mark.parametrize("name, words", [
    ("v5p-63", "even"), ("v7-8", "unknown TPU generation"), ("v5e-3", "no v5e slice"),
    ("tpu", "Cloud TPU name"), ("v5e:2x2x1", "2D")])
def test_bad_topology_names_say_what_to_use(name, words):
  with pytest.raises(ValueError, match=words):
    topology.parse(name)


def test_chip_capacities_are_the_published_ones():
  gib = topology.GIB
  assert {k: c.hbm_bytes // gib for k, c in topology.CHIPS.items()} == {
      "v4": 32, "v5e": 16, "v5p": 95, "v6e": 32}


def test_search_meshes_split_chips_and_batch():
  meshes = search.meshes(chips=64, batch_size=2048, grad_accum=1, heads=16)
  assert meshes and all(d * f * t == 64 for d, f, t in meshes)
  assert (1, 64, 1) in meshes and any(t > 1 for _, _, t in meshes)
  # 48 rows split over 8 chips: every mesh keeps 48 divisible by its data x fsdp.
  assert all(48 % (d * f) == 0 for d, f, _ in search.meshes(8, 48, 1, 16))
  # 4 rows on 8 chips: only meshes with tensor parallelism leave data x fsdp dividing 4.
  assert search.meshes(8, 4, 1, 16) == [(1, 4, 2), (4, 1, 2), (1, 2, 4), (2, 1, 4)]


@pytest.mark.parametrize("task", ["conll2003", "squad", "open_entity", "tacred", "record"])
def test_every_finetuning_task_builds_its_steps_without_data(task):
  """Shapes come from featurizing zero examples; no checkpoint, no data files."""
  from luke_jax.aot import jobs
  config = _load_config(ROOT / "configs" / "finetune" / f"{task}.py")
  job = jobs.build(config, jax.devices()[:1], "tiny")
  train, evaluation = job.steps
  batch = train.args[1]
  assert batch["input_ids"].shape == (config.train.batch_size, config.data.max_seq_length)
  assert evaluation.args[1]["input_ids"].shape[1] == config.data.max_seq_length
  assert train.model_flops > 0 and train.state_bytes > 0


def _load_config(path: Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# ---- the HLO cost model ----------------------------------------------------------------------


def test_cost_model_counts_loop_bodies_by_trip_count():
  """A scan of 5 matmuls: the compiler's own count sees one body, ours all five."""
  def f(x, w):
    def body(h, wi):
      return jnp.tanh(h @ wi), None
    return jax.lax.scan(body, x, w)[0]

  x = jax.ShapeDtypeStruct((64, 128), jnp.float32)
  w = jax.ShapeDtypeStruct((5, 128, 128), jnp.float32)
  compiled = jax.jit(f).lower(x, w).compile()
  cost = hlo_cost.analyse(compiled.as_text(), 1e12, 1e11, 1e10)
  assert cost.unknown_trip_counts == 0
  assert cost.flops == pytest.approx(5 * 2 * 64 * 128 * 128, rel=0.01)
  # Each trip reads one slice of the stacked weights, not the whole stack.
  stack = 5 * 128 * 128 * 4
  assert all(k.bytes < stack for k in cost.kernels), [(k.name, k.bytes) for k in cost.kernels]
  assert cost.compute_seconds > 0


def test_cost_model_counts_convolutions_by_real_taps():
  """XLA's TPU backend writes the dense projection [4, 144, 32] x [32, 2 heads, 16] as this
  convolution (taken from a compiled step): its window of 2 runs over a padded axis of 1, so
  each output position has one real tap, and the FLOPs are the dense layer's."""
  text = """HloModule m

ENTRY %main (a: bf16[4,144,32,1], b: bf16[32,2,16,1]) -> bf16[4,144,2,16] {
  %a = bf16[4,144,32,1]{1,2,3,0:T(8,128)(2,1)} parameter(0)
  %b = bf16[32,2,16,1]{0,2,1,3:T(8,128)(2,1)} parameter(1)
  ROOT %c = bf16[4,144,2,16]{1,3,2,0:T(8,128)(2,1)} convolution(%a, %b),
      window={size=1x2 pad=0_0x1_1 rhs_reversal=0x1}, dim_labels=0bf1_i1o0->0b1f
}
"""
  cost = hlo_cost.analyse(text, 1e12, 1e11, 1e10)
  assert cost.flops == 2 * (4 * 144) * 32 * (2 * 16)
  assert cost.bytes == 2 * (4 * 144 * 32 + 32 * 2 * 16 + 4 * 144 * 2 * 16)


def test_cost_model_flags_float32_highest_dots():
  def f(a, b):
    return jnp.einsum("ij,jk->ik", a, b, precision=jax.lax.Precision.HIGHEST)

  def flagged(dtype):
    spec = jax.ShapeDtypeStruct((16, 16), dtype)
    text = jax.jit(f).lower(spec, spec).compile().as_text()
    return hlo_cost.analyse(text, 1e12, 1e11, 1e10).f32_highest_dots

  # (A bf16 case cannot be checked here: XLA:CPU upcasts bf16 dots to float32. The TPU compile
  # tests below assert that a bf16 step has none.)
  assert flagged(jnp.float32) == ["ij,jk->ik/dot_general"]


# ---- precision follows the dtype -------------------------------------------------------------


def _dot_operand_dtypes(jaxpr) -> set[tuple[str, str]]:
  out = set()
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      out.add(tuple(str(v.aval.dtype) for v in eqn.invars))
    for sub in jax.core.subjaxprs(eqn.params) if hasattr(jax.core, "subjaxprs") else []:
      out |= _dot_operand_dtypes(sub)
    for value in eqn.params.values():
      inner = getattr(value, "jaxpr", None)
      if inner is not None and hasattr(inner, "eqns"):
        out |= _dot_operand_dtypes(inner)
      elif hasattr(value, "eqns"):
        out |= _dot_operand_dtypes(value)
  return out


def test_einsum_f32_backward_stays_in_bf16():
  rng = np.random.RandomState(0)
  a = jnp.asarray(rng.randn(4, 8, 2, 16), jnp.bfloat16)
  b = jnp.asarray(rng.randn(4, 6, 2, 16), jnp.bfloat16)
  loss = lambda a, b: jnp.sum(jax.nn.softmax(matmul.einsum_f32("bqhd,bkhd->bhqk", a, b)) ** 2)
  out = matmul.einsum_f32("bqhd,bkhd->bhqk", a, b)
  assert out.dtype == jnp.float32
  dtypes = _dot_operand_dtypes(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(a, b).jaxpr)
  assert dtypes and all(d == ("bfloat16", "bfloat16") for d in dtypes), dtypes
  ga, gb = jax.grad(loss, argnums=(0, 1))(a, b)
  assert ga.dtype == gb.dtype == jnp.bfloat16
  # Same gradients as plain autodiff, to bf16 rounding.
  plain = lambda a, b: jnp.sum(jax.nn.softmax(jnp.einsum(
      "bqhd,bkhd->bhqk", a.astype(jnp.float32), b.astype(jnp.float32))) ** 2)
  ra, rb = jax.grad(plain, argnums=(0, 1))(a, b)
  np.testing.assert_allclose(np.float32(ga), np.float32(ra), rtol=0.05, atol=2e-3)
  np.testing.assert_allclose(np.float32(gb), np.float32(rb), rtol=0.05, atol=2e-3)


def test_float32_keeps_highest_and_plain_autodiff():
  assert matmul.precision(jnp.float32) == jax.lax.Precision.HIGHEST
  assert matmul.precision(jnp.bfloat16) == jax.lax.Precision.DEFAULT
  rng = np.random.RandomState(1)
  a, b = (jnp.asarray(rng.randn(3, 5), jnp.float32), jnp.asarray(rng.randn(4, 5), jnp.float32))
  f = lambda a, b: jnp.sum(jnp.sin(matmul.einsum_f32("nd,cd->nc", a, b)))
  g = lambda a, b: jnp.sum(jnp.sin(jnp.einsum("nd,cd->nc", a, b, precision="highest")))
  for x, y in zip(jax.grad(f, (0, 1))(a, b), jax.grad(g, (0, 1))(a, b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---- the splash kernel, in the Pallas interpreter ------------------------------------------


@pytest.mark.parametrize("entity_aware", [True, False])
def test_splash_attention_matches_the_reference(entity_aware):
  rng = np.random.RandomState(0)
  batch, words, entities, heads, dim = 2, 20, 5, 2, 8
  length = words + entities
  rand = lambda *s: jnp.asarray(rng.randn(*s).astype(np.float32))
  if entity_aware:
    queries = {k: rand(batch, words if k[0] == "w" else entities, heads, dim)
               for k in ("w2w", "w2e", "e2w", "e2e")}
  else:
    queries = rand(batch, length, heads, dim)
  key, value = rand(batch, length, heads, dim), rand(batch, length, heads, dim)
  mask = np.ones((batch, length), np.int32)
  mask[1, 15:words] = 0
  mask[1, words + 3:] = 0
  mask = jnp.asarray(mask)

  def reference(key, value):
    return attention.entity_aware_attention(queries, key, value, attention.attention_bias(mask),
                                            words)[0]

  def kernel(key, value):
    return attention.fused_attention(queries, key, value, mask, words,
                                     implementation="splash")[0]

  np.testing.assert_allclose(kernel(key, value), reference(key, value), atol=1e-5, rtol=1e-5)
  loss = lambda f: lambda k, v: jnp.sum(jnp.sin(f(k, v)))
  for got, want in zip(jax.grad(loss(kernel), (0, 1))(key, value),
                       jax.grad(loss(reference), (0, 1))(key, value)):
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_luke_model_with_splash_matches_fused():
  from luke_jax.models.config import preset
  from luke_jax.models.luke import LukeModel
  rng = np.random.RandomState(2)
  ids = jnp.asarray(rng.randint(3, 128, (2, 10)), jnp.int32)
  mask = jnp.asarray([[1] * 10, [1] * 7 + [0] * 3], jnp.int32)
  entity_ids = jnp.asarray([[5, 6, 0], [7, 0, 0]], jnp.int32)
  positions = jnp.asarray([[[1, 2], [3, -1], [-1, -1]], [[4, 5], [-1, -1], [-1, -1]]], jnp.int32)
  entity_mask = jnp.asarray([[1, 1, 0], [1, 0, 0]], jnp.int32)
  inputs = dict(input_ids=ids, attention_mask=mask, entity_ids=entity_ids,
                entity_position_ids=positions, entity_attention_mask=entity_mask,
                output_attentions=False)
  fused = LukeModel(preset("tiny"))
  params = fused.init(jax.random.PRNGKey(0), **inputs)
  want = fused.apply(params, **inputs)
  got = LukeModel(preset("tiny", attention_impl="splash")).apply(params, **inputs)
  # Padded positions carry no meaning; compare the real tokens.
  real, real_e = np.asarray(mask, bool), np.asarray(entity_mask, bool)
  np.testing.assert_allclose(np.asarray(got.last_hidden_state)[real],
                             np.asarray(want.last_hidden_state)[real], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(got.entity_last_hidden_state)[real_e],
                             np.asarray(want.entity_last_hidden_state)[real_e],
                             atol=1e-5, rtol=1e-5)


def test_splash_refuses_attention_dropout():
  from luke_jax.models.config import preset
  from luke_jax.models.luke import LukeModel
  cfg = preset("tiny", attention_impl="splash")
  ids = jnp.ones((1, 6), jnp.int32)
  model = LukeModel(cfg)
  params = model.init(jax.random.PRNGKey(0), ids, output_attentions=False)
  with pytest.raises(ValueError, match="attention_probs_dropout_prob"):
    model.apply(params, ids, deterministic=False, output_attentions=False,
                rngs={"dropout": jax.random.PRNGKey(1)})


# ---- compiling real configs for TPU slices ---------------------------------------------------


def _aot(tmp_path, *args) -> tuple[subprocess.CompletedProcess, list[dict]]:
  out = tmp_path / "rows.json"
  proc = subprocess.run(
      [sys.executable, "-m", "luke_jax.aot", f"--json={out}", *args], cwd=ROOT,
      capture_output=True, text=True, timeout=900,
      env={**os.environ, "JAX_PLATFORMS": "cpu", "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"})
  rows = json.loads(out.read_text()) if out.exists() else []
  return proc, rows


def _check_tpu_step(row):
  assert ROW_KEYS <= set(row)
  assert row["fits"] and 0 < row["hbm_total_bytes"] <= row["hbm_capacity_bytes"]
  assert row["f32_highest_dots"] == 0, "a bf16 step must not run float32 HIGHEST matmuls"
  assert row["host_transfers"] == 0 and row["unknown_trip_counts"] == 0
  # Remat, the tiny heads and the optimizer cost something beyond the model's count; a cost
  # model off by a loop trip count or a window size would be several times off.
  assert 0.6 < row["compiled_flops"] / row["model_flops"] < 2.5
  assert 0 < row["est_mfu"] <= 1 and row["est_step_seconds"] > 0


@needs_libtpu
def test_tiny_pretraining_compiles_for_v5e_and_fits(tmp_path):
  proc, rows = _aot(tmp_path, "--config=configs/pretrain_tiny.py", "--topology=v5e:2x2",
                    "--config.model.dtype=bfloat16", "--config.model.scan_layers=True",
                    "--config.model.remat_policy=minimal", "--config.mesh=(('data', 2), "
                    "('fsdp', 2), ('tensor', 1))")
  assert proc.returncode == 0, proc.stderr[-2000:]
  (row,) = rows
  assert (row["topology"], row["chips"], row["mesh"], row["step"]) == (
      "v5e:2x2", 4, "data2xfsdp2xtensor1", "train")
  _check_tpu_step(row)
  assert row["entity_table_all_gathers"] == 0
  assert "est. MFU" in proc.stdout and "Estimates, not measurements" in proc.stdout


@needs_libtpu
def test_tiny_finetuning_compiles_train_and_eval_for_v4(tmp_path):
  proc, rows = _aot(tmp_path, "--config=configs/finetune/conll2003.py", "--topology=v4:2x2x1",
                    "--preset=tiny", "--config.model.dtype=bfloat16",
                    "--config.data.max_seq_length=32", "--config.data.max_entity_length=8",
                    "--config.data.max_mention_length=4", "--config.train.eval_batch_size=8")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert [(r["step"], r["chips"]) for r in rows] == [("train", 4), ("eval", 4)]
  for row in rows:
    _check_tpu_step(row)


@needs_libtpu
@pytest.mark.slow
def test_splash_compiles_for_tpu(tmp_path):
  # 112 words + 16 entities: one 128-row block, so the kernel does no padded work.
  proc, rows = _aot(tmp_path, "--config=configs/pretrain_tiny.py", "--topology=v5e:2x2",
                    "--config.model.dtype=bfloat16", "--config.model.attention_impl=splash",
                    "--config.model.attention_probs_dropout_prob=0.0",
                    "--config.data.max_seq_length=112")
  assert proc.returncode == 0, proc.stderr[-2000:]
  _check_tpu_step(rows[0])


@needs_libtpu
@pytest.mark.slow
def test_a_job_that_does_not_fit_exits_1_naming_what_to_change(tmp_path):
  # 100M x 16 entities: the table and its Adam moments, replicated on each chip, are 18 GiB.
  proc, rows = _aot(tmp_path, "--config=configs/pretrain_tiny.py", "--topology=v5e:2x2",
                    "--config.model.entity_vocab_size=100000000")
  assert proc.returncode == 1
  assert rows and not rows[0]["fits"]
  message = proc.stderr
  assert "does not fit" in message and "grad_accum_steps" in message and "fsdp" in message
  assert "remat_policy" in message


def test_bad_topology_exits_2(tmp_path):
  proc, rows = _aot(tmp_path, "--config=configs/pretrain_tiny.py", "--topology=v5p-63")
  assert proc.returncode == 2 and not rows
  assert "--topology='v5p-63'" in proc.stderr
