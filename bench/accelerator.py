"""Accelerator throughput (an H200 in the issue): pretraining step MFU, inference, fine-tuning.

Three tables on the default JAX device, bf16 compute with float32 parameters:

1. luke-large pretraining step (scan over layers, plain attention as LUKE was pretrained,
   masked-only heads, AdamW): seconds per step, tokens/s and MFU against the device's dense
   peak (`luke_jax.training.metrics`: 989 TFLOP/s on H100/H200) with the FLOPs of
   `metrics.flops_per_example` (6·N·T + attention + masked heads), for each `--micro_batches`
   size; a size that runs out of memory is reported as such (the largest without remat is the
   last that fits).
2. Inference: `LukeModel` forward, sequences/s, entity-aware attention (fused: one cuDNN call
   per layer where it applies).
3. Fine-tuning step: `LukeModel` forward + backward with entity-aware attention, fused and
   unfused, and plain attention, at the same shape (dropout 0.1: the explicit fused math).

On CPU `--quick` runs a 2-layer model as a smoke test; the figures mean nothing there.

  python bench/accelerator.py [--size large] [--words 512] [--entities 128]
                              [--micro_batches 16,32,64] [--infer_batch 64] [--tune_batch 32]
                              [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import time

import common  # bench/common.py (sets sys.path for luke_jax)


def parse() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", choices=["base", "large"], default="large")
  parser.add_argument("--words", type=int, default=512)
  parser.add_argument("--entities", type=int, default=128)
  parser.add_argument("--micro_batches", default="16,32,64")
  parser.add_argument("--infer_batch", type=int, default=64)
  parser.add_argument("--tune_batch", type=int, default=32)
  parser.add_argument("--remat", default="none", choices=["none", "minimal", "full"])
  parser.add_argument("--skip", default="", help="comma list of tables to skip: train,infer,tune")
  return common.parse_args(parser, words=64, entities=16, micro_batches="2", infer_batch=2,
                           tune_batch=2)


def _config(args, **changes):
  overrides = dict(dtype="bfloat16", scan_layers=True, remat_policy=args.remat)
  if args.quick:
    overrides.update(num_hidden_layers=2, entity_vocab_size=1000)
  return common.luke_config(f"luke-{args.size}", **{**overrides, **changes})


def _is_oom(err: Exception) -> bool:
  text = str(err)
  return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def train_rows(args) -> list[list[str]]:
  import jax
  from luke_jax.training import metrics
  cfg = _config(args, use_entity_aware_attention=False)
  device = jax.devices()[0]
  peak = metrics.peak_flops(device)
  rows = []
  for size in [int(x) for x in args.micro_batches.split(",")]:
    batch = common.pretraining_batch(cfg, size, args.words, args.entities)
    try:
      step = common.PretrainingStep(cfg)
      jax_batch = {k: jax.device_put(v) for k, v in batch.items()}
      compile_s = step.compile(jax_batch)
      step(jax_batch)
      runs = common.timed(lambda: step(jax_batch), args.repeats, args.warmup)
    except Exception as err:  # pylint: disable=broad-except
      if not _is_oom(err):
        raise
      rows.append([str(size), "out of memory", "-", "-", "-"])
      break
    finally:
      step = None
    med = common.median(runs)
    flops = common.pretraining_flops(cfg, batch)
    mfu = f"{flops / med / peak * 100:.1f}%" if peak else "-"
    rows.append([str(size), f"{med:.3f}", f"{size * (args.words + args.entities) / med:,.0f}",
                 mfu, f"{compile_s:.1f}"])
  return rows


def _encoder(args, cfg, batch_size, train: bool):
  """A blocking call of the jitted forward, or forward + backward of a scalar loss."""
  import jax
  import jax.numpy as jnp
  from luke_jax.models import registry
  model = registry.build("LukeModel", cfg)
  params = registry.init_params("LukeModel", cfg, jax.random.PRNGKey(0))
  inputs = {k: jnp.asarray(v) for k, v in common.encoder_batch(
      cfg, batch_size, args.words, args.entities).items()}
  if not train:
    fn = jax.jit(lambda p: model.apply({"params": p}, **inputs).last_hidden_state)
    return lambda: jax.block_until_ready(fn(params))

  def loss(p):
    out = model.apply({"params": p}, **inputs, deterministic=False,
                      rngs={"dropout": jax.random.PRNGKey(1)})
    return (jnp.mean(jnp.square(out.last_hidden_state.astype(jnp.float32)))
            + jnp.mean(jnp.square(out.entity_last_hidden_state.astype(jnp.float32))))

  fn = jax.jit(jax.value_and_grad(loss))
  return lambda: jax.block_until_ready(fn(params))


def _timed_with_compile(run, args) -> tuple[list[float], float]:
  start = time.perf_counter()
  run()
  first = time.perf_counter() - start
  return common.timed(run, args.repeats, args.warmup), first


def infer_rows(args) -> list[list[str]]:
  rows = []
  for name, changes in (("entity-aware, fused", {}),
                        ("entity-aware, unfused", dict(attention_impl="unfused")),
                        ("plain", dict(use_entity_aware_attention=False))):
    run = _encoder(args, _config(args, **changes), args.infer_batch, train=False)
    runs, first = _timed_with_compile(run, args)
    med = common.median(runs)
    rows.append([name, str(args.infer_batch), f"{med * 1e3:.1f}",
                 f"{args.infer_batch / med:,.0f}", f"{first:.1f}"])
  return rows


def tune_rows(args) -> list[list[str]]:
  rows, plain = [], None
  for name, changes in (("plain", dict(use_entity_aware_attention=False)),
                        ("entity-aware, fused", {}),
                        ("entity-aware, unfused", dict(attention_impl="unfused"))):
    run = _encoder(args, _config(args, **changes), args.tune_batch, train=True)
    runs, first = _timed_with_compile(run, args)
    med = common.median(runs)
    plain = plain or med
    rows.append([name, str(args.tune_batch), f"{med * 1e3:.1f}",
                 f"{(med / plain - 1) * 100:+.1f}%", f"{first:.1f}"])
  return rows


def main() -> None:
  args = parse()
  import jax
  skip = set(filter(None, args.skip.split(",")))
  device = jax.devices()[0]
  shape = f"{args.words} words + {args.entities} entities"
  where = f"{device.device_kind} ({device.platform}); jax {jax.__version__}"
  if "train" not in skip:
    common.print_table(
        f"Pretraining step, luke-{args.size}, bf16 compute, scan over layers, remat "
        f"{args.remat}, {shape}; {where}",
        ["micro-batch", "s/step", "tokens/s", "MFU (dense peak)", "compile + first s"],
        train_rows(args))
  if "infer" not in skip:
    common.print_table(
        f"Inference, LukeModel forward, luke-{args.size}, bf16, {shape}; {where}",
        ["attention", "batch", "ms/batch", "sequences/s", "compile + first s"],
        infer_rows(args))
  if "tune" not in skip:
    common.print_table(
        f"Fine-tuning step (forward + backward, dropout 0.1), luke-{args.size}, bf16, {shape}; "
        f"{where}", ["attention", "batch", "ms/step", "vs plain", "compile + first s"],
        tune_rows(args))


if __name__ == "__main__":
  main()
