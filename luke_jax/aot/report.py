"""Compile a job's steps for a topology and turn the compiled programs into table rows."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax

from luke_jax.aot import hlo_cost
from luke_jax.aot.jobs import Job, Step
from luke_jax.aot.topology import GIB, Topology

# The columns of the table and the keys of `--json` rows, in order.
KEYS = ("topology", "chips", "mesh", "step", "fits", "hbm_params_opt_bytes", "hbm_batch_bytes",
        "hbm_temp_bytes", "hbm_total_bytes", "hbm_capacity_bytes", "compiled_flops",
        "model_flops", "est_step_seconds", "est_tokens_per_s", "est_mfu", "compile_seconds")


@dataclasses.dataclass
class Row:
  topology: str
  chips: int
  mesh: str
  step: str
  fits: bool
  hbm_params_opt_bytes: int
  hbm_batch_bytes: int
  hbm_temp_bytes: int
  hbm_total_bytes: int
  hbm_capacity_bytes: int
  compiled_flops: float
  model_flops: float
  est_step_seconds: float
  est_tokens_per_s: float
  est_mfu: float
  compile_seconds: float
  # Diagnostics (also in the JSON): what the estimate is made of and what the HLO holds.
  settings: dict = dataclasses.field(default_factory=dict)
  compiler_flops: float = 0.0              # cost_analysis()["flops"] x chips (loops once)
  est_compute_seconds: float = 0.0
  est_collective_seconds: float = 0.0
  est_async_copy_seconds: float = 0.0
  hbm_bytes_accessed: float = 0.0          # per device, per step
  f32_highest_dots: int = 0
  entity_table_all_gathers: int = 0
  host_transfers: int = 0
  unknown_trip_counts: int = 0
  notes: list = dataclasses.field(default_factory=list)
  top_ops: list = dataclasses.field(default_factory=list)

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _settings(cfg) -> dict:
  return dict(dtype=cfg.dtype, scan_layers=cfg.scan_layers, remat_policy=cfg.remat_policy,
              attention_impl=cfg.attention_impl)


def mesh_text(mesh) -> str:
  return "x".join(f"{name}{size}" for name, size in mesh.shape.items())


def compile_step(job: Job, step: Step):
  """Lowers and compiles `step` under the job's mesh and rules; returns (compiled, seconds)."""
  start = time.perf_counter()
  with jax.set_mesh(job.mesh), nn.logical_axis_rules(job.rules):
    compiled = step.fn.lower(*step.args).compile()
  return compiled, time.perf_counter() - start


def analyse(job: Job, step: Step, topology: Topology, compiled, seconds: float,
            dump_dir: Path | None = None) -> Row:
  chip = topology.chip
  text = compiled.as_text()
  if dump_dir is not None:
    dump_dir.mkdir(parents=True, exist_ok=True)
    cfg = job.model_config
    (dump_dir / f"{topology.libtpu_name.replace(':', '_')}_{mesh_text(job.mesh)}_"
     f"{'scan' if cfg.scan_layers else 'loop'}_remat-{cfg.remat_policy}_{cfg.attention_impl}_"
     f"{step.name}.hlo.txt").write_text(text)
  cost = hlo_cost.analyse(text, chip.peak_flops, chip.hbm_bandwidth, chip.ici_bandwidth)
  memory = compiled.memory_analysis()
  total = (memory.argument_size_in_bytes + memory.output_size_in_bytes
           - memory.alias_size_in_bytes + memory.temp_size_in_bytes
           + memory.generated_code_size_in_bytes)
  chips = topology.chips
  est = cost.seconds
  compiler = compiled.cost_analysis() or {}
  if isinstance(compiler, (list, tuple)):
    compiler = compiler[0] if compiler else {}
  cfg = job.model_config
  return Row(
      topology=topology.name, chips=chips, mesh=mesh_text(job.mesh), step=step.name,
      fits=total <= chip.hbm_bytes, hbm_params_opt_bytes=step.state_bytes,
      hbm_batch_bytes=step.batch_bytes, hbm_temp_bytes=int(memory.temp_size_in_bytes),
      hbm_total_bytes=int(total), hbm_capacity_bytes=chip.hbm_bytes,
      compiled_flops=cost.flops * chips, model_flops=step.model_flops,
      est_step_seconds=est, est_tokens_per_s=step.tokens / est if est > 0 else 0.0,
      est_mfu=step.model_flops / (chips * chip.peak_flops * est) if est > 0 else 0.0,
      compile_seconds=seconds,
      settings=_settings(cfg),
      compiler_flops=float(compiler.get("flops", 0.0)) * chips,
      est_compute_seconds=cost.compute_seconds, est_collective_seconds=cost.collective_seconds,
      est_async_copy_seconds=cost.async_move_seconds,
      hbm_bytes_accessed=cost.bytes, f32_highest_dots=len(cost.f32_highest_dots),
      entity_table_all_gathers=cost.all_gathers_with_dim(cfg.entity_vocab_size),
      host_transfers=len(cost.host_transfers), unknown_trip_counts=cost.unknown_trip_counts,
      notes=list(job.notes),
      top_ops=[dict(op=k, seconds=s, flops=f, bytes=b) for k, s, f, b in cost.top(12)])


def out_of_memory_row(job: Job, step: Step, topology: Topology, error: Exception,
                      seconds: float) -> Row | None:
  """The row of a step the TPU compiler refused for want of HBM (None for other errors):
  the compiler stops at buffer assignment, so only its temporaries' total is known."""
  text = str(error)
  if "RESOURCE_EXHAUSTED" not in text and "Ran out of memory" not in text:
    return None
  match = re.search(r"temporaries \(([0-9.]+)([KMGT])\)", text)
  temp = int(float(match.group(1)) * 1024 ** "KMGT".index(match.group(2)) * 1024) if match else 0
  cfg = job.model_config
  line = next((l for l in text.splitlines() if "memory" in l.lower()), text.splitlines()[0])
  return Row(
      topology=topology.name, chips=topology.chips, mesh=mesh_text(job.mesh), step=step.name,
      fits=False, hbm_params_opt_bytes=step.state_bytes, hbm_batch_bytes=step.batch_bytes,
      hbm_temp_bytes=temp, hbm_total_bytes=step.state_bytes + step.batch_bytes + temp,
      hbm_capacity_bytes=topology.chip.hbm_bytes, compiled_flops=0.0,
      model_flops=step.model_flops, est_step_seconds=0.0, est_tokens_per_s=0.0, est_mfu=0.0,
      compile_seconds=seconds,
      settings=_settings(cfg),
      notes=list(job.notes) + [f"the TPU compiler: {line.strip()[:300]}"])


def run(job: Job, topology: Topology, dump_dir: Path | None = None, log=print) -> list[Row]:
  rows = []
  for step in job.steps:
    log(f"compiling the {step.name} step for {topology.name} ({topology.chips} chips, mesh "
        f"{mesh_text(job.mesh)}) ...")
    start = time.perf_counter()
    try:
      compiled, seconds = compile_step(job, step)
    except Exception as e:  # the compiler's own out-of-HBM verdict is a result, not a crash
      row = out_of_memory_row(job, step, topology, e, time.perf_counter() - start)
      if row is None:
        raise
      rows.append(row)
      continue
    rows.append(analyse(job, step, topology, compiled, seconds, dump_dir))
  return rows


def _gib(n: float) -> str:
  return f"{n / GIB:.2f}"


def table(rows: list[Row]) -> str:
  """A Markdown table of the rows (bytes in GiB per device)."""
  header = ["topology", "chips", "mesh", "step", "settings", "fits", "params+opt GiB",
            "batch GiB", "temp GiB", "total GiB", "HBM GiB", "compiled FLOPs", "model FLOPs",
            "est. step s", "est. tokens/s", "est. MFU", "compile s"]
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  for r in rows:
    s = r.settings
    settings = (f"{s.get('dtype')}, {'scan' if s.get('scan_layers') else 'loop'}, "
                f"remat {s.get('remat_policy')}, attn {s.get('attention_impl')}")
    lines.append("| " + " | ".join([
        r.topology, str(r.chips), r.mesh, r.step, settings, "yes" if r.fits else "**no**",
        _gib(r.hbm_params_opt_bytes), _gib(r.hbm_batch_bytes), _gib(r.hbm_temp_bytes),
        _gib(r.hbm_total_bytes), _gib(r.hbm_capacity_bytes), f"{r.compiled_flops:.3e}",
        f"{r.model_flops:.3e}", f"{r.est_step_seconds:.4g}", f"{r.est_tokens_per_s:,.0f}",
        f"{r.est_mfu:.1%}", f"{r.compile_seconds:.0f}"]) + " |")
  return "\n".join(lines)


ESTIMATE_NOTE = (
    "Estimates, not measurements: step time is a per-kernel roofline over the compiled HLO "
    "(max of FLOPs / bf16 peak and bytes / HBM bandwidth per kernel, loops x trip count, "
    "collectives over ICI and asynchronous copies assumed overlapped); MFU = model FLOPs / (chips x peak x est. "
    "step time). Memory is the compiler's own buffer assignment per device.")


def advice(row: Row, config) -> str:
  """One line naming what to change when `row` does not fit."""
  tc = config.train
  per_chip = tc.batch_size / max(row.chips, 1) / max(tc.grad_accum_steps, 1)
  options = [f"raise --config.train.grad_accum_steps (now {tc.grad_accum_steps}; "
             f"{per_chip:g} rows per chip per micro-batch)"]
  if row.settings.get("remat_policy") != "full":
    options.append(f"--config.model.remat_policy=full (now {row.settings.get('remat_policy')})")
  options.append(f"a larger fsdp axis in --config.mesh (now {row.mesh})")
  options.append(f"a smaller --config.train.batch_size (now {tc.batch_size})")
  return (f"{row.topology} {row.step} step needs {_gib(row.hbm_total_bytes)} GiB per chip, "
          f"the chip has {_gib(row.hbm_capacity_bytes)} GiB: " + "; or ".join(options))
