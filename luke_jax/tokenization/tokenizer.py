"""`LukeTokenizer`: text + character entity spans -> LUKE model inputs, id for id as transformers.

One class serves LUKE (byte-level BPE) and mLUKE (SentencePiece); the call mirrors the Hugging
Face one, batched or single, with the task modes `entity_classification`,
`entity_pair_classification`, `entity_span_classification` and `None`. Beyond the reference it
returns character offsets, splits long inputs into overlapping windows that keep only the
entities fully inside them, and accepts pre-split words.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from luke_jax.tokenization import backends, encoding
from luke_jax.tokenization.encoding import Side
from luke_jax.tokenization.entity_vocab import EntityVocab

_HUGE = int(1e30)


class BatchEncoding(dict):
  """A dict of model inputs (lists, or numpy arrays with `return_tensors="np"`)."""

  def __getattr__(self, name):
    try:
      return self[name]
    except KeyError:
      raise AttributeError(name) from None


class LukeTokenizer:
  """Hugging Face-compatible LUKE / mLUKE tokenizer on native word-piece backends."""

  def __init__(self, word_pieces: backends.WordPieces, entity_vocab: EntityVocab, *,
               task: str | None = None, max_entity_length: int = 32,
               max_mention_length: int = 30, model_max_length: int | None = None,
               padding_side: str = "right", truncation_side: str = "right",
               entity_special_tokens: dict[str, str] | None = None, source_dir: Path | None = None,
               init_config: dict | None = None):
    if task not in encoding.TASKS:
      raise ValueError(f"task {task!r} not supported; choose from {encoding.TASKS}")
    self.word_pieces = word_pieces
    self.entity_vocab = entity_vocab
    self.task = task
    self.max_entity_length = {"entity_classification": 1,
                              "entity_pair_classification": 2}.get(task, max_entity_length)
    self.max_mention_length = max_mention_length
    self.model_max_length = model_max_length or _HUGE
    self.padding_side = padding_side
    self.truncation_side = truncation_side
    names = dict(unk="[UNK]", pad="[PAD]", mask="[MASK]", mask2="[MASK2]")
    names.update(entity_special_tokens or {})
    for role, name in names.items():
      if name not in entity_vocab:
        raise ValueError(f"{entity_vocab.source}: entity special token {name} ({role}) is "
                         "missing from the entity vocabulary")
    self.entity_special_tokens = names
    self.entity_unk_token_id = entity_vocab.lookup(names["unk"])
    self.entity_pad_token_id = entity_vocab.lookup(names["pad"])
    self.entity_mask_token_id = entity_vocab.lookup(names["mask"])
    self.entity_mask2_token_id = entity_vocab.lookup(names["mask2"])
    self._source_dir = source_dir
    self._init_config = dict(init_config or {})

  # -- loading and saving ----------------------------------------------------------------------
  @classmethod
  def from_pretrained(cls, directory: str | os.PathLike, task: str | None = None,
                      **overrides) -> "LukeTokenizer":
    """Reads the classic HF layout, the transformers 5 layout or a luke-jax checkpoint dir."""
    directory = Path(directory)
    if not directory.is_dir():
      raise FileNotFoundError(f"{directory}: not a directory")
    config = _read_json(directory / "tokenizer_config.json")
    special_map = _read_json(directory / "special_tokens_map.json")
    for key, value in special_map.items():
      config.setdefault(key, value)
    if (directory / "sentencepiece.bpe.model").exists():
      pieces = backends.sentencepiece_from_file(directory / "sentencepiece.bpe.model", config)
    elif (directory / "vocab.json").exists() and (directory / "merges.txt").exists():
      pieces = backends.bpe_from_files(directory / "vocab.json", directory / "merges.txt", config,
                                       directory / "added_tokens.json")
    elif (directory / "tokenizer.json").exists():
      pieces = backends.from_tokenizer_json(directory / "tokenizer.json", config)
    else:
      raise FileNotFoundError(f"{directory}: no tokenizer files (sentencepiece.bpe.model, "
                              "vocab.json + merges.txt, or tokenizer.json)")
    if isinstance(config.get("entity_vocab"), dict):
      entity_vocab = EntityVocab.from_dict(config["entity_vocab"],
                                           f"{directory / 'tokenizer_config.json'}:entity_vocab")
    else:
      entity_vocab = EntityVocab.load(directory)
    kwargs = dict(
        task=task if task is not None else config.get("task"),
        max_entity_length=config.get("max_entity_length", 32),
        max_mention_length=config.get("max_mention_length", 30),
        model_max_length=config.get("model_max_length"),
        padding_side=config.get("padding_side", "right"),
        truncation_side=config.get("truncation_side", "right"),
        entity_special_tokens={role: config[f"entity_{role}_token"]
                               for role in ("unk", "pad", "mask", "mask2")
                               if isinstance(config.get(f"entity_{role}_token"), str)})
    kwargs.update(overrides)
    if kwargs["model_max_length"] is not None and kwargs["model_max_length"] >= _HUGE:
      kwargs["model_max_length"] = None
    return cls(pieces, entity_vocab, source_dir=directory, init_config=config, **kwargs)

  def save_pretrained(self, directory: str | os.PathLike) -> Path:
    """Writes a directory that both `from_pretrained`s (ours and transformers 5) read."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in self._init_config.items() if k != "entity_vocab"}
    config.update(task=self.task, max_entity_length=self.max_entity_length,
                  max_mention_length=self.max_mention_length,
                  padding_side=self.padding_side, truncation_side=self.truncation_side,
                  **{f"entity_{role}_token": name
                     for role, name in self.entity_special_tokens.items()})
    if self.model_max_length < _HUGE:
      config["model_max_length"] = self.model_max_length
    if self.word_pieces.kind == "sentencepiece":
      config["tokenizer_class"] = "MLukeTokenizer"
      # The loaded model itself, so a tokenizer built in memory (no source directory) saves too.
      (directory / "sentencepiece.bpe.model").write_bytes(
          self.word_pieces.processor.serialized_model_proto())
    else:
      config["tokenizer_class"] = "LukeTokenizer"
      self.word_pieces.tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps(config, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    self.entity_vocab.save(directory / "entity_vocab.json")
    return directory

  # -- the usual helpers -----------------------------------------------------------------------
  @property
  def pad_token_id(self) -> int:
    return self.word_pieces.special_id("pad")

  @property
  def mask_token_id(self) -> int:
    return self.word_pieces.special_id("mask")

  @property
  def cls_token_id(self) -> int:
    return self.word_pieces.special_id("cls")

  @property
  def sep_token_id(self) -> int:
    return self.word_pieces.special_id("sep")

  @property
  def unk_token_id(self) -> int:
    return self.word_pieces.special_id("unk")

  @property
  def entity_1_token_id(self) -> int:
    return self.word_pieces.special_id("entity_1")

  @property
  def entity_2_token_id(self) -> int:
    return self.word_pieces.special_id("entity_2")

  def __len__(self) -> int:
    return len(self.word_pieces)

  def convert_tokens_to_ids(self, tokens: str | Sequence[str]):
    if isinstance(tokens, str):
      idx = self.word_pieces.token_to_id(tokens)
      return self.unk_token_id if idx is None else idx
    return [self.convert_tokens_to_ids(t) for t in tokens]

  def convert_ids_to_tokens(self, ids: int | Sequence[int]):
    if isinstance(ids, (int, np.integer)):
      return self.word_pieces.id_to_token(int(ids))
    return [self.word_pieces.id_to_token(int(i)) for i in ids]

  def tokenize(self, text: str) -> list[str]:
    return self.convert_ids_to_tokens(self.word_pieces.encode_batch([text])[0])

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    return self.word_pieces.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

  def batch_decode(self, batch: Sequence[Sequence[int]], skip_special_tokens: bool = False):
    return [self.decode(ids, skip_special_tokens) for ids in batch]

  # -- encoding --------------------------------------------------------------------------------
  def __call__(self, text, text_pair=None, entity_spans=None, entity_spans_pair=None,
               entities=None, entities_pair=None, *, add_special_tokens: bool = True,
               padding: bool | str = False, truncation: bool | str | None = None,
               max_length: int | None = None, max_entity_length: int | None = None,
               max_mention_length: int | None = None, stride: int = 0,
               is_split_into_words: bool = False, pad_to_multiple_of: int | None = None,
               padding_side: str | None = None, return_tensors: str | None = None,
               return_token_type_ids: bool | None = None, return_attention_mask: bool = True,
               return_offsets_mapping: bool = False, return_overflowing_tokens: bool = False,
               return_length: bool = False) -> BatchEncoding:
    """Encodes one example or a batch; argument names and semantics follow transformers.

    Character spans are `(start, end)` offsets into the text (word indices with
    `is_split_into_words=True`). With `return_overflowing_tokens=True` and a `max_length`, long
    inputs become several windows overlapping by `stride` tokens; each keeps the entities that
    lie fully inside it, and `overflow_to_sample_mapping` says which example it came from.
    """
    batched = _is_batched(text, is_split_into_words)
    if not batched:
      text, text_pair = [text], None if text_pair is None else [text_pair]
      entity_spans = None if entity_spans is None else [entity_spans]
      entity_spans_pair = None if entity_spans_pair is None else [entity_spans_pair]
      entities = None if entities is None else [entities]
      entities_pair = None if entities_pair is None else [entities_pair]
    if is_split_into_words:
      text, entity_spans = _join_words(text, entity_spans, "entity_spans")
      if text_pair is not None:
        text_pair, entity_spans_pair = _join_words(text_pair, entity_spans_pair,
                                                   "entity_spans_pair")
    n = len(text)
    for name, value in (("text_pair", text_pair), ("entity_spans", entity_spans),
                        ("entity_spans_pair", entity_spans_pair), ("entities", entities),
                        ("entities_pair", entities_pair)):
      if value is not None and len(value) != n:
        raise ValueError(f"{name} has {len(value)} items for a batch of {n} texts")
    if self.task is not None and entity_spans is None:
      raise ValueError(f"task {self.task} needs entity_spans")
    with_entities = entity_spans is not None or entity_spans_pair is not None
    mention = max_mention_length or self.max_mention_length
    strategy = _truncation_strategy(truncation)
    if strategy != "do_not_truncate" and max_length is None:
      max_length = None if self.model_max_length >= _HUGE else self.model_max_length
      if max_length is None:
        strategy = "do_not_truncate"  # as transformers: nothing to truncate to
    if return_overflowing_tokens and (max_length is None or strategy == "do_not_truncate"):
      raise ValueError("return_overflowing_tokens needs truncation and a max_length")

    # 1. Validate and cut every text at its span boundaries.
    sides: list[tuple[Side, Side | None]] = []
    for i in range(n):
      first = self._side(text[i], entity_spans and entity_spans[i], entities and entities[i],
                         i, "entity_spans", self.task)
      second = None
      if text_pair is not None:
        second = self._side(text_pair[i], entity_spans_pair and entity_spans_pair[i],
                            entities_pair and entities_pair[i], i, "entity_spans_pair", None)
      sides.append((first, second))
    # 2. Native encoding: whole texts where that is exact, then one call for the pieces of
    # the rest.
    all_sides = [s for pair in sides for s in pair if s is not None]
    if not return_offsets_mapping and self.word_pieces.kind == "bpe":
      candidates = [s for s in all_sides if encoding.cuts_between_words(s)]
      whole = self.word_pieces.encode_at_cuts([s.text for s in candidates],
                                              [encoding.cuts(s) for s in candidates])
      done = set()
      for side, result in zip(candidates, whole):
        if result is not None:
          encoding.fill_whole(side, *result)
          done.add(id(side))
      all_sides = [s for s in all_sides if id(s) not in done]
    texts = [s.text[a:b] for s in all_sides for a, b in s.pieces]
    if return_offsets_mapping:
      encoded = self.word_pieces.encode_batch_with_offsets(texts)
      piece_ids, piece_offsets = [e[0] for e in encoded], [e[1] for e in encoded]
    else:
      piece_ids, piece_offsets = self.word_pieces.encode_batch(texts), None
    k = 0
    for side in all_sides:
      m = len(side.pieces)
      encoding.fill(side, piece_ids[k:k + m], piece_offsets[k:k + m] if piece_offsets else None)
      k += m
    # 3. Markers, truncation, specials, entity positions.
    rows, sample_map = [], []
    for i, (first, second) in enumerate(sides):
      if self.task in ("entity_classification", "entity_pair_classification"):
        encoding.insert_markers(first, self.task, self.entity_1_token_id, self.entity_2_token_id)
      windows = (self._windows(first, second, max_length, stride, strategy, add_special_tokens)
                 if return_overflowing_tokens else [(first, second)])
      for a, b in windows:
        rows.append(self._assemble(a, b, with_entities, add_special_tokens, strategy, max_length,
                                   max_entity_length, mention, return_offsets_mapping,
                                   return_token_type_ids))
        sample_map.append(i)
    out = self._pad(rows, batched or return_overflowing_tokens, padding, max_length,
                    max_entity_length, pad_to_multiple_of, padding_side, with_entities, mention,
                    return_attention_mask, as_numpy=return_tensors == "np")
    if return_overflowing_tokens:
      out["overflow_to_sample_mapping"] = sample_map
    if return_length:
      out["length"] = [len(r["input_ids"]) for r in rows]
    if not (batched or return_overflowing_tokens):
      out = {k: v[0] for k, v in out.items()}
    return _as_tensors(out, return_tensors, batched or return_overflowing_tokens)

  def _pad_numpy(self, out: dict, target: int, entity_target: int, mention: int,
                 left: bool) -> dict:
    """Padding straight into arrays; mention positions for the whole batch in one step."""
    fill = {"input_ids": self.pad_token_id, "entity_ids": self.entity_pad_token_id,
            "offset_mapping": 0}
    arrays = {}
    for key, rows in out.items():
      if key == "entity_position_ids":
        continue
      length = entity_target if key.startswith("entity") else target
      shape = (len(rows), length) + ((2,) if key == "offset_mapping" else ())
      array = np.full(shape, fill.get(key, 0), np.int64)
      for i, row in enumerate(rows):
        if not len(row):
          continue
        if left:
          array[i, length - len(row):] = row
        else:
          array[i, :len(row)] = row
      arrays[key] = array
    if "entity_position_ids" in out:
      mentions = out["entity_position_ids"]
      counts = np.array([len(m.starts) for m in mentions])
      rows = np.repeat(np.arange(len(mentions)), counts)
      slots = np.concatenate([np.arange(c) for c in counts]) if counts.sum() else counts
      if left:
        slots = slots + np.repeat(entity_target - counts, counts)
      starts = np.array([s for m in mentions for s in m.starts], np.int64)
      ends = np.array([e for m in mentions for e in m.ends], np.int64)
      grid = np.full((len(mentions), entity_target, mention), -1, np.int64)
      grid[rows, slots] = encoding.position_grid(starts, ends, mention)
      arrays["entity_position_ids"] = grid
    return arrays

  def _side(self, text, spans, entities, example, which, task) -> Side:
    if not isinstance(text, str):
      raise ValueError(f"example {example}: text must be a string, got {type(text).__name__}")
    if spans is None:
      if entities is not None:
        raise ValueError(f"example {example}: entities given without {which}")
      pieces, boundaries = encoding.segment(text, None)
      return Side(text, None, None, pieces, boundaries)
    spans = encoding.check_spans(spans, text, example, task, which)
    if task in ("entity_classification", "entity_span_classification"):
      entity_ids = [self.entity_mask_token_id] * len(spans)
    elif task == "entity_pair_classification":
      entity_ids = [self.entity_mask_token_id, self.entity_mask2_token_id]
    elif entities is None:
      entity_ids = [self.entity_mask_token_id] * len(spans)
    else:
      if len(entities) != len(spans):
        name = "entities" if which == "entity_spans" else "entities_pair"
        raise ValueError(f"example {example}: {name} has {len(entities)} titles but {which} "
                         f"has {len(spans)} spans {spans}; give one title per span")
      entity_ids = [self.entity_vocab.lookup(e) for e in entities]
    pieces, boundaries = encoding.segment(text, spans)
    return Side(text, spans, entity_ids, pieces, boundaries)

  def _num_specials(self, pair: bool, add_special_tokens: bool) -> int:
    return (4 if pair else 2) if add_special_tokens else 0

  def _assemble(self, first: Side, second: Side | None, with_entities: bool,
                add_special_tokens: bool, strategy: str, max_length: int | None,
                max_entity_length: int | None, mention: int, offsets: bool,
                token_types: bool | None) -> dict[str, Any]:
    ids, pair_ids = first.ids, None if second is None else second.ids
    offs, pair_offs = first.offsets, None if second is None else second.offsets
    total = len(ids) + (len(pair_ids) if pair_ids is not None else 0) + self._num_specials(
        second is not None, add_special_tokens)
    if strategy != "do_not_truncate" and max_length and total > max_length:
      if with_entities:
        ids, pair_ids = encoding.truncate(ids, pair_ids, total - max_length, strategy,
                                          self.truncation_side)
      else:  # transformers hands entity-free input to the tokenizers library
        specials = self._num_specials(pair_ids is not None, add_special_tokens)
        ids, pair_ids = encoding.truncate_native(ids, pair_ids, max_length - specials, strategy,
                                                 self.truncation_side)
      if offsets:
        offs = offs[:len(ids)] if self.truncation_side == "right" else offs[-len(ids):]
        if pair_ids is not None:
          pair_offs = (pair_offs[:len(pair_ids)] if self.truncation_side == "right"
                       else pair_offs[len(pair_offs) - len(pair_ids):])
    cls_id, sep_id = self.cls_token_id, self.sep_token_id
    if add_special_tokens:
      row_ids = [cls_id] + ids + [sep_id]
      row_offs = [(0, 0)] + list(offs) + [(0, 0)]
      if pair_ids is not None:
        row_ids += [sep_id] + pair_ids + [sep_id]
        row_offs += [(0, 0)] + list(pair_offs) + [(0, 0)]
      offset_first, offset_pair = 1, len(ids) + 3
    else:
      row_ids = ids + (pair_ids or [])
      row_offs = list(offs) + list(pair_offs or [])
      offset_first, offset_pair = 0, len(ids)
    row: dict[str, Any] = {"input_ids": row_ids}
    if token_types:
      row["token_type_ids"] = [0] * len(row_ids)
    if offsets:
      row["offset_mapping"] = row_offs
    if not with_entities:
      return row
    # Entities whose span ends beyond the kept words are dropped, then the entity list itself
    # is truncated with the word strategy.
    kept = []
    for side, length, base in ((first, len(ids), offset_first),
                               (second, None if pair_ids is None else len(pair_ids), offset_pair)):
      if side is None or side.token_spans is None:
        kept.append(None)
        continue
      kept.append([(e, s, base) for e, s in zip(side.entity_ids, side.token_spans)
                   if s[1] <= length])
    limit = max_entity_length or self.max_entity_length
    total_entities = sum(len(k) for k in kept if k)
    if strategy != "do_not_truncate" and total_entities > limit:
      a, b = encoding.truncate(kept[0] or [], kept[1], total_entities - limit, strategy,
                               self.truncation_side)
      kept = [a, b]
    entries = [e for k in kept if k for e in k]
    starts = [s[0] + base for _, s, base in entries]
    ends = [s[1] + base for _, s, base in entries]
    row["entity_ids"] = [e for e, _, _ in entries]
    # Mention positions are built for the whole batch at once when padding (see `_pad`).
    row["entity_position_ids"] = _Mentions(starts, ends)
    if self.task == "entity_span_classification":
      row["entity_start_positions"] = starts
      row["entity_end_positions"] = [e - 1 for e in ends]
    if token_types:
      row["entity_token_type_ids"] = [0] * len(entries)
    return row

  def _windows(self, first: Side, second: Side | None, max_length: int, stride: int,
               strategy: str, add_special_tokens: bool) -> list[tuple[Side, Side | None]]:
    """Splits the longer text into overlapping windows; entities move with their window."""
    target = second if (second is not None and strategy == "only_second") else first
    other = first if target is second else second
    fixed = (len(other.ids) if other is not None else 0) + self._num_specials(
        second is not None, add_special_tokens)
    room = max_length - fixed
    if room <= 0:
      raise ValueError(f"max_length {max_length} leaves no room for text after the "
                       f"{fixed} tokens of specials and the other sequence")
    if stride >= room:
      raise ValueError(f"stride {stride} must be smaller than the window ({room} tokens)")
    windows, start = [], 0
    while True:
      end = min(start + room, len(target.ids))
      part = Side(target.text, None, None, target.pieces, target.boundary_segment,
                  ids=target.ids[start:end], offsets=target.offsets[start:end])
      if target.token_spans is not None:
        inside = [(e, (s - start, t - start)) for e, (s, t) in
                  zip(target.entity_ids, target.token_spans) if s >= start and t <= end]
        part.entity_ids = [e for e, _ in inside]
        part.token_spans = [s for _, s in inside]
        part.spans = []
      windows.append((part, other) if target is first else (other, part))
      if end >= len(target.ids):
        return windows
      start = end - stride

  def _pad(self, rows, batched, padding, max_length, max_entity_length, multiple, side,
           with_entities, mention, return_attention_mask, as_numpy=False) -> dict[str, list]:
    strategy = _padding_strategy(padding)
    left = (side or self.padding_side) == "left"
    out: dict[str, list] = {k: [r[k] for r in rows] for k in rows[0]}
    mentions = out.pop("entity_position_ids", None)
    if mentions is not None:
      out["entity_position_ids"] = [encoding.position_ids(m.starts, m.ends, mention)
                                    for m in mentions] if not as_numpy or strategy == (
                                        "do_not_pad") else mentions
    lengths = [len(r["input_ids"]) for r in rows]
    entity_lengths = [len(r["entity_ids"]) for r in rows] if with_entities else []
    if return_attention_mask:
      out["attention_mask"] = [[1] * n for n in lengths]
      if with_entities:
        out["entity_attention_mask"] = [[1] * n for n in entity_lengths]
    if strategy == "do_not_pad":
      return out
    if strategy == "longest":
      target, entity_target = max(lengths), max(entity_lengths, default=0)
      if not batched:
        target, entity_target = lengths[0], (entity_lengths[0] if entity_lengths else 0)
    else:
      if max_length is None:
        max_length = None if self.model_max_length >= _HUGE else self.model_max_length
      if max_length is None:
        return out  # transformers: nothing to pad to
      target = max_length
      # transformers pads a batch to the tokenizer's own entity length, one example to the
      # length asked for.
      entity_target = (self.max_entity_length if batched
                       else (max_entity_length or self.max_entity_length))
    target = encoding.round_up(target, multiple)
    entity_target = encoding.round_up(entity_target, multiple)
    if as_numpy:
      return self._pad_numpy(out, target, entity_target, mention, left)
    if all(n == target for n in lengths) and all(n == entity_target for n in entity_lengths):
      return out
    fill = {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": 0,
            "offset_mapping": (0, 0), "entity_ids": self.entity_pad_token_id,
            "entity_attention_mask": 0, "entity_token_type_ids": 0,
            "entity_position_ids": [-1] * mention, "entity_start_positions": 0,
            "entity_end_positions": 0}
    for key, value in out.items():
      length = entity_target if key.startswith("entity") else target
      out[key] = encoding.pad_rows(value, length, fill[key], left)
    return out


class _Mentions:
  """Token `[start, end)` of each kept mention of one row, expanded to positions later."""
  __slots__ = ("starts", "ends")

  def __init__(self, starts: list[int], ends: list[int]):
    self.starts, self.ends = starts, ends


def _read_json(path: Path) -> dict:
  if not path.exists():
    return {}
  try:
    return json.loads(path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None


def _is_batched(text, is_split_into_words: bool) -> bool:
  if is_split_into_words:
    return bool(text) and isinstance(text[0], (list, tuple))
  if isinstance(text, str):
    return False
  if isinstance(text, (list, tuple)):
    return True
  raise ValueError(f"text must be a string or a list of strings, got {type(text).__name__}")


def _join_words(batch, spans, which):
  """Pre-split words -> text joined by spaces; word-index spans -> character spans."""
  texts, char_spans = [], []
  for i, words in enumerate(batch):
    starts, pos = [], 0
    for w in words:
      starts.append(pos)
      pos += len(w) + 1
    texts.append(" ".join(words))
    if spans is None:
      continue
    converted = []
    for span in spans[i]:
      s, e = span
      if not 0 <= s < e <= len(words):
        raise ValueError(f"example {i}: {which} {tuple(span)} is not a valid word range for "
                         f"{len(words)} words")
      converted.append((starts[s], starts[e - 1] + len(words[e - 1])))
    char_spans.append(converted)
  return texts, (char_spans if spans is not None else None)


def _truncation_strategy(truncation) -> str:
  if truncation is None or truncation is False:
    return "do_not_truncate"
  if truncation is True:
    return "longest_first"
  if truncation in ("longest_first", "only_first", "only_second", "do_not_truncate"):
    return truncation
  raise ValueError(f"unknown truncation {truncation!r}")


def _padding_strategy(padding) -> str:
  if padding is False or padding is None:
    return "do_not_pad"
  if padding is True:
    return "longest"
  if padding in ("longest", "max_length", "do_not_pad"):
    return padding
  raise ValueError(f"unknown padding {padding!r}")


def _as_tensors(out: dict, return_tensors: str | None, batched: bool) -> BatchEncoding:
  if return_tensors is None:
    return BatchEncoding(out)
  if return_tensors != "np":
    raise ValueError(f"return_tensors={return_tensors!r}: luke-jax returns numpy ('np')")
  arrays = {}
  for key, value in out.items():
    try:
      arrays[key] = np.asarray(value if batched else [value], dtype=np.int64)
    except ValueError:
      raise ValueError(f"cannot make a rectangular array of {key!r}; pass padding=True") from None
  return BatchEncoding(arrays)
