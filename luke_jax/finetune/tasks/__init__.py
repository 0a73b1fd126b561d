"""Task name -> `Task` class; modules are imported on use."""

from __future__ import annotations

import importlib

_TASKS = {
    "conll2003": ("luke_jax.finetune.tasks.ner", "NerTask"),
    "tacred": ("luke_jax.finetune.tasks.relation", "RelationTask"),
    "open_entity": ("luke_jax.finetune.tasks.entity_typing", "EntityTypingTask"),
    "squad": ("luke_jax.finetune.tasks.squad", "SquadTask"),
    "record": ("luke_jax.finetune.tasks.record", "RecordTask"),
    "entity_disambiguation": ("luke_jax.finetune.tasks.entity_disambiguation",
                              "EntityDisambiguationTask"),
}
NAMES = tuple(_TASKS)


def get(name: str):
  if name not in _TASKS:
    raise ValueError(f"unknown task {name!r}; known: {', '.join(NAMES)}")
  module, cls = _TASKS[name]
  return getattr(importlib.import_module(module), cls)
