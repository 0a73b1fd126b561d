"""Orbax checkpoints of the train state and the data position, and the workdir they live in."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from absl import logging
import jax
import ml_collections
import orbax.checkpoint as ocp

from luke_jax.training.state import TrainState

CONFIG_HASH_FILE = "config_hash.json"
# Fields that may change between a run and its resumption without changing what is trained.
# `train.steps` may grow to train longer (with `optim.total_steps` 0 the decay is re-planned).
_UNHASHED = {("train", "steps"), ("train", "log_every"), ("train", "ckpt_every"),
             ("train", "keep_ckpts"), ("train", "export"), ("train", "eval_batch_size"),
             ("data", "num_workers"), ("mesh",), ("sharding",)}


def config_hash(config: ml_collections.ConfigDict) -> str:
  """SHA-256 of the fields that define the run (see `_UNHASHED` for those left out)."""
  d = json.loads(config.to_json_best_effort(sort_keys=True))
  for path in _UNHASHED:
    node = d
    for key in path[:-1]:
      node = node.get(key, {})
    node.pop(path[-1], None)
  return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def has_checkpoints(workdir: Path) -> bool:
  """Whether `workdir/checkpoints` holds any step (the run will resume rather than start)."""
  ckpt_dir = workdir / "checkpoints"
  return ckpt_dir.exists() and any(p.name.isdigit() for p in ckpt_dir.iterdir())


def check_workdir(workdir: Path, config: ml_collections.ConfigDict) -> None:
  """Refuses a workdir holding checkpoints of another run; records this run's hash otherwise.

  Raises:
    ValueError: if `workdir` has checkpoints and a different (or no) recorded config hash.
  """
  digest = config_hash(config)
  record = workdir / CONFIG_HASH_FILE
  has_ckpts = has_checkpoints(workdir)
  if record.exists():
    stored = json.loads(record.read_text()).get("config_hash")
    if stored != digest and has_ckpts:
      raise ValueError(f"{workdir} holds checkpoints of another run (config hash {stored[:12]} "
                       f"!= {digest[:12]}); use a new --workdir or delete it. Only train.steps, "
                       "train.log_every, ckpt_every, "
                       "keep_ckpts, eval_batch_size, data.num_workers, mesh and sharding may "
                       "change on resume")
  elif has_ckpts:
    raise ValueError(f"{workdir}/checkpoints exists without {CONFIG_HASH_FILE}; not resuming "
                     "from checkpoints of unknown origin")
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / f".{CONFIG_HASH_FILE}.tmp"
    tmp.write_text(json.dumps({"config_hash": digest}) + "\n")
    os.replace(tmp, record)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))


def make_manager(workdir: Path, ckpt_every: int, keep_ckpts: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      (workdir / "checkpoints").absolute(), item_names=("state", "data"),
      options=ocp.CheckpointManagerOptions(save_interval_steps=ckpt_every,
                                           max_to_keep=keep_ckpts,
                                           enable_async_checkpointing=True,
                                           create=True))


def _state_dict(state: TrainState) -> dict[str, Any]:
  # A plain dict keeps the on-disk tree independent of the Python class names.
  return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
          "rng": state.rng}


def due(mngr: ocp.CheckpointManager, step: int) -> bool:
  """Whether `save` at `step` would write (the save interval, or a preemption notice)."""
  return mngr.should_save(step)


def save(mngr: ocp.CheckpointManager, step: int, state: TrainState, data_state: dict, *,
         force: bool = False) -> bool:
  """Saves (asynchronously) if the interval says so or `force`; returns whether it saved.

  `step` is the host's count of `state.step`, so deciding needs no device round trip.
  """
  if force and step in mngr.all_steps():
    return False
  return mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_state_dict(state)),
                                                 data=ocp.args.JsonSave(data_state)),
                   force=force)


def restore_latest(mngr: ocp.CheckpointManager, abstract: TrainState
                   ) -> tuple[TrainState, dict] | None:
  """Restores the newest readable checkpoint into `abstract`'s shardings, or None if none.

  An unreadable newest checkpoint (e.g. a host died mid-write) is skipped with a warning and
  the previous one is tried, so a crash during saving costs one interval, not the run.
  """
  target = _state_dict(abstract)
  errors = []
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for damaged files
      logging.warning("checkpoint %d is unreadable (%s); trying the previous one", step, e)
      errors.append((step, e))
      continue
    s = restored["state"]
    state = TrainState(step=s["step"], params=s["params"], opt_state=s["opt_state"], rng=s["rng"])
    return state, dict(restored["data"])
  if errors:
    raise ValueError(f"no readable checkpoint in {mngr.directory}: "
                     + "; ".join(f"step {s}: {e}" for s, e in errors))
  return None
