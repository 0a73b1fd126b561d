"""`load(DIR)`: runs an exported LUKE forward pass with jax, numpy and the artifact only.

The program comes from `jax.export.deserialize` and its parameters from safetensors; the
model's Flax code is never imported (nor is Flax), so a serving process needs neither the
luke-jax model nor the version of it that exported the artifact, only a jax that reads the
serialized program (jax.export keeps artifacts loadable across jax versions for a while:
https://docs.jax.dev/en/latest/export/export.html#compatibility-guarantees).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
from jax import export as jax_export
import numpy as np
import safetensors

from luke_jax.export import files
from luke_jax.export.outputs import ExportedOutputs

# Keys a `LukeTokenizer` call may return beside the model inputs; `model(**batch)` skips them
# (and a head's inputs that this model does not take, e.g. `entity_start_positions` from a
# span-classification tokenizer given to an encoder) instead of refusing the call.
_TOKENIZER_KEYS = frozenset({"offset_mapping", "overflow_to_sample_mapping", "length",
                             "entity_start_positions", "entity_end_positions"})


class ExportedModel:
  """A loaded export directory; call it with the tokenizer's arrays as keyword arguments.

  `model(**batch)` returns `ExportedOutputs` (`out.logits`, `out["logits"]`) of jax arrays.
  Each new combination of input sizes compiles the program once (jit caches it), so serving
  pads to a few fixed lengths.

  Attributes:
    directory: the export directory.
    manifest: `manifest.json`, parsed.
    exported: the `jax.export.Exported` program.
    params: the parameter tree, on the default device.
  """

  def __init__(self, directory: str | os.PathLike):
    self.directory = Path(directory)
    self.manifest = _read_manifest(self.directory)
    program = self.directory / files.PROGRAM
    try:
      self.exported = jax_export.deserialize(bytearray(program.read_bytes()))
    except FileNotFoundError:
      raise FileNotFoundError(f"{program}: missing (is {self.directory} an export "
                              "directory?)") from None
    except Exception as e:  # a damaged file or one from a jax this one cannot read
      raise ValueError(f"{program}: cannot deserialize ({type(e).__name__}: {e}); written by "
                       f"jax {self.manifest.get('jax_version')}, this is jax "
                       f"{jax.__version__}") from None
    self.params = _read_params(self.directory / files.PARAMS)
    self._inputs = {spec["name"]: spec for spec in self.manifest["inputs"]}
    self._dims = self.manifest["dimensions"]
    self._output_names = [spec["name"] for spec in self.manifest["outputs"]]
    self._check_params()
    self._call = jax.jit(self.exported.call)
    self._tokenizer = None

  @property
  def architecture(self) -> str:
    return self.manifest["architecture"]

  @property
  def input_names(self) -> list[str]:
    return list(self._inputs)

  @property
  def output_names(self) -> list[str]:
    """The names the model returns (the attributes that are never None)."""
    return [spec["name"] for spec in self.manifest["outputs"] if spec["returned"]]

  @property
  def tokenizer(self):
    """The saved tokenizer (`LukeTokenizer`), read on first use."""
    if self._tokenizer is None:
      # The tokenizer is plain Python and numpy; it never imports the model code.
      # pylint: disable-next=g-import-not-at-top
      from luke_jax.tokenization.tokenizer import LukeTokenizer
      self._tokenizer = LukeTokenizer.from_pretrained(self.directory / files.TOKENIZER)
    return self._tokenizer

  def __call__(self, **inputs) -> ExportedOutputs:
    arguments = self.arguments(inputs)
    return ExportedOutputs(self._output_names, self._call(self.params, arguments))

  def arguments(self, inputs: dict[str, Any]) -> dict[str, Any]:
    """The program's input dict for `inputs`: checked, defaults filled, int32.

    Raises:
      TypeError: a required input is missing, or an unknown one is given.
      ValueError: an input's dtype, rank or sizes do not fit (the message names it).
    """
    unknown = sorted(set(inputs) - set(self._inputs) - _TOKENIZER_KEYS)
    if unknown:
      raise TypeError(f"unexpected input {unknown[0]!r}; this {self.architecture} takes "
                      f"{', '.join(self._inputs)}")
    sizes: dict[str, tuple[int, str]] = {}  # dimension -> (size, the input that set it)
    arguments = {}
    for name, spec in self._inputs.items():
      if name not in inputs or inputs[name] is None:
        if spec["required"]:
          raise TypeError(f"missing input {name!r} [{', '.join(spec['shape'])}] of this "
                          f"{self.architecture}")
        continue
      arguments[name] = self._check(name, spec, inputs[name], sizes)
    for name, spec in self._inputs.items():
      if name not in arguments:  # an optional input left out: its default, sized as the others
        shape = tuple(sizes[dim][0] for dim in spec["shape"])
        arguments[name] = np.full(shape, spec["default"], np.int32)
    return arguments

  def _check(self, name: str, spec: dict, value, sizes: dict[str, tuple[int, str]]):
    if not isinstance(value, jax.Array):
      value = np.asarray(value)
    dims = spec["shape"]
    if value.dtype.kind not in "iub":
      raise ValueError(f"{name}: dtype {value.dtype}, expected integers (the model takes "
                       f"{spec['dtype']}; int64 from the tokenizer is converted)")
    if value.ndim != len(dims):
      raise ValueError(f"{name}: rank {value.ndim} (shape {tuple(value.shape)}), expected "
                       f"{len(dims)}: [{', '.join(dims)}]")
    for axis, (dim, size) in enumerate(zip(dims, value.shape)):
      if dim in sizes and sizes[dim][0] != size:
        other_size, other = sizes[dim]
        raise ValueError(f"{name}: {dim} (axis {axis}) is {size}, but {other} has "
                         f"{dim} = {other_size}")
      bound = self._dims[dim]
      if size < bound["min"] or size > bound.get("max", size):
        limits = f">= {bound['min']}" + (f" and <= {bound['max']}" if "max" in bound else "")
        hint = (" (an example without entities takes one padding entity with "
                "entity_attention_mask 0)" if dim == "entities" and size == 0 else "")
        raise ValueError(f"{name}: {dim} (axis {axis}) is {size}; this {self.architecture} "
                         f"takes {dim} {limits}{hint}")
      sizes.setdefault(dim, (size, name))
    return value.astype(np.dtype(spec["dtype"]))

  def _check_params(self) -> None:
    # The program's first argument is the parameter tree: same paths, shapes and dtypes.
    params_tree = jax.tree.structure(self.params)
    leaves = jax.tree.leaves(self.params)
    args_tree = jax.tree.structure(((self.params, dict.fromkeys(self._inputs, 0)), {}))
    avals = self.exported.in_avals[:len(leaves)]
    if args_tree != self.exported.in_tree:
      raise ValueError(f"{self.directory / files.PARAMS}: its tensors and the inputs in "
                       f"{files.MANIFEST} do not match what {files.PROGRAM} takes "
                       f"({params_tree.num_leaves} tensors)")
    for path, leaf, aval in zip(jax.tree_util.tree_flatten_with_path(self.params)[0], leaves,
                                avals):
      if leaf.shape != aval.shape or leaf.dtype != aval.dtype:
        key = files.KEY_SEPARATOR.join(k.key for k in path[0])
        raise ValueError(f"{self.directory / files.PARAMS}: {key} is {leaf.dtype}"
                         f"{list(leaf.shape)}, the program takes {aval.dtype}{list(aval.shape)}")


def _read_manifest(directory: Path) -> dict:
  path = directory / files.MANIFEST
  try:
    manifest = json.loads(path.read_text())
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: missing (is {directory} an export directory? "
                            "`python -m luke_jax.export` writes one)") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None
  if manifest.get("format") != files.FORMAT:
    raise ValueError(f"{path}: not a luke-jax export manifest (format "
                     f"{manifest.get('format')!r})")
  if manifest.get("format_version") != files.FORMAT_VERSION:
    raise ValueError(f"{path}: format_version {manifest.get('format_version')!r}; this "
                     f"luke-jax reads version {files.FORMAT_VERSION}")
  return manifest


def _read_params(path: Path) -> dict:
  # The numpy reader (bfloat16 as ml_dtypes') and one transfer per tensor: `safetensors.flax`
  # would import Flax, which a serving process does not need.
  try:
    with safetensors.safe_open(path, framework="numpy") as reader:
      flat = {key: jax.device_put(reader.get_tensor(key)) for key in reader.keys()}
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: missing") from None
  except Exception as e:  # safetensors raises its own error types for a damaged file
    raise ValueError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
  tree: dict = {}
  for key, value in flat.items():
    *parents, leaf = key.split(files.KEY_SEPARATOR)
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree


def load(directory: str | os.PathLike) -> ExportedModel:
  """Loads an export directory written by `luke_jax.export.export`; see `ExportedModel`."""
  return ExportedModel(directory)
