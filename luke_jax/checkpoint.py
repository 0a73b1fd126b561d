"""luke-jax checkpoint directories: reading and writing them.

A checkpoint directory holds `config.json` (the HF config with `architectures`, plus a
`luke_jax` section), `params/` (an Orbax checkpoint of the parameter tree, layer-loop layout)
and any tokenizer files. Directories are written under a temporary name and renamed into place,
so a failed or interrupted write never leaves something that looks complete.

This module sits below conversion (`luke_jax.convert` writes through it) and never imports it;
`luke_jax.pretrained.from_pretrained` is the loader that also accepts Hugging Face directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from luke_jax.models import layout, registry
from luke_jax.models.config import LukeConfig

TOKENIZER_FILES = ("vocab.json", "merges.txt", "sentencepiece.bpe.model", "entity_vocab.json",
                   "entity_vocab.jsonl", "entity_vocab.tsv", "added_tokens.json",
                   "special_tokens_map.json", "tokenizer_config.json", "tokenizer.json")


def check_destination(dst: str | os.PathLike, overwrite: bool = False) -> None:
  """Raises `FileExistsError` unless `dst` may be written; cheap, so callers check up front."""
  dst = Path(dst).absolute()
  if (dst.exists() or dst.is_symlink()) and not overwrite:
    raise FileExistsError(f"{dst} already exists (pass overwrite to replace it)")
  if overwrite and dst.exists() and not dst.is_dir():
    raise FileExistsError(f"{dst} exists and is not a directory; not replacing it")


@contextlib.contextmanager
def atomic_directory(dst: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
  """Yields a temporary sibling of `dst`; renames it to `dst` only if the block succeeds."""
  dst = Path(dst).absolute()
  check_destination(dst, overwrite)
  dst.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
  try:
    yield tmp
    if dst.exists():
      old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
      try:
        os.replace(dst, old / dst.name)
        try:
          os.replace(tmp, dst)
        except BaseException:
          os.replace(old / dst.name, dst)  # never leave the user with neither version
          raise
      finally:
        shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, dst)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp, ignore_errors=True)


def read_config(directory: str | os.PathLike) -> tuple[LukeConfig, str, dict]:
  path = Path(directory) / "config.json"
  try:
    raw = json.loads(path.read_text())
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: no config.json in {directory}") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None
  archs = raw.get("architectures") or ["LukeModel"]
  try:
    config = LukeConfig.from_hf_dict(raw)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{path}: {e}") from None
  return config, archs[0], raw


def write_config(directory: Path, config: LukeConfig, architecture: str) -> None:
  text = json.dumps(config.to_hf_dict(architecture), indent=2, sort_keys=True)
  (directory / "config.json").write_text(text + "\n")


def copy_tokenizer_files(src: Path, dst: Path) -> list[str]:
  copied = []
  for name in TOKENIZER_FILES:
    if (src / name).is_file():
      shutil.copy2(src / name, dst / name)
      copied.append(name)
  return copied


def save_params(directory: Path, params) -> None:
  """Writes the loop-layout tree to `directory/params` and waits for it to be on disk."""
  params = layout.scan_to_loop(nn.unbox(params))
  if jax.process_count() == 1:
    params = jax.tree.map(jnp.asarray, params)
    checkpointer = ocp.StandardCheckpointer()
  else:
    # Only this process writes (a multi-host run exports its gathered parameters from process
    # 0 alone): host numpy arrays, as Orbax refuses single-device arrays on several hosts, and
    # no barriers with, or metadata checks against, the other hosts.
    params = jax.tree.map(np.asarray, params)
    me = jax.process_index()
    checkpointer = ocp.StandardCheckpointer(multiprocessing_options=(
        ocp.options.MultiprocessingOptions(primary_host=None, active_processes={me})))
  checkpointer.save((directory / "params").absolute(), params)
  checkpointer.wait_until_finished()
  checkpointer.close()


def save_checkpoint(dst: str | os.PathLike, params, config: LukeConfig, architecture: str, *,
                    tokenizer_dir: str | os.PathLike | None = None,
                    overwrite: bool = False, extra=None) -> Path:
  """Writes a luke-jax checkpoint directory atomically; `extra(tmp_dir)` may add files."""
  registry.check_architecture(architecture)
  with atomic_directory(dst, overwrite) as tmp:
    save_params(tmp, params)
    write_config(tmp, config.replace(scan_layers=False), architecture)
    if tokenizer_dir is not None:
      copy_tokenizer_files(Path(tokenizer_dir), tmp)
    if extra is not None:
      extra(tmp)
  return Path(dst)


def load_params(directory: str | os.PathLike, config: LukeConfig, architecture: str,
                shardings=None):
  """The parameter tree of a checkpoint directory, in `config.scan_layers`'s layout.

  `shardings` (a tree of `jax.sharding.Sharding` over the loop layout, optional) places each
  leaf as it is read, e.g. split over a device mesh spanning several hosts, each host reading
  only its shards; by default every leaf lands whole on the default device.
  """
  path = (Path(directory) / "params").absolute()
  if not path.exists():
    raise FileNotFoundError(f"{path}: no parameters (is {directory} a luke-jax checkpoint?)")
  abstract = registry.abstract_params(architecture, config.replace(scan_layers=False))
  if shardings is not None:
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            abstract, shardings)
  checkpointer = ocp.StandardCheckpointer()
  try:
    params = checkpointer.restore(path, abstract)
  except Exception as e:  # orbax raises many types; the path is what the user needs
    raise ValueError(f"{path}: cannot restore parameters for {architecture}: {e}") from None
  finally:
    checkpointer.close()
  return layout.to_layout(params, config.scan_layers)
