"""Shared pieces of the model benchmarks: thread pinning, timing, tables, shapes, batches.

Nothing here imports jax or torch at module level: `pin_threads` must run before jax starts
(XLA sizes its thread pools once).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_file(path: Path):
  """A Python file (a script or a config, not a package module) loaded as a module."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def add_common_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--threads", type=int, default=0,
                      help="cores (and torch threads) for both frameworks (0: every core this "
                           "process may use, which is XLA's default)")
  parser.add_argument("--repeats", type=int, default=None,
                      help="timed runs per row (median); default 5, 2 with --quick")
  parser.add_argument("--warmup", type=int, default=1, help="untimed runs after compilation")
  parser.add_argument("--quick", action="store_true",
                      help="small shapes and 2 repeats: a smoke run, not a measurement")


def parse_args(parser: argparse.ArgumentParser, **quick) -> argparse.Namespace:
  """Adds the common flags, parses, fills the default repeats and, with `--quick`, replaces
  the arguments named in `quick` by its (small) values."""
  add_common_flags(parser)
  args = parser.parse_args()
  default_repeats(args)
  if args.quick:
    for name, value in quick.items():
      setattr(args, name, value)
  return args


def default_repeats(args: argparse.Namespace) -> None:
  if args.repeats is None:
    args.repeats = 2 if args.quick else 5


def pin_threads(threads: int) -> int:
  """Gives XLA and torch the same cores; call before importing jax.

  XLA:CPU sizes its thread pools from the cores the process may run on, and its
  `intra_op_parallelism_threads` flag does not bound the XNNPACK matmuls, so `threads` is
  enforced by CPU affinity: the process keeps the first `threads` of its allowed cores, and
  `torch_threads` then gives torch as many threads. Returns the count used.
  """
  allowed = sorted(os.sched_getaffinity(0))
  if threads and threads < len(allowed):
    os.sched_setaffinity(0, allowed[:threads])
    return threads
  return len(allowed)


def torch_threads(threads: int) -> None:
  import torch
  torch.set_num_threads(threads)


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
  """Wall-clock seconds of `repeats` calls after `warmup` untimed ones; `fn` must block until
  its result is ready (`jax.block_until_ready`)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def timed_interleaved(fns: dict[str, Callable[[], object]], repeats: int,
                      warmup: int) -> dict[str, list[float]]:
  """`timed` for several functions, one call of each per round, so that load from other
  processes falls on every row alike rather than on whichever ran during a busy spell."""
  for _ in range(warmup):
    for fn in fns.values():
      fn()
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return times


def median(times: list[float]) -> float:
  return statistics.median(times)


def spread(times: list[float], scale: float = 1.0, digits: int = 3) -> str:
  """`min-max` of the runs (times `scale`), to show how noisy a row was."""
  return f"{min(times) * scale:.{digits}f}-{max(times) * scale:.{digits}f}"


def ratio(runs: list[float], reference: list[float], percent: bool = False) -> str:
  """`runs` over `reference` by medians and by best runs: on a loaded machine the best run is
  the least disturbed one, the median the typical one."""
  values = (median(runs) / median(reference), min(runs) / min(reference))
  if percent:
    return "; ".join(f"{(v - 1) * 100:+.1f}%" for v in values)
  return "; ".join(f"{v:.2f}x" for v in values)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
  """A Markdown table (pasteable into the README)."""
  print(f"\n{title}\n")
  print("| " + " | ".join(header) + " |")
  print("|" + "|".join("---" for _ in header) + "|")
  for row in rows:
    print("| " + " | ".join(row) + " |")


def environment(threads: int) -> str:
  """One line: machine, thread count and library versions."""
  import jax
  import flax
  parts = [f"{platform.processor() or platform.machine()}", _cpu_model(),
           f"{os.cpu_count()} cores visible, pinned to {threads} core{'s' if threads > 1 else ''} "
           f"(torch: {threads} thread{'s' if threads > 1 else ''})",
           f"jax {jax.__version__}", f"flax {flax.__version__}"]
  try:
    import torch
    import transformers
    parts += [f"torch {torch.__version__}", f"transformers {transformers.__version__}"]
  except ImportError:
    pass
  return "; ".join(parts)


def _cpu_model() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return "unknown CPU"


def luke_config(name: str = "luke-base", **overrides):
  """A luke-jax `LukeConfig` from a preset (`luke-base`: 12 x 768, 50,267 words, 500K x 256
  entities), dropout as released (0.1)."""
  from luke_jax.models.config import preset
  return preset(name, **overrides)


def torch_config(cfg):
  """The same shapes as a `transformers.LukeConfig` (random init, nothing downloaded)."""
  import transformers
  d = cfg.to_hf_dict()
  d.pop("luke_jax")
  d.pop("model_type")
  return transformers.LukeConfig(**d)


def encoder_batch(cfg, batch: int, words: int, entities: int, mention: int = 3,
                  seed: int = 0) -> dict[str, np.ndarray]:
  """Full-length random inputs (no padding): what a packed pretraining batch looks like."""
  rng = np.random.RandomState(seed)
  input_ids = rng.randint(4, cfg.vocab_size, (batch, words)).astype(np.int32)
  input_ids[:, 0] = 0
  inputs = dict(input_ids=input_ids, attention_mask=np.ones((batch, words), np.int32))
  if entities:
    starts = rng.randint(1, words - mention, (batch, entities))
    positions = starts[..., None] + np.arange(mention)
    positions[..., mention - 1] = -1  # mentions of mention - 1 tokens, -1 padded
    inputs.update(entity_ids=rng.randint(4, cfg.entity_vocab_size, (batch, entities)).astype(
                      np.int32),
                  entity_position_ids=positions.astype(np.int32),
                  entity_attention_mask=np.ones((batch, entities), np.int32))
  return inputs


def masked_positions(batch: int, length: int, count: int, seed: int) -> np.ndarray:
  """`count` distinct positions per row (never 0, the `<s>` token)."""
  rng = np.random.RandomState(seed)
  low = 1 if length > count else 0
  return np.stack([np.sort(rng.choice(np.arange(low, length), count, replace=False))
                   for _ in range(batch)]).astype(np.int32)


def pretraining_batch(cfg, batch: int, words: int, entities: int, mask_rate: float = 0.15,
                      seed: int = 0) -> dict[str, np.ndarray]:
  """`encoder_batch` plus `mask_rate` of the words and entities masked, in the
  `luke_jax.data.masking` layout (positions, labels, weights)."""
  inputs = encoder_batch(cfg, batch, words, entities, seed=seed)
  n_words = max(1, round(mask_rate * words))
  n_entities = max(1, round(mask_rate * entities))
  mlm_positions = masked_positions(batch, words, n_words, seed + 2)
  mep_positions = masked_positions(batch, entities, n_entities, seed + 3)
  take = lambda a, p: np.take_along_axis(a, p, axis=1)
  inputs.update(
      mlm_positions=mlm_positions, mlm_labels=take(inputs["input_ids"], mlm_positions),
      mlm_weights=np.ones((batch, n_words), np.int32),
      mep_positions=mep_positions, mep_labels=take(inputs["entity_ids"], mep_positions),
      mep_weights=np.ones((batch, n_entities), np.int32))
  rows = np.arange(batch)[:, None]
  inputs["input_ids"] = inputs["input_ids"].copy()
  inputs["input_ids"][rows, mlm_positions] = cfg.vocab_size - 1  # <mask>
  inputs["entity_ids"] = inputs["entity_ids"].copy()
  inputs["entity_ids"][rows, mep_positions] = 2  # [MASK]
  return inputs


def torch_labels(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """`LukeForMaskedLM` labels for the same masked positions (-100 elsewhere)."""
  labels = np.full(batch["input_ids"].shape, -100, np.int64)
  entity_labels = np.full(batch["entity_ids"].shape, -100, np.int64)
  rows = np.arange(labels.shape[0])[:, None]
  labels[rows, batch["mlm_positions"]] = batch["mlm_labels"]
  entity_labels[rows, batch["mep_positions"]] = batch["mep_labels"]
  return dict(labels=labels, entity_labels=entity_labels)


def torch_inputs(batch: dict[str, np.ndarray]) -> dict:
  import torch
  keys = ("input_ids", "attention_mask", "entity_ids", "entity_position_ids",
          "entity_attention_mask")
  return {k: torch.tensor(batch[k], dtype=torch.long) for k in keys if k in batch}


def pretraining_flops(cfg, batch: dict) -> float:
  """Model FLOPs of one luke-jax pretraining step on `batch` (`luke_jax.training.metrics`'
  count: 6 x dense weights x tokens, attention scores, heads at the masked positions only)."""
  from luke_jax.models import registry
  from luke_jax.training import metrics
  rows, words = batch["input_ids"].shape
  entities = batch["entity_ids"].shape[1]
  return rows * metrics.flops_per_example(
      cfg, registry.abstract_params("LukeForMaskedLM", cfg), words, entities,
      batch["mlm_positions"].shape[1], batch["mep_positions"].shape[1])


class PretrainingStep:
  """luke-jax's pretraining step on one device: `LukePretrainingModel`'s objective +
  `make_optimizer` + `steps.make_train_step` (the state is donated, as in `run_pretrain.py`)."""

  def __init__(self, cfg, seed: int = 0, abstract: bool = False):
    import flax.linen as nn
    import jax
    from luke_jax import sharding
    from luke_jax.models import registry
    from luke_jax.pretraining import model as model_lib
    from luke_jax.training import optim, state as state_lib, steps
    self.mesh = sharding.create_mesh([("data", 1), ("fsdp", 1), ("tensor", 1)],
                                     jax.devices()[:1])
    self.model = model_lib.LukePretrainingModel(cfg)
    boxed = registry.abstract_params("LukeForMaskedLM", cfg, boxed=True)
    self.tx = optim.make_optimizer(
        dict(learning_rate=1e-4, warmup_steps=10, total_steps=1000), nn.unbox(boxed))
    abstract_state = state_lib.abstract_state(boxed, self.tx)
    self.shardings = state_lib.state_shardings(boxed, abstract_state.opt_state, self.mesh,
                                               sharding.DEFAULT_RULES)
    self.step = steps.make_train_step(model_lib.PretrainingObjective(self.model), self.tx, 1,
                                      self.shardings, sharding.batch_sharding(self.mesh))
    param_key, rng = jax.random.split(jax.random.PRNGKey(seed))
    with jax.set_mesh(self.mesh):
      self.state = (state_lib.abstract_with_shardings(abstract_state, self.shardings)
                    if abstract else state_lib.create_state(
                        lambda: registry.init_params("LukeForMaskedLM", cfg, param_key),
                        self.tx, self.shardings, rng))

  def compile(self, batch) -> float:
    """Seconds to lower and compile the step for `batch`'s shapes (arrays or shape structs)."""
    import jax
    start = time.perf_counter()
    with jax.set_mesh(self.mesh):
      self.compiled = self.step.lower(self.state, batch).compile()
    return time.perf_counter() - start

  def __call__(self, batch) -> float:
    """One update (the state is replaced); returns the loss."""
    import jax
    with jax.set_mesh(self.mesh):
      self.state, metrics = self.compiled(self.state, batch)
    return float(jax.block_until_ready(metrics["loss"]))
