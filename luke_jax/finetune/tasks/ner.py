"""CoNLL-2003 named entity recognition as span classification.

The paper's recipe (Yamada et al., EMNLP 2020, arXiv:2010.01057; code: github.com/studio-ousia/luke,
`examples/legacy/ner/` and the AllenNLP `examples/ner/`).

Every word-aligned span of a sentence up to `max_mention_length` subwords becomes one `[MASK]`
entity whose mention is the span's subwords; the head classifies `[word at start; word at end;
entity]` into "O" or an entity type. Each sentence is encoded with the words around it in its
document as context, the sentence in the middle of the window (the paper's document-level
setting). Decoding keeps the highest-scoring non-overlapping spans.

Files: CoNLL columns (`token POS chunk NER`, or just `token tag`; the first and last columns are
used; every line of a file has the same number of columns, so a line that lost its tag column
is an error rather than a chunk tag read as an entity type), IOB1 or IOB2, `-DOCSTART-` lines
between documents and blank lines between sentences.
Predictions are written back as `token gold predicted` lines (conlleval's input), in the file's
tag scheme.
"""

from __future__ import annotations

import dataclasses
import math
import os
import unicodedata
from pathlib import Path
from typing import Mapping, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from luke_jax.finetune.task import DataError, Features, Task
from luke_jax.finetune.tasks import ner_metric
from luke_jax.finetune.tasks.ner_metric import Span
from luke_jax.models import losses

DOCSTART = "-DOCSTART-"
OUTSIDE = "O"
SCHEMES = ("auto", "iob1", "iob2")


@dataclasses.dataclass
class Document:
  """The sentences (lists of words) of one document, shared by its `Sentence`s for context."""
  sentences: list[list[str]]


@dataclasses.dataclass
class Sentence:
  """One sentence: the unit the task featurizes, predicts and scores.

  Attributes:
    words: the tokens of the sentence.
    tags: the gold tags as the file writes them (None for raw text).
    spans: gold entities, word `[start, end)` and type, read as seqeval reads the tags.
    document: the sentence's document; `index` is its position there.
    path: the file it comes from; `lines` holds each word's 1-based line number there.
    doc_start: the sentence opens a document that the file marks (`-DOCSTART-`).
    scheme: "iob1" or "iob2", the tag scheme predictions are written back in.
  """
  words: list[str]
  tags: list[str] | None
  spans: list[Span]
  document: Document
  index: int
  path: str
  lines: list[int]
  doc_start: bool = False
  scheme: str = "iob2"


@dataclasses.dataclass(frozen=True)
class SpanPrediction:
  """One decoded entity of a sentence.

  Attributes:
    start, end: its words `[start, end)` in the sentence.
    label: the entity type.
    logit: the label's logit, the score that ranked it in the greedy decoding.
    probability: the label's softmax probability over all classes ("O" included).
  """
  start: int
  end: int
  label: str
  logit: float
  probability: float


class NerTask(Task):
  """CoNLL-2003 NER with `LukeForEntitySpanClassification`; the metric is seqeval's span F1.

  `config.data` fields read here (besides the base ones):
    tag_scheme: "auto" (IOB1 if some `I-` tag opens an entity, else IOB2), "iob1" (either
      reading accepted) or "iob2" (an `I-` tag that opens an entity is an error).
    document_context: surround each sentence with the words of its neighbours.
  """

  name = "conll2003"
  architecture = "LukeForEntitySpanClassification"
  input_keys = ("input_ids", "attention_mask", "entity_ids", "entity_position_ids",
                "entity_attention_mask", "entity_start_positions", "entity_end_positions")
  target_keys = ("labels",)
  metric = "f1"
  prediction_suffix = ".txt"

  def __init__(self, data_config, tokenizer):
    super().__init__(data_config, tokenizer)
    self.scheme = data_config.get("tag_scheme", "auto")
    if self.scheme not in SCHEMES:
      raise ValueError(f"config.data.tag_scheme={self.scheme!r}; choose from {SCHEMES}")
    self.document_context = bool(data_config.get("document_context", True))

  # ---- data -------------------------------------------------------------------------------
  def read(self, path: str | os.PathLike, split: str) -> list[Sentence]:
    del split  # every split has gold tags in this format
    rows = _read_columns(path)
    scheme = self.scheme
    if scheme == "auto":
      scheme = "iob2"
      for sentence in _sentences(rows):
        if ner_metric.opens_with_inside([tag for _, tag, _ in sentence]) is not None:
          scheme = "iob1"
          break
    examples = []
    for doc_rows, doc_start in _documents(rows):
      document = Document([])
      for sentence in _sentences(doc_rows):
        words = [word for word, _, _ in sentence]
        tags = [tag for _, tag, _ in sentence]
        lines = [line for _, _, line in sentence]
        if self.scheme == "iob2":
          k = ner_metric.opens_with_inside(tags)
          if k is not None:
            before = tags[k - 1] if k else "the sentence start"
            raise DataError(path, lines[k], f"{tags[k]} after {before} opens an entity, which "
                            "IOB2 does not allow; set config.data.tag_scheme='iob1' or 'auto'")
        examples.append(Sentence(words, tags, ner_metric.tags_to_spans(tags), document,
                                 len(document.sentences), str(path), lines,
                                 doc_start=doc_start and not document.sentences, scheme=scheme))
        document.sentences.append(words)
    return examples

  def read_raw(self, path: str | os.PathLike) -> list[Sentence]:
    """Plain text: one sentence per line, tokens split on whitespace, a blank line between
    documents. Predictions are written as `token predicted` (no gold column), IOB2 unless
    `tag_scheme` is "iob1", with a `-DOCSTART-` line per document: a CoNLL file `read` takes."""
    text = _read_text(path)
    examples, document = [], Document([])
    for number, line in enumerate(text.splitlines(), 1):
      words = line.split()
      if not words:
        if document.sentences:
          document = Document([])
        continue
      examples.append(Sentence(words, None, [], document, len(document.sentences), str(path),
                               [number] * len(words), doc_start=not document.sentences,
                               scheme="iob1" if self.scheme == "iob1" else "iob2"))
      document.sentences.append(words)
    if not examples:
      raise DataError(path, None, "no sentences (the file has no tokens)")
    return examples

  def labels(self, train_examples: Sequence[Sentence]) -> list[str]:
    """"O" first (class 0, the non-entity class), then the entity types seen, sorted."""
    return [OUTSIDE] + sorted({kind for ex in train_examples for _, _, kind in ex.spans})

  def featurize(self, examples: Sequence[Sentence], labels: Sequence[str],
                split: str) -> Features:
    cfg, tok = self.config, self.tokenizer
    seq_len, max_entities = cfg.max_seq_length, cfg.max_entity_length
    max_mention = cfg.max_mention_length
    budget = seq_len - 2  # <s> ... </s>
    if budget < 1 or max_entities < 1 or max_mention < 1:
      raise ValueError(f"max_seq_length={seq_len}, max_entity_length={max_entities} and "
                       f"max_mention_length={max_mention} leave no room for a span")
    label_ids = {name: i for i, name in enumerate(labels)}
    pieces = self._word_pieces(examples)
    rows, example_index, meta = [], [], []
    too_long = 0
    flat = {}  # id(document) -> its `_flatten`, built once for all its sentences
    for n, ex in enumerate(examples):
      gold = {}
      for start, end, kind in ex.spans:
        if kind not in label_ids:
          raise DataError(ex.path, ex.lines[start], f"label {kind!r} ({split}) is not among the "
                          f"training labels {list(labels)}")
        gold[(start, end)] = label_ids[kind]
      if self.document_context:
        key = id(ex.document)
        if key not in flat:
          flat[key] = _flatten(pieces[key])
        doc_ids, word_starts = flat[key][0], flat[key][1][ex.index]
      else:
        doc_ids, (word_starts,) = _flatten([pieces[id(ex.document)][ex.index]])
      segments = _segments(word_starts, len(ex.words), budget)
      too_long += len(segments) > 1
      for first_word, last_word, seg_start, seg_end in segments:
        left, right = _context(seg_start, seg_end, len(doc_ids), budget)
        offset = seg_start - left  # document subword at input position 1
        input_ids = doc_ids[offset:seg_end + right]
        spans = _enumerate_spans(word_starts, first_word, last_word, seg_end, max_mention)
        # Raw text has no gold: its spans get "O" (0) so a loss over them stays finite; only
        # training and dev/test files, which have gold, ever feed the loss.
        span_labels = [gold.get((s, e), 0) for s, e, _, _ in spans]
        # Evenly sized chunks when the spans outnumber the entity slots (the reference's split).
        chunks = max(1, math.ceil(len(spans) / max_entities))
        size = max(1, math.ceil(len(spans) / chunks))
        for c in range(chunks):
          part = slice(c * size, (c + 1) * size)
          rows.append((input_ids, [(a - offset + 1, b - offset + 1) for _, _, a, b in spans[part]],
                       span_labels[part]))
          example_index.append(n)
          meta.append({"spans": [(s, e) for s, e, _, _ in spans[part]]})
    if too_long:
      logging.warning("%s: %d sentences are longer than %d subwords and were split in pieces; "
                      "no span crosses a cut", split, too_long, budget)
    arrays = _pack(rows, seq_len, max_entities, max_mention, tok)
    return Features(arrays, np.asarray(example_index, np.int64), meta)

  def _word_pieces(self, examples: Sequence[Sentence]) -> dict[int, list[list[int]]]:
    """Subword ids of every word of every document `examples` touch (context included), keyed
    by `id(document)`; one batched tokenizer call."""
    documents = {id(ex.document): ex.document for ex in examples}
    words = [w for doc in documents.values() for sentence in doc.sentences for w in sentence]
    ids = self.tokenizer.word_pieces.encode_batch([_with_prefix_space(w) for w in words])
    unk = self.tokenizer.unk_token_id
    out, k = {}, 0
    for key, doc in documents.items():
      per_sentence = []
      for sentence in doc.sentences:
        # A word that normalises to nothing still needs a position, or spans could not end on it.
        per_sentence.append([ids[k + i] or [unk] for i in range(len(sentence))])
        k += len(sentence)
      out[key] = per_sentence
    return out

  # ---- model ------------------------------------------------------------------------------
  def loss(self, outputs, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Summed cross entropy over each row's real spans (label -1 = padding), and their count."""
    labels = batch["labels"]  # [batch, entities]; logits [batch, entities, labels]
    return losses.softmax_cross_entropy_sums(outputs.logits, labels, labels >= 0)

  def outputs(self, outputs) -> dict[str, jax.Array]:
    return {"logits": jnp.asarray(outputs.logits, jnp.float32)}

  # ---- predictions and metrics ------------------------------------------------------------
  def decode(self, examples: Sequence[Sentence], features: Features,
             outputs: Mapping[str, np.ndarray], labels: Sequence[str]) -> list[list[str]]:
    """IOB2 tags per sentence: the spans `predict_spans` accepts."""
    return [ner_metric.spans_to_tags([(p.start, p.end, p.label) for p in accepted],
                                     len(ex.words), "iob2")
            for ex, accepted in zip(examples, self.predict_spans(examples, features, outputs,
                                                                 labels))]

  def predict_spans(self, examples: Sequence[Sentence], features: Features,
                    outputs: Mapping[str, np.ndarray],
                    labels: Sequence[str]) -> list[list[SpanPrediction]]:
    """The entities of each sentence, in the order they were accepted.

    Each span's class is its best logit; spans whose class is not 0 (the non-entity class,
    whatever its name) are accepted greedily by descending logit when they overlap no span
    accepted before: the reference's decoding (`examples/ner` of github.com/studio-ousia/luke).
    """
    logits = np.asarray(outputs["logits"])
    candidates: list[list[tuple[float, int, int, int, int, int]]] = [[] for _ in examples]
    for row, n in enumerate(features.example_index):
      spans = features.meta[row]["spans"]
      scores = logits[row, :len(spans)]
      best = scores.argmax(-1)
      for k, ((start, end), label, score) in enumerate(zip(spans, best, scores.max(-1))):
        if label != 0:
          candidates[n].append((float(score), start, end, int(label), row, k))
    predictions = []
    for ex, found in zip(examples, candidates):
      taken = np.zeros(len(ex.words), bool)
      accepted = []
      # A stable sort: equal scores keep the enumeration order (start, then end), as the
      # reference's `sorted(..., reverse=True)` does.
      for score, start, end, label, row, k in sorted(found, key=lambda c: -c[0]):
        if not taken[start:end].any():
          taken[start:end] = True
          accepted.append(SpanPrediction(start, end, labels[label], score,
                                         _probability(logits[row, k], label)))
      predictions.append(accepted)
    return predictions

  def evaluate(self, examples: Sequence[Sentence],
               predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    """seqeval's micro precision / recall / F1 over exact entity spans, plus the counts."""
    return ner_metric.span_prf([ex.spans for ex in examples],
                               [ner_metric.tags_to_spans(p) for p in predictions])

  def write_predictions(self, path: Path, examples: Sequence[Sentence],
                        predictions: Sequence[Sequence[str]]) -> Path:
    """`token gold predicted` per line (`token predicted` for raw text), a blank line after each
    sentence and a `-DOCSTART-` line where a document starts: conlleval's input format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ex, tags in zip(examples, predictions):
      if len(tags) != len(ex.words):
        raise ValueError(f"{ex.path}:{ex.lines[0]}: {len(tags)} predicted tags for "
                         f"{len(ex.words)} words")
      tags = ner_metric.spans_to_tags(ner_metric.tags_to_spans(tags), len(tags), ex.scheme)
      if ex.doc_start:
        out.append(f"{DOCSTART} {OUTSIDE}" + (f" {OUTSIDE}" if ex.tags is not None else ""))
        out.append("")
      for k, word in enumerate(ex.words):
        gold = f" {ex.tags[k]}" if ex.tags is not None else ""
        out.append(f"{word}{gold} {tags[k]}")
      out.append("")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def _probability(logits: np.ndarray, label: int) -> float:
  """Softmax probability of class `label`, in float64 (stable for large logits)."""
  shifted = np.asarray(logits, np.float64) - np.max(logits)
  return float(np.exp(shifted[label]) / np.exp(shifted).sum())


# ---- reading --------------------------------------------------------------------------------

def _read_text(path: str | os.PathLike) -> str:
  try:
    return Path(path).read_text(encoding="utf-8")
  except FileNotFoundError:
    raise DataError(path, None, "no such file") from None
  except UnicodeDecodeError as e:
    raise DataError(path, None, f"not UTF-8 ({e})") from None


def _read_columns(path) -> list[tuple[str, str, int] | None]:
  """`(token, tag, line)` per token line, None for a sentence break, `(DOCSTART, "", line)` for
  a document break; every tag checked, and every line's column count against the first's."""
  rows = []
  columns = first = None  # the column count of the file, and the line that set it
  for number, line in enumerate(_read_text(path).splitlines(), 1):
    fields = line.split()
    if not fields:
      rows.append(None)
      continue
    if fields[0] != DOCSTART and len(fields) < 2:
      raise DataError(path, number, f"one column ({line.strip()!r}); expected `token ... tag`")
    # Document markers are left out: files write them as `-DOCSTART-`, `-DOCSTART- O` or
    # `-DOCSTART- -X- -X- O` whatever their token lines hold.
    if fields[0] != DOCSTART:
      if columns is None:
        columns, first = len(fields), number
      elif len(fields) != columns:
        raise DataError(path, number, f"{len(fields)} columns ({line.strip()!r}), expected "
                        f"{columns} as on line {first}: every line has the same columns "
                        "(`token POS chunk NER` or `token tag`), the tag last")
    if fields[0] == DOCSTART:
      rows.append((DOCSTART, "", number))
      continue
    tag = fields[-1]
    if not ner_metric.TAG.match(tag):
      raise DataError(path, number, f"invalid tag {tag!r}; expected O, B-TYPE or I-TYPE "
                      "(IOB1 or IOB2)")
    rows.append((fields[0], tag, number))
  if not any(r is not None and r[0] != DOCSTART for r in rows):
    raise DataError(path, None, "no sentences (the file has no tagged tokens)")
  return rows


def _documents(rows):
  """`(rows of one document, opened by -DOCSTART-)`; text before the first marker is a
  document of its own."""
  current, marked = [], False
  for row in rows:
    if row is not None and row[0] == DOCSTART:
      if any(r is not None for r in current):
        yield current, marked
      current, marked = [], True
      continue
    current.append(row)
  if any(r is not None for r in current):
    yield current, marked


def _sentences(rows):
  """Runs of token rows between breaks."""
  current = []
  for row in rows:
    if row is None or row[0] == DOCSTART:
      if current:
        yield current
      current = []
    else:
      current.append(row)
  if current:
    yield current


def _is_punctuation(text: str) -> bool:
  char = text[0]
  code = ord(char)
  # ASCII symbols such as "$" and "^" count as punctuation, as in BERT's basic tokenizer.
  if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
    return True
  return unicodedata.category(char).startswith("P")


def _with_prefix_space(word: str) -> str:
  """The paper's word tokenization: a word is encoded as it reads after a space, except a
  clitic (`'s`) and a lone punctuation mark, which attach to the word before."""
  if word.startswith("'") or (len(word) == 1 and _is_punctuation(word)):
    return word
  return " " + word


# ---- features -------------------------------------------------------------------------------

def _flatten(sentences: list[list[list[int]]]) -> tuple[list[int], list[list[int]]]:
  """Subword ids of consecutive sentences, and for each sentence where each of its words starts
  in them, with the sentence's end as a last entry."""
  ids, starts = [], []
  for sentence in sentences:
    offsets = []
    for word in sentence:
      offsets.append(len(ids))
      ids.extend(word)
    starts.append(offsets + [len(ids)])
  return ids, starts


def _segments(word_starts: list[int], num_words: int, budget: int):
  """The sentence as `(first word, end word, first subword, end subword)` pieces of at most
  `budget` subwords: one piece unless the sentence alone overflows the window."""
  out, first = [], 0
  while first < num_words:
    end = first + 1
    while end < num_words and word_starts[end + 1] - word_starts[first] <= budget:
      end += 1
    # A single word longer than the window keeps its first `budget` subwords.
    out.append((first, end, word_starts[first], min(word_starts[end], word_starts[first] + budget)))
    first = end
  return out


def _context(start: int, end: int, total: int, budget: int) -> tuple[int, int]:
  """Subwords of context taken left and right of `[start, end)`: each side up to half of what
  the sentence leaves, the shorter side's surplus going to the other (the reference's split)."""
  length = end - start
  left_available, right_available = start, total - end
  half = (budget - length) // 2
  if left_available < right_available:
    left = min(left_available, half)
    right = min(right_available, budget - left - length)
  else:
    right = min(right_available, half)
    left = min(left_available, budget - right - length)
  return left, right


def _enumerate_spans(word_starts, first_word, end_word, seg_end, max_mention):
  """`(start word, end word, first subword, end subword)` of every span inside the segment
  whose subwords fit in a mention, in (start, end) order; words are sentence-relative."""
  spans = []
  for s in range(first_word, end_word):
    for e in range(s + 1, end_word + 1):
      a, b = word_starts[s], min(word_starts[e], seg_end)
      if b - a > max_mention:
        break
      spans.append((s, e, a, b))
  return spans


def _pack(rows, seq_len: int, max_entities: int, max_mention: int, tok) -> dict[str, np.ndarray]:
  """Padded arrays from `(input subword ids, [(first, end) input positions], labels)` rows."""
  n = len(rows)
  arrays = {
      "input_ids": np.full((n, seq_len), tok.pad_token_id, np.int32),
      "attention_mask": np.zeros((n, seq_len), np.int32),
      "entity_ids": np.full((n, max_entities), tok.entity_pad_token_id, np.int32),
      "entity_position_ids": np.full((n, max_entities, max_mention), -1, np.int32),
      "entity_attention_mask": np.zeros((n, max_entities), np.int32),
      "entity_start_positions": np.zeros((n, max_entities), np.int32),
      "entity_end_positions": np.zeros((n, max_entities), np.int32),
      "labels": np.full((n, max_entities), -1, np.int32),
  }
  arange = np.arange(max_mention)
  for r, (ids, spans, labels) in enumerate(rows):
    length = len(ids) + 2
    arrays["input_ids"][r, :length] = [tok.cls_token_id, *ids, tok.sep_token_id]
    arrays["attention_mask"][r, :length] = 1
    k = len(spans)
    if not k:
      continue
    starts, ends = np.asarray(spans, np.int32).T  # input positions, end exclusive
    arrays["entity_ids"][r, :k] = tok.entity_mask_token_id
    arrays["entity_attention_mask"][r, :k] = 1
    positions = starts[:, None] + arange[None]
    arrays["entity_position_ids"][r, :k] = np.where(positions < ends[:, None], positions, -1)
    arrays["entity_start_positions"][r, :k] = starts
    arrays["entity_end_positions"][r, :k] = ends - 1
    arrays["labels"][r, :k] = labels
  return arrays
