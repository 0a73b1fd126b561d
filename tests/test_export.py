"""Serving artifacts (`luke_jax.export`, issue #15): one exported program serves every input size,
reproduces the in-process model, and loads without the model code."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import luke_jax
from luke_jax import export as export_lib
from luke_jax.export import files
from luke_jax.models import registry
from conftest import make_inputs

ROOT = Path(__file__).resolve().parents[1]
SPAN = "LukeForEntitySpanClassification"
# (batch, words, entities, mention): several sizes of every symbolic dimension, one artifact.
SHAPES = [(2, 9, 4, 3), (3, 17, 2, 5), (5, 6, 3, 2)]


def _forward(module):
  return jax.jit(lambda params, inputs: module.apply({"params": params}, **inputs,
                                                     deterministic=True))


def _inputs(arch, config, shape, seed):
  batch, words, entities, mention = shape
  sizes = dict(vocab_size=config.vocab_size, entity_vocab_size=config.entity_vocab_size,
               type_vocab_size=config.type_vocab_size)
  return make_inputs(arch, sizes, batch, words, entities, mention, seed=seed)


def _assert_matches(loaded_out, reference, names):
  assert list(loaded_out) == names
  for name in names:
    got = np.asarray(loaded_out[name])
    assert np.isfinite(got).all(), name
    np.testing.assert_allclose(got, np.asarray(getattr(reference, name)), atol=1e-5, rtol=0,
                               err_msg=name)
    assert np.array_equal(np.asarray(getattr(loaded_out, name)), got)


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "luke_jax.export", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def encoder(finetune_base):
  return luke_jax.from_pretrained(finetune_base)


@pytest.fixture(scope="module")
def encoder_export(tmp_path_factory, finetune_base):
  """The tiny LukeModel exported by the command line, for every platform (the default)."""
  out = tmp_path_factory.mktemp("export") / "encoder"
  proc = _cli(f"--model={finetune_base}", f"--out={out}")
  assert proc.returncode == 0, proc.stderr
  assert f"wrote {out}" in proc.stdout
  return out


@pytest.fixture(scope="module")
def span_model(encoder):
  config = encoder[0].config.replace(id2label=((0, "O"), (1, "PER"), (2, "LOC")))
  return registry.build(SPAN, config), registry.init_params(SPAN, config, jax.random.PRNGKey(1))


@pytest.fixture(scope="module")
def span_export(tmp_path_factory, span_model, luke_dir):
  """A head with inputs of its own, exported in-process from memory, for the CPU only."""
  out = tmp_path_factory.mktemp("export") / "span"
  assert export_lib.export(span_model, out, tokenizer=luke_dir, platforms="cpu") == out
  return out


def test_cli_writes_a_small_program_beside_the_weights_and_refuses_an_existing_out(
    encoder_export, finetune_base):
  names = {p.name for p in encoder_export.iterdir()}
  assert names == {files.PROGRAM, files.PARAMS, files.TOKENIZER, files.MANIFEST}
  assert not [p for p in encoder_export.parent.iterdir() if ".tmp-" in p.name]
  manifest = json.loads((encoder_export / files.MANIFEST).read_text())
  assert manifest["architecture"] == "LukeModel"
  assert manifest["platforms"] == ["cpu", "cuda", "tpu"]
  assert manifest["jax_version"] == jax.__version__
  assert manifest["luke_jax_version"] == luke_jax.__version__
  assert manifest["dimensions"]["words"] == {"min": 1, "max": 256}  # 258 positions, pad id 1
  returned = {o["name"]: o["shape"] for o in manifest["outputs"] if o["returned"]}
  assert returned == {"last_hidden_state": ["batch", "words", 32],
                      "entity_last_hidden_state": ["batch", "entities", 32],
                      "pooler_output": ["batch", 32]}
  assert {o["name"] for o in manifest["outputs"] if not o["returned"]} == {
      "hidden_states", "entity_hidden_states", "attentions"}
  # Parameters are an input of the program, not constants in it.
  program = (encoder_export / files.PROGRAM).stat().st_size
  params = (encoder_export / files.PARAMS).stat().st_size
  assert program < 300_000 < 6_000_000 < params
  # Readable as any file the umask lets through, not private as temporary directories are.
  mode = lambda p: p.stat().st_mode & 0o777
  assert mode(encoder_export) == mode(encoder_export / files.TOKENIZER)
  assert mode(encoder_export / files.PARAMS) == mode(encoder_export / files.PROGRAM)

  before = (encoder_export / files.MANIFEST).read_bytes()
  proc = _cli(f"--model={finetune_base}", f"--out={encoder_export}")
  assert proc.returncode == 2
  assert "luke_jax.export: error: " in proc.stderr and "already exists" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert (encoder_export / files.MANIFEST).read_bytes() == before


@pytest.mark.parametrize("which", ["LukeModel", SPAN])
def test_one_artifact_matches_the_model_at_several_shapes(which, encoder, encoder_export,
                                                          span_model, span_export, fast_compile):
  module, params = encoder if which == "LukeModel" else span_model
  loaded = export_lib.load(encoder_export if which == "LukeModel" else span_export)
  assert loaded.architecture == which
  forward = _forward(module)
  for seed, shape in enumerate(SHAPES):
    inputs = _inputs(which, module.config, shape, seed)
    if seed == 1:  # the optional input given (zeros, as the loader would fill it)
      inputs["token_type_ids"] = np.zeros_like(inputs["input_ids"])
    reference = forward(params, {k: np.asarray(v, np.int32) for k, v in inputs.items()})
    out = loaded(**inputs)
    _assert_matches(out, reference, loaded.output_names)
  if which == SPAN:
    assert out.logits.shape == (5, 3, 3) and out.loss is None
  else:
    assert out.pooler_output.shape == (5, 32) and out.attentions is None


def test_a_fresh_process_serves_without_the_model_code(tmp_path, span_model, span_export,
                                                       fast_compile):
  module, params = span_model
  inputs = _inputs(SPAN, module.config, SHAPES[1], seed=7)
  np.savez(tmp_path / "inputs.npz", **inputs)
  script = textwrap.dedent(f"""
      import json, sys
      import numpy as np
      import luke_jax.export
      model = luke_jax.export.load({str(span_export)!r})
      out = model(**np.load({str(tmp_path / 'inputs.npz')!r}))
      batch = model.tokenizer(["Beyonce lives in Los Angeles."], entity_spans=[[(0, 7), (17, 28)]],
                              padding=True, return_tensors="np")
      served = model(**batch)
      np.savez({str(tmp_path / 'out.npz')!r}, logits=out["logits"], served=served.logits,
               **{{"batch_" + k: v for k, v in batch.items()}})
      print(json.dumps(sorted(m for m in sys.modules if m.startswith(("luke_jax", "flax")))))
      """)
  # As `fast_compile` here: the tiny program's compile, not its run, is the cost.
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env=env)
  assert proc.returncode == 0, proc.stderr
  modules = json.loads(proc.stdout.strip().splitlines()[-1])
  assert "luke_jax.export.loader" in modules and "luke_jax.tokenization.tokenizer" in modules
  assert not [m for m in modules if m.startswith(("luke_jax.models", "flax", "luke_jax.checkpoint",
                                                  "luke_jax.export.writer"))], modules
  got = np.load(tmp_path / "out.npz")
  forward = _forward(module)
  reference = forward(params, {k: np.asarray(v, np.int32) for k, v in inputs.items()})
  np.testing.assert_allclose(got["logits"], reference.logits, atol=1e-5, rtol=0)
  # The exported tokenizer is in the head's mode: its output is the whole call.
  batch = {k[len("batch_"):]: got[k] for k in got.files if k.startswith("batch_")}
  assert set(batch) >= {"entity_start_positions", "entity_end_positions"}
  reference = forward(params, {k: np.asarray(v, np.int32) for k, v in batch.items()})
  np.testing.assert_allclose(got["served"], reference.logits, atol=1e-5, rtol=0)


def test_bad_inputs_are_one_line_naming_the_input(span_export, span_model):
  loaded = export_lib.load(span_export)
  good = _inputs(SPAN, span_model[0].config, SHAPES[0], seed=0)
  cases = [
      (dict(good, entity_start_positions=None), TypeError,
       "missing input 'entity_start_positions'"),
      ({k: v for k, v in good.items() if k != "entity_ids"}, TypeError, "'entity_ids'"),
      (dict(good, entity_ids=good["entity_ids"][0]), ValueError, "entity_ids: rank 1"),
      (dict(good, attention_mask=good["attention_mask"] * 1.0), ValueError,
       "attention_mask: dtype float64"),
      (dict(good, attention_mask=good["attention_mask"][:, :4]), ValueError,
       "attention_mask: words (axis 1) is 4, but input_ids has words = 9"),
      (dict(good, labels=good["entity_ids"]), TypeError, "unexpected input 'labels'"),
  ]
  long = _inputs(SPAN, span_model[0].config, (2, 257, 2, 2), seed=0)
  cases.append((long, ValueError, "input_ids: words (axis 1) is 257; this "
                                  f"{SPAN} takes words >= 1 and <= 256"))
  empty = dict(good, **{k: good[k][:, :0] for k in ("entity_ids", "entity_attention_mask",
                                                    "entity_position_ids")})
  cases.append((empty, ValueError, "one padding entity"))
  for inputs, error, needle in cases:
    with pytest.raises(error) as info:
      loaded(**inputs)
    message = str(info.value)
    assert needle in message and "\n" not in message, message


def test_bfloat16_export_stores_bfloat16_weights(tmp_path, span_model, luke_dir, span_export,
                                                 fast_compile):
  module, params = span_model
  out = export_lib.export(span_model, tmp_path / "bf16", tokenizer=luke_dir, dtype="bfloat16",
                          platforms=["cpu"])
  loaded = export_lib.load(out)
  assert {str(x.dtype) for x in jax.tree.leaves(loaded.params)} == {"bfloat16"}
  assert (out / files.PARAMS).stat().st_size < 0.6 * (span_export / files.PARAMS).stat().st_size
  # The same model in-process: bfloat16 compute over the same rounded weights.
  bf16 = registry.build(SPAN, module.config.replace(dtype="bfloat16", param_dtype="bfloat16"))
  inputs = _inputs(SPAN, module.config, SHAPES[0], seed=3)
  reference = _forward(bf16)(loaded.params, {k: np.asarray(v, np.int32)
                                             for k, v in inputs.items()})
  np.testing.assert_allclose(np.asarray(loaded(**inputs).logits, np.float32),
                             np.asarray(reference.logits, np.float32), atol=2e-2, rtol=0)
