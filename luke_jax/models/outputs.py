"""`OutputMapping`: model outputs read by attribute or by name, as transformers' `ModelOutput`.

transformers users write `outputs.logits` and `outputs["logits"]` interchangeably; a field the
model did not produce (None) is absent from the mapping view, as in `ModelOutput`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator


class OutputMapping:
  """Mixin for the output dataclasses: `out["name"]`, `keys()`, `items()`, `"name" in out`."""

  def keys(self) -> list[str]:
    return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

  def items(self) -> list[tuple[str, Any]]:
    return [(k, getattr(self, k)) for k in self.keys()]

  def values(self) -> list[Any]:
    return [v for _, v in self.items()]

  def to_tuple(self) -> tuple[Any, ...]:
    return tuple(self.values())

  def __getitem__(self, key):
    if isinstance(key, int):  # transformers: the i-th field that is set
      return self.to_tuple()[key]
    if key not in self.keys():
      raise KeyError(f"{key!r}: not an output of this model (it gives {self.keys()})")
    return getattr(self, key)

  def __contains__(self, key) -> bool:
    return key in self.keys()

  def __iter__(self) -> Iterator[str]:
    return iter(self.keys())
