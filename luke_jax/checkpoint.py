"""luke-jax checkpoint directories: reading and writing them.

A checkpoint directory holds `config.json` (the HF config with `architectures`, plus a
`luke_jax` section), `params/` (an Orbax checkpoint of the parameter tree, layer-loop layout)
and any tokenizer files. Directories are written under a temporary name and renamed into place,
so a failed or interrupted write never leaves something that looks complete. The temporary name
(`.<name>.tmp-<host>-<pid>-<random>`) says which process writes it, so the next write to the
same destination can remove what a killed run left behind without touching a live one's.

This module sits below conversion (`luke_jax.convert` writes through it) and never imports it;
`luke_jax.pretrained.from_pretrained` is the loader that also accepts Hugging Face directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from luke_jax import hub
from luke_jax.models import layout, registry
from luke_jax.models.config import LukeConfig

# The tokenizer's files, copied into a checkpoint and fetched with a Hub id: one list.
TOKENIZER_FILES = hub.TOKENIZER_FILES


def check_destination(dst: str | os.PathLike, overwrite: bool = False,
                      sources: Iterable[str | os.PathLike] = ()) -> None:
  """Raises unless `dst` may be written; cheap, so callers check up front.

  Args:
    dst: the directory to write.
    overwrite: whether an existing `dst` may be replaced.
    sources: directories the write reads from. A `dst` that is one of them, contains one or
      lies inside one is refused (`ValueError`), symlinks resolved: replacing it would delete
      the source (`--src=X/model --dst=X --overwrite`), or write into it.

  Raises:
    ValueError: `dst` overlaps a source.
    FileExistsError: `dst` exists and `overwrite` is false, or it is not a directory.
  """
  dst = Path(dst).absolute()
  real = dst.resolve()
  for src in sources:
    src_real = Path(src).resolve()
    if real == src_real:
      relation = "is the source"
    elif src_real.is_relative_to(real):
      relation = "contains the source"
    elif real.is_relative_to(src_real):
      relation = "lies inside the source"
    else:
      continue
    raise ValueError(f"destination {dst} {relation} {src_real}; refusing to write there, as "
                     "that would replace or change the source: choose a destination outside it")
  if (dst.exists() or dst.is_symlink()) and not overwrite:
    raise FileExistsError(f"{dst} already exists (pass overwrite to replace it)")
  if overwrite and dst.exists() and not dst.is_dir():
    raise FileExistsError(f"{dst} exists and is not a directory; not replacing it")


def _host() -> str:
  # Only characters that need no quoting in a file name; the pid that follows is all digits.
  return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def _process_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)  # signal 0: only the existence and permission checks
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # another user's process
  return True


def remove_stale_temporaries(dst: str | os.PathLike) -> list[Path]:
  """Removes temporary siblings of `dst` that killed writers on this host left; returns them.

  Only directories named as `atomic_directory` names them, for this destination, this host
  and a process that no longer runs, are removed: a live writer's (this process's included),
  another host's (its pids mean nothing here) and anything else are left alone. A `.old-`
  directory is removed only while `dst` exists: otherwise the writer died between moving the
  previous version aside and moving the new one in, and it holds the only copy.
  """
  dst = Path(dst).absolute()
  pattern = re.compile(rf"\.{re.escape(dst.name)}\.(tmp|old)-(.+)-(\d+)-[a-z0-9_]+")
  host, removed = _host(), []
  try:
    entries = list(os.scandir(dst.parent))
  except FileNotFoundError:
    return removed
  for entry in entries:
    match = pattern.fullmatch(entry.name)
    if not match or match.group(2) != host or not entry.is_dir(follow_symlinks=False):
      continue
    pid = int(match.group(3))
    if pid == os.getpid() or _process_alive(pid):
      continue
    path = Path(entry.path)
    if match.group(1) == "old" and not dst.exists() and (path / dst.name).exists():
      logging.warning("%s holds the previous version of %s, which process %d (no longer "
                      "running) was replacing; left in place", path, dst, pid)
      continue
    shutil.rmtree(path, ignore_errors=True)
    logging.warning("removed %s, left behind by process %d, which is no longer running", path,
                    pid)
    removed.append(path)
  return removed


@contextlib.contextmanager
def atomic_directory(dst: str | os.PathLike, overwrite: bool = False,
                     sources: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
  """Yields a temporary sibling of `dst`; renames it to `dst` only if the block succeeds.

  The one place that replaces a directory, so the one place that refuses (see
  `check_destination`) a `dst` overlapping any of `sources`.
  """
  dst = Path(dst).absolute()
  check_destination(dst, overwrite, sources)
  dst.parent.mkdir(parents=True, exist_ok=True)
  remove_stale_temporaries(dst)
  owner = f"{_host()}-{os.getpid()}-"
  tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-{owner}", dir=dst.parent))
  try:
    yield tmp
    if dst.exists():
      old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-{owner}", dir=dst.parent))
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
                    overwrite: bool = False, extra=None,
                    sources: Iterable[str | os.PathLike] = ()) -> Path:
  """Writes a luke-jax checkpoint directory atomically; `extra(tmp_dir)` may add files.

  `sources`: directories `dst` must not overlap (see `check_destination`), e.g. the
  checkpoint being converted.
  """
  registry.check_architecture(architecture)
  with atomic_directory(dst, overwrite, sources) as tmp:
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
