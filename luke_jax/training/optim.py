"""The LUKE optimiser: AdamW without bias correction, warmup then linear decay, masks.

The official pretraining (github.com/studio-ousia/luke, `pretraining_config/*.json` with
DeepSpeed) uses `AdamW` with betas (0.9, 0.999), eps 1e-6, weight decay 0.01 and
`bias_correction: false`, and `WarmupDecayLR` (linear 0 -> peak over 2,500 steps, then linear
to 0 at `total_num_steps`); no decay for names containing `bias` and for `LayerNorm`
weights/biases (so `lm_head.layer_norm.weight` *is* decayed); the pooler is not given to the
optimiser; stage 1 (`--fix-bert-weights`) trains only `entity_embeddings.*` and
`entity_predictions.*`. Its fine-tuning trainer (`examples/legacy/utils/trainer.py`) uses the
same AdamW without bias correction, betas (0.9, 0.98) and 6% warmup.

Parameter paths are the '/'-joined Flax names, e.g. `luke/encoder/layer_3/output_LayerNorm/scale`.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

# Stage 1 (`--fix-bert-weights`): the entity embedding block (table, projection, entity
# position/type embeddings, LayerNorm) and the entity head; the word side is frozen.
STAGE1_TRAINABLE: tuple[tuple[str, bool], ...] = (
    (r".*/(entity_embeddings|entity_predictions)/.*", True),
    (r"entity_predictions/.*", True),
    (r".*", False),
)
# Stage 2: everything (the pooler is frozen regardless, see `POOLER_FROZEN`).
ALL_TRAINABLE: tuple[tuple[str, bool], ...] = ((r".*", True),)
# The reference leaves the pooler out of the optimiser: the pretraining losses do not use it, so
# its gradient is zero and only weight decay would move it. `make_optimizer` puts this rule first.
POOLER_FROZEN: tuple[str, bool] = (r"(.*/)?pooler/.*", False)


def path_str(path: Sequence[Any]) -> str:
  """'/'-joined names of a `jax.tree_util` key path (dict keys and attribute names only).

  Non-name entries (e.g. the `value` of an `nn.LogicallyPartitioned` box) are skipped, so boxed
  and unboxed trees give the same names.
  """
  names = []
  for key in path:
    if isinstance(key, jax.tree_util.DictKey):
      names.append(str(key.key))
    elif isinstance(key, jax.tree_util.GetAttrKey) and key.name != "value":
      names.append(key.name)
  return "/".join(names)


def make_schedule(learning_rate: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
  """DeepSpeed `WarmupDecayLR` with linear warmup: 0 -> peak over `warmup_steps`, -> 0 at total.

  Args:
    learning_rate: the peak learning rate, reached at step `warmup_steps`.
    warmup_steps: length of the linear warmup (0: start at the peak).
    total_steps: step at which the rate reaches 0 (and stays there).

  Returns:
    A schedule `step -> learning rate` (float32).
  """
  if warmup_steps < 0 or total_steps < warmup_steps:
    raise ValueError(f"need 0 <= warmup_steps <= total_steps, got {warmup_steps}, {total_steps}")
  peak = float(learning_rate)

  def schedule(count):
    count = jnp.asarray(count, jnp.float32)
    warm = peak * count / max(warmup_steps, 1)
    decay = peak * jnp.maximum(total_steps - count, 0.0) / max(total_steps - warmup_steps, 1)
    return jnp.where(count < warmup_steps, warm, decay)

  return schedule


class ScaleByAdamState(NamedTuple):
  """Adam moments (float32 or the parameter dtype) and the step count."""
  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
                  bias_correction: bool = False) -> optax.GradientTransformation:
  """Adam's direction as torch/HF/DeepSpeed compute it, with optional bias correction.

  `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`, update `m / (sqrt(v) + eps)`; with
  `bias_correction`, `m / (1 - b1^t)` and `v / (1 - b2^t)` are used instead (eps added after
  the square root, as `torch.optim.AdamW`).

  Args:
    b1: first-moment decay.
    b2: second-moment decay.
    eps: added to the root of the second moment.
    bias_correction: False for the LUKE reference (`LukeAdamW`, DeepSpeed `bias_correction:
      false`).

  Returns:
    The transformation (no learning rate, no weight decay).
  """

  def init_fn(params):
    zeros = lambda p: jnp.zeros_like(p)
    return ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=jax.tree.map(zeros, params),
                            nu=jax.tree.map(zeros, params))

  def update_fn(updates, state, params=None):
    del params
    mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
    nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g), state.nu, updates)
    count = optax.safe_increment(state.count)
    if bias_correction:
      t = count.astype(jnp.float32)
      c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
      new = jax.tree.map(lambda m, v: (m / c1) / (jnp.sqrt(v / c2) + eps), mu, nu)
    else:
      new = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), mu, nu)
    return new, ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def scale_by_adam_no_bias_correction(b1: float = 0.9, b2: float = 0.999,
                                     eps: float = 1e-6) -> optax.GradientTransformation:
  """`scale_by_adam(..., bias_correction=False)`: the LUKE reference's Adam."""
  return scale_by_adam(b1, b2, eps, bias_correction=False)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
  """Scales every gradient by `min(1, max_norm / global_norm)`: global-norm clipping as a scalar.

  `optax.clip_by_global_norm` computes `select(norm < max_norm, g, g / norm * max_norm)` per
  element. Both Adam moments read that result, and XLA (CPU, measured) does not duplicate a
  divide into two consumers, so the clipped gradient is materialised: a second gradient-sized
  temporary, a whole entity table at 10M entities (`bench/entity_memory.py`). Here the divide is
  done once on the scalar and each leaf is multiplied by it, which XLA fuses into the in-place
  moment updates. This is torch's `clip_grad_norm_` (`g *= clip_coef`, without its `1e-6`).
  Unclipped steps are bitwise optax's (`g * 1.0`); on clipped steps `g * (max_norm / norm)` and
  optax's `(g / norm) * max_norm` can differ in the last bit.

  Args:
    max_norm: the largest global norm of the updates; larger ones are scaled down to it.

  Returns:
    A stateless transformation.
  """

  def update_fn(updates, state, params=None):
    del params
    norm = optax.tree.norm(updates)
    scale = jnp.where(norm < max_norm, 1.0, max_norm / norm)
    return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def decay_mask(params) -> Any:
  """True where weight decay applies.

  No decay for any leaf named `bias`, nor for the parameters of modules whose name contains
  `LayerNorm` (the reference's `LayerNorm.weight`); everything else, including embedding tables
  and `lm_head/layer_norm/scale` (the reference decays `lm_head.layer_norm.weight`), is decayed.
  """

  def decays(path, _):
    names = path_str(path).split("/")
    return not (names[-1] == "bias" or any("LayerNorm" in n for n in names[:-1]))

  return jax.tree_util.tree_map_with_path(decays, params)


def trainable_mask(params, rules: Sequence[tuple[str, bool]]) -> Any:
  """True where a parameter is trained; the first rule whose regex `fullmatch`es the path wins.

  Args:
    params: the parameter tree.
    rules: `(regex, trainable)` pairs over the '/'-joined parameter path.

  Returns:
    A tree of bools with the structure of `params`.

  Raises:
    ValueError: a parameter matches no rule (names the first such path).
  """
  compiled = [(re.compile(pattern), bool(flag)) for pattern, flag in rules]

  def trainable(path, _):
    name = path_str(path)
    for pattern, flag in compiled:
      if pattern.fullmatch(name):
        return flag
    raise ValueError(f"parameter {name!r} matches no trainable rule in {list(rules)}")

  return jax.tree_util.tree_map_with_path(trainable, params)


def _get(cfg, name: str, default=None):
  value = getattr(cfg, name, default) if not isinstance(cfg, dict) else cfg.get(name, default)
  return default if value is None else value


def schedule_steps(optim_config, run_steps: int) -> tuple[int, int]:
  """`(warmup_steps, total_steps)` of the schedule: `total_steps` if set, else the run's steps;
  `warmup_steps` if set, else `int(warmup_ratio * total)`."""
  total = int(_get(optim_config, "total_steps", 0)) or int(run_steps)
  warmup = int(_get(optim_config, "warmup_steps", 0))
  if not warmup:
    warmup = int(float(_get(optim_config, "warmup_ratio", 0.0)) * total)
  return warmup, total


def learning_rate_schedule(optim_config, run_steps: int = 0) -> optax.Schedule:
  """The schedule `make_optimizer` follows (for logging the learning rate)."""
  return make_schedule(_get(optim_config, "learning_rate"),
                       *schedule_steps(optim_config, run_steps))


def make_optimizer(optim_config, params, run_steps: int = 0,
                   default_trainable: Sequence[tuple[str, bool]] = ALL_TRAINABLE
                   ) -> optax.GradientTransformation:
  """The training optimiser: clip -> Adam -> decoupled weight decay -> -lr, frozen leaves zeroed.

  `p -= lr * (adam_update + weight_decay * p)` on trainable leaves (torch / DeepSpeed AdamW;
  the EMNLP-era `LukeAdamW` decays the already-updated `p`, a difference of O(lr^2 wd)).
  Frozen leaves get `optax.set_to_zero()` through `optax.multi_transform`, so they carry no
  Adam moments and their update is exactly 0. Gradient clipping, when on, uses the global norm
  of the trainable gradients only (as DeepSpeed, whose optimiser holds only those).

  Args:
    optim_config: `config.optim` (an `ml_collections.ConfigDict`, any object with these
      attributes, or a dict): `learning_rate` (required); `warmup_steps`, else `warmup_ratio`
      of the schedule's steps; `total_steps` (0: `run_steps`); `b1` (0.9), `b2` (0.999),
      `eps` (1e-6), `weight_decay` (0.01), `bias_correction` (False), `max_grad_norm`
      (0 = off), `trainable` (list of `[regex, bool]`; empty: `default_trainable`). The pooler
      is frozen whatever `trainable` says (`POOLER_FROZEN` is tried first), as the reference
      excludes it. Gradient accumulation is not handled here (the train step accumulates).
    params: the (unboxed) parameter tree; used to check that every path matches a rule.
    run_steps: the number of optimizer steps the run takes.
    default_trainable: the rules when `trainable` is not set (`STAGE1_TRAINABLE` in
      pretraining stage 1).

  Returns:
    An `optax.GradientTransformation`; its learning rate at step t is
    `learning_rate_schedule(optim_config, run_steps)(t)`.
  """
  schedule = learning_rate_schedule(optim_config, run_steps)
  rules = (POOLER_FROZEN,) + tuple(
      (str(p), bool(f)) for p, f in (_get(optim_config, "trainable") or default_trainable))
  trainable_mask(params, rules)  # Fail now, with the offending path, rather than inside init.

  steps = []
  max_grad_norm = float(_get(optim_config, "max_grad_norm", 0.0))
  if max_grad_norm > 0:
    steps.append(clip_by_global_norm(max_grad_norm))
  steps.append(scale_by_adam(float(_get(optim_config, "b1", 0.9)),
                             float(_get(optim_config, "b2", 0.999)),
                             float(_get(optim_config, "eps", 1e-6)),
                             bool(_get(optim_config, "bias_correction", False))))
  weight_decay = float(_get(optim_config, "weight_decay", 0.01))
  if weight_decay:
    steps.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
  steps.append(optax.scale_by_learning_rate(schedule))
  labels = lambda tree: jax.tree.map(lambda t: "train" if t else "freeze",
                                     trainable_mask(tree, rules))
  return optax.multi_transform({"train": optax.chain(*steps), "freeze": optax.set_to_zero()},
                               labels)
