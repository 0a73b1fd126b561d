"""When a run stops early: on SIGTERM or a preemption notice, at one step on every host."""

from __future__ import annotations

import signal
import threading

import jax
import orbax.checkpoint as ocp


class PreemptionFlag:
  """Set by SIGTERM (or by a test); read at step boundaries.

  A handler can only set a flag safely: saving from inside a signal handler would run in the
  middle of an arbitrary step.
  """

  def __init__(self):
    self._event = threading.Event()
    self._previous = None

  def install(self) -> "PreemptionFlag":
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def uninstall(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _handle(self, signum, frame) -> None:
    del signum, frame
    self._event.set()

  def set(self) -> None:
    self._event.set()

  def is_set(self) -> bool:
    return self._event.is_set()


class Preemption:
  """The one stopping policy of every run; a context manager around the step loop.

  On one host a SIGTERM handler sets a flag. On several hosts no handler is installed: a flag
  per host could stop the hosts at different steps, and a host still training would wait
  forever in a collective. There JAX's preemption service (started by
  `jax.distributed.initialize`) catches SIGTERM and the checkpoint manager's
  `reached_preemption(step)` names one step for every host.

  Args:
    manager: the run's checkpoint manager.
    flag: a flag to watch instead of installing a handler (tests, embedding applications).
    stop_after: act as if preempted once this step is reached (tests of resumption).
  """

  def __init__(self, manager: ocp.CheckpointManager, flag: PreemptionFlag | None = None,
               stop_after: int | None = None):
    self._manager = manager
    self._own = flag is None
    self._flag = PreemptionFlag() if flag is None else flag
    self._stop_after = stop_after

  def __enter__(self) -> "Preemption":
    if self._own and jax.process_count() == 1:
      self._flag.install()
    return self

  def __exit__(self, *exc) -> None:
    if self._own:
      self._flag.uninstall()

  def requested(self, step: int) -> bool:
    """Whether to save and stop before taking step `step + 1`; the same answer on every host."""
    if self._flag.is_set() or (self._stop_after is not None and step >= self._stop_after):
      return True
    return self._manager.reached_preemption(step)
