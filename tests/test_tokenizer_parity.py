"""Id-for-id equality with transformers 5's LukeTokenizer / MLukeTokenizer on generated inputs.

Two transformers 5.24 defects are worked around in the oracle, not copied into luke-jax:
- `LukeTokenizer`/`MLukeTokenizer` call `self.truncate_sequences`, which no longer exists on
  their base class (every truncating call raises AttributeError); the oracle gets back the
  Python implementation those methods were written against;
- the Rust tokenizer inside keeps the truncation/padding settings of an earlier call, which
  silently truncates later calls; the oracle resets them before each call.
For mLUKE, transformers 5 builds its unigram model in raw SentencePiece order (`<s>`=1, unknown
pieces -> 0), which is not the fairseq order mLUKE's embeddings use; the oracle keeps
`MLukeTokenizer`'s entity logic but takes its word pieces from transformers' XLM-R tokenizer
(fairseq order, SentencePiece normalisation) built from the same model file.
"""

import json
import random

import numpy as np
import pytest

from luke_jax.tokenization.tokenizer import LukeTokenizer

pytestmark = pytest.mark.torch

TASKS = [None, "entity_classification", "entity_pair_classification",
         "entity_span_classification"]
N_PER_TASK = 1000
LUKE_WORDS = ["Tokyo", "東京", "café", "naïve", "😀", "New", "York", "Ünïcödé", "a", "the",
              "Los", "Angeles", "-", "'s", ",", ".", "e\u0301", "x", "<mask>", "über", "日本",
              "🇯🇵", "Beyoncé", "\t", "ﬁ", "İstanbul"]
MLUKE_WORDS = ["kato", "東京", "über", "Tokyo", "<mask>", "😀", "naïve", "ｋａｔｏ", "①", "ka",
               "é", "ß", "x", "jo", "ne", ",", ".", "日本", "thon", "``", "''"]
# Plain ASCII, which byte-level BPE encodes in Python (`backends._PlainBpe`): contractions,
# digits, punctuation runs, whitespace controls, and `<`, which starts the added tokens.
ASCII_WORDS = ["it's", "don't", "I'm", "we've", "'ll", "'S", "42", "3.14", "...", "--", "(x)",
               "\n", "U.S.", "O'Neil", "12ab", "<", "mask>", "\x0b", "''", "``"]
SPACES = ["", " ", " ", "  ", "   "]


def _hf_luke(directory, task):
  import transformers
  from transformers.tokenization_python import PreTrainedTokenizer
  transformers.LukeTokenizer.truncate_sequences = PreTrainedTokenizer.truncate_sequences
  return transformers.LukeTokenizer.from_pretrained(directory, task=task)


def hf_mluke_oracle(directory, task):
  """transformers' MLukeTokenizer over fairseq-order word pieces (also `bench/tokenizer.py`'s)."""
  import sentencepiece
  import transformers
  from transformers.tokenization_python import PreTrainedTokenizer
  transformers.MLukeTokenizer.truncate_sequences = PreTrainedTokenizer.truncate_sequences
  xlmr = transformers.XLMRobertaTokenizer.from_pretrained(directory)
  sp = sentencepiece.SentencePieceProcessor(model_file=str(directory / "sentencepiece.bpe.model"))
  vocab = ([("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
           + [(sp.IdToPiece(i), sp.GetScore(i)) for i in range(3, sp.GetPieceSize())]
           + [("<mask>", 0.0)])
  entity_vocab = json.loads((directory / "entity_vocab.json").read_text(encoding="utf-8"))
  hf = transformers.MLukeTokenizer(vocab=vocab, entity_vocab=entity_vocab, task=task)
  markers = {"\u2581<ent>": sp.GetPieceSize() + 2, "\u2581<ent2>": sp.GetPieceSize() + 3}

  class Pieces:
    """XLM-R's Rust tokenizer, seen through the attribute MLukeTokenizer encodes with."""

    def __getattr__(self, name):
      return getattr(xlmr._tokenizer, name)

  hf._tokenizer = Pieces()
  hf.convert_tokens_to_ids = lambda t: (markers[t] if isinstance(t, str) and t in markers
                                        else xlmr.convert_tokens_to_ids(t))
  return hf


def _reset(hf):
  hf._tokenizer.no_truncation()
  hf._tokenizer.no_padding()


def _text(rng, words):
  text = "".join(rng.choice(words) + rng.choice(SPACES) for _ in range(rng.randint(1, 14)))
  return rng.choice(["", " ", "  "]) + text


def _spans(rng, text, count, allow_overlap):
  spans = []
  for _ in range(200):
    if len(spans) == count:
      break
    start = rng.randint(0, len(text) - 1)
    if rng.random() < 0.15:
      start = 0  # spans at the very start
    end = rng.randint(start + 1, min(len(text), start + 12))
    if rng.random() < 0.15:
      end = len(text)  # ... and at the very end
    if spans and rng.random() < 0.3:
      start = spans[-1][1]  # adjacent spans
      if start >= len(text):
        continue
      end = rng.randint(start + 1, len(text))
    new = (start, end)
    if not allow_overlap and any(a < end and start < b for a, b in spans):
      continue
    spans.append(new)
  return spans


def _case(rng, task, words, entity_names):
  """One generated call: (positional text, keyword arguments)."""
  text = _text(rng, words)
  while len(text.strip()) < 2:
    text = _text(rng, words)
  count = {None: rng.randint(0, 5), "entity_classification": 1,
           "entity_pair_classification": 2, "entity_span_classification": rng.randint(1, 6)}
  spans = _spans(rng, text, count[task], allow_overlap=task != "entity_pair_classification")
  if task is not None and len(spans) != count[task]:
    return None
  kwargs = {}
  if spans or task is not None:
    kwargs["entity_spans"] = spans
  if task is None and spans and rng.random() < 0.5:
    kwargs["entities"] = [rng.choice(entity_names) for _ in spans]
  if task is None and rng.random() < 0.35:
    pair = _text(rng, words)
    kwargs["text_pair"] = pair
    if "entity_spans" in kwargs and rng.random() < 0.6:
      kwargs["entity_spans_pair"] = _spans(rng, pair, rng.randint(1, 3), True)
  if rng.random() < 0.35:
    kwargs.update(truncation=rng.choice([True, "longest_first", "only_first"]),
                  max_length=rng.randint(6, 24))
    if "text_pair" in kwargs and rng.random() < 0.5:
      kwargs["truncation"] = "only_second"
      kwargs["max_length"] += 10
  if "entity_spans" in kwargs and rng.random() < 0.25:
    kwargs.update(max_entity_length=rng.randint(1, 3), truncation=kwargs.get("truncation", True),
                  max_length=kwargs.get("max_length", 64))
  if rng.random() < 0.2:
    kwargs["max_mention_length"] = rng.randint(1, 4)
  if rng.random() < 0.2:
    kwargs["return_token_type_ids"] = True
  return text, kwargs


def _compare(ours, theirs, task, words, entity_names, seed, reset=None):
  rng = random.Random(seed)
  checked = 0
  while checked < N_PER_TASK:
    case = _case(rng, task, words, entity_names)
    if case is None:
      continue
    text, kwargs = case
    if "max_mention_length" in kwargs:
      # transformers reads it from the tokenizer only; set it there for this call.
      theirs.max_mention_length = kwargs["max_mention_length"]
    if reset:
      reset(theirs)
    try:
      expected = dict(theirs(text, **kwargs))
    except Exception:  # pylint: disable=broad-except  (Rust errors are bare Exceptions)
      theirs.max_mention_length = 30
      continue  # inputs the reference itself rejects are covered by the error tests
    theirs.max_mention_length = 30
    got = dict(ours(text, **kwargs))
    checked += 1
    assert got == expected, (
        f"task={task} text={text!r} kwargs={kwargs}\nexpected {expected}\ngot      {got}")
  return checked


@pytest.mark.parametrize("task", TASKS)
def test_luke_matches_transformers(luke_dir, task):
  ours = LukeTokenizer.from_pretrained(luke_dir, task=task)
  theirs = _hf_luke(luke_dir, task)
  names = ["Tokyo", "Japan", "Beyoncé", "Nowhere", "[MASK]", "[UNK]"]
  assert _compare(ours, theirs, task, LUKE_WORDS + ASCII_WORDS, names,
                  seed=TASKS.index(task), reset=_reset) == N_PER_TASK


@pytest.mark.parametrize("task", TASKS)
def test_mluke_matches_transformers(mluke_dir, task):
  ours = LukeTokenizer.from_pretrained(mluke_dir, task=task)
  theirs = hf_mluke_oracle(mluke_dir, task)
  names = ["en:Tokyo", "ja:東京", "en:Japan", "zz:Nowhere", "[MASK]"]
  assert _compare(ours, theirs, task, MLUKE_WORDS, names, seed=10 + TASKS.index(task),
                  reset=_reset) == N_PER_TASK


def _batch(rng, task, words, entity_names, size):
  """One generated batched call: (texts, keyword arguments shared by the batch)."""
  count = {None: lambda: rng.randint(0, 5), "entity_classification": lambda: 1,
           "entity_pair_classification": lambda: 2,
           "entity_span_classification": lambda: rng.randint(1, 6)}[task]
  texts, spans, titles, pairs, pair_spans = [], [], [], [], []
  while len(texts) < size:
    text = _text(rng, words)
    want = count()
    example_spans = _spans(rng, text, want, task != "entity_pair_classification")
    if len(text.strip()) < 2 or (task is not None and len(example_spans) != want):
      continue
    texts.append(text)
    spans.append(example_spans)
    titles.append([rng.choice(entity_names) for _ in example_spans])
    pairs.append(_text(rng, words))
    pair_spans.append(_spans(rng, pairs[-1], rng.randint(0, 3), True))
  kwargs = {}
  if task is not None or rng.random() < 0.85:
    kwargs["entity_spans"] = spans
    if task is None and rng.random() < 0.5:
      kwargs["entities"] = titles
  if task is None and rng.random() < 0.35:
    kwargs["text_pair"] = pairs
    if "entity_spans" in kwargs and rng.random() < 0.6:
      kwargs["entity_spans_pair"] = pair_spans
  if rng.random() < 0.4:
    kwargs.update(truncation=rng.choice([True, "longest_first", "only_first"]),
                  max_length=rng.randint(6, 24))
  if "entity_spans" in kwargs and rng.random() < 0.25:
    kwargs.update(max_entity_length=rng.randint(1, 3), truncation=kwargs.get("truncation", True),
                  max_length=kwargs.get("max_length", 64))
  padding = rng.choice([False, True, True, "max_length"])
  if padding:
    kwargs.update(padding=padding, return_tensors=rng.choice(["np", None]),
                  pad_to_multiple_of=rng.choice([None, None, 8]))
    if padding == "max_length":
      kwargs.update(max_length=64, truncation=True)
  if rng.random() < 0.2:
    kwargs["max_mention_length"] = rng.randint(1, 4)
  if rng.random() < 0.2:
    kwargs["return_token_type_ids"] = True
  return texts, kwargs


def _compare_batches(ours, theirs, task, words, entity_names, seed, batches=60):
  """Batched calls big enough for the column-wise path (`LukeTokenizer._COLUMNS_FROM`)."""
  rng = random.Random(seed)
  checked = 0
  for _ in range(batches):
    columns_from = LukeTokenizer._COLUMNS_FROM  # pylint: disable=protected-access
    texts, kwargs = _batch(rng, task, words, entity_names,
                           rng.randint(columns_from, columns_from + 8))
    theirs.max_mention_length = kwargs.get("max_mention_length", 30)
    _reset(theirs)
    try:
      expected = dict(theirs(texts, **kwargs))
    except Exception:  # pylint: disable=broad-except  (Rust errors are bare Exceptions)
      continue  # inputs the reference itself rejects are covered by the error tests
    finally:
      theirs.max_mention_length = 30
    got = dict(ours(texts, **kwargs))
    assert set(got) == set(expected), kwargs
    for key in expected:
      if kwargs.get("return_tensors") == "np":
        np.testing.assert_array_equal(got[key], np.asarray(expected[key]),
                                      err_msg=f"{key} {kwargs} {texts}")
      else:
        assert got[key] == expected[key], (key, kwargs, texts)
    checked += 1
  return checked


@pytest.mark.parametrize("task", TASKS)
def test_luke_batches_match_transformers(luke_dir, task):
  ours = LukeTokenizer.from_pretrained(luke_dir, task=task)
  theirs = _hf_luke(luke_dir, task)
  names = ["Tokyo", "Japan", "Beyoncé", "Nowhere", "[MASK]", "[UNK]"]
  assert _compare_batches(ours, theirs, task, LUKE_WORDS + ASCII_WORDS, names,
                          seed=20 + TASKS.index(task)) >= 40


@pytest.mark.parametrize("task", TASKS)
def test_mluke_batches_match_transformers(mluke_dir, task):
  ours = LukeTokenizer.from_pretrained(mluke_dir, task=task)
  theirs = hf_mluke_oracle(mluke_dir, task)
  names = ["en:Tokyo", "ja:東京", "en:Japan", "zz:Nowhere", "[MASK]"]
  assert _compare_batches(ours, theirs, task, MLUKE_WORDS, names,
                          seed=30 + TASKS.index(task)) >= 40


@pytest.mark.parametrize("padding", [True, "max_length"])
def test_batches_with_padding_match(luke_dir, padding):
  ours = LukeTokenizer.from_pretrained(luke_dir, task="entity_span_classification")
  theirs = _hf_luke(luke_dir, "entity_span_classification")
  rng = random.Random(7)
  for _ in range(30):
    texts, spans = [], []
    columns_from = LukeTokenizer._COLUMNS_FROM  # pylint: disable=protected-access
    size = rng.choice([rng.randint(2, 8), columns_from])  # both paths
    while len(texts) < size:
      case = _case(rng, "entity_span_classification", LUKE_WORDS, [])
      if case:
        texts.append(case[0])
        spans.append(case[1]["entity_spans"])
    kwargs = dict(entity_spans=spans, padding=padding, return_tensors="np",
                  pad_to_multiple_of=rng.choice([None, 8]))
    if padding == "max_length":
      kwargs.update(max_length=64, truncation=True, max_entity_length=8)
    _reset(theirs)
    expected = theirs(texts, **kwargs)
    got = ours(texts, **kwargs)
    assert set(got) == set(expected)
    for key in expected:
      np.testing.assert_array_equal(got[key], np.asarray(expected[key]), err_msg=key)


def test_classic_and_transformers5_layouts_agree(luke_dir, tmp_path):
  """A directory saved by transformers 5 (tokenizer.json + entity vocab in the config) loads."""
  theirs = _hf_luke(luke_dir, None)
  theirs.save_pretrained(tmp_path)
  assert (tmp_path / "tokenizer.json").exists()
  classic = LukeTokenizer.from_pretrained(luke_dir)
  modern = LukeTokenizer.from_pretrained(tmp_path)
  rng = random.Random(3)
  for _ in range(200):
    text, kwargs = _case(rng, None, LUKE_WORDS, ["Tokyo", "Japan"])
    outputs = []
    for tok in (classic, modern):
      try:
        outputs.append(dict(tok(text, **kwargs)))
      except ValueError as e:
        outputs.append(str(e))
    assert outputs[0] == outputs[1], (text, kwargs)


def test_add_prefix_space_and_jax_tensors_as_transformers(luke_dir):
  """The arguments copied transformers code passes: `add_prefix_space=` at load time and
  `return_tensors="jax"` (transformers 5 dropped its own JAX tensors; ours are int32)."""
  import transformers
  from transformers.tokenization_python import PreTrainedTokenizer
  transformers.LukeTokenizer.truncate_sequences = PreTrainedTokenizer.truncate_sequences
  text, spans = "Beyoncé lives in Los Angeles.", [(0, 7), (17, 28)]
  plain = LukeTokenizer.from_pretrained(luke_dir)
  for flag in (True, False):
    theirs = transformers.LukeTokenizer.from_pretrained(luke_dir, add_prefix_space=flag)
    ours = LukeTokenizer.from_pretrained(luke_dir, add_prefix_space=flag)
    expected, got = theirs(text, entity_spans=spans), ours(text, entity_spans=spans)
    for key in ("input_ids", "entity_ids", "entity_position_ids"):
      assert got[key] == expected[key], (flag, key)
  assert (LukeTokenizer.from_pretrained(luke_dir, add_prefix_space=True)(text)["input_ids"]
          != plain(text)["input_ids"])
  as_np = plain([text, "Tokyo"], padding=True, return_tensors="np")
  as_jax = plain([text, "Tokyo"], padding=True, return_tensors="jax")
  assert set(as_jax) == set(as_np)
  for key, value in as_jax.items():
    assert str(value.dtype) == "int32" and type(value).__module__.startswith("jax")
    np.testing.assert_array_equal(np.asarray(value), as_np[key])
  with pytest.raises(ValueError, match=r"return_tensors='pt'.*'np'.*'jax'"):
    plain(text, return_tensors="pt")
