"""`luke_jax.pipeline(task, model=...)`: the task name -> its pipeline class, loaded on use.

As transformers' `pipeline(task, model=...)`: one call loads the model and its tokenizer and
returns a callable that takes raw text. A new task is one module with a pipeline class (a
`base.Pipeline` subclass for a fine-tuning task's head) and one line in `TASKS`.
"""

from __future__ import annotations

import importlib
import os

# Task name -> (module, class) of its pipeline.
TASKS = {
    "ner": ("luke_jax.inference.ner", "NerPipeline"),
    "entity-typing": ("luke_jax.inference.entity_typing", "EntityTypingPipeline"),
    "relation-classification": ("luke_jax.inference.relation", "RelationClassificationPipeline"),
    "entity-linking": ("luke_jax.inference.entity_linking", "EntityLinkingPipeline"),
}


def pipeline_class(task: str):
  """The pipeline class of `task` (a `TASKS` name)."""
  if task not in TASKS:
    raise ValueError(f"unknown pipeline task {task!r}; known: {', '.join(TASKS)}")
  module, name = TASKS[task]
  return getattr(importlib.import_module(module), name)


def pipeline(task: str, model: str | os.PathLike, **options):
  """A ready-to-call pipeline for `task` with `model`.

  Args:
    task: "ner", "entity-typing", "relation-classification" or "entity-linking".
    model: a fine-tuned luke-jax checkpoint directory (a run's `workdir/best`), a transformers
      LUKE directory with the task's head, or the Hub id of either; for "entity-linking" any
      checkpoint with a masked-entity head (the ED model, a LukeForMaskedLM), and the option
      `mention_db=PATH` is required (see `luke_jax.inference.entity_linking`).
    **options: `revision`, `cache_dir`, `local_files_only`, `token` (Hub ids only), `dtype`,
      `compilation_cache_dir` (`luke_jax.bucketing.compilation_cache`), `batch_size`,
      `buckets`, `entity_buckets`, `max_seq_length`, `max_mention_length` and the task's own
      (see `luke_jax.inference.base.Pipeline` and the task's class).

  Returns:
    The task's `Pipeline`: call it on a text (one result) or a list of texts (a list).
  """
  return pipeline_class(task).from_pretrained(model, **options)
