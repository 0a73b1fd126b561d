"""The entry scripts fail clearly on bad arguments; every config file builds."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


# The previous release's flag name still works, with a deprecation message.
@pytest.mark.parametrize("flag", ["train.init_checkpoint", "init_checkpoint"])
def test_run_finetune_rejects_a_missing_checkpoint(tmp_path, flag):
  proc = subprocess.run([sys.executable, "run_finetune.py", "--config",
                         "configs/finetune/tacred.py",
                         f"--config.{flag}={tmp_path / 'nowhere'}", "--workdir",
                         str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode != 0
  assert "nowhere" in proc.stderr
  assert ("--config.init_checkpoint is deprecated" in proc.stderr) == (flag == "init_checkpoint")
  assert not (tmp_path / "work" / "checkpoints").exists()


def test_run_pretrain_rejects_a_missing_dataset(tmp_path):
  proc = subprocess.run([sys.executable, "run_pretrain.py", "--config", "configs/pretrain_tiny.py",
                         f"--config.data.dataset_dir={tmp_path / 'nowhere'}", "--workdir",
                         str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode != 0
  assert "nowhere" in proc.stderr
  assert not (tmp_path / "work" / "checkpoints").exists()


def test_finetune_configs_build():
  from luke_jax.finetune import tasks  # pylint: disable=g-import-not-at-top
  paths = sorted((ROOT / "configs" / "finetune").glob("*.py"))
  assert {p.stem for p in paths} >= set(tasks.NAMES)
  for path in paths:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    assert config.task == path.stem
    assert tasks.get(config.task).name == config.task
