"""The train step's memory grows with the entity table, not with `[masked, vocabulary]` logits.

`bench/entity_memory.py` at tiny scale: the real pretraining step compiled (not run) for
`jax.ShapeDtypeStruct` inputs at two entity vocabulary sizes, read through XLA's
`memory_analysis()`.
Also: the optimiser's global-norm clipping, rewritten so the clipped gradient is not a second
table, still clips as optax does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from luke_jax.models.config import preset
from luke_jax.training import optim

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fast_compiles():
  # Halves the compile time; XLA:CPU's buffer sizes came out identical with and without.
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)


def load_bench():
  spec = importlib.util.spec_from_file_location("entity_memory",
                                                REPO / "bench" / "entity_memory.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_entity_vocabulary_costs_its_table_not_logits():
  bench = load_bench()
  # A table far larger than the step's activations, so that no table-sized temporary can hide in
  # their slack (at 40K entities a second one did).
  emb, small, large = 16, 2_000, 1_000_000
  batch = bench.abstract_batch(batch_size=16, seq=32, entities=16, mention=4, masked_words=8,
                               masked_entities=16)
  masked = 16 * 16
  memory = {}
  for vocab in (small, large):
    config = preset("tiny", vocab_size=100, entity_vocab_size=vocab, entity_emb_size=emb,
                    max_position_embeddings=34, use_entity_aware_attention=False)
    try:
      memory[vocab] = bench.step_memory(config, batch, entity_chunk_size=1024)
    except RuntimeError as e:  # a backend without memory analysis
      pytest.skip(str(e))
  tables = (large - small) * emb * 4  # one float32 table-sized buffer of the difference
  logits = (large - small) * masked * 4  # what [N, V] float32 logits would add: 16 tables
  temp = memory[large]["temp"] - memory[small]["temp"]
  arguments = memory[large]["arguments"] - memory[small]["arguments"]
  # The table's gradient, and the table and its gradient in the chunked softmax's strided
  # layout (the price of scanning chunks as the loop's input, which keeps a sharded table
  # sharded and the backward free of a table-sized gradient per chunk): measured on XLA:CPU
  # 3.05 tables. One more when the clipped gradient was materialised as a second table
  # (optax.clip_by_global_norm).
  assert temp <= 3.5 * tables < logits / 4, (temp / tables, tables, logits)
  # Parameter and Adam's two moments, plus the bias's (measured: 3.19 tables).
  assert 2.5 * tables <= arguments <= 3.5 * tables, (arguments / tables, tables)


@pytest.mark.parametrize("scale", [0.5, 4.0])  # the global norm below and above max_norm
def test_clip_by_global_norm_matches_optax(scale):
  rng = np.random.RandomState(0)
  grads = {"a": rng.randn(40, 8), "b": {"c": rng.randn(7)}}
  total = np.sqrt(sum(np.sum(x ** 2) for x in jax.tree.leaves(grads)))
  grads = jax.tree.map(lambda x: jnp.asarray(x * scale / total, jnp.float32), grads)
  max_norm = 1.0
  got, _ = optim.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
  want, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
  norm = float(optax.tree.norm(grads))
  assert (norm < max_norm) == (scale < 1), norm
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    if norm < max_norm:
      np.testing.assert_array_equal(g, w)  # unclipped: the gradient itself, bitwise
    else:
      np.testing.assert_allclose(g, w, rtol=1e-6, atol=0)  # last-bit rounding at most
  assert abs(float(optax.tree.norm(got)) - min(norm, max_norm)) < 1e-6
