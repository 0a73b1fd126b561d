"""The train step every run takes: objective, gradient accumulation and the optimizer update."""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from luke_jax.training.state import TrainState

Batch = Mapping[str, jax.Array]


class Objective:
  """What a run minimises, as sums the step can accumulate exactly over micro-batches.

  The step's loss is the sum of `__call__`'s value over the micro-batches of a global batch,
  divided by `normalizer` of the summed metrics (when it gives one): a mean whose denominator
  is known only after the forward (spans, candidates) stays exact under accumulation. A mean
  whose denominator the batch already tells (masked positions) can divide up front instead,
  with `totals` computed once on the whole global batch.
  """

  def totals(self, batch: Batch) -> Any:
    """Global-batch quantities each micro-batch's value may divide by (default none)."""
    del batch
    return None

  def __call__(self, params, batch: Batch, rng: jax.Array, totals: Any
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`(value, sums)`: a float32 scalar to differentiate, and float32 scalar metric sums."""
    raise NotImplementedError

  def normalizer(self, sums: dict[str, jax.Array]) -> jax.Array | None:
    """What the accumulated value and gradients are divided by (default nothing)."""
    del sums
    return None


def split_microbatches(batch: Batch, accum: int) -> Batch:
  """`[B, ...]` -> `[accum, B // accum, ...]`, micro-batch k taking rows k, k + accum, ...

  Strided rows keep every micro-batch spread over all data shards (as MaxText does).
  """
  def split(x):
    x = x.reshape((x.shape[0] // accum, accum) + x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(split, batch)


def train_step(state: TrainState, batch: Batch, *, objective: Objective,
               tx: optax.GradientTransformation, grad_accum_steps: int
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update on a global batch.

  Args:
    state: the current state (donated by the jitted caller).
    batch: arrays with a leading global batch axis.
    objective: the loss, see `Objective`.
    tx: the optimizer.
    grad_accum_steps: micro-batches per step; divides the batch size. Gradients accumulate in
      float32 and equal the whole batch's (up to summation order) whatever this is.

  Returns:
    The new state and float32 scalar metrics: the objective's sums, `loss` and `grad_norm`.
  """
  totals = objective.totals(batch)
  dropout_rng = jax.random.fold_in(state.rng, state.step)
  grad_fn = jax.value_and_grad(
      lambda params, micro, rng: objective(params, micro, rng, totals), has_aux=True)
  if grad_accum_steps == 1:
    (value, sums), grads = grad_fn(state.params, batch, dropout_rng)
  else:
    micro_batches = split_microbatches(batch, grad_accum_steps)
    first = jax.tree.map(lambda x: x[0], micro_batches)
    sums_shape = jax.eval_shape(grad_fn, state.params, first, dropout_rng)[0][1]

    def body(carry, xs):
      grads_acc, value_acc, sums_acc = carry
      index, micro = xs
      micro = jax.tree.map(
          lambda x: nn.with_logical_constraint(x, ("activation_batch",) + (None,) * (x.ndim - 1)),
          micro)
      (value, sums), grads = grad_fn(state.params, micro, jax.random.fold_in(dropout_rng, index))
      grads_acc = jax.tree.map(lambda a, g: a + g.astype(jnp.float32), grads_acc, grads)
      sums_acc = jax.tree.map(lambda a, s: a + s.astype(jnp.float32), sums_acc, sums)
      return (grads_acc, value_acc + value, sums_acc), None

    zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), tree)
    (grads, value, sums), _ = jax.lax.scan(
        body, (zeros(state.params), jnp.zeros((), jnp.float32), zeros(sums_shape)),
        (jnp.arange(grad_accum_steps), micro_batches))
  denominator = objective.normalizer(sums)
  if denominator is not None:
    grads = jax.tree.map(lambda g, p: (g / denominator).astype(p.dtype), grads, state.params)
    value = value / denominator
  elif grad_accum_steps > 1:
    grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.params)

  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {k: jnp.asarray(v, jnp.float32) for k, v in sums.items()}
  metrics["loss"] = jnp.asarray(value, jnp.float32)
  metrics["grad_norm"] = optax.tree.norm(grads).astype(jnp.float32)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def make_train_step(objective: Objective, tx: optax.GradientTransformation,
                    grad_accum_steps: int, state_shardings: TrainState,
                    batch_sharding: NamedSharding) -> Callable:
  """`jax.jit(train_step)` with explicit shardings and the state donated (MaxText style)."""
  step = functools.partial(train_step, objective=objective, tx=tx,
                           grad_accum_steps=grad_accum_steps)
  replicated = NamedSharding(batch_sharding.mesh, PartitionSpec())
  return jax.jit(step, in_shardings=(state_shardings, batch_sharding),
                 out_shardings=(state_shardings, replicated), donate_argnums=(0,))
