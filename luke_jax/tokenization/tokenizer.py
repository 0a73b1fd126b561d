"""`LukeTokenizer`: text + character entity spans -> LUKE model inputs, id for id as transformers.

One class serves LUKE (byte-level BPE), mLUKE (SentencePiece) and LUKE models built on BERT
(WordPiece: the official entity-disambiguation model); the call mirrors the Hugging Face one,
batched or single, with the task modes `entity_classification`, `entity_pair_classification`,
`entity_span_classification` and `None`. Beyond the reference it returns character offsets,
splits long inputs into overlapping windows that keep only the entities fully inside them, and
accepts pre-split words. Every call, one example or many, goes through the one column-wise
pipeline (`batch`, `rows`, `outputs`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from luke_jax.tokenization import backends, batch, entity_inputs, outputs, rows, wordpiece
from luke_jax.tokenization.entity_vocab import EntityVocab

_HUGE = int(1e30)
TASKS = (None, "entity_classification", "entity_pair_classification",
         "entity_span_classification")


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
    if task not in TASKS:
      raise ValueError(f"task {task!r} not supported; choose from {TASKS}")
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
    # Only the entity-pair task uses [MASK2]. transformers' LUKE and mLUKE tokenizers insist on
    # it all the same, and so do we for their vocabularies; the entity vocabulary of the BERT-based
    # entity-disambiguation model has only [PAD], [UNK] and [MASK].
    optional = {"mask2"} if (word_pieces.kind == "wordpiece"
                             and task != "entity_pair_classification") else set()
    for role, name in names.items():
      if name not in entity_vocab and role not in optional:
        raise ValueError(f"{entity_vocab.source}: entity special token {name} ({role}) is "
                         "missing from the entity vocabulary")
    self.entity_special_tokens = names
    self.entity_unk_token_id = entity_vocab.lookup(names["unk"])
    self.entity_pad_token_id = entity_vocab.lookup(names["pad"])
    self.entity_mask_token_id = entity_vocab.lookup(names["mask"])
    self.entity_mask2_token_id = (entity_vocab.lookup(names["mask2"])
                                  if names["mask2"] in entity_vocab else None)
    self._source_dir = source_dir
    self._init_config = dict(init_config or {})
    self._special_ids = self._marker_ids = None
    if self.task in ("entity_classification", "entity_pair_classification"):
      self._markers()  # a vocabulary without the markers fails here, not at the first call

  # -- loading and saving ----------------------------------------------------------------------
  @classmethod
  def from_pretrained(cls, id_or_path: str | os.PathLike, task: str | None = None, *,
                      revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                      local_files_only: bool | None = None, token: str | bool | None = None,
                      add_prefix_space: bool | None = None, **overrides) -> "LukeTokenizer":
    """Reads the classic HF layout, the transformers 5 layout or a luke-jax checkpoint dir.

    `add_prefix_space` (byte-level BPE, as transformers' LukeTokenizer takes it): encode the
    text as if it began with a space, so a first word gets the ids it has inside a sentence;
    None keeps the tokenizer's own setting. SentencePiece (mLUKE) marks every word start
    already and ignores it, as transformers' MLukeTokenizer does.

    `id_or_path` may also be a Hub id (`studio-ousia/luke-base`): its tokenizer files are read
    from the Hugging Face cache, downloaded when missing (`revision`, `cache_dir`,
    `local_files_only`, `token`: see `luke_jax.hub.resolve`).
    """
    from luke_jax import hub  # pylint: disable=g-import-not-at-top
    # weights=False: a tokenizer needs none of the (large) weight files.
    directory = hub.resolve(id_or_path, revision=revision, cache_dir=cache_dir,
                            local_files_only=local_files_only, token=token, weights=False)
    config = _read_json(directory / "tokenizer_config.json")
    special_map = _read_json(directory / "special_tokens_map.json")
    for key, value in special_map.items():
      config.setdefault(key, value)
    if add_prefix_space is not None:
      config["add_prefix_space"] = bool(add_prefix_space)
    if (directory / "sentencepiece.bpe.model").exists():
      pieces = backends.sentencepiece_from_file(directory / "sentencepiece.bpe.model", config)
    elif (directory / "vocab.json").exists() and (directory / "merges.txt").exists():
      pieces = backends.bpe_from_files(directory / "vocab.json", directory / "merges.txt", config,
                                       directory / "added_tokens.json")
    elif (directory / "vocab.txt").exists():  # BERT's (the official entity-disambiguation model)
      pieces = wordpiece.from_vocab_file(directory / "vocab.txt", config,
                                         directory / "added_tokens.json")
    elif (directory / "tokenizer.json").exists():
      if wordpiece.is_wordpiece_json(directory / "tokenizer.json"):
        pieces = wordpiece.from_tokenizer_json(directory / "tokenizer.json", config)
      else:
        pieces = backends.from_tokenizer_json(directory / "tokenizer.json", config)
    else:
      raise FileNotFoundError(f"{directory}: no tokenizer files (sentencepiece.bpe.model, "
                              "vocab.json + merges.txt, vocab.txt, or tokenizer.json)")
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
    if self.word_pieces.kind == "wordpiece":
      # BERT's own layout, which transformers' BertTokenizer reads too.
      config.update(self.word_pieces.config())
      self.word_pieces.save(directory)
    elif self.word_pieces.kind == "sentencepiece":
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
    if text_pair is not None and add_special_tokens and self.word_pieces.kind == "wordpiece":
      raise ValueError("text pairs are laid out as RoBERTa's <s> A </s></s> B </s>; BERT's "
                       "[CLS] A [SEP] B [SEP] is not implemented (encode each text alone, or "
                       "pass add_special_tokens=False)")
    if self.task is not None and entity_spans is None:
      raise ValueError(f"task {self.task} needs entity_spans")
    strategy = _truncation_strategy(truncation)
    if strategy != "do_not_truncate" and max_length is None:
      max_length = None if self.model_max_length >= _HUGE else self.model_max_length
      if max_length is None:
        strategy = "do_not_truncate"  # as transformers: nothing to truncate to
    if return_overflowing_tokens and (max_length is None or strategy == "do_not_truncate"):
      raise ValueError("return_overflowing_tokens needs truncation and a max_length")
    call = _Call(
        n=n, pair=text_pair is not None,
        with_entities=entity_spans is not None or entity_spans_pair is not None,
        add_special_tokens=add_special_tokens, strategy=strategy, max_length=max_length,
        max_entity_length=max_entity_length,
        entity_limit=max_entity_length or self.max_entity_length,
        mention=max_mention_length or self.max_mention_length, stride=stride,
        overflow=return_overflowing_tokens, offsets=return_offsets_mapping,
        token_types=bool(return_token_type_ids), attention_mask=return_attention_mask,
        padding=_padding_strategy(padding), pad_to_multiple_of=pad_to_multiple_of,
        left=(padding_side or self.padding_side) == "left",
        as_numpy=return_tensors in ("np", "jax"), many=batched or return_overflowing_tokens)
    # Sides: every first text, then every pair text.
    texts = list(text) + (list(text_pair) if text_pair is not None else [])
    spans = _per_side(entity_spans, entity_spans_pair, n, call.pair)
    titles = _per_side(entities, entities_pair, n, call.pair)
    out, lengths, sample_map = self._encode(texts, spans, titles, call)
    if return_overflowing_tokens:
      out["overflow_to_sample_mapping"] = sample_map
    if return_length:
      out["length"] = lengths
    if not call.many:
      out = {k: v[0] for k, v in out.items()}
    return _as_tensors(out, return_tensors, call.many)

  # The batch size from which calls were once encoded column-wise (every call is now); the
  # parity tests still size their batched cases with it.
  _COLUMNS_FROM = 24

  def _encode(self, texts: list[str], spans: list, titles: list, call: "_Call"):
    """Every step over all sides of the call at once (see `batch`)."""
    n = call.n
    ents = entity_inputs.collect(texts, spans, titles, n, self.task, self.entity_vocab,
                                 self.entity_mask_token_id, self.entity_mask2_token_id)
    texts = batch.Texts(texts)
    cuts = batch.segment(texts, ents)
    tokens, cut_tok = batch.encode(self.word_pieces, texts, cuts, call.offsets)
    ents.start, ents.end = cut_tok[cuts.of_start], cut_tok[cuts.of_end]
    if self.task in ("entity_classification", "entity_pair_classification"):
      tokens = self._insert_markers(tokens, ents, n)
    if call.overflow:
      kept = rows.window_rows(tokens, ents, n, call.pair, call.max_length, call.stride,
                              call.strategy, self._num_specials(call.pair,
                                                                call.add_special_tokens))
    else:
      kept = rows.example_rows(tokens, ents, n, call.pair)
    layout = rows.assemble(
        tokens, ents, kept, add_special_tokens=call.add_special_tokens,
        with_entities=call.with_entities, strategy=call.strategy, max_length=call.max_length,
        entity_limit=call.entity_limit, side=self.truncation_side)
    lengths, counts = layout.length.tolist(), layout.entity_count.tolist()
    pad = self._padding(lengths, counts, call)
    if pad is None and call.as_numpy and _uniform(lengths, counts, call.with_entities):
      pad = outputs.Padding(lengths[0], counts[0], False)  # arrays as they are
    out = outputs.outputs(
        tokens, ents, layout, self._specials(), add_special_tokens=call.add_special_tokens,
        with_entities=call.with_entities,
        span_positions=self.task == "entity_span_classification",
        token_types=call.token_types, offsets=call.offsets,
        attention_mask=call.attention_mask, mention_length=call.mention,
        padding=pad, as_numpy=call.as_numpy and pad is not None)
    return out, lengths, kept.example.tolist()

  def _insert_markers(self, tokens: batch.Tokens, ents: batch.Entities, n: int) -> batch.Tokens:
    """`<ent>` (and `<ent2>`) around the mentions of the classification tasks.

    Inserted one at a time in the reference's order, at the reference's indices; mention spans
    then cover their markers (the reference's arithmetic).
    """
    markers = self._markers()
    if self.task == "entity_classification":
      start, end = ents.start[:n], ents.end[:n]
      pos = np.empty((n, 2), np.int64)
      pos[:, 0], pos[:, 1] = end, start
      ents.end[:n] = end + 2
      return batch.insert_markers(tokens, n, pos, markers.single.repeat(n, axis=0),
                                  (True, False))
    # Each example's head and tail, as columns (views: the updates below write through).
    starts, ends = ents.start[:2 * n].reshape(n, 2), ents.end[:2 * n].reshape(n, 2)
    edges = np.concatenate([ends, starts], axis=1)  # head end, tail end, head start, tail start
    head_first = (starts[:, 0] < starts[:, 1])[:, None]
    # The later mention first: its end, then its start.
    pos = np.where(head_first, edges[:, _TAIL_THEN_HEAD], edges[:, _HEAD_THEN_TAIL])
    value = np.where(head_first, markers.tail_then_head, markers.head_then_tail)
    starts += np.where(head_first, _START_SHIFT, _START_SHIFT[::-1])
    ends += np.where(head_first, _END_SHIFT, _END_SHIFT[::-1])
    return batch.insert_markers(tokens, n, pos, value, (True, False, True, False))

  def _specials(self) -> outputs.Specials:
    """The special ids every call writes, looked up once (each lookup asks the backend)."""
    if self._special_ids is None:
      self._special_ids = outputs.Specials(self.cls_token_id, self.sep_token_id,
                                           self.pad_token_id, self.entity_pad_token_id)
    return self._special_ids

  def _markers(self) -> "_Markers":
    """`<ent>` and `<ent2>` in the orders they are inserted in, looked up once."""
    if self._marker_ids is None:
      m1, m2 = self.entity_1_token_id, self.entity_2_token_id
      self._marker_ids = _Markers(np.array([[m1, m1]]), np.array([m2, m2, m1, m1]),
                                  np.array([m1, m1, m2, m2]))
    return self._marker_ids

  def _padding(self, lengths: list[int], counts: list[int], call: "_Call"
               ) -> outputs.Padding | None:
    """The lengths to pad to, as transformers chooses them; None for no padding."""
    if call.padding == "do_not_pad":
      return None
    if call.padding == "longest":
      target = max(lengths) if call.many else lengths[0]
      entity_target = 0
      if call.with_entities:
        entity_target = max(counts, default=0) if call.many else counts[0]
    else:
      max_length = call.max_length
      if max_length is None:
        max_length = None if self.model_max_length >= _HUGE else self.model_max_length
      if max_length is None:
        return None  # transformers: nothing to pad to
      target = max_length
      # transformers pads a batch to the tokenizer's own entity length, one example to the
      # length asked for.
      entity_target = (self.max_entity_length if call.many
                       else (call.max_entity_length or self.max_entity_length))
    return outputs.Padding(_round_up(target, call.pad_to_multiple_of),
                           _round_up(entity_target, call.pad_to_multiple_of), call.left)

  def _num_specials(self, pair: bool, add_special_tokens: bool) -> int:
    return (4 if pair else 2) if add_special_tokens else 0

# Columns of `[head end, tail end, head start, tail start]` in the order the reference inserts
# the markers of an entity pair, and how far the head's and the tail's start and end move when
# the head comes first (the other way round otherwise).
_TAIL_THEN_HEAD = np.array([1, 3, 0, 2])
_HEAD_THEN_TAIL = np.array([0, 2, 1, 3])
_START_SHIFT = np.array([0, 2])
_END_SHIFT = np.array([2, 4])


@dataclasses.dataclass
class _Markers:
  """Marker ids per insertion step: one entity, an entity pair tail first or head first."""
  single: np.ndarray  # [1, 2]
  tail_then_head: np.ndarray  # [4]
  head_then_tail: np.ndarray  # [4]


def _read_json(path: Path) -> dict:
  if not path.exists():
    return {}
  try:
    return json.loads(path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None


@dataclasses.dataclass(slots=True)
class _Call:
  """One call's options, resolved as transformers resolves them."""
  n: int  # examples
  pair: bool  # text pairs given
  with_entities: bool  # entity inputs asked for (spans given)
  add_special_tokens: bool
  strategy: str  # truncation strategy
  max_length: int | None
  max_entity_length: int | None  # as asked
  entity_limit: int  # what entity truncation keeps
  mention: int  # max_mention_length
  stride: int
  overflow: bool  # windows
  offsets: bool
  token_types: bool
  attention_mask: bool
  padding: str  # padding strategy
  pad_to_multiple_of: int | None
  left: bool  # padding side
  as_numpy: bool
  many: bool  # a batch (or windows) rather than one example


def _per_side(values, pair_values, n: int, pair: bool) -> list:
  """One item of a per-example argument (spans, titles) per side; None where not given."""
  first = [None] * n if values is None else list(values)
  if not pair:
    return first
  return first + ([None] * n if pair_values is None else list(pair_values))


def _round_up(n: int, multiple: int | None) -> int:
  if multiple and n % multiple:
    return (n // multiple + 1) * multiple
  return n


def _uniform(lengths: list[int], counts: list[int], with_entities: bool) -> bool:
  """Rows of one length (and one non-zero entity count): arrays need no padding."""
  return (bool(lengths) and lengths[0] > 0 and lengths.count(lengths[0]) == len(lengths)
          and (not with_entities or (counts[0] > 0
                                     and counts.count(counts[0]) == len(counts))))


def _is_batched(text, is_split_into_words: bool) -> bool:
  if is_split_into_words:
    return bool(text) and isinstance(text[0], (list, tuple))
  if isinstance(text, str):
    return False
  if isinstance(text, (list, tuple)):
    return True
  raise ValueError(f"text must be a string or a list of strings, got {type(text).__name__}")


def _join_words(examples, spans, which):
  """Pre-split words -> text joined by spaces; word-index spans -> character spans."""
  texts, char_spans = [], []
  for i, words in enumerate(examples):
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
  if return_tensors not in ("np", "jax"):
    raise ValueError(f"return_tensors={return_tensors!r}: luke-jax returns 'np' (numpy) or "
                     "'jax' arrays")
  arrays = {}
  for key, value in out.items():
    try:
      arrays[key] = np.asarray(value if batched else [value], dtype=np.int64)
    except ValueError:
      raise ValueError(f"cannot make a rectangular array of {key!r}; pass padding=True") from None
  if return_tensors == "jax":
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top  (numpy users need no JAX)
    # int32: JAX's default integer width (int64 needs jax_enable_x64); ids and offsets fit.
    arrays = {k: jnp.asarray(v.astype(np.int32)) for k, v in arrays.items()}
  return BatchEncoding(arrays)
