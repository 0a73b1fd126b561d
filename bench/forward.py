"""CPU forward: luke-jax `LukeModel` (jit) vs `transformers.LukeModel` (eager, no_grad).

Same shapes, same inputs, same thread count, same process; both randomly initialised from one
config (nothing downloaded). Default: luke-base (12 x 768, 50,267 words, 500K x 256 entities,
entity-aware attention as released), batch 8 of 128 words + 16 entities. Both models are timed
in alternating rounds; the table shows medians after warm-up, and luke-jax's compile time
separately. The 500K-entity table is 128M parameters: both models together need about 2.5 GB.

  python bench/forward.py [--batch 8] [--words 128] [--entities 16] [--layers 12]
                          [--entity_vocab 500000] [--no_eaa] [--threads N] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import time

import common  # bench/common.py (sets sys.path for luke_jax)


def parse() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--words", type=int, default=128)
  parser.add_argument("--entities", type=int, default=16)
  parser.add_argument("--layers", type=int, default=12)
  parser.add_argument("--entity_vocab", type=int, default=500_000)
  parser.add_argument("--no_eaa", action="store_true", help="plain attention in both")
  parser.add_argument("--impl", default="fused", choices=["fused", "unfused"],
                      help="luke-jax attention_impl")
  common.add_common_flags(parser)
  args = parser.parse_args()
  common.default_repeats(args)
  if args.quick:
    args.batch, args.layers, args.entity_vocab = 2, 2, 20_000
  return args


def main() -> None:
  args = parse()
  threads = common.pin_threads(args.threads)
  import jax
  import torch
  import transformers
  from luke_jax.models import registry
  common.torch_threads(threads)

  cfg = common.luke_config("luke-base", num_hidden_layers=args.layers,
                           entity_vocab_size=args.entity_vocab,
                           use_entity_aware_attention=not args.no_eaa, attention_impl=args.impl)
  inputs = common.encoder_batch(cfg, args.batch, args.words, args.entities)

  # ---- luke-jax ----
  model = registry.build("LukeModel", cfg)
  params = registry.init_params("LukeModel", cfg, jax.random.PRNGKey(0))
  # Parameters are an argument, not a closed-over constant: XLA would otherwise fold 1 GB of
  # weights into the executable.
  forward = jax.jit(lambda p, x: model.apply({"params": p}, **x))
  jax_inputs = {k: jax.numpy.asarray(v) for k, v in inputs.items()}
  start = time.perf_counter()
  compiled = forward.lower(params, jax_inputs).compile()
  compile_s = time.perf_counter() - start
  ours = lambda: jax.block_until_ready(compiled(params, jax_inputs).last_hidden_state)

  # ---- transformers ----
  torch.manual_seed(0)
  reference = transformers.LukeModel(common.torch_config(cfg)).eval()
  torch_in = common.torch_inputs(inputs)

  def theirs():
    with torch.inference_mode():
      return reference(**torch_in).last_hidden_state

  # Same numbers? Different random weights, so only shapes are compared here; numerical
  # parity is tests/test_parity.py's job.
  assert tuple(theirs().shape) == tuple(ours().shape)
  times = common.timed_interleaved({"luke-jax": ours, "transformers": theirs},
                                   args.repeats, args.warmup)
  del params, reference
  gc.collect()

  tokens = args.batch * (args.words + args.entities)
  ref = times["transformers"]
  rows = []
  for name in ("luke-jax", "transformers"):
    runs = times[name]
    rows.append([name, f"{common.median(runs):.3f}", common.spread(runs),
                 f"{tokens / common.median(runs):,.0f}", common.ratio(runs, ref),
                 f"{compile_s:.1f}" if name == "luke-jax" else "-"])
  attention = "plain" if args.no_eaa else f"entity-aware ({args.impl})"
  common.print_table(
      f"CPU forward, {args.layers} x {cfg.hidden_size}, {cfg.vocab_size:,} words, "
      f"{cfg.entity_vocab_size:,} entities; batch {args.batch} x ({args.words} words + "
      f"{args.entities} entities), {attention} attention, float32; median of {args.repeats} "
      f"after {args.warmup} warm-up\n{common.environment(threads)}",
      ["", "median s", "min-max s", "tokens/s", "vs transformers (median; best)", "compile s"],
      rows)


if __name__ == "__main__":
  main()
