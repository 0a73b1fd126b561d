"""Hugging Face LUKE state dicts <-> luke-jax parameter trees, driven by `rules`.

Every source tensor must be claimed by a rule (or be a known tied copy / buffer), every target
leaf must be filled, and every shape must match `jax.eval_shape` of the target module; anything
else raises `ConversionError` naming the file and the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import jax
import ml_dtypes
import numpy as np
from flax import traverse_util

from luke_jax.convert import rules
from luke_jax.models import layout, registry
from luke_jax.models.config import LukeConfig

_HEAD_PREFIXES = ("lm_head.", "entity_predictions.", "classifier.", "qa_outputs.")
_EAA = re.compile(r"(.*attention_self/)(w2e|e2w|e2e)_query/(kernel|bias)$")


class ConversionError(ValueError):
  """The checkpoint cannot be converted as asked; the message names the file and key."""


def _flat(tree) -> dict[str, object]:
  return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def _unflat(flat: dict[str, object]) -> dict:
  return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def _np_dtype(name: str):
  return ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)


def _group(path: str) -> str:
  """The unit that is initialised as a whole: a head (`lm_head`) or an encoder block."""
  parts = path.split("/")
  return "/".join(parts[:2]) if parts[0] == "luke" else parts[0]


def _renames(state: dict[str, np.ndarray], prefixed: bool, log: Callable[[str], None]
             ) -> dict[str, str]:
  """`{target key: key as stored}`: adds or strips the `luke.` prefix to suit the target."""
  has_prefix = any(k.startswith("luke.") for k in state)
  names = {}
  for key in state:
    new = key
    if prefixed and not has_prefix and not key.startswith(_HEAD_PREFIXES):
      new = "luke." + key
    elif not prefixed and has_prefix:
      if key.startswith("luke."):
        new = key[len("luke."):]
      elif key.startswith(_HEAD_PREFIXES):
        log(f"not used by LukeModel, dropped: {key}")
        continue
    names[new] = key
  return names


def normalise_keys(state: dict[str, np.ndarray], origin: dict[str, Path], prefixed: bool,
                   log: Callable[[str], None]):
  """Adds or strips the `luke.` prefix so the keys match the target architecture."""
  names = _renames(state, prefixed, log)
  return ({new: state[old] for new, old in names.items()},
          {new: origin.get(old) for new, old in names.items()})


def state_dict_to_params(
    state: dict[str, np.ndarray],
    config: LukeConfig,
    architecture: str,
    *,
    origin: dict[str, Path] | None = None,
    config_file: str = "config.json",
    may_initialise: Callable[[str], bool] | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
    stored_names: dict[str, str] | None = None,
) -> dict:
  """Converts an HF-named state dict into a parameter tree for `architecture`.

  Args:
    state: tensors by HF key (with or without the `luke.` prefix).
    config: the target config; its sizes are checked against every tensor.
    architecture: target class name, e.g. `LukeForEntityClassification`.
    origin: file each key was read from, for error messages.
    config_file: the file (or flags) the config came from, for error messages.
    may_initialise: which missing target leaves may be freshly initialised (by default the
      head's own parameters, e.g. a classifier on top of a base checkpoint; nothing of a
      `LukeModel`).
    seed: seed for freshly initialised parameters.
    log: receives one line per notable decision (initialised, ignored or dropped tensors).
    stored_names: the name each key of `state` has in its file, where a reader renamed it, so
      that errors quote what the user can find in the file.

  Returns:
    `(params, config)`: parameters in the layout `config.scan_layers` asks for, dtype
    `config.param_dtype`, and the config with `tie_word_decoder` set from the weights.
  """
  registry.check_architecture(architecture)
  origin = dict(origin or {})
  prefixed = architecture != "LukeModel"
  if may_initialise is None:
    # Only a head may be missing from a checkpoint: a LukeModel has none, and an encoder block
    # initialised at random would convert "successfully" into a useless model.
    may_initialise = lambda path: prefixed and not path.startswith("luke/")
  renames = _renames(state, prefixed, log)
  stored_names = dict(stored_names or {})
  stored = {new: stored_names.get(old, old) for new, old in renames.items()}
  origin = {new: origin.get(old) for new, old in renames.items()}
  state = {new: state[old] for new, old in renames.items()}
  dropped_heads = registry.DROPPED_MLM_HEADS.get(architecture, ())
  for key in [k for k in state if k.split(".")[0] in dropped_heads]:
    log(f"not used by {architecture}, dropped: {stored.get(key, key)}")
    del state[key]
  source_prefixed = any(name.startswith("luke.") for name in stored.values())
  where = lambda key: str(origin.get(key) or "state dict")
  name = lambda key: stored.get(key) or (key if source_prefixed or not key.startswith("luke.")
                                          else key[len("luke."):])
  if "lm_head.bias" not in state and "lm_head.decoder.bias" in state:
    # One parameter under two names; transformers 5 saves only the decoder's.
    state["lm_head.bias"] = state.pop("lm_head.decoder.bias")
    origin["lm_head.bias"] = origin.get("lm_head.decoder.bias")
    stored["lm_head.bias"] = name("lm_head.decoder.bias")
  decoder = state.get("lm_head.decoder.weight")
  words = state.get("luke.embeddings.word_embeddings.weight")
  if decoder is not None and words is not None and config.tie_word_decoder:
    if decoder.shape != words.shape or not np.array_equal(decoder, words):
      log("lm_head.decoder.weight differs from the word embeddings: keeping it untied")
      config = config.replace(tie_word_decoder=False)
  loop_cfg = config.replace(scan_layers=False)
  target = _flat(registry.abstract_params(architecture, loop_cfg))
  dtype = _np_dtype(config.param_dtype)

  filled: dict[str, np.ndarray] = {}
  for key, value in state.items():
    if rules.BUFFERS.match(key):
      continue
    if key in rules.TIED and not (key == "lm_head.decoder.weight" and not config.tie_word_decoder):
      source = rules.TIED[key]
      if source in state and not np.array_equal(np.asarray(state[source], np.float32),
                                                np.asarray(value, np.float32)):
        raise ConversionError(f"{where(key)}: {name(key)!r} differs from {name(source)!r}; "
                              "luke-jax ties "
                              "these decoders to their tables and cannot load untied weights")
      continue
    mapped = rules.hf_to_flax_path(key, prefixed)
    if mapped is None:
      raise ConversionError(f"{where(key)}: key {name(key)!r} is not a {architecture} parameter "
                            "(no conversion rule matches it)")
    path, kind = mapped
    if path not in target:
      if _EAA.match(path) and not config.use_entity_aware_attention:
        log(f"{config_file} disables entity-aware attention; ignoring {name(key)}")
        continue
      raise ConversionError(
          f"{where(key)}: key {name(key)!r} has no place in {architecture} built from "
          f"{config_file} (num_hidden_layers={config.num_hidden_layers}, "
          f"entity_emb_size={config.entity_emb_size}, hidden_size={config.hidden_size}, "
          f"use_entity_aware_attention={config.use_entity_aware_attention})")
    leaf = path.rsplit("/", 1)[1]
    # Compared before reshaping, which would otherwise fail without naming the key.
    want = rules.torch_shape(tuple(target[path].shape), kind, leaf)
    if tuple(value.shape) != want:
      raise ConversionError(
          f"{where(key)}: key {name(key)!r} has shape {tuple(value.shape)}, but {config_file} "
          f"implies {want} ({_sizes(config)}); the config contradicts the weights")
    converted = rules.to_flax(np.asarray(value), kind, leaf, config)
    filled[path] = np.asarray(converted, np.float32).astype(dtype)

  missing = [p for p in target if p not in filled]
  # A head may be initialised only as a whole: a checkpoint holding part of it is damaged.
  present = {_group(p) for p in filled}
  fresh, unfilled = [], []
  for path in missing:
    m = _EAA.match(path)
    query = m and f"{m.group(1)}query/{m.group(3)}"
    if m and query in filled:
      # Pretraining used plain attention; the reference copies `query` into the new matrices.
      filled[path] = filled[query].copy()
      log(f"initialised {path} from {query}")
    elif may_initialise(path) and _group(path) not in present:
      fresh.append(path)
    else:
      unfilled.append(path)
  if unfilled:
    names = []
    for p in unfilled:
      try:
        names.append(name(rules.flax_to_hf_key(p, prefixed)[0]))
      except KeyError:
        names.append(p)
    files = sorted({where(k) for k in state} or {"state dict"})
    names = sorted(names)
    more = f" and {len(names) - 20} more" if len(names) > 20 else ""
    raise ConversionError(f"{', '.join(files)}: missing keys for {architecture} "
                          f"(as {config_file} describes it): {', '.join(names[:20])}{more}")
  if fresh:
    # One compiled init that returns only the fresh leaves: XLA drops the rest, so neither the
    # op-by-op compile time nor the memory of a whole second model (e.g. a 500k-entity table)
    # is paid for a small head.
    init = jax.jit(lambda rng: {p: _flat(registry.init_params(architecture, loop_cfg, rng))[p]
                                for p in fresh})(jax.random.PRNGKey(seed))
    for path in fresh:
      filled[path] = np.asarray(init[path]).astype(dtype)
      log(f"newly initialised (not in checkpoint): {path}")
  return layout.to_layout(_unflat(filled), config.scan_layers), config


def _sizes(config: LukeConfig) -> str:
  return ", ".join(f"{k}={getattr(config, k)}" for k in (
      "vocab_size", "entity_vocab_size", "hidden_size", "entity_emb_size", "num_attention_heads",
      "intermediate_size", "max_position_embeddings", "type_vocab_size", "num_labels"))


def params_to_state_dict(params: dict, config: LukeConfig, architecture: str
                         ) -> dict[str, np.ndarray]:
  """Inverse of `state_dict_to_params`: HF keys, PyTorch layouts, tied copies left out."""
  prefixed = architecture != "LukeModel"
  out = {}
  for path, value in _flat(layout.scan_to_loop(params)).items():
    key, kind = rules.flax_to_hf_key(path, prefixed)
    out[key] = np.ascontiguousarray(rules.to_torch(np.asarray(value), kind, path.rsplit("/")[-1]))
  if architecture == "LukeForMaskedLM" and config.tie_word_decoder:
    # transformers 5 keeps this matrix as its own parameter, so a tied model must store it.
    out["lm_head.decoder.weight"] = out["luke.embeddings.word_embeddings.weight"].copy()
  return out
