"""Deterministic, resumable, per-host batches of masked pretraining examples.

Determinism contract: the global batch of step `N` is a pure function of
`(seed, N, global_batch_size, source)`:

* epoch `e = N // steps_per_epoch` (`steps_per_epoch = len(source) // global_batch_size`; the
  remainder of each epoch is dropped so every batch has the same shape);
* its examples are `perm_e[k * G:(k + 1) * G]` with `k = N % steps_per_epoch`,
  `perm_e = np.random.default_rng([seed, 0, e]).permutation(len(source))` (or `arange` without
  shuffling);
* example `i` of epoch `e` is masked with `np.random.default_rng([seed, 1, e, i])`, so its
  masking depends neither on iteration order nor on which host or worker computes it (and
  differs between epochs).

Host `h` of `H` takes rows `[h * G / H, (h + 1) * G / H)` of that global batch, the slice that
`jax.make_array_from_process_local_data` expects for a batch-sharded array, so the union over
hosts is the single-host batch. The state is just the step counter (plus the inputs it
depends on, checked on restore), so `get_state()` is JSON and a restored pipeline repeats the
uninterrupted stream exactly, with any number of workers.

Workers: a `grain.MapDataset.range(step, ...)` mapped by a picklable batch function, turned into
an `IterDataset` and `mp_prefetch`ed by `num_workers` processes (grain 0.2.18; spawn start
method, the source and function are cloudpickled into each worker, and each worker imports
grain, hence jax: a few seconds to start). Grain's process prefetch hands worker `w` the
elements `w, w + W, ...` and interleaves them back in order; since each element (one host
batch) is a pure function of its step, the worker count changes only the speed. Whole batches,
not examples, cross the process boundary (through grain's shared memory, copied out at once).
`num_workers=0` computes batches on one background thread in this process.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol

import grain
import numpy as np
from absl import flags

from luke_jax.data.masking import MaskingConfig, mask_batch

STATE_VERSION = 1
# grain needs a finite range; this many steps outlasts any run.
_LAST_STEP = 2**62


class DataSource(Protocol):
  """Random access to pretraining examples (a list, a grain/tfds array_record source, ...)."""

  def __len__(self) -> int:
    ...

  def __getitem__(self, index: int) -> Mapping[str, np.ndarray]:
    ...


@dataclasses.dataclass
class HostBatches:
  """The pure `step -> host batch` function that the pipeline maps over steps.

  Picklable, so grain can ship it to worker processes; the only state is a cache of the
  current epoch's permutation, rebuilt on demand.
  """

  source: DataSource
  config: MaskingConfig
  is_word_start: np.ndarray
  global_batch_size: int
  seed: int
  process_index: int = 0
  process_count: int = 1
  shuffle: bool = True

  def __post_init__(self):
    self._perm_epoch: int | None = None
    self._perm: np.ndarray | None = None

  @property
  def local_batch_size(self) -> int:
    return self.global_batch_size // self.process_count

  @property
  def steps_per_epoch(self) -> int:
    return len(self.source) // self.global_batch_size

  def permutation(self, epoch: int) -> np.ndarray:
    """Example order of `epoch` (cached: an epoch spans many consecutive steps)."""
    if self._perm_epoch != epoch:
      n = len(self.source)
      dtype = np.int32 if n < 2**31 else np.int64  # halves the cache for large datasets
      if self.shuffle:
        self._perm = np.random.default_rng([self.seed, 0, epoch]).permutation(n).astype(dtype)
      else:
        self._perm = np.arange(n, dtype=dtype)
      self._perm_epoch = epoch
    return self._perm

  def indices(self, step: int) -> tuple[int, np.ndarray]:
    """Epoch of `step` and the source indices of this host's rows."""
    epoch, within = divmod(step, self.steps_per_epoch)
    start = within * self.global_batch_size + self.process_index * self.local_batch_size
    return epoch, self.permutation(epoch)[start:start + self.local_batch_size]

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    epoch, indices = self.indices(int(step))
    getitems = getattr(self.source, "__getitems__", None)  # batched reads (array_record)
    examples = (getitems([int(i) for i in indices]) if getitems is not None
                else [self.source[int(i)] for i in indices])
    rngs = [np.random.default_rng([self.seed, 1, epoch, int(i)]) for i in indices]
    return mask_batch(examples, self.config, self.is_word_start, rngs)

  def __getstate__(self) -> dict[str, Any]:
    state = dict(self.__dict__)
    state["_perm_epoch"], state["_perm"] = None, None  # workers rebuild it; keep pickles small
    return state


class PretrainingPipeline:
  """Iterator over this host's masked pretraining batches (dicts of stacked int32 arrays).

  Example:
    pipeline = PretrainingPipeline(source, config, is_word_start, global_batch_size=2048,
                                   seed=0, num_workers=4)
    pipeline.set_state(saved)        # optional: resume
    batch = next(pipeline)           # {"input_ids": [2048 // process_count, 512], ...}
    saved = pipeline.get_state()     # JSON, e.g. {"step": 1, "seed": 0, "epoch": 0, ...}
  """

  def __init__(self, source: DataSource, masking_config: MaskingConfig,
               is_word_start: np.ndarray, *, global_batch_size: int, seed: int,
               process_index: int | None = None, process_count: int | None = None,
               shuffle: bool = True, num_workers: int = 1, prefetch: int = 2):
    """Builds the pipeline; no worker starts before the first `next`.

    Args:
      source: random-access examples (see `luke_jax.data.masking`).
      masking_config: lengths, rates and special ids.
      is_word_start: bool [vocab] from `masking.word_start_table`.
      global_batch_size: examples per step over all hosts; divisible by `process_count`.
      seed: non-negative; fixes the example order and every mask.
      process_index, process_count: this host's slice; default `jax.process_index()` and
        `jax.process_count()`.
      shuffle: a fresh permutation every epoch; otherwise source order.
      num_workers: worker processes (0: one background thread in this process, which
        competes with the training loop for the GIL; the default of one process does not).
      prefetch: batches each worker (or the thread) computes ahead.
    """
    if process_index is None or process_count is None:
      import jax  # only here: masking and workers never need jax
      process_index = jax.process_index() if process_index is None else process_index
      process_count = jax.process_count() if process_count is None else process_count
    seed = int(seed)  # keeps get_state() JSON for numpy integers too
    if seed < 0:
      raise ValueError(f"seed must be non-negative, got {seed}")
    if global_batch_size < 1 or global_batch_size % process_count:
      raise ValueError(f"global_batch_size={global_batch_size} is not a positive multiple of "
                       f"process_count={process_count}")
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index={process_index} not in [0, {process_count})")
    if len(source) < global_batch_size:
      raise ValueError(f"{len(source)} examples do not fill one global batch of "
                       f"{global_batch_size}")
    if num_workers < 0 or prefetch < 1:
      raise ValueError("num_workers must be >= 0 and prefetch >= 1")
    self._batches = HostBatches(source=source, config=masking_config,
                                is_word_start=np.asarray(is_word_start, bool),
                                global_batch_size=global_batch_size, seed=seed,
                                process_index=process_index, process_count=process_count,
                                shuffle=bool(shuffle))
    self.num_workers = num_workers
    self.prefetch = prefetch
    self._step = 0
    self._iterator = None

  # ---- properties ------------------------------------------------------------------------

  @property
  def step(self) -> int:
    """Global step of the next batch."""
    return self._step

  @property
  def steps_per_epoch(self) -> int:
    return self._batches.steps_per_epoch

  @property
  def local_batch_size(self) -> int:
    return self._batches.local_batch_size

  # ---- iteration -------------------------------------------------------------------------

  def batch_at(self, step: int) -> dict[str, np.ndarray]:
    """This host's batch of global step `step`, computed here and now (no workers)."""
    return self._batches(step)

  def __iter__(self) -> PretrainingPipeline:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._iterator is None:
      self._iterator = iter(self._dataset(self._step))
    batch = next(self._iterator)
    self._step += 1
    if self.num_workers:
      # Workers hand over grain `SharedMemoryArray`s; owning copies free the shared memory at
      # once (it is small next to /dev/shm limits in containers) and give plain arrays.
      batch = {k: np.array(v) for k, v in batch.items()}
    return batch

  def _dataset(self, start: int) -> grain.IterDataset:
    ds = grain.MapDataset.range(start, _LAST_STEP).map(self._batches)
    if self.num_workers == 0:
      return ds.to_iter_dataset(grain.ReadOptions(num_threads=1,
                                                  prefetch_buffer_size=self.prefetch))
    # grain 0.2.18 reads an absl flag when it starts workers and raises if flags were never
    # parsed (google/grain#1355, fixed after 0.2.18); scripts without `absl.app` get the
    # defaults, which is what parsing an empty command line would give.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    # Inside a worker the process itself runs ahead, so no extra thread there.
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    return ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.num_workers,
                                                       per_worker_buffer_size=self.prefetch))

  def close(self) -> None:
    """Stops the workers; iterating again restarts them at the current step."""
    if self._iterator is not None:
      close = getattr(self._iterator, "close", None)
      if close is not None:
        close()
      self._iterator = None

  def __enter__(self) -> PretrainingPipeline:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # ---- state -----------------------------------------------------------------------------

  def get_state(self) -> dict[str, Any]:
    """JSON-serialisable position: the next step plus what the stream depends on."""
    b = self._batches
    return dict(version=STATE_VERSION, step=self._step, epoch=self._step // b.steps_per_epoch,
                seed=b.seed, global_batch_size=b.global_batch_size, num_examples=len(b.source),
                shuffle=b.shuffle)

  def set_state(self, state: Mapping[str, Any]) -> None:
    """Continues at `state["step"]`; the batches then equal an uninterrupted run's.

    Raises:
      ValueError: if the state was made with another seed, batch size, dataset size or
        shuffling, which would silently change the stream.
    """
    if state.get("version") != STATE_VERSION:
      raise ValueError(f"unknown pipeline state version {state.get('version')!r}")
    b = self._batches
    expected = dict(seed=b.seed, global_batch_size=b.global_batch_size,
                    num_examples=len(b.source), shuffle=b.shuffle)
    changed = {k: (state.get(k), v) for k, v in expected.items() if state.get(k) != v}
    if changed:
      raise ValueError("pipeline state does not match this pipeline (state, pipeline): "
                       + ", ".join(f"{k}={a!r} vs {v!r}" for k, (a, v) in changed.items()))
    step = int(state["step"])
    if step < 0:
      raise ValueError(f"negative step {step}")
    self.close()
    self._step = step
