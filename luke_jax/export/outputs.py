"""`ExportedOutputs`: a loaded model's outputs, as `out.logits` or `out["logits"]`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterable, Iterator


class ExportedOutputs(Mapping):
  """The arrays one call of an exported model returned, with the model's output field names.

  Attribute access follows the model's own output dataclass (`LukeModelOutput`,
  `LukeHeadOutput`): every field of it is an attribute, None where the model does not return
  it (`out.loss` of an exported head). As a mapping it holds only the returned arrays, as
  `transformers`' `ModelOutput` holds only its non-None fields: `out["logits"]`, `dict(out)`,
  `list(out)`.
  """

  def __init__(self, names: Iterable[str], values: Mapping[str, Any]):
    self._names = tuple(names)
    self._values = {name: values[name] for name in self._names if name in values}

  def __getitem__(self, name: str):
    try:
      return self._values[name]
    except KeyError:
      raise KeyError(self._missing(name)) from None

  def __iter__(self) -> Iterator[str]:
    return iter(self._values)

  def __len__(self) -> int:
    return len(self._values)

  def __getattr__(self, name: str):
    # Only called for names that are not ordinary attributes: the output fields.
    if name.startswith("_"):
      raise AttributeError(name)
    if name in self._values:
      return self._values[name]
    if name in self._names:
      return None
    raise AttributeError(self._missing(name))

  def _missing(self, name: str) -> str:
    what = "not returned by this model" if name in self._names else "no output of this model"
    return f"{name!r}: {what}; it returns {', '.join(self._values)}"

  def __repr__(self) -> str:
    fields = ", ".join(f"{name}={getattr(value, 'shape', value)}"
                       for name, value in self._values.items())
    return f"ExportedOutputs({fields})"
