"""Documents -> fixed-shape model rows, and the rows' decoded choices -> one answer per mention.

As the reference (github.com/studio-ousia/luke `examples/entity_disambiguation/dataloader.py`):
a document is tokenised whole, `[CLS] words [SEP]` with each mention an entity slot spanning its
word pieces, its candidates the first `max_candidate_length` by prior. A document longer than
`max_seq_length - 2` pieces is split:

- "simple": into `ceil(n / budget)` windows of equal size; at evaluation a cut that would fall
  inside a mention moves left to the mention's start, so every mention is scored in exactly one
  row (the reference's test skips this for the document's first mention; here it holds for
  all). In training a mention cut in two belongs to neither window.
- "per_mention": one row per mention, the window centred on it (as much context on each side
  as the document and the budget allow, the shorter side giving its unused share to the other);
  the row's other mentions come after it as context, and only the first slot is scored.

Pieces come from the tokenizer's word-piece backend. Each stretch of words between mention
edges is tokenised with a leading space, the way the pretraining featuriser gives every word
one, so a word's pieces never depend on where the document is cut: for byte-level BPE the
pieces of the document equal those of `" " + " ".join(words)` (empty words, the CoNLL
sentence breaks, are left out of the text; BPE would make a lone space a piece).

Rows hold gold entity ids in `entity_ids`; the model's input there is chosen at decode time
(`[MASK]` for every mention) or by the training step's masking. Beyond the reference, a
window with more mentions than `max_entity_length` is not an error: "simple" repeats the
window with the next mentions, "per_mention" keeps the first ones after the scored mention.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from absl import logging
import numpy as np

from luke_jax.disambiguation.documents import Document, Mention
from luke_jax.tokenization.tokenizer import LukeTokenizer

SPLIT_MODES = ("simple", "per_mention")
UNKNOWN_CANDIDATES = ("unk", "drop")
# The arrays of `Rows.arrays`.
ARRAY_KEYS = ("input_ids", "attention_mask", "entity_ids", "entity_attention_mask",
              "entity_position_ids", "entity_candidate_ids", "eval_entity_mask", "labels")


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
  """Row sizes and options (the reference's defaults).

  Attributes:
    max_seq_length: word pieces per row, `[CLS]` and `[SEP]` included.
    max_entity_length: mentions per row.
    max_mention_length: word pieces per mention (longer mentions keep their first ones).
    max_candidate_length: candidates per mention.
    unknown_candidates: a candidate title outside the entity vocabulary becomes `[UNK]`
      ("unk", as the reference; the first such candidate stands for all of them), or is
      skipped ("drop"; then the first `max_candidate_length` known ones are kept).
  """

  max_seq_length: int = 512
  max_entity_length: int = 128
  max_mention_length: int = 30
  max_candidate_length: int = 30
  unknown_candidates: str = "unk"

  def __post_init__(self):
    for name in ("max_entity_length", "max_mention_length", "max_candidate_length"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
    if self.max_seq_length < 3:
      raise ValueError(f"max_seq_length={self.max_seq_length} must be at least 3")
    if self.unknown_candidates not in UNKNOWN_CANDIDATES:
      raise ValueError(f"unknown_candidates={self.unknown_candidates!r} not in "
                       f"{UNKNOWN_CANDIDATES}")


@dataclasses.dataclass
class Rows:
  """Featurised documents.

  Attributes:
    arrays: `input_ids`, `attention_mask` [N, L]; `entity_ids` (gold ids, `[UNK]` when unknown
      or absent; `[PAD]` in unused slots), `entity_attention_mask`, `eval_entity_mask` (the
      slots a mention is scored from), `labels` (the gold's candidate index, -1 when the gold
      is not among the candidates or not in the entity vocabulary) [N, E];
      `entity_position_ids` [N, E, M] (piece positions, -1 padded);
      `entity_candidate_ids` [N, E, C] (distinct ids in prior order, 0 padded).
    document_index: [N] the document of each row.
    slots: per row, `(document index, mention index)` of each used entity slot.
    titles: per row, per used slot, the title behind each candidate.
  """

  arrays: dict[str, np.ndarray]
  document_index: np.ndarray
  slots: list[list[tuple[int, int]]]
  titles: list[list[list[str]]]

  def __len__(self) -> int:
    return len(self.document_index)

  def predictions(self, documents: Sequence[Document], choice: np.ndarray,
                  score: np.ndarray) -> list[list["Prediction"]]:
    """See `predictions`."""
    return predictions(documents, self.slots, self.titles, self.arrays["eval_entity_mask"],
                       choice, score)


@dataclasses.dataclass
class Prediction:
  """The answer for one mention: a candidate's title (None: no candidate was scored)."""

  title: str | None
  score: float = 0.0
  candidate: int = -1


def featurize(documents: Sequence[Document], tokenizer: LukeTokenizer, config: FeatureConfig,
              *, split_mode: str = "simple", training: bool = False) -> Rows:
  """Rows of `documents` (see the module docstring).

  Args:
    split_mode: "simple" or "per_mention" (how a long document is split).
    training: keep only mentions whose gold entity is in the entity vocabulary and among their
      candidates (the reference's training filter), and let "simple" windows cut mentions.

  Raises:
    ValueError: an unknown option, or mentions out of order or overlapping (names the
      document).
  """
  if split_mode not in SPLIT_MODES:
    raise ValueError(f"document split mode {split_mode!r} not in {SPLIT_MODES}")
  vocab = tokenizer.entity_vocab
  candidates = [[_candidates(m, vocab, config) for m in doc.mentions] for doc in documents]
  kept = []
  for doc, cands in zip(documents, candidates):
    _check_order(doc)
    kept.append([i for i, m in enumerate(doc.mentions)
                 if not training or _gold_index(m, cands[i][0], vocab) >= 0])
  pieces = _tokenize(documents, kept, tokenizer)
  builder = _RowBuilder(documents, tokenizer, config, candidates)
  budget = config.max_seq_length - 2
  for d, (tokens, spans) in enumerate(pieces):
    mentions = kept[d]
    if len(tokens) <= budget:
      windows = [(0, len(tokens), list(range(len(mentions))), None)]
    elif split_mode == "simple":
      windows = [(s, e, order, None)
                 for s, e, order in _simple_windows(len(tokens), spans, budget, not training)]
    else:
      windows = [(s, e, order, 0) for s, e, order in _per_mention_windows(len(tokens), spans,
                                                                           budget)]
    for start, end, order, scored in windows:
      inside = [k for k in order if start <= spans[k][0] and spans[k][1] <= end]
      limit = config.max_entity_length
      if scored is None:
        groups = [inside[i:i + limit] for i in range(0, len(inside), limit)] or [[]]
      else:
        groups = [inside[:limit]]
      for group in groups:
        builder.add(d, tokens[start:end],
                    [(mentions[k], (spans[k][0] - start, spans[k][1] - start)) for k in group],
                    scored)
  if training:
    dropped = sum(len(doc.mentions) - len(k) for doc, k in zip(documents, kept))
    if dropped:
      logging.info("training: %d of %d mentions left out (gold entity unknown to the entity "
                   "vocabulary or not among the first %d candidates)", dropped,
                   sum(len(doc.mentions) for doc in documents), config.max_candidate_length)
  return builder.build()


def predictions(documents: Sequence[Document], slots: Sequence[Sequence[tuple[int, int]]],
                titles: Sequence[Sequence[Sequence[str]]], eval_entity_mask: np.ndarray,
                choice: np.ndarray, score: np.ndarray) -> list[list[Prediction]]:
  """One `Prediction` per mention of `documents` from decoded rows.

  Args:
    slots, titles: `Rows.slots` and `Rows.titles`.
    eval_entity_mask: [N, E]; a mention's answer is read at its scored slot.
    choice, score: [N, E] (`luke_jax.disambiguation.decode`; extra trailing slots ignored).

  Returns:
    Per document, per mention; a mention no row scores gets `Prediction(None)`.
  """
  out = [[Prediction(None) for _ in doc.mentions] for doc in documents]
  for row, row_slots in enumerate(slots):
    for slot, (d, m) in enumerate(row_slots):
      c = int(choice[row, slot])
      if eval_entity_mask[row, slot] and c >= 0:
        out[d][m] = Prediction(titles[row][slot][c], float(score[row, slot]), c)
  return out


# ---- candidates -----------------------------------------------------------------------------


def _candidates(mention: Mention, vocab, config: FeatureConfig) -> tuple[list[int], list[str]]:
  """Distinct candidate entity ids in prior order, and the title behind each."""
  unk = vocab.unk_id
  pool = mention.candidates
  if config.unknown_candidates == "unk":
    pool = pool[:config.max_candidate_length]
  ids, titles, seen = [], [], set()
  for candidate in pool:
    idx = vocab.get_id(candidate.title, default=unk)
    if config.unknown_candidates == "drop" and idx == unk:
      continue
    # Id 0 is "no candidate" to the model (the reference's padding); a title there (only a
    # special entity could be) cannot be scored.
    if idx in seen or idx <= 0:
      continue
    seen.add(idx)
    ids.append(idx)
    titles.append(candidate.title)
    if len(ids) == config.max_candidate_length:
      break
  return ids, titles


def _gold_index(mention: Mention, candidate_ids: list[int], vocab) -> int:
  """The gold's position among the candidate ids; -1 when unknown or not there."""
  if mention.title is None or not vocab.contains(mention.title):
    return -1
  gold = vocab.get_id(mention.title)
  return candidate_ids.index(gold) if gold in candidate_ids else -1


def _check_order(doc: Document) -> None:
  end = 0
  for mention in doc.mentions:
    if not end <= mention.start < mention.end <= len(doc.words):
      raise ValueError(f"document {doc.id!r}: mention {mention.text!r} at words "
                       f"[{mention.start}, {mention.end}) overlaps the previous one, comes "
                       f"before it, is empty or lies outside the {len(doc.words)} words")
    end = mention.end


# ---- word pieces ----------------------------------------------------------------------------


def _tokenize(documents: Sequence[Document], kept: list[list[int]], tokenizer: LukeTokenizer
              ) -> list[tuple[list[int], list[tuple[int, int]]]]:
  """Per document: its piece ids and each kept mention's piece span; one batched encoding of
  every stretch of words between mention edges."""
  texts = []
  for doc, mentions in zip(documents, kept):
    cur = 0
    for k in mentions:
      mention = doc.mentions[k]
      texts.append(_text(doc.words[cur:mention.start]))
      texts.append(_text(doc.words[mention.start:mention.end]))
      cur = mention.end
    texts.append(_text(doc.words[cur:]))
  nonempty = [t for t in texts if t]
  encoded = iter(tokenizer.word_pieces.encode_batch(nonempty))
  ids = [list(next(encoded)) if t else [] for t in texts]
  out, k = [], 0
  for mentions in kept:
    tokens, spans = [], []
    for _ in mentions:
      tokens += ids[k]
      start = len(tokens)
      tokens += ids[k + 1]
      spans.append((start, len(tokens)))
      k += 2
    tokens += ids[k]
    k += 1
    out.append((tokens, spans))
  return out


def _text(words: Sequence[str]) -> str:
  """The words as one text with a leading space, "" for none (see the module docstring)."""
  words = [w for w in words if w.strip()]
  return " " + " ".join(words) if words else ""


# ---- windows --------------------------------------------------------------------------------


def _simple_windows(n: int, spans: list[tuple[int, int]], budget: int, keep_mentions: bool):
  """`(start, end, mention order)` of equal windows; with `keep_mentions` a cut inside a
  mention moves to its start (unless the mention alone fills the window)."""
  inside = np.full(n, -1)
  for k, (s, e) in enumerate(spans):
    inside[s:e] = k
  size = math.ceil(n / math.ceil(n / budget))
  order = list(range(len(spans)))
  start = 0
  while start < n:
    end = min(n, start + size)
    if keep_mentions:
      cut = end
      while start < cut < n and inside[cut - 1] >= 0 and inside[cut - 1] == inside[cut]:
        cut -= 1
      if cut > start:  # else one mention outgrows the window: it is cut (and lost) after all
        end = cut
    yield start, end, order
    start = end


def _per_mention_windows(n: int, spans: list[tuple[int, int]], budget: int):
  """`(start, end, mention order)` centred on each mention, that mention first."""
  for k, (s, e) in enumerate(spans):
    left, right, length = s, n - e, e - s
    half = max(0, (budget - length) // 2)
    if left < right:
      left_context = min(left, half)
      right_context = min(right, max(0, budget - left_context - length))
    else:
      right_context = min(right, half)
      left_context = min(left, max(0, budget - right_context - length))
    yield s - left_context, e + right_context, [k] + [j for j in range(len(spans)) if j != k]


# ---- arrays ---------------------------------------------------------------------------------


class _RowBuilder:
  """Collects rows, then packs them into padded arrays."""

  def __init__(self, documents: Sequence[Document], tokenizer: LukeTokenizer,
               config: FeatureConfig, candidates):
    self.documents, self.config, self.candidates = documents, config, candidates
    self.specials = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    self.vocab = tokenizer.entity_vocab
    self.entity_pad = tokenizer.entity_pad_token_id
    # Per row: document, pieces, `(mention index, piece span in the row)` per slot, scored slot.
    self.rows: list[tuple[int, list[int], list[tuple[int, tuple[int, int]]], int | None]] = []

  def add(self, d: int, tokens: list[int], mentions: list[tuple[int, tuple[int, int]]],
          scored: int | None) -> None:
    """One row of document `d`; `scored` is the only scored slot, or None for all."""
    self.rows.append((d, tokens, mentions, scored))

  def build(self) -> Rows:
    c = self.config
    n, L, E, M, C = (len(self.rows), c.max_seq_length, c.max_entity_length,
                     c.max_mention_length, c.max_candidate_length)
    cls, sep, pad = self.specials
    a = dict(
        input_ids=np.full((n, L), pad, np.int32),
        attention_mask=np.zeros((n, L), np.int32),
        entity_ids=np.full((n, E), self.entity_pad, np.int32),
        entity_attention_mask=np.zeros((n, E), np.int32),
        entity_position_ids=np.full((n, E, M), -1, np.int32),
        entity_candidate_ids=np.zeros((n, E, C), np.int32),
        eval_entity_mask=np.zeros((n, E), np.int32),
        labels=np.full((n, E), -1, np.int32))
    for r, (d, tokens, mentions, scored) in enumerate(self.rows):
      ids = [cls] + tokens + [sep]
      a["input_ids"][r, :len(ids)] = ids
      a["attention_mask"][r, :len(ids)] = 1
      for slot, (m, (start, end)) in enumerate(mentions):
        mention = self.documents[d].mentions[m]
        candidate_ids = self.candidates[d][m][0]
        a["entity_ids"][r, slot] = (self.vocab.unk_id if mention.title is None
                                    else self.vocab.get_id(mention.title))
        a["entity_attention_mask"][r, slot] = 1
        a["eval_entity_mask"][r, slot] = int(scored is None or slot == scored)
        positions = np.arange(start + 1, end + 1)[:M]  # +1 for [CLS]
        a["entity_position_ids"][r, slot, :len(positions)] = positions
        a["entity_candidate_ids"][r, slot, :len(candidate_ids)] = candidate_ids
        a["labels"][r, slot] = _gold_index(mention, candidate_ids, self.vocab)
    return Rows(a, np.asarray([row[0] for row in self.rows], np.int64),
                [[(d, m) for m, _ in mentions] for d, _, mentions, _ in self.rows],
                [[self.candidates[d][m][1] for m, _ in mentions]
                 for d, _, mentions, _ in self.rows])
