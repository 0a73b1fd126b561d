"""Faults around the converter and the command lines (issue #16).

An overwrite that would delete its own source is refused; a pickle that a safe load refuses is
reported as such (not as a damaged file) and never run; temporary directories of killed runs
are removed by the next write to the same destination; and every CLI reports an expected error
as one line, its traceback only on request.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from luke_jax import checkpoint
from luke_jax.convert import hf, original, roberta, weights_io
# The converter fault tests' tiny transformers checkpoint (module fixtures `reference`, `good`).
from conftest import CONFIGS
from test_bad_input import ARCH, _quiet, good, reference  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
# absl's log records ("I1206 23:02:20.912643 1396... file.py:60] text"); a traceback has none.
ABSL_RECORD = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [^\]]+\] ")


def _snapshot(directory: Path) -> dict[str, bytes]:
  return {str(p.relative_to(directory)): p.read_bytes()
          for p in sorted(directory.rglob("*")) if p.is_file()}


def _cli(*args, env=None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=300, env=dict(os.environ, **(env or {})))


def _error_lines(stderr: str) -> list[str]:
  """stderr without absl's log records (and the lines of a multi-line record's message)."""
  lines, in_record = [], False
  for line in stderr.splitlines():
    if ABSL_RECORD.match(line):
      in_record = True
    elif ": error: " in line or "Traceback" in line:
      in_record = False
      lines.append(line)
    elif not in_record:
      lines.append(line)
  return lines


def assert_one_error_line(proc, prog: str, *needles) -> str:
  assert "Traceback" not in proc.stderr, proc.stderr
  lines = _error_lines(proc.stderr)
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith(f"{prog}: error: "), lines
  for needle in needles:
    assert str(needle) in lines[0], (needle, lines[0])
  return lines[0]


# --------------------------------------------------------------------------------------------
# 4. A destination that is, contains or lies inside the source is refused before any write.


def _layouts(tmp_path: Path, good: Path):
  """(src, dst) pairs: dst contains src, dst is src through a symlink, dst inside src."""
  outer = tmp_path / "outer"
  outer.mkdir()
  contained = Path(shutil.copytree(good, outer / "model"))
  alias = tmp_path / "alias"
  same = Path(shutil.copytree(good, tmp_path / "same"))
  alias.symlink_to(same, target_is_directory=True)
  inside = Path(shutil.copytree(good, tmp_path / "inside"))
  return {"contains": (contained, outer), "same (symlink)": (same, alias),
          "inside": (inside, inside / "jax")}


@pytest.mark.parametrize("overwrite", [True, False])
def test_a_destination_overlapping_the_source_is_refused(tmp_path, good, overwrite):
  for relation, (src, dst) in _layouts(tmp_path, good).items():
    root = src.parent
    before = _snapshot(root)
    with pytest.raises(ValueError) as info:
      hf.convert(src, dst, overwrite=overwrite, log=_quiet)
    message = str(info.value)
    assert "\n" not in message
    assert str(dst.absolute()) in message and str(src.resolve()) in message, (relation, message)
    assert _snapshot(root) == before, f"{relation}: the source changed"
    assert not list(root.parent.glob(".*.tmp-*")) and not list(root.glob(".*.tmp-*"))


def test_the_shared_writer_refuses_an_overlap_itself(tmp_path, good):
  # Every writer (save_checkpoint, write_hf, and through them all converters) replaces its
  # destination through checkpoint.atomic_directory, so the check lives there too.
  src = Path(shutil.copytree(good, tmp_path / "outer" / "model"))
  with pytest.raises(ValueError, match="contains the source"):
    with checkpoint.atomic_directory(tmp_path / "outer", overwrite=True, sources=[src]):
      pytest.fail("the block must not run")
  assert (src / "model.safetensors").is_file()
  # An unrelated source does not stop a write.
  with checkpoint.atomic_directory(tmp_path / "elsewhere", sources=[src]) as tmp:
    (tmp / "x").write_text("x")
  assert (tmp_path / "elsewhere" / "x").is_file()


@pytest.mark.parametrize("convert", [original.convert, roberta.convert, hf.flax_to_hf],
                         ids=["original", "roberta", "flax"])
def test_every_converter_refuses_its_sources_parent(tmp_path, convert):
  src = tmp_path / "x" / "model"
  src.mkdir(parents=True)
  (src / "keep.txt").write_text("mine")
  with pytest.raises(ValueError, match="contains the source"):
    convert(src, src.parent, overwrite=True, log=_quiet)
  assert (src / "keep.txt").read_text() == "mine"


def test_flax_to_hf_onto_its_own_source_is_refused(tmp_path, good):
  jax_dir = hf.convert(good, tmp_path / "jax", log=_quiet)
  before = _snapshot(jax_dir)
  with pytest.raises(ValueError, match="is the source"):
    hf.flax_to_hf(jax_dir, jax_dir, overwrite=True, log=_quiet)
  assert _snapshot(jax_dir) == before


# --------------------------------------------------------------------------------------------
# 13. A pickle that the safe load refuses says so (and never runs); a cut-off file is damaged.


class _Payload:
  """Pickles as a call of os.system: what a malicious `pytorch_model.bin` carries."""

  def __init__(self, command: str):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


def test_a_pickle_with_code_is_refused_naming_the_opt_in(tmp_path, good, reference):
  import torch  # pylint: disable=g-import-not-at-top
  src = Path(shutil.copytree(good, tmp_path / "src"))
  (src / "model.safetensors").unlink()
  marker = tmp_path / "code_ran"
  state = dict(reference.state_dict())
  state["payload"] = _Payload(f"touch {marker}")
  path = src / "pytorch_model.bin"
  torch.save(state, path)
  with pytest.raises(weights_io.WeightsError) as info:
    hf.convert(src, tmp_path / "out", log=_quiet)
  message = str(info.value)
  assert message.startswith(f"{path}: ")
  assert "truncated" not in message and "damaged" not in message, message
  assert "code" in message and "allow_pickle" in message and "trust" in message, message
  assert "posix.system" in message or "os.system" in message, message
  assert not marker.exists(), "the pickle's code ran"
  assert not (tmp_path / "out").exists()


def test_allow_pickle_loads_a_trusted_file_with_plain_objects(tmp_path, good, reference):
  # A trusted file whose state dict also holds a non-tensor object (e.g. training arguments,
  # as older checkpoints do): refused by default, read with the explicit opt-in.
  import argparse  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  path = tmp_path / "pytorch_model.bin"
  torch.save({"w": torch.ones(2, 3), "args": argparse.Namespace(lr=1.0)}, path)
  with pytest.raises(weights_io.WeightsError, match="allow_pickle"):
    weights_io.read_torch_bin(path)
  got = weights_io.read_torch_bin(path, allow_pickle=True)
  assert list(got) == ["w"] and np.array_equal(got["w"], np.ones((2, 3), np.float32))


def test_cut_off_files_are_still_called_damaged(tmp_path):
  # Some cuts of a legacy (pre-zip) torch file make the safe unpickler meet a garbled GLOBAL,
  # which torch reports as a refused load: those must read as damaged, not as code.
  import torch  # pylint: disable=g-import-not-at-top
  whole = tmp_path / "whole.bin"
  torch.save({"w": torch.arange(6.0)}, whole, _use_new_zipfile_serialization=False)
  blob = whole.read_bytes()
  cut = tmp_path / "cut.bin"
  refused_by_torch = 0
  for n in range(1, len(blob), 3):
    cut.write_bytes(blob[:n])
    try:
      torch.load(cut, weights_only=True)
      continue
    except Exception as e:  # pylint: disable=broad-except
      refused_by_torch += "Weights only load failed" in str(e)
    with pytest.raises(weights_io.WeightsError) as info:
      weights_io.read_torch_bin(cut)
    message = str(info.value)
    assert "truncated" in message and "allow_pickle" not in message, (n, message)
  assert refused_by_torch, "no cut exercised torch's weights-only refusal"


# --------------------------------------------------------------------------------------------
# 14. Temporary directories of killed runs are removed by the next write to the same place.

_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from luke_jax import checkpoint
    with checkpoint.atomic_directory(sys.argv[1], overwrite=True) as tmp:
      (tmp / "config.json").write_text("{")  # half-written
      print(tmp, flush=True)
      os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_runs_temporary_directory_is_removed(tmp_path, good, caplog):
  dst = tmp_path / "jax"
  proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(dst)], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == -signal.SIGKILL, proc.stderr
  stale = Path(proc.stdout.strip())
  assert stale.is_dir() and stale.parent == tmp_path and stale.name.startswith(".jax.tmp-")
  # Look-alikes that are not ours to delete: another destination's, a name we never write, a
  # foreign host's (its pid means nothing here), a file.
  foreign = stale.name.split("-", 1)[0] + "-otherhost.example-" + stale.name.split("-", 1)[1]
  others = [tmp_path / ".jaxx.tmp-x", tmp_path / ".jax.tmp-notes", tmp_path / foreign,
            tmp_path / (stale.name[:-1] + ("a" if stale.name.endswith("_") else "_"))]
  for other in others[:3]:
    other.mkdir()
  others[3].write_text("a file, not a directory")
  caplog.set_level("INFO")
  # A live writer of the same destination (this process) keeps its directory too.
  with pytest.raises(KeyboardInterrupt):
    with checkpoint.atomic_directory(dst, overwrite=True) as live:
      hf.convert(good, dst, log=_quiet)
      assert live.is_dir()
      raise KeyboardInterrupt  # abandon the outer write
  assert not stale.exists()
  assert any(str(stale) in r.getMessage() for r in caplog.records), caplog.text
  assert all(o.exists() for o in others)
  assert (dst / "config.json").is_file() and (dst / "params").is_dir()
  config, arch, _ = checkpoint.read_config(dst)
  assert arch == ARCH and config.hidden_size == CONFIGS["projected_eaa"]["hidden_size"]


def test_temporary_directories_name_their_host_and_process(tmp_path):
  with checkpoint.atomic_directory(tmp_path / "out") as tmp:
    assert f"-{os.getpid()}-" in tmp.name and tmp.name.startswith(".out.tmp-")


# --------------------------------------------------------------------------------------------
# 15. The command lines: one line per expected error, exit 2 for bad input, tracebacks on request.


def test_run_pretrain_bad_setting_is_one_line(tmp_path):
  args = ["run_pretrain.py", "--config", "configs/pretrain_tiny.py",
          "--config.train.batch_size=0", f"--config.data.dataset_dir={tmp_path}",
          "--workdir", str(tmp_path / "work")]
  proc = _cli(*args)
  assert proc.returncode == 2, proc.stderr
  assert_one_error_line(proc, "run_pretrain.py", "config.train.batch_size=0")
  shown = _cli(*args, env={"LUKE_JAX_TRACEBACK": "1"})
  assert shown.returncode == 2
  assert "Traceback (most recent call last)" in shown.stderr
  assert shown.stderr.rstrip().splitlines()[-1].startswith("run_pretrain.py: error: config.train")


def test_run_finetune_missing_train_file_is_one_line(tmp_path):
  init = tmp_path / "init"
  init.mkdir()
  (init / "config.json").write_text(json.dumps({"model_type": "luke",
                                                "architectures": ["LukeModel"]}))
  missing = tmp_path / "no_such_train_file.txt"
  proc = _cli("run_finetune.py", "--config", "configs/finetune/tacred.py",
              f"--config.train.init_checkpoint={init}", f"--config.data.train_file={missing}",
              "--workdir", str(tmp_path / "work"))
  assert proc.returncode == 2, proc.stderr
  assert_one_error_line(proc, "run_finetune.py", missing)


def test_convert_missing_source_is_one_line(tmp_path):
  missing = tmp_path / "no_such_model"
  args = ["-m", "luke_jax.convert", f"--src={missing}", f"--dst={tmp_path / 'out'}"]
  proc = _cli(*args)
  assert proc.returncode == 2, proc.stderr
  line = assert_one_error_line(proc, "luke_jax.convert", missing)
  assert line.endswith(f"{missing}: no such directory"), line
  verbose = _cli(*args, "--verbosity=1")
  assert verbose.returncode == 2
  assert "Traceback (most recent call last)" in verbose.stderr


def test_convert_onto_the_sources_parent_is_refused(tmp_path):
  src = tmp_path / "x" / "model"
  src.mkdir(parents=True)
  (src / "config.json").write_text("{}")
  proc = _cli("-m", "luke_jax.convert", f"--src={src}", f"--dst={src.parent}", "--overwrite")
  assert proc.returncode == 2, proc.stderr
  assert_one_error_line(proc, "luke_jax.convert", src, src.parent)
  assert (src / "config.json").read_text() == "{}"


def test_exit_codes():
  from luke_jax import cli  # pylint: disable=g-import-not-at-top
  from luke_jax.training.metrics import NonFiniteLossError  # pylint: disable=g-import-not-at-top
  assert cli.exit_code(ValueError("x")) == 2
  assert cli.exit_code(weights_io.WeightsError("x")) == 2
  assert cli.exit_code(FileNotFoundError(2, "No such file", "p")) == 2
  assert cli.exit_code(KeyError("no conversion rule for Flax parameter 'x'")) == 2
  assert cli.exit_code(NonFiniteLossError("loss is nan")) == 1
  # Bugs keep their traceback: a bare missing key, a type error.
  assert cli.exit_code(KeyError("hidden_size")) is None
  assert cli.exit_code(TypeError("x")) is None
  assert cli.message(KeyError("no rule for 'x'")) == "no rule for 'x'"


def test_errors_after_jax_starts_are_one_line_without_jax_platforms(tmp_path):
  """With libtpu installed (the `tpu` extra) and no TPU chips, JAX would start libtpu, which
  prints its own warnings above our message; the CLIs keep JAX off the absent TPU."""
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  proc = subprocess.run([sys.executable, "run_pretrain.py", "--config",
                         "configs/pretrain_tiny.py", f"--config.data.dataset_dir={tmp_path}",
                         "--workdir", str(tmp_path / "work")],
                        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
  assert proc.returncode == 2, proc.stderr
  # Our own INFO record of the process count is the only line allowed besides the error.
  lines = [line for line in proc.stderr.splitlines()
           if not (ABSL_RECORD.match(line) and line.endswith("] process 0 of 1"))]
  assert lines == [
      f"run_pretrain.py: error: {tmp_path}: no metadata.json; set config.data.dataset_dir to "
      "a directory made by luke_jax.data.build_pretraining_dataset"], proc.stderr


def test_converter_logs_quietly_by_default(tmp_path, good):
  """The checkpoint library's ~40 INFO lines per save stay out of the default output; they come
  back with --verbosity=1."""
  quiet = _cli("-m", "luke_jax.convert", f"--src={good}", f"--dst={tmp_path / 'a'}")
  assert quiet.returncode == 0, quiet.stderr
  assert quiet.stderr == ""
  assert re.fullmatch(rf"wrote {ARCH} \([\d,]+ parameters, flax\) to {tmp_path / 'a'}\n",
                      quiet.stdout), quiet.stdout
  loud = _cli("-m", "luke_jax.convert", f"--src={good}", f"--dst={tmp_path / 'b'}",
              "--verbosity=1")
  assert loud.returncode == 0 and "orbax" in loud.stderr
