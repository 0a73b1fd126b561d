"""The step loop every run drives: batches in, steps taken, metrics written, checkpoints kept.

The loop never waits for the device between steps: metrics are fetched when a line is logged,
before a checkpoint or an evaluation, and at the end (`MetricWriter`), so preparing the next
batch overlaps the current step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import orbax.checkpoint as ocp

from luke_jax.training import checkpointing
from luke_jax.training.metrics import MetricWriter
from luke_jax.training.preemption import Preemption
from luke_jax.training.state import TrainState


@dataclasses.dataclass
class Hook:
  """Work between steps (an evaluation, say); the loop flushes the metrics before it runs.

  Attributes:
    due: `step -> bool`, whether to run after step `step`.
    run: `(step, state) -> bool`, the work; True forces a checkpoint of this step.
  """

  due: Callable[[int], bool]
  run: Callable[[int, TrainState], bool]


@dataclasses.dataclass
class LoopEnd:
  """Where the loop stopped: `state` after `step` steps; `preempted` runs saved and stopped."""

  state: TrainState
  step: int
  preempted: bool


def run(state: TrainState, train_step: Callable, next_batch: Callable[[int], Mapping[str, Any]],
        *, total_steps: int, manager: ocp.CheckpointManager, writer: MetricWriter,
        preemption: Preemption, data_state: Callable[[int], dict],
        hooks: tuple[Hook, ...] = ()) -> LoopEnd:
  """Takes steps from `state.step` to `total_steps`; saves the last one.

  Args:
    state: the state to start from (its step says where).
    train_step: `(state, batch) -> (state, metrics)`, jitted, state donated.
    next_batch: `step -> batch` of global arrays for step `step + 1`.
    total_steps: where to stop.
    manager: checkpoints: saved at its interval, when a hook asks, on preemption, at the end,
      and at a step `checkpointing.restore_latest` moved aside as damaged.
    writer: the run's metric writer.
    preemption: when to stop early (checked before every step).
    data_state: `step -> ` the input position to save with that step's checkpoint (JSON).
    hooks: work after steps.

  Returns:
    The `LoopEnd`. A NaN or Inf loss raises `NonFiniteLossError` instead.
  """
  step = int(jax.device_get(state.step))
  first = step + 1
  while step < total_steps:
    if preemption.requested(step):
      writer.flush()
      checkpointing.save(manager, step, state, data_state(step), force=True)
      return LoopEnd(state, step, preempted=True)
    state, metrics = train_step(state, next_batch(step))
    step += 1
    writer.add(step, metrics)
    if step == first:
      writer.restart_clock()  # the first step's compilation is not throughput
    force = False
    for hook in hooks:
      if hook.due(step):
        writer.flush()  # a diverged state is neither evaluated nor saved
        force = hook.run(step, state) or force
    if force or checkpointing.due(manager, step):
      writer.flush()
      checkpointing.save(manager, step, state, data_state(step), force=force)
    if writer.due(step):
      writer.write(step)
  writer.flush()
  checkpointing.save(manager, step, state, data_state(step), force=True)
  return LoopEnd(state, step, preempted=False)
