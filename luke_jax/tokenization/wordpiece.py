"""BERT WordPiece word pieces, for LUKE models built on BERT.

The official LUKE entity-disambiguation model (Yamada et al., NAACL 2022; studio-ousia/luke
examples/entity_disambiguation) is bert-base-uncased plus entity embeddings: its directory
holds BERT's `vocab.txt` and `tokenizer_config.json` (`do_lower_case`, ...) next to
`entity_vocab.jsonl`. The pieces are a `tokenizers.Tokenizer` assembled as transformers
assembles `BertTokenizer` (a WordPiece model over `vocab.txt`, `BertNormalizer` with the
config's options, `BertPreTokenizer`, the special tokens never split), which is what makes the
ids identical. `[CLS]`, `[SEP]`, `[PAD]`, `[UNK]` and `[MASK]` take the roles `<s>`, `</s>`,
`<pad>`, `<unk>` and `<mask>` have for RoBERTa. BERT has no entity markers (`<ent>`,
`<ent2>`): the tasks that insert them say so when asked for them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers

from luke_jax.tokenization.backends import WordPieces, _content

# transformers' BertTokenizer defaults for the keys of `tokenizer_config.json` it reads.
_OPTION_DEFAULTS = dict(do_lower_case=True, strip_accents=None, tokenize_chinese_chars=True)
_ROLE_DEFAULTS = dict(cls="[CLS]", sep="[SEP]", pad="[PAD]", unk="[UNK]", mask="[MASK]")
_ADDED_FLAGS = ("single_word", "lstrip", "rstrip", "normalized", "special")


class BertWordPieces(WordPieces):
  """WordPiece ids as BERT's tokenizer gives them (see the module docstring).

  Attributes:
    vocab: the tokens in id order, as `vocab.txt` lists them (written back by `save`).
    options: `do_lower_case`, `strip_accents`, `tokenize_chinese_chars`: the normaliser's
      settings, under their `tokenizer_config.json` names.
  """

  kind = "wordpiece"

  def __init__(self, tokenizer: tokenizers.Tokenizer, special: dict[str, str],
               vocab: list[str], options: dict[str, Any]):
    super().__init__(tokenizer, special)
    self.vocab = vocab
    self.options = options

  def special_id(self, role: str) -> int:
    if role in ("entity_1", "entity_2") and self.token_to_id(self.special[role]) is None:
      raise ValueError(f"the entity marker {self.special[role]!r} ({role}) is not in this BERT "
                       "WordPiece vocabulary; the tasks entity_classification and "
                       "entity_pair_classification insert it, so they need a vocabulary that "
                       "has it")
    return super().special_id(role)

  def config(self) -> dict[str, Any]:
    """The `tokenizer_config.json` entries that rebuild these pieces (with `vocab.txt`)."""
    added = {str(i): {"content": t.content, **{k: getattr(t, k) for k in _ADDED_FLAGS}}
             for i, t in sorted(self.tokenizer.get_added_tokens_decoder().items())}
    return dict(tokenizer_class="BertTokenizer", **self.options,
                **{f"{role}_token": self.special[role] for role in _ROLE_DEFAULTS},
                added_tokens_decoder=added)

  def save(self, directory: Path) -> None:
    """Writes `vocab.txt`, one token a line in id order, as transformers writes it."""
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in self.vocab),
                                         encoding="utf-8")


def from_vocab_file(vocab_file: Path, config: dict,
                    added_tokens_file: Path | None = None) -> BertWordPieces:
  """BERT's classic layout: `vocab.txt` and the options of `tokenizer_config.json`."""
  # As transformers' `load_vocab`: text-mode `readlines`, so a line ends at "\n", "\r\n" or
  # "\r" only (not at the other breaks `str.splitlines` knows); a later duplicate takes the id.
  with open(vocab_file, encoding="utf-8") as f:
    vocab = [line.rstrip("\n") for line in f.readlines()]
  added = []
  if added_tokens_file is not None and added_tokens_file.exists():
    added = [dict(content=k, id=int(v), special=False, normalized=True)
             for k, v in json.loads(added_tokens_file.read_text(encoding="utf-8")).items()]
  return _build(vocab, config, added, max_chars=100, source=str(vocab_file))


def is_wordpiece_json(path: Path) -> bool:
  """Whether a `tokenizer.json` holds a WordPiece model (BERT's) rather than BPE."""
  try:
    return json.loads(path.read_text(encoding="utf-8"))["model"]["type"] == "WordPiece"
  except (json.JSONDecodeError, KeyError, TypeError):
    return False  # the other reader reports what is wrong with it


def from_tokenizer_json(path: Path, config: dict) -> BertWordPieces:
  """The transformers 5 layout of a BERT tokenizer: a `tokenizer.json` with a WordPiece model.

  Its vocabulary and added tokens are read; its normaliser's settings fill the options that
  `tokenizer_config.json` leaves out (the config wins, as transformers' `BertTokenizer`).
  """
  data = json.loads(path.read_text(encoding="utf-8"))
  model = data["model"]
  if model.get("continuing_subword_prefix", "##") != "##":
    raise ValueError(f"{path}: model.continuing_subword_prefix is "
                     f"{model['continuing_subword_prefix']!r}; BERT's is '##'")
  normalizer, pre = data.get("normalizer") or {}, data.get("pre_tokenizer") or {}
  if normalizer.get("type") != "BertNormalizer" or pre.get("type") != "BertPreTokenizer":
    raise ValueError(f"{path}: a WordPiece tokenizer needs BERT's normalizer and "
                     f"pre-tokenizer (BertNormalizer, BertPreTokenizer), not "
                     f"{normalizer.get('type')} and {pre.get('type')}")
  if not normalizer.get("clean_text", True):
    raise ValueError(f"{path}: normalizer.clean_text is false; BERT's tokenizer cleans text")
  config = dict(config)
  for key, field in (("do_lower_case", "lowercase"), ("strip_accents", "strip_accents"),
                     ("tokenize_chinese_chars", "handle_chinese_chars")):
    if key not in config and field in normalizer:
      config[key] = normalizer[field]
  config.setdefault("unk_token", model.get("unk_token", "[UNK]"))
  ids = model["vocab"]
  vocab = sorted(ids, key=ids.get)
  if [ids[t] for t in vocab] != list(range(len(vocab))):
    raise ValueError(f"{path}: model.vocab ids are not 0..{len(vocab) - 1}")
  return _build(vocab, config, data.get("added_tokens") or [],
                max_chars=int(model.get("max_input_chars_per_word", 100)), source=str(path))


def _build(vocab: list[str], config: dict, added: list[dict], max_chars: int,
           source: str) -> BertWordPieces:
  if config.get("do_basic_tokenize", True) is False:
    raise ValueError(f"{source}: do_basic_tokenize=False (WordPiece over whitespace-split "
                     "text only) is not supported")
  options = {k: config.get(k, v) for k, v in _OPTION_DEFAULTS.items()}
  special = {role: _content(config.get(f"{role}_token"), default)
             for role, default in _ROLE_DEFAULTS.items()}
  special.update(bos=special["cls"], eos=special["sep"],
                 entity_1=_content(config.get("entity_token_1"), "<ent>"),
                 entity_2=_content(config.get("entity_token_2"), "<ent2>"))
  ids = {token: i for i, token in enumerate(vocab)}
  tok = tokenizers.Tokenizer(models.WordPiece(ids, unk_token=special["unk"],
                                              max_input_chars_per_word=max_chars))
  tok.normalizer = normalizers.BertNormalizer(
      clean_text=True, handle_chinese_chars=bool(options["tokenize_chinese_chars"]),
      strip_accents=options["strip_accents"], lowercase=bool(options["do_lower_case"]))
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.decoder = decoders.WordPiece(prefix="##")
  extra = [_content(t, "") for t in (config.get("additional_special_tokens")
                                     or config.get("extra_special_tokens") or [])]
  roles = [special[r] for r in _ROLE_DEFAULTS] + extra
  missing = [t for t in roles if t not in ids]
  if missing:
    raise ValueError(f"{source}: special tokens {missing} are not in the vocabulary")
  # Special tokens are never split (nor normalised); the files' own flags for them, and the
  # other tokens they list as added, come after and win, as in transformers.
  tokens = {t: AddedToken(t, special=True, normalized=False) for t in roles}
  listed = [dict(spec, id=int(i)) for i, spec in
            (config.get("added_tokens_decoder") or {}).items()] + list(added)
  for spec in listed:
    # Ids past the vocabulary would index past the word embeddings of the BERT model that
    # the vocabulary came with.
    if ids.get(spec["content"]) != spec["id"]:
      raise ValueError(f"{source}: added token {spec['content']!r} (id {spec['id']}) is not "
                       "in the vocabulary at that id; tokens added past the vocabulary are "
                       "not supported")
    tokens[spec["content"]] = AddedToken(spec["content"],
                                         **{k: spec[k] for k in _ADDED_FLAGS if k in spec})
  tok.add_tokens(list(tokens.values()))
  return BertWordPieces(tok, special, vocab, options)

