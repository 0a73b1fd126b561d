"""`scripts/convert_demo.py` (what `make convert-demo` runs) as a user runs it: a subprocess."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.torch]
REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "convert_demo.py"


def test_demo_passes_and_writes_report(tmp_path):
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  out = tmp_path / "demo_out"
  # Run from elsewhere: the script must not depend on the working directory.
  proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], cwd=tmp_path,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
  assert "PASS: all" in proc.stdout, proc.stdout
  for name in ("last_hidden_state", "entity_last_hidden_state", "logits", "entity_logits",
               "hidden_states", "entity_hidden_states", "attentions"):
    assert name in proc.stdout

  report = json.loads((out / "parity.json").read_text())
  assert report["passed"] is True
  assert report["tolerance"] == 1e-5
  diffs = report["max_abs_diff"]
  assert set(diffs) == {"last_hidden_state", "entity_last_hidden_state", "logits",
                        "entity_logits", "hidden_states", "entity_hidden_states", "attentions"}
  assert all(0 <= d <= report["tolerance"] for d in diffs.values()), diffs
  assert {"jax", "flax", "torch", "transformers"} <= set(report["versions"])
  assert (out / "hf_checkpoint" / "config.json").is_file()
  assert (out / "luke_jax_checkpoint" / "params").is_dir()


def test_demo_exit_status_follows_parity(tmp_path, monkeypatch):
  """A failed comparison must make `make convert-demo` fail, not just print FAIL."""
  from absl.testing import flagsaver
  spec = importlib.util.spec_from_file_location("convert_demo", SCRIPT)
  demo = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(demo)
  parsed = dict(out=str(tmp_path), overwrite="true", timing_runs="1", verbosity="0")
  for passed, status in ((False, 1), (True, 0)):
    monkeypatch.setattr(demo, "run", lambda out, passed=passed, **_: {"passed": passed})
    with flagsaver.as_parsed(**parsed):
      assert demo.main(["demo"]) == status
