"""The contract between the fine-tuning trainer and a task (reader, features, loss, decoding).

A task turns files in its official format into fixed-shape numpy features, says how the head's
outputs become a loss and predictions, and scores predictions with the task's official metric.
The trainer (`luke_jax.finetune.trainer`) owns everything else: model, optimizer, mesh,
batching, checkpoints, evaluation loop, `results.json`.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from luke_jax.data_error import DataError  # noqa: F401  (re-exported: the tasks raise it)
from luke_jax.tokenization.tokenizer import LukeTokenizer


@dataclasses.dataclass
class Features:
  """Model-ready arrays for a list of examples.

  Attributes:
    arrays: name -> array with a leading axis of N features and fixed trailing shapes (already
      padded to the config's lengths). Holds the head's inputs (`Task.input_keys`) and the
      training targets (`Task.target_keys`).
    example_index: [N] int, the example each feature row comes from (a long example may give
      several rows: windows, span chunks).
    meta: N host-side objects the decoder needs (token offsets, span lists, ...); never sent to
      the device.
  """

  arrays: dict[str, np.ndarray]
  example_index: np.ndarray
  meta: list[Any]

  def __len__(self) -> int:
    return len(self.example_index)

  def take(self, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in self.arrays.items()}


class Task(abc.ABC):
  """One fine-tuning task. Subclasses set the class attributes and implement the methods.

  Args (constructor):
    data_config: `config.data` of the fine-tuning config (file paths, lengths, task options).
    tokenizer: the checkpoint's tokenizer (already in the task's tokenizer mode if any).
  """

  name: ClassVar[str]                    # "conll2003", "tacred", ...
  architecture: ClassVar[str]            # head in `luke_jax.models.registry.ARCHITECTURES`
  tokenizer_task: ClassVar[str | None] = None   # `LukeTokenizer(task=...)` mode, if any
  input_keys: ClassVar[tuple[str, ...]]  # arrays passed to the head as keyword arguments
  target_keys: ClassVar[tuple[str, ...]]  # arrays only the loss reads
  metric: ClassVar[str] = "f1"           # dev metric (key of `evaluate`) that picks the best
  prediction_suffix: ClassVar[str] = ".jsonl"   # extension of the official prediction file
  has_labels: ClassVar[bool] = True      # False: label map not used (QA)
  # True: the head's parameters, too, come from the checkpoint wherever it has them at the same
  # paths (entity disambiguation starts from the pretrained entity-prediction head).
  pretrained_head: ClassVar[bool] = False

  def __init__(self, data_config: ml_collections.ConfigDict, tokenizer: LukeTokenizer):
    self.config = data_config
    self.tokenizer = tokenizer

  # ---- data -------------------------------------------------------------------------------
  @abc.abstractmethod
  def read(self, path: str | os.PathLike, split: str) -> list[Any]:
    """Examples of a file in the task's official format (gold included when present).

    Raises `DataError` naming the file and line (or example id) for malformed input and for an
    empty file; a task whose official convention is to skip some inputs counts and logs them.
    """

  def labels(self, train_examples: Sequence[Any]) -> list[str]:
    """The label list (index = class id) built from the training examples, fixed order."""
    return []

  @abc.abstractmethod
  def featurize(self, examples: Sequence[Any], labels: Sequence[str], split: str) -> Features:
    """Fixed-shape arrays for `examples`; a gold label missing from `labels` is a `DataError`
    naming the file, line and label (never silently mapped)."""

  def read_raw(self, path: str | os.PathLike) -> list[Any]:
    """Examples without gold from a plain-text file (`--predict_only`); tasks without a raw
    format keep this default and read their official format instead."""
    return self.read(path, "predict")

  # ---- model ------------------------------------------------------------------------------
  def head_config(self, labels: Sequence[str]) -> dict[str, Any]:
    """`LukeConfig` fields the head needs (default: `id2label` from the label list)."""
    return {"id2label": tuple(enumerate(labels))} if labels else {}

  @abc.abstractmethod
  def loss(self, outputs, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Per-row `(loss_sum [B], weight [B])` in float32, traced inside the jitted step.

    The trainer's loss is `sum(loss_sum * valid) / sum(weight * valid)` over the global batch,
    so the reference's mean (over spans, labels, candidates, ...) is reproduced exactly
    whatever the batch padding or gradient accumulation.
    """

  def train_inputs(self, batch: Mapping[str, jax.Array], rng: jax.Array
                   ) -> Mapping[str, jax.Array]:
    """The batch the training forward and loss see, traced inside the jitted train step.

    `rng` is a key of its own for every step and micro-batch (e.g. for random masking); the
    default returns the batch as it is.
    """
    del rng
    return batch

  @abc.abstractmethod
  def outputs(self, outputs) -> dict[str, jax.Array]:
    """The head outputs evaluation keeps per row (e.g. `{"logits": ...}`), traced in jit."""

  def eval_outputs(self, model: Callable[[Mapping[str, jax.Array]], Any],
                   batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """What evaluation keeps per row, traced in jit; `model(inputs)` is the head's
    deterministic forward on a batch of input arrays.

    Default `outputs(model(batch))`; a task whose predictions need several forward passes
    (entity disambiguation's global decoding) overrides it.
    """
    return self.outputs(model(batch))

  # ---- predictions and metrics ------------------------------------------------------------
  @abc.abstractmethod
  def decode(self, examples: Sequence[Any], features: Features,
             outputs: Mapping[str, np.ndarray], labels: Sequence[str]) -> list[Any]:
    """One prediction per example from the stacked per-row `outputs` ([N, ...] numpy)."""

  @abc.abstractmethod
  def evaluate(self, examples: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
    """The official metric(s): keys among `precision`, `recall`, `f1`, `exact_match`, ..."""

  @abc.abstractmethod
  def write_predictions(self, path: Path, examples: Sequence[Any],
                        predictions: Sequence[Any]) -> Path:
    """Writes predictions in the task's official format to `path` (suffix included)."""
