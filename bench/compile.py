"""Compile time of the luke-large pretraining step on CPU: scan over layers vs a layer loop.

The step is lowered from shapes only (`jax.eval_shape` of the state, `ShapeDtypeStruct`
batches), so no parameter is allocated and luke-large's 483M parameters cost no memory here.
Tracing + lowering and XLA's compilation are timed separately; each row is one fresh trace
and compile (nothing cached in between: every row is a different function).

  python bench/compile.py [--size large] [--batch 8] [--words 512] [--entities 128]
                          [--layers N] [--no_loop] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import time

import common  # bench/common.py (sets sys.path for luke_jax)


def parse() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", choices=["base", "large"], default="large")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--words", type=int, default=512)
  parser.add_argument("--entities", type=int, default=128)
  parser.add_argument("--layers", type=int, default=0, help="0: the preset's")
  parser.add_argument("--no_loop", action="store_true", help="skip the (slow) layer-loop row")
  common.add_common_flags(parser)
  args = parser.parse_args()
  if args.quick:
    args.layers = args.layers or 4
  return args


def main() -> None:
  args = parse()
  threads = common.pin_threads(args.threads)
  import jax
  import numpy as np

  overrides = dict(use_entity_aware_attention=False)  # as LUKE was pretrained
  if args.layers:
    overrides["num_hidden_layers"] = args.layers
  base = common.luke_config(f"luke-{args.size}", **overrides)
  example = common.pretraining_batch(base, 1, min(args.words, 64), min(args.entities, 16))
  # Shapes only: the same keys as a real batch, at the requested sizes.
  sizes = dict(words=args.words, entities=args.entities,
               masked_words=max(1, round(0.15 * args.words)),
               masked_entities=max(1, round(0.15 * args.entities)))
  batch = {k: jax.ShapeDtypeStruct((args.batch,) + _shape(k, v, sizes), np.int32)
           for k, v in example.items()}
  variants = {"scan over layers": dict(scan_layers=True),
              "scan over layers, remat full": dict(scan_layers=True, remat_policy="full")}
  if not args.no_loop:
    variants["layer loop"] = dict(scan_layers=False)
  rows = []
  for name, changes in variants.items():
    step = common.PretrainingStep(base.replace(**changes), abstract=True)
    start = time.perf_counter()
    with jax.set_mesh(step.mesh):
      lowered = step.step.lower(step.state, batch)
    lowered_s = time.perf_counter() - start
    start = time.perf_counter()
    lowered.compile()
    compile_s = time.perf_counter() - start
    rows.append([name, f"{lowered_s:.1f}", f"{compile_s:.1f}", f"{lowered_s + compile_s:.1f}"])
  common.print_table(
      f"CPU compile time of the pretraining step, luke-{args.size} "
      f"({base.num_hidden_layers} x {base.hidden_size}, {base.entity_vocab_size:,} entities), "
      f"batch {args.batch} x ({args.words} words + {args.entities} entities)\n"
      f"{common.environment(threads)}",
      ["", "trace + lower s", "XLA compile s", "total s"], rows)


def _shape(key: str, value, sizes: dict[str, int]) -> tuple[int, ...]:
  per_row = {"input_ids": (sizes["words"],), "attention_mask": (sizes["words"],),
             "entity_ids": (sizes["entities"],), "entity_attention_mask": (sizes["entities"],),
             "entity_position_ids": (sizes["entities"], value.shape[-1])}
  for prefix, size in (("mlm_", sizes["masked_words"]), ("mep_", sizes["masked_entities"])):
    if key.startswith(prefix):
      return (size,)
  return per_row[key]


if __name__ == "__main__":
  main()
