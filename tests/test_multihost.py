"""Two processes on this machine act as two hosts: `run_pretrain.py --jax_distributed`.

Each process sees 2 CPU devices and the hosts talk through gloo; together they train the tiny
config on a 4-device mesh. The result must be the run a single process with 4 devices makes
from the same global batch: the same losses, the same final parameters, and one checkpoint per
step holding both hosts' shards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import luke_jax
from luke_jax import checkpoint as luke_checkpoint
from luke_jax.models import registry
from luke_jax.pretraining import train
from luke_jax.tokenization.entity_vocab import EntityVocab
from luke_jax.tokenization.tokenizer import LukeTokenizer
# The tiny dataset, its config and the fast-compile setting are test_train's.
from test_train import _fast_compiles, flat, make_config  # noqa: F401

pytestmark = pytest.mark.slow  # end to end: `make test` runs it, `make test-fast` does not

REPO = Path(__file__).resolve().parents[1]
STEPS = 3
TIMEOUT_S = 600  # generous: compile time on a shared 2-core machine varies several-fold


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def host_env(devices: int) -> dict[str, str]:
  """Environment of one simulated host: `devices` CPU devices, gloo, fast compiles."""
  return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
          "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
          # jax.config's environment forms: gloo collectives (the CPU default, made explicit)
          # and the test suite's fast compiles, so every run here compiles alike.
          "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
          "JAX_DISABLE_MOST_OPTIMIZATIONS": "true"}


def start_hosts(args: list[str], logdir: Path, num_hosts: int = 2) -> list[subprocess.Popen]:
  """`run_pretrain.py --jax_distributed ARGS` as `num_hosts` processes of 2 CPU devices each.

  Output goes to `logdir/host<i>.log` (a pipe nobody reads would fill up and stall the host).
  """
  port = free_port()
  procs = []
  for i in range(num_hosts):
    with open(logdir / f"host{i}.log", "w") as log:
      procs.append(subprocess.Popen(
          [sys.executable, str(REPO / "run_pretrain.py"), "--jax_distributed",
           f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={num_hosts}",
           f"--process_id={i}", *args],
          cwd=logdir, env=host_env(2), stdout=log, stderr=subprocess.STDOUT))
  return procs


def wait_hosts(procs: list[subprocess.Popen], logdir: Path) -> list[str]:
  """Waits for every host (killing all on a timeout); returns their logs."""
  try:
    for proc in procs:
      proc.wait(timeout=TIMEOUT_S)
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  logs = [(logdir / f"host{i}.log").read_text() for i in range(len(procs))]
  for i, (proc, log) in enumerate(zip(procs, logs)):
    assert proc.returncode == 0, f"host {i} exited {proc.returncode}:\n{log[-5000:]}"
  return logs


def tensorboard_scalars(workdir: Path, tag: str) -> dict[int, float]:
  """`{step: value}` of a scalar from the TFRecord event files tensorboardX wrote."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out = {}
  for path in sorted((workdir / "tensorboard").glob("events.out.tfevents.*")):
    data = path.read_bytes()
    pos = 0
    while pos < len(data):  # record: u64 length, u32 crc, payload, u32 crc
      (length,) = struct.unpack_from("<Q", data, pos)
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      for value in event.summary.value:
        if value.tag == tag:
          out[event.step] = value.simple_value
  return out


def test_two_hosts_equal_one_host_with_the_same_devices(dataset_dir, tmp_path):
  workdir = tmp_path / "two_hosts"
  # The hashed fields equal make_config's, so the one-host run below is the same run.
  procs = start_hosts(["--config", str(REPO / "configs" / "pretrain_tiny.py"),
                       f"--config.data.dataset_dir={dataset_dir}",
                       f"--config.train.steps={STEPS}", "--config.train.batch_size=4",
                       "--config.train.log_every=1", "--config.train.ckpt_every=1",
                       "--config.optim.warmup_steps=1", f"--workdir={workdir}"], tmp_path)
  try:  # the one-host reference trains meanwhile, on 4 of this process's 8 devices
    config = make_config(dataset_dir, steps=STEPS)
    config.mesh = [("data", 4), ("fsdp", 1), ("tensor", 1)]
    one = train.train_and_evaluate(config, tmp_path / "one_host")
  finally:
    logs = wait_hosts(procs, tmp_path)
  assert "process 1 of 2" in logs[1]

  # Losses: process 0 logs every step to TensorBoard.
  two = tensorboard_scalars(workdir, "train/loss")
  assert sorted(two) == list(range(1, STEPS + 1))
  np.testing.assert_allclose([two[s] for s, _ in one.losses], [l for _, l in one.losses],
                             atol=1e-5, rtol=0)

  # Final parameters: process 0 gathered both hosts' shards and exported them.
  _, exported = luke_jax.from_pretrained(workdir / "model")
  a, b = flat(one.params), flat(exported)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_allclose(b[k], a[k], atol=1e-5, rtol=0, err_msg=k)
  assert (workdir / "hf_export" / "config.json").exists()

  # One checkpoint per saved step, written together: each host its own shards.
  ckpts = workdir / "checkpoints"
  assert sorted(p.name for p in ckpts.iterdir()) == ["2", "3"]  # keep_ckpts=2
  last = ckpts / "3"
  assert (last / "commit_success.txt").exists()
  assert sorted(p.name for p in (last / "state").glob("ocdbt.process_*")) == [
      "ocdbt.process_0", "ocdbt.process_1"]
  assert json.loads((last / "data" / "metadata").read_text())["step"] == STEPS


def test_sigterm_to_one_host_stops_both_at_one_step(dataset_dir, tmp_path):
  """JAX's preemption service spreads one host's SIGTERM: both hosts save the same step.

  The run also starts from an `init_checkpoint` into the scanned layout, which each host
  reads shard by shard and stacks on the devices.
  """
  config = make_config(dataset_dir)
  model_config = train.model_config_from(config, LukeTokenizer.from_pretrained(dataset_dir),
                                        EntityVocab.load(dataset_dir / "entity_vocab.jsonl"))
  init = luke_checkpoint.save_checkpoint(
      tmp_path / "init", registry.init_params("LukeForMaskedLM", model_config,
                                              jax.random.PRNGKey(1)),
      model_config, "LukeForMaskedLM")
  workdir = tmp_path / "run"
  procs = start_hosts(["--config", str(REPO / "configs" / "pretrain_tiny.py"),
                       f"--config.data.dataset_dir={dataset_dir}", "--config.train.steps=500",
                       "--config.train.batch_size=4", "--config.train.ckpt_every=100",
                       "--config.train.export=false", f"--config.train.init_checkpoint={init}",
                       "--config.model.scan_layers=true", f"--workdir={workdir}"], tmp_path)
  try:
    deadline = time.monotonic() + TIMEOUT_S
    while not (workdir / "checkpoints" / "1").is_dir():  # Orbax saves the first step
      assert all(p.poll() is None for p in procs), "a host ended before its first checkpoint"
      assert time.monotonic() < deadline, "no checkpoint appeared"
      time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)
  finally:
    logs = wait_hosts(procs, tmp_path)
  assert all(f"initialised params from {init}" in log for log in logs)
  stops = [re.findall(r"stopped at step (\d+) on request", log) for log in logs]
  assert stops[0] and stops[0] == stops[1], stops
  step = int(stops[0][0])
  assert 1 <= step < 500
  assert (workdir / "checkpoints" / str(step) / "commit_success.txt").exists()
