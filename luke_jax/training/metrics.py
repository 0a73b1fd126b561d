"""Throughput, MFU, ETA, console lines and TensorBoard events of every training run."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from absl import logging
import jax
import numpy as np

from luke_jax.models.config import LukeConfig

# Dense bf16 peak FLOP/s per chip, keyed by a substring of `device.device_kind` (first match).
PEAK_FLOPS = (
    ("H200", 989e12), ("H100", 989e12), ("GH200", 989e12), ("B200", 2250e12),
    ("A100", 312e12), ("L4", 121e12), ("A10G", 70e12), ("V100", 125e12),
    ("TPU v6", 918e12), ("TPU v5p", 459e12), ("TPU v5 lite", 197e12), ("TPU v5e", 197e12),
    # libtpu names a v5p chip "TPU v5" (after the lite entries, which also contain it).
    ("TPU v5", 459e12), ("TPU v4", 275e12), ("TPU v3", 123e12),
)


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or Inf; the last checkpoint before it is kept."""


def peak_flops(device: jax.Device) -> float | None:
  """Peak dense FLOP/s of one device, or None where unknown (CPU)."""
  if device.platform == "cpu":
    return None
  for key, value in PEAK_FLOPS:
    if key.lower() in device.device_kind.lower():
      return value
  return None


def flops_per_example(config: LukeConfig, params, seq_len: int, entity_len: int,
                      masked_words: int, masked_entities: int) -> float:
  """Training FLOPs of one example: 6 * N * T for the matmuls plus attention scores.

  N counts the encoder's dense weights (embedding lookups cost no FLOPs); the output heads
  only score the gathered masked positions, against the word and entity tables.
  """
  tables = 0
  total = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    size = int(np.prod(leaf.shape))
    total += size
    if "embeddings" in jax.tree_util.keystr(path) and leaf.ndim == 2:
      tables += size
  tokens = seq_len + entity_len
  dense = 6 * (total - tables) * tokens
  # QK^T and AV: 2 matmuls of [T, T, hidden] per layer, x3 for forward + backward, x2 FLOPs/MAC.
  attention = 12 * config.num_hidden_layers * config.hidden_size * tokens * tokens
  heads = 6 * (masked_words * config.hidden_size * config.vocab_size
               + masked_entities * config.entity_emb_size * config.entity_vocab_size)
  return float(dense + attention + heads)


def format_duration(seconds: float) -> str:
  """`h:mm:ss`, hours unbounded (a week-long run shows 168:00:00)."""
  if not math.isfinite(seconds):
    return "n/a"
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class MetricWriter:
  """The console lines and TensorBoard scalars of every run; fetches metrics lazily.

  `add` keeps a step's metrics as device arrays and starts their copy to the host, so the loop
  does not wait for the device; `flush` (at log lines, before checkpoints and evaluations, at
  the end) brings them over, checks the loss and accumulates. A NaN or Inf loss therefore
  stops the run at the next flush, naming its step, before any state after it is saved.

  Args:
    workdir: TensorBoard events go to `workdir/tensorboard` (process 0 only).
    total_steps: the run's last step, for progress and ETA.
    log_every: a console line (and `train/*` scalars) every this many steps, and at the end.
    ratios: `name -> (numerator, denominator)` metric sums reported as the interval's ratio
      (e.g. the masked LM loss `mlm_loss_sum / mlm_weight`); `loss` and `grad_norm` are
      averaged over the interval's steps.
    learning_rate: the schedule, to report the learning rate of each logged step.
    tokens_per_step: tokens of a global batch, for tokens/s.
    flops_per_step: model FLOPs of a step; with the devices' known peak, gives MFU.
    devices: the run's devices (MFU needs their peak and count).
  """

  def __init__(self, workdir: Path, *, total_steps: int, log_every: int,
               ratios: Mapping[str, tuple[str, str]] | None = None,
               learning_rate: Callable[[int], float] | None = None,
               tokens_per_step: int | None = None, flops_per_step: float | None = None,
               devices: Sequence[jax.Device] = ()):
    self.total_steps, self.log_every = total_steps, max(1, log_every)
    self.ratios = dict(ratios or {})
    self.learning_rate = learning_rate
    self.tokens_per_step, self.flops_per_step = tokens_per_step, flops_per_step
    peak = peak_flops(devices[0]) if devices else None
    self.peak = peak * len(devices) if peak else None
    self.history: list[tuple[int, float]] = []
    self._pending: list[tuple[int, Mapping[str, jax.Array]]] = []
    self._sums: dict[str, float] = {}
    self._steps = 0
    self._timed_steps = 0
    self._t0 = time.perf_counter()
    self._writer = None
    if jax.process_index() == 0:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        self._writer = SummaryWriter(str(Path(workdir) / "tensorboard"))
      except ImportError:
        logging.warning("tensorboardX is not installed; metrics go to the console only")

  def restart_clock(self) -> None:
    """Times from now: keeps compilation and restores out of the throughput."""
    self.flush()
    self._t0 = time.perf_counter()
    self._timed_steps = 0

  def add(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
    """Records step `step`'s metrics (device arrays) without waiting for them."""
    for value in metrics.values():
      if hasattr(value, "copy_to_host_async"):
        value.copy_to_host_async()
    self._pending.append((step, metrics))
    self._timed_steps += 1

  def flush(self) -> None:
    """Fetches the pending metrics; raises `NonFiniteLossError` naming the first bad step."""
    if not self._pending:
      return
    pending, self._pending = self._pending, []
    for step, metrics in zip((s for s, _ in pending),
                             jax.device_get([m for _, m in pending])):
      loss = float(metrics["loss"])
      if not math.isfinite(loss):
        raise NonFiniteLossError(f"loss is {loss} at step {step}; the last checkpoint before "
                                 "it is kept (lower the learning rate or check the data)")
      for k, v in metrics.items():
        self._sums[k] = self._sums.get(k, 0.0) + float(v)
      self._steps += 1
      self.history.append((step, loss))

  def due(self, step: int) -> bool:
    return step % self.log_every == 0 or step == self.total_steps

  def write(self, step: int) -> dict[str, float]:
    """Logs the interval's means and throughput, then starts a new interval."""
    self.flush()
    if not self._steps:
      return {}
    elapsed = max(time.perf_counter() - self._t0, 1e-9)
    s = self._sums
    steps_per_s = self._timed_steps / elapsed
    out = {"loss": s["loss"] / self._steps}
    for name, (num, den) in self.ratios.items():
      out[name] = s[num] / max(s[den], 1.0)
    out["grad_norm"] = s["grad_norm"] / self._steps
    if self.learning_rate is not None:
      out["learning_rate"] = float(self.learning_rate(step - 1))
    out["steps_per_s"] = steps_per_s
    if self.tokens_per_step:
      out["tokens_per_s"] = steps_per_s * self.tokens_per_step
    if self.peak and self.flops_per_step:
      out["mfu"] = steps_per_s * self.flops_per_step / self.peak
    eta = (self.total_steps - step) / steps_per_s if steps_per_s else float("inf")
    parts = [f"step {step}/{self.total_steps}", f"loss {out['loss']:.4f}"]
    parts += [f"{name} {out[name]:.4f}" for name in self.ratios]
    if "learning_rate" in out:
      parts.append(f"lr {out['learning_rate']:.3g}")
    parts.append(f"{steps_per_s:.2f} steps/s")
    if "tokens_per_s" in out:
      parts.append(f"{out['tokens_per_s']:.0f} tokens/s")
    if "mfu" in out:
      parts.append(f"MFU {out['mfu']:.1%}")
    parts.append(f"ETA {format_duration(eta)}")
    line = "  ".join(parts)
    if jax.process_index() == 0:
      print(line, flush=True)  # the console is the user interface; absl logs may be filtered
    logging.info("%s", line)
    self.scalars("train", out, step)
    self._sums, self._steps = {}, 0
    self._t0, self._timed_steps = time.perf_counter(), 0
    return out

  def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
    """`prefix/name` TensorBoard scalars (e.g. `dev/f1`)."""
    if self._writer is not None:
      for k, v in values.items():
        self._writer.add_scalar(f"{prefix}/{k}", float(v), step)
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
