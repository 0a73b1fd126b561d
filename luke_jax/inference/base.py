"""What every task pipeline shares: loading, options, labels, the bucketed jitted forward.

A pipeline is a fine-tuning task (`luke_jax.finetune.task.Task`) used for inference only: the
task featurizes the inputs exactly as in fine-tuning and decodes the outputs, with its lengths
set from the pipeline's options; `BucketedRunner` runs the rows in a few padded shapes.
Subclasses (one module per task) turn raw inputs into task examples and predictions into plain
dicts.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import ml_collections
import numpy as np

from luke_jax import pretrained
from luke_jax.models import sizes
from luke_jax.finetune.task import Features, Task
from luke_jax.bucketing import buckets as buckets_lib
from luke_jax.bucketing import compilation_cache
from luke_jax.bucketing.compiled import CompiledForward
from luke_jax.bucketing.runner import BucketedRunner
from luke_jax.tokenization.tokenizer import LukeTokenizer

# Keyword options of `from_pretrained` that only name where a Hub model comes from; passed to
# both loaders when given (`luke_jax.hub.resolve`).
HUB_OPTIONS = ("revision", "cache_dir", "local_files_only", "token")
DEFAULT_BATCH_SIZE = 8


class Pipeline:
  """Raw inputs -> task predictions with one model. Subclasses set the class attributes.

  Args:
    module, params: the model (`luke_jax.from_pretrained`); its class must be the task's head.
    tokenizer: the model's tokenizer (in the task's tokenizer mode).
    source: the checkpoint's name, for messages.
    batch_size: rows per jitted call; every call has exactly this many (padded).
    buckets: word-axis sizes (subwords, specials included) inputs are padded up to; sizes
      above `max_seq_length` are dropped and `max_seq_length` is the largest.
    entity_buckets: entity-axis sizes (spans for NER), capped likewise by the task's entities.
    max_seq_length: longest row; default the largest bucket the model's positions allow.
    max_mention_length: subwords of the longest mention (default: the task's, see subclasses).
    **task_options: task settings (`config.data` fields, see the subclass).
  """

  name: ClassVar[str]                  # registry name ("ner", ...)
  task_class: ClassVar[type[Task]]
  default_mention_length: ClassVar[int | None] = None  # None: the tokenizer's

  def __init__(self, module: nn.Module, params, tokenizer: LukeTokenizer, *, source: str = "",
               batch_size: int = DEFAULT_BATCH_SIZE,
               buckets: Sequence[int] = buckets_lib.WORD_BUCKETS,
               entity_buckets: Sequence[int] = buckets_lib.ENTITY_BUCKETS,
               max_seq_length: int | None = None, max_mention_length: int | None = None,
               **task_options):
    architecture = self.task_class.architecture
    if type(module).__name__ != architecture:
      raise ValueError(f"{source or 'the model'} is a {type(module).__name__}; the "
                       f"{self.name!r} pipeline needs a {architecture} (a checkpoint fine-tuned "
                       f"with configs/finetune/{self.task_class.name}.py, or a transformers "
                       f"{architecture} directory)")
    self.module, self.tokenizer, self.source = module, tokenizer, source
    self.labels = list(module.config.id2label.names)  # LabelMap checked the ids
    limit = module.config.max_seq_length
    if max_seq_length is None:
      max_seq_length = min(max(buckets, default=limit), limit)
    if not 1 <= max_seq_length <= limit:
      raise ValueError(f"max_seq_length={max_seq_length}: the model of {source or 'the model'} "
                       f"holds 1 to {limit} positions (max_position_embeddings="
                       f"{module.config.max_position_embeddings})")
    self.max_seq_length = int(max_seq_length)
    self.max_mention_length = int(max_mention_length or self.default_mention_length
                                  or tokenizer.max_mention_length)
    data = dict(max_seq_length=self.max_seq_length, max_mention_length=self.max_mention_length,
                **self.task_defaults())
    unknown = sorted(set(task_options) - set(data))
    if unknown:
      raise TypeError(f"unknown option(s) {unknown} for the {self.name!r} pipeline; task "
                      f"options: {sorted(set(data) - {'max_seq_length', 'max_mention_length'})}")
    data.update(task_options)
    self.task = self.task_class(ml_collections.ConfigDict(data), tokenizer)
    self.forward = CompiledForward(module, params, self.task.input_keys, self.task.outputs)
    self.runner = BucketedRunner(self.forward, batch_size, buckets, entity_buckets)

  def task_defaults(self) -> dict[str, Any]:
    """`config.data` fields of the task besides the lengths, with their pipeline defaults."""
    return {}

  @classmethod
  def from_pretrained(cls, model: str | os.PathLike, *, dtype: str | None = None,
                      compilation_cache_dir: str | os.PathLike | None = None,
                      **options) -> "Pipeline":
    """Loads `model` (a directory or a Hub id) with `luke_jax.from_pretrained` and
    `LukeTokenizer.from_pretrained`; `revision`, `cache_dir`, `local_files_only`, `token` go
    to both when given, the other options to the constructor."""
    # Before anything compiles, so every program of this process can use the cache.
    compilation_cache.enable(compilation_cache_dir)
    hub = {k: options.pop(k) for k in HUB_OPTIONS if options.get(k) is not None}
    for k in HUB_OPTIONS:
      options.pop(k, None)
    module, params = pretrained.from_pretrained(model, dtype=dtype, **hub)
    tokenizer = LukeTokenizer.from_pretrained(model, task=cls.task_class.tokenizer_task, **hub)
    return cls(module, params, tokenizer, source=str(model), **options)

  @property
  def compilations(self) -> int:
    """Programs compiled so far: at most one per (word bucket, entity bucket) used."""
    return self.forward.compilations

  def outputs(self, features: Features) -> dict[str, Any]:
    """The task's outputs for every feature row (ids checked against the model's tables)."""
    sizes.check_features(features.arrays, self.module.config, f"{self.name} pipeline input")
    return self.runner.outputs(features.arrays)

  def __repr__(self) -> str:
    return (f"{type(self).__name__}(model={self.source!r}, labels={len(self.labels)}, "
            f"max_seq_length={self.max_seq_length}, batch_size={self.runner.batch_size})")


def as_batch(inputs, what: str = "texts") -> tuple[list, bool]:
  """`(list of inputs, whether one input was given)`: a `str` is one text, a list many."""
  if isinstance(inputs, str):
    return [inputs], True
  if isinstance(inputs, (list, tuple)):
    for i, text in enumerate(inputs):
      if not isinstance(text, str):
        raise TypeError(f"{what}[{i}] is a {type(text).__name__}, expected a str")
    return list(inputs), False
  raise TypeError(f"expected a str or a list of str, got {type(inputs).__name__}")


def check_span(text: str, span, where: str) -> tuple[int, int]:
  """A character span `(start, end)` of `text`, checked: integers, inside, not blank."""
  try:
    start, end = span
  except (TypeError, ValueError):
    raise ValueError(f"{where}: a span is (start, end), got {span!r}") from None
  if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in (start, end)):
    raise ValueError(f"{where}: span {span!r} must hold two integers")
  if not 0 <= start < end <= len(text):
    raise ValueError(f"{where}: span ({start}, {end}) is not inside the {len(text)}-character "
                     "text")
  if not text[start:end].strip():
    raise ValueError(f"{where}: span ({start}, {end}) covers only whitespace")
  return int(start), int(end)


def spans_argument(batch: list[str], single: bool, count: int, *, span=None, spans=None,
                   entity_spans=None) -> list[list]:
  """`count` spans per text from whichever one argument was given.

  `span`/`spans` (the same thing, one name reading better for one text) hold per text one span
  (`count` 1) or a list of `count` spans; `entity_spans` holds per text a list of `count` spans,
  as transformers' tokenizer takes them.
  """
  given = [(name, value) for name, value in (("span", span), ("spans", spans),
                                              ("entity_spans", entity_spans))
           if value is not None]
  if len(given) != 1:
    names = "span=/spans= or entity_spans=" if count == 1 else "subj= and obj= or entity_spans="
    raise ValueError(f"give the entity spans once, as {names}"
                     + (f" (got {[n for n, _ in given]})" if given else ""))
  name, value = given[0]
  per_text = [value] if single else list(value)
  if len(per_text) != len(batch):
    raise ValueError(f"{len(batch)} texts but {len(per_text)} {name}: give one per text")
  if name == "entity_spans" or count > 1:
    out = []
    for i, spans_of_text in enumerate(per_text):
      spans_of_text = list(spans_of_text)
      if len(spans_of_text) != count:
        raise ValueError(f"text {i}: {name} holds {len(spans_of_text)} spans, expected {count}")
      out.append(spans_of_text)
    return out
  return [[s] for s in per_text]
