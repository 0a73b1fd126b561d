"""`resolve`: the local directory behind a checkpoint or tokenizer name (a path or a Hub id).

A name that is an existing directory is used as it is. A name shaped like a Hugging Face Hub
repository id (`studio-ousia/luke-base`, or a bare `name`) is looked up in the standard Hugging
Face cache, and downloaded into it when missing, by `huggingface_hub.snapshot_download`; so the
cache, `HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE` and `HF_TOKEN` work as they do for
transformers (https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables,
https://huggingface.co/docs/huggingface_hub/guides/manage-cache). Only the files a LUKE model
or tokenizer is read from are fetched, safetensors weights rather than `pytorch_model.bin`
when the repository has both. Fetching a `.bin` never means unpickling it in full: the
converter's `allow_pickle` opt-in (`luke_jax.convert.weights_io`) still applies.

`huggingface_hub` is imported only for a Hub id, so local directories do not need it.
"""

from __future__ import annotations

import os
from pathlib import Path

from luke_jax import __version__

# `allow_patterns` are fnmatch patterns over repository paths, where `*` also matches `/`
# (https://huggingface.co/docs/huggingface_hub/guides/download#filter-files-to-download).
CONFIG_FILES = ("config.json",)
# The files of a LUKE / mLUKE tokenizer in any layout we read (`luke_jax.checkpoint` copies the
# same into a checkpoint); here, in a module without JAX, so the tokenizer can fetch them.
# `vocab.txt`: BERT's WordPiece vocabulary (the official entity-disambiguation model).
TOKENIZER_FILES = ("vocab.json", "merges.txt", "vocab.txt", "sentencepiece.bpe.model",
                   "entity_vocab.json", "entity_vocab.jsonl", "entity_vocab.tsv",
                   "added_tokens.json", "special_tokens_map.json", "tokenizer_config.json",
                   "tokenizer.json")
# A luke-jax checkpoint (`luke_jax.checkpoint`): config.json, tokenizer files and the Orbax
# parameter tree under params/.
LUKE_JAX_FILES = ("params/*",)
SAFETENSORS_FILES = ("*.safetensors", "*.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin")
# Weights in sub-folders are other checkpoints or other exports, never what the loader reads.
NESTED_WEIGHTS = ("*/*.safetensors", "*/*.safetensors.index.json", "*/*.bin")
# What `luke_jax.convert.weights_io.find_weights` and `luke_jax.checkpoint` read as weights.
_WEIGHTS_READ = ("model.safetensors", "model.safetensors.index.json", "params")


def resolve(id_or_path: str | os.PathLike, *, revision: str | None = None,
            cache_dir: str | os.PathLike | None = None, local_files_only: bool | None = None,
            token: str | bool | None = None, weights: bool = True) -> Path:
  """The local directory of `id_or_path`: the directory itself, or a Hub snapshot in the cache.

  Args:
    id_or_path: an existing directory, or a Hub model repository id (`org/name` or `name`).
      Only a `str` can be an id: a `Path` always names a local directory.
    revision: Hub only: a branch, tag or commit hash; default the repository's `main`.
    cache_dir: Hub only: the cache to use instead of `HF_HUB_CACHE` (default
      `$HF_HOME/hub`).
    local_files_only: Hub only: True never contacts the Hub; None (the default) follows the
      environment (`HF_HUB_OFFLINE=1` is offline). False does not override `HF_HUB_OFFLINE`.
    token: Hub only: an access token for private or gated repositories; default `HF_TOKEN`
      or the token `hf auth login` stored.
    weights: Hub only: also fetch the weights (False: only config.json and tokenizer files).

  Returns:
    The directory as given (`~` expanded), or the snapshot directory
    `<cache>/models--org--name/snapshots/<commit>`.

  Raises:
    FileNotFoundError: a local-looking path that does not exist (it starts with `/`, `.` or
      `~`, or a folder it names exists), a name that is no repository id, or a Hub id that is
      not cached while offline, not on the Hub, or not reachable.
    NotADirectoryError: the path is a file.
    ValueError: the Hub refused access (gated repository, bad token).
  """
  local = _local_directory(id_or_path)
  if local is not None:
    return local
  return _snapshot(str(id_or_path), revision=revision, cache_dir=cache_dir,
                   local_files_only=local_files_only, token=token, weights=weights)


def _local_directory(id_or_path: str | os.PathLike) -> Path | None:
  """`id_or_path` as a directory; None when it may be a Hub id; raises for a missing path."""
  text = os.fspath(id_or_path)
  path = Path(text).expanduser()
  if path.is_dir():
    return path
  if path.exists():
    raise NotADirectoryError(f"{text}: not a directory (give a checkpoint directory or a Hub "
                             "repository id such as studio-ousia/luke-base)")
  if not isinstance(id_or_path, str) or _looks_local(text) or not _is_repo_id(text):
    raise FileNotFoundError(f"{text}: no such directory")
  return None


def _looks_local(text: str) -> bool:
  if text.startswith(("/", ".", "~", os.sep)) or (os.altsep and text.startswith(os.altsep)):
    return True
  # `runs/best` where runs/ exists is a path with a missing end, not the Hub's runs/best.
  return any(parent.exists() for parent in Path(text).parents if parent != Path("."))


def _is_repo_id(text: str) -> bool:
  # pylint: disable=g-import-not-at-top
  from huggingface_hub.utils import HFValidationError, validate_repo_id
  try:
    validate_repo_id(text)
  except HFValidationError:
    return False
  return True


def _has_weights(folder: Path) -> bool:
  return any((folder / name).exists() for name in _WEIGHTS_READ)


def _snapshot(repo_id: str, *, revision, cache_dir, local_files_only, token, weights) -> Path:
  # pylint: disable=g-import-not-at-top
  import huggingface_hub
  from huggingface_hub import constants, errors
  # Read at call time, not import time: huggingface_hub reads the environment into `constants`
  # once, and its own tests patch `constants.HF_HUB_OFFLINE` to switch offline mode.
  offline = bool(local_files_only) or constants.HF_HUB_OFFLINE
  why_offline = ("downloads are off ("
                 + ("local_files_only" if local_files_only else "HF_HUB_OFFLINE=1") + ")")
  cache = Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE).expanduser()
  what = repo_id if revision is None else f"{repo_id} (revision {revision})"
  command = " ".join(["hf download", repo_id] + (["--revision", revision] if revision else [])
                     + (["--cache-dir", str(cache)] if cache_dir is not None else []))
  common = dict(cache_dir=cache_dir, local_files_only=bool(local_files_only), token=token,
                library_name="luke-jax", library_version=__version__)
  patterns = list(CONFIG_FILES + TOKENIZER_FILES)
  if weights:
    patterns += LUKE_JAX_FILES + SAFETENSORS_FILES
  try:
    folder = Path(huggingface_hub.snapshot_download(
        repo_id, revision=revision, allow_patterns=patterns, ignore_patterns=NESTED_WEIGHTS,
        **common))
    if weights and not _has_weights(folder):
      # No safetensors (nor luke-jax parameters) in this commit: its .bin weights, then. The
      # commit hash (the snapshot's name) pins the same commit and needs no second look-up.
      folder = Path(huggingface_hub.snapshot_download(
          repo_id, revision=folder.name, allow_patterns=list(PICKLE_FILES),
          ignore_patterns=NESTED_WEIGHTS, **common))
  except errors.IncompleteSnapshotError as e:
    # An interrupted download: huggingface_hub's cached file listing names files it lacks.
    why = why_offline if offline else "the Hub cannot be reached"
    raise FileNotFoundError(
        f"{what}: the cached snapshot {e.snapshot_path} misses files and {why}: run "
        f"`{command}` once online, or pass a local directory") from None
  except errors.LocalEntryNotFoundError as e:
    if offline:
      raise FileNotFoundError(
          f"{what} is not in the Hugging Face cache at {cache} and {why_offline}: run "
          f"`{command}` once online, or pass a local directory") from None
    cause = e.__cause__ or e
    raise FileNotFoundError(
        f"{what} is not in the Hugging Face cache at {cache} and the Hub cannot be reached "
        f"({type(cause).__name__}: {cause}): check the connection (or HF_ENDPOINT), or pass a "
        "local directory") from None
  except errors.GatedRepoError:
    raise ValueError(
        f"{repo_id} is a gated repository: request access at https://huggingface.co/{repo_id} "
        "and give a token of that account (HF_TOKEN, `hf auth login`, or --token)") from None
  except errors.RepositoryNotFoundError:
    raise FileNotFoundError(
        f"{repo_id}: no such model repository on the Hugging Face Hub, or it is private and "
        "no token with access was given (HF_TOKEN, `hf auth login`, or --token); check the "
        "id, or pass a local directory") from None
  except errors.RevisionNotFoundError:
    raise FileNotFoundError(
        f"{repo_id}: no revision {revision!r} on the Hugging Face Hub; give an existing "
        "branch, tag or commit hash as revision") from None
  except errors.DisabledRepoError:
    raise ValueError(f"{repo_id}: the repository is disabled on the Hugging Face Hub") from None
  except errors.LocalTokenNotFoundError:
    raise ValueError(f"{repo_id}: a token was asked for but none is stored; set HF_TOKEN or "
                     "run `hf auth login`") from None
  except errors.HfHubHTTPError as e:
    if e.response is not None and e.response.status_code == 401:
      raise ValueError(f"{repo_id}: the Hugging Face Hub refused the token (401 "
                       "Unauthorized); check HF_TOKEN or --token, or run `hf auth login`"
                       ) from None
    raise
  except errors.HFValidationError as e:
    raise ValueError(f"{what}: {e}") from None
  return folder
