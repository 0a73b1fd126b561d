"""Console progress (loss, steps/s, ETA) and TensorBoard scalars of a fine-tuning run."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Mapping

from absl import logging
import jax
import numpy as np

from luke_jax.training.metrics import NonFiniteLossError


class Progress:
  """Averages step metrics between log lines; writes `train/*`, `dev/*` event scalars."""

  def __init__(self, workdir: Path, *, total_steps: int, log_every: int):
    self.total_steps, self.log_every = total_steps, max(1, log_every)
    self.history: list[tuple[int, float]] = []
    self._loss = self._grad_norm = 0.0
    self._count = self._timed = 0
    self._t0 = time.perf_counter()
    self._writer = None
    if jax.process_index() == 0:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._writer = SummaryWriter(str(workdir / "tensorboard"))

  def restart_clock(self) -> None:
    self._t0, self._timed = time.perf_counter(), 0

  def update(self, step: int, metrics: Mapping[str, np.ndarray], learning_rate: float) -> None:
    """Adds a step; raises `NonFiniteLossError` (before anything is saved) on NaN/Inf loss."""
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
      raise NonFiniteLossError(f"loss is {loss} at step {step}; the last checkpoint before it "
                               "is kept (lower the learning rate or check the data)")
    self.history.append((step, loss))
    self._loss += loss
    self._grad_norm += float(metrics["grad_norm"])
    self._count += 1
    self._timed += 1
    if step % self.log_every == 0 or step == self.total_steps:
      self._write(step, learning_rate)

  def _write(self, step: int, learning_rate: float) -> None:
    elapsed = max(time.perf_counter() - self._t0, 1e-9)
    rate = self._timed / elapsed
    eta = (self.total_steps - step) / rate if rate else float("inf")
    eta_s = "n/a" if not math.isfinite(eta) else time.strftime("%H:%M:%S", time.gmtime(eta))
    out = {"loss": self._loss / self._count, "grad_norm": self._grad_norm / self._count,
           "learning_rate": learning_rate, "steps_per_s": rate}
    line = (f"step {step}/{self.total_steps}  loss {out['loss']:.4f}  lr {learning_rate:.3g}  "
            f"{rate:.2f} steps/s  ETA {eta_s}")
    if jax.process_index() == 0:
      print(line, flush=True)
    logging.info("%s", line)
    self.scalars("train", out, step)
    self._loss = self._grad_norm = 0.0
    self._count = 0
    self.restart_clock()

  def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
    if self._writer is not None:
      for k, v in values.items():
        self._writer.add_scalar(f"{prefix}/{k}", float(v), step)
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
