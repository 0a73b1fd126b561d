"""Orbax checkpoints of the train state and the data position, and the workdir they live in.

Resuming trusts only what it can check. Each saved step gets a manifest of its files' sizes and
SHA-256 (`MANIFEST_FILE`), written by process 0 once orbax has finalised the step; a step that
fails it, or that orbax cannot read, is moved aside into `checkpoints_damaged/` (never deleted)
and saved again when training reaches it. Each step's data item also records the length of the
learning-rate schedule the run planned, and a resumed run must plan the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from luke_jax.training.state import TrainState

CONFIG_HASH_FILE = "config_hash.json"
# In every step directory: `{"files": {relative path: [size, sha256 hex]}}` of the step's other
# files. Orbax's zarr3 arrays checksum only their shard index (`crc32c` among the `index_codecs`
# in orbax's tensorstore_utils), not the chunk data: bytes flipped in an array file restore
# without an error (measured with orbax-checkpoint 0.12), so the check is ours.
MANIFEST_FILE = "luke_jax_sha256.json"
# Key of the data item (JSON) that holds the schedule length the run planned (`make_manager`).
SCHEDULE_KEY = "schedule_steps"
# Damaged steps go to `<checkpoints><suffix>/<step>`, next to the checkpoint directory.
DAMAGED_SUFFIX = "_damaged"
_HASH_CHUNK = 4 << 20  # streamed: memory stays flat whatever the file size
# Fields that may change between a run and its resumption without changing what is trained.
# `train.steps` may grow to train longer when `optim.total_steps` fixes the schedule; with
# `optim.total_steps` 0 the schedule is the run's length, stored with each checkpoint, and a
# resume that would change it is refused (`restore_latest`).
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


class DamagedCheckpointError(Exception):
  """A step's files do not match its manifest (or the manifest itself is unreadable)."""


def _sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(_HASH_CHUNK):
      digest.update(chunk)  # hashlib drops the GIL on large buffers
  return digest.hexdigest()


def _step_files(step_dir: Path) -> list[Path]:
  return sorted(p for p in step_dir.rglob("*")
                if p.is_file() and not p.name.startswith((MANIFEST_FILE, f".{MANIFEST_FILE}")))


def write_manifest(step_dir: Path) -> dict[str, Any]:
  """Writes `step_dir/MANIFEST_FILE` (atomically) for the files orbax wrote; returns its content.

  Call only once orbax has finalised the step: no file may change afterwards.
  """
  start = time.perf_counter()
  files = {str(p.relative_to(step_dir)): [p.stat().st_size, _sha256(p)]
           for p in _step_files(step_dir)}
  manifest = {"version": 1, "files": files}
  tmp = step_dir / f".{MANIFEST_FILE}.tmp"
  tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
  os.replace(tmp, step_dir / MANIFEST_FILE)
  logging.info("checksums of %s: %d files, %.1f MB in %.2f s", step_dir, len(files),
               sum(size for size, _ in files.values()) / 1e6, time.perf_counter() - start)
  return manifest


def verify(step_dir: Path) -> bool:
  """Checks every file `step_dir/MANIFEST_FILE` lists: size first, then SHA-256.

  Files it does not list are not read by the check (orbax wrote none after the manifest).

  Returns:
    True if all match; False if the step has no manifest (saved before checksums were written,
    or the run stopped between orbax finalising the step and the manifest), so it is unverified.

  Raises:
    DamagedCheckpointError: naming the first file that is missing or differs, or the manifest
      if it cannot be parsed.
  """
  manifest = step_dir / MANIFEST_FILE
  if not manifest.exists():
    return False
  start = time.perf_counter()
  try:
    files = {str(name): (int(size), str(digest))
             for name, (size, digest) in json.loads(manifest.read_text())["files"].items()}
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise DamagedCheckpointError(f"{MANIFEST_FILE} is unreadable ({e})") from e
  for name, (size, digest) in sorted(files.items()):
    path = step_dir / name
    try:
      actual = path.stat().st_size
      if actual != size:
        raise DamagedCheckpointError(f"{name} has {actual} bytes, {size} when saved")
      if _sha256(path) != digest:
        raise DamagedCheckpointError(f"{name} fails its SHA-256 checksum")
    except OSError as e:
      raise DamagedCheckpointError(f"{name}: {e.strerror or e}") from e
  logging.info("verified %s: %d files, %.1f MB in %.2f s", step_dir, len(files),
               sum(size for size, _ in files.values()) / 1e6, time.perf_counter() - start)
  return True


class CheckpointManager(ocp.CheckpointManager):
  """Orbax's manager, plus checksums, steps to save again and the run's schedule length.

  Attributes:
    schedule_steps: the length of the run's learning-rate schedule, stored in every step's data
      item (None: not stored, nor checked).
    resave: steps `restore_latest` moved aside; `save` writes them again when training reaches
      them, whatever the interval.
  """

  def __init__(self, *args, schedule_steps: int | None = None, **kwargs):
    super().__init__(*args, **kwargs)
    self.schedule_steps = schedule_steps
    self.resave: set[int] = set()
    self._unsummed: list[int] = []  # steps saved here whose manifest is not written yet

  def step_dir(self, step: int) -> Path:
    return Path(self.directory) / str(step)  # orbax's default step name format

  def save(self, step: int, *args, force: bool = False, **kwargs) -> bool:
    if force or self.should_save(step):
      # Orbax waits for the previous save at this point anyway. Writing that step's manifest
      # here, before this save starts, means retention (which deletes old steps only once this
      # one is finalised) never deletes a step while it is being hashed.
      self.wait_until_finished()
    saved = super().save(step, *args, force=force, **kwargs)
    if saved:
      self._unsummed.append(step)
      self.resave.discard(step)
    return saved

  def wait_until_finished(self) -> None:
    """Orbax's, then process 0 writes the manifests of the steps finalised meanwhile."""
    super().wait_until_finished()
    pending, self._unsummed = self._unsummed, []
    if jax.process_index() != 0:
      return  # one writer; every host verifies through process 0 (`_verify_everywhere`)
    for step in pending:
      step_dir = self.step_dir(step)
      if step not in self.all_steps() or not step_dir.is_dir():
        continue
      try:
        write_manifest(step_dir)
      except OSError as e:
        logging.warning("could not write the checksums of %s (%s); a resumed run will restore "
                        "it unverified", step_dir, e)


def make_manager(workdir: Path, ckpt_every: int, keep_ckpts: int, *,
                 schedule_steps: int | None = None) -> CheckpointManager:
  """The run's checkpoint manager over `workdir/checkpoints`.

  Args:
    workdir: the run's directory.
    ckpt_every: the save interval in steps.
    keep_ckpts: how many steps to keep (the newest); damaged ones moved aside do not count.
    schedule_steps: the learning-rate schedule's length (`optim.schedule_steps`), stored with
      every step and checked on resume; None for runs without one.
  """
  return CheckpointManager(
      (workdir / "checkpoints").absolute(), item_names=("state", "data"),
      options=ocp.CheckpointManagerOptions(save_interval_steps=ckpt_every,
                                           max_to_keep=keep_ckpts,
                                           enable_async_checkpointing=True,
                                           create=True),
      schedule_steps=schedule_steps)


def _state_dict(state: TrainState) -> dict[str, Any]:
  # A plain dict keeps the on-disk tree independent of the Python class names.
  return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
          "rng": state.rng}


def due(mngr: CheckpointManager, step: int) -> bool:
  """Whether `save` at `step` would write (the interval, a preemption notice, a step to redo)."""
  return step in mngr.resave or mngr.should_save(step)


def save(mngr: CheckpointManager, step: int, state: TrainState, data_state: dict, *,
         force: bool = False) -> bool:
  """Saves (asynchronously) if the interval says so or `force`; returns whether it saved.

  `step` is the host's count of `state.step`, so deciding needs no device round trip. A step
  moved aside as damaged is saved again whatever the interval.
  """
  force = force or step in mngr.resave
  if force and step in mngr.all_steps():
    return False
  schedule = mngr.schedule_steps
  if schedule is not None:
    data_state = {**data_state, SCHEDULE_KEY: int(schedule)}
  return mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_state_dict(state)),
                                                 data=ocp.args.JsonSave(data_state)),
                   force=force)


def _everywhere(ok: bool) -> bool:
  """Whether `ok` holds on every process (all hosts take the same branch)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.asarray(ok))))


def _verify_everywhere(step_dir: Path) -> tuple[bool, str | None]:
  """`(verified, problem)` of `verify(step_dir)`, decided by process 0 for every process.

  One reader keeps the I/O at one copy of the checkpoint; the directory is on a filesystem every
  host shares (orbax needs that too), and the broadcast makes all hosts act alike.
  """
  code, problem = 0, None  # 0: no manifest, 1: verified, 2: damaged
  if jax.process_index() == 0:
    try:
      code = 1 if verify(step_dir) else 0
    except DamagedCheckpointError as e:
      code, problem = 2, str(e)
  if jax.process_count() > 1:
    code = int(multihost_utils.broadcast_one_to_all(np.int32(code)))
    if code == 2 and problem is None:
      problem = "checksums differ (see process 0's log)"
  return code == 1, problem


def _move_aside(mngr: CheckpointManager, step: int) -> Path:
  """Renames step `step` into `<checkpoints>_damaged/` (nothing is deleted); the manager then
  no longer lists it, so retention ignores it and the step can be saved again."""
  src = Path(mngr.directory) / str(step)
  aside = src.parent.with_name(src.parent.name + DAMAGED_SUFFIX)
  dest, n = aside / str(step), 0
  while dest.exists():  # the same step damaged again: keep both
    n += 1
    dest = aside / f"{step}.{n}"
  if jax.process_count() > 1:  # every host has picked `dest` before process 0 takes it
    multihost_utils.sync_global_devices(f"luke_jax_checkpoint_move_aside_{step}")
  if jax.process_index() == 0:
    aside.mkdir(parents=True, exist_ok=True)
    src.rename(dest)
  if jax.process_count() > 1:  # and nobody reloads the step list before it is gone
    multihost_utils.sync_global_devices(f"luke_jax_checkpoint_moved_aside_{step}")
  mngr.reload()  # orbax caches the step list (`CheckpointManager.reload`)
  mngr.resave.add(step)
  return dest


def _one_line(e: BaseException, limit: int = 300) -> str:
  text = " ".join(f"{type(e).__name__}: {e}".split())
  return text if len(text) <= limit else text[:limit] + "..."


def restore_latest(mngr: CheckpointManager, abstract: TrainState
                   ) -> tuple[TrainState, dict] | None:
  """Restores the newest intact checkpoint into `abstract`'s shardings, or None if none.

  A step that fails its checksums (`verify`), or has none and cannot be read by orbax, is moved
  aside into `<checkpoints>_damaged/` with a warning naming where, and the previous step is
  tried: a damaged step costs the steps since the previous one, and the run saves it again
  when it gets there (`CheckpointManager.resave`).

  Raises:
    ValueError: if no step is intact (all moved aside); if a step whose checksums match cannot
      be restored (its files are as saved, so the reading code changed: nothing is moved); if
      the step's run planned a learning-rate schedule of another length than
      `mngr.schedule_steps`.
  """
  target = _state_dict(abstract)
  damaged = []
  for step in sorted(mngr.all_steps(), reverse=True):
    step_dir = Path(mngr.directory) / str(step)
    verified, problem = _verify_everywhere(step_dir)
    if problem is None:
      try:
        restored = mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
      except Exception as e:  # orbax raises many types for damaged files
        problem = _one_line(e)
      if not _everywhere(problem is None):
        problem = problem or "unreadable on another process"
        if verified:
          raise ValueError(f"{step_dir}: its files match their checksums but it cannot be "
                           f"restored into this run's state ({problem}); resume with the code "
                           "that saved it, or use a new --workdir")
    if problem is not None:
      moved = _move_aside(mngr, step)
      logging.warning("checkpoint %s is damaged (%s); moved it to %s, resuming from an earlier "
                      "step (step %d will be saved again)", step_dir, problem, moved, step)
      damaged.append(f"step {step}: {problem}")
      continue
    s = restored["state"]
    state = TrainState(step=s["step"], params=s["params"], opt_state=s["opt_state"], rng=s["rng"])
    data = dict(restored["data"])
    _check_schedule(step_dir, data.pop(SCHEDULE_KEY, None), mngr.schedule_steps)
    return state, data
  if damaged:
    raise ValueError(f"no readable checkpoint in {mngr.directory} ({'; '.join(damaged)}); all "
                     f"were moved to {mngr.directory}{DAMAGED_SUFFIX}; rerun to start from the "
                     "beginning, or move a repaired step back")
  return None


def _check_schedule(step_dir: Path, stored: int | None, planned: int | None) -> None:
  """Refuses to resume over a learning-rate schedule of another length than the step's.

  With `optim.total_steps` 0 the decay is as long as the run, and `train.steps` stays out of
  the config hash so a run with a fixed schedule can be stopped early or extended; re-planning
  the decay in the middle would change the learning rate of steps already planned. Checkpoints
  without a stored length (older releases) resume unchecked.
  """
  if stored is None or planned is None or int(stored) == int(planned):
    return
  raise ValueError(
      f"{step_dir}: the run planned its learning-rate schedule over {stored} steps, resuming "
      f"would re-plan it over {planned} steps (config.optim.total_steps, or config.train.steps "
      f"when that is 0); rerun with --config.train.steps={stored} to finish the planned schedule, "
      "or train a longer schedule in a new --workdir (a fixed config.optim.total_steps lets "
      "train.steps change on resume)")
