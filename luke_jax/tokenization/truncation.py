"""transformers' two truncation rules, which decide what a row keeps.

`truncate` is the Python rule (`truncate_sequences`) transformers applies to input with entities,
to the words and then to the entity lists; `truncate_native` is the `tokenizers` library's,
which transformers uses for entity-free input. Both work on any sliceable sequence: the
column-wise rows apply them to `range` objects, whose slices say what a list would keep.
"""

from __future__ import annotations


def truncate(first, second, remove: int, strategy: str, side: str = "right"):
  """transformers' `truncate_sequences` (without overflow), for word and for entity lists.

  Removes `remove` items from `first` and/or `second` (None without a pair) as `strategy` says,
  from the end (`side="right"`) or the start; returns what each keeps.
  """
  if remove <= 0:
    return first, second
  if strategy == "only_first" or (strategy == "longest_first" and second is None):
    return (first[remove:] if side == "left" else first[:-remove]), second
  if strategy == "longest_first":
    len_first, len_second = len(first), len(second) if second else 0
    first_remove = min(abs(len_second - len_first), remove)
    second_remove = remove - first_remove
    if len_first > len_second:
      from_first = first_remove + second_remove // 2
      from_second = second_remove - second_remove // 2
    else:
      from_first = second_remove // 2
      from_second = first_remove + second_remove - second_remove // 2
    if side == "right":
      first = first[:-from_first] if from_first > 0 else first
      second = second[:-from_second] if second and from_second > 0 else second
    else:
      first = first[from_first:]
      second = second[from_second:] if second else None
    return first, second
  if strategy == "only_second" and second:
    return first, (second[:-remove] if side == "right" else second[remove:])
  return first, second


def truncate_native(first, second, budget: int, strategy: str, side: str = "right"):
  """The `tokenizers` library's truncation, which transformers uses when there are no entities.

  `budget` is what the texts may keep (max_length minus the special tokens). For pairs,
  `longest_first` keeps the shorter text whole if it can and splits evenly otherwise.
  """
  cut = (lambda x, n: x[:n]) if side == "right" else (lambda x, n: x[len(x) - n:])
  if second is None:
    if strategy == "only_second":
      raise ValueError("truncation='only_second' needs a text pair")
    return cut(first, max(budget, 0)), None
  if strategy == "longest_first":
    n1, n2 = len(first), len(second)
    swap = n1 > n2
    if swap:
      n1, n2 = n2, n1
    n2 = n1 if n1 > budget else max(n1, budget - n1)
    if n1 + n2 > budget:
      n1 = budget // 2
      n2 = n1 + budget % 2
    if swap:
      n1, n2 = n2, n1
    return cut(first, n1), cut(second, n2)
  target, other = (first, second) if strategy == "only_first" else (second, first)
  keep = budget - len(other)
  if keep <= 0:
    raise ValueError(f"truncation={strategy!r}: the other text alone has {len(other)} tokens, "
                     f"more than the {budget} that max_length leaves")
  return (cut(first, keep), second) if strategy == "only_first" else (first, cut(second, keep))
