"""The shared training core on a toy objective: step, accumulation, loop, metrics, preemption."""

import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from luke_jax import sharding
from luke_jax.training import batches, checkpointing, loop, metrics, state as state_lib, steps
from luke_jax.training.preemption import Preemption, PreemptionFlag


class MeanSquares(steps.Objective):
  """Weighted mean squared error of a linear model; the mean divides after accumulation."""

  def __call__(self, params, batch, rng, totals):
    del rng, totals
    err = (batch["x"] @ params["w"] - batch["y"]) ** 2
    loss_sum = jnp.sum(err * batch["weight"])
    return loss_sum, {"loss_sum": loss_sum, "weight": jnp.sum(batch["weight"])}

  def normalizer(self, sums):
    return sums["weight"]


class MeanSquaresUpFront(MeanSquares):
  """The same mean, dividing each micro-batch by the global weight known from the batch."""

  def totals(self, batch):
    return jnp.sum(batch["weight"])

  def __call__(self, params, batch, rng, totals):
    loss_sum, sums = super().__call__(params, batch, rng, None)
    return loss_sum / totals, sums

  def normalizer(self, sums):
    return None


def _batch(seed, rows=8):
  rng = np.random.RandomState(seed)
  return {"x": rng.randn(rows, 3).astype(np.float32), "y": rng.randn(rows).astype(np.float32),
          "weight": (rng.rand(rows) > 0.3).astype(np.float32)}


def _setup(objective, accum=1, mesh_shape=(("data", 2), ("fsdp", 1), ("tensor", 1))):
  mesh = sharding.create_mesh(mesh_shape)
  params = {"w": jnp.zeros((3,), jnp.float32)}
  tx = optax.sgd(0.1)
  replicated = NamedSharding(mesh, PartitionSpec())
  shardings = state_lib.TrainState(step=replicated, params={"w": replicated},
                                   opt_state=jax.tree.map(lambda _: replicated, tx.init(params)),
                                   rng=replicated)
  state = state_lib.create_state(params, tx, shardings, jax.random.PRNGKey(0))
  step = steps.make_train_step(objective, tx, accum, shardings, sharding.batch_sharding(mesh))
  return mesh, state, step


@pytest.mark.parametrize("objective", [MeanSquares(), MeanSquaresUpFront()])
def test_accumulation_equals_one_batch(objective):
  results = []
  for accum in (1, 4):
    mesh, state, step = _setup(objective, accum)
    with jax.set_mesh(mesh):
      state, m = step(state, _batch(0))
    results.append((np.asarray(state.params["w"]), float(m["loss"]), float(m["grad_norm"])))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
  np.testing.assert_allclose(results[0][1:], results[1][1:], rtol=1e-6)
  b = _batch(0)
  want = float(np.sum(b["y"] ** 2 * b["weight"]) / b["weight"].sum())  # w starts at 0
  assert results[0][1] == pytest.approx(want, rel=1e-6)


def test_both_normalizations_take_the_same_step():
  out = []
  for objective in (MeanSquares(), MeanSquaresUpFront()):
    mesh, state, step = _setup(objective)
    with jax.set_mesh(mesh):
      state, _ = step(state, _batch(1))
    out.append(np.asarray(state.params["w"]))
  np.testing.assert_allclose(out[0], out[1], rtol=1e-6)


class _Run:
  """The loop on the toy objective, as a driver wires it."""

  def __init__(self, workdir, total=10, log_every=5, ckpt_every=4, flag=None, stop_after=None,
               hooks=(), nan_at=None):
    self.mesh, self.state, step = _setup(MeanSquares())
    self.manager = checkpointing.make_manager(workdir, ckpt_every, 10)
    self.writer = metrics.MetricWriter(workdir, total_steps=total, log_every=log_every)
    self.total, self.hooks = total, hooks
    self.preemption = Preemption(self.manager, flag, stop_after)
    batch_sharding = sharding.batch_sharding(self.mesh)

    def next_batch(i):
      b = _batch(100 + i)
      if nan_at is not None and i + 1 == nan_at:
        b["y"][0] = np.nan
      return batches.to_global(b, batch_sharding, 8)

    self.step, self.next_batch = step, next_batch

  def __call__(self):
    try:
      with jax.set_mesh(self.mesh), self.preemption as stop:
        return loop.run(self.state, self.step, self.next_batch, total_steps=self.total,
                        manager=self.manager, writer=self.writer, preemption=stop,
                        data_state=lambda i: {"step": i}, hooks=self.hooks)
    finally:
      self.manager.wait_until_finished()
      self.manager.close()
      self.writer.close()


def test_loop_checkpoints_on_its_interval_on_hooks_and_at_the_end(tmp_path):
  seen = []
  hook = loop.Hook(due=lambda i: i == 7, run=lambda i, s: seen.append(int(s.step)) or True)
  end = _Run(tmp_path, hooks=(hook,))()
  assert (end.step, end.preempted) == (10, False) and seen == [7]
  # Orbax's interval policy also saves the first step of a run.
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                if p.name.isdigit()) == [1, 4, 7, 8, 10]


def test_loop_fetches_metrics_only_when_it_logs(tmp_path, monkeypatch):
  fetches = []
  real = jax.device_get
  monkeypatch.setattr(metrics.jax, "device_get", lambda x: fetches.append(1) or real(x))
  run = _Run(tmp_path, total=20, log_every=10, ckpt_every=100)
  end = run()
  # The first step (whose compilation the clock skips), two log lines, the end: not 20.
  assert len(fetches) <= 4 and end.step == 20
  assert [s for s, _ in run.writer.history] == list(range(1, 21))


def test_loop_stops_on_request_and_resumes(tmp_path):
  flag = PreemptionFlag()
  end = _Run(tmp_path, stop_after=6)()
  assert (end.step, end.preempted) == (6, True)
  run = _Run(tmp_path, flag=flag)
  restored, data = checkpointing.restore_latest(
      run.manager, state_lib.abstract_with_shardings(
          jax.eval_shape(lambda: run.state), jax.tree.map(lambda a: a.sharding, run.state)))
  assert int(restored.step) == 6 and data == {"step": 6}
  run.state = restored
  end = run()
  assert (end.step, end.preempted) == (10, False)


def test_nan_loss_stops_before_its_state_is_saved(tmp_path):
  with pytest.raises(metrics.NonFiniteLossError, match="at step 6"):
    _Run(tmp_path, ckpt_every=4, nan_at=6)()
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert saved == [1, 4]


def test_sigterm_sets_the_flag_of_a_one_host_run(tmp_path):
  manager = checkpointing.make_manager(tmp_path, 1, 1)
  previous = signal.getsignal(signal.SIGTERM)
  try:
    with Preemption(manager) as stop:
      assert not stop.requested(0)
      os.kill(os.getpid(), signal.SIGTERM)
      assert stop.requested(0)
    assert signal.getsignal(signal.SIGTERM) == previous
  finally:
    manager.close()


def test_batch_rows_follow_the_activation_batch_rule():
  mesh = sharding.create_mesh((("data", 2), ("fsdp", 2), ("tensor", 2)))
  default = sharding.batch_sharding(mesh)
  assert sharding.batch_shards(default) == 4
  rules = [("activation_batch", "data")] + [r for r in sharding.DEFAULT_RULES
                                            if r[0] != "activation_batch"]
  assert sharding.batch_shards(sharding.batch_sharding(mesh, rules)) == 2
  assert batches.host_rows(default, 8) == (0, 1)  # one process holds every row
  with pytest.raises(ValueError, match=r"config\.train\.batch_size=6 .* data-parallel size 4"):
    batches.check_batch_size(6, 1, default)
  with pytest.raises(ValueError, match="grad_accum_steps=3"):
    batches.check_batch_size(8, 3, default)


def test_mesh_errors_name_the_setting():
  with pytest.raises(ValueError, match=r"config\.mesh .* needs at least 16 devices, but 8"):
    sharding.create_mesh((("data", 16), ("fsdp", 1), ("tensor", 1)))
  with pytest.raises(ValueError, match="axes must be"):
    sharding.create_mesh((("data", -1), ("model", 1), ("tensor", 1)))
  assert sharding.create_mesh((("data", 2), ("fsdp", 1), ("tensor", 1))).devices.size == 2
  assert sharding.create_mesh((("data", -1), ("fsdp", 2), ("tensor", 1))).shape["data"] == 4


def test_eta_does_not_wrap_after_a_day():
  assert metrics.format_duration(3 * 86400 + 61) == "72:01:01"
