"""Losses with PyTorch's reduction conventions, computed in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

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
