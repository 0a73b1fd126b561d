"""Raw text -> words with character offsets, in the spirit of the CoNLL-2003 tokenization.

LUKE's NER head classifies spans of *words* (Yamada et al., EMNLP 2020, section 4.3), and the
fine-tuned models saw CoNLL-2003 tokens: Penn-Treebank-style words where punctuation stands
apart (`Los Angeles .`), clitics are split off (`Germany 's`, `do n't`) and abbreviations keep
their periods (`U.S.`). Splitting raw text the same way keeps the model on its training
distribution; splitting on whitespace alone would make `Angeles.` one word whose span can never
equal the entity `Los Angeles`.

The rules, in order of precedence at each position (a regular expression; the first rule that
matches wins):

1. Letter-period abbreviations: `U.S.`, `e.g.`, `U.K.` (two or more letter + `.` pairs).
2. A few titles, company suffixes and month names with their period (`Mr.`, `Dr.`, `St.`,
   `Inc.`, `Ltd.`, `Co.`, `Corp.`, `Jan.` ... ; case-sensitive, see `_TITLES`) and an uppercase
   initial (`J. Smith`). Any other word-final period is sentence punctuation and stands alone.
3. Runs of `...` and `--`; a clitic standing alone (`'s` in `Germany 's`, CoNLL's spelling).
4. Words: letters, digits, combining marks (so decomposed accents and Indic vowel signs stay
   inside their word) and zero-width (non-)joiners, joined inside by hyphens, apostrophes,
   periods, `&` and `·` (`COVID-19`, `O'Neil`, `AT&T`, `example.com`, `3.5`), and by `,` `:` `/`
   between digits (`1,000`, `10:30`, `1/2`). PTB clitics are then split off the end: `'s`, `'re`,
   `'ve`, `'ll`, `'d`, `'m` and `n't` (`Beyoncé's` -> `Beyoncé` `'s`, `don't` -> `do` `n't`).
5. Any other character is a word of its own (punctuation, symbols, emoji; trailing combining
   marks and variation selectors stay with it).

Whitespace of any kind separates words (Unicode spaces, tabs, newlines, NBSP, U+3000), and so
do the invisible U+200B, U+2060, U+FEFF and control characters; none of them is ever inside a
word. Scripts written without spaces (Chinese, Japanese, Thai) come out as one word per run of
characters: this is no word segmenter.

Every word is `text[start:end]` of the input, unnormalised, so predicted spans map back to
exact character offsets.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from typing import NamedTuple

# Rule 2's words (the PTB tokenizer's and CoNLL's usual abbreviations). Case-sensitive, so the
# sentence-final "no." or "co." of ordinary prose is not taken for one.
_TITLES = ("Mr", "Mrs", "Ms", "Dr", "Prof", "St", "Jr", "Sr", "Inc", "Ltd", "Co", "Corp", "Mt",
           "Gen", "Gov", "Sen", "Rep", "Rev", "Capt", "Col", "Lt", "Sgt", "vs", "etc", "Jan",
           "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec")
# Separators besides `\s`: zero-width space, word joiner, BOM, and C0/C1 control characters.
_SEPARATORS = r"\u200b\u2060\ufeff\x00-\x08\x0e-\x1b\x7f-\x9f"
_JOINERS = r"\u00ad\u200c\u200d"  # soft hyphen, ZWNJ, ZWJ: invisible parts of a word
_CLITIC = re.compile(r"(?i)^(.+?)(n['\u2019]t|['\u2019](?:s|re|ve|ll|d|m))$")


class Word(NamedTuple):
  """One word: `text == source[start:end]` of the string it was split from."""
  text: str
  start: int
  end: int


def split_words(text: str) -> list[Word]:
  """The words of `text` with their character offsets (see the module docstring for the rules).

  Args:
    text: any string.

  Returns:
    The words in order; `[]` for a text of only whitespace.
  """
  words = []
  for match in _pattern().finditer(text):
    start, end = match.span()
    clitic = _CLITIC.match(match.group()) if match.lastgroup == "word" else None
    if clitic:
      cut = start + len(clitic.group(1))
      words.append(Word(text[start:cut], start, cut))
      start = cut
    words.append(Word(text[start:end], start, end))
  return words


@functools.cache
def _marks() -> str:
  """Every combining mark (Unicode categories Mn, Mc, Me) as character-class ranges; `\\w` has
  none of them (`str.isalnum` is false for marks)."""
  codes = [c for c in itertools.chain(range(0x30000), range(0xE0100, 0xE01F0))
           if unicodedata.category(chr(c)).startswith("M")]
  ranges, first = [], None
  for prev, code in zip([None] + codes, codes):
    if prev is None or code != prev + 1:
      if first is not None:
        ranges.append((first, prev))
      first = code
  ranges.append((first, codes[-1]))
  return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)


@functools.cache
def _pattern() -> re.Pattern:
  marks = _marks()
  word_char = rf"[\w{marks}{_JOINERS}]"
  letter = r"[^\W\d_]"
  titles = "|".join(sorted(_TITLES, key=len, reverse=True))
  rules = [
      rf"(?:{letter}\.){{2,}}",                         # 1. U.S., e.g.
      rf"(?:{titles})\.|[A-Z\u00c0-\u00d6\u00d8-\u00de]\.(?!{word_char})",  # 2. Mr., Inc., J.
      r"\.{2,}|-{2,}",                                  # 3. ... --
      rf"(?i:['\u2019](?:s|re|ve|ll|d|m))(?!{word_char})",  # 3. a clitic on its own: 's
      (rf"(?P<word>{word_char}+(?:(?:[-\u2010\u2011'\u2019.&\u00b7]|(?<=\d)[,:/](?=\d))"
       rf"{word_char}+)*)"),                            # 4. words, numbers
      rf"[^\s{_SEPARATORS}][{marks}]*",                 # 5. anything else, alone
  ]
  return re.compile("|".join(rules))
