"""Extractive QA on SQuAD 1.1 and 2.0.

The paper's task (Yamada et al., EMNLP 2020, arXiv:2010.01057), as its code does it
(github.com/studio-ousia/luke, `examples/legacy/reading_comprehension/`).

Input `<s> question </s></s> passage-window </s>`: the question is cut to `max_query_length`
tokens and the passage is split into windows that advance by `doc_stride` tokens (the BERT /
legacy LUKE meaning of the stride: a step, not an overlap). `LukeForQuestionAnswering` scores
each word as an answer start and end; the loss is `(CE_start + CE_end) / 2` per window, with
target `<s>` (index 0) when the answer is not inside the window or there is none.

Decoding follows the legacy LUKE / BERT writer: per question, over all its windows, the
`n_best_size` best starts and ends inside the passage (a start only in the window where it has
the most context), `end >= start`, at most `max_answer_length` tokens, score = start + end
logit; the answer is the passage's own substring between the tokens' character offsets. SQuAD
2.0: the null score is the smallest `<s>` start + end over the windows, and "" wins when it
exceeds the best span's score by more than `null_score_diff_threshold`.

Entities (`config.entities`): "none" (default; one padded entity per row), "titles" (exact
matches of entity-vocabulary titles) or a mention dictionary JSON; mentions found in question
and passage become entity inputs with their vocabulary ids, question first, at most
`max_entity_length` per window (see `mentions.py`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from luke_jax.finetune.task import DataError, Features, Task
from luke_jax.finetune.tasks import mentions, squad_metric
from luke_jax.models import losses


@dataclasses.dataclass
class SquadExample:
  """One question.

  Attributes:
    qid: the question id (prediction files are keyed by it).
    question: question text.
    context: the paragraph, verbatim.
    answers: gold `(text, answer_start)` pairs; `context[start:start + len(text)] == text`.
    is_impossible: SQuAD 2.0 unanswerable question.
    title: the article title (informational).
  """
  qid: str
  question: str
  context: str
  answers: list[tuple[str, int]]
  is_impossible: bool = False
  title: str = ""


@dataclasses.dataclass
class _Encoded:
  """One text's word pieces: ids [T], character offsets [T, 2], mentions as token spans."""
  ids: np.ndarray
  offsets: np.ndarray
  mentions: list[tuple[int, int, int]]  # token start, end (exclusive), entity id

  @property
  def usable(self) -> np.ndarray:
    """[T] bool: the token covers text (byte-level BPE emits empty "Ġ" tokens for spaces)."""
    return self.offsets[:, 1] > self.offsets[:, 0]


class _Window(NamedTuple):
  """Where one feature row's passage tokens come from (decoding metadata)."""
  doc_start: int  # first passage token in the window
  doc_len: int    # passage tokens in the window
  offset: int     # row index of the first passage token (question length + 3)
  context: _Encoded


# Where a gold answer's start may sit when `answer_start` is off by a character or two, as in a
# few crowd-sourced SQuAD answers; anything further off is a data error.
_REALIGN_SHIFTS = (-1, 1, -2, 2)


class SquadTask(Task):
  """SQuAD 1.1 / 2.0 for `LukeForQuestionAnswering`."""

  name = "squad"
  architecture = "LukeForQuestionAnswering"
  tokenizer_task = None
  input_keys = ("input_ids", "attention_mask", "entity_ids", "entity_position_ids",
                "entity_attention_mask")
  target_keys = ("start_positions", "end_positions")
  metric = "f1"
  prediction_suffix = ".json"
  has_labels = False

  def __init__(self, data_config, tokenizer):
    if tokenizer.task is not None:
      # A checkpoint fine-tuned on an entity task may save its tokenizer in that mode; QA
      # encodes plain text (plus mention spans).
      tokenizer = copy.copy(tokenizer)
      tokenizer.task = None
    super().__init__(data_config, tokenizer)
    cfg = data_config
    self.version_2 = bool(cfg.get("version_2_with_negative", False))
    room = cfg.max_seq_length - cfg.max_query_length - 4
    if room < 1:
      raise ValueError(f"max_seq_length {cfg.max_seq_length} leaves no passage tokens after "
                       f"a {cfg.max_query_length}-token question and 4 special tokens")
    if cfg.doc_stride < 1:
      raise ValueError(f"doc_stride must be positive, got {cfg.doc_stride}")
    self.matcher = mentions.from_config(cfg.get("entities", "none"), tokenizer.entity_vocab)

  # ---- reading ------------------------------------------------------------------------------
  def read(self, path: str | os.PathLike, split: str) -> list[SquadExample]:
    """SQuAD JSON: `data[].paragraphs[].{context, qas[].{id, question, answers, is_impossible}}`.

    `answers` may be absent only when predicting. An `answer_start` off by up to two characters
    is moved onto its text (counted in the log); a text not found there is a `DataError`.
    """
    path = Path(path)
    try:
      text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
      raise DataError(path, None, f"not UTF-8 text: {e}") from None
    if not text.strip():
      raise DataError(path, None, "empty file")
    try:
      raw = json.loads(text)
    except json.JSONDecodeError as e:
      raise DataError(path, e.lineno, f"not valid JSON: {e.msg}") from None
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, list):
      raise DataError(path, None, 'expected a SQuAD JSON object {"data": [...]}')
    examples, seen, realigned = [], set(), 0
    for a, article in enumerate(data):
      paragraphs = _field(article, "paragraphs", list, path, f"data[{a}]")
      title = article.get("title", "")
      for p, paragraph in enumerate(paragraphs):
        where = f"data[{a}].paragraphs[{p}]"
        context = _field(paragraph, "context", str, path, where)
        for k, qa in enumerate(_field(paragraph, "qas", list, path, where)):
          qid = _field(qa, "id", (str, int), path, f"{where}.qas[{k}]")
          qid = str(qid)
          where_q = f"question {qid}"
          if qid in seen:
            raise DataError(path, where_q, "duplicate question id")
          seen.add(qid)
          question = _field(qa, "question", str, path, where_q)
          impossible = qa.get("is_impossible", False)
          if not isinstance(impossible, bool):
            raise DataError(path, where_q, f"is_impossible must be true or false, got "
                            f"{impossible!r}")
          if "answers" not in qa and split == "predict":
            raw_answers = []
          else:
            raw_answers = _field(qa, "answers", list, path, where_q)
          answers = []
          for answer in raw_answers:
            answer_text = _field(answer, "text", str, path, where_q)
            start = _field(answer, "answer_start", int, path, where_q)
            if not answer_text:
              raise DataError(path, where_q, "empty answer text")
            found = _locate(context, answer_text, start)
            if found is None:
              raise DataError(path, where_q, f"answer {answer_text!r} is not at answer_start "
                              f"{start}: the context has "
                              f"{context[max(start, 0):max(start, 0) + len(answer_text)]!r}")
            realigned += found != start
            answers.append((answer_text, found))
          if split == "train" and not answers and not impossible:
            raise DataError(path, where_q, "no answer, and is_impossible is not true")
          examples.append(SquadExample(qid, question, context, answers, impossible, title))
    if not examples:
      raise DataError(path, None, "no questions")
    if realigned:
      logging.info("%s: %d answers sat 1-2 characters off their answer_start; realigned",
                   path, realigned)
    return examples

  # ---- features -----------------------------------------------------------------------------
  def _encode(self, texts: Sequence[str]) -> list[_Encoded]:
    """Word pieces with offsets; with mentions, the text is cut at their spans as LUKE's
    tokenizer does for entity spans."""
    if not texts:
      return []
    found = [self.matcher.find(t) for t in texts] if self.matcher else None
    spans = [[(s, e) for s, e, _ in f] for f in found] if found else None
    enc = self.tokenizer(list(texts), entity_spans=spans, add_special_tokens=False,
                         return_offsets_mapping=True)
    out = []
    for i in range(len(texts)):
      offsets = np.asarray(enc["offset_mapping"][i], np.int64).reshape(-1, 2)
      encoded = _Encoded(np.asarray(enc["input_ids"][i], np.int32), offsets, [])
      for s, e, entity in (found[i] if found else ()):
        span = _token_span(encoded, s, e)
        if span is not None:
          encoded.mentions.append((span[0], span[1] + 1, entity))
      out.append(encoded)
    return out

  def featurize(self, examples: Sequence[SquadExample], labels: Sequence[str],
                split: str) -> Features:
    """One row per passage window. Training questions whose answer covers no token (only
    whitespace) are skipped and counted, as the BERT / HF readers skip unalignable answers."""
    del labels
    cfg = self.config
    length, max_query = cfg.max_seq_length, cfg.max_query_length
    with_entities = self.matcher is not None
    num_entities = cfg.max_entity_length if with_entities else 1
    mention = cfg.max_mention_length if with_entities else 1
    unique = list(dict.fromkeys(ex.context for ex in examples))
    contexts = dict(zip(unique, self._encode(unique)))
    questions = self._encode([ex.question for ex in examples])

    # 1. Plan the rows: windows and targets.
    plan, skipped = [], 0
    for i, ex in enumerate(examples):
      ctx = contexts[ex.context]
      qlen = min(len(questions[i].ids), max_query)
      spans = [_token_span(ctx, s, s + len(t)) for t, s in ex.answers]
      if ex.is_impossible:
        spans = []
      elif split == "train" and ex.answers and not any(spans):
        skipped += 1
        continue
      for doc_start, doc_len in _windows(len(ctx.ids), length - qlen - 4, cfg.doc_stride):
        target = (0, 0)
        for span in spans:  # the first gold answer wholly inside the window (legacy)
          if span and span[0] >= doc_start and span[1] < doc_start + doc_len:
            target = (span[0] - doc_start + qlen + 3, span[1] - doc_start + qlen + 3)
            break
        plan.append((i, qlen, doc_start, doc_len, target))
    if skipped:
      logging.warning("%s: %d training questions skipped: answer covers no token", split,
                      skipped)

    # 2. Fill the arrays.
    n = len(plan)
    arrays = dict(
        input_ids=np.full((n, length), self.tokenizer.pad_token_id, np.int32),
        attention_mask=np.zeros((n, length), np.int32),
        entity_ids=np.full((n, num_entities), self.tokenizer.entity_pad_token_id, np.int32),
        entity_position_ids=np.full((n, num_entities, mention), -1, np.int32),
        entity_attention_mask=np.zeros((n, num_entities), np.int32),
        start_positions=np.zeros((n,), np.int32),
        end_positions=np.zeros((n,), np.int32))
    cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
    example_index, meta = np.zeros((n,), np.int32), []
    for row, (i, qlen, doc_start, doc_len, target) in enumerate(plan):
      question, ctx = questions[i], contexts[examples[i].context]
      offset = qlen + 3
      ids = np.concatenate([[cls_id], question.ids[:qlen], [sep_id, sep_id],
                            ctx.ids[doc_start:doc_start + doc_len], [sep_id]])
      arrays["input_ids"][row, :len(ids)] = ids
      arrays["attention_mask"][row, :len(ids)] = 1
      arrays["start_positions"][row], arrays["end_positions"][row] = target
      if with_entities:
        found = [(s + 1, e + 1, ent) for s, e, ent in question.mentions if e <= qlen]
        found += [(s - doc_start + offset, e - doc_start + offset, ent)
                  for s, e, ent in ctx.mentions
                  if s >= doc_start and e <= doc_start + doc_len]
        for k, (s, e, ent) in enumerate(found[:num_entities]):
          positions = np.arange(s, min(e, s + mention))
          arrays["entity_ids"][row, k] = ent
          arrays["entity_attention_mask"][row, k] = 1
          arrays["entity_position_ids"][row, k, :len(positions)] = positions
      example_index[row] = i
      meta.append(_Window(doc_start, doc_len, offset, ctx))
    logging.info("%s: %d questions -> %d windows", split, len(examples), n)
    return Features(arrays, example_index, meta)

  # ---- model --------------------------------------------------------------------------------
  def head_config(self, labels: Sequence[str]) -> dict[str, Any]:
    del labels
    # Two outputs (start, end); the names HF's QA configs carry.
    return {"id2label": ((0, "LABEL_0"), (1, "LABEL_1"))}

  def loss(self, outputs, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    start, weight = losses.softmax_cross_entropy_sums(outputs.start_logits,
                                                      batch["start_positions"])
    end, _ = losses.softmax_cross_entropy_sums(outputs.end_logits, batch["end_positions"])
    return (start + end) / 2, weight

  def outputs(self, outputs) -> dict[str, jax.Array]:
    return {"start_logits": outputs.start_logits.astype(jnp.float32),
            "end_logits": outputs.end_logits.astype(jnp.float32)}

  # ---- predictions and metrics --------------------------------------------------------------
  def decode(self, examples: Sequence[SquadExample], features: Features,
             outputs: Mapping[str, np.ndarray], labels: Sequence[str]) -> list[str]:
    """The answer text of every question ("" = no answer, SQuAD 2.0)."""
    del labels
    n_best = self.config.n_best_size
    max_answer = self.config.max_answer_length
    threshold = self.config.null_score_diff_threshold
    start_logits = np.asarray(outputs["start_logits"], np.float32)
    end_logits = np.asarray(outputs["end_logits"], np.float32)
    rows_of = [[] for _ in examples]
    for row, i in enumerate(features.example_index):
      rows_of[i].append(row)
    predictions = []
    for i, ex in enumerate(examples):
      rows = rows_of[i]
      if not rows:  # a training question skipped by `featurize`
        predictions.append("")
        continue
      windows = [features.meta[r] for r in rows]
      best, best_score, null_score = None, -np.inf, np.inf
      for row, window, max_context in zip(rows, windows, _max_context(windows)):
        ds, dl, off, ctx = window
        start, end = start_logits[row], end_logits[row]
        null_score = min(null_score, float(start[0] + end[0]))
        usable = ctx.usable[ds:ds + dl]
        starts = _top(np.where(usable & max_context, start[off:off + dl], -np.inf), n_best)
        ends = _top(np.where(usable, end[off:off + dl], -np.inf), n_best)
        if not len(starts) or not len(ends):
          continue
        # [starts, ends] scores of the allowed spans; argmax takes the first best, in the
        # reference's order (start rank, then end rank).
        length = ends[None, :] - starts[:, None] + 1
        scores = np.where((length >= 1) & (length <= max_answer),
                          start[off + starts][:, None] + end[off + ends][None, :], -np.inf)
        k = int(scores.argmax())
        score = float(scores.flat[k])
        if score > best_score:
          s, e = divmod(k, len(ends))
          best_score, best = score, (ctx, ds + starts[s], ds + ends[e])
      if best is None or (self.version_2 and null_score - best_score > threshold):
        predictions.append("")
        continue
      ctx, s, e = best
      predictions.append(ex.context[ctx.offsets[s, 0]:ctx.offsets[e, 1]].strip())
    return predictions

  def evaluate(self, examples: Sequence[SquadExample],
               predictions: Sequence[str]) -> dict[str, float]:
    golds = {ex.qid: [text for text, _ in ex.answers] for ex in examples}
    preds = {ex.qid: p for ex, p in zip(examples, predictions)}
    return squad_metric.evaluate(golds, preds, self.version_2)

  def write_predictions(self, path: Path, examples: Sequence[SquadExample],
                        predictions: Sequence[str]) -> Path:
    """`{question id: answer text}`, the file the official evaluation scripts read."""
    path = Path(path)
    payload = {ex.qid: p for ex, p in zip(examples, predictions)}
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def _field(obj, key: str, kind, path: Path, where: str):
  if not isinstance(obj, dict):
    raise DataError(path, where, f"expected a JSON object, got {type(obj).__name__}")
  if key not in obj:
    raise DataError(path, where, f"missing key {key!r}")
  value = obj[key]
  if not isinstance(value, kind) or isinstance(value, bool):
    names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
    raise DataError(path, where, f"{key!r} must be {names}, got {value!r}")
  return value


def _locate(context: str, text: str, start: int) -> int | None:
  """`start`, or the nearby offset where `text` really is; None when it is not near."""
  for shift in (0,) + _REALIGN_SHIFTS:
    s = start + shift
    if 0 <= s and context[s:s + len(text)] == text:
      return s
  return None


def _token_span(encoded: _Encoded, start: int, end: int) -> tuple[int, int] | None:
  """Inclusive token span of the characters [start, end), or None if no token covers them."""
  offsets = encoded.offsets
  hit = np.flatnonzero(encoded.usable & (offsets[:, 1] > start) & (offsets[:, 0] < end))
  return (int(hit[0]), int(hit[-1])) if len(hit) else None


def _windows(num_tokens: int, room: int, stride: int) -> list[tuple[int, int]]:
  """`(start, length)` windows of at most `room` tokens, each `stride` after the last."""
  windows, start = [], 0
  while True:
    length = min(room, num_tokens - start)
    windows.append((start, length))
    if start + length >= num_tokens:
      return windows
    start += min(length, stride)


def _max_context(windows: Sequence[_Window]) -> list[np.ndarray]:
  """Per window, [doc_len] bool: this window gives the token its most context.

  A token's context in a window is min(left, right) tokens plus 0.01 x window length; the
  first window wins ties (BERT's `_check_is_max_context`).
  """
  num_tokens = max(w.doc_start + w.doc_len for w in windows)
  scores = np.full((len(windows), max(num_tokens, 1)), -np.inf)
  for k, w in enumerate(windows):
    pos = np.arange(w.doc_len)
    scores[k, w.doc_start:w.doc_start + w.doc_len] = (
        np.minimum(pos, w.doc_len - 1 - pos) + 0.01 * w.doc_len)
  best = scores.argmax(axis=0)
  return [best[w.doc_start:w.doc_start + w.doc_len] == k for k, w in enumerate(windows)]


def _top(scores: np.ndarray, n: int) -> np.ndarray:
  """Indices of the `n` largest finite scores, best first (stable for ties)."""
  order = np.argsort(-scores, kind="stable")[:n]
  return order[np.isfinite(scores[order])]
