"""The jitted forward of an inference pipeline, counting its compilations.

One `jax.jit` wraps `outputs(model.apply(...))` (a task's `outputs`: what decoding reads), or a
task's own `apply` around the model's forward (decoding over several passes); jax keeps one
compiled program per input shape in the function's own cache. Tracing runs the Python body,
and jax traces exactly when it meets a shape it has not compiled yet, so a counter in the body
counts the programs built: one XLA compilation each, or a load from the persistent compilation
cache when that is on (`luke_jax.bucketing.compilation_cache`). Tests and the benchmark read
the count.

Like `buckets` and `runner`, this module imports nothing of luke-jax (it needs only jax, Flax
and numpy), so the fine-tuning trainer's `predict` runs through it too.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np


class CompiledForward:
  """`batch -> outputs(model(batch))` for fixed parameters, jitted once per input shape.

  Args:
    module: the Flax model.
    params: its parameter tree (placed on the default device).
    input_keys: the batch arrays passed to the model (a task's `input_keys`).
    outputs: model output -> `{name: array}` of what comes back (a task's `outputs`).
    apply: `(model, batch) -> {name: array}`, what comes back computed from the model's forward
      `model(batch)` (a task's `eval_outputs`: possibly several passes, as entity
      disambiguation's global decoding); None: `outputs(model(batch))`.

  Attributes:
    compilations: programs built so far (one per new input shape).
    shapes: `{key: shape}` of each program's inputs, in the order they were built.
  """

  def __init__(self, module: nn.Module, params, input_keys: Sequence[str],
               outputs: Callable[..., Mapping[str, jax.Array]], *,
               apply: Callable[..., Mapping[str, jax.Array]] | None = None):
    self.module, self.input_keys = module, tuple(input_keys)
    self.params = jax.device_put(params)
    self.compilations = 0
    self.shapes: list[dict[str, tuple[int, ...]]] = []

    def forward(params, batch):
      # Runs only while jax traces, i.e. once per new shape (see the module docstring).
      self.compilations += 1
      self.shapes.append({k: tuple(v.shape) for k, v in batch.items()})
      model = lambda inputs: module.apply({"params": params}, **inputs, deterministic=True)
      return dict(apply(model, batch) if apply is not None else outputs(model(batch)))

    self._jit = jax.jit(forward)

  def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs (host numpy) for one padded batch holding the input keys (others ignored;
    an input key the batch lacks is left to the model's default)."""
    inputs = {k: _as_input(batch[k]) for k in self.input_keys if k in batch}
    return {k: np.asarray(v) for k, v in jax.device_get(self._jit(self.params, inputs)).items()}


def _as_input(value) -> np.ndarray:
  """Integer arrays as int32, whatever their width (the tokenizer's int64 included), so one
  shape never compiles twice for two integer types; other dtypes as they are."""
  value = np.asarray(value)
  return value.astype(np.int32) if np.issubdtype(value.dtype, np.integer) else value
