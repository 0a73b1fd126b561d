r"""End-to-end conversion parity demo: a random PyTorch LUKE, converted, run in JAX, compared.

  python scripts/convert_demo.py --out demo_out/convert    (what `make convert-demo` runs)

Creates a random-initialised `transformers.LukeForMaskedLM` with released-checkpoint-like
settings (layer-norm eps 1e-5, one token type, entity-aware attention, projected entity
embeddings), saves it as a Hugging Face directory, converts it with `luke_jax.convert.hf`, loads
the result with `luke_jax.from_pretrained` and runs both on one padded batch. Prints a side-by-side
table, writes `<out>/parity.json` and exits non-zero if any output differs by more than the
tolerance. Needs luke-jax installed with the `convert` extra (torch, transformers); no network
access.

Output directory:
  <out>/hf_checkpoint/       the PyTorch reference (config.json + model.safetensors)
  <out>/luke_jax_checkpoint/ the converted luke-jax checkpoint
  <out>/parity.json          per-output max |diff|, tolerance, versions, pass flag
"""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import time
import types
from pathlib import Path
from typing import Any, Callable

from absl import app, flags, logging
import numpy as np

_OUT = flags.DEFINE_string("out", "demo_out", "Directory for the checkpoints and parity.json.")
_OVERWRITE = flags.DEFINE_bool("overwrite", True,
                               "Replace checkpoints left in --out by an earlier run.")
_TIMING_RUNS = flags.DEFINE_integer("timing_runs", 5, "Timed forwards per framework (median).")

TOLERANCE = 1e-5
ARCHITECTURE = "LukeForMaskedLM"
# Small enough for a few CPU seconds, yet the hidden, entity-embedding, intermediate and vocabulary
# sizes all differ, so a transposed or swapped tensor fails to load rather than passing by luck.
CONFIG = types.MappingProxyType(dict(
    vocab_size=1000, entity_vocab_size=500, hidden_size=128, entity_emb_size=64,
    num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
    max_position_embeddings=130, type_vocab_size=1, layer_norm_eps=1e-5,
    use_entity_aware_attention=True))
# The tensor outputs compared one by one; tuples are summarised in one row each.
SINGLE_OUTPUTS = ("last_hidden_state", "entity_last_hidden_state", "logits", "entity_logits")
TUPLE_OUTPUTS = ("hidden_states", "entity_hidden_states", "attentions")
NUM_VALUES = 3


def make_batch(config, batch: int = 2, words: int = 32, entities: int = 6,
               mention: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
  """A LUKE batch exercising the masking paths.

  Row 1 has trailing word padding and a padded entity whose mention is all -1; mentions span one
  to `mention` tokens; entity 1 of each row is `[MASK]` (id 2), as in masked entity prediction.

  Args:
    config: mapping with `vocab_size` and `entity_vocab_size`.
    batch: number of rows (at least 2).
    words: word sequence length, including `<s>`, `</s>` and padding.
    entities: entity slots per row.
    mention: width of `entity_position_ids` (longest mention).
    seed: numpy seed.

  Returns:
    `input_ids, attention_mask, entity_ids, entity_position_ids, entity_attention_mask` (int64).
  """
  rng = np.random.RandomState(seed)
  lengths = np.full(batch, words)
  lengths[1] = words * 2 // 3
  input_ids = rng.randint(3, config["vocab_size"], (batch, words))
  input_ids[:, 0] = 0  # <s>
  input_ids[np.arange(batch), lengths - 1] = 2  # </s>
  input_ids[np.arange(words)[None] >= lengths[:, None]] = 1  # <pad>
  attention_mask = (input_ids != 1).astype(np.int64)

  entity_ids = rng.randint(3, config["entity_vocab_size"], (batch, entities))
  entity_ids[:, 1] = 2
  positions = np.full((batch, entities, mention), -1)
  for b in range(batch):
    for e in range(entities):
      length = 1 + e % mention  # every mention length occurs
      start = rng.randint(1, lengths[b] - 1 - length)
      positions[b, e, :length] = np.arange(start, start + length)
  entity_attention_mask = np.ones((batch, entities), np.int64)
  positions[1, -1] = -1
  entity_ids[1, -1] = 0  # [PAD]
  entity_attention_mask[1, -1] = 0
  return dict(input_ids=input_ids, attention_mask=attention_mask, entity_ids=entity_ids,
              entity_position_ids=positions, entity_attention_mask=entity_attention_mask)


def flatten(out, to_numpy: Callable[[Any], np.ndarray]) -> dict[str, Any]:
  """The compared fields of an HF-style output, as numpy arrays (tuples as tuples).

  The masked-LM output of both libraries has no `last_hidden_state`; the encoder's last hidden
  state is the last entry of `hidden_states` in both, so it is taken from there.
  """
  flat = {name: tuple(to_numpy(x) for x in getattr(out, name)) for name in TUPLE_OUTPUTS}
  flat["last_hidden_state"] = flat["hidden_states"][-1]
  flat["entity_last_hidden_state"] = flat["entity_hidden_states"][-1]
  flat["logits"] = to_numpy(out.logits)
  flat["entity_logits"] = to_numpy(out.entity_logits)
  return flat


def compare(flax_out: dict[str, Any], torch_out: dict[str, Any]) -> list[dict[str, Any]]:
  """One row per output: shape, leading values of both, max |diff|.

  A tuple output gets one row: its max |diff| over all entries and the values of entry 0.
  """
  rows = []
  for name in SINGLE_OUTPUTS + TUPLE_OUTPUTS:
    got, ref = flax_out[name], torch_out[name]
    if isinstance(ref, tuple):
      if len(got) != len(ref) or any(g.shape != r.shape for g, r in zip(got, ref)):
        raise ValueError(f"{name}: shapes differ: {[g.shape for g in got]} vs "
                         f"{[r.shape for r in ref]}")
      shape = f"{len(ref)} x {ref[0].shape}"
      diff = max(float(np.max(np.abs(g - r))) for g, r in zip(got, ref))
      got, ref, label = got[0], ref[0], f"{name}[*]"
    else:
      if got.shape != ref.shape:
        raise ValueError(f"{name}: shape {got.shape} (flax) vs {ref.shape} (pytorch)")
      shape, label = str(ref.shape), name
      diff = float(np.max(np.abs(got - ref)))
    rows.append(dict(name=name, label=label, shape=shape, diff=diff,
                     flax=got.ravel()[:NUM_VALUES].tolist(),
                     torch=ref.ravel()[:NUM_VALUES].tolist()))
  return rows


def format_table(rows: list[dict[str, Any]]) -> str:
  values = lambda xs: " ".join(f"{x:+.5f}" for x in xs)
  header = (f"{'output':<28} {'shape':<22} {'flax (first values)':<28} "
            f"{'pytorch (first values)':<28} {'max |diff|':>10}")
  lines = [header, "-" * len(header)]
  for row in rows:
    lines.append(f"{row['label']:<28} {row['shape']:<22} {values(row['flax']):<28} "
                 f"{values(row['torch']):<28} {row['diff']:>10.2e}")
  return "\n".join(lines)


def median_seconds(fn: Callable[[], Any], runs: int, warmup: int = 2) -> float:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def versions() -> dict[str, str]:
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  return dict(python=platform.python_version(), numpy=np.__version__, jax=jax.__version__,
              flax=flax.__version__, torch=torch.__version__,
              transformers=transformers.__version__)


def build_checkpoints(out: Path, overwrite: bool):
  """Random PyTorch model -> `out/hf_checkpoint` -> `out/luke_jax_checkpoint` -> Flax model.

  Args:
    out: output directory (created if missing).
    overwrite: replace checkpoints an earlier run left in `out`.

  Returns:
    `(reference, model, params)`: the PyTorch model in eval mode and the loaded Flax model.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  import luke_jax  # pylint: disable=g-import-not-at-top
  from luke_jax.convert import hf  # pylint: disable=g-import-not-at-top

  hf_dir, jax_dir = out / "hf_checkpoint", out / "luke_jax_checkpoint"
  for directory in (hf_dir, jax_dir):
    if directory.exists():
      if not overwrite:
        raise SystemExit(f"error: {directory} exists (pass --overwrite to replace it)")
      # Only the demo's own subdirectories are removed, never `out` itself.
      shutil.rmtree(directory)
  out.mkdir(parents=True, exist_ok=True)

  print(f"1. random transformers.{ARCHITECTURE}: " +
        ", ".join(f"{k}={v}" for k, v in CONFIG.items()))
  torch.manual_seed(0)
  reference = getattr(transformers, ARCHITECTURE)(transformers.LukeConfig(**CONFIG)).eval()
  # Released checkpoints store the LM decoder equal to the word embeddings (tied); transformers 5
  # initialises it separately, so copy it to convert what users will actually load.
  with torch.no_grad():
    reference.lm_head.decoder.weight.copy_(reference.luke.embeddings.word_embeddings.weight)
  reference.save_pretrained(hf_dir)
  print(f"   saved to {hf_dir}")

  print("2. luke_jax.convert.hf.convert (CLI: python -m luke_jax.convert --src_format=hf "
        f"--src={hf_dir} --dst={jax_dir})")
  hf.convert(hf_dir, jax_dir, log=lambda msg: print(f"   {msg}"))

  model, params = luke_jax.from_pretrained(jax_dir)
  num_params = sum(x.size for x in jax.tree.leaves(params))
  print(f"3. luke_jax.from_pretrained: {type(model).__name__}, {num_params:,} parameters")
  return reference, model, params


def parity_line(rows: list[dict[str, Any]], tolerance: float) -> str:
  """`PASS: ...` or `FAIL: ...`, naming the outputs above `tolerance`."""
  failed = [row for row in rows if not row["diff"] <= tolerance]  # NaN fails too
  if failed:
    return (f"FAIL: max |diff| above {tolerance:g} for " +
            ", ".join(f"{row['name']} ({row['diff']:.2e})" for row in failed))
  worst = max(rows, key=lambda row: row["diff"])
  return (f"PASS: all {len(rows)} outputs within {tolerance:g} "
          f"(largest: {worst['name']}, {worst['diff']:.2e})")


def run(out: Path, overwrite: bool = True, timing_runs: int = 5) -> dict[str, Any]:
  """Builds, converts, runs and compares; writes `out/parity.json` and returns its contents.

  Args:
    out: output directory (created if missing).
    overwrite: replace checkpoints an earlier run left in `out`.
    timing_runs: timed forwards per framework.

  Returns:
    The parity report (also written to `out/parity.json`).
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise SystemExit(f"error: the demo needs PyTorch and transformers ({e}); install them with "
                     "`pip install -e '.[convert]'`") from None
  import jax  # pylint: disable=g-import-not-at-top

  reference, model, params = build_checkpoints(out, overwrite)

  batch = make_batch(CONFIG)
  shapes = {k: v.shape for k, v in batch.items()}
  print(f"4. one batch, both models: {shapes}")
  print("   (row 1: word padding and a padded entity with all -1 positions)")

  @jax.jit
  def flax_forward(params, inputs):
    return model.apply({"params": params}, **inputs, deterministic=True,
                       output_attentions=True, output_hidden_states=True)

  jax_inputs = {k: jax.numpy.asarray(v) for k, v in batch.items()}
  torch_inputs = {k: torch.from_numpy(v) for k, v in batch.items()}

  def torch_forward():
    with torch.no_grad():
      return reference(**torch_inputs, output_attentions=True, output_hidden_states=True)

  flax_out = flatten(jax.block_until_ready(flax_forward(params, jax_inputs)), np.asarray)
  torch_out = flatten(torch_forward(), lambda t: t.numpy())
  rows = compare(flax_out, torch_out)
  passed = all(row["diff"] <= TOLERANCE for row in rows)
  print(f"\n{format_table(rows)}\n\n{parity_line(rows, TOLERANCE)}")

  flax_s = median_seconds(lambda: jax.block_until_ready(flax_forward(params, jax_inputs)),
                          timing_runs)
  torch_s = median_seconds(torch_forward, timing_runs)
  print(f"\nforward time, median of {timing_runs} after warm-up "
        f"(incl. all hidden states and attentions), {jax.default_backend()} vs torch CPU:")
  print(f"  flax (jax.jit): {flax_s * 1e3:8.2f} ms")
  print(f"  pytorch:        {torch_s * 1e3:8.2f} ms ({torch.get_num_threads()} threads)")

  report = dict(
      architecture=ARCHITECTURE, config=dict(CONFIG), batch_shapes=shapes,
      tolerance=TOLERANCE, max_abs_diff={row["name"]: row["diff"] for row in rows},
      passed=passed, versions=versions(), jax_backend=jax.default_backend(),
      median_forward_seconds=dict(flax_jit=flax_s, torch=torch_s, runs=timing_runs))
  (out / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
  print(f"\nwrote {out / 'parity.json'}")
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # app.run logs at INFO, which buries the table under Orbax's per-save chatter.
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  report = run(Path(_OUT.value), overwrite=_OVERWRITE.value, timing_runs=_TIMING_RUNS.value)
  return 0 if report["passed"] else 1


if __name__ == "__main__":
  app.run(main)
