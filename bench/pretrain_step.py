"""CPU pretraining step: luke-jax vs `transformers.LukeForMaskedLM` + `torch.optim.AdamW`.

Same shapes, same masked positions, same thread count, same process, float32, dropout on
(training mode) in both. MLM and masked entity prediction on 15% of the word and entity
positions. luke-jax runs its pretraining step (`LukePretrainingModel`: heads only at the
masked positions, chunked entity softmax; `make_optimizer`'s AdamW; `steps.make_train_step`,
state donated); the reference runs `LukeForMaskedLM` with -100 labels elsewhere (it scores
every position over both vocabularies), `loss.backward()` and `AdamW.step()`.

Attention is plain, as LUKE was pretrained (`--eaa` for entity-aware). Both are timed in
alternating rounds, so load from other processes falls on both alike; at luke-base with 500K
entities each holds about 4 GB of parameters, gradients and Adam moments, about 10 GB at the
peak together (`--sequential` times one, frees it, then the other).

The table gives seconds per step, tokens/s, the model FLOP/s luke-jax's step achieves (FLOPs
counted as `luke_jax.training.metrics` does for the training loop's MFU) and MFU against the
device's dense peak: known for accelerators, `--peak_tflops` for a CPU (e.g. 2 cores x 2 FMA x
8 float32 lanes x 2 x clock for AVX2). On an accelerator `--only luke-jax` times luke-jax alone
(the reference stays a CPU torch model); `bench/accelerator.py` is the bf16 large-scale variant.

  python bench/pretrain_step.py [--size base|large] [--batch 8] [--words 128] [--entities 16]
                             [--layers 12] [--entity_vocab 500000] [--eaa] [--threads N]
                             [--repeats 5] [--quick] [--only luke-jax|transformers]
                             [--sequential] [--peak_tflops T]

`--loop` measures instead the host overhead per step of the real pretraining loop
(`luke_jax.pretraining.train`) on `configs/pretrain_tiny.py`, with a dataset built once from the
Wikipedia sample under `--data_dir`: two runs of `--loop_steps` S and 6S steps give the loop's
wall time per step (their difference cancels setup, compilation and the final save); the loop's
own jitted step, called S times on one batch and waited for each time, gives the step's time
(median). The difference is the host work per step that does not overlap the device (batch
assembly, metric fetches, checkpoint bookkeeping, logging); a loop that overlaps it shows
about 0:

  python bench/pretrain_step.py --loop [--loop_steps 20] [--loop_batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import tempfile
import time
from pathlib import Path

import common  # bench/common.py (sets sys.path for luke_jax)


def parse() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", choices=["base", "large"], default="base",
                      help="luke-base (12 x 768) or luke-large (24 x 1024) shapes")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--words", type=int, default=128)
  parser.add_argument("--entities", type=int, default=16)
  parser.add_argument("--layers", type=int, default=None, help="default: the preset's")
  parser.add_argument("--entity_vocab", type=int, default=500_000)
  parser.add_argument("--eaa", action="store_true", help="entity-aware attention in both")
  parser.add_argument("--impl", default="fused", choices=["fused", "unfused"],
                      help="luke-jax attention_impl")
  parser.add_argument("--only", choices=["luke-jax", "transformers"], default=None)
  parser.add_argument("--sequential", action="store_true",
                      help="time one framework, free it, then the other (half the memory; "
                           "more exposed to load changes)")
  parser.add_argument("--peak_tflops", type=float, default=None,
                      help="dense peak of the device for MFU (default: known accelerators only)")
  parser.add_argument("--loop", action="store_true",
                      help="host overhead per step of the tiny pretraining loop (see above)")
  parser.add_argument("--loop_steps", type=int, default=20)
  parser.add_argument("--loop_batch", type=int, default=16, help="--loop: global batch size")
  parser.add_argument("--log_every", type=int, default=25, help="--loop: console lines")
  parser.add_argument("--data_dir", default=str(Path(tempfile.gettempdir()) / "luke_jax_bench"))
  return common.parse_args(parser, batch=2, layers=2, entity_vocab=20_000)


def build_ours(cfg, batch):
  """(step function, compile seconds, first loss)."""
  import jax
  step = common.PretrainingStep(cfg)
  jax_batch = {k: jax.numpy.asarray(v) for k, v in batch.items()}
  compile_s = step.compile(jax_batch)
  return (lambda: step(jax_batch)), compile_s, step(jax_batch)


def build_theirs(cfg, batch):
  """(step function, first loss)."""
  import torch
  import transformers
  torch.manual_seed(0)
  model = transformers.LukeForMaskedLM(common.torch_config(cfg)).train()
  # The reference's optimiser settings (AdamW, eps 1e-6, weight decay 0.01).
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-6, weight_decay=0.01)
  inputs = common.torch_inputs(batch)
  labels = {k: torch.tensor(v) for k, v in common.torch_labels(batch).items()}

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = model(**inputs, **labels).loss
    loss.backward()
    optimizer.step()
    return loss.item()

  return step, step()


@contextlib.contextmanager
def _timing_the_step(times: list[float], calls: int, at: int = 3):
  """Wraps the loop's jitted step: at the loop's `at`-th step, it first runs `calls` times on
  that batch, each call waited for, and records the median (the state it returns is the loop's
  from then on)."""
  import jax
  from luke_jax.training import steps
  original = steps.make_train_step

  def make(*args, **kwargs):
    step = original(*args, **kwargs)
    count = [0]

    def wrapped(state, batch):
      count[0] += 1
      if count[0] == at:
        jax.block_until_ready(state)
        each = []
        for _ in range(calls):
          start = time.perf_counter()
          state = jax.block_until_ready(step(state, batch))[0]
          each.append(time.perf_counter() - start)
        times.append(common.median(each))
      return step(state, batch)
    return wrapped

  steps.make_train_step = make
  try:
    yield
  finally:
    steps.make_train_step = original


def loop_overhead(args) -> None:
  """`--loop`: the tiny pretraining loop's time per step against its step's own time."""
  import jax
  from absl import logging
  jax.config.update("jax_threefry_partitionable", True)
  logging.set_verbosity(logging.WARNING)
  from luke_jax.pretraining import train
  repo = Path(__file__).resolve().parents[1]
  demo = common.load_file(repo / "scripts" / "pretrain_demo.py")
  dataset_dir = demo.build_dataset(Path(args.data_dir), vocab_size=1000, entity_vocab_size=200,
                                   max_documents=40, workers=1)

  def run(steps: int, workdir: Path) -> float:
    config = demo.tiny_config()
    config.data.dataset_dir = str(dataset_dir)
    config.optim.warmup_steps = 1
    config.train.update(steps=steps, batch_size=args.loop_batch, log_every=args.log_every,
                        ckpt_every=10 ** 9, export=False)
    config.mesh = (("data", 1), ("fsdp", 1), ("tensor", 1))
    start = time.perf_counter()
    train.train_and_evaluate(config, workdir)
    return time.perf_counter() - start

  short, long = args.loop_steps, 6 * args.loop_steps
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    run(3, Path(tmp) / "warm")  # compiles once; the runs below hit the compilation cache
    for r in range(args.repeats):
      per_step = (run(long, Path(tmp) / f"long{r}") - run(short, Path(tmp) / f"short{r}")) / (
          long - short)
      alone: list[float] = []
      with _timing_the_step(alone, calls=short):
        run(short, Path(tmp) / f"alone{r}")
      rows.append((per_step, alone[0]))
  table = [[f"{loop * 1e3:.2f}", f"{step * 1e3:.2f}", f"{(loop - step) * 1e3:.2f}",
            f"{(loop - step) / loop:.0%}"] for loop, step in rows]
  median = lambda i: common.median([r[i] for r in rows])
  table.append(["median " + f"{median(0) * 1e3:.2f}", f"{median(1) * 1e3:.2f}",
                f"{(median(0) - median(1)) * 1e3:.2f}",
                f"{(median(0) - median(1)) / median(0):.0%}"])
  common.print_table(
      f"Pretraining loop, configs/pretrain_tiny.py, batch {args.loop_batch}, log_every "
      f"{args.log_every}, {jax.devices()[0].device_kind}; one row per repeat",
      ["loop ms/step", "step alone ms", "host overhead ms/step", "overhead share"], table)


def main() -> None:
  args = parse()
  if args.loop:
    common.pin_threads(args.threads)
    loop_overhead(args)
    return
  threads = common.pin_threads(args.threads)
  common.torch_threads(threads)
  layers = {"num_hidden_layers": args.layers} if args.layers else {}
  cfg = common.luke_config(f"luke-{args.size}", **layers,
                           entity_vocab_size=args.entity_vocab,
                           use_entity_aware_attention=args.eaa, attention_impl=args.impl)
  batch = common.pretraining_batch(cfg, args.batch, args.words, args.entities)
  which = [args.only] if args.only else ["luke-jax", "transformers"]
  steps, compile_s, losses, times = {}, {}, {}, {}
  for name in which:
    if name == "luke-jax":
      steps[name], compile_s[name], losses[name] = build_ours(cfg, batch)
    else:
      steps[name], losses[name] = build_theirs(cfg, batch)
      compile_s[name] = None
    if args.sequential:
      times[name] = common.timed(steps.pop(name), args.repeats, args.warmup)
      gc.collect()
  if not args.sequential:
    times = common.timed_interleaved(steps, args.repeats, args.warmup)
  results = {name: (times[name], "-" if compile_s[name] is None else f"{compile_s[name]:.1f}",
                    losses[name]) for name in which}

  import jax
  from luke_jax.training import metrics
  tokens = args.batch * (args.words + args.entities)
  flops = common.pretraining_flops(cfg, batch)
  peak = args.peak_tflops * 1e12 if args.peak_tflops else metrics.peak_flops(jax.devices()[0])
  ref = results["transformers"][0] if "transformers" in results else None
  rows = []
  for name, (runs, compiled_in, loss) in results.items():
    med = common.median(runs)
    ours = name == "luke-jax"
    rows.append([name, f"{med:.3f}", common.spread(runs), f"{tokens / med:,.0f}",
                 f"{flops / med / 1e12:.3f}" if ours else "-",
                 f"{flops / med / peak * 100:.1f}%" if ours and peak else "-",
                 common.ratio(runs, ref) if ref else "-", compiled_in, f"{loss:.2f}"])
  attention = f"entity-aware ({args.impl})" if args.eaa else "plain"
  masked = (batch["mlm_positions"].shape[1], batch["mep_positions"].shape[1])
  common.print_table(
      f"Pretraining step (MLM + MEP, AdamW) on {jax.devices()[0].device_kind}, "
      f"{cfg.num_hidden_layers} x {cfg.hidden_size}, "
      f"{cfg.vocab_size:,} words, {cfg.entity_vocab_size:,} entities; batch {args.batch} x "
      f"({args.words} words + {args.entities} entities), {masked[0]} words and {masked[1]} "
      f"entities masked per row, {attention} attention, float32, dropout 0.1; median of "
      f"{args.repeats} after {args.warmup} warm-up\n{common.environment(threads)}",
      ["", "median s", "min-max s", "tokens/s", "model TFLOP/s", "MFU",
       "vs transformers (median; best)", "compile s", "first loss"],
      rows)


if __name__ == "__main__":
  main()
