r"""The paper's jobs, compiled ahead of time for real TPU slices: fit, FLOPs and estimated MFU.

Runs `python -m luke_jax.aot` once per job (libtpu needed: `pip install -e '.[tpu]'`; no TPU)
and prints one Markdown table of all rows; `--json` keeps them. Each job is a run's own config
with the overrides shown; the estimates are the compiler-HLO roofline `luke_jax.aot` explains.

  python bench/tpu_jobs.py [--only SUBSTRING] [--json rows.json] [--dump_hlo DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_LARGE2 = "configs/pretrain.py:size=large,stage=2"
_MLUKE2 = "configs/pretrain.py:model=mluke,size=large,stage=2"
_SPLASH = ",attention=splash"
# Fine-tuning runs in bf16 on TPU (the configs' float32 is the parity mode: six MXU passes
# per float32 matmul at HIGHEST precision), otherwise as configured. SQuAD's 48 windows of 512
# need remat to fit 16 GiB (v5e) without accumulation: the tool's own advice.
_BF16 = ["--config.model.dtype=bfloat16"]
_REMAT = ["--config.model.remat_policy=minimal"]

# Meshes other than the configs' pure data parallelism, found with `--search`: on v5e-256 (8
# rows per chip) replicated Adam updates cost more than FSDP's all-gathers.
_MESH = {"v5e-256": ["--config.mesh=(('data', 16), ('fsdp', 16), ('tensor', 1))"]}

JOBS = [
    # (label, config, topology, overrides)
    *[(f"luke-large stage 2, {attn}", _LARGE2 + ("" if attn == "fused" else _SPLASH), topo,
       _MESH.get(topo, []))
      for topo in ("v5p-64", "v5e-256", "v4-128", "v6e-64") for attn in ("fused", "splash")],
    *[(f"mluke-large stage 2, {attn}", _MLUKE2 + ("" if attn == "fused" else _SPLASH), "v5p-64",
       []) for attn in ("fused", "splash")],
    *[(f"{task} fine-tuning, bf16" + (", remat minimal" if task == "squad" else ""),
       f"configs/finetune/{task}.py", topo, _BF16 + (_REMAT if task == "squad" else []))
      for task in ("squad", "conll2003") for topo in ("v5e-8", "v4-8")],
    # The attention kernel's memory at 512 + 128 tokens: the same step without attention
    # dropout (which the kernel lacks) and without remat (so what attention keeps for the
    # backward shows), fused attention vs splash.
    *[(f"luke-large stage 2, remat none, no attention dropout, {attn}",
       _LARGE2 + ("" if attn == "fused" else _SPLASH), "v5p-64",
       ["--config.model.remat_policy=none", "--config.model.attention_probs_dropout_prob=0.0"])
      for attn in ("fused", "splash")],
    *[(f"conll2003 fine-tuning, bf16, no attention dropout, {attn}",
       "configs/finetune/conll2003.py", "v5e-8",
       _BF16 + ["--config.model.attention_probs_dropout_prob=0.0",
                f"--config.model.attention_impl={attn}"]) for attn in ("fused", "splash")],
]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", default="", help="run the jobs whose label or topology has this")
  parser.add_argument("--json", default=None)
  parser.add_argument("--dump_hlo", default=None)
  args = parser.parse_args()
  rows, failed = [], []
  for label, config, topology, overrides in JOBS:
    if args.only and args.only not in f"{label} {topology}":
      continue
    with tempfile.TemporaryDirectory() as tmp:
      out = Path(tmp) / "rows.json"
      cmd = [sys.executable, "-m", "luke_jax.aot", f"--config={config}",
             f"--topology={topology}", f"--json={out}", *overrides]
      if args.dump_hlo:
        cmd.append(f"--dump_hlo={args.dump_hlo}")
      print(f"# {label} on {topology}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
      proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
      if not out.exists():
        failed.append(f"{label} on {topology}: exit {proc.returncode}: "
                      + (proc.stderr.strip().splitlines() or ["?"])[-1])
        continue
      for row in json.loads(out.read_text()):
        row["job"] = label
        rows.append(row)
        print(f"  {row['step']}: fits {row['fits']}, {row['hbm_total_bytes'] / 2**30:.1f} GiB, "
              f"est. {row['est_step_seconds']:.3f} s, MFU {row['est_mfu']:.1%}, compile "
              f"{row['compile_seconds']:.0f} s; {row['settings']}", file=sys.stderr, flush=True)
  from luke_jax.aot import report  # pylint: disable=g-import-not-at-top
  print(table(rows, report))
  print()
  print(report.ESTIMATE_NOTE)
  for line in failed:
    print(f"FAILED: {line}")
  if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
  return 1 if failed or not all(r["fits"] for r in rows) else 0


def table(rows, report) -> str:
  gib = lambda n: f"{n / 2**30:.1f}"
  header = ["job", "topology", "chips", "mesh", "step", "fits", "params+opt", "batch", "temp",
            "total / HBM GiB", "compiled / model FLOPs", "est. step s", "est. tokens/s",
            "est. MFU", "compile s"]
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  for r in rows:
    lines.append("| " + " | ".join([
        r["job"], r["topology"], str(r["chips"]), r["mesh"], r["step"],
        "yes" if r["fits"] else "**no**", gib(r["hbm_params_opt_bytes"]),
        gib(r["hbm_batch_bytes"]), gib(r["hbm_temp_bytes"]),
        f"{gib(r['hbm_total_bytes'])} / {gib(r['hbm_capacity_bytes'])}",
        f"{r['compiled_flops'] / r['model_flops']:.2f}", f"{r['est_step_seconds']:.3f}",
        f"{r['est_tokens_per_s']:,.0f}", f"{r['est_mfu']:.1%}",
        f"{r['compile_seconds']:.0f}"]) + " |")
  return "\n".join(lines)


if __name__ == "__main__":
  sys.path.insert(0, str(ROOT))
  sys.exit(main())
