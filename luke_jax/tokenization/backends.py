"""Word-piece backends: byte-level BPE (RoBERTa / LUKE) and SentencePiece (XLM-R / mLUKE).

Byte-level BPE is a `tokenizers.Tokenizer`, assembled the way transformers 5 assembles
`LukeTokenizer`, which is what makes the ids identical: the same model, pre-tokenizer and added
special tokens, in the same order. SentencePiece runs through the `sentencepiece` library in
fairseq id order, as mLUKE was trained.

Most of the native byte-level time goes to its pre-tokenizer (a regex over a string that tracks
alignments), not to BPE. For ASCII and Latin-script text the same regex in Python, plus a cache
of each pre-token's ids, gives the very same ids several times faster (`_PlainBpe`); any other
text goes to the library.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tokenizers
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers

_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _added(content: str, spec: Any = None, **defaults) -> AddedToken:
  """An `AddedToken` from a string or a `tokenizer_config.json` dict (lstrip etc. honoured)."""
  options = dict(single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
  options.update(defaults)
  if isinstance(spec, dict):
    options.update({k: spec[k] for k in ("single_word", "lstrip", "rstrip") if k in spec})
  return AddedToken(content, **options)


def _content(spec: Any, default: str) -> str:
  if spec is None:
    return default
  return spec["content"] if isinstance(spec, dict) else str(spec)


class WordPieces:
  """Text -> word-piece ids, plus the id <-> token helpers the tokenizer exposes.

  Attributes:
    tokenizer: the `tokenizers.Tokenizer` (no post-processor: special tokens are added by
      `LukeTokenizer`, as the reference does).
    offset: added to every raw model id (1 for fairseq-aligned SentencePiece vocabularies).
  """

  kind = "bpe"

  def __init__(self, tokenizer: tokenizers.Tokenizer, special: dict[str, str]):
    self.tokenizer = tokenizer
    self.tokenizer.post_processor = None
    self.special = special  # role -> token, e.g. {"mask": "<mask>", "entity_1": "<ent>"}
    self._plain = _PlainBpe.build(tokenizer)
    # With a prefix space, each piece is encoded as if it opened a text (transformers encodes
    # the pieces around entity spans one by one), so the whole text's ids differ from theirs.
    self._whole_is_exact = not getattr(tokenizer.pre_tokenizer, "add_prefix_space", False)

  def is_plain(self, text: str) -> bool:
    """Whether `encode_batch` encodes `text` in Python (see `_PlainBpe`)."""
    return self._plain is not None and self._plain.accepts(text)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    if not texts:
      return []
    if self._plain is not None:
      plain = self._plain
      out = [plain.encode(t) if plain.accepts(t) else None for t in texts]
      rest = [i for i, ids in enumerate(out) if ids is None]
      if rest:
        for i, ids in zip(rest, self._encode_native([texts[i] for i in rest])):
          out[i] = ids
      return out
    return self._encode_native(texts)

  def encode_flat(self, texts: Sequence[str], plain: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """`encode_batch` as one array of all ids and the number of ids of each text.

    `plain`: the texts are known to pass `is_plain` (parts of texts that do), not checked again.
    """
    if plain or (self._plain is not None and all(map(self._plain.accepts, texts))):
      return self._plain.encode_flat(texts)
    return _flat(self.encode_batch(texts))

  def _encode_native(self, texts: Sequence[str]) -> list[list[int]]:
    # `encode_batch` costs more per text than `encode` (measured: ~30% more with the threads
    # off); only its threads win that back, so a few texts or a two-core machine go one by one.
    if len(texts) <= 32 or _CPUS <= 2:
      return [self._ids(self.tokenizer.encode(t, add_special_tokens=False)) for t in texts]
    # `encode_batch_fast` (tokenizers >= 0.20) skips the offsets, a third of the native time.
    encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
    return [self._ids(e) for e in encode(list(texts), add_special_tokens=False)]

  def encode_whole(self, texts: Sequence[str], cuts: Sequence[Sequence[int]]):
    """Encodes each text whole; `(ids, token index at each cut)`, or None where not exact.

    Byte-level BPE never merges across pre-tokens (the pieces its regex splits the text into),
    so when every cut falls between two pre-tokens, encoding the whole text gives exactly the
    ids of encoding its pieces one by one, in one native call instead of several. A cut inside
    a pre-token (a span edge inside a word) returns None and the caller encodes the pieces.
    """
    if not getattr(self, "_whole_is_exact", True):  # SentencePieces sets no such flag
      return [None] * len(texts)
    out = []
    # Whole texts are long enough for the library's threads to pay off, even on two cores.
    encodings = (self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
                 if len(texts) > 32 else
                 [self.tokenizer.encode(t, add_special_tokens=False) for t in texts])
    for text, text_cuts, e in zip(texts, cuts, encodings):
      at = []
      for c in text_cuts:
        if c >= len(text):
          at.append(len(e))
          continue
        k = e.char_to_token(c)
        # The cut must open a token, and that token must open a new pre-token ("word").
        if k is None or e.token_to_chars(k)[0] != c or (
            k > 0 and e.token_to_word(k) == e.token_to_word(k - 1)):
          at = None
          break
        at.append(k)
      out.append(None if at is None else (self._ids(e), at))
    return out

  def encode_batch_with_offsets(self, texts: Sequence[str]):
    """Ids and character offsets, trimmed of spaces as transformers' `trim_offsets=True`."""
    if not texts:
      return []
    # Special tokens that strip whitespace (`<mask>`'s lstrip) report it in their offsets;
    # theirs become the token's own characters.
    specials = {i: t for t in set(self.special.values())
                if (i := self.tokenizer.token_to_id(t)) is not None}
    out = []
    for text, e in zip(texts, self.tokenizer.encode_batch(list(texts),
                                                          add_special_tokens=False)):
      ids, offsets = self._ids(e), _trim_spaces(text, e.offsets)
      for k, idx in enumerate(ids):
        if idx in specials:
          start, end = offsets[k]
          found = text.find(specials[idx], start, end)
          if found >= 0:
            offsets[k] = (found, found + len(specials[idx]))
      out.append((ids, offsets))
    return out

  def _ids(self, encoding) -> list[int]:
    return list(encoding.ids)

  def token_to_id(self, token: str) -> int | None:
    return self.tokenizer.token_to_id(token)

  def id_to_token(self, idx: int) -> str | None:
    return self.tokenizer.id_to_token(idx)

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

  def __len__(self) -> int:
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  def special_id(self, role: str) -> int:
    idx = self.token_to_id(self.special[role])
    if idx is None:
      raise ValueError(f"special token {self.special[role]!r} ({role}) is not in the vocabulary")
    return idx


def _plain_chars() -> str:
  """The characters `_PlainBpe` encodes: ASCII and common Latin-script text.

  ASCII letters, digits, punctuation, space and the ASCII whitespace controls; Latin-1's letters
  and signs (no-break space and soft hyphen aside), Latin Extended-A and -B, combining
  diacritics (decomposed accents), general punctuation (dashes, curly quotes, ellipsis, per
  mille; its spaces and separators aside) and the euro sign. Every other space or control
  (Python counts U+001C..U+001F as spaces, Oniguruma does not) and every other script goes to
  the library: there, Python's and Oniguruma's Unicode tables may disagree. On these characters
  they agree, which `tests/test_tokenizer.py` checks character by character.
  """
  ranges = [(0x20, 0x7e), (0xa1, 0xac), (0xae, 0x24f), (0x300, 0x36f), (0x2010, 0x2027),
            (0x2030, 0x205e), (0x20ac, 0x20ac)]
  return "\t\n\x0b\x0c\r" + "".join(chr(c) for a, b in ranges for c in range(a, b + 1))


class _ByteMap(dict):
  """Character -> its byte-level string (the UTF-8 bytes as GPT-2's printable characters), as
  `str.translate` table, read from the library's own pre-tokenizer on first use."""

  def __init__(self, pre_tokenizer):
    super().__init__()
    self.pre_tokenizer = pre_tokenizer

  def __missing__(self, code: int) -> str:
    mapped = self[code] = self.pre_tokenizer.pre_tokenize_str(chr(code))[0][0]
    return mapped


class _PlainBpe:
  """Byte-level BPE of plain text, pre-tokenized in Python, with each pre-token's ids cached.

  Exact where it is used. The tokenizer must be exactly a byte-level pre-tokenizer (the GPT-2
  regex, no prefix space) and a BPE model, without dropout or normaliser. The text may hold
  only `_plain_chars()`, and no character that starts an added token (so no added token can
  match). Each pre-token is byte-mapped and encoded by the library's own BPE model once.
  """

  # Pre-tokens whose ids are kept (~30 MB at most); emptied when full, which a corpus' Zipfian
  # words refill in a few thousand sentences.
  CACHE_SIZE = 1 << 17

  def __init__(self, tokenizer: tokenizers.Tokenizer, excluded: str):
    self.model = tokenizer.model
    self.table = _ByteMap(tokenizer.pre_tokenizer)
    chars = _plain_chars()
    # The byte-level pre-tokenizer's regex, `\p{L}` and `\p{N}` spelt out over these
    # characters (all of whose spaces are ASCII, where `\s` means the same in both engines).
    letters = re.escape("".join(c for c in chars if unicodedata.category(c)[0] == "L"))
    digits = re.escape("".join(c for c in chars if unicodedata.category(c)[0] == "N"))
    self.split = re.compile(
        rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{letters}]+| ?[{digits}]+| ?[^\s{letters}{digits}]+"
        r"|\s+(?!\S)|\s+").findall
    self.other = re.compile("[^" + re.escape("".join(c for c in chars if c not in excluded))
                            + "]")
    self.cache: dict[str, list[int]] = {}

  @classmethod
  def build(cls, tokenizer: tokenizers.Tokenizer) -> "_PlainBpe | None":
    pre, model = tokenizer.pre_tokenizer, tokenizer.model
    if not (isinstance(pre, pre_tokenizers.ByteLevel) and pre.use_regex
            and not pre.add_prefix_space and tokenizer.normalizer is None
            and isinstance(model, models.BPE) and model.dropout is None):
      return None
    added = tokenizer.get_added_tokens_decoder().values()
    return cls(tokenizer, "".join(t.content[:1] for t in added))

  def accepts(self, text: str) -> bool:
    return self.other.search(text) is None

  def encode(self, text: str) -> list[int]:
    ids, cache = [], self.cache
    for word in self.split(text):
      piece = cache.get(word)
      if piece is None:
        piece = self._encode_word(word)
      ids += piece
    return ids

  def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    ids, lengths, cache, split = [], [], self.cache, self.split
    for text in texts:
      before = len(ids)
      for word in split(text):
        piece = cache.get(word)
        ids += self._encode_word(word) if piece is None else piece
      lengths.append(len(ids) - before)
    return np.asarray(ids, np.int64), np.asarray(lengths, np.int64)

  def _encode_word(self, word: str) -> list[int]:
    if len(self.cache) >= self.CACHE_SIZE:
      self.cache.clear()
    piece = self.cache[word] = [t.id for t in self.model.tokenize(word.translate(self.table))]
    return piece


def _special_names(config: dict) -> dict[str, str]:
  """Role -> token text, from `tokenizer_config.json` / `special_tokens_map.json` values."""
  names = {role: _content(config.get(f"{role}_token"), default) for role, default in
           (("bos", "<s>"), ("pad", "<pad>"), ("eos", "</s>"), ("unk", "<unk>"),
            ("sep", "</s>"), ("cls", "<s>"), ("mask", "<mask>"))}
  names["entity_1"] = _content(config.get("entity_token_1", config.get("entity_1_token")),
                               "<ent>")
  names["entity_2"] = _content(config.get("entity_token_2", config.get("entity_2_token")),
                               "<ent2>")
  return names


def _add_specials(tok: tokenizers.Tokenizer, config: dict, added_ids: dict[str, int],
                  source: str, mask_lstrip: bool) -> dict[str, str]:
  special = _special_names(config)
  tokens = [_added(special[r]) for r in ("bos", "pad", "eos", "unk")]
  tokens.append(_added(special["mask"], config.get("mask_token"), lstrip=mask_lstrip))
  entity_1, entity_2 = special["entity_1"], special["entity_2"]
  listed = [_content(t, "") for t in (config.get("extra_special_tokens")
                                      or config.get("additional_special_tokens") or [])]
  for name in listed + [t for t in (entity_1, entity_2) if t not in listed]:
    tokens.append(_added(name))
  tok.add_special_tokens(tokens)
  for name, idx in added_ids.items():
    if tok.token_to_id(name) != idx:
      raise ValueError(f"{source}: added token {name!r} has id {idx} in added_tokens.json but "
                       f"{tok.token_to_id(name)} after loading the vocabulary")
  return special


def bpe_from_files(vocab_file: Path, merges_file: Path, config: dict,
                   added_tokens_file: Path | None = None) -> WordPieces:
  """Byte-level BPE from `vocab.json` + `merges.txt` (the classic RoBERTa/LUKE layout)."""
  try:
    vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise ValueError(f"{vocab_file}: not valid JSON ({e})") from None
  merges = []
  for line_no, line in enumerate(merges_file.read_text(encoding="utf-8").splitlines(), 1):
    if line.startswith("#version") or not line.strip():
      continue
    parts = line.split(" ")
    if len(parts) != 2:
      raise ValueError(f"{merges_file}:{line_no}: a merge is two tokens separated by a space")
    merges.append((parts[0], parts[1]))
  added_ids = {}
  if added_tokens_file is not None and added_tokens_file.exists():
    added_ids = {k: int(v) for k, v in json.loads(added_tokens_file.read_text()).items()}
  tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None,
                                        continuing_subword_prefix="", end_of_word_suffix="",
                                        fuse_unk=False))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(
      add_prefix_space=bool(config.get("add_prefix_space", False)))
  tok.decoder = decoders.ByteLevel()
  special = _add_specials(tok, config, added_ids, str(vocab_file),
                          mask_lstrip=False)
  return WordPieces(tok, special)


class SentencePieces(WordPieces):
  """XLM-R / mLUKE word pieces through the `sentencepiece` library, in fairseq id order.

  fairseq puts `<s> <pad> </s> <unk>` at 0..3 and shifts SentencePiece's ids by one (its own
  `<unk>` at 0 becomes 3), `<mask>` follows the last piece and the entity markers follow that.
  Special tokens in the text are split off first, as transformers' slow tokenizers do (`<mask>`
  also takes the spaces before it); the text between them is encoded by SentencePiece itself,
  with its own normalisation, as the released mLUKE models were trained.
  """

  kind = "sentencepiece"
  OFFSET = 1

  def __init__(self, processor, special: dict[str, str]):
    self.processor = processor
    self.special = special
    size = processor.GetPieceSize()
    self.ids = {special["bos"]: 0, special["pad"]: 1, special["eos"]: 2, special["unk"]: 3,
                special["mask"]: size + self.OFFSET, special["entity_1"]: size + 2,
                special["entity_2"]: size + 3}
    self.tokens = {v: k for k, v in self.ids.items()}
    names = sorted(self.ids, key=len, reverse=True)
    self._split = re.compile("(" + "|".join(re.escape(t) for t in names) + ")")
    self._lstrip = {special["mask"]}

  def _chunks(self, text: str) -> list[tuple[str, int, int | None]]:
    """`(chunk, char_start, special_id or None)` with special tokens split off."""
    out, pos = [], 0
    for part in self._split.split(text):
      if not part:
        continue
      if part in self.ids:
        if part in self._lstrip and out and out[-1][2] is None:
          chunk, start, _ = out.pop()
          stripped = chunk.rstrip()
          if stripped:
            out.append((stripped, start, None))
        out.append((part, pos, self.ids[part]))
      else:
        out.append((part, pos, None))
      pos += len(part)
    return out

  def _encode(self, texts: Sequence[str], offsets: bool):
    chunked = [self._chunks(t) for t in texts]
    plain = [c for chunks in chunked for c, _, special in chunks if special is None]
    if offsets:
      encoded = _encode_with_offsets(self.processor, plain) if plain else []
    else:
      encoded = [(ids, None) for ids in self._encode_raw(plain)]
    results, k = [], 0
    for chunks in chunked:
      ids, offs = [], []
      for chunk, start, special in chunks:
        if special is not None:
          ids.append(special)
          offs.append((start, start + len(chunk)))
          continue
        raw, raw_offsets = encoded[k]
        k += 1
        ids += [i + self.OFFSET if i else self.ids[self.special["unk"]] for i in raw]
        if offsets:
          offs += [(start + a, start + b) for a, b in raw_offsets]
      results.append((ids, offs))
    return results

  def _encode_raw(self, texts: list[str]) -> list[list[int]]:
    # A batched call costs ~150 us before the first text, threads or not (measured); a few
    # texts go one by one (~5 us each).
    if len(texts) < 64:
      # Empty texts (pieces between equal cuts) are common and need no call.
      return [self.processor.encode(t) if t else [] for t in texts]
    return self.processor.encode(texts)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [ids for ids, _ in self._encode(texts, offsets=False)]

  def encode_flat(self, texts: Sequence[str], plain: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """`encode_batch` as one array of all ids and the number of ids of each text."""
    del plain  # (byte-level BPE's)
    # "\0" joins the texts so that no special token can form across two of them.
    if self._split.search("\0".join(texts)) is not None:
      return _flat(self.encode_batch(texts))
    raw = self._encode_raw(list(texts))
    lengths = np.fromiter(map(len, raw), np.int64, len(raw))
    ids = np.fromiter(itertools.chain.from_iterable(raw), np.int64, int(lengths.sum()))
    return np.where(ids == 0, self.ids[self.special["unk"]], ids + self.OFFSET), lengths

  def encode_batch_with_offsets(self, texts: Sequence[str]):
    return self._encode(texts, offsets=True)

  def token_to_id(self, token: str) -> int:
    if token in self.ids:
      return self.ids[token]
    idx = self.processor.PieceToId(token)
    return idx + self.OFFSET if idx else self.ids[self.special["unk"]]

  def id_to_token(self, idx: int) -> str | None:
    if idx in self.tokens:
      return self.tokens[idx]
    if 0 < idx - self.OFFSET < self.processor.GetPieceSize():
      return self.processor.IdToPiece(idx - self.OFFSET)
    return None

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    tokens = [self.id_to_token(i) for i in ids]
    if skip_special_tokens:
      tokens = [t for t in tokens if t not in self.ids]
    return "".join(t or "" for t in tokens).replace("\u2581", " ").strip()

  def __len__(self) -> int:
    return self.processor.GetPieceSize() + 4


def _flat(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
  lengths = np.fromiter(map(len, lists), np.int64, len(lists))
  return (np.fromiter(itertools.chain.from_iterable(lists), np.int64, int(lengths.sum())),
          lengths)


def _trim_spaces(text: str, offsets) -> list[tuple[int, int]]:
  """Drops the spaces at either end of each token's span, as transformers' `trim_offsets=True`.

  Byte-level BPE (`Ġword`) and SentencePiece (`▁word`) tokens carry the space before them; the
  Hugging Face fast tokenizers report offsets without it, and so do we. A token that is only
  spaces becomes empty at its end.
  """
  out = []
  for start, end in offsets:
    while start < end and text[start] == " ":
      start += 1
    while end > start and text[end - 1] == " ":
      end -= 1
    out.append((start, end))
  return out


def _encode_with_offsets(processor, texts: list[str]) -> list[tuple[list[int], list]]:
  """Raw SentencePiece ids with trimmed character offsets, in one batched call."""
  try:  # sentencepiece >= 0.2.1 returns character offsets itself ...
    encoded = processor.encode(texts, return_type="offset_mapping")
    return [(list(e["ids"]), _trim_spaces(t, e["offsets"])) for t, e in zip(texts, encoded)]
  except TypeError:  # ... older versions only have protos with UTF-8 byte offsets.
    protos = processor.encode(texts, out_type="immutable_proto")
    return [([p.id for p in proto.pieces], _trim_spaces(t, _char_offsets(t, proto)))
            for t, proto in zip(texts, protos)]


def _char_offsets(text: str, proto) -> list[tuple[int, int]]:
  """SentencePiece reports UTF-8 byte offsets; the tokenizer speaks characters."""
  byte_to_char = {}
  pos = 0
  for i, ch in enumerate(text):
    byte_to_char[pos] = i
    pos += len(ch.encode("utf-8"))
  byte_to_char[pos] = len(text)
  return [(byte_to_char.get(p.begin, len(text)), byte_to_char.get(p.end, len(text)))
          for p in proto.pieces]


def sentencepiece_from_file(model_file: Path, config: dict) -> SentencePieces:
  """A `sentencepiece.bpe.model` (XLM-R's, or one trained by this project)."""
  import sentencepiece  # pylint: disable=g-import-not-at-top
  processor = sentencepiece.SentencePieceProcessor()
  try:
    processor.Load(str(model_file))
  except (OSError, RuntimeError) as e:
    raise ValueError(f"{model_file}: not a SentencePiece model ({e})") from None
  special = _special_names(config)
  # transformers 5 writes the markers as "▁<ent>"; the pieces themselves are "<ent>".
  special["entity_1"] = special["entity_1"].lstrip("\u2581")
  special["entity_2"] = special["entity_2"].lstrip("\u2581")
  return SentencePieces(processor, special)


def from_tokenizer_json(path: Path, config: dict) -> WordPieces:
  """The transformers 5 layout: a serialised `tokenizers.Tokenizer`."""
  try:
    tok = tokenizers.Tokenizer.from_file(str(path))
  except Exception as e:  # tokenizers raises a bare Exception on parse errors
    raise ValueError(f"{path}: not a tokenizers file ({e})") from None
  special = _special_names(config)
  return WordPieces(tok, special)
