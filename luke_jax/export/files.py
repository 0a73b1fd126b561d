"""The files of an export directory, named in one place so the writer and the loader agree.

  forward.jax_export  the serialized `jax.export.Exported` (StableHLO) of
                      `forward(params, inputs) -> {output name: array}`
  params.safetensors  the parameters, one tensor per leaf, keyed by its "/"-joined tree path
  tokenizer/          the tokenizer's `save_pretrained`
  manifest.json       inputs, dimensions, outputs, versions (see `luke_jax.export.writer`)
"""

PROGRAM = "forward.jax_export"
PARAMS = "params.safetensors"
TOKENIZER = "tokenizer"
MANIFEST = "manifest.json"

# `manifest.json`'s "format" and "format_version": a loader refuses versions it does not know.
FORMAT = "luke-jax-export"
FORMAT_VERSION = 1

# Joins a parameter's tree path into its safetensors key (Flax module names never hold it).
KEY_SEPARATOR = "/"
