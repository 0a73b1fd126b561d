"""`TrainState`, its shardings and its sharded initialisation (lm1b `setup_initial_state`)."""

from __future__ import annotations

import math
from typing import Any, Callable

from absl import logging

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from luke_jax import sharding


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; a pytree, so it is jitted, donated and checkpointed.

  Attributes:
    step: int32 [] number of optimizer updates applied.
    params: the unboxed parameter tree.
    opt_state: the optax state for `params`.
    rng: uint32 [2] base key; each step folds in its step number.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def abstract_state(boxed_params, tx: optax.GradientTransformation) -> TrainState:
  """Shapes of the state for the (boxed, abstract) parameters `boxed_params` and `tx`."""
  params = nn.unbox(boxed_params)
  return TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params,
                    opt_state=jax.eval_shape(tx.init, params),
                    rng=jax.ShapeDtypeStruct((2,), jnp.uint32))


def state_shardings(boxed_params, abstract_opt_state, mesh: Mesh, rules) -> TrainState:
  """NamedShardings for every leaf: params by the logical rules, optimizer moments like params.

  Optax moments mirror the parameter tree, so each opt-state leaf whose shape equals the
  parameter at the same path suffix takes that parameter's sharding; scalars (counts) and
  anything else are replicated.
  """
  params = nn.unbox(boxed_params)
  param_sh = param_shardings(boxed_params, mesh, rules)
  by_path = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    by_path[tuple(_key(k) for k in path)] = (leaf.shape, None)
  for path, sh in jax.tree_util.tree_leaves_with_path(param_sh):
    key = tuple(_key(k) for k in path)
    by_path[key] = (by_path[key][0], sh)
  replicated = NamedSharding(mesh, PartitionSpec())

  def opt_sharding(path, leaf):
    keys = tuple(_key(k) for k in path)
    for start in range(len(keys)):
      hit = by_path.get(keys[start:])
      if hit is not None and hit[0] == leaf.shape:
        return hit[1]
    return replicated

  opt_sh = jax.tree_util.tree_map_with_path(opt_sharding, abstract_opt_state)
  return TrainState(step=replicated, params=param_sh, opt_state=opt_sh, rng=replicated)


def param_shardings(boxed_params, mesh: Mesh, rules):
  """NamedShardings of the (unboxed) parameters from their logical axes and `rules`."""
  return jax.tree.map(_fit_to_shape, sharding.param_shardings(boxed_params, mesh, rules),
                      nn.unbox(boxed_params))


def _fit_to_shape(named: NamedSharding, leaf) -> NamedSharding:
  """Replicates the dimensions a rule would split unevenly (e.g. vocab 50267 over 2 devices).

  JAX requires even splits; replicating one awkward table costs memory but keeps every
  vocabulary size trainable on every mesh.
  """
  spec = list(named.spec) + [None] * (len(leaf.shape) - len(named.spec))
  changed = False
  for dim, axes in enumerate(spec):
    if axes is None:
      continue
    names = axes if isinstance(axes, tuple) else (axes,)
    parts = math.prod(named.mesh.shape[a] for a in names)
    if leaf.shape[dim] % parts:
      logging.warning("dimension %d of a %s parameter does not split over %s; replicating it",
                      dim, leaf.shape, names)
      spec[dim] = None
      changed = True
  return NamedSharding(named.mesh, PartitionSpec(*spec)) if changed else named


def _key(k) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def abstract_with_shardings(abstract, shardings):
  """`jax.ShapeDtypeStruct`s carrying shardings, for Orbax restores."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)


def create_state(params: Any | Callable[[], Any], tx: optax.GradientTransformation,
                 shardings: TrainState, rng: jax.Array) -> TrainState:
  """A step-0 state with a fresh optimizer, every leaf made directly in its sharding.

  Args:
    params: a parameter tree (placed into `shardings.params`: a checkpoint's, say) or a
      function of no arguments that makes one, traced inside the jit (random initialisation),
      so that no host ever holds the whole tree.
    tx: the optimizer.
    shardings: from `state_shardings`.
    rng: the state's base key (dropout keys are folded from it by step).
  """

  def init(p, key):
    return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p), rng=key)

  if callable(params):
    return jax.jit(lambda key: init(params(), key), out_shardings=shardings)(rng)
  return jax.jit(init, in_shardings=(shardings.params, None), out_shardings=shardings)(params, rng)


def host_copy(tree):
  """A numpy copy of a (possibly multi-host sharded) tree on every host."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)
