"""Directory-level conversion between Hugging Face LUKE checkpoints and luke-jax checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from luke_jax import checkpoint
from luke_jax.convert import weights_io
from luke_jax.convert.torch_to_flax import (ConversionError, params_to_state_dict,
                                            state_dict_to_params)
from luke_jax.models import registry
from luke_jax.models.config import ED_DEFAULTS, LukeConfig

Log = Callable[[str], None]


def source_dir(src: str | os.PathLike) -> Path:
  """`src` as a Path; a missing or non-directory source is named as such, not by a file in it."""
  src = Path(src)
  if not src.exists():
    raise FileNotFoundError(f"{src}: no such directory")
  if not src.is_dir():
    raise NotADirectoryError(f"{src}: not a directory (the source is a checkpoint directory)")
  return src


def infer_architecture(state: dict[str, np.ndarray], config_file: str = "config.json") -> str:
  if any(k.startswith("lm_head.") or k.startswith("entity_predictions.") for k in state):
    return "LukeForMaskedLM"
  if any(k.startswith("luke.") for k in state):
    raise ConversionError(f"{config_file}: the checkpoint has a task head but the config names "
                          "no `architectures`; pass --architecture")
  return "LukeModel"


def read_hf(src: str | os.PathLike, architecture: str | None = None, *,
            allow_pickle: bool = False):
  """(config, architecture, state, origin) of an HF LUKE directory.

  `allow_pickle`: see `weights_io.read_torch_bin` (trusted files only).
  """
  src = source_dir(src)
  config_file = src / "config.json"
  config, _, raw = checkpoint.read_config(src)
  if raw.get("model_type") not in (None, "luke"):
    raise ConversionError(f"{config_file}: model_type {raw.get('model_type')!r} is not "
                          "LUKE (use --src_format=roberta for RoBERTa/XLM-R)")
  if architecture is not None:
    try:
      registry.check_architecture(architecture)
    except ValueError as e:
      raise ConversionError(f"{src}: cannot convert to the requested {e}") from None
  else:
    stored = raw.get("architectures")
    if stored:
      if not isinstance(stored, list) or stored[0] not in registry.ARCHITECTURES:
        raise ConversionError(
            f"{config_file}: key \"architectures\" is {stored!r}, which names no luke-jax "
            f"model (known: {', '.join(sorted(registry.ARCHITECTURES))}); pass --architecture "
            "to choose one")
  # Weights are read after the cheap checks: they may be gigabytes.
  state, origin = weights_io.load_state_dict(src, allow_pickle=allow_pickle)
  arch = (architecture or (raw.get("architectures") or [None])[0]
          or infer_architecture(state, str(config_file)))
  return config, arch, state, origin


def load_hf_params(src: str | os.PathLike, config: LukeConfig, architecture: str,
                   log: Log = print):
  """`(params, config)` read straight from an HF directory."""
  _, _, state, origin = read_hf(src, architecture)
  return state_dict_to_params(state, config, architecture, origin=origin,
                              config_file=str(Path(src) / "config.json"), log=log)


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, dst_format: str = "flax",
            architecture: str | None = None, num_labels: int | None = None,
            overwrite: bool = False, seed: int = 0, allow_pickle: bool = False,
            log: Log = print) -> Path:
  """HF directory -> luke-jax checkpoint (or HF again, e.g. to add a head); tokenizer copied.

  `dst` must not overlap `src` (checked before anything is read); `allow_pickle`: see
  `weights_io.read_torch_bin` (trusted files only).
  """
  checkpoint.check_destination(dst, overwrite, sources=[src])
  config, arch, state, origin = read_hf(src, architecture, allow_pickle=allow_pickle)
  config_file = str(Path(src) / "config.json")
  if num_labels is not None and num_labels != config.num_labels:
    config = config.replace(id2label=tuple((i, f"LABEL_{i}") for i in range(num_labels)))
    config_file += f" with --num_labels={num_labels}"
  params, config = state_dict_to_params(state, config, arch, origin=origin, seed=seed,
                                        config_file=config_file, log=log)
  return write_converted(params, config, arch, dst, dst_format=dst_format, tokenizer_dir=src,
                         overwrite=overwrite, log=log, sources=[src])


def write_converted(params, config: LukeConfig, architecture: str, dst: str | os.PathLike, *,
                    dst_format: str, tokenizer_dir=None, overwrite: bool = False,
                    extra_files: dict[str, str] | None = None, log: Log = print,
                    sources=()) -> Path:
  """Writes converted parameters as a luke-jax (`flax`) or Hugging Face (`hf`) directory.

  `extra_files` maps file names to text written alongside (e.g. a converted entity vocabulary);
  `sources` are directories `dst` must not overlap (`checkpoint.check_destination`).
  """
  def add_extra(directory: Path):
    for name, text in (extra_files or {}).items():
      (directory / name).write_text(text)

  if dst_format == "flax":
    out = checkpoint.save_checkpoint(dst, params, config, architecture,
                                     tokenizer_dir=tokenizer_dir, overwrite=overwrite,
                                     extra=add_extra, sources=sources)
  elif dst_format == "hf":
    out = write_hf(dst, params, config, architecture, tokenizer_dir=tokenizer_dir,
                   overwrite=overwrite, extra=add_extra, sources=sources)
  else:
    raise ValueError(f"unknown dst_format {dst_format!r} (flax or hf)")
  log(f"wrote {architecture} ({_count(params):,} parameters, {dst_format}) to {out}")
  return out


def write_hf(dst: str | os.PathLike, params, config: LukeConfig, architecture: str, *,
             tokenizer_dir: str | os.PathLike | None = None, overwrite: bool = False,
             extra: Callable[[Path], None] | None = None, sources=()) -> Path:
  """Writes `config.json` + `model.safetensors` that `transformers.<architecture>` loads.

  `sources`: directories `dst` must not overlap (`checkpoint.check_destination`).
  """
  check_hf_exportable(config, architecture)
  state = params_to_state_dict(params, config, architecture)
  with checkpoint.atomic_directory(dst, overwrite, sources) as tmp:
    weights_io.write_safetensors(tmp / "model.safetensors", state)
    checkpoint.write_config(tmp, config.replace(scan_layers=False), architecture)
    if tokenizer_dir is not None:
      checkpoint.copy_tokenizer_files(Path(tokenizer_dir), tmp)
    if extra is not None:
      extra(tmp)
  return Path(dst)


def check_hf_exportable(config: LukeConfig, architecture: str) -> None:
  """Raises unless the PyTorch class named `architecture` computes what `config` describes.

  transformers' LUKE classes use RoBERTa positions and no [MASK] vector; the entity
  disambiguation class (studio-ousia/luke examples/entity_disambiguation/model.py) hard-codes
  BERT's absolute positions and [MASK] = entity 2.
  """
  want = ED_DEFAULTS if architecture == "LukeForEntityDisambiguation" else dict(
      word_positions="roberta", mask_entity_id=None)
  have = {k: getattr(config, k) for k in want}
  if have != want:
    got = ", ".join(f"{k}={v!r}" for k, v in have.items())
    need = ", ".join(f"{k}={v!r}" for k, v in want.items())
    raise ConversionError(f"cannot export {architecture} with {got} to Hugging Face: its "
                          f"PyTorch class computes {need}; keep the luke-jax checkpoint instead")


def flax_to_hf(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False,
               log: Log = print) -> Path:
  """luke-jax checkpoint directory -> HF directory; `dst` must not overlap `src`."""
  checkpoint.check_destination(dst, overwrite, sources=[src])
  config, arch, _ = checkpoint.read_config(source_dir(src))
  params = checkpoint.load_params(src, config.replace(scan_layers=False), arch)
  out = write_hf(dst, params, config, arch, tokenizer_dir=src, overwrite=overwrite,
                 sources=[src])
  log(f"wrote {arch} to {out} (model.safetensors + config.json)")
  return out


def _count(params) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
