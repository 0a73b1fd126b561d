"""`from_pretrained`: a Flax LUKE model from a luke-jax checkpoint or a Hugging Face directory,
local or named by its Hub id (`luke_jax.hub`).

It sits above both `luke_jax.checkpoint` (reading luke-jax checkpoints) and `luke_jax.convert`
(reading Hugging Face ones), so neither of those needs the other.
"""

from __future__ import annotations

import os

from absl import logging
import jax
import jax.numpy as jnp

from luke_jax import checkpoint
from luke_jax import hub
from luke_jax.convert import hf
from luke_jax.models import registry


def _log_conversion(message: str) -> None:
  # Random weights in a loaded model deserve a warning (as transformers gives); the rest is detail.
  if message.startswith("newly initialised"):
    logging.warning("%s", message)
  else:
    logging.info("%s", message)


def from_pretrained(id_or_path: str | os.PathLike, *, revision: str | None = None,
                    cache_dir: str | os.PathLike | None = None,
                    local_files_only: bool | None = None, token: str | bool | None = None,
                    dtype: str | None = None, param_dtype: str | None = None,
                    scan_layers: bool | None = None, remat_policy: str | None = None,
                    architecture: str | None = None):
  """`model, params = from_pretrained(DIR_OR_ID)`: a Flax module and its parameter tree.

  `DIR_OR_ID` is a luke-jax checkpoint (from `python -m luke_jax.convert` or training) or a
  Hugging Face LUKE directory (`config.json` + `model.safetensors` / `pytorch_model.bin`),
  converted on the fly; or the Hub id of either (`studio-ousia/luke-base`), read from the
  Hugging Face cache and downloaded into it when missing. `revision`, `cache_dir`,
  `local_files_only` and `token` apply to a Hub id only (see `luke_jax.hub.resolve`). The
  module class follows the checkpoint's `architectures` unless `architecture` is given (a
  luke-jax checkpoint then only loads as its own class, or a `LukeForMaskedLM` as
  `LukeForEntityDisambiguation`, its `lm_head` dropped); keyword arguments override the
  luke-jax-only config fields.
  """
  directory = hub.resolve(id_or_path, revision=revision, cache_dir=cache_dir,
                          local_files_only=local_files_only, token=token)
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
    dropped = (registry.DROPPED_MLM_HEADS.get(arch, ()) if stored_arch == "LukeForMaskedLM"
               else ())
    if arch != stored_arch and not dropped:
      raise ValueError(f"{directory}: holds a {stored_arch}; convert it to {arch} with "
                       "`python -m luke_jax.convert --architecture` instead")
    params = checkpoint.load_params(directory, config, stored_arch)
    if dropped:
      logging.info("%s: loading a LukeForMaskedLM as %s; dropped %s", directory, arch,
                   ", ".join(dropped))
      params = {k: v for k, v in params.items() if k not in dropped}
    params = jax.tree.map(lambda x: jnp.asarray(x, config.param_dtype), params)
  else:
    params, config = hf.load_hf_params(directory, config, arch, log=_log_conversion)
    params = jax.tree.map(jnp.asarray, params)
  return registry.build(arch, config), params
