"""`from_pretrained`: a Flax LUKE model from a luke-jax checkpoint or a Hugging Face directory.

It sits above both `luke_jax.checkpoint` (reading luke-jax checkpoints) and `luke_jax.convert`
(reading Hugging Face ones), so neither of those needs the other.
"""

from __future__ import annotations

import os
from pathlib import Path

from absl import logging
import jax
import jax.numpy as jnp

from luke_jax import checkpoint
from luke_jax.convert import hf
from luke_jax.models import registry


def _log_conversion(message: str) -> None:
  # Random weights in a loaded model deserve a warning (as transformers gives); the rest is detail.
  if message.startswith("newly initialised"):
    logging.warning("%s", message)
  else:
    logging.info("%s", message)


def from_pretrained(directory: str | os.PathLike, *, dtype: str | None = None,
                    param_dtype: str | None = None, scan_layers: bool | None = None,
                    remat_policy: str | None = None, architecture: str | None = None):
  """`model, params = from_pretrained(DIR)`: a Flax module and its parameter tree.

  `DIR` is a luke-jax checkpoint (from `python -m luke_jax.convert` or training) or a Hugging
  Face LUKE directory (`config.json` + `model.safetensors` / `pytorch_model.bin`), converted on
  the fly. The module class follows the checkpoint's `architectures` unless `architecture` is
  given; keyword arguments override the luke-jax-only config fields.
  """
  directory = Path(directory)
  config, stored_arch, _ = checkpoint.read_config(directory)
  if architecture is None and stored_arch not in registry.ARCHITECTURES:
    known = ", ".join(sorted(registry.ARCHITECTURES))
    raise ValueError(f"{directory / 'config.json'}: key \"architectures\" names "
                     f"{stored_arch!r}, which is no luke-jax model (known: {known}); pass "
                     "architecture= to choose one")
  overrides = {k: v for k, v in dict(dtype=dtype, param_dtype=param_dtype,
                                     scan_layers=scan_layers, remat_policy=remat_policy).items()
               if v is not None}
  config = config.replace(**overrides)
  arch = architecture or stored_arch
  if (directory / "params").exists():
    if arch != stored_arch:
      raise ValueError(f"{directory}: holds a {stored_arch}; convert it to {arch} with "
                       "`python -m luke_jax.convert --architecture` instead")
    params = checkpoint.load_params(directory, config, arch)
    params = jax.tree.map(lambda x: jnp.asarray(x, config.param_dtype), params)
  else:
    params, config = hf.load_hf_params(directory, config, arch, log=_log_conversion)
    params = jax.tree.map(jnp.asarray, params)
  return registry.build(arch, config), params
