"""Cross entropy against a tied output table, computed in vocabulary chunks.

The LUKE entity head scores every masked entity against the whole entity table (500K rows for
LUKE, 1.2M for mLUKE). Materialising `[masked, vocabulary]` logits (and keeping them for the
backward pass) is the largest activation of a pretraining step (performance.md section 6), so
the softmax statistics are accumulated over vocabulary chunks instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def chunked_softmax_cross_entropy(
    features: Array, table: Array, bias: Array, labels: Array, weights: Array,
    chunk_size: int, *, precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST,
) -> tuple[Array, Array, Array]:
  """Weighted softmax cross entropy of `features @ table.T + bias`, one vocabulary chunk at a time.

  A `jax.lax.scan` walks the vocabulary in chunks of `chunk_size` rows, carrying a running
  (max, sum of exps) for the log-sum-exp, the label logit and the running argmax. The chunk body
  is wrapped in `jax.checkpoint`, so the backward pass recomputes a chunk's logits instead of
  saving them: peak activation memory is O(N * chunk_size), not O(N * V).

  The table is sliced in place with `dynamic_slice` rather than padded to a multiple of the chunk
  (a padded copy would cost another table-sized buffer, and its gradient one more): when V is not
  a multiple of the chunk the last chunk starts at `V - chunk_size` and its columns already seen
  by the previous chunk are masked to -inf, which is the same as padding with -inf bias.

  Args:
    features: `[N, D]` transformed hidden states (any float dtype; the matmul runs in it and
      accumulates in float32).
    table: `[V, D]` output table (the tied embedding table).
    bias: `[V]` output bias.
    labels: `[N]` int label ids in `[0, V)`.
    weights: `[N]` per-position weights (0 for padding slots).
    chunk_size: vocabulary rows per chunk; clipped to V.
    precision: matmul precision (HIGHEST, as the model heads, keeps float32 parity on GPU).

  Returns:
    `(loss_sum, correct_sum, weight_sum)`, float32 scalars: `sum(w * CE)`, `sum(w * [argmax ==
    label])` and `sum(w)`. Sums (not means) so gradient accumulation and cross-host averaging are
    exact: divide the summed loss by the summed weight at the end.
  """
  num_rows, _ = features.shape
  vocab = table.shape[0]
  if bias.shape != (vocab,):
    raise ValueError(f"bias shape {bias.shape} does not match table {table.shape}")
  chunk = int(min(chunk_size, vocab))
  if chunk <= 0:
    raise ValueError(f"chunk_size must be positive, got {chunk_size}")
  num_chunks = -(-vocab // chunk)
  compute_dtype = features.dtype
  labels = labels.astype(jnp.int32)
  weights = weights.astype(jnp.float32)
  cols = jnp.arange(chunk, dtype=jnp.int32)

  @jax.checkpoint
  def body(carry, c):
    run_max, run_sum, label_logit, best, best_idx = carry
    first = c * chunk                      # first column this chunk is responsible for
    start = jnp.minimum(first, vocab - chunk)  # last chunk overlaps the previous one
    rows = jax.lax.dynamic_slice_in_dim(table, start, chunk, axis=0)
    b = jax.lax.dynamic_slice_in_dim(bias, start, chunk, axis=0)
    logits = jnp.einsum("nd,cd->nc", features, rows.astype(compute_dtype),
                        precision=precision, preferred_element_type=jnp.float32)
    logits = logits + b.astype(jnp.float32)
    col_ids = start + cols
    logits = jnp.where((col_ids >= first)[None, :], logits, -jnp.inf)
    # Online log-sum-exp; the max is a stabiliser only (LSE does not depend on it), so its
    # gradient path through argmax is cut.
    chunk_max = jax.lax.stop_gradient(jnp.max(logits, axis=-1))
    new_max = jnp.maximum(run_max, chunk_max)
    run_sum = (run_sum * jnp.exp(run_max - new_max)
               + jnp.sum(jnp.exp(logits - new_max[:, None]), axis=-1))
    local = labels - start
    in_chunk = (labels >= first) & (labels < start + chunk)
    picked = jnp.take_along_axis(logits, jnp.clip(local, 0, chunk - 1)[:, None], axis=-1)[:, 0]
    label_logit = label_logit + jnp.where(in_chunk, picked, 0.0)
    # Strictly greater keeps the first maximum, as `jnp.argmax` over the full row does.
    arg = jnp.argmax(logits, axis=-1).astype(jnp.int32) + start
    better = chunk_max > best
    best = jnp.where(better, chunk_max, best)
    best_idx = jnp.where(better, arg, best_idx)
    return (new_max, run_sum, label_logit, best, best_idx), None

  init = (jnp.full((num_rows,), -jnp.inf, jnp.float32), jnp.zeros((num_rows,), jnp.float32),
          jnp.zeros((num_rows,), jnp.float32), jnp.full((num_rows,), -jnp.inf, jnp.float32),
          jnp.zeros((num_rows,), jnp.int32))
  (run_max, run_sum, label_logit, _, best_idx), _ = jax.lax.scan(
      body, init, jnp.arange(num_chunks, dtype=jnp.int32))
  lse = run_max + jnp.log(run_sum)
  per_row = lse - label_logit
  loss_sum = jnp.sum(jnp.where(weights != 0, per_row * weights, 0.0))
  correct = jnp.sum(jnp.where(best_idx == labels, weights, 0.0))
  return loss_sum, correct, jnp.sum(weights)
