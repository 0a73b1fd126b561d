"""`export(model, out)`: a LUKE forward pass as a serialized `jax.export` artifact for serving.

The program is `forward(params, inputs) -> {output name: array}`: the parameters are its first
argument, not constants folded into it, so the serialized StableHLO stays a few hundred KiB
whatever the model's size and the weights are stored once, beside it, in safetensors. Batch,
word, entity and mention counts are symbolic dimensions (shape polymorphism,
https://docs.jax.dev/en/latest/export/shape_poly.html): one artifact serves every input size,
and the constraints that the model needs (words within its position table, two entities for
a pair head) are part of the program. It is lowered for each of `platforms` at once
(https://docs.jax.dev/en/latest/export/export.html#module-calling-convention), so one artifact
runs on CPU, GPU and TPU.

Why safetensors for the weights: it holds bfloat16 natively (a numpy `.npz` stores it as
untyped bytes), a loader maps it instead of unpickling or copying it, it is the format
luke-jax already reads and writes for Hugging Face, and a server in another language reads it
with no Python at all. Each tensor's key is its "/"-joined path in the parameter tree.

`manifest.json` records what a caller needs without the model code:
  format, format_version   "luke-jax-export", 1
  architecture, dtype      the head (`LukeForEntitySpanClassification`, ...), float32/bfloat16
  inputs                   [{name, shape (dimension names), dtype, required, default}]
  dimensions               {name: {min, max}}: the symbolic dimensions and their bounds
  outputs                  [{name, returned, shape, dtype}]: every field of the model's output
                           dataclass; `returned` says which the program computes
  platforms                where the program runs: cpu, cuda, tpu
  config                   the model's Hugging Face config (labels in `id2label`)
  luke_jax_version, jax_version, jaxlib_version, calling_convention_version
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
import stat
from typing import Sequence

from flax import traverse_util
import jax
from jax import export as jax_export
import jax.numpy as jnp
import jaxlib
import numpy as np
import safetensors.flax

import luke_jax
from luke_jax import checkpoint
from luke_jax.export import files, signature
from luke_jax.models import registry
from luke_jax.tokenization.tokenizer import LukeTokenizer

PLATFORMS = ("cpu", "cuda", "tpu")
DTYPES = ("float32", "bfloat16")

# The tokenizer mode that produces each head's inputs (transformers' documented pairing); an
# exported tokenizer saved without a mode gets its head's, so `model(**tokenizer(...))` works.
_TOKENIZER_TASKS = {
    "LukeForEntityClassification": "entity_classification",
    "LukeForEntityPairClassification": "entity_pair_classification",
    "LukeForEntitySpanClassification": "entity_span_classification",
}


def export(model, out: str | os.PathLike, *, architecture: str | None = None,
           dtype: str = "float32", platforms: Sequence[str] | str | None = None,
           tokenizer=None, overwrite: bool = False) -> Path:
  """Writes the export directory `out` (see the module docstring); returns its path.

  Args:
    model: what `luke_jax.from_pretrained` reads (a luke-jax checkpoint, a Hugging Face
      directory), or an in-memory `(module, params)` pair (then `tokenizer` is required).
    out: the directory to write; written under a temporary name and renamed when complete.
    architecture: the head to load `model` as (`from_pretrained`'s `architecture`).
    dtype: "float32" or "bfloat16": the compute and the stored parameter dtype.
    platforms: where the program must run: any of "cpu", "cuda", "tpu" (a list, or one
      comma-separated string); default all three.
    tokenizer: a `LukeTokenizer` or a directory holding one; default the `model` directory.
    overwrite: replace an existing `out`.

  Raises:
    FileExistsError: `out` exists and `overwrite` is false.
    ValueError: an unknown dtype, platform or architecture; `out` overlaps `model`.
  """
  platforms = _check_platforms(platforms)
  if dtype not in DTYPES:
    raise ValueError(f"dtype {dtype!r}; choose from {', '.join(DTYPES)}")
  from_path = isinstance(model, (str, os.PathLike))
  if not from_path and tokenizer is None:
    raise ValueError("exporting an in-memory (module, params) needs tokenizer= (a "
                     "LukeTokenizer or its directory)")
  sources = [path for path in (model if from_path else None, tokenizer)
             if isinstance(path, (str, os.PathLike)) and Path(path).exists()]
  # Refused before the model is read: a refusal should not wait for the weights.
  checkpoint.check_destination(out, overwrite, sources)
  if from_path:
    module, params = luke_jax.from_pretrained(model, architecture=architecture)
    tokenizer = model if tokenizer is None else tokenizer
  else:
    module, params = model
  arch = _architecture(module, architecture)
  if isinstance(tokenizer, (str, os.PathLike)):
    try:
      tokenizer = LukeTokenizer.from_pretrained(tokenizer)
    except FileNotFoundError as e:
      raise FileNotFoundError(f"{e}; pass tokenizer= (--tokenizer) to take the tokenizer from "
                              "another directory") from None
  config = _portable(module.config.replace(dtype=dtype, param_dtype=dtype), platforms)
  module = registry.build(arch, config)
  params = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
  flat = traverse_util.flatten_dict(params, sep=files.KEY_SEPARATOR)
  params = traverse_util.unflatten_dict(flat, sep=files.KEY_SEPARATOR)  # plain nested dicts

  inputs = signature.inputs(arch)
  dims = signature.bounds(arch, config.max_position_embeddings, config.pad_token_id)
  scope = jax_export.SymbolicScope(signature.constraints(dims))
  input_specs = {
      i.name: jax.ShapeDtypeStruct(jax_export.symbolic_shape(", ".join(i.dims), scope=scope),
                                   jnp.int32) for i in inputs}
  param_specs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  fields: list[str] = []

  def forward(params, inputs):
    outputs = module.apply({"params": params}, **inputs, deterministic=True)
    fields[:] = [f.name for f in dataclasses.fields(outputs)]
    return {name: getattr(outputs, name) for name in fields
            if getattr(outputs, name) is not None}

  exported = jax_export.export(jax.jit(forward), platforms=platforms)(param_specs, input_specs)
  manifest = _manifest(arch, config, dtype, platforms, inputs, dims, fields, exported)

  with checkpoint.atomic_directory(out, overwrite, sources) as tmp:
    (tmp / files.PROGRAM).write_bytes(exported.serialize())
    safetensors.flax.save_file(flat, tmp / files.PARAMS)
    _save_tokenizer(tokenizer, arch, tmp / files.TOKENIZER)
    # Last, though the rename already keeps a partial directory from looking complete.
    (tmp / files.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    _share_like_the_rest(tmp)
  return Path(out)


def _share_like_the_rest(directory: Path) -> None:
  """Gives the directory and the weights the permissions of files written the usual way.

  The temporary directory is private (`tempfile.mkdtemp`: 0700) and safetensors writes its file
  0600; a serving artifact is usually read by another user (a server, a container build), so
  both get what the umask gives an ordinary directory and file (taken from `tokenizer/` and the
  program, which `mkdir` and `write_bytes` created), without changing the process's umask.
  """
  directory.chmod(stat.S_IMODE((directory / files.TOKENIZER).stat().st_mode))
  (directory / files.PARAMS).chmod(stat.S_IMODE((directory / files.PROGRAM).stat().st_mode))


def _check_platforms(platforms: Sequence[str] | str | None) -> tuple[str, ...]:
  if platforms is None:
    return PLATFORMS
  if isinstance(platforms, str):
    platforms = platforms.split(",")
  platforms = tuple(dict.fromkeys(p.strip().lower() for p in platforms if p.strip()))
  unknown = [p for p in platforms if p not in PLATFORMS]
  if unknown or not platforms:
    raise ValueError(f"platforms {','.join(platforms) or '(none)'}: choose among "
                     f"{', '.join(PLATFORMS)}")
  return platforms


def _architecture(module, requested: str | None) -> str:
  name = type(module).__name__
  if registry.ARCHITECTURES.get(name) is not type(module):
    raise ValueError(f"{name} is no luke-jax architecture (known: "
                     f"{', '.join(sorted(registry.ARCHITECTURES))})")
  if requested is not None and requested != name:
    raise ValueError(f"architecture {requested} asked for, but the model is a {name}")
  return name


def _portable(config, platforms: tuple[str, ...]):
  """`config` with an attention implementation that lowers for every one of `platforms`.

  "fused" chooses cuDNN's flash attention when it traces on a GPU (bfloat16), and "splash" is
  a Pallas TPU kernel: each lowers for its own platform only. An artifact for that platform
  alone, exported there, keeps them; any other gets the XLA formulation ("unfused": the same
  numbers up to summation order).
  """
  host = {"gpu": "cuda"}.get(jax.default_backend(), jax.default_backend())
  if config.attention_impl == "unfused" or platforms == (host,):
    return config
  if config.attention_impl == "splash" or host == "cuda":
    return config.replace(attention_impl="unfused")
  return config  # "fused" traced on a CPU or TPU host is XLA already


def _save_tokenizer(tokenizer: LukeTokenizer, architecture: str, directory: Path) -> None:
  tokenizer.save_pretrained(directory)
  task = _TOKENIZER_TASKS.get(architecture)
  if tokenizer.task is None and task is not None:
    LukeTokenizer.from_pretrained(directory, task=task).save_pretrained(directory)


def _dim(d) -> str | int:
  return d if isinstance(d, int) else str(d)


def _manifest(arch, config, dtype, platforms, inputs, dims, fields, exported) -> dict:
  out_tree = jax.tree_util.tree_unflatten(exported.out_tree, exported.out_avals)
  outputs = []
  for name in fields:
    entry = {"name": name, "returned": name in out_tree}
    if name in out_tree:
      aval = out_tree[name]
      entry.update(shape=[_dim(d) for d in aval.shape], dtype=str(np.dtype(aval.dtype)))
    outputs.append(entry)
  return {
      "format": files.FORMAT,
      "format_version": files.FORMAT_VERSION,
      "architecture": arch,
      "dtype": dtype,
      "inputs": [{"name": i.name, "shape": list(i.dims), "dtype": "int32",
                  "required": i.required, "default": i.default} for i in inputs],
      "dimensions": dims,
      "outputs": outputs,
      "platforms": list(platforms),
      "files": {"program": files.PROGRAM, "params": files.PARAMS,
                "tokenizer": files.TOKENIZER},
      "config": config.to_hf_dict(arch),
      "luke_jax_version": luke_jax.__version__,
      "jax_version": jax.__version__,
      "jaxlib_version": jaxlib.__version__,
      "calling_convention_version": exported.calling_convention_version,
  }
