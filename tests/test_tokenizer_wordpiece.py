"""`LukeTokenizer` on BERT WordPiece vocabularies (the official entity-disambiguation model's).

The reference is transformers: `BertTokenizer` (the `tokenizers`-backed one, transformers 5's
`BertTokenizerFast`) and `BertTokenizerLegacy` (the pure-Python one, v4's slow
`BertTokenizer`). The vocabulary (~400 pieces) is trained here on a small corpus with cased,
accented and CJK words, so that texts hit whole words, continuation pieces (`##`) and `[UNK]`.
Three directory layouts: BERT's classic one (vocab.txt, tokenizer.json, tokenizer_config.json,
special_tokens_map.json, as transformers 4's `save_pretrained` writes it and the official
checkpoint holds), the slow tokenizer's (vocab.txt, tokenizer_config.json) and transformers 5's
(tokenizer.json, tokenizer_config.json); each with the official `entity_vocab.jsonl`, which
has no `[MASK2]`.
"""

from __future__ import annotations

import json
import shutil
import unicodedata

import numpy as np
import pytest
import tokenizers
from tokenizers import models, normalizers, pre_tokenizers, trainers

from luke_jax import hub
from luke_jax.tokenization.tokenizer import LukeTokenizer

transformers = pytest.importorskip("transformers")
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy  # noqa: E402

CORPUS = [
    "Alice lives in Paris, the capital of France.",
    "alice lives in paris , the capital of france .",
    "Bob's café in Zürich serves crème brûlée! bob's cafe in zurich serves creme brulee!",
    "東京は日本の首都です。京都は古い都市です。",
    "Tokyo and Kyoto are cities in Japan; tokyo and kyoto are cities in japan.",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX.",
    "New York-based companies (e.g. IBM) grew 12.5% in 2021, said the Parisians.",
    "Frenchman, Frenchmen, running, jumped, jumping, unbelievable, international.",
    "Numbers: 3.14159, 1,000,000, 2nd, 3rd and 4th; naive naïve resume résumé.",
]
LAYOUTS = ("classic", "slow", "tokenizer_json")
TEXTS = [
    "Alice lives in Paris, the capital of France.",
    "ALICE LIVES IN PARIS",
    "Bob's café in Zürich serves crème brûlée!",
    "Ångström, naïve, façade, résumé, coöperate",
    "東京は日本の首都です。",
    "Tokyo (東京) and Kyoto (京都) are cities in Japan.",
    "New York-based companies (e.g. IBM) grew 12.5% in 2021.",
    "It's a well-known fact... isn't it?!",
    "a " + "abc" * 34 + " b " + "x" * 100,  # words of 102 and 100 characters
    "xyzzy qwxq zzz Ω ∑ unknown",
    "Emoji 😀 and symbols ™ © ± §",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\nhere",
    "",
    "[MASK] is a special token, [mask] is not, [CLS]x[SEP]",
    "Control\x00chars\u200bzero\ufeffwidth\ufffd",
    "İstanbul ΑΘΗΝΑ Straße",
    "mixed CamelCaseWords and snake_case_words",
    "Numbers: 3.14159, 1,000,000 and 2nd 3rd",
    "Ünïcödé Çàsè",
    "The quick brown fox jumps over the lazy dog.",
    "Quotes “curly” ‘single’ «guillemets» — dashes – here",
    "e\u0301 combining accent cafe\u0301",
    "Korean 한국어 and Thai ภาษาไทย",
    "URL http://example.com/path?q=1&r=2",
    "email alice@example.com #hashtag @mention $5",
    "Paris",
    "a",
    "Parisian Parisians Frenchman internationally",
    "\u3000ideographic\u3000space and nbsp\u00a0here",
    " ".join(["Alice lives in Paris, the capital of France."] * 8),
]
# (text, mentions): entity spans at word boundaries, in the order given (not sorted).
MENTIONS = [
    ("Alice lives in Paris, the capital of France.", ["Alice", "Paris", "France"]),
    ("Bob's café in Zürich serves crème brûlée!", ["Bob's", "café", "Zürich", "crème brûlée"]),
    ("東京は日本の首都です。", ["東京", "日本", "首都"]),
    ("Tokyo (東京) and Kyoto (京都) are cities in Japan.", ["東京", "Tokyo", "Japan"]),
    ("New York-based companies (e.g. IBM) grew", ["New York", "based", "IBM"]),
    ("Parisians unbelievable Frenchmen", ["Parisians", "unbelievable", "Frenchmen"]),
    ("ALICE and xyzzy Ω", ["ALICE", "xyzzy", "Ω"]),
]
SPANS = [(text, [(text.index(m), text.index(m) + len(m)) for m in mentions])
         for text, mentions in MENTIONS]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
  """A WordPiece vocabulary trained on `CORPUS` (cased, accents kept), as `vocab.txt`."""
  tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.train_from_iterator(CORPUS * 10, trainers.WordPieceTrainer(
      vocab_size=400, min_frequency=1,
      special_tokens=["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
  ids = tok.get_vocab()
  path = tmp_path_factory.mktemp("bert") / "vocab.txt"
  path.write_text("".join(t + "\n" for t in sorted(ids, key=ids.get)), encoding="utf-8")
  return path


def _write_entity_vocab(directory):
  """The official format; the entity-disambiguation model's vocabulary has no [MASK2]."""
  titles = ["[PAD]", "[UNK]", "[MASK]", "Paris", "France", "Tokyo"]
  (directory / "entity_vocab.jsonl").write_text("".join(
      json.dumps({"id": i, "entities": [[t, None if t.startswith("[") else "en"]],
                  "count": 0}) + "\n" for i, t in enumerate(titles)), encoding="utf-8")


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def lower(request):
  return request.param


@pytest.fixture(scope="module")
def references(vocab_file, lower):
  """transformers' fast and slow BERT tokenizers over the vocabulary."""
  fast = transformers.BertTokenizer(vocab=str(vocab_file), do_lower_case=lower)
  slow = BertTokenizerLegacy(str(vocab_file), do_lower_case=lower)
  return fast, slow


@pytest.fixture(scope="module")
def directories(tmp_path_factory, references, lower):
  """Layout name -> a tokenizer directory written by transformers (see the module docstring)."""
  fast, slow = references
  out = {}
  for layout in LAYOUTS:
    directory = tmp_path_factory.mktemp(f"{layout}_{lower}")
    if layout in ("classic", "slow"):
      slow.save_pretrained(directory)
    if layout in ("classic", "tokenizer_json"):
      fast.save_pretrained(directory)
    if layout == "classic":
      (directory / "special_tokens_map.json").write_text(json.dumps(
          {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]",
           "sep_token": "[SEP]", "unk_token": "[UNK]"}))
    _write_entity_vocab(directory)
    out[layout] = directory
  assert (out["tokenizer_json"] / "vocab.txt").exists() is False
  return out


@pytest.fixture(scope="module", params=LAYOUTS)
def ours(request, directories) -> LukeTokenizer:
  return LukeTokenizer.from_pretrained(directories[request.param])


def test_ids_equal_transformers(ours, references):
  fast, slow = references
  for text in TEXTS:
    want = fast(text)["input_ids"]
    # The references agree, but where the slow one composes accents (NFC) first and the cased
    # fast one leaves "e" + U+0301 for WordPiece: we follow the fast one, which the reference
    # entity-disambiguation code loads (AutoTokenizer).
    if unicodedata.normalize("NFC", text) == text or fast.do_lower_case:
      assert slow(text)["input_ids"] == want, text
    got = ours(text)
    assert got["input_ids"] == want, text
    assert got["attention_mask"] == [1] * len(want)
    assert ours.tokenize(text) == fast.tokenize(text), text
    assert ours.convert_tokens_to_ids(ours.tokenize(text)) == want[1:-1], text
    assert ours.convert_ids_to_tokens(want) == fast.convert_ids_to_tokens(want), text
    for skip in (False, True):
      assert ours.decode(want, skip_special_tokens=skip) == fast.decode(
          want, skip_special_tokens=skip), text
  # Words of more than 100 characters are [UNK], as BERT's max_input_chars_per_word.
  assert ours.tokenize("abc" * 34) == ["[UNK]"] and ours.tokenize("a" * 100) != ["[UNK]"]


def test_specials_take_bert_roles(ours, references):
  fast, _ = references
  assert ours.pad_token_id == fast.pad_token_id == 0
  assert (ours.cls_token_id, ours.sep_token_id, ours.unk_token_id, ours.mask_token_id) == (
      fast.cls_token_id, fast.sep_token_id, fast.unk_token_id, fast.mask_token_id)
  assert len(ours) == len(fast)
  assert ours.word_pieces.kind == "wordpiece"


def _expected_positions(fast, text, spans):
  """Per span, the (1-based: after [CLS]) positions of the tokens inside it, from the
  reference's character offsets."""
  offsets = fast(text, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
  return [[k + 1 for k, (a, b) in enumerate(offsets) if s <= a and b <= e and a < b]
          for s, e in spans]


def test_entity_spans_map_to_word_pieces(ours, references):
  fast, _ = references
  for text, spans in SPANS:
    got = ours(text, entity_spans=spans)
    assert got["input_ids"] == fast(text)["input_ids"], text
    assert got["entity_ids"] == [ours.entity_mask_token_id] * len(spans)
    positions = [[p for p in row if p >= 0] for row in got["entity_position_ids"]]
    assert positions == _expected_positions(fast, text, spans), text
    assert all(positions), text  # every span covers a word piece
  # Titles give entity ids; offsets are the reference's.
  text, spans = SPANS[0]
  got = ours(text, entity_spans=spans[1:], entities=["Paris", "France"],
             return_offsets_mapping=True)
  assert got["entity_ids"] == [ours.entity_vocab.lookup("Paris"),
                               ours.entity_vocab.lookup("France")]
  assert got["offset_mapping"] == [tuple(o) for o in fast(
      text, return_offsets_mapping=True)["offset_mapping"]]


def test_batches_pad_with_bert_pad(ours, references):
  fast, _ = references
  texts = [t for t, _ in SPANS]
  got = ours(texts, entity_spans=[s for _, s in SPANS], padding=True, return_tensors="np")
  want = fast(texts, padding=True, return_tensors="np")
  np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
  np.testing.assert_array_equal(got["attention_mask"], want["attention_mask"])
  for i, (text, spans) in enumerate(SPANS):
    single = ours(text, entity_spans=spans)
    n = len(spans)
    assert got["entity_position_ids"][i, :n].tolist() == single["entity_position_ids"]
    assert (got["entity_attention_mask"][i, n:] == 0).all()


def test_save_pretrained_round_trips(ours, references, tmp_path, vocab_file):
  fast, _ = references
  out = ours.save_pretrained(tmp_path / "saved")
  assert (out / "vocab.txt").read_bytes() == vocab_file.read_bytes()
  config = json.loads((out / "tokenizer_config.json").read_text())
  assert config["tokenizer_class"] == "BertTokenizer"
  assert config["do_lower_case"] == fast.do_lower_case
  again = LukeTokenizer.from_pretrained(out)
  theirs = transformers.AutoTokenizer.from_pretrained(out)
  for text, spans in SPANS:
    assert again(text, entity_spans=spans) == ours(text, entity_spans=spans)
  for text in TEXTS:
    assert theirs(text)["input_ids"] == ours(text)["input_ids"], text


def test_tasks_without_bert_markers_fail_clearly(directories):
  directory = directories["classic"]
  with pytest.raises(ValueError, match=r"'<ent>' .*not in this BERT WordPiece vocabulary"):
    LukeTokenizer.from_pretrained(directory, task="entity_classification")
  with pytest.raises(ValueError, match=r"\[MASK2\]"):  # the pair task's tail entity
    LukeTokenizer.from_pretrained(directory, task="entity_pair_classification")
  span_task = LukeTokenizer.from_pretrained(directory, task="entity_span_classification")
  got = span_task("Alice lives in Paris", entity_spans=[(0, 5), (15, 20)])
  assert got["entity_start_positions"] == [1, 4] and got["entity_end_positions"][0] == 1
  plain = LukeTokenizer.from_pretrained(directory)
  with pytest.raises(ValueError, match=r"BERT's \[CLS\] A \[SEP\] B \[SEP\] is not"):
    plain("Alice", "Paris")
  assert plain("Alice", "Paris", add_special_tokens=False)["input_ids"] == (
      plain.convert_tokens_to_ids(plain.tokenize("Alice") + plain.tokenize("Paris")))


def test_bad_vocabularies_name_the_file(directories, tmp_path):
  source = directories["slow"]
  directory = tmp_path / "no_mask"
  shutil.copytree(source, directory)
  lines = (directory / "vocab.txt").read_text(encoding="utf-8").splitlines()
  (directory / "vocab.txt").write_text("".join(t + "\n" for t in lines if t != "[MASK]"),
                                       encoding="utf-8")
  config = json.loads((directory / "tokenizer_config.json").read_text())
  config.pop("added_tokens_decoder")
  (directory / "tokenizer_config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match=r"vocab.txt: special tokens \['\[MASK\]'\] are not"):
    LukeTokenizer.from_pretrained(directory)
  # Tokens added past the vocabulary (ids past BERT's word embeddings) are refused.
  (directory / "vocab.txt").write_text("".join(t + "\n" for t in lines), encoding="utf-8")
  (directory / "added_tokens.json").write_text(json.dumps({"<ent>": len(lines)}))
  with pytest.raises(ValueError, match=r"vocab.txt: added token '<ent>' .*not in the vocab"):
    LukeTokenizer.from_pretrained(directory)


def test_hub_fetches_vocab_txt():
  assert "vocab.txt" in hub.TOKENIZER_FILES
