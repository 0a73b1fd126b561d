"""Checkpoint faults as a user meets them: a tiny run, files damaged on disk, the same run again.

Damaged steps are moved aside and saved again, flipped bytes are caught by checksums, a resumed
run may not re-plan its learning-rate schedule, and `keep_ckpts` always leaves a checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from luke_jax.finetune import trainer
from luke_jax.pretraining import train
from luke_jax.training import checkpointing, state as state_lib
# The tiny dataset's config and the fast-compile setting are test_train's; the toy fine-tuning
# task is test_finetune_trainer's.
from test_finetune_trainer import toy  # noqa: F401
from test_train import _fast_compiles, flat, make_config  # noqa: F401

pytestmark = pytest.mark.slow  # end to end: `make test` runs it, `make test-fast` does not

# A schedule that does not depend on `train.steps`, which the reruns change.
TOTAL_STEPS = 1000


def _config(dataset_dir, **train_fields):
  config = make_config(dataset_dir, **train_fields)
  config.optim.total_steps = TOTAL_STEPS
  return config


def _steps(workdir: Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _damaged(workdir: Path) -> list[str]:
  return sorted(p.name for p in (workdir / "checkpoints_damaged").iterdir())


def _garble(workdir: Path, step: int) -> None:
  """Damage orbax notices: the state's metadata is no longer JSON."""
  (workdir / "checkpoints" / str(step) / "state" / "_METADATA").write_text("damaged")


def _flip_bytes(workdir: Path, step: int) -> Path:
  """Damage orbax does not notice: two bytes of the largest array file inverted."""
  files = [p for p in (workdir / "checkpoints" / str(step) / "state").rglob("*") if p.is_file()]
  target = max(files, key=lambda p: p.stat().st_size)
  data = bytearray(target.read_bytes())
  for offset in (len(data) // 3, len(data) // 2):
    data[offset] ^= 0xFF
  target.write_bytes(bytes(data))
  return target


def _saved_params(step_dir: Path) -> dict[str, np.ndarray]:
  checkpointer = ocp.StandardCheckpointer()
  try:
    return flat(checkpointer.restore((step_dir / "state").absolute())["params"])
  finally:
    checkpointer.close()


def _assert_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def finished(dataset_dir, tmp_path_factory):
  """A pretraining run stopped after step 2 with `keep_ckpts=1` (as on SIGTERM), then resumed to
  step 3 keeping 3: checkpoints 2 and 3. Tests damage copies of it."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  stopped = train.train_and_evaluate(_config(dataset_dir, steps=3, keep_ckpts=1), workdir,
                                     stop_after=2)
  after_stop = _steps(workdir)
  resumed = train.train_and_evaluate(_config(dataset_dir, steps=3, keep_ckpts=3), workdir)
  return types.SimpleNamespace(workdir=workdir, stopped=stopped, after_stop=after_stop,
                               resumed=resumed, params=flat(resumed.params))


def _copy(finished, tmp_path: Path) -> Path:
  return Path(shutil.copytree(finished.workdir, tmp_path / "run"))


def test_a_stopped_run_keeping_one_checkpoint_resumes_from_it(finished):
  assert finished.stopped.preempted and finished.stopped.step == 2
  assert finished.after_stop == [2]
  assert [s for s, _ in finished.resumed.losses] == [3]
  assert _steps(finished.workdir) == [2, 3]


def test_keep_ckpts_0_is_refused_before_any_work(dataset_dir, toy, tmp_path):  # noqa: F811
  with pytest.raises(ValueError, match=r"^config\.train\.keep_ckpts=0 must be at least 1$"):
    train.train_and_evaluate(_config(dataset_dir, keep_ckpts=0), tmp_path / "pretrain")
  toy.train.keep_ckpts = 0
  with pytest.raises(ValueError, match=r"^config\.train\.keep_ckpts=0 must be at least 1$"):
    trainer.finetune(toy, tmp_path / "finetune")
  assert not (tmp_path / "pretrain").exists() and not (tmp_path / "finetune").exists()


def test_a_damaged_newest_checkpoint_is_moved_aside_and_saved_again(finished, dataset_dir,
                                                                    tmp_path, caplog):
  workdir = _copy(finished, tmp_path)
  _garble(workdir, 3)
  with caplog.at_level(logging.WARNING):
    result = train.train_and_evaluate(_config(dataset_dir, steps=4, keep_ckpts=2), workdir)
  assert [s for s, _ in result.losses] == [3, 4]  # resumed from 2
  # Step 3 was saved again (bitwise what it was), and retention dropped 2, not a damaged step.
  assert _steps(workdir) == [3, 4]
  _assert_equal(_saved_params(workdir / "checkpoints" / "3"), finished.params)
  assert _damaged(workdir) == ["3"]
  assert str(workdir.absolute() / "checkpoints_damaged" / "3") in caplog.text
  # The next damage costs one more step, not the run ("no readable checkpoint" before).
  _garble(workdir, 4)
  result = train.train_and_evaluate(_config(dataset_dir, steps=5, keep_ckpts=2), workdir)
  assert [s for s, _ in result.losses] == [4, 5]
  assert _damaged(workdir) == ["3", "4"] and _steps(workdir) == [4, 5]


def test_flipped_bytes_fail_the_checksums_and_the_step_is_trained_again(finished, dataset_dir,
                                                                       tmp_path, caplog):
  workdir = _copy(finished, tmp_path)
  flipped = _flip_bytes(workdir, 3)
  with caplog.at_level(logging.WARNING):
    result = train.train_and_evaluate(_config(dataset_dir, steps=3, keep_ckpts=3), workdir)
  # Restored from 2, not from the flipped 3: step 3 is trained again, to the same numbers.
  assert result.losses == finished.resumed.losses
  _assert_equal(flat(result.params), finished.params)
  assert _damaged(workdir) == ["3"] and _steps(workdir) == [2, 3]
  assert str(flipped.relative_to(workdir / "checkpoints" / "3")) in caplog.text
  # The step saved again has its checksums too.
  assert checkpointing.verify(workdir / "checkpoints" / "3")


def test_a_resumed_run_may_not_change_its_schedule_length(dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  # optim.total_steps 0: the linear decay is as long as train.steps. stop_after=0 saves step 0
  # without training, which is all the check needs.
  train.train_and_evaluate(make_config(dataset_dir, steps=2), workdir, stop_after=0)
  with pytest.raises(ValueError) as refused:
    train.train_and_evaluate(make_config(dataset_dir, steps=3), workdir, stop_after=0)
  message = str(refused.value)
  assert "\n" not in message and "config.optim.total_steps" in message
  assert "2 steps" in message and "3 steps" in message and "--config.train.steps=2" in message
  assert train.train_and_evaluate(make_config(dataset_dir, steps=2), workdir,
                                  stop_after=0).step == 0
  # A checkpoint of the previous release (no schedule length, no checksums) resumes as before.
  step_dir = workdir / "checkpoints" / "0"
  (step_dir / checkpointing.MANIFEST_FILE).unlink()
  data_file = step_dir / "data" / "metadata"
  data = json.loads(data_file.read_text())
  del data[checkpointing.SCHEDULE_KEY]
  data_file.write_text(json.dumps(data))
  result = train.train_and_evaluate(make_config(dataset_dir, steps=3), workdir, stop_after=0)
  assert result.preempted and result.step == 0


def test_a_finished_finetuning_run_replaces_its_damaged_final_checkpoint(
    toy, tmp_path):  # noqa: F811
  toy.data.dev_file = toy.data.test_file = ""  # no evaluation: only the checkpoints matter
  toy.train.update(num_epochs=1, steps=2, ckpt_every=1, keep_ckpts=2, log_every=1)
  workdir = tmp_path / "w"
  first = trainer.finetune(toy, workdir)
  assert first.step == 2 and _steps(workdir) == [1, 2]
  _garble(workdir, 2)
  again = trainer.finetune(toy, workdir)
  # Trained from step 1 again, to the same loss, and the final checkpoint saved again.
  assert again.losses == [(s, l) for s, l in first.losses if s == 2]
  assert _steps(workdir) == [1, 2]
  _saved_params(workdir / "checkpoints" / "2")  # readable again
  assert _damaged(workdir) == ["2"]
  assert trainer.finetune(toy, workdir).losses == []  # a third run has nothing left to train


def _toy_state(step: int, leaf: str = "w") -> state_lib.TrainState:
  return state_lib.TrainState(
      step=jnp.int32(step), params={leaf: jnp.full((3,), step, jnp.float32)},
      opt_state={"count": jnp.int32(step)}, rng=jax.random.PRNGKey(0))


def _abstract(state: state_lib.TrainState) -> state_lib.TrainState:
  return state_lib.abstract_with_shardings(jax.eval_shape(lambda: state),
                                           jax.tree.map(lambda a: a.sharding, state))


def test_only_damage_is_moved_aside_not_a_step_the_code_cannot_read(tmp_path):
  mngr = checkpointing.make_manager(tmp_path, 1, 3)
  for step in (1, 2):
    checkpointing.save(mngr, step, _toy_state(step), {"step": step}, force=True)
  mngr.close()
  # Without checksums (as an older release saved it), a step orbax cannot read is damaged.
  (tmp_path / "checkpoints" / "2" / checkpointing.MANIFEST_FILE).unlink()
  _garble(tmp_path, 2)
  mngr = checkpointing.make_manager(tmp_path, 1, 3)
  try:
    state, data = checkpointing.restore_latest(mngr, _abstract(_toy_state(0)))
    assert int(state.step) == 1 and data == {"step": 1}
    assert _damaged(tmp_path) == ["2"] and mngr.all_steps() == [1]
    # With its checksums intact, a step that does not fit the state is not damage: the run
    # stops and the step stays.
    with pytest.raises(ValueError, match=r"checkpoints/1: its files match their checksums"):
      checkpointing.restore_latest(mngr, _abstract(_toy_state(0, leaf="v")))
    assert _steps(tmp_path) == [1] and _damaged(tmp_path) == ["2"]
  finally:
    mngr.close()
