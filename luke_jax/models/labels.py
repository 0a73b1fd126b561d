"""`LabelMap`: a head's class names by id, a read-only mapping that stays hashable.

`LukeConfig` is frozen and hashed (it is a static attribute of the Flax modules), so its labels
cannot be a dict; a transformers user still writes `config.id2label[i]` and gets the name, as
with `transformers.PretrainedConfig.id2label`.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping, Union

Labels = Union[Mapping[int, str], Iterable[tuple[int, str]]]


class LabelMap(Mapping[int, str]):
  """`{id: name}` built from a mapping or from `(id, name)` pairs; ids are ints 0..n-1."""

  __slots__ = ("_pairs", "_names")

  def __init__(self, labels: Labels = ()):
    pairs = labels.items() if isinstance(labels, Mapping) else labels
    try:
      items = sorted((int(i), str(name)) for i, name in pairs)
    except (TypeError, ValueError):
      raise ValueError(f"id2label {labels!r} is neither a mapping of id -> name nor "
                       "(id, name) pairs") from None
    ids = [i for i, _ in items]
    if ids != list(range(len(ids))):
      raise ValueError(f"id2label ids must be 0..{len(ids) - 1}, got {ids}")
    self._pairs = tuple(items)
    self._names = tuple(name for _, name in items)

  def __getitem__(self, i: int) -> str:
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self._names):
      raise KeyError(i)
    return self._names[i]

  def __iter__(self) -> Iterator[int]:
    return iter(range(len(self._names)))

  def __len__(self) -> int:
    return len(self._names)

  def __hash__(self) -> int:
    return hash(self._pairs)

  def __eq__(self, other) -> bool:
    if isinstance(other, LabelMap):
      return self._pairs == other._pairs
    if isinstance(other, Mapping):
      return dict(self) == {int(k): v for k, v in other.items()}
    return NotImplemented

  def __repr__(self) -> str:
    return f"LabelMap({dict(self)!r})"

  @property
  def names(self) -> tuple[str, ...]:
    """The names in id order."""
    return self._names

  @property
  def label2id(self) -> dict[str, int]:
    return {name: i for i, name in self._pairs}
