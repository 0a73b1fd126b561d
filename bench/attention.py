"""What entity-aware attention costs over plain attention, in luke-jax and in `transformers`.

Two tables, both at 512 words + 128 entities by default:

1. Model step: forward + backward of `LukeModel` (a fine-tuning step without the optimizer:
   loss = mean square of the word and entity outputs, dropout on) with plain attention, with
   entity-aware attention fused (luke-jax's default) and unfused (the four-block reference
   path); and the same for `transformers.LukeModel` (forward + `backward()`). The overhead
   column is each framework's entity-aware time over its own plain time. Entity vocabulary
   1,000 (the table does not touch attention).
2. Attention alone (`--kernels`): the pure functions of `luke_jax.models.attention` on
   projected queries, keys and values of one layer, forward + backward: the four-block
   reference, the fused explicit math, the doubled-head call through
   `jax.nn.dot_product_attention` (XLA on CPU; what cuDNN receives on GPU), and plain attention.

  python bench/attention.py [--batch 1] [--words 512] [--entities 128] [--layers 4]
                            [--size base|large] [--no_dropout] [--kernels] [--threads N]
                            [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import time

import common  # bench/common.py (sets sys.path for luke_jax)


def parse() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--words", type=int, default=512)
  parser.add_argument("--entities", type=int, default=128)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--size", choices=["base", "large"], default="base")
  parser.add_argument("--no_dropout", action="store_true")
  parser.add_argument("--kernels", action="store_true",
                      help="also time the attention functions alone")
  parser.add_argument("--no_reference", action="store_true", help="skip transformers")
  return common.parse_args(parser, layers=1)


def model_rows(args, threads) -> list[list[str]]:
  import jax
  import jax.numpy as jnp
  from luke_jax.models import registry

  dropout = 0.0 if args.no_dropout else 0.1
  base = common.luke_config(f"luke-{args.size}", num_hidden_layers=args.layers,
                            entity_vocab_size=1000, hidden_dropout_prob=dropout,
                            attention_probs_dropout_prob=dropout)
  inputs = common.encoder_batch(base, args.batch, args.words, args.entities)
  variants = {"plain": base.replace(use_entity_aware_attention=False),
              "entity-aware, fused": base.replace(attention_impl="fused"),
              "entity-aware, unfused": base.replace(attention_impl="unfused")}
  fns, compile_s = {}, {}
  jax_inputs = {k: jnp.asarray(v) for k, v in inputs.items()}
  all_params = {eaa: registry.init_params("LukeModel", base.replace(
      use_entity_aware_attention=eaa), jax.random.PRNGKey(0)) for eaa in (False, True)}
  for name, cfg in variants.items():
    model = registry.build("LukeModel", cfg)
    params = all_params[cfg.use_entity_aware_attention]

    def loss(p, x, rng, model=model):
      out = model.apply({"params": p}, **x, deterministic=dropout == 0.0,
                        rngs={"dropout": rng})
      return (jnp.mean(jnp.square(out.last_hidden_state))
              + jnp.mean(jnp.square(out.entity_last_hidden_state)))

    grad = jax.jit(jax.value_and_grad(loss))
    start = time.perf_counter()
    compiled = grad.lower(params, jax_inputs, jax.random.PRNGKey(1)).compile()
    compile_s[name] = time.perf_counter() - start
    fns[f"luke-jax {name}"] = (lambda c=compiled, p=params: jax.block_until_ready(
        c(p, jax_inputs, jax.random.PRNGKey(1))))

  if not args.no_reference:
    import torch
    import transformers
    torch_in = common.torch_inputs(inputs)
    for name, eaa in (("plain", False), ("entity-aware", True)):
      torch.manual_seed(0)
      model = transformers.LukeModel(common.torch_config(
          base.replace(use_entity_aware_attention=eaa))).train(dropout > 0)

      def step(model=model):
        model.zero_grad(set_to_none=True)
        out = model(**torch_in)
        loss = (out.last_hidden_state.square().mean()
                + out.entity_last_hidden_state.square().mean())
        loss.backward()
        return loss.item()

      fns[f"transformers {name}"] = step

  times = common.timed_interleaved(fns, args.repeats, args.warmup)
  rows = []
  for name, runs in times.items():
    plain = times[f"{name.split(' ')[0]} plain"]
    compiled_in = compile_s.get(name.removeprefix("luke-jax "))
    rows.append([name, f"{common.median(runs):.3f}", common.spread(runs),
                 common.ratio(runs, plain, percent=True),
                 f"{compiled_in:.1f}" if name.startswith("luke-jax") else "-"])
  del all_params
  gc.collect()
  return rows


def kernel_rows(args) -> list[list[str]]:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from luke_jax.models import attention

  cfg = common.luke_config(f"luke-{args.size}")
  heads, dim = cfg.num_attention_heads, cfg.head_dim
  b, t, e = args.batch, args.words, args.entities
  rng = np.random.RandomState(0)
  rand = lambda n: jnp.asarray(rng.randn(b, n, heads, dim), jnp.float32)
  queries = dict(w2w=rand(t), w2e=rand(t), e2w=rand(e), e2e=rand(e))
  key, value = rand(t + e), rand(t + e)
  mask = np.ones((b, t + e), np.int32)
  mask[:, t - t // 8:t] = 0  # some word padding
  mask = jnp.asarray(mask)
  plain_query = jnp.concatenate([queries["w2w"], queries["e2w"]], axis=1)

  def reference(q, k, v, m):
    return attention.entity_aware_attention(q, k, v, attention.attention_bias(m), t)[0]

  def fused(implementation):
    return lambda q, k, v, m: attention.fused_attention(q, k, v, m, t,
                                                        implementation=implementation)[0]

  variants = {
      "entity-aware, 4 blocks (unfused)": (reference, queries),
      "entity-aware, fused explicit": (fused("explicit"), queries),
      "entity-aware, doubled heads via jax.nn.dot_product_attention (xla)": (fused("xla"),
                                                                             queries),
      "plain, explicit": (fused("explicit"), plain_query),
      "plain, jax.nn.dot_product_attention (xla)": (fused("xla"), plain_query),
  }
  fns = {}
  for name, (fn, q) in variants.items():
    grad = jax.jit(jax.grad(lambda q, k, v, m, fn=fn: jnp.sum(jnp.square(fn(q, k, v, m))),
                            argnums=(0, 1, 2)))
    compiled = grad.lower(q, key, value, mask).compile()
    fns[name] = lambda c=compiled, q=q: jax.block_until_ready(c(q, key, value, mask))
  times = common.timed_interleaved(fns, args.repeats, args.warmup)
  plain = times["plain, explicit"]
  return [[name, f"{common.median(runs) * 1e3:.1f}", common.spread(runs, scale=1e3, digits=1),
           common.ratio(runs, plain)] for name, runs in times.items()]


def main() -> None:
  args = parse()
  threads = common.pin_threads(args.threads)
  common.torch_threads(threads)
  shape = f"batch {args.batch} x ({args.words} words + {args.entities} entities)"
  rows = model_rows(args, threads)
  dropout = "off" if args.no_dropout else "0.1"
  common.print_table(
      f"Entity-aware vs plain attention: LukeModel forward + backward, {args.layers} layers of "
      f"luke-{args.size}, {shape}, float32, dropout {dropout}; median of {args.repeats} after "
      f"{args.warmup} warm-up\n{common.environment(threads)}",
      ["", "median s", "min-max s", "vs plain, same framework (median; best)", "compile s"],
      rows)
  if args.kernels:
    common.print_table(
        f"Attention alone (one layer, luke-{args.size} heads), forward + backward, {shape}",
        ["", "median ms", "min-max ms", "vs plain explicit (median; best)"], kernel_rows(args))


if __name__ == "__main__":
  main()
