"""Damaged or contradictory checkpoints: a clear error naming the file and the key, no output.

Every case also checks that nothing was left behind: neither `--dst` nor a `.dst.tmp-*`
directory next to it, since a half-written checkpoint that looks complete is worse than none.
"""

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import luke_jax
from luke_jax.convert import hf, original, weights_io
from luke_jax.convert.torch_to_flax import ConversionError
from conftest import CONFIGS, save_torch_model, torch_model
from test_convert import original_state_dict, write_original_archive

pytestmark = pytest.mark.torch
ARCH = "LukeForEntityClassification"
KEY = "luke.encoder.layer.1.output.dense.weight"
ERRORS = (ConversionError, weights_io.WeightsError, ValueError, FileExistsError)


def _quiet(_):
  pass


@pytest.fixture(scope="module")
def reference():
  return torch_model(ARCH, **CONFIGS["projected_eaa"])


@pytest.fixture(scope="module")
def good(tmp_path_factory, reference):
  return save_torch_model(reference, tmp_path_factory.mktemp("good") / "hf")


def copy_of(good, tmp_path) -> Path:
  return Path(shutil.copytree(good, tmp_path / "src"))


def edit_weights(src, edit):
  path = src / "model.safetensors"
  tensors = weights_io.read_safetensors(path)
  edit(tensors)
  weights_io.write_safetensors(path, tensors)
  return path


def edit_config(src, **changes):
  path = src / "config.json"
  config = json.loads(path.read_text())
  config.update(changes)
  path.write_text(json.dumps(config))
  return path


def assert_nothing_written(dst):
  assert not dst.exists(), f"{dst} was written"
  leftovers = list(dst.parent.glob(f".{dst.name}.*"))
  assert not leftovers, f"temporary directories left behind: {leftovers}"


def expect_failure(convert, src, dst, *needles, **kwargs) -> str:
  """Runs `convert(src, dst)`, which must raise naming every needle and write nothing."""
  with pytest.raises(ERRORS) as info:
    convert(src, dst, log=_quiet, **kwargs)
  message = str(info.value)
  for needle in needles:
    assert str(needle) in message, f"{needle!r} not in: {message}"
  assert_nothing_written(dst)
  return message


def test_truncated_safetensors(tmp_path, good):
  src = copy_of(good, tmp_path)
  path = src / "model.safetensors"
  blob = path.read_bytes()
  path.write_bytes(blob[:len(blob) // 2])
  message = expect_failure(hf.convert, src, tmp_path / "out", path, "truncated")
  # The named tensor really is one whose bytes lie past the cut.
  (header_len,) = struct.unpack("<Q", blob[:8])
  header = json.loads(blob[8:8 + header_len])
  name = re.search(r"tensor '([\w.]+)'", message).group(1)
  assert header[name]["data_offsets"][1] > len(blob) // 2 - 8 - header_len


@pytest.mark.slow
def test_truncated_pytorch_bin_cli(tmp_path, good, reference):
  """Through the command line: exit status 2 (bad input), one readable line, no traceback."""
  import torch
  src = copy_of(good, tmp_path)
  (src / "model.safetensors").unlink()
  path = src / "pytorch_model.bin"
  torch.save(reference.state_dict(), path)
  blob = path.read_bytes()
  path.write_bytes(blob[:len(blob) // 2])
  dst = tmp_path / "out"
  result = subprocess.run([sys.executable, "-m", "luke_jax.convert", "--src_format=hf",
                           f"--src={src}", f"--dst={dst}"],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr
  assert f"error: {path}: truncated" in result.stderr
  names = re.findall(r"'([\w.]+)'", result.stderr)
  assert names and set(names) <= set(reference.state_dict()), names
  assert_nothing_written(dst)


def test_wrong_shape(tmp_path, good):
  src = copy_of(good, tmp_path)
  key = "luke.encoder.layer.1.attention.self.key.weight"
  path = edit_weights(src, lambda t: t.__setitem__(key, t[key][:, :5].copy()))
  message = expect_failure(hf.convert, src, tmp_path / "out", path, repr(key),
                           src / "config.json")
  assert "(32, 5)" in message and "(32, 32)" in message  # both in PyTorch layout


def test_missing_key(tmp_path, good):
  src = copy_of(good, tmp_path)
  path = edit_weights(src, lambda t: t.pop(KEY))
  expect_failure(hf.convert, src, tmp_path / "out", path, KEY, "missing")
  # Loading it directly fails the same way (no output directory involved).
  with pytest.raises(ConversionError, match=re.escape(KEY)):
    luke_jax.from_pretrained(src)


def test_missing_block_of_base_model(tmp_path):
  """A LukeModel has no head, so a missing block must not be replaced by random weights."""
  src = Path(save_torch_model(torch_model("LukeModel", **CONFIGS["projected_eaa"]),
                              tmp_path / "src"))
  path = edit_weights(src, lambda t: [t.pop(k) for k in list(t)
                                      if k.startswith("entity_embeddings.")])
  expect_failure(hf.convert, src, tmp_path / "out", path,
                 "entity_embeddings.entity_embeddings.weight")


def test_unexpected_key(tmp_path, good):
  src = copy_of(good, tmp_path)
  key = "luke.encoder.layer.0.attention.self.extra.weight"
  path = edit_weights(src, lambda t: t.__setitem__(key, np.zeros((4, 4), np.float32)))
  expect_failure(hf.convert, src, tmp_path / "out", path, repr(key))


def test_unknown_architecture(tmp_path, good):
  src = copy_of(good, tmp_path)
  path = edit_config(src, architectures=["LukeForSomethingElse"])
  expect_failure(hf.convert, src, tmp_path / "out", path, "architectures",
                 "LukeForSomethingElse")
  with pytest.raises(ValueError, match="architectures"):
    luke_jax.from_pretrained(src)


@pytest.mark.parametrize("changes, key", [
    (dict(hidden_size=48), None),  # 12 heads' worth of a 32-wide model
    (dict(entity_vocab_size=40), "luke.entity_embeddings.entity_embeddings.weight"),
    (dict(entity_emb_size=32), "luke.entity_embeddings.entity_embedding"),
    (dict(num_hidden_layers=1), "luke.encoder.layer.1."),
    (dict(num_hidden_layers=3), "luke.encoder.layer.2."),
    (dict(num_attention_heads=5), "num_attention_heads"),  # 32 does not split into 5
], ids=["hidden_size", "entity_vocab_size", "entity_emb_size", "fewer_layers", "more_layers",
        "heads"])
def test_config_contradicts_weights(tmp_path, good, changes, key):
  src = copy_of(good, tmp_path)
  config = edit_config(src, **changes)
  message = expect_failure(hf.convert, src, tmp_path / "out", config)
  if key is None:
    # Every tensor is now the wrong width; which one is reported first does not matter.
    assert re.search(r"key '[\w.]+\.(weight|bias)' has shape", message), message
  else:
    assert key in message, message
  if "num_attention_heads" not in changes:
    assert str(src / "model.safetensors") in message


def test_destination_exists(tmp_path, good):
  src = copy_of(good, tmp_path)
  # Damaged weights show that the check comes first, before any (possibly long) reading.
  (src / "model.safetensors").write_bytes(b"\0" * 4)
  dst = tmp_path / "out"
  dst.mkdir()
  (dst / "keep.txt").write_text("precious")
  with pytest.raises(FileExistsError, match=re.escape(str(dst))):
    hf.convert(src, dst, log=_quiet)
  assert sorted(p.name for p in dst.iterdir()) == ["keep.txt"]
  assert (dst / "keep.txt").read_text() == "precious"
  assert not list(tmp_path.glob(".out.*"))


def test_original_archive_missing_key(tmp_path):
  """Errors quote the archive's own names (no `luke.` prefix), which the user can look up."""
  state = original_state_dict()
  del state["encoder.layer.0.intermediate.dense.bias"]
  src = write_original_archive(tmp_path / "archive", state)
  message = expect_failure(original.convert, src, tmp_path / "out",
                           src / "pytorch_model.bin", "encoder.layer.0.intermediate.dense.bias")
  assert "luke.encoder" not in message


def test_original_metadata_contradicts_weights(tmp_path):
  state = original_state_dict()
  src = write_original_archive(tmp_path / "archive", state)
  meta = json.loads((src / "metadata.json").read_text())
  meta["model_config"]["entity_vocab_size"] += 5
  (src / "metadata.json").write_text(json.dumps(meta))
  expect_failure(original.convert, src, tmp_path / "out", src / "metadata.json",
                 "entity_vocab_size", src / "pytorch_model.bin")


def test_original_tsv_vocab_blank_line(tmp_path):
  """The converter reads the archive's TSV with the tokenizer's checked reader: a blank line is
  an error naming file and line, not every later entity id shifted by one."""
  src = write_original_archive(tmp_path / "archive", original_state_dict())
  tsv = src / "entity_vocab.tsv"
  lines = tsv.read_text().splitlines()
  tsv.write_text("\n".join(lines[:4] + [""] + lines[4:]) + "\n")
  expect_failure(original.convert, src, tmp_path / "out", f"{tsv}:5", "blank line")
