"""`finetune(config, workdir)` and `predict(...)`: the task-independent fine-tuning loop.

The task (`luke_jax.finetune.task.Task`) reads files, builds features, defines the loss, the
decoding and the metric. This module builds the model and the task's `Objective`, feeds
batches to the training core (`luke_jax.training`: mesh, state, step, loop, checkpoints,
preemption, metrics), and owns evaluation, the best model and the files a run leaves in
`workdir`:

  checkpoints/        orbax train states (resumable; the run resumes from the newest)
  best/               luke-jax checkpoint of the best dev model (tokenizer and label map inside)
  {dev,test}_predictions.*   the best model's predictions in the task's official format
  results.json        written last: final dev and test metrics of the best model
  tensorboard/        TensorBoard event files
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from luke_jax import checkpoint as luke_checkpoint
from luke_jax import hub
from luke_jax import pretrained as luke_pretrained
from luke_jax import sharding
from luke_jax.finetune import batching, init as init_lib, tasks
from luke_jax.models import sizes
from luke_jax.finetune.task import Features, Task
from luke_jax.bucketing import compilation_cache
from luke_jax.bucketing.compiled import CompiledForward
from luke_jax.bucketing.runner import BucketedRunner
from luke_jax.models import registry
from luke_jax.models.config import LukeConfig
from luke_jax.tokenization.tokenizer import LukeTokenizer
from luke_jax.training import batches, checkpointing, config as run_config, loop, optim
from luke_jax.training import state as state_lib, steps
from luke_jax.training.metrics import MetricWriter
from luke_jax.training.preemption import Preemption, PreemptionFlag
from luke_jax.training.state import TrainState

BEST_STATE_FILE = "finetune_state.json"
RESULTS_FILE = "results.json"


@dataclasses.dataclass
class FinetuneResult:
  """What a run did. `dev`/`test` are the best model's metrics (None without that file)."""

  step: int
  preempted: bool
  losses: list[tuple[int, float]]
  best_step: int | None = None
  dev: dict[str, float] | None = None
  test: dict[str, float] | None = None
  workdir: Path | None = None


# ---- setup ---------------------------------------------------------------------------------


def model_overrides(config: ml_collections.ConfigDict) -> dict[str, Any]:
  fields = {f.name for f in dataclasses.fields(LukeConfig)}
  unknown = sorted(set(config.model.keys()) - fields)
  if unknown:
    raise ValueError(f"config.model has fields LukeConfig does not know: {unknown}")
  return {k: v for k, v in config.model.to_dict().items() if v is not None}


def _checked_file(config: ml_collections.ConfigDict, split: str, required: bool) -> str | None:
  path = config.data.get(f"{split}_file") or None
  if path is None:
    if required:
      raise ValueError(f"config.data.{split}_file is not set")
    return None
  if not Path(path).is_file():
    raise FileNotFoundError(f"config.data.{split}_file={path}: no such file")
  return path


def _make_task(config: ml_collections.ConfigDict, checkpoint_dir: str | os.PathLike) -> Task:
  task_cls = tasks.get(config.task)
  tokenizer = LukeTokenizer.from_pretrained(checkpoint_dir, task=task_cls.tokenizer_task)
  return task_cls(config.data, tokenizer)


def _labels_file(workdir: Path) -> Path:
  return workdir / "labels.json"


def _fixed_labels(workdir: Path, labels: list[str]) -> list[str]:
  """The label map of this workdir: recorded at the first start, checked on every resume."""
  record = _labels_file(workdir)
  if record.exists():
    stored = json.loads(record.read_text())
    if stored != labels:
      raise ValueError(f"{record}: the training file now gives labels {labels}, the run "
                       f"started with {stored}; use a new --workdir")
  elif jax.process_index() == 0:
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(labels, ensure_ascii=False) + "\n")
    os.replace(tmp, record)
  return labels


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


# ---- jitted steps --------------------------------------------------------------------------


# `fold_in` data of the key a task's `train_inputs` gets (any constant; named so it is one).
_TASK_INPUTS_STREAM = 1


def _apply(module, task: Task, params, batch, deterministic: bool, rng=None):
  inputs = {k: batch[k] for k in task.input_keys}
  rngs = None if rng is None else {"dropout": rng}
  return module.apply({"params": params}, **inputs, deterministic=deterministic, rngs=rngs)


class TaskObjective(steps.Objective):
  """`sum(loss_sum) / sum(weight)` over the real rows of the global batch.

  Gradients of the sums are accumulated and divided by the total weight at the end, which
  gives the gradient of the batch mean exactly (up to summation order) for any
  `grad_accum_steps`, even when the weight (e.g. the number of valid spans) is only known
  after the forward pass.
  """

  def __init__(self, module: nn.Module, task: Task):
    self.module, self.task = module, task

  def __call__(self, params, batch, rng, totals):
    del totals
    # The task's key is folded from the dropout key rather than split off it, so the dropout
    # masks of every task stay what they were.
    batch = self.task.train_inputs(batch, jax.random.fold_in(rng, _TASK_INPUTS_STREAM))
    loss_sum, weight = self.task.loss(_apply(self.module, self.task, params, batch, False, rng),
                                      batch)
    valid = batch[batching.VALID]
    loss_sum = jnp.sum(loss_sum.astype(jnp.float32) * valid)
    return loss_sum, {"loss_sum": loss_sum, "weight": jnp.sum(weight.astype(jnp.float32) * valid)}

  def normalizer(self, sums):
    return jnp.where(sums["weight"] > 0, sums["weight"], 1.0)


class Runner:
  """The model, mesh and jitted functions of one run (training or prediction)."""

  def __init__(self, config: ml_collections.ConfigDict, task: Task, module: nn.Module,
               example_batch: dict[str, np.ndarray], devices=None):
    self.config, self.task, self.module = config, task, module
    self.mesh = sharding.create_mesh(config.mesh, devices)
    self.rules = tuple(tuple(r) for r in config.sharding.rules)
    self.batch_sharding = sharding.batch_sharding(self.mesh, self.rules)
    self.replicated = NamedSharding(self.mesh, PartitionSpec())
    self.shards = sharding.batch_shards(self.batch_sharding)
    # One row per data shard: the model's activation constraints split the batch axis.
    one = {k: np.repeat(v[:1], self.shards, axis=0) for k, v in example_batch.items()
           if k in task.input_keys}
    with nn.logical_axis_rules(self.rules):
      self.boxed = jax.eval_shape(lambda r: module.init(r, **one)["params"],
                                  jax.random.PRNGKey(0))
    self._one = one
    self._eval = None

  def init_params(self, seed: int):
    # One jitted program: op-by-op initialisation compiles hundreds of tiny kernels.
    init = jax.jit(lambda rng: nn.unbox(self.module.init(rng, **self._one)["params"]))
    return jax.device_get(init(jax.random.PRNGKey(seed)))

  def param_shardings(self):
    return state_lib.param_shardings(self.boxed, self.mesh, self.rules)

  def batch(self, arrays: dict[str, np.ndarray], rows: np.ndarray, keys) -> dict[str, jax.Array]:
    """The global batch of feature `rows` (-1: padding); this host reads only its rows."""
    block = batches.host_rows(self.batch_sharding, len(rows))
    return batches.to_global(batching.gather(arrays, rows, keys, block), self.batch_sharding,
                             len(rows))

  def eval_step(self):
    """The jitted evaluation step: (params, batch) -> the task's per-row outputs."""
    if self._eval is None:
      fn = lambda p, b: self.task.eval_outputs(
          lambda inputs: _apply(self.module, self.task, p, inputs, True), b)
      self._eval = jax.jit(fn, out_shardings=self.replicated)
    return self._eval

  def outputs(self, params, features: Features, batch_size: int) -> dict[str, np.ndarray]:
    """`task.outputs` for every feature row, stacked in row order."""
    keys = tuple(self.task.input_keys)
    chunks: dict[str, list[np.ndarray]] = {}
    eval_step = self.eval_step()
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      for rows in batching.eval_batches(len(features), batch_size):
        out = jax.device_get(eval_step(params, self.batch(features.arrays, rows, keys)))
        real = rows >= 0
        for k, v in out.items():
          chunks.setdefault(k, []).append(np.asarray(v)[real])
    return {k: np.concatenate(v) for k, v in chunks.items()}


@dataclasses.dataclass
class StepParts:
  """What the run's train step is made of (also what `luke_jax.aot` compiles)."""

  tx: Any
  abstract: TrainState    # shapes of the state
  shardings: TrainState   # NamedShardings of the state
  train_step: Any         # jitted (state, batch) -> (state, metrics), state donated


def make_step(config: ml_collections.ConfigDict, runner: Runner, total_steps: int) -> StepParts:
  """The optimizer, state layout and jitted train step of a fine-tuning run.

  Raises:
    ValueError: if `config.train.batch_size` does not split over the mesh and accumulation.
  """
  tc = config.train
  batches.check_batch_size(tc.batch_size, tc.grad_accum_steps, runner.batch_sharding)
  tx = optim.make_optimizer(config.optim, nn.unbox(runner.boxed), total_steps)
  abstract = state_lib.abstract_state(runner.boxed, tx)
  shardings = state_lib.state_shardings(runner.boxed, abstract.opt_state, runner.mesh,
                                        runner.rules)
  train_step = steps.make_train_step(TaskObjective(runner.module, runner.task), tx,
                                     tc.grad_accum_steps, shardings, runner.batch_sharding)
  return StepParts(tx, abstract, shardings, train_step)


def _evaluate(runner: Runner, params, examples, features: Features, labels, batch_size: int):
  outputs = runner.outputs(params, features, batch_size)
  predictions = runner.task.decode(examples, features, outputs, labels)
  return predictions, {k: float(v) for k, v in runner.task.evaluate(examples, predictions).items()}


def _write_json(path: Path, payload) -> None:
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
  os.replace(tmp, path)


# ---- the loop ------------------------------------------------------------------------------


def finetune(config: ml_collections.ConfigDict, workdir: str | Path, *,
             preemption: PreemptionFlag | None = None,
             stop_after: int | None = None,
             hub_options: dict[str, Any] | None = None) -> FinetuneResult:
  """Fine-tunes `config.train.init_checkpoint` on `config.task`; resumes from `workdir`.

  Args:
    config: see `luke_jax/finetune/config.py` and `configs/finetune/<task>.py`.
    workdir: see the module docstring for what it holds at the end.
    preemption: a flag to watch instead of installing a SIGTERM handler (tests).
    stop_after: act as if preempted once this step is reached (tests of resumption).
    hub_options: `luke_jax.hub.resolve` keywords (revision, cache_dir, local_files_only,
      token) for a Hub id in `config.train.init_checkpoint`; default the environment's. Kept
      out of `config`, so the run's config (and its hash) holds the id as given.

  Returns:
    A `FinetuneResult`.
  """
  config = run_config.checked(config)
  workdir = Path(workdir)
  tc = config.train
  # ==== Everything that can be wrong with the inputs fails before any compilation ==========
  if not tc.init_checkpoint:
    raise ValueError("config.train.init_checkpoint is not set (a luke-jax checkpoint from "
                     "`python -m luke_jax.convert` or pretraining, a transformers LUKE dir, or "
                     "the Hub id of either)")
  # A Hub id is read from the Hugging Face cache (downloaded if missing; HF_HUB_OFFLINE,
  # HF_TOKEN, HF_HOME as for transformers); a directory is used as it is.
  init_dir = hub.resolve(tc.init_checkpoint, **(hub_options or {}))
  base_config, stored_arch, _ = luke_checkpoint.read_config(init_dir)
  sizes.check_data_config(config.data, base_config.replace(**model_overrides(config)), init_dir)
  files = {split: _checked_file(config, split, split == "train")
           for split in ("train", "dev", "test")}
  task = _make_task(config, init_dir)
  examples = {split: task.read(path, split) for split, path in files.items() if path}
  checkpointing.check_workdir(workdir, config)
  (workdir / RESULTS_FILE).unlink(missing_ok=True)  # a stale one must not look like this run's
  labels = _fixed_labels(workdir, task.labels(examples["train"]))
  features = {split: task.featurize(ex, labels, split) for split, ex in examples.items()}
  if not len(features["train"]):
    raise ValueError(f"{files['train']}: no training features")
  model_config = base_config.replace(**model_overrides(config), **task.head_config(labels))
  for split, f in features.items():
    sizes.check_features(f.arrays, model_config, f"config.data.{split}_file={files[split]}")
  module = registry.build(task.architecture, model_config)

  runner = Runner(config, task, module, features["train"].arrays)
  eval_batch = _round_up(tc.eval_batch_size, runner.shards * jax.process_count())
  per_epoch = batching.steps_per_epoch(len(features["train"]), tc.batch_size)
  total = tc.num_epochs * per_epoch
  if tc.steps:
    total = min(total, tc.steps) if total else tc.steps
  if not total:
    raise ValueError("config.train.num_epochs and config.train.steps are both 0; set one")
  keys = tuple(task.input_keys) + tuple(task.target_keys)

  # ==== Parameters, optimizer, shardings ===================================================
  parts = make_step(config, runner, total)
  tx, abstract, shardings = parts.tx, parts.abstract, parts.shardings
  mngr = checkpointing.make_manager(workdir, tc.ckpt_every, tc.keep_ckpts,
                                    schedule_steps=optim.schedule_steps(config.optim, total)[1])
  writer = None
  best_dir = workdir / "best"
  try:
    with jax.set_mesh(runner.mesh), nn.logical_axis_rules(runner.rules):
      restored = checkpointing.restore_latest(
          mngr, state_lib.abstract_with_shardings(abstract, shardings))
      if restored is not None:
        state = restored[0]
        logging.info("resumed from %s at step %d", mngr.directory, int(state.step))
      else:
        state = _initial_state(runner, init_dir, base_config, stored_arch, model_config, tx,
                               shardings, tc.seed)
      best = json.loads((best_dir / BEST_STATE_FILE).read_text()) if (
          best_dir / BEST_STATE_FILE).exists() else None

      train_step = parts.train_step
      writer = MetricWriter(workdir, total_steps=total, log_every=tc.log_every,
                            learning_rate=optim.learning_rate_schedule(config.optim, total))

      def next_batch(step: int):
        rows = batching.train_rows(step, len(features["train"]), tc.batch_size, tc.seed)
        return runner.batch(features["train"].arrays, rows, keys)

      def epoch_end(step: int, state: TrainState) -> bool:
        nonlocal best
        if "dev" in features and (tc.eval_every_epoch or step == total):
          best = _maybe_save_best(runner, state, examples["dev"], features["dev"], labels,
                                  eval_batch, step, best, best_dir, model_config, init_dir,
                                  config, writer)
        return True  # every epoch end is checkpointed

      print(f"fine-tuning {config.task}: {len(features['train'])} training rows, "
            f"{per_epoch} steps/epoch, {total} steps", flush=True)
      hook = loop.Hook(due=lambda step: step % per_epoch == 0 or step == total, run=epoch_end)
      with Preemption(mngr, preemption, stop_after) as stop:
        end = loop.run(state, train_step, next_batch, total_steps=total, manager=mngr,
                       writer=writer, preemption=stop, data_state=lambda step: {"step": step},
                       hooks=(hook,))
      mngr.wait_until_finished()
      state, step = end.state, end.step
      result = FinetuneResult(step=step, preempted=end.preempted, losses=list(writer.history),
                              workdir=workdir)
      if end.preempted:
        logging.warning("stopped at step %d on request; checkpoint saved, rerun to resume", step)
        return result

      # ==== The best model: its predictions and metrics =================================
      if best is None:  # no dev file: the final model is the one we keep
        _save_model(best_dir, state.params, model_config, task.architecture, init_dir,
                    {"step": step, "task": config.task, "metric": task.metric, "dev": None})
        best = {"step": step}
      params = luke_checkpoint.load_params(best_dir, model_config, task.architecture)
      params = jax.device_put(params, shardings.params)
      result.best_step = int(best["step"])
      for split in ("dev", "test"):
        if split not in features:
          continue
        predictions, scores = _evaluate(runner, params, examples[split], features[split],
                                        labels, eval_batch)
        setattr(result, split, scores)
        if jax.process_index() == 0:
          task.write_predictions(workdir / f"{split}_predictions{task.prediction_suffix}",
                                 examples[split], predictions)
        writer.scalars(f"final_{split}", scores, step)
        print(f"{split}: " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()), flush=True)
      if jax.process_index() == 0:
        _write_json(workdir / RESULTS_FILE, {
            "task": config.task, "metric": task.metric, "best_step": result.best_step,
            "steps": step, "dev": result.dev, "test": result.test})
      return result
  finally:
    mngr.wait_until_finished()
    mngr.close()
    if writer is not None:
      writer.close()


def _initial_state(runner: Runner, init_dir: Path, base_config: LukeConfig, stored_arch: str,
                   model_config: LukeConfig, tx, shardings: TrainState, seed: int) -> TrainState:
  """Fresh head + the checkpoint's encoder (and head, when it is this task's model)."""
  _, loaded = luke_pretrained.from_pretrained(init_dir, scan_layers=model_config.scan_layers,
                                              architecture=stored_arch
                                              if stored_arch in registry.ARCHITECTURES
                                              else "LukeModel")
  same_task = runner.task.pretrained_head or (stored_arch == runner.task.architecture
                                              and base_config.id2label == model_config.id2label)
  params = init_lib.merge_pretrained(runner.init_params(seed), jax.device_get(loaded),
                                     take_head=same_task, source=str(init_dir))
  return state_lib.create_state(params, tx, shardings, jax.random.PRNGKey(seed + 1))


def _save_model(directory: Path, params, model_config: LukeConfig, architecture: str,
                tokenizer_dir: Path, state: dict) -> None:
  host = state_lib.host_copy(params)
  if jax.process_index() == 0:
    luke_checkpoint.save_checkpoint(
        directory, host, model_config, architecture, tokenizer_dir=tokenizer_dir,
        overwrite=True,
        extra=lambda tmp: (tmp / BEST_STATE_FILE).write_text(json.dumps(state, indent=2) + "\n"))


def _maybe_save_best(runner, state, examples, features, labels, eval_batch, step, best,
                     best_dir, model_config, init_dir, config, writer):
  _, scores = _evaluate(runner, state.params, examples, features, labels, eval_batch)
  metric = runner.task.metric
  writer.scalars("dev", scores, step)
  print(f"step {step} dev: " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()), flush=True)
  if metric not in scores:
    raise KeyError(f"task {config.task} scores {sorted(scores)} but its metric is {metric!r}")
  if best is not None and best.get("dev") is not None and scores[metric] <= best["dev"][metric]:
    return best
  best = {"step": step, "task": config.task, "metric": metric, "dev": scores}
  _save_model(best_dir, state.params, model_config, runner.task.architecture, init_dir, best)
  return best


# ---- prediction ----------------------------------------------------------------------------


def predict(config: ml_collections.ConfigDict, checkpoint_dir: str | os.PathLike,
            input_file: str | os.PathLike, output_file: str | os.PathLike | None = None,
            *, raw: bool = True) -> list[Any]:
  """Predictions of a fine-tuned checkpoint on `input_file`, written in the task's format.

  Args:
    config: the fine-tuning config (task name and data options such as lengths).
    checkpoint_dir: a fine-tuned luke-jax checkpoint (e.g. `workdir/best`) or its Hub id.
    input_file: plain text (`raw=True`, the task's `read_raw` format) or a file in the task's
      official format.
    output_file: where to write; default `<input_file>.predictions<suffix>`.
    raw: read `input_file` with `read_raw` rather than `read`.

  Returns:
    One prediction per example.
  """
  config = run_config.checked(config)
  if not Path(input_file).is_file():
    raise FileNotFoundError(f"{input_file}: no such file")
  checkpoint_dir = hub.resolve(checkpoint_dir)  # a directory, or a Hub id (after cheap checks)
  task = _make_task(config, checkpoint_dir)
  sizes.check_data_config(config.data, luke_checkpoint.read_config(checkpoint_dir)[0],
                          checkpoint_dir)
  module, params = luke_pretrained.from_pretrained(
      checkpoint_dir, dtype=config.model.get("dtype"))
  if type(module).__name__ != task.architecture:
    raise ValueError(f"{checkpoint_dir} holds a {type(module).__name__}, task {config.task} "
                     f"needs a {task.architecture}")
  labels = list(module.config.id2label.values()) if task.has_labels else []
  examples = task.read_raw(input_file) if raw else task.read(input_file, "predict")
  features = task.featurize(examples, labels, "predict")
  sizes.check_features(features.arrays, module.config, str(input_file))
  # The pipelines' way (luke_jax.inference): each row padded to the next bucket of the length
  # it uses, not to max_seq_length x max_entity_length; one program per bucket, on one device.
  compilation_cache.enable()  # LUKE_JAX_COMPILATION_CACHE, when set
  forward = CompiledForward(module, params, task.input_keys, task.outputs,
                            apply=task.eval_outputs)
  outputs = BucketedRunner(forward, config.train.eval_batch_size).outputs(features.arrays)
  predictions = task.decode(examples, features, outputs, labels)
  output_file = Path(output_file or f"{input_file}.predictions{task.prediction_suffix}")
  if jax.process_index() == 0:
    tmp = output_file.with_name(f".{output_file.name}.tmp{task.prediction_suffix}")
    task.write_predictions(tmp, examples, predictions)
    os.replace(tmp, output_file)
  return predictions
