"""ReCoRD (SuperGLUE JSONL): cloze-style QA over the candidate entity spans of a passage.

The paper's recipe (Yamada et al., EMNLP 2020, arXiv:2010.01057; code:
github.com/studio-ousia/luke, `examples/legacy/entity_span_qa/`): the input is
`<s> query </s></s> passage window </s>`; entity 0 is a `[MASK]` entity over the query's
placeholder token, entities 1.. are `[MASK]` entities over the candidate spans inside the
window, each wrapped in marker tokens that its mention positions include. Candidate i is
scored by `LukeForEntitySpanQA`; the target is 1 when its character span equals a gold answer
span. A question's answer is the passage text of the best-scoring candidate over all windows.

Token mapping. The reference adds three word tokens: `[PLACEHOLDER]` (embedding initialised
from "#"), `[ENTITY]` (from "*") around candidates, `[HIGHLIGHT]` (from "@") for `@highlight`.
Hugging Face LUKE vocabularies carry two: `<ent>` (initialised from "@") and `<ent2>` (from
"#"). Here candidates are wrapped in `<ent>` (its role in every HF LUKE task: marking an entity
mention) and the placeholder is `<ent2>` (a token of its own, as in the reference, and the one
initialised like `[PLACEHOLDER]`). `@highlight` stays text (two word pieces, "@" "highlight"):
a learned separator either way, and a third special token would collide with one of the two
roles. Both tokens are `config.data` fields. Newlines become spaces (as the reference does);
the first word of the query and of the passage has no leading space (the Hugging Face
`tokenizer(query, passage)` convention; the reference prefixes one).

Windows follow the reference (BERT's SQuAD scheme): `doc_stride` is the step between window
starts, not an overlap. A window without candidates gives no row; a window with more candidates
than `max_entity_length - 1` gives several rows, one per chunk (the reference pads entities to
the longest in its batch instead; fixed shapes need a bound). Candidates may nest or overlap:
each gets its own pair of markers, closing markers before opening ones at the same spot.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from luke_jax.finetune.task import DataError, Features, Task
from luke_jax.finetune.tasks import record_metric
from luke_jax.models import losses

PLACEHOLDER = "@placeholder"
Span = tuple[int, int]  # character [start, end)


@dataclasses.dataclass
class Passage:
  """One JSONL line's passage; its questions share it (and its tokenization)."""
  idx: Any
  text: str
  entities: list[Span]  # sorted, duplicates removed
  path: str
  line: int


@dataclasses.dataclass
class RecordExample:
  """One question (`qas` entry)."""
  qid: str
  passage: Passage
  query: str
  answers: list[tuple[int, int, str]]  # character [start, end) and the gold text
  line: int


@dataclasses.dataclass
class _EncodedPassage:
  ids: list[int]             # word pieces with the candidate markers inserted
  token_spans: list[Span]    # per candidate, token [start, end) including its markers


class RecordTask(Task):
  """SuperGLUE ReCoRD with the paper's entity-span QA model."""

  name = "record"
  architecture = "LukeForEntitySpanQA"
  tokenizer_task = None
  input_keys = ("input_ids", "attention_mask", "entity_ids", "entity_attention_mask",
                "entity_position_ids")
  target_keys = ("labels",)
  metric = "exact_match"  # the reference keeps the epoch with the best dev exact match
  prediction_suffix = ".json"
  has_labels = False

  def __init__(self, data_config, tokenizer):
    super().__init__(data_config, tokenizer)
    get = lambda key, default: data_config.get(key, default)
    self.max_seq_length = int(get("max_seq_length", 512))
    self.max_query_length = int(get("max_query_length", 90))
    self.doc_stride = int(get("doc_stride", 128))
    self.max_entity_length = int(get("max_entity_length", 64))
    self.max_mention_length = int(get("max_mention_length", 30))
    if self.max_seq_length - 4 - self.max_query_length < 1:
      raise ValueError(f"max_seq_length {self.max_seq_length} leaves no room for the passage "
                       f"after a query of up to {self.max_query_length} tokens and 4 specials")
    if self.doc_stride < 1:
      raise ValueError(f"doc_stride must be >= 1, got {self.doc_stride}")
    if self.max_entity_length < 2:
      raise ValueError("max_entity_length must be >= 2 (the placeholder and a candidate)")
    self._pieces = tokenizer.word_pieces
    self.placeholder_id = self._token_id(get("placeholder_token", "<ent2>"), "placeholder_token")
    self.marker_id = self._token_id(get("entity_marker_token", "<ent>"), "entity_marker_token")

  def _token_id(self, token: str, field: str) -> int:
    idx = self._pieces.token_to_id(token)
    if idx is None:
      raise ValueError(f"config.data.{field}={token!r} is not a token of the vocabulary")
    return idx

  # ---- data -------------------------------------------------------------------------------
  def read(self, path: str | os.PathLike, split: str) -> list[RecordExample]:
    examples: list[RecordExample] = []
    seen: dict[str, int] = {}
    lines = 0
    with open(path, encoding="utf-8") as f:
      for lineno, raw in enumerate(f, 1):
        if not raw.strip():
          continue
        lines += 1
        try:
          item = json.loads(raw)
        except json.JSONDecodeError as e:
          raise DataError(path, lineno, f"not valid JSON ({e})") from None
        for example in _parse_line(item, path, lineno):
          if example.qid in seen:
            raise DataError(path, lineno, f"question idx {example.qid} already used on line "
                            f"{seen[example.qid]}")
          seen[example.qid] = lineno
          examples.append(example)
    if not lines:
      raise DataError(path, None, "empty file: no ReCoRD passages")
    if not examples:
      raise DataError(path, None, "no questions (every passage has an empty `qas`)")
    return examples

  # ---- features ---------------------------------------------------------------------------
  def featurize(self, examples: Sequence[RecordExample], labels: Sequence[str],
                split: str) -> Features:
    del labels, split  # no label map; every split is featurised the same way
    encoded = self._encode_passages(examples)
    queries = self._encode_queries(examples)
    tok = self.tokenizer
    per_row = self.max_entity_length - 1
    rows, example_index, meta = [], [], []
    for i, example in enumerate(examples):
      passage = encoded[id(example.passage)]
      query, placeholder = queries[i]
      gold = {(s, e) for s, e, _ in example.answers}
      room = self.max_seq_length - len(query) - 4
      offset = len(query) + 3  # <s> query </s></s>
      for start, end in _windows(len(passage.ids), room, self.doc_stride):
        inside = [k for k, (s, e) in enumerate(passage.token_spans) if s >= start and e <= end]
        if not inside:
          continue  # the reference drops windows without candidates
        word_ids = ([tok.cls_token_id] + query + [tok.sep_token_id, tok.sep_token_id]
                    + passage.ids[start:end] + [tok.sep_token_id])
        for c in range(0, len(inside), per_row):
          chunk = inside[c:c + per_row]
          spans = [(s - start + offset, e - start + offset)
                   for s, e in (passage.token_spans[k] for k in chunk)]
          candidates = [example.passage.entities[k] for k in chunk]
          rows.append((word_ids, 1 + placeholder, spans,
                       [float(span in gold) for span in candidates]))
          example_index.append(i)
          meta.append(candidates)
    return Features(self._arrays(rows), np.asarray(example_index, np.int64), meta)

  def _encode_passages(self, examples: Sequence[RecordExample]) -> dict[int, _EncodedPassage]:
    """Each distinct passage once: word pieces cut at the candidate edges, plus markers.

    The text is cut at every candidate edge and the pieces are encoded one by one (the Hugging
    Face LUKE tokenizer's rule for entity spans), all passages' pieces in one call.
    """
    passages = list({id(e.passage): e.passage for e in examples}.values())
    layouts, texts = [], []
    for p in passages:
      text = p.text.replace("\n", " ")
      cuts, cut_of = _cuts(text, p.entities)
      layouts.append((cuts, cut_of, len(texts)))
      texts += [text[a:b] for a, b in zip(cuts, cuts[1:])]
    encoded = self._pieces.encode_batch(texts)
    out = {}
    for p, (cuts, cut_of, first) in zip(passages, layouts):
      pieces = encoded[first:first + len(cuts) - 1]
      token_at = dict(zip(cuts, np.cumsum([0] + [len(x) for x in pieces]).tolist()))
      ids = [i for x in pieces for i in x]
      spans = [(token_at[cut_of[s]], token_at[cut_of[e]]) for s, e in p.entities]
      out[id(p)] = _with_markers(ids, spans, p.entities, self.marker_id)
    return out

  def _encode_queries(self, examples: Sequence[RecordExample]) -> list[tuple[list[int], int]]:
    """Per question: query ids with the placeholder token, and the placeholder's index."""
    parts = []
    for e in examples:
      before, after = e.query.replace("\n", " ").split(PLACEHOLDER, 1)
      # A space before the placeholder would become a token of its own ("Ġ"); the one after it
      # stays with the next word, as anywhere in running text.
      parts += [before.rstrip(), after]
    encoded = self._pieces.encode_batch(parts)
    out = []
    for i in range(len(examples)):
      before, after = encoded[2 * i], encoded[2 * i + 1]
      ids = before + [self.placeholder_id] + after
      placeholder = len(before)
      if len(ids) > self.max_query_length:
        # Truncate on the right as the reference does, but never drop the placeholder.
        start = max(0, placeholder + 1 - self.max_query_length)
        ids = ids[start:start + self.max_query_length]
        placeholder -= start
      out.append((ids, placeholder))
    return out

  def _arrays(self, rows) -> dict[str, np.ndarray]:
    n, length, ents = len(rows), self.max_seq_length, self.max_entity_length
    mention = self.max_mention_length
    tok = self.tokenizer
    arrays = dict(
        input_ids=np.full((n, length), tok.pad_token_id, np.int32),
        attention_mask=np.zeros((n, length), np.int32),
        entity_ids=np.full((n, ents), tok.entity_pad_token_id, np.int32),
        entity_attention_mask=np.zeros((n, ents), np.int32),
        entity_position_ids=np.full((n, ents, mention), -1, np.int32),
        labels=np.zeros((n, ents - 1), np.float32))
    for r, (word_ids, placeholder, spans, targets) in enumerate(rows):
      arrays["input_ids"][r, :len(word_ids)] = word_ids
      arrays["attention_mask"][r, :len(word_ids)] = 1
      m = len(spans) + 1
      arrays["entity_ids"][r, :m] = tok.entity_mask_token_id
      arrays["entity_attention_mask"][r, :m] = 1
      arrays["entity_position_ids"][r, 0, 0] = placeholder
      for j, (s, e) in enumerate(spans, 1):
        positions = np.arange(s, min(e, s + mention))  # the reference cuts long mentions
        arrays["entity_position_ids"][r, j, :len(positions)] = positions
      arrays["labels"][r, :len(targets)] = targets
    return arrays

  # ---- model ------------------------------------------------------------------------------
  def loss(self, outputs, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """BCE summed over a row's real candidates; weight = their number (the reference's mean
    over the valid candidates of the batch, once the trainer divides the sums)."""
    valid = batch["entity_attention_mask"][:, 1:] > 0
    return losses.sigmoid_cross_entropy_sums(outputs.logits, batch["labels"], valid)

  def outputs(self, outputs) -> dict[str, jax.Array]:
    return {"logits": jnp.asarray(outputs.logits, jnp.float32)}

  # ---- predictions and metrics ------------------------------------------------------------
  def decode(self, examples: Sequence[RecordExample], features: Features,
             outputs: Mapping[str, np.ndarray], labels: Sequence[str]) -> list[str | None]:
    """Per question, the passage text of the highest-scoring candidate over all its rows;
    None for a question none of whose windows held a candidate (scored 0, as unanswered)."""
    del labels
    logits = np.asarray(outputs["logits"])
    best: dict[int, tuple[float, Span]] = {}
    for row, (i, candidates) in enumerate(zip(features.example_index, features.meta)):
      scores = logits[row, :len(candidates)]
      j = int(np.argmax(scores))
      if int(i) not in best or scores[j] > best[int(i)][0]:
        best[int(i)] = (float(scores[j]), candidates[j])
    out = []
    for i, example in enumerate(examples):
      if i in best:
        start, end = best[i][1]
        out.append(example.passage.text[start:end])
      else:
        out.append(None)
    unanswered = out.count(None)
    if unanswered:
      logging.warning("%d of %d ReCoRD questions have no candidate in any window; they get no "
                      "prediction", unanswered, len(out))
    return out

  def evaluate(self, examples: Sequence[RecordExample],
               predictions: Sequence[str | None]) -> dict[str, float]:
    """Official ReCoRD EM/F1 as fractions, over the questions with gold answers ({} if none:
    e.g. the unlabelled SuperGLUE test file)."""
    gold = {e.qid: [a[2] for a in e.answers] for e in examples if e.answers}
    if not gold:
      return {}
    return record_metric.score(gold, {e.qid: p for e, p in zip(examples, predictions)})

  def write_predictions(self, path: Path, examples: Sequence[RecordExample],
                        predictions: Sequence[str | None]) -> Path:
    """`{question idx: answer text}` JSON, the input of the official script; unanswered
    questions are left out (the script scores them 0)."""
    path = Path(path)
    payload = {e.qid: p for e, p in zip(examples, predictions) if p is not None}
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


# ---- helpers ------------------------------------------------------------------------------


def _windows(length: int, room: int, stride: int) -> list[Span]:
  """Token `[start, end)` windows of at most `room` tokens whose starts are `stride` apart
  (the reference's doc spans: the last one ends at the passage end)."""
  windows, start = [], 0
  while True:
    end = min(start + room, length)
    windows.append((start, end))
    if end >= length:
      return windows
    start += min(end - start, stride)


def _cuts(text: str, spans: Sequence[Span]) -> tuple[list[int], dict[int, int]]:
  """Sorted cut points (0 and the end included) and the cut of each span edge.

  A cut preceded by a space moves one character left, so the space stays with the following
  word (byte-level BPE's "Ġ"), as the Hugging Face LUKE tokenizer cuts at entity spans.
  """
  cut_of = {b: b - 1 if b > 0 and text[b - 1] == " " else b
            for span in spans for b in span}
  return sorted(set(cut_of.values()) | {0, len(text)}), cut_of


def _with_markers(ids: list[int], spans: list[Span], char_spans: list[Span],
                  marker: int) -> _EncodedPassage:
  """Inserts a marker before and after each candidate; spans then cover their markers.

  At one token position, closing markers come first (the inner mention closes first), then
  opening ones (the outer mention opens first), so nested or overlapping candidates each keep
  a well-formed span; a candidate with no tokens of its own gets its two markers in order.
  """
  events: dict[int, list[tuple[tuple, int, bool]]] = {}
  for k, ((s, e), (cs, ce)) in enumerate(zip(spans, char_spans)):
    events.setdefault(s, []).append(((1, -ce), k, False))
    events.setdefault(e, []).append(((0, -cs) if e > s else (2, 0), k, True))
  out: list[int] = []
  opened, closed = [0] * len(spans), [0] * len(spans)
  for t in range(len(ids) + 1):
    for _, k, closing in sorted(events.get(t, ())):
      if closing:
        closed[k] = len(out) + 1
      else:
        opened[k] = len(out)
      out.append(marker)
    if t < len(ids):
      out.append(ids[t])
  return _EncodedPassage(out, list(zip(opened, closed)))


def _parse_line(item, path, lineno: int) -> list[RecordExample]:
  """Validates one SuperGLUE ReCoRD record; offsets there are inclusive at the end."""
  def fail(reason):
    raise DataError(path, lineno, reason)

  if not isinstance(item, dict) or not isinstance(item.get("passage"), dict):
    fail("expected an object with a `passage` object")
  text = item["passage"].get("text")
  if not isinstance(text, str):
    fail("`passage.text` must be a string")
  raw_entities = item["passage"].get("entities")
  if not isinstance(raw_entities, list):
    fail("`passage.entities` must be a list of {start, end}")

  def span(obj, what):
    start, end = (obj.get("start"), obj.get("end")) if isinstance(obj, dict) else (None, None)
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
      fail(f"{what} must be an object with integer `start` and `end` (inclusive), got {obj!r}")
    if not 0 <= start <= end < len(text):
      fail(f"{what} ({start}, {end}) is outside the passage of {len(text)} characters "
           "(offsets are inclusive: 0 <= start <= end < length)")
    return start, end + 1

  entities = sorted({span(e, f"entity {j}") for j, e in enumerate(raw_entities)})
  passage = Passage(item.get("idx"), text, entities, str(path), lineno)
  qas = item.get("qas")
  if not isinstance(qas, list):
    fail("`qas` must be a list of questions")
  examples = []
  for q, qa in enumerate(qas):
    if not isinstance(qa, dict):
      fail(f"question {q} must be an object")
    if "idx" not in qa:
      fail(f"question {q} has no `idx`")
    query = qa.get("query")
    if not isinstance(query, str):
      fail(f"question {qa['idx']}: `query` must be a string")
    if query.count(PLACEHOLDER) != 1:
      fail(f"question {qa['idx']}: the query must contain {PLACEHOLDER} exactly once, found "
           f"{query.count(PLACEHOLDER)}: {query!r}")
    answers = qa.get("answers") or []
    if not isinstance(answers, list):
      fail(f"question {qa['idx']}: `answers` must be a list")
    gold = []
    for a, answer in enumerate(answers):
      start, end = span(answer, f"question {qa['idx']}: answer {a}")
      if not isinstance(answer.get("text"), str):
        fail(f"question {qa['idx']}: answer {a} has no `text` string")
      gold.append((start, end, answer["text"]))
    examples.append(RecordExample(str(qa["idx"]), passage, query, gold, lineno))
  return examples
