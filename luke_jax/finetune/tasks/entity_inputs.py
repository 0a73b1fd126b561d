"""Shared input code of the entity classification tasks (relation classification, typing).

Both tasks read JSON / JSON-lines records, rebuild a sentence from PTB tokens, mark one or two
entities with character spans and let the tokenizer's task mode insert `<ent>`/`<ent2>`; both
have a plain-text format with inline markers for `--predict_only`. Examples longer than
`max_seq_length` lose context words at the edges, never entity words (the reference does not
truncate at all; its sentences fit 512 tokens).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from absl import logging
import numpy as np

from luke_jax.finetune.task import DataError, Features
from luke_jax.tokenization.tokenizer import LukeTokenizer

Span = tuple[int, int]
Where = tuple[str, "int | str | None"]  # (path, line or example) for `DataError`

# PTB escapes in TACRED and UFET tokens; RoBERTa saw real brackets, so feed it those.
PTB_BRACKETS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{",
                "-RCB-": "}"}


def normalize_token(token: str) -> str:
  return PTB_BRACKETS.get(token, token)


def join_words(words: Sequence[str], word_spans: Sequence[Span]) -> tuple[str, list[Span]]:
  """Words joined by single spaces, and each `[start, end)` word range as a character span."""
  starts, pos = [], 0
  for w in words:
    starts.append(pos)
    pos += len(w) + 1
  spans = [(starts[s], starts[e - 1] + len(words[e - 1])) for s, e in word_spans]
  return " ".join(words), spans


def strip_markers(line: str, markers: Sequence[tuple[str, str]]) -> tuple[str, list[Span]]:
  """Removes inline markers such as `<e1>...</e1>`; returns the text and one span per pair.

  Spaces just inside a marker stay in the text but not in the span. Raises `ValueError`
  (the reason) when a marker is missing, repeated or closes before it opens.
  """
  tags = [tag for pair in markers for tag in pair]
  pattern = re.compile("|".join(re.escape(t) for t in sorted(tags, key=len, reverse=True)))
  pieces, found, last, length = [], {}, 0, 0
  for m in pattern.finditer(line):
    pieces.append(line[last:m.start()])
    length += m.start() - last
    if m.group() in found:
      raise ValueError(f"marker {m.group()} appears more than once")
    found[m.group()] = length
    last = m.end()
  pieces.append(line[last:])
  text = "".join(pieces)
  spans = []
  for open_tag, close_tag in markers:
    if open_tag not in found or close_tag not in found:
      raise ValueError(f"needs one {open_tag}...{close_tag} pair")
    start, end = found[open_tag], found[close_tag]
    if end < start:
      raise ValueError(f"{close_tag} comes before {open_tag}")
    while start < end and text[start].isspace():
      start += 1
    while end > start and text[end - 1].isspace():
      end -= 1
    if start == end:
      raise ValueError(f"{open_tag}...{close_tag} marks no text")
    spans.append((start, end))
  return text, spans


def read_json_records(path: str | os.PathLike) -> tuple[list[tuple[int | None, Any]], bool]:
  """Records of a JSON list or a JSON-lines file.

  Returns:
    `[(line, record)]` (line is None for a JSON list, whose records are named by id instead)
    and whether the file was a JSON list.
  """
  path = Path(path)
  try:
    raw = path.read_text(encoding="utf-8")
  except UnicodeDecodeError as e:
    raise DataError(path, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
  if not raw.strip():
    raise DataError(path, None, "empty file: no examples")
  if raw.lstrip().startswith("["):
    try:
      data = json.loads(raw)
    except json.JSONDecodeError as e:
      raise DataError(path, e.lineno, f"not valid JSON ({e.msg})") from None
    if not data:
      raise DataError(path, None, "empty JSON list: no examples")
    return [(None, record) for record in data], True
  records = []
  for n, line in enumerate(raw.splitlines(), 1):
    if not line.strip():
      continue
    try:
      records.append((n, json.loads(line)))
    except json.JSONDecodeError as e:
      raise DataError(path, n, f"not valid JSON ({e.msg})") from None
  return records, False


def read_marked_lines(path: str | os.PathLike,
                      markers: Sequence[tuple[str, str]]) -> list[tuple[int, str, list[Span]]]:
  """`(line number, text, spans)` of each non-blank line of a marked plain-text file."""
  path = Path(path)
  out = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      line = line.rstrip("\r\n")
      if not line.strip():
        continue
      try:
        text, spans = strip_markers(line, markers)
      except ValueError as e:
        raise DataError(path, n, str(e)) from None
      out.append((n, text, spans))
  if not out:
    raise DataError(path, None, "empty file: no sentences")
  return out


def encode(tokenizer: LukeTokenizer, texts: Sequence[str], spans: Sequence[Sequence[Span]],
           where: Sequence[Where], *, num_entities: int, max_seq_length: int,
           max_mention_length: int) -> tuple[dict[str, np.ndarray], list[tuple[str, list]], int]:
  """Fixed-shape model inputs in the tokenizer's task mode.

  Args:
    tokenizer: a `LukeTokenizer` in `entity_classification` / `entity_pair_classification`.
    texts, spans: one text and its entity character spans per example.
    where: `(path, line or example)` per example, for errors.
    num_entities: entities per example (1 or 2).
    max_seq_length, max_mention_length: padded lengths.

  Returns:
    The arrays (`input_ids`, `attention_mask` [N, L]; `entity_ids`, `entity_attention_mask`
    [N, E]; `entity_position_ids` [N, E, M]), the `(text, spans)` actually encoded per example
    (cut when too long) and how many examples were cut.
  """
  columns = _encode_all(tokenizer, texts, spans, where, max_mention_length)
  used = [(t, list(s)) for t, s in zip(texts, spans)]
  cut = 0
  for i, ids in enumerate(columns["input_ids"]):
    if len(ids) <= max_seq_length:
      continue
    try:
      text, sub_spans, row = _fit(tokenizer, texts[i], spans[i], max_seq_length,
                                  max_mention_length)
    except ValueError as e:
      raise DataError(*where[i], str(e)) from None
    for key in columns:
      columns[key][i] = row[key]
    used[i] = (text, sub_spans)
    cut += 1
  n = len(texts)
  arrays = dict(
      input_ids=np.full((n, max_seq_length), tokenizer.pad_token_id, np.int32),
      attention_mask=np.zeros((n, max_seq_length), np.int32),
      entity_ids=np.full((n, num_entities), tokenizer.entity_pad_token_id, np.int32),
      entity_attention_mask=np.zeros((n, num_entities), np.int32),
      entity_position_ids=np.full((n, num_entities, max_mention_length), -1, np.int32))
  for i in range(n):
    ids, entity_ids = columns["input_ids"][i], columns["entity_ids"][i]
    if len(entity_ids) != num_entities:  # only truncation drops entities, and we never truncate
      raise DataError(*where[i], f"expected {num_entities} entities, the tokenizer kept "
                      f"{len(entity_ids)}")
    arrays["input_ids"][i, :len(ids)] = ids
    arrays["attention_mask"][i, :len(ids)] = 1
    arrays["entity_ids"][i] = entity_ids
    arrays["entity_attention_mask"][i] = 1
    arrays["entity_position_ids"][i] = columns["entity_position_ids"][i]
  return arrays, used, cut


def features(tokenizer: LukeTokenizer, examples: Sequence[Any], spans: Sequence[Sequence[Span]],
             targets: np.ndarray, *, num_entities: int, data_config, split: str) -> Features:
  """`encode` of `examples` (which carry `text`, `path`, `line`) with `targets` as `labels`,
  one feature row per example; how many sentences were cut is logged."""
  arrays, used, cut = encode(
      tokenizer, [e.text for e in examples], spans, [(e.path, e.line) for e in examples],
      num_entities=num_entities, max_seq_length=data_config.max_seq_length,
      max_mention_length=data_config.max_mention_length)
  if cut:
    logging.info("%s: %d of %d sentences lost context words to fit max_seq_length %d",
                 split, cut, len(examples), data_config.max_seq_length)
  arrays["labels"] = targets
  return Features(arrays, np.arange(len(examples)), used)


def _encode_all(tokenizer, texts, spans, where, mention) -> dict[str, list]:
  """Unpadded encodings of every example; a rejected example is named by its `where`."""
  keys = ("input_ids", "entity_ids", "entity_position_ids")
  try:
    out = tokenizer(list(texts), entity_spans=[list(s) for s in spans],
                    max_mention_length=mention)
  except ValueError:
    for i, (text, example_spans) in enumerate(zip(texts, spans)):
      try:
        tokenizer(text, entity_spans=list(example_spans), max_mention_length=mention)
      except ValueError as e:  # "example 0: <reason>" -> the reason, named by file and line
        raise DataError(*where[i], re.sub(r"^example \d+: ", "", str(e))) from None
    raise
  return {k: list(out[k]) for k in keys}


def _fit(tokenizer, text: str, spans: Sequence[Span], max_length: int,
         mention: int) -> tuple[str, list[Span], dict]:
  """Drops whitespace-separated context words from the longer side until the encoding fits.

  Every dropped word frees at least one token, so dropping `excess` words per round ends in
  few rounds. Raises `ValueError` when the entities (and what lies between them) alone do
  not fit.
  """
  lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
  left = [m.start() for m in re.finditer(r"\S+", text[:lo])]
  right = [hi + m.end() for m in re.finditer(r"\S+", text[hi:])]
  keep_left, keep_right = len(left), len(right)
  while True:
    start = left[len(left) - keep_left] if keep_left else lo
    end = right[keep_right - 1] if keep_right else hi
    sub_spans = [(s - start, e - start) for s, e in spans]
    row = tokenizer(text[start:end], entity_spans=sub_spans, max_mention_length=mention)
    excess = len(row["input_ids"]) - max_length
    if excess <= 0:
      return text[start:end], sub_spans, row
    if keep_left + keep_right == 0:
      raise ValueError(f"the entities alone take {len(row['input_ids'])} tokens, more than "
                       f"max_seq_length {max_length}; raise data.max_seq_length")
    for _ in range(excess):
      if keep_left >= keep_right and keep_left:
        keep_left -= 1
      elif keep_right:
        keep_right -= 1
