"""The studio-ousia archive layout -> luke-jax, as the reference HF converter does it.

An archive directory holds `pytorch_model.bin` (or DeepSpeed's `mp_rank_00_model_states.pt`),
`metadata.json` (`{"model_config": {...}, ...}`) and `entity_vocab.tsv` or `entity_vocab.jsonl`.
Conversion appends the `<ent>`/`<ent2>` word rows (copied from "@" and "#", LM bias included),
appends a `[MASK2]` entity row (copied from `[MASK]`, prediction bias included), and copies each
layer's `query` into the entity-aware queries when the checkpoint has none.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from luke_jax import checkpoint
from luke_jax.convert import hf, weights_io
from luke_jax.convert.torch_to_flax import ConversionError, state_dict_to_params
from luke_jax.models.config import LukeConfig
from luke_jax.tokenization import entity_vocab

_WEIGHTS = ("pytorch_model.bin", "mp_rank_00_model_states.pt", "model.safetensors")
_DROPPED = ("lm_head.decoder.weight", "lm_head.decoder.bias", "entity_predictions.decoder.weight")
_HEADS = ("lm_head.", "entity_predictions.")


def read_entity_vocab(src: Path) -> list[tuple[int, list[tuple[str, str | None]]]]:
  """`[(id, [(title, language), ...]), ...]` from `entity_vocab.jsonl` or `.tsv`, read by the
  tokenizer's own line-checked readers (a blank TSV line would shift every later id)."""
  jsonl, tsv = src / "entity_vocab.jsonl", src / "entity_vocab.tsv"
  path = jsonl if jsonl.exists() else tsv if tsv.exists() else None
  if path is None:
    raise ConversionError(f"{src}: no entity_vocab.jsonl or entity_vocab.tsv")
  try:
    entries = entity_vocab.read_entries(path)
  except ValueError as e:
    raise ConversionError(str(e)) from None
  return [(idx, [(e.title, e.language) for e in entities]) for idx, entities, _ in entries]


_SPECIAL_ENTITIES = ("[PAD]", "[UNK]", "[MASK]", "[MASK2]")


def hf_entity_vocab(entries) -> dict[str, int]:
  """The flat `entity_vocab.json` of HF: specials bare, `lang:title` where a language is set."""
  out = {}
  for idx, names in entries:
    for title, lang in names:
      # Only the special entities stay bare (as in the mLUKE converter); a real title may
      # start with "[" too.
      key = title if (lang is None or title in _SPECIAL_ENTITIES) else f"{lang}:{title}"
      out[key] = idx
  return out


def _marker_ids(src: Path, given: list[str] | None) -> list[int]:
  if given:
    try:
      ids = [int(x) for x in given]
    except ValueError:
      ids = []
    if len(ids) != 2:
      raise ConversionError(f"--entity_marker_source_ids takes two word ids (for <ent> and "
                            f"<ent2>), not {given!r}")
    return ids
  vocab_file = src / "vocab.json"
  if not vocab_file.exists():
    raise ConversionError(f"{src}: no vocab.json to find '@' and '#' (rows that initialise <ent> "
                          "and <ent2>); pass --entity_marker_source_ids")
  vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
  missing = [t for t in ("@", "#") if t not in vocab]
  if missing:
    raise ConversionError(f"{vocab_file}: tokens {missing} not in the vocabulary")
  return [vocab["@"], vocab["#"]]


def read_original(src: str | os.PathLike, *, use_entity_aware_attention: bool | None = None,
                  marker_source_ids: list[str] | None = None, allow_pickle: bool = False,
                  log: Callable = print):
  """`(state, config, architecture, entity_vocab, origin, stored_names)` in HF naming and shapes.

  `origin` maps each key to the weights file and `stored_names` to its name in that file;
  `allow_pickle`: see `weights_io.read_torch_bin` (trusted files only).
  """
  src = hf.source_dir(src)
  meta_file = src / "metadata.json"
  try:
    model_config = dict(json.loads(meta_file.read_text())["model_config"])
  except FileNotFoundError:
    raise ConversionError(f"{meta_file}: missing (not a studio-ousia model archive)") from None
  except (json.JSONDecodeError, KeyError) as e:
    raise ConversionError(f"{meta_file}: no readable model_config ({e})") from None
  weights = next((src / n for n in _WEIGHTS if (src / n).exists()), None)
  if weights is None:
    raise ConversionError(f"{src}: no weights (looked for {', '.join(_WEIGHTS)})")
  # The small files first: their errors should not wait for gigabytes of weights.
  entries = read_entity_vocab(src)
  titles = {t: idx for idx, names in entries for t, _ in names}
  if "[MASK]" not in titles:
    raise ConversionError(f"{src}: the entity vocabulary has no [MASK] entity")
  mask_id = titles["[MASK]"]
  markers = _marker_ids(src, marker_source_ids)
  state = (weights_io.read_safetensors(weights) if weights.suffix == ".safetensors"
           else weights_io.read_torch_bin(weights, key="module", allow_pickle=allow_pickle))

  for key in list(state):
    if key.startswith("cls_entity_predictions."):
      log(f"dropping the CLS entity prediction head (not in HF LUKE): {key}")
      del state[key]
  word_key = "embeddings.word_embeddings.weight"
  entity_key = "entity_embeddings.entity_embeddings.weight"
  for key in (word_key, entity_key):
    if key not in state:
      raise ConversionError(f"{weights}: missing key {key!r}")
  num_words, num_entities = len(state[word_key]), len(state[entity_key])
  # The appended rows get ids len(table) and len(table)+1; a model_config or vocabulary that
  # disagrees with the table would make those ids (and the written vocabulary) wrong.
  for key, rows in (("vocab_size", num_words), ("entity_vocab_size", num_entities)):
    if key in model_config and model_config[key] != rows:
      raise ConversionError(f"{meta_file}: model_config key {key!r} is {model_config[key]}, but "
                            f"{weights} holds {rows} rows for it")
  max_id = max(idx for idx, _ in entries)
  if max_id >= num_entities:
    raise ConversionError(f"{src}: the entity vocabulary has id {max_id}, but {weights} key "
                          f"{entity_key!r} has only {num_entities} rows")
  for key, table in (("lm_head.decoder.weight", word_key),
                     ("entity_predictions.decoder.weight", entity_key)):
    # The archive stores these decoders tied to their tables and the conversion drops them.
    if key in state and not (state[key].shape == state[table].shape
                             and np.array_equal(state[key], state[table])):
      raise ConversionError(f"{weights}: key {key!r} differs from {table!r}; the reference "
                            "ties them, so this archive is not a LUKE pretraining checkpoint")
  if not all(0 <= m < num_words for m in markers):
    raise ConversionError(f"{src}: marker source ids {markers} are outside the {num_words} rows "
                          f"of {weights} key {word_key!r}")
  state[word_key] = np.concatenate([state[word_key], state[word_key][markers]])
  state[entity_key] = np.concatenate([state[entity_key], state[entity_key][[mask_id]]])
  for key in ("lm_head.bias", "lm_head.decoder.bias"):
    if key in state:
      state[key] = np.concatenate([state[key], state[key][markers]])
  if "entity_predictions.bias" in state:
    state["entity_predictions.bias"] = np.concatenate(
        [state["entity_predictions.bias"], state["entity_predictions.bias"][[mask_id]]])
  for key in _DROPPED:
    if key == "lm_head.decoder.bias" and "lm_head.bias" not in state and key in state:
      continue
    state.pop(key, None)

  has_head = any(k.startswith(_HEADS) for k in state)
  stored_names = {(k if k.startswith(_HEADS) else "luke." + k): k for k in state}
  state = {new: state[old] for new, old in stored_names.items()}
  model_config["vocab_size"] = state["luke." + word_key].shape[0]
  model_config["entity_vocab_size"] = state["luke." + entity_key].shape[0]
  model_config.setdefault("entity_emb_size", state["luke." + entity_key].shape[1])
  model_config["use_entity_aware_attention"] = (True if use_entity_aware_attention is None
                                                else use_entity_aware_attention)
  try:
    config = LukeConfig.from_hf_dict(model_config)
  except (TypeError, ValueError) as e:
    raise ConversionError(f"{meta_file}: {e}") from None
  vocab = hf_entity_vocab(entries)
  vocab["[MASK2]"] = num_entities  # the appended row; = max id + 1 in a complete vocabulary
  origin = {k: weights for k in state}
  arch = "LukeForMaskedLM" if has_head else "LukeModel"
  return state, config, arch, vocab, origin, stored_names


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, dst_format: str = "flax",
            use_entity_aware_attention: bool | None = None,
            marker_source_ids: list[str] | None = None, overwrite: bool = False,
            allow_pickle: bool = False, log: Callable = print) -> Path:
  checkpoint.check_destination(dst, overwrite, sources=[src])
  state, config, arch, vocab, origin, stored_names = read_original(
      src, use_entity_aware_attention=use_entity_aware_attention,
      marker_source_ids=marker_source_ids, allow_pickle=allow_pickle, log=log)
  params, config = state_dict_to_params(state, config, arch, origin=origin,
                                        config_file=str(Path(src) / "metadata.json"), log=log,
                                        stored_names=stored_names)
  extra = {"entity_vocab.json": json.dumps(vocab, ensure_ascii=False, indent=1) + "\n"}
  return hf.write_converted(params, config, arch, dst, dst_format=dst_format,
                            tokenizer_dir=src, overwrite=overwrite, extra_files=extra, log=log,
                            sources=[src])
