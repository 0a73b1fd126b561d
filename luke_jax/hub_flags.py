"""The Hub flags every command line shares: --revision, --cache_dir, --local_files_only, --token.

A program defines them once, at import as absl flags are, with `HubFlags("--src")` naming the
flag they apply to; `options()` gives them as `luke_jax.hub.resolve` keywords.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from absl import flags

from luke_jax import hub


class HubFlags:
  """The four flags, applying to a Hub id given in `target` (e.g. "--src")."""

  def __init__(self, target: str):
    about = f"When {target} is a Hub id:"
    self._revision = flags.DEFINE_string(
        "revision", None, f"{about} the branch, tag or commit hash to read (default main).")
    self._cache_dir = flags.DEFINE_string(
        "cache_dir", None, f"{about} the Hugging Face cache to use (default $HF_HUB_CACHE, "
        "i.e. $HF_HOME/hub).")
    self._local_files_only = flags.DEFINE_bool(
        "local_files_only", None, f"{about} read the cache only, never contact the Hub "
        "(default: as HF_HUB_OFFLINE says).")
    self._token = flags.DEFINE_string(
        "token", None, f"{about} access token for a private or gated repository (default "
        "HF_TOKEN or the `hf auth login` token; prefer those: a flag shows in process lists).")

  def options(self) -> dict[str, Any]:
    """The flags as `luke_jax.hub.resolve` keyword arguments."""
    return dict(revision=self._revision.value, cache_dir=self._cache_dir.value,
                local_files_only=self._local_files_only.value, token=self._token.value)

  def resolve(self, id_or_path: str | os.PathLike) -> Path:
    """`luke_jax.hub.resolve(id_or_path)` with these flags."""
    return hub.resolve(id_or_path, **self.options())
