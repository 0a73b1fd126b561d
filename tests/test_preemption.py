"""A real SIGTERM to `run_pretrain.py`: it saves, exits 0, and the same command resumes.

`test_train.py` stops runs through the preemption flag in-process; here the signal comes from
outside, as a scheduler sends it, and the resumed run must end where an uninterrupted one does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

from luke_jax.pretraining import train
# The tiny dataset, its config and the fast-compile setting are test_train's.
from test_train import _fast_compiles, flat, make_config  # noqa: F401

pytestmark = pytest.mark.slow  # end to end: `make test` runs it, `make test-fast` does not

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
# A schedule that does not depend on `train.steps`, which the rerun changes.
TOTAL_STEPS = 1000


def run_pretrain(dataset_dir: Path, workdir: Path, steps: int, log: Path,
                 cache: Path) -> subprocess.Popen:
  # The hashed fields equal make_config's with TOTAL_STEPS, so the in-process run is the same
  # run. So is the setting: XLA:CPU's float summation order depends on the process's device
  # count (8 here, from conftest), and results would differ in the last bit.
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_DISABLE_MOST_OPTIMIZATIONS": "true",
         # The rerun loads what the first run compiled instead of compiling it again.
         "JAX_COMPILATION_CACHE_DIR": str(cache),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
         "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
  with open(log, "w") as out:
    return subprocess.Popen(
        [sys.executable, str(REPO / "run_pretrain.py"),
         "--config", str(REPO / "configs" / "pretrain_tiny.py"),
         f"--config.data.dataset_dir={dataset_dir}", f"--config.train.steps={steps}",
         "--config.train.batch_size=4", "--config.train.log_every=1",
         "--config.train.ckpt_every=1000", "--config.train.export=false",
         "--config.optim.warmup_steps=1", f"--config.optim.total_steps={TOTAL_STEPS}",
         "--config.mesh=(('data', 1), ('fsdp', 1), ('tensor', 1))",
         f"--workdir={workdir}"],
        cwd=workdir.parent, env=env, stdout=out, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, log: Path) -> str:
  try:
    proc.wait(timeout=TIMEOUT_S)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  text = log.read_text()
  assert proc.returncode == 0, f"exit {proc.returncode}:\n{text[-5000:]}"
  assert "Traceback" not in text, text[-5000:]
  return text


def test_sigterm_saves_exits_cleanly_and_the_rerun_resumes(dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  ckpts = workdir / "checkpoints"
  proc = run_pretrain(dataset_dir, workdir, TOTAL_STEPS, tmp_path / "first.log",
                      tmp_path / "xla_cache")
  try:
    deadline = time.monotonic() + TIMEOUT_S
    while not (ckpts / "1").is_dir():  # Orbax saves the first step whatever the interval
      assert proc.poll() is None, (tmp_path / "first.log").read_text()[-5000:]
      assert time.monotonic() < deadline, "no checkpoint appeared"
      time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
  finally:
    log = finish(proc, tmp_path / "first.log")
  stopped = int(re.search(r"stopped at step (\d+); rerun the same command", log).group(1))
  assert 1 <= stopped < TOTAL_STEPS
  assert sorted(int(p.name) for p in ckpts.iterdir()) == sorted({1, stopped})
  assert not (workdir / "model").exists()  # a stopped run does not export

  final = stopped + 2
  second = run_pretrain(dataset_dir, workdir, final, tmp_path / "second.log",
                        tmp_path / "xla_cache")
  try:  # meanwhile, the run that was never stopped
    config = make_config(dataset_dir, steps=final)
    config.optim.total_steps = TOTAL_STEPS
    straight = flat(train.train_and_evaluate(config, tmp_path / "straight").params)
  finally:
    log = finish(second, tmp_path / "second.log")
  assert re.search(rf"resumed from \S+ at step {stopped}\b", log), log[-5000:]
  logged = [int(s) for s in re.findall(rf"^step (\d+)/{final} ", log, re.M)]
  assert logged == [stopped + 1, stopped + 2]

  # Bitwise the parameters of the run that was never stopped.
  checkpointer = ocp.StandardCheckpointer()
  resumed = flat(checkpointer.restore((ckpts / str(final) / "state").absolute())["params"])
  checkpointer.close()
  assert straight.keys() == resumed.keys()
  for k in straight:
    np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
