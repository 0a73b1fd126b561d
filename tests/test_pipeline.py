"""`luke_jax.data.pipeline`: batches depend only on (seed, step, data); restarts and hosts agree.

Worker processes cost seconds to start (grain spawns them and imports jax there), so only
`test_restart_*` starts any; every other test checks the same pure `step -> batch` function
through `batch_at` or the in-process thread.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from luke_jax.data.masking import MaskingConfig
from luke_jax.data.pipeline import PretrainingPipeline

VOCAB = 500
NUM_EXAMPLES = 203  # not a multiple of the batch: each epoch drops the remainder
BATCH = 8


def make_source(num: int = NUM_EXAMPLES, seed: int = 0) -> list[dict[str, np.ndarray]]:
  rng = np.random.default_rng(seed)
  source = []
  for page in range(num):
    n = int(rng.integers(6, 31))
    k = int(rng.integers(0, 5))
    positions = np.full((k, 3), -1, np.int32)
    for i, start in enumerate(np.sort(rng.choice(n - 1, k, replace=False))):
      positions[i, :2] = [start, start + 1]
    source.append(dict(word_ids=rng.integers(3, VOCAB - 1, n).astype(np.int32),
                       entity_ids=rng.integers(3, 100, k).astype(np.int32),
                       entity_position_ids=positions, page_id=np.int64(page)))
  return source


CONFIG = MaskingConfig(cls_id=0, sep_id=2, pad_id=1, mask_id=VOCAB - 1, vocab_size=VOCAB,
                       entity_mask_id=2, entity_vocab_size=100, max_seq_length=32,
                       max_entity_length=4, max_mention_length=3)
IS_WORD_START = np.random.default_rng(1).random(VOCAB) < 0.7
SOURCE = make_source()


def pipeline(**kwargs) -> PretrainingPipeline:
  kwargs = dict(dict(global_batch_size=BATCH, seed=3, process_index=0, process_count=1,
                     num_workers=0), **kwargs)
  return PretrainingPipeline(kwargs.pop("source", SOURCE), CONFIG, IS_WORD_START, **kwargs)


def assert_same(a: dict, b: dict) -> None:
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def take(p: PretrainingPipeline, n: int) -> list[dict]:
  return [next(p) for _ in range(n)]


def test_batch_of_a_step_follows_the_documented_contract():
  p = pipeline()
  assert p.steps_per_epoch == NUM_EXAMPLES // BATCH == 25
  for step in (0, 1, 24, 25, 60):
    epoch, within = divmod(step, 25)
    order = np.random.default_rng([3, 0, epoch]).permutation(NUM_EXAMPLES)
    batch = p.batch_at(step)
    np.testing.assert_array_equal(batch["page_id"], order[within * BATCH:(within + 1) * BATCH])
    assert batch["input_ids"].shape == (BATCH, 32) and batch["input_ids"].dtype == np.int32
  # Without shuffling: source order, still re-masked every epoch.
  q = pipeline(shuffle=False)
  np.testing.assert_array_equal(q.batch_at(1)["page_id"], np.arange(8, 16))
  np.testing.assert_array_equal(q.batch_at(26)["page_id"], np.arange(8, 16))
  assert not np.array_equal(q.batch_at(1)["input_ids"], q.batch_at(26)["input_ids"])


def test_iteration_equals_batch_at_and_wraps_epochs():
  p = pipeline()
  batches = take(p, 27)  # crosses the epoch boundary at step 25
  for step, batch in enumerate(batches):
    assert_same(batch, p.batch_at(step))
  assert p.get_state()["step"] == 27 and p.get_state()["epoch"] == 1
  seen = np.concatenate([b["page_id"] for b in batches[:25]])
  assert len(set(seen.tolist())) == 200  # an epoch never repeats an example
  p.close()


def test_same_seed_and_step_give_the_same_batch_in_fresh_pipelines():
  a, b = pipeline(), pipeline()
  assert_same(a.batch_at(11), b.batch_at(11))
  a.set_state(dict(a.get_state(), step=11))
  assert_same(next(a), b.batch_at(11))
  other = pipeline(seed=4).batch_at(11)
  assert not np.array_equal(other["page_id"], b.batch_at(11)["page_id"])
  a.close()


def test_two_hosts_split_the_single_host_batch():
  single = pipeline()
  hosts = [pipeline(process_index=h, process_count=2) for h in range(2)]
  assert hosts[0].local_batch_size == BATCH // 2
  for step in (0, 7, 31):
    parts = [h.batch_at(step) for h in hosts]
    assert not set(parts[0]["page_id"].tolist()) & set(parts[1]["page_id"].tolist())
    assert_same({k: np.concatenate([parts[0][k], parts[1][k]]) for k in parts[0]},
                single.batch_at(step))
  assert_same(next(hosts[1]), hosts[1].batch_at(0))
  hosts[1].close()


def test_restart_from_json_state_with_another_worker_count():
  uninterrupted = take(pipeline(num_workers=0), 10)
  first = pipeline(num_workers=0)
  take(first, 6)
  state = json.loads(json.dumps(first.get_state()))
  first.close()
  assert state == dict(version=1, step=6, epoch=0, seed=3, global_batch_size=BATCH,
                       num_examples=NUM_EXAMPLES, shuffle=True)
  with pipeline(num_workers=2) as resumed:
    resumed.set_state(state)
    for want in uninterrupted[6:]:
      got = next(resumed)
      assert type(got["input_ids"]) is np.ndarray  # owned copies, not shared memory
      assert_same(got, want)


def test_set_state_while_iterating_jumps():
  p = pipeline()
  batches = take(p, 5)
  p.set_state(dict(p.get_state(), step=2))
  assert_same(next(p), batches[2])
  assert p.get_state()["step"] == 3
  p.close()


def test_set_state_refuses_a_different_stream():
  p = pipeline()
  state = p.get_state()
  for key, value in (("seed", 4), ("global_batch_size", 16), ("num_examples", 10),
                     ("shuffle", False)):
    with pytest.raises(ValueError, match=key):
      p.set_state(dict(state, **{key: value}))
  with pytest.raises(ValueError, match="version"):
    p.set_state(dict(state, version=0))


def test_rejects_bad_arguments():
  with pytest.raises(ValueError, match="multiple of process_count"):
    pipeline(global_batch_size=9, process_count=2)
  with pytest.raises(ValueError, match="process_index"):
    pipeline(process_index=2, process_count=2)
  with pytest.raises(ValueError, match="do not fill"):
    pipeline(source=SOURCE[:5])
  with pytest.raises(ValueError, match="seed"):
    pipeline(seed=-1)


def test_host_defaults_come_from_jax():
  p = PretrainingPipeline(SOURCE, CONFIG, IS_WORD_START, global_batch_size=BATCH, seed=0,
                          num_workers=0)
  assert p.local_batch_size == BATCH  # one process in tests


def test_batched_reads_use_getitems():
  class Batched(list):
    calls = 0

    def __getitems__(self, indices):
      Batched.calls += 1
      return [self[i] for i in indices]

  p = pipeline(source=Batched(SOURCE))
  assert_same(p.batch_at(5), pipeline().batch_at(5))
  assert Batched.calls == 1
