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
"""

from __future__ import annotations

import argparse
import gc

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


def main() -> None:
  args = parse()
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
