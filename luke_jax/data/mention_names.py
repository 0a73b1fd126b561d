"""Mention names: BERT-uncased normalisation with character offsets, and 64-bit name hashes.

**Names.** A name is text normalised as BERT's uncased `BasicTokenizer` does (the tokenizer of
the reference's mention database, studio-ousia/luke
examples/utils/wiki_entity_linker/mention_db.py, plus its lowercasing normaliser): control
characters and U+FFFD are dropped, text is split at whitespace, each punctuation character
(Unicode category P*, and every ASCII character that is not a letter or digit) and each CJK
ideograph is a token of its own, and every token is lowercased, NFD-decomposed and stripped
of combining marks (Mn). The tokens joined by one space are the name (`normalize_mention`);
normalising a name again gives it back. It is implemented with `re` and `unicodedata` only.
One difference from BERT, shared with the reference: tokens are lowercased after the
punctuation split, so a Greek capital sigma before a full stop inside a word may become final
sigma where BERT keeps it medial.

**Hashes.** The hash of a name folds the 8-byte BLAKE2b digests of its tokens (`fold`, then
`finish`, splitmix64's finaliser salted with the token count), so the hashes of every token
n-gram of a text come out of a few vectorised numpy operations (`ngram_hashes`) and equal the
hashes of the same names computed from their strings (`name_hashes`, `name_hash`). 64 bits
are no proof of identity: `luke_jax.data.mention_db` checks every hit against the stored name.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from typing import Sequence

import numpy as np

# -- normalisation ---------------------------------------------------------------------------
# BERT's `_is_chinese_char` blocks: each ideograph is a token of its own.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# Code points scanned for punctuation and spaces: planes 0-3 and 14. Planes 4-13 are
# unassigned and 15-16 private use (category C*, dropped like BERT's control characters).
_SCANNED = (range(0, 0x40000), range(0xE0000, 0xF0000))


def _is_punctuation(char: str) -> bool:
  code = ord(char)
  if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
    return True
  return unicodedata.category(char).startswith("P")


def _class(codes: list[int]) -> str:
  """A regex character class body for `codes` (sorted), as ranges."""
  parts, i = [], 0
  while i < len(codes):
    j = i
    while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
      j += 1
    first, last = re.escape(chr(codes[i])), re.escape(chr(codes[j]))
    parts.append(first if i == j else f"{first}-{last}")
    i = j + 1
  return "".join(parts)


_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


@functools.cache
def _token_patterns() -> tuple[re.Pattern, re.Pattern]:
  """One match per BERT basic token: a lone punctuation mark or ideograph, or a run of others.

  Built once per process from `unicodedata` (~0.4 s). Spaces are BERT's (space, tab, newline,
  carriage return, category Zs) plus the line and paragraph separators that its final
  `str.split` also splits at. A character whose canonical decomposition holds punctuation
  (U+1FEF -> "`") stands alone as well, since BERT splits after stripping accents.

  Returns:
    A pattern for text within the Basic Multilingual Plane, and one for any text: `re` tests
    a character against each range above U+FFFF of a class one by one (about 50 here), which
    makes the second four times slower on ordinary text.
  """
  single, space = [], []
  cjk = {code for first, last in _CJK_RANGES for code in range(first, last + 1)}
  for block in _SCANNED:
    for code in block:
      char = chr(code)
      category = unicodedata.category(char)
      if category in ("Zs", "Zl", "Zp") or char in " \t\n\r":
        space.append(code)
      elif code in cjk or category[0] == "P" or _is_punctuation(char):
        single.append(code)
      elif (category[0] in "LMNS" and unicodedata.decomposition(char)[:1] not in ("", "<")
            and any(map(_is_punctuation, _strip_accents(char.lower())))):
        single.append(code)
  bmp = [code for code in single if code <= 0xFFFF]
  single_class, bmp_class, space_class = _class(single), _class(bmp), _class(space)
  return (re.compile(f"[{bmp_class}]|[^{bmp_class}{space_class}]+"),
          re.compile(f"[{single_class}]|[^{single_class}{space_class}]+"))


def _strip_accents(token: str) -> str:
  """NFD without combining marks (Mn) and without the characters BERT deletes (C*, U+FFFD)."""
  return "".join(c for c in unicodedata.normalize("NFD", token)
                 if c != "\ufffd" and unicodedata.category(c)[0] != "C"
                 and unicodedata.category(c) != "Mn")


@functools.lru_cache(maxsize=1 << 16)
def _normalize_token(token: str) -> str:
  token = token.lower()
  if token.isascii() and token.isprintable():
    return token  # nothing to decompose or delete
  return _strip_accents(token)


def tokenize(text: str) -> list[tuple[str, int, int]]:
  """`(normalised token, start, end)` per token of `text`; `text[start:end]` is its surface.

  Tokens whose normalised form is empty (a lone combining mark, a zero-width space) are
  dropped, as BERT drops them.
  """
  tokens = []
  bmp, full = _token_patterns()
  for match in (full if _ASTRAL.search(text) else bmp).finditer(text):
    token = _normalize_token(match.group())
    if token:
      tokens.append((token, match.start(), match.end()))
  return tokens


def words(text: str) -> list[str]:
  """The normalised tokens of `text` (`tokenize` without offsets, faster)."""
  bmp, full = _token_patterns()
  pattern = full if _ASTRAL.search(text) else bmp
  return [token for token in map(_normalize_token, pattern.findall(text)) if token]


def normalize_mention(text: str) -> str:
  """The name of `text`: its normalised tokens joined by one space (see the module docstring).

  >>> normalize_mention("Café  Müller's (band)")
  "cafe muller ' s ( band )"
  """
  return " ".join(words(text))


# -- hashing ---------------------------------------------------------------------------------
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31 = np.uint64(27), np.uint64(30), np.uint64(31)


@functools.lru_cache(maxsize=1 << 18)
def _digest(token: str) -> bytes:
  return hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()


def token_hashes(tokens: Sequence[str]) -> np.ndarray:
  """[len(tokens)] uint64: the little-endian 8-byte BLAKE2b digest of each token's UTF-8."""
  return np.frombuffer(b"".join(map(_digest, tokens)), dtype="<u8").astype(np.uint64)


def string_hashes(strings: Sequence[str]) -> np.ndarray:
  """[len(strings)] uint64 digests of whole strings (titles), uncached."""
  return np.frombuffer(b"".join(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest()
                                for s in strings), dtype="<u8").astype(np.uint64)


def fold(state: np.ndarray, token: np.ndarray) -> np.ndarray:
  """The running state of a name after one more token (order-sensitive, non-linear)."""
  return (state ^ (state >> _S31)) * _MULTIPLIER + token


def finish(state: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """splitmix64's finaliser over the state salted with the token count."""
  z = state + lengths.astype(np.uint64) * _MULTIPLIER
  z = (z ^ (z >> _S30)) * _MIX1
  z = (z ^ (z >> _S27)) * _MIX2
  return z ^ (z >> _S31)


def ngram_hashes(hashes: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray]:
  """Hashes of every n-gram (n <= max_length) of a token sequence, from its token hashes.

  Args:
    hashes: [T] uint64 token hashes (`token_hashes`).
    max_length: longest n-gram.

  Returns:
    `(ngram_hash, start, length)`, three [K] arrays (K = number of n-grams), n-grams ordered by
    length, then start.
  """
  count = len(hashes)
  out, starts, lengths = [], [], []
  state = hashes
  for n in range(1, min(max_length, count) + 1):
    if n > 1:
      state = fold(state[:-1], hashes[n - 1:])
    out.append(finish(state, np.full(len(state), n, np.uint64)))
    starts.append(np.arange(len(state), dtype=np.int64))
    lengths.append(np.full(len(state), n, np.int64))
  if not out:
    return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64)
  return np.concatenate(out), np.concatenate(starts), np.concatenate(lengths)


_MASK = (1 << 64) - 1


def name_hash(tokens: Sequence[str]) -> int:
  """The hash of one name given as its tokens; `name_hashes` in plain Python integers (a
  lookup of one name spends ~2 microseconds here against ~40 in numpy's per-call overhead)."""
  digests = [int.from_bytes(_digest(token), "little") for token in tokens]
  multiplier, mix1, mix2 = int(_MULTIPLIER), int(_MIX1), int(_MIX2)
  state = digests[0]
  for digest in digests[1:]:
    state = (((state ^ (state >> 31)) * multiplier) + digest) & _MASK
  z = (state + len(digests) * multiplier) & _MASK
  z = ((z ^ (z >> 30)) * mix1) & _MASK
  z = ((z ^ (z >> 27)) * mix2) & _MASK
  return z ^ (z >> 31)


def name_hashes(names: Sequence[str], prefixes: bool = False) -> np.ndarray:
  """Hashes of normalised names (tokens separated by one space).

  Args:
    names: the names.
    prefixes: also return the hash of every shorter token prefix of every name.

  Returns:
    [len(names)] uint64 hashes in order; with `prefixes`, the hashes of all prefixes (the
    names included) after them, unordered and not deduplicated.
  """
  # One split of one joined string: a list per name would cost millions of allocations.
  lengths = np.fromiter((name.count(" ") + 1 for name in names), np.int64, len(names))
  flat = token_hashes(" ".join(names).split(" ") if len(names) else [])
  starts = np.zeros(len(names), np.int64)
  np.cumsum(lengths[:-1], out=starts[1:])
  state = flat[starts] if len(names) else np.zeros(0, np.uint64)
  shorter = [finish(state[lengths > 1], np.ones(int((lengths > 1).sum()), np.int64))]
  for k in range(1, int(lengths.max(initial=0))):
    longer = np.flatnonzero(lengths > k)
    state[longer] = fold(state[longer], flat[starts[longer] + k])
    if prefixes:
      proper = longer[lengths[longer] > k + 1]
      shorter.append(finish(state[proper], np.full(len(proper), k + 1, np.int64)))
  hashes = finish(state, lengths)
  return np.concatenate([hashes] + shorter) if prefixes else hashes
