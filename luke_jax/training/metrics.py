"""Throughput, MFU, ETA, console lines and TensorBoard events for the training loop."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Mapping

from absl import logging
import jax
import numpy as np

from luke_jax.models.config import LukeConfig

# Dense bf16 peak FLOP/s per chip, keyed by a substring of `device.device_kind` (first match).
PEAK_FLOPS = (
    ("H200", 989e12), ("H100", 989e12), ("GH200", 989e12), ("B200", 2250e12),
    ("A100", 312e12), ("L4", 121e12), ("A10G", 70e12), ("V100", 125e12),
    ("TPU v6", 918e12), ("TPU v5p", 459e12), ("TPU v5 lite", 197e12), ("TPU v5e", 197e12),
    ("TPU v4", 275e12), ("TPU v3", 123e12),
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


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "n/a"
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class MetricLogger:
  """Accumulates step metrics between log lines and writes them to stdout and TensorBoard."""

  def __init__(self, workdir: Path, *, total_steps: int, tokens_per_step: int,
               flops_per_step: float, num_devices: int, device: jax.Device):
    self.total_steps = total_steps
    self.tokens_per_step = tokens_per_step
    self.flops_per_step = flops_per_step
    peak = peak_flops(device)
    self.peak = peak * num_devices if peak else None
    self.history: list[tuple[int, float]] = []
    self._sums: dict[str, float] = {}
    self._steps = 0
    self._timed_steps = 0
    self._t0 = time.perf_counter()
    self._writer = None
    if jax.process_index() == 0:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        self._writer = SummaryWriter(str(workdir / "tensorboard"))
      except ImportError:
        logging.warning("tensorboardX is not installed; metrics go to the log only")

  def restart_clock(self) -> None:
    """Times from now: keeps compilation and restores out of the throughput."""
    self._t0 = time.perf_counter()
    self._timed_steps = 0

  def update(self, step: int, metrics: Mapping[str, np.ndarray]) -> None:
    """Adds one step's (host) metrics; raises `NonFiniteLossError` on a NaN/Inf loss."""
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
      raise NonFiniteLossError(f"loss is {loss} at step {step}; the last checkpoint before it "
                               "is kept (lower the learning rate or check the data)")
    for k, v in metrics.items():
      self._sums[k] = self._sums.get(k, 0.0) + float(v)
    self._steps += 1
    self._timed_steps += 1
    self.history.append((step, loss))

  def write(self, step: int) -> dict[str, float]:
    """Logs the interval's means and throughput, then starts a new interval."""
    if not self._steps:
      return {}
    elapsed = max(time.perf_counter() - self._t0, 1e-9)
    s = self._sums
    steps_per_s = self._timed_steps / elapsed
    out = {
        "loss": s["loss"] / self._steps,
        "mlm_loss": s["mlm_loss_sum"] / max(s["mlm_weight"], 1.0),
        "mep_loss": s["mep_loss_sum"] / max(s["mep_weight"], 1.0),
        "mlm_accuracy": s["mlm_correct"] / max(s["mlm_weight"], 1.0),
        "entity_accuracy": s["mep_correct"] / max(s["mep_weight"], 1.0),
        "grad_norm": s["grad_norm"] / self._steps,
        "steps_per_s": steps_per_s,
        "tokens_per_s": steps_per_s * self.tokens_per_step,
    }
    if self.peak:
      out["mfu"] = steps_per_s * self.flops_per_step / self.peak
    eta = (self.total_steps - step) / steps_per_s if steps_per_s else float("inf")
    mfu = f"{out['mfu']:.1%}" if "mfu" in out else "n/a"
    line = (f"step {step}/{self.total_steps}  loss {out['loss']:.4f} (mlm {out['mlm_loss']:.4f}, "
            f"entity {out['mep_loss']:.4f})  acc mlm {out['mlm_accuracy']:.3f} entity "
            f"{out['entity_accuracy']:.3f}  {steps_per_s:.2f} steps/s  "
            f"{out['tokens_per_s']:.0f} tokens/s  MFU {mfu}  ETA {_duration(eta)}")
    if jax.process_index() == 0:
      print(line, flush=True)  # the console is the user interface; absl logs may be filtered
    logging.info("%s", line)
    if self._writer is not None:
      for k, v in out.items():
        self._writer.add_scalar(f"train/{k}", v, step)
      self._writer.flush()
    self._sums, self._steps = {}, 0
    self.restart_clock()
    return out

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
