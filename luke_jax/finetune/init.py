"""Fine-tuning parameters from a pretrained (or fine-tuned) checkpoint.

The encoder (`luke/...`) always comes from the checkpoint, whatever head it was saved with;
a checkpoint saved without entity-aware attention gives its `query` to the three extra
queries (as the reference's `load_state_dict` does); the task head is random unless the
checkpoint already is this task's model with the same label map (continued fine-tuning).
"""

from __future__ import annotations

from typing import Any

from absl import logging
import flax.traverse_util
import numpy as np

_EXTRA_QUERIES = ("w2e_query", "e2w_query", "e2e_query")


def merge_pretrained(fresh: Any, loaded: Any, *, take_head: bool, source: str) -> Any:
  """`fresh` (a head model's random parameters) with every leaf `loaded` provides.

  Args:
    fresh: parameter tree of the fine-tuning model (encoder under `luke`).
    loaded: parameter tree of the checkpoint (a head model with `luke`, or a bare `LukeModel`).
    take_head: also copy non-encoder leaves of equal path.
    source: the checkpoint directory, for messages.

  Returns:
    The merged tree (numpy leaves where copied).

  Raises:
    ValueError: a leaf present in both with different shapes (names the path and the source).
  """
  flat_fresh = flax.traverse_util.flatten_dict(fresh)
  flat_loaded = flax.traverse_util.flatten_dict(loaded)
  encoder = ({k[1:]: v for k, v in flat_loaded.items() if k[0] == "luke"}
             if any(k[0] == "luke" for k in flat_loaded) else flat_loaded)
  merged, fresh_paths = {}, []
  for path, leaf in flat_fresh.items():
    if path[0] == "luke":
      src = encoder.get(path[1:])
      if src is None and len(path) >= 2 and path[-2] in _EXTRA_QUERIES:
        src = encoder.get(path[1:-2] + ("query", path[-1]))
    else:
      src = flat_loaded.get(path) if take_head else None
    if src is None:
      merged[path] = leaf
      fresh_paths.append("/".join(path))
      continue
    if tuple(src.shape) != tuple(leaf.shape):
      raise ValueError(f"{source}: parameter {'/'.join(path)} has shape {tuple(src.shape)}, "
                       f"the fine-tuning model needs {tuple(leaf.shape)}")
    merged[path] = np.asarray(src, dtype=leaf.dtype)
  encoder_fresh = [p for p in fresh_paths if p.startswith("luke/")
                   and not p.startswith("luke/pooler/")]
  if encoder_fresh:
    logging.warning("%s lacks %d encoder parameters; they start random: %s", source,
                    len(encoder_fresh), ", ".join(encoder_fresh[:5]))
  logging.info("newly initialised from scratch: %s", ", ".join(fresh_paths) or "nothing")
  return flax.traverse_util.unflatten_dict(merged)
