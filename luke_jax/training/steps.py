"""The pure training step: loss, gradient accumulation and the optimizer update."""

from __future__ import annotations

import functools
from typing import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from luke_jax.training.state import TrainState

Batch = Mapping[str, jax.Array]
METRIC_KEYS = ("mlm_loss_sum", "mlm_correct", "mlm_weight", "mep_loss_sum", "mep_correct",
               "mep_weight")
# Host-side fields the model never reads; they stay off the device.
HOST_ONLY_KEYS = ("page_id",)


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Batch rows split over every data-parallel mesh axis (the `activation_batch` rule)."""
  return NamedSharding(mesh, PartitionSpec(("data", "fsdp")))


def _split_microbatches(batch: Batch, accum: int) -> Batch:
  # [B, ...] -> [B // accum, accum, ...] -> [accum, B // accum, ...]: microbatch k takes rows
  # k, k + accum, ..., so every microbatch stays spread over all data shards (MaxText).
  def split(x):
    x = x.reshape((x.shape[0] // accum, accum) + x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(split, batch)


def train_step(state: TrainState, batch: Batch, *, model, tx: optax.GradientTransformation,
               grad_accum_steps: int) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update on a global batch.

  The loss is `mlm_loss_sum / mlm_weight + mep_loss_sum / mep_weight` over the whole global
  batch. The weights are known from the batch before the forward, so each microbatch's sums
  are divided by the global totals and the accumulated gradient equals the full-batch one
  exactly (up to float32 summation order), whatever `grad_accum_steps` is.

  Args:
    state: the current state (donated by the jitted caller).
    batch: masked pretraining arrays with a leading global batch axis.
    model: has `apply({'params': p}, batch, deterministic=..., rngs=...)` returning the sums.
    tx: the optimizer.
    grad_accum_steps: microbatches per step; divides the batch size.

  Returns:
    The new state and float32 scalar metrics (sums, weights, `loss`, `grad_norm`).
  """
  mlm_total = jnp.maximum(batch["mlm_weights"].astype(jnp.float32).sum(), 1.0)
  mep_total = jnp.maximum(batch["mep_weights"].astype(jnp.float32).sum(), 1.0)
  dropout_rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params, micro, rng):
    sums = model.apply({"params": params}, micro, deterministic=False, rngs={"dropout": rng})
    loss = sums["mlm_loss_sum"] / mlm_total + sums["mep_loss_sum"] / mep_total
    return loss, sums

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  zeros_sums = {k: jnp.zeros((), jnp.float32) for k in METRIC_KEYS}
  if grad_accum_steps == 1:
    (loss, sums), grads = grad_fn(state.params, batch, dropout_rng)
  else:
    micro_batches = _split_microbatches(batch, grad_accum_steps)

    def body(carry, xs):
      grads_acc, loss_acc, sums_acc = carry
      index, micro = xs
      micro = jax.tree.map(
          lambda x: nn.with_logical_constraint(x, ("activation_batch",) + (None,) * (x.ndim - 1)),
          micro)
      (loss, sums), grads = grad_fn(state.params, micro, jax.random.fold_in(dropout_rng, index))
      grads_acc = jax.tree.map(lambda a, g: a + g.astype(jnp.float32), grads_acc, grads)
      sums_acc = {k: sums_acc[k] + sums[k].astype(jnp.float32) for k in METRIC_KEYS}
      return (grads_acc, loss_acc + loss, sums_acc), None

    zero_grads = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
    (grads, loss, sums), _ = jax.lax.scan(
        body, (zero_grads, jnp.zeros((), jnp.float32), zeros_sums),
        (jnp.arange(grad_accum_steps), micro_batches))
    grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.params)

  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {k: jnp.asarray(sums[k], jnp.float32) for k in METRIC_KEYS}
  metrics["loss"] = jnp.asarray(loss, jnp.float32)
  metrics["grad_norm"] = optax.tree.norm(grads).astype(jnp.float32)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  return new_state, metrics


def make_train_step(model, tx: optax.GradientTransformation, grad_accum_steps: int,
                    state_shardings: TrainState, mesh: Mesh) -> Callable:
  """`jax.jit(train_step)` with explicit shardings and the state donated (MaxText style)."""
  step = functools.partial(train_step, model=model, tx=tx, grad_accum_steps=grad_accum_steps)
  return jax.jit(step, in_shardings=(state_shardings, data_sharding(mesh)),
                 out_shardings=(state_shardings, NamedSharding(mesh, PartitionSpec())),
                 donate_argnums=(0,))
