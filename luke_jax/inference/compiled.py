"""The jitted forward of an inference pipeline, counting its compilations.

One `jax.jit` wraps `task.outputs(model.apply(...))`; jax keeps one compiled program per input
shape in the function's own cache. Tracing runs the Python body, and jax traces exactly when it
meets a shape it has not compiled yet, so a counter in the body counts the programs built: one
XLA compilation each, or a load from the persistent compilation cache when that is on
(`luke_jax.inference.compilation_cache`). Tests and the benchmark read the count.
"""

from __future__ import annotations

from typing import Mapping

import flax.linen as nn
import jax
import numpy as np

from luke_jax.finetune.task import Task


class CompiledForward:
  """`batch -> task.outputs` for fixed parameters, jitted once per input shape.

  Args:
    module: the Flax model (its class must be the task's architecture).
    params: its parameter tree (on the default device, or placed there on first use).
    task: the task whose `input_keys` feed the model and whose `outputs` pick what comes back.

  Attributes:
    compilations: programs built so far (one per new input shape).
    shapes: `{key: shape}` of each program's inputs, in the order they were built.
  """

  def __init__(self, module: nn.Module, params, task: Task):
    self.module, self.task = module, task
    self.params = jax.device_put(params)
    self.compilations = 0
    self.shapes: list[dict[str, tuple[int, ...]]] = []

    def forward(params, batch):
      # Runs only while jax traces, i.e. once per new shape (see the module docstring).
      self.compilations += 1
      self.shapes.append({k: tuple(v.shape) for k, v in batch.items()})
      out = module.apply({"params": params}, **batch, deterministic=True)
      return task.outputs(out)

    self._jit = jax.jit(forward)

  def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The task's outputs (host numpy) for one padded batch of the task's input keys."""
    inputs = {k: np.asarray(batch[k], np.int32) for k in self.task.input_keys if k in batch}
    return {k: np.asarray(v) for k, v in jax.device_get(self._jit(self.params, inputs)).items()}
