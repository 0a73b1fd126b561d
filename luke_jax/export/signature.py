"""What an exported forward pass takes: its inputs, their symbolic dimensions and their bounds.

Written into the artifact twice, from this one table: as `jax.export` symbolic shapes and
constraints (the program's own shape checks), and into `manifest.json`, which the loader reads
to check a call before it reaches the program. Nothing here imports the model code.
"""

from __future__ import annotations

import dataclasses

_WORDS = ("batch", "words")
_ENTITIES = ("batch", "entities")


@dataclasses.dataclass(frozen=True)
class Input:
  """One input of the exported program (always int32 there).

  Attributes:
    name: the keyword, as the tokenizer returns it.
    dims: the names of its symbolic dimensions; inputs sharing a name share the size.
    default: None for a required input; otherwise the value that fills it when left out.
  """
  name: str
  dims: tuple[str, ...]
  default: int | None = None

  @property
  def required(self) -> bool:
    return self.default is None


# The encoder's inputs, as the tokenizer returns them. The model reads a missing token type as
# all zeros (transformers' default), so the loader fills a left-out one with zeros and the
# program itself needs no optional arguments.
_ENCODER = (
    Input("input_ids", _WORDS),
    Input("attention_mask", _WORDS),
    Input("token_type_ids", _WORDS, default=0),
    Input("entity_ids", _ENTITIES),
    Input("entity_attention_mask", _ENTITIES),
    Input("entity_token_type_ids", _ENTITIES, default=0),
    Input("entity_position_ids", _ENTITIES + ("mention",)),
)
# Inputs a head adds to the encoder's (labels are for training and never exported).
_HEAD_INPUTS = {
    "LukeForEntitySpanClassification": (Input("entity_start_positions", _ENTITIES),
                                        Input("entity_end_positions", _ENTITIES)),
}
# Heads that read the second entity (the pair's tail; ReCoRD's first candidate).
_TWO_ENTITIES = ("LukeForEntityPairClassification", "LukeForEntitySpanQA")
# Heads whose every input has a `choices` dimension after the batch.
_WITH_CHOICES = ("LukeForMultipleChoice",)


def inputs(architecture: str) -> tuple[Input, ...]:
  """The inputs of `architecture`'s exported forward pass, in manifest order."""
  result = _ENCODER + _HEAD_INPUTS.get(architecture, ())
  if architecture in _WITH_CHOICES:
    result = tuple(dataclasses.replace(i, dims=(i.dims[0], "choices") + i.dims[1:])
                   for i in result)
  return result


def bounds(architecture: str, max_position_embeddings: int,
           pad_token_id: int) -> dict[str, dict[str, int]]:
  """`{dimension: {"min": m, "max": M}}` ("max" only where there is one).

  Every dimension is at least 1: `jax.export` takes symbolic dimensions to be positive
  (https://docs.jax.dev/en/latest/export/shape_poly.html), so an example without entities
  needs one padding entity (`entity_attention_mask` 0). Words are at most the positions the
  model has: RoBERTa-style position ids run from `pad_token_id + 1` up to
  `words + pad_token_id`, which must stay below `max_position_embeddings`.
  """
  dims = {name: {"min": 1} for i in inputs(architecture) for name in i.dims}
  dims["words"]["max"] = max_position_embeddings - pad_token_id - 1
  if architecture in _TWO_ENTITIES:
    dims["entities"]["min"] = 2
  return dims


def constraints(dimension_bounds: dict[str, dict[str, int]]) -> list[str]:
  """The bounds as `jax.export.SymbolicScope` constraints (the implicit `>= 1` left out)."""
  result = []
  for name, bound in dimension_bounds.items():
    if bound["min"] > 1:
      result.append(f"{name} >= {bound['min']}")
    if "max" in bound:
      result.append(f"{name} <= {bound['max']}")
  return result
