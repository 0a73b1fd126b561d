"""Every loss of luke-jax, computed in float32.

Two conventions: the heads' `loss` outputs follow PyTorch's reductions (means, as
transformers' LUKE), and what training differentiates are sums with their weights
(`*_sums`, `chunked_softmax_cross_entropy`), so gradient accumulation and averaging over hosts
divide once, exactly, at the end.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from luke_jax.models import matmul

Array = jax.Array


def cross_entropy(logits: Array, labels: Array, ignore_index: int = -100) -> Array:
  """Mean CE over labels != ignore_index (torch `CrossEntropyLoss` default)."""
  logits = jnp.asarray(logits, jnp.float32)
  labels = jnp.asarray(labels)
  valid = labels != ignore_index
  per = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, labels, 0))
  per = jnp.where(valid, per, 0.0)
  return jnp.sum(per) / jnp.sum(valid)


def binary_cross_entropy(logits: Array, labels: Array) -> Array:
  """Mean BCE-with-logits over every element."""
  logits = jnp.asarray(logits, jnp.float32).reshape(-1)
  labels = jnp.asarray(labels, jnp.float32).reshape(-1)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))


def classification_loss(logits: Array, labels: Array | None) -> Array | None:
  """HF entity heads: integer labels `[batch]` -> CE, multi-hot `[batch, labels]` -> BCE."""
  if labels is None:
    return None
  return cross_entropy(logits, labels) if labels.ndim == 1 else binary_cross_entropy(logits, labels)


def sequence_classification_loss(logits: Array, labels: Array, problem_type: str | None) -> Array:
  """`LukeForSequenceClassification`'s problem-type switch."""
  num_labels = logits.shape[-1]
  if problem_type is None:
    if num_labels == 1:
      problem_type = "regression"
    elif jnp.issubdtype(labels.dtype, jnp.integer):
      problem_type = "single_label_classification"
    else:
      problem_type = "multi_label_classification"
  if problem_type == "regression":
    logits = jnp.asarray(logits, jnp.float32)
    labels = jnp.asarray(labels, jnp.float32)
    if num_labels == 1:
      logits, labels = jnp.squeeze(logits), jnp.squeeze(labels)
    return jnp.mean(jnp.square(logits - labels))
  if problem_type == "single_label_classification":
    return cross_entropy(logits.reshape(-1, num_labels), labels.reshape(-1))
  if problem_type == "multi_label_classification":
    logits = jnp.asarray(logits, jnp.float32)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.asarray(labels, jnp.float32)))
  raise ValueError(f"unknown problem_type {problem_type!r}")


def span_loss(start_logits: Array, end_logits: Array, start_positions: Array,
              end_positions: Array) -> Array:
  """QA loss: positions outside the sequence are clamped to T and ignored, as in HF."""
  length = start_logits.shape[-1]
  start = jnp.clip(start_positions.reshape(-1), 0, length)
  end = jnp.clip(end_positions.reshape(-1), 0, length)
  return (cross_entropy(start_logits, start, ignore_index=length)
          + cross_entropy(end_logits, end, ignore_index=length)) / 2


# ---- sums and weights, for training ---------------------------------------------------------


def softmax_cross_entropy_sums(logits: Array, labels: Array, valid: Array | None = None
                               ) -> tuple[Array, Array]:
  """Per-row `(sum of CE over the valid positions, their count)`.

  `logits` `[B, ..., C]` with integer `labels` `[B, ...]`; positions where `valid` is false
  (default: none) add nothing. Rows are the leading axis; inner positions are summed.
  """
  logits = jnp.asarray(logits, jnp.float32)
  valid = jnp.ones(labels.shape, bool) if valid is None else valid
  per = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, labels, 0))
  per = jnp.where(valid, per, 0.0)
  inner = tuple(range(1, per.ndim))
  return jnp.sum(per, axis=inner), jnp.sum(valid, axis=inner).astype(jnp.float32)


def sigmoid_cross_entropy_sums(logits: Array, labels: Array, valid: Array | None = None
                               ) -> tuple[Array, Array]:
  """Per-row `(sum of BCE-with-logits over the valid entries, their count)` (`[B, ...]`)."""
  logits = jnp.asarray(logits, jnp.float32)
  per = optax.sigmoid_binary_cross_entropy(logits, jnp.asarray(labels, jnp.float32))
  valid = jnp.ones(per.shape, bool) if valid is None else valid
  inner = tuple(range(1, per.ndim))
  return (jnp.sum(jnp.where(valid, per, 0.0), axis=inner),
          jnp.sum(valid, axis=inner).astype(jnp.float32))


# Cross entropy against a tied output table, computed in vocabulary chunks.
#
# The LUKE entity head scores every masked entity against the whole entity table (500K rows for
# LUKE, 1.2M for mLUKE). Materialising `[masked, vocabulary]` logits (and keeping them for the
# backward pass) would be the largest activation of a pretraining step (about 2 GB of float32
# logits for 1,000 masked entities at 500K), so the softmax statistics are accumulated over
# vocabulary chunks instead.


def chunked_softmax_cross_entropy(
    features: Array, table: Array, bias: Array, labels: Array, weights: Array,
    chunk_size: int, *, precision: jax.lax.Precision | None = None,
) -> tuple[Array, Array, Array]:
  """Weighted softmax cross entropy of `features @ table.T + bias`, one vocabulary chunk at a time.

  A `jax.lax.scan` walks the vocabulary in chunks of `chunk_size` rows, carrying a running
  (max, sum of exps) for the log-sum-exp, the label logit and the running argmax. The chunk body
  is wrapped in `jax.checkpoint`, so the backward pass recomputes a chunk's logits instead of
  saving them: peak activation memory is O(N * chunk_size), not O(N * V).

  Chunks are strided: with C chunks, chunk c holds rows c, C + c, 2C + c, ... The table is
  reshaped `[V, D] -> [chunk, C, D]` and scanned over its middle axis, so

  * the scan's input is the table itself, not a slice of a closed-over array: the backward
    stacks each chunk's gradient, where slicing would add a whole-table gradient per chunk
    (on a TPU, a table-sized read and write per chunk, and with the table sharded over
    devices, an all-gather of it per chunk);
  * a table sharded along its rows stays sharded within every chunk (each device holds its
    part of every chunk), so a chunk's logits are computed where its rows live.

  V is padded to `chunk x C` (padded rows score -inf). The price is a few table-sized
  temporaries (the padded table in chunk order and its gradient; about three float32 tables at
  10M entities in `bench/entity_memory.py`, half that in bf16), never the `[N, V]` logits.

  Args:
    features: `[N, D]` transformed hidden states (any float dtype; the matmul runs in it and
      accumulates in float32).
    table: `[V, D]` output table (the tied embedding table).
    bias: `[V]` output bias.
    labels: `[N]` int label ids in `[0, V)`.
    weights: `[N]` per-position weights (0 for padding slots).
    chunk_size: vocabulary rows per chunk; clipped to V.
    precision: matmul precision; None follows the features' dtype (`matmul.einsum_f32`).

  Returns:
    `(loss_sum, correct_sum, weight_sum)`, float32 scalars: `sum(w * CE)`, `sum(w * [argmax ==
    label])` and `sum(w)` (the argmax is the first maximum, as `jnp.argmax` over the full row).
    Sums (not means) so gradient accumulation and cross-host averaging are exact: divide the
    summed loss by the summed weight at the end.
  """
  num_rows, dim = features.shape
  vocab = table.shape[0]
  if bias.shape != (vocab,):
    raise ValueError(f"bias shape {bias.shape} does not match table {table.shape}")
  if chunk_size <= 0:
    raise ValueError(f"chunk_size must be positive, got {chunk_size}")
  num_chunks = -(-vocab // int(min(chunk_size, vocab)))
  rows_per_chunk = -(-vocab // num_chunks)
  padded = rows_per_chunk * num_chunks
  compute_dtype = features.dtype
  labels = labels.astype(jnp.int32)
  weights = weights.astype(jnp.float32)
  # In the compute dtype before the layout copies (the chunk matmul reads it so anyway): in
  # bf16 the padded, strided copies are half the size of a float32 table.
  table = table.astype(compute_dtype)
  if padded != vocab:
    table = jnp.pad(table, ((0, padded - vocab), (0, 0)))
    bias = jnp.pad(bias, (0, padded - vocab))
  # Row v = i * num_chunks + c sits at [c, i] of these.
  table_chunks = jnp.swapaxes(table.reshape(rows_per_chunk, num_chunks, dim), 0, 1)
  bias_chunks = bias.reshape(rows_per_chunk, num_chunks).T
  label_chunk, label_slot = labels % num_chunks, labels // num_chunks
  slots = jnp.arange(rows_per_chunk, dtype=jnp.int32)

  @jax.checkpoint
  def body(carry, xs):
    run_max, run_sum, label_logit, best, best_idx = carry
    rows, b, c = xs
    logits = matmul.einsum_f32("nd,cd->nc", features, rows, precision)
    logits = logits + b.astype(jnp.float32)
    ids = slots * num_chunks + c
    logits = jnp.where((ids < vocab)[None, :], logits, -jnp.inf)
    # Online log-sum-exp; the max is a stabiliser only (LSE does not depend on it), so its
    # gradient path through argmax is cut.
    chunk_max = jax.lax.stop_gradient(jnp.max(logits, axis=-1))
    new_max = jnp.maximum(run_max, chunk_max)
    run_sum = (run_sum * jnp.exp(run_max - new_max)
               + jnp.sum(jnp.exp(logits - new_max[:, None]), axis=-1))
    picked = jnp.take_along_axis(logits, label_slot[:, None], axis=-1)[:, 0]
    label_logit = label_logit + jnp.where(label_chunk == c, picked, 0.0)
    # The first maximum over the whole row: chunks are strided, so on a tie the smaller id wins.
    arg = jnp.argmax(logits, axis=-1).astype(jnp.int32) * num_chunks + c
    better = (chunk_max > best) | ((chunk_max == best) & (arg < best_idx))
    best = jnp.where(better, chunk_max, best)
    best_idx = jnp.where(better, arg, best_idx)
    return (new_max, run_sum, label_logit, best, best_idx), None

  init = (jnp.full((num_rows,), -jnp.inf, jnp.float32), jnp.zeros((num_rows,), jnp.float32),
          jnp.zeros((num_rows,), jnp.float32), jnp.full((num_rows,), -jnp.inf, jnp.float32),
          jnp.zeros((num_rows,), jnp.int32))
  (run_max, run_sum, label_logit, _, best_idx), _ = jax.lax.scan(
      body, init, (table_chunks, bias_chunks, jnp.arange(num_chunks, dtype=jnp.int32)))
  lse = run_max + jnp.log(run_sum)
  per_row = lse - label_logit
  loss_sum = jnp.sum(jnp.where(weights != 0, per_row * weights, 0.0))
  correct = jnp.sum(jnp.where(best_idx == labels, weights, 0.0))
  return loss_sum, correct, jnp.sum(weights)
