"""Serving: a LUKE forward pass as a serialized `jax.export` artifact, and the loader for it.

  luke_jax.export.export("ckpt/luke-base", "serving/luke-base")   # or python -m luke_jax.export
  model = luke_jax.export.load("serving/luke-base")
  out = model(**model.tokenizer(texts, entity_spans=spans, padding=True, return_tensors="np"))
  out.last_hidden_state, out["entity_last_hidden_state"]

`load` needs only jax, numpy, safetensors and the directory: importing this package and
loading never imports the model code (`luke_jax.models`, Flax), which `export` loads when it
runs. The directory's files are listed in `luke_jax.export.files`, the manifest in
`luke_jax.export.writer`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from luke_jax.export.loader import ExportedModel, load
from luke_jax.export.outputs import ExportedOutputs

__all__ = ["ExportedModel", "ExportedOutputs", "export", "load"]


def export(model, out: str | os.PathLike, *, architecture: str | None = None,
           dtype: str = "float32", platforms: Sequence[str] | str | None = None,
           tokenizer=None, overwrite: bool = False) -> Path:
  """Writes a serving directory for `model` at `out`; see `luke_jax.export.writer.export`."""
  # The writer imports the model code; a process that only loads artifacts never pays for it.
  from luke_jax.export import writer  # pylint: disable=g-import-not-at-top
  return writer.export(model, out, architecture=architecture, dtype=dtype, platforms=platforms,
                       tokenizer=tokenizer, overwrite=overwrite)
