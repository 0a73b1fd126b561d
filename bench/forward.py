"""CPU forward: luke-jax `LukeModel` (jit) vs `transformers.LukeModel` (eager, no_grad).

Same shapes, same inputs, same thread count, same process; both randomly initialised from one
config (nothing downloaded). Default: luke-base (12 x 768, 50,267 words, 500K x 256 entities,
entity-aware attention as released), batch 8 of 128 words + 16 entities. Both models are timed
in alternating rounds; the table shows medians after warm-up, and luke-jax's compile time
separately. The 500K-entity table is 128M parameters: both models together need about 2.5 GB.

  python bench/forward.py [--batch 8] [--words 128] [--entities 16] [--layers 12]
                          [--entity_vocab 500000] [--no_eaa] [--threads N] [--repeats 5] [--quick]
                          [--gemms]

`--gemms` adds a second table: every matrix product of one encoder layer at these shapes, timed
alone in each framework (torch `F.linear`/`matmul`, XLA jit), summed over the layers. The sum
at torch's own speed is the part of the `transformers` forward no implementation can skip
without a faster matmul library; it bounds the ratio a float32 forward can reach on the
machine.
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
  parser.add_argument("--gemms", action="store_true",
                      help="also time the encoder's matrix products alone (GEMM floor)")
  return common.parse_args(parser, batch=2, layers=2, entity_vocab=20_000)


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
  if args.gemms:
    gemm_floor(cfg, args, common.median(ref))


def layer_gemms(cfg, batch: int, words: int, entities: int, entity_aware: bool):
  """The matrix products of one encoder layer: (name, count, batch dims, m, k, n)."""
  h, inner, heads = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads
  tokens = batch * (words + entities)
  head_dim = h // heads
  if entity_aware:
    queries = [("query, w2e_query (words)", 2, (), batch * words, h, h)]
    if entities:
      queries.append(("e2w_query, e2e_query (entities)", 2, (), batch * entities, h, h))
  else:
    queries = [("query", 1, (), tokens, h, h)]
  seq = words + entities
  return queries + [
      ("key, value, attention output", 3, (), tokens, h, h),
      ("intermediate", 1, (), tokens, h, inner),
      ("output", 1, (), tokens, inner, h),
      ("attention scores q.k", 1, (batch * heads,), seq, head_dim, seq),
      ("attention probs.v", 1, (batch * heads,), seq, seq, head_dim),
  ]


def gemm_floor(cfg, args, torch_forward_s: float) -> None:
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch

  highest = jax.lax.Precision.HIGHEST
  rows, totals = [], {"torch": 0.0, "xla": 0.0}
  for name, count, lead, m, k, n in layer_gemms(cfg, args.batch, args.words, args.entities,
                                                 not args.no_eaa):
    rng = np.random.RandomState(0)
    x = rng.standard_normal(lead + (m, k)).astype(np.float32)
    w = rng.standard_normal(lead + (k, n)).astype(np.float32)
    bias = rng.standard_normal((n,)).astype(np.float32)
    if lead:  # batched attention products, no bias
      tx, tw = torch.from_numpy(x), torch.from_numpy(w)
      jx, jw = jnp.asarray(x), jnp.asarray(w)
      xla = jax.jit(lambda a, b: jnp.matmul(a, b, precision=highest))
      fns = {"torch": lambda: torch.matmul(tx, tw),
             "xla": lambda: jax.block_until_ready(xla(jx, jw))}
    else:  # projections as nn.Linear / DenseGeneral do them: [m, k] @ [k, n] + bias
      tx, tw, tb = torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(w.T)), \
          torch.from_numpy(bias)
      jx, jw, jb = jnp.asarray(x), jnp.asarray(w), jnp.asarray(bias)
      xla = jax.jit(lambda a, b, c: jnp.matmul(a, b, precision=highest) + c)
      fns = {"torch": lambda: torch.nn.functional.linear(tx, tw, tb),
             "xla": lambda: jax.block_until_ready(xla(jx, jw, jb))}
    with torch.inference_mode():
      times = common.timed_interleaved(fns, max(args.repeats, 10), args.warmup + 1)
    flops = 2.0 * int(np.prod(lead or (1,))) * m * k * n
    per = {key: common.median(t) for key, t in times.items()}
    for key in totals:
      totals[key] += count * per[key] * args.layers
    shape = "x".join(map(str, lead)) + (" x " if lead else "") + f"[{m}, {k}] @ [{k}, {n}]"
    rows.append([name, shape, str(count), f"{per['torch'] * 1e3:.2f}",
                 f"{flops / per['torch'] / 1e9:.0f}", f"{per['xla'] * 1e3:.2f}",
                 f"{flops / per['xla'] / 1e9:.0f}", f"{per['xla'] / per['torch']:.2f}x"])
  common.print_table(
      f"Matrix products of one layer, float32, each timed alone (median of "
      f"{max(args.repeats, 10)})",
      ["product", "shape", "per layer", "torch ms", "torch GFLOP/s", "XLA ms", "XLA GFLOP/s",
       "XLA / torch"], rows)
  common.print_table(
      f"GEMM floor of the {args.layers}-layer forward (the products above x count x layers)",
      ["", "seconds", "of the transformers forward"],
      [["transformers forward (table above)", f"{torch_forward_s:.3f}", "1.00x"],
       ["its matrix products at torch's speed", f"{totals['torch']:.3f}",
        f"{totals['torch'] / torch_forward_s:.2f}x"],
       ["the same products at XLA's speed", f"{totals['xla']:.3f}",
        f"{totals['xla'] / torch_forward_s:.2f}x"],
       ["target (0.8x)", f"{0.8 * torch_forward_s:.3f}", "0.80x"]])


if __name__ == "__main__":
  main()
