r"""Compile a run's train (and eval) step for a TPU slice on this machine; print what it needs.

  python -m luke_jax.aot --config=configs/pretrain.py:size=large,stage=2 --topology=v5p-64
  python -m luke_jax.aot --config=configs/finetune/squad.py --topology=v5e-8 \
      --config.train.init_checkpoint=$CKPT --json=squad_v5e.json
  python -m luke_jax.aot --config=configs/pretrain.py:size=large,stage=2 --topology=v5e-256 \
      --search

Takes the run's own config and `--config.*` overrides, builds the exact step the run would
(mesh, sharding rules, optimizer, accumulation, global batch) over the slice's devices as
libtpu describes them, and compiles it with the real TPU compiler: nothing is allocated or
executed, no TPU is needed (`pip install -e '.[tpu]'`: libtpu). Prints one table row per step
(per-device HBM against the chip's, FLOPs, an estimated step time and MFU); exits 1 naming
what to change when a step does not fit, 2 on a bad flag or config (one line on stderr; see
`luke_jax.cli` for how to see its traceback).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compile for TPU, never open one
# libtpu takes a machine-wide lock unless told that several processes may load it (two
# compiles at once, or a compile beside a test).
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

from absl import app, flags  # noqa: E402
from absl import logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from luke_jax import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "The run's configuration file.",
                                          lock_config=True)
_TOPOLOGY = flags.DEFINE_string("topology", None, "TPU slice: v5p-64, v4-128, v5e-256, v6e-64 "
                                "(v4/v5p count TensorCores, v5e/v6e chips) or v5p:2x4x4.")
_JSON = flags.DEFINE_string("json", None, "Also write the rows as a JSON list to this file.")
_SEARCH = flags.DEFINE_bool("search", False, "Try the sensible meshes and remat policies; "
                            "rank those that fit by estimated step time.")
_PRESET = flags.DEFINE_string("preset", None, "Model shapes where the config leaves them to "
                              "data: vocabulary sizes of a pretraining config without its "
                              "dataset (default: config.preset), a fine-tuning model without "
                              "train.init_checkpoint (default luke-large).")
_DUMP_HLO = flags.DEFINE_string("dump_hlo", None, "Write each compiled program's HLO text here.")
_TOP = flags.DEFINE_integer("top", 0, "Also print the N ops with the largest estimated time.")
flags.mark_flags_as_required(["config", "topology"])


def _say(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def _build(config, topology):
  from luke_jax.aot import jobs
  return jobs.build(config, topology.devices(), _PRESET.value)


def _compile_all(config, topology, dump):
  from luke_jax.aot import report
  job = _build(config, topology)
  return report.run(job, topology, dump, log=_say)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import jax
  jax.config.update("jax_threefry_partitionable", True)  # as run_pretrain.py / run_finetune.py
  from luke_jax.aot import report, search, topology as topology_lib
  from luke_jax.training import config as run_config
  # A ValueError (a bad topology, config or job) ends the run through cli.run: exit 2.
  topology = topology_lib.parse(_TOPOLOGY.value)
  config = run_config.checked(_CONFIG.value)
  try:
    topology.devices()
  except Exception as e:  # libtpu missing or refusing the name
    _say(f"luke_jax.aot: error: cannot describe {topology.libtpu_name} ({e}); install libtpu: "
         "pip install -e '.[tpu]'")
    return 2
  dump = Path(_DUMP_HLO.value) if _DUMP_HLO.value else None
  if _SEARCH.value:
    rows = []
    from luke_jax.aot import jobs
    heads = jobs.build(config, topology.devices(), _PRESET.value).model_config \
        .num_attention_heads
    for label, candidate in search.candidates(config, topology.chips, heads):
      _say(f"--search: {label}")
      try:
        rows += [r for r in _compile_all(candidate, topology, dump) if r.step == "train"]
      except Exception as e:  # a candidate the compiler refuses is reported and skipped
        _say(f"--search: {label}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    rows.sort(key=lambda r: (not r.fits, r.est_step_seconds))
    best = next((r for r in rows if r.fits), None)
    if best is not None:
      mesh = tuple(int(x) for x in re.findall(r"\d+", best.mesh))
      remat = best.settings["remat_policy"]
      _say(f"--search: {search.label(mesh, remat, False)} (the best mesh, layer loop)")
      try:
        rows += [r for r in _compile_all(search.variant(config, mesh, remat, False),
                                         topology, dump) if r.step == "train"]
      except Exception as e:  # pylint: disable=broad-except
        _say(f"--search: layer loop: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
      rows.sort(key=lambda r: (not r.fits, r.est_step_seconds))
  else:
    rows = _compile_all(config, topology, dump)
  print(report.table(rows))
  print()
  print(report.ESTIMATE_NOTE)
  for note in dict.fromkeys(n for r in rows for n in r.notes):
    print(f"Note: {note}")
  for r in rows:
    if r.f32_highest_dots:
      print(f"Warning: {r.step} step has {r.f32_highest_dots} float32 matmuls at HIGHEST "
            "precision (6 MXU passes each)")
    if _TOP.value:
      print(f"\nlargest estimated ops, {r.topology} {r.mesh} {r.step}:")
      for op in r.top_ops[:_TOP.value]:
        print(f"  {op['seconds'] * 1e3:9.3f} ms  {op['flops']:.2e} FLOPs  "
              f"{op['bytes'] / 2**20:10.1f} MiB  {op['op']}")
  if _JSON.value:
    path = Path(_JSON.value)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([r.to_json() for r in rows], indent=2) + "\n")
    os.replace(tmp, path)
  if _SEARCH.value:
    if not any(r.fits for r in rows):
      _say("luke_jax.aot: no candidate fits; raise --config.train.grad_accum_steps or lower "
           "--config.train.batch_size")
      return 1
    best = next(r for r in rows if r.fits)
    print(f"\nbest: mesh {best.mesh}, remat {best.settings['remat_policy']}, "
          f"{'scan' if best.settings['scan_layers'] else 'layer loop'}: "
          f"est. {best.est_step_seconds:.4g} s/step, MFU {best.est_mfu:.1%}; set "
          f"--config.mesh and --config.model.remat_policy / scan_layers accordingly")
    return 0
  misfits = [r for r in rows if not r.fits]
  for r in misfits:
    _say(f"luke_jax.aot: does not fit: {report.advice(r, config)}")
  return 1 if misfits else 0


def run() -> None:
  from luke_jax.training import config as run_config
  sys.argv = run_config.rewrite_flags(sys.argv)
  logging.set_verbosity(logging.WARNING)
  # Exit status 1 means "does not fit" here, so a failure of the run itself (a full disk) is
  # not turned into a 1 with one line: it keeps its traceback.
  cli.run(main, runtime_errors=False)


if __name__ == "__main__":
  run()
