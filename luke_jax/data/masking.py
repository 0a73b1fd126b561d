"""Word and entity masking for LUKE pretraining, as the reference batch generator.

Input is one pretraining example (see `luke_jax.data` readers), a dict of numpy arrays:

  word_ids             int32 [n_words]                       without <s> / </s>
  entity_ids           int32 [n_entities]
  entity_position_ids  int32 [n_entities, mention_length]     -1 padded, 0-based in word_ids
  page_id              int64 []

Output is fixed-shape (padded to `max_seq_length` / `max_entity_length`) with the masked
positions gathered into static buffers, so the loss computes logits only where they are needed
(the reference uses `masked_select`; HF's `LukeForMaskedLM` scores every position):

  input_ids, attention_mask                   [max_seq_length]
  entity_ids, entity_attention_mask           [max_entity_length]
  entity_position_ids                         [max_entity_length, max_mention_length]  (+1 for <s>)
  mlm_positions, mlm_labels, mlm_weights      [max_masked_words]      0 padded, weight 1/0
  mep_positions, mep_labels, mep_weights      [max_masked_entities]   0 padded, weight 1/0
  page_id                                     []

Every array is int32 (page ids fit: the largest Wikipedia ids are below 2**31).

The rules are the reference's (github.com/studio-ousia/luke, `luke/pretraining/batch_generator.py`
with its command-line defaults): `max(1, round(0.15 n))` of the n entities, chosen in random
order, become `[MASK]` (random and unchanged entity replacements default to 0%), labelled with
their original ids; of the n word tokens, whole words (by default) are visited in random order
and masked until `max(1, round(0.15 n))` tokens are, skipping any that would overflow that
budget, each becoming `<mask>` 80%, a random id 10% and unchanged 10% of the time. Details and
choices:

* Randomness comes only from the `np.random.Generator` given per example, so an example's
  masking is a pure function of (example, config, generator state). Each example draws a
  fixed block: a uniform sort key per entity and per word start (sorting them gives the
  reference's random permutation), one uniform per entity, word start and mention (the
  reference's `random.random()` per masked item) and, when their probability is non-zero,
  a replacement id per slot. The distribution is the reference's; the stream is not
  `random`'s. Fixed-size draws let `mask_batch` run the reference's loops as numpy over the
  batch.
* The "nothing masked" fallback masks one index drawn from `[1, n_words - 2]` exactly as the
  reference code (`random.randint(1, word_ids.size - 2)`, i.e. never the last two words); for
  fewer than 3 words, where the reference would raise, it draws from `[1, n_words]`.
* With `mask_words_in_entity_span`, a word position shared by two masked mentions is masked
  (and counted) once, so its label is always the original id.
* If more positions are masked than a gathered buffer holds (only possible with a cap set below
  the default bound), the ones at the highest positions are left unmasked, so no input is
  corrupted without a label.
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from typing import Mapping, Sequence

import numpy as np

OUTPUT_KEYS = ("input_ids", "attention_mask", "entity_ids", "entity_position_ids",
               "entity_attention_mask", "mlm_positions", "mlm_labels", "mlm_weights",
               "mep_positions", "mep_labels", "mep_weights", "page_id")


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


@dataclasses.dataclass(frozen=True, kw_only=True)
class MaskingConfig:
  """Masking hyper-parameters (reference CLI defaults) and the special ids.

  Attributes:
    cls_id, sep_id, pad_id, mask_id: word ids of `<s>`, `</s>`, `<pad>`, `<mask>`.
    vocab_size: the tokenizer's base vocabulary size (reference `tokenizer.vocab_size`, i.e.
      without added tokens such as `<ent>`); random replacements are drawn from
      `[pad_id + 1, vocab_size - 1]`.
    entity_mask_id: `[MASK]` entity id; random entity replacements are drawn from
      `[entity_mask_id + 1, entity_vocab_size - 1]`.
    entity_vocab_size: size of the entity vocabulary.
    entity_pad_id: entity id of padding slots (the reference pads with 0, `[PAD]` in the
      full vocabularies).
    max_masked_words: size of the gathered MLM buffers. Default: the largest number of
      positions the rules can mask, so nothing is ever truncated: `max(1, ceil((max_seq_length
      - 2) * masked_lm_prob))`, or `max_seq_length - 2` with `mask_words_in_entity_span`
      (masked mentions may cover any word), rounded up to a multiple of 8 for accelerator
      tiling: 80 for 512 at 15% (512 with entity spans; lower it to trade exactness for
      loss compute).
    max_masked_entities: size of the gathered entity buffers. Default:
      `max(1, ceil(max_entity_length * masked_entity_prob))` rounded up to a multiple of 8
      (24 for 128 at 15%), which never truncates.
  """

  cls_id: int
  sep_id: int
  pad_id: int
  mask_id: int
  vocab_size: int
  entity_mask_id: int
  entity_vocab_size: int
  entity_pad_id: int = 0
  max_seq_length: int = 512
  max_entity_length: int = 128
  max_mention_length: int = 30
  masked_lm_prob: float = 0.15
  masked_entity_prob: float = 0.15
  whole_word_masking: bool = True
  random_word_prob: float = 0.1
  unmasked_word_prob: float = 0.1
  random_entity_prob: float = 0.0
  unmasked_entity_prob: float = 0.0
  mask_words_in_entity_span: bool = False
  max_masked_words: int | None = None
  max_masked_entities: int | None = None

  def __post_init__(self):
    for name in ("masked_lm_prob", "masked_entity_prob", "random_word_prob",
                 "unmasked_word_prob", "random_entity_prob", "unmasked_entity_prob"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"MaskingConfig.{name}={getattr(self, name)} is not in [0, 1]")
    if self.random_word_prob + self.unmasked_word_prob > 1.0:
      raise ValueError("random_word_prob + unmasked_word_prob exceeds 1")
    if self.random_entity_prob + self.unmasked_entity_prob > 1.0:
      raise ValueError("random_entity_prob + unmasked_entity_prob exceeds 1")
    if self.max_seq_length < 3 or self.max_entity_length < 1 or self.max_mention_length < 1:
      raise ValueError("max_seq_length must be >= 3 and the entity lengths >= 1")
    if self.random_word_prob > 0 and self.vocab_size <= self.pad_id + 1:
      raise ValueError(f"vocab_size={self.vocab_size} leaves no random word ids above "
                       f"pad_id={self.pad_id}")
    if self.random_entity_prob > 0 and self.entity_vocab_size <= self.entity_mask_id + 1:
      raise ValueError(f"entity_vocab_size={self.entity_vocab_size} leaves no random entity ids "
                       f"above entity_mask_id={self.entity_mask_id}")
    # Frozen dataclass: resolved defaults are written once, here.
    if self.max_masked_words is None:
      bound = max(1, math.ceil((self.max_seq_length - 2) * self.masked_lm_prob))
      if self.mask_words_in_entity_span:
        bound = self.max_seq_length - 2
      object.__setattr__(self, "max_masked_words", _round_up(bound, 8))
    if self.max_masked_entities is None:
      bound = max(1, math.ceil(self.max_entity_length * self.masked_entity_prob))
      object.__setattr__(self, "max_masked_entities", _round_up(bound, 8))
    if self.max_masked_words < 1 or self.max_masked_entities < 1:
      raise ValueError("max_masked_words and max_masked_entities must be >= 1")

  def output_shapes(self) -> dict[str, tuple[int, ...]]:
    """Shape of every output array of one example (prepend the batch size for batches)."""
    s, e, m = self.max_seq_length, self.max_entity_length, self.max_mention_length
    w, k = self.max_masked_words, self.max_masked_entities
    return dict(input_ids=(s,), attention_mask=(s,), entity_ids=(e,),
                entity_position_ids=(e, m), entity_attention_mask=(e,), mlm_positions=(w,),
                mlm_labels=(w,), mlm_weights=(w,), mep_positions=(k,), mep_labels=(k,),
                mep_weights=(k,), page_id=())


def _is_punctuation(char: str) -> bool:
  """BERT's punctuation test, as the reference (ASCII symbols count as punctuation too)."""
  cp = ord(char)
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(char).startswith("P")


def word_start_table(tokens: Sequence[str | None], scheme: str) -> np.ndarray:
  """`is_word_start` for `mask_example`: which vocabulary ids begin a word.

  Args:
    tokens: the token string of every id, in id order (e.g. `id_to_token(i)` for `i` in
      `range(len(vocab))`); `None` for unused ids counts as a word start.
    scheme: `"bpe"` for RoBERTa's byte-level BPE (raw tokens: a token starts a word if it
      decodes to a leading space, i.e. starts with `Ġ`, or its first character is
      punctuation, as the reference's `_is_subword`); `"sentencepiece"` (starts with `▁`);
      `"wordpiece"` (does not start with `##`).

  Returns:
    bool [len(tokens)].
  """
  if scheme == "bpe":
    # Byte-level BPE maps the space byte to "Ġ" and printable ASCII to itself, so the raw
    # token answers both of the reference's questions without decoding.
    test = lambda t: t.startswith("\u0120") or _is_punctuation(t[0])
  elif scheme == "sentencepiece":
    test = lambda t: t.startswith("\u2581")
  elif scheme == "wordpiece":
    test = lambda t: not t.startswith("##")
  else:
    raise ValueError(f"scheme must be 'bpe', 'sentencepiece' or 'wordpiece', not {scheme!r}")
  return np.array([True if not t else test(t) for t in tokens], dtype=bool)


def mask_example(example: Mapping[str, np.ndarray], config: MaskingConfig,
                 is_word_start: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Masks one example; see the module docstring for the input and output layout.

  Args:
    example: `word_ids`, `entity_ids`, `entity_position_ids` (`[n_entities, m]` with
      `m <= max_mention_length`, or flattened), `page_id`.
    config: lengths, rates and special ids.
    is_word_start: bool [vocab], from `word_start_table`; ignored without whole-word masking.
    rng: the only source of randomness.

  Returns:
    The fixed-shape int32 arrays listed in `OUTPUT_KEYS`; equal to row 0 of
    `mask_batch([example], config, is_word_start, [rng])`.
  """
  return {k: v[0] for k, v in mask_batch([example], config, is_word_start, [rng]).items()}


def mask_batch(examples: Sequence[Mapping[str, np.ndarray]], config: MaskingConfig,
               is_word_start: np.ndarray,
               rngs: Sequence[np.random.Generator]) -> dict[str, np.ndarray]:
  """Masks a batch, example `i` with `rngs[i]` alone, so each row equals `mask_example`.

  The per-example work is only copying the example into padded arrays and one or two draws of
  a fixed number of random values; the reference's loops run as numpy over the whole batch.

  Args:
    examples: as `mask_example`.
    config: lengths, rates and special ids.
    is_word_start: bool [vocab], from `word_start_table`.
    rngs: one generator per example.

  Returns:
    `OUTPUT_KEYS` arrays with a leading batch dimension `len(examples)`.
  """
  if len(examples) != len(rngs):
    raise ValueError(f"{len(examples)} examples but {len(rngs)} generators")
  is_word_start = np.asarray(is_word_start, bool)
  inputs = _stack(examples, config)
  if inputs["words"].size and inputs["words"].max() >= is_word_start.shape[0]:
    raise ValueError(f"word id {inputs['words'].max()} is outside is_word_start "
                     f"({is_word_start.shape[0]} ids)")
  draws = _draw(rngs, config)
  return _mask(inputs, draws, config, is_word_start)


# ---- internals ---------------------------------------------------------------------------

_MASK, _RANDOM, _KEEP = 0, 1, 2


def _draw_layout(config: MaskingConfig) -> dict[str, slice]:
  """Columns of the uniform draws each example consumes (a fixed count, so rows stack)."""
  e, s = config.max_entity_length, config.max_seq_length - 2
  sizes = dict(entity_key=e, entity_kind=e, mention_kind=e, word_key=s, word_kind=s, fallback=1)
  layout, start = {}, 0
  for name, size in sizes.items():
    layout[name] = slice(start, start + size)
    start += size
  return layout


def _draw(rngs: Sequence[np.random.Generator],
          config: MaskingConfig) -> dict[str, np.ndarray | None]:
  """Every random number of the batch, row `i` from `rngs[i]`.

  A random key per entity / word start sorts into the reference's random permutation; one
  uniform per entity / word / mention is the reference's `random.random()`; replacement ids
  are drawn per slot up front (only when their probability is non-zero).
  """
  layout = _draw_layout(config)
  batch, width = len(rngs), max(s.stop for s in layout.values())
  uniforms = np.empty((batch, width))
  words = config.masked_lm_prob > 0 and config.random_word_prob > 0
  entities = config.masked_entity_prob > 0 and config.random_entity_prob > 0
  word_ids, entity_ids = [], []
  for row, rng in enumerate(rngs):
    rng.random(out=uniforms[row])
    if words:
      word_ids.append(rng.integers(config.pad_id + 1, config.vocab_size,
                                   config.max_seq_length - 2, dtype=np.int32))
    if entities:
      entity_ids.append(rng.integers(config.entity_mask_id + 1, config.entity_vocab_size,
                                     config.max_entity_length, dtype=np.int32))
  draws = {name: uniforms[:, cols] for name, cols in layout.items()}
  draws["word_ids"] = np.stack(word_ids) if words else None
  draws["entity_ids"] = np.stack(entity_ids) if entities else None
  return draws


def _stack(examples: Sequence[Mapping[str, np.ndarray]],
           config: MaskingConfig) -> dict[str, np.ndarray]:
  """Examples padded into `[B, max_seq_length - 2]` / `[B, max_entity_length(, mention)]`.

  Mention positions are already shifted for <s> (only the real ones: most of the array is
  padding, and this is the largest output).
  """
  batch = len(examples)
  s, e, m = config.max_seq_length - 2, config.max_entity_length, config.max_mention_length
  words = np.zeros((batch, s), np.int32)
  n_words = np.zeros(batch, np.int64)
  entities = np.full((batch, e), config.entity_pad_id, np.int32)
  n_entities = np.zeros(batch, np.int64)
  positions = np.full((batch, e, m), -1, np.int32)
  page_ids = np.zeros(batch, np.int32)
  for row, example in enumerate(examples):
    word_ids = np.asarray(example["word_ids"])
    entity_ids = np.asarray(example["entity_ids"])
    n, k = word_ids.shape[0], entity_ids.shape[0]
    if n > s:
      raise ValueError(f"example {row}: {n} words + <s>, </s> exceed "
                       f"max_seq_length={config.max_seq_length}")
    if k > e:
      raise ValueError(f"example {row}: {k} entities exceed "
                       f"max_entity_length={config.max_entity_length}")
    words[row, :n] = word_ids
    entities[row, :k] = entity_ids
    n_words[row], n_entities[row] = n, k
    if k:
      spans = np.asarray(example["entity_position_ids"]).reshape(k, -1)
      if spans.shape[1] > m:
        raise ValueError(f"example {row}: mentions of {spans.shape[1]} positions exceed "
                         f"max_mention_length={m}")
      if spans.size and spans.max() >= n:
        raise ValueError(f"example {row}: entity position {spans.max()} is beyond its {n} words")
      positions[row, :k, :spans.shape[1]] = spans + (spans != -1)  # +1 for <s>
    page_ids[row] = int(example["page_id"])
  return dict(words=words, n_words=n_words, entities=entities, n_entities=n_entities,
              positions=positions, page_ids=page_ids)


def _replacement_kind(draws: np.ndarray, random_prob: float, unmasked_prob: float) -> np.ndarray:
  """The reference's `p < 1 - rand - keep -> [MASK]; p < 1 - keep -> random; else keep`."""
  kind = np.full(draws.shape, _KEEP, np.int8)
  kind[draws < 1.0 - unmasked_prob] = _RANDOM
  kind[draws < 1.0 - random_prob - unmasked_prob] = _MASK
  return kind


def _num_to_predict(n: np.ndarray, prob: float) -> np.ndarray:
  """`max(1, int(round(n * prob)))` for `n > 0`, else 0 (np.rint also rounds half to even)."""
  return np.where(n > 0, np.maximum(1, np.rint(n * prob)), 0).astype(np.int64)


def _rank(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per row: the visiting order (argsort of the keys) and each column's place in it."""
  order = np.argsort(keys, axis=1)
  rank = np.empty_like(order)
  np.put_along_axis(rank, order, np.broadcast_to(np.arange(keys.shape[1]), keys.shape), axis=1)
  return order, rank


def _greedy_fill(lengths: np.ndarray, candidate: np.ndarray, room: np.ndarray) -> np.ndarray:
  """Which words the reference's loop takes, for every row at once.

  The loop visits words in order, skips one longer than the remaining room and stops when the
  room is exactly used. The room only shrinks, so a skipped word is never taken later; up to
  the first word that overflows, every eligible word (length <= room) fits, which is one cumsum.
  Each pass decides a row up to its first overflow and shrinks its room by at least one, so a
  few passes suffice (the room left after the first pass is below the longest word).

  Args:
    lengths: [B, N] word lengths in visiting order.
    candidate: [B, N] which entries are words that may be taken.
    room: [B] positions left to mask.

  Returns:
    bool [B, N], in visiting order.
  """
  taken = np.zeros(lengths.shape, bool)
  cols = np.arange(lengths.shape[1])
  live = np.arange(lengths.shape[0])  # rows not yet decided; passes after the first are sparse
  active = candidate
  while live.size:
    eligible = active & (lengths[live] <= room[:, None])
    ends = np.cumsum(np.where(eligible, lengths[live], 0), axis=1)
    fits = eligible & (ends <= room[:, None])
    taken[live] |= fits
    room = room - np.where(fits, lengths[live], 0).sum(axis=1)
    overflow = eligible & ~fits
    more = overflow.any(axis=1)
    first = overflow[more].argmax(axis=1)
    live, room = live[more], room[more]
    active = active[more] & (cols > first[:, None])
  return taken


def _mask(inputs: dict[str, np.ndarray], draws: dict[str, np.ndarray | None],
          config: MaskingConfig, is_word_start: np.ndarray) -> dict[str, np.ndarray]:
  words, n_words = inputs["words"], inputs["n_words"]
  entities, n_entities, positions = inputs["entities"], inputs["n_entities"], inputs["positions"]
  batch, s = words.shape
  e = entities.shape[1]
  rows = np.arange(batch)
  # entity_position_ids comes shifted for <s> from _stack; the rest starts as zeros.
  out = {k: positions if k == "entity_position_ids" else np.zeros((batch,) + shape, np.int32)
         for k, shape in config.output_shapes().items()}

  # ---- entities --------------------------------------------------------------------------
  out["entity_attention_mask"][:] = np.arange(e) < n_entities[:, None]
  out["page_id"][:] = inputs["page_ids"]
  entity_ids = entities.copy()
  chosen = np.zeros((batch, e), bool)
  entity_rank = entity_order = None
  if config.masked_entity_prob > 0:
    keys = np.where(out["entity_attention_mask"] > 0, draws["entity_key"], 2.0)
    entity_order, entity_rank = _rank(keys)
    chosen = entity_rank < _num_to_predict(n_entities, config.masked_entity_prob)[:, None]
    # Only with a cap below the default bound: keep the first in position order.
    chosen &= np.cumsum(chosen, axis=1) <= config.max_masked_entities
    kind = _replacement_kind(draws["entity_kind"], config.random_entity_prob,
                             config.unmasked_entity_prob)
    entity_ids[chosen & (kind == _MASK)] = config.entity_mask_id
    if draws["entity_ids"] is not None:
      randomised = chosen & (kind == _RANDOM)
      entity_ids[randomised] = draws["entity_ids"][randomised]
    b, col = np.nonzero(chosen)
    slot = np.cumsum(chosen, axis=1)[b, col] - 1
    out["mep_positions"][b, slot] = col
    out["mep_labels"][b, slot] = entities[b, col]
    out["mep_weights"][b, slot] = 1
  out["entity_ids"][:] = entity_ids

  # ---- words -----------------------------------------------------------------------------
  cols = np.arange(s)
  valid = cols < n_words[:, None]
  masked = np.zeros((batch, s), bool)
  forced = None  # fallback positions: always <mask>, whatever the replacement rates
  kind_draw = np.zeros((batch, s))
  if config.masked_lm_prob > 0:
    if config.whole_word_masking:
      starts = is_word_start[words] & valid
      starts[:, 0] = valid[:, 0]  # the reference opens a new word when there is none yet
    else:
      starts = valid.copy()
    word_of = np.maximum.accumulate(np.where(starts, cols, 0), axis=1)  # start of each token
    next_start = np.minimum.accumulate(np.where(starts, cols, s)[:, ::-1], axis=1)[:, ::-1]
    next_start = np.concatenate([next_start[:, 1:], np.full((batch, 1), s)], axis=1)
    lengths = np.where(starts, np.minimum(next_start, n_words[:, None]) - cols, 0)

    premasked = np.zeros((batch, s), bool)
    candidate = starts
    if config.mask_words_in_entity_span and chosen.any():
      # Each masked mention's positions, with the draw of the first mention (in visiting
      # order) covering them; words touching them are no longer candidates.
      b, ent, pos = np.nonzero(chosen[:, :, None] & (positions != -1))
      token = positions[b, ent, pos] - 1  # word index
      first = np.full((batch, s), e)
      np.minimum.at(first, (b, token), entity_rank[b, ent])
      premasked = first < e
      mention = np.take_along_axis(entity_order, np.minimum(first, e - 1), axis=1)
      kind_draw = np.where(premasked, np.take_along_axis(draws["mention_kind"], mention, 1), 0.)
      blocked = np.zeros((batch, s), bool)
      pb, pt = np.nonzero(premasked)
      blocked[pb, word_of[pb, pt]] = True
      candidate = starts & ~blocked

    order = np.argsort(np.where(candidate, draws["word_key"], 2.0), axis=1)
    room = _num_to_predict(n_words, config.masked_lm_prob) - premasked.sum(axis=1)
    taken_sorted = _greedy_fill(np.take_along_axis(lengths, order, axis=1),
                                np.take_along_axis(candidate, order, axis=1), room)
    taken = np.zeros((batch, s), bool)
    np.put_along_axis(taken, order, taken_sorted, axis=1)
    by_word = np.take_along_axis(taken, word_of, axis=1) & valid
    kind_draw = np.where(by_word, np.take_along_axis(draws["word_kind"], word_of, 1), kind_draw)
    masked = premasked | by_word

    # Nothing masked (a whole-word budget no word fits): one random word, always <mask>.
    fallback = ~masked.any(axis=1) & (n_words > 0)
    if fallback.any():
      high = np.where(n_words >= 3, n_words - 2, n_words)
      token = np.floor(draws["fallback"][:, 0] * high).astype(np.int64)
      forced = np.zeros((batch, s), bool)
      forced[rows[fallback], token[fallback]] = True
      masked |= forced
    # Only with a cap below the default bound: keep the first in position order.
    masked &= np.cumsum(masked, axis=1) <= config.max_masked_words

  kind = _replacement_kind(kind_draw, config.random_word_prob, config.unmasked_word_prob)
  new_words = np.where(masked & (kind == _MASK), config.mask_id, words)
  if draws["word_ids"] is not None:
    new_words = np.where(masked & (kind == _RANDOM), draws["word_ids"], new_words)
  if forced is not None:
    new_words = np.where(forced & masked, config.mask_id, new_words)
  input_ids = out["input_ids"]
  input_ids[:] = config.pad_id
  input_ids[:, 0] = config.cls_id
  input_ids[:, 1:s + 1] = np.where(valid, new_words, config.pad_id)
  input_ids[rows, n_words + 1] = config.sep_id
  out["attention_mask"][:] = np.arange(config.max_seq_length) < (n_words + 2)[:, None]
  b, col = np.nonzero(masked)
  slot = np.cumsum(masked, axis=1)[b, col] - 1
  out["mlm_positions"][b, slot] = col + 1
  out["mlm_labels"][b, slot] = words[b, col]
  out["mlm_weights"][b, slot] = 1
  return out
