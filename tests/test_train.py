"""Pretraining loop: sharding invariance, resumption, stage-1 freezing, NaN guard, bad input."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from conftest import load_config
from luke_jax.pretraining import train
from luke_jax.training import checkpointing, metrics, preemption

pytestmark = pytest.mark.slow  # end to end: `make test` runs it, `make test-fast` does not

ENTITY_PREFIXES = ("luke/entity_embeddings/", "entity_predictions/")


@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
  # Tiny models: XLA's optimisation passes cost more than they save (as in the Flax examples).
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)


def make_config(dataset_dir, total_steps=0, **train):
  config = load_config("pretrain_tiny.py")
  config.data.dataset_dir = str(dataset_dir)
  config.optim.update(warmup_steps=1, total_steps=total_steps)
  config.train.update({**dict(steps=3, batch_size=4, log_every=1, ckpt_every=1,
                              export=False), **train})
  config.mesh = [("data", 1), ("fsdp", 1), ("tensor", 1)]
  return config


def flat(params) -> dict[str, np.ndarray]:
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_leaves_with_path(params)}


def test_one_device_equals_2x2x2_mesh(dataset_dir, tmp_path):
  one = train.train_and_evaluate(make_config(dataset_dir), tmp_path / "one")
  config = make_config(dataset_dir)
  config.mesh = [("data", 2), ("fsdp", 2), ("tensor", 2)]
  eight = train.train_and_evaluate(config, tmp_path / "eight")
  assert len(one.losses) == len(eight.losses) == 3
  np.testing.assert_allclose([l for _, l in one.losses], [l for _, l in eight.losses],
                             atol=1e-5, rtol=0)


def test_resume_is_bitwise(dataset_dir, tmp_path):
  straight = train.train_and_evaluate(make_config(dataset_dir, steps=4), tmp_path / "straight")
  stopped = train.train_and_evaluate(make_config(dataset_dir, steps=4), tmp_path / "resumed",
                                    stop_after=2)
  assert stopped.preempted and stopped.step == 2
  resumed = train.train_and_evaluate(make_config(dataset_dir, steps=4), tmp_path / "resumed")
  assert not resumed.preempted and resumed.step == 4
  assert [s for s, _ in resumed.losses] == [3, 4]
  a, b = flat(straight.params), flat(resumed.params)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_sigterm_flag_saves_and_stops(dataset_dir, tmp_path):
  flag = preemption.PreemptionFlag()
  flag.set()  # as the SIGTERM handler would: the loop saves at the next step boundary
  result = train.train_and_evaluate(make_config(dataset_dir), tmp_path, preemption=flag)
  assert result.preempted and result.step == 0
  assert (tmp_path / "checkpoints" / "0").is_dir()


def test_stage1_freezes_everything_but_entities(dataset_dir, tmp_path):
  init = train.train_and_evaluate(make_config(dataset_dir, steps=2, stage=1), tmp_path / "init",
                                 stop_after=0)  # stops before the first update: initial params
  trained = train.train_and_evaluate(make_config(dataset_dir, steps=2, stage=1), tmp_path / "s1")
  before, after = flat(init.params), flat(trained.params)
  changed = []
  for k in before:
    name = "/".join(part.strip("[]'") for part in k.split("]["))
    if name.startswith(ENTITY_PREFIXES):
      changed.append(not np.array_equal(before[k], after[k]))
    else:
      np.testing.assert_array_equal(before[k], after[k], err_msg=f"{name} moved in stage 1")
  assert any(changed)


def test_nan_loss_raises_with_step(dataset_dir, tmp_path):
  config = make_config(dataset_dir, steps=4)
  config.optim.learning_rate = float("inf")
  with pytest.raises(metrics.NonFiniteLossError, match=r"at step \d"):
    train.train_and_evaluate(config, tmp_path)
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and max(saved) < 4


def test_bad_inputs_fail_before_training(dataset_dir, tmp_path):
  config = make_config(dataset_dir)
  config.mesh = [("data", 4), ("fsdp", 4), ("tensor", 1)]
  with pytest.raises(ValueError, match="needs at least 16 devices"):
    train.train_and_evaluate(config, tmp_path / "mesh")
  config = make_config(dataset_dir)
  config.model.vocab_size = 77
  with pytest.raises(ValueError, match="vocab_size=77 but the dataset"):
    train.train_and_evaluate(config, tmp_path / "vocab")
  config = make_config(dataset_dir)
  config.model.entity_vocab_size = 5
  with pytest.raises(ValueError, match="entity_vocab_size=5 but the dataset"):
    train.train_and_evaluate(config, tmp_path / "vocab")
  assert not (tmp_path / "mesh").exists() and not (tmp_path / "vocab").exists()


def test_workdir_of_another_run_is_refused(dataset_dir, tmp_path):
  train.train_and_evaluate(make_config(dataset_dir, 10, steps=1), tmp_path)
  assert json.loads((tmp_path / checkpointing.CONFIG_HASH_FILE).read_text())["config_hash"]
  with pytest.raises(ValueError, match="another run"):
    train.train_and_evaluate(make_config(dataset_dir, 10, steps=1, seed=7), tmp_path)
  # Only the length of the run may change (its schedule is fixed by optim.total_steps): this
  # resumes.
  assert train.train_and_evaluate(make_config(dataset_dir, 10, steps=2), tmp_path).step == 2


def test_gradient_accumulation_matches_one_big_batch(dataset_dir, tmp_path):
  """Sums and weights, not means, flow through the micro-batches: 2 x 2 equals 1 x 4."""
  config = make_config(dataset_dir, steps=2)
  config.model.hidden_dropout_prob = config.model.attention_probs_dropout_prob = 0.0
  whole = train.train_and_evaluate(config, tmp_path / "whole")
  config = make_config(dataset_dir, steps=2, grad_accum_steps=2)
  config.model.hidden_dropout_prob = config.model.attention_probs_dropout_prob = 0.0
  accumulated = train.train_and_evaluate(config, tmp_path / "accumulated")
  np.testing.assert_allclose([l for _, l in whole.losses], [l for _, l in accumulated.losses],
                             atol=1e-5, rtol=0)
  a, b = flat(whole.params), flat(accumulated.params)
  for k in a:
    np.testing.assert_allclose(a[k], b[k], atol=1e-5, rtol=0, err_msg=k)


def test_unreadable_newest_checkpoint_falls_back_to_the_previous(dataset_dir, tmp_path):
  import shutil
  straight = train.train_and_evaluate(make_config(dataset_dir, 4, steps=4),
                                      tmp_path / "straight")
  work = tmp_path / "damaged"
  train.train_and_evaluate(make_config(dataset_dir, 4, steps=3, keep_ckpts=5), work)
  newest = work / "checkpoints" / "3"
  assert newest.is_dir()
  for child in (newest / "state").iterdir():  # as if the host died while writing step 3
    shutil.rmtree(child) if child.is_dir() else child.unlink()
  resumed = train.train_and_evaluate(make_config(dataset_dir, 4, steps=4, keep_ckpts=5), work)
  assert [s for s, _ in resumed.losses] == [3, 4]  # steps 3 and 4 were trained again
  a, b = flat(straight.params), flat(resumed.params)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
