"""A tiny entity disambiguation dataset in the official format, and its tokenizer and model.

Shared by `test_entity_disambiguation*.py`: the mention files (`*.csv`), word files
(`aida_train.txt`, `testa_testb_aggregate_original`, `ace2004.conll`), `persons.txt`, a titles
and a redirects file; a BPE tokenizer whose entity vocabulary holds the titles; a random tiny
`LukeForMaskedLM` checkpoint with that tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from conftest import write_luke_tokenizer_dir

TITLES = ["Barack Obama", "Obama (surname)", "Angela Merkel", "Paris", "Paris Hilton",
          "Obama, Fukui", "France", "Japan", "Japan national football team", "China",
          "Michael Jordan", "Jordan", "AT&T", "Syria"]
# In the titles file but not in the entity vocabulary: a candidate the features map to [UNK].
KB_ONLY = ["Paris (mythology)"]
PERSONS = ["Barack Obama", "Michael Jordan", "Paris Hilton"]
REDIRECTS = {"Paris, France": "Paris", "Obama": "Barack Obama"}


def _word_lines(words):
  """CoNLL lines: `(word, None)` plain, `(word, (tag, mention, title))` inside a mention."""
  lines = []
  for word, tag in words:
    if tag is None:
      lines.append(word)
    else:
      lines.append("\t".join([word, tag[0], tag[1], tag[2], "http://en.wikipedia.org/x", "1",
                              "/m/x"]))
  return lines


def _mention_line(doc_id, mention, candidates, gold):
  """A mention file line; `candidates` `(prior, title)` (None: EMPTYCAND); `gold` as written."""
  cands = (["EMPTYCAND"] if candidates is None
           else [f"{i + 10},{p},{t}" for i, (p, t) in enumerate(candidates)])
  return "\t".join([doc_id, doc_id, mention, "left ctx", "right ctx", "CANDIDATES", *cands,
                    "GT:", gold])


def _doc(words_spec):
  """'Barack|B Obama|I met' -> [(word, tag)...]; `|B`/`|I` mark mention words ('' = break)."""
  out = []
  for token in words_spec.split(" "):
    if token == "<br>":
      out.append(("", None))
    elif "|" in token:
      word, tag = token.split("|")
      out.append((word, (tag, "m", "t")))
    else:
      out.append((token, None))
  return out


TRAIN_DOCS = [
    ("1 EU", "Barack|B Obama|I met Merkel|B in Paris|B . <br> Obama|B left for Japan|B ."),
    ("Jiří_Třanovský", "Paris|B is nice ."),
    ("2 SPORT", "Jordan|B scored as China|B lost to Syria|B in Paris|B ."),
]
TRAIN_MENTIONS = [
    ("1 EU", "Barack Obama", [(0.9, "Barack Obama"), (0.1, "Obama (surname)")],
     "0,10,0.9,Barack Obama"),
    ("1 EU", "Merkel", [(0.8, "Angela Merkel")], "0,10,0.8,Angela Merkel"),
    # Gold redirected to Paris; candidates in file order not sorted by prior.
    ("1 EU", "Paris", [(0.2, "Paris Hilton"), (0.7, "Paris, France"), (0.1, "Paris (mythology)")],
     "1,11,0.7,Paris, France"),
    # Coreference: "obama" is word-bounded in "barack obama", a person's mention.
    ("1 EU", "Obama", [(0.6, "Obama (surname)"), (0.4, "Obama, Fukui")], "-1,1,Barack Obama"),
    ("1 EU", "Japan", None, "-1,1,Japan"),  # EMPTYCAND
    ("Jiří_Třanovský", "Paris", [(1.0, "Paris")], "0,1,1.0,Paris"),
    ("2 SPORT", "Jordan", [(0.5, "Jordan"), (0.5, "Michael Jordan")], "1,2,0.5,Michael Jordan"),
    ("2 SPORT", "China", [(1.0, "China")], "-1"),  # no gold: skipped, its span passed over
    ("2 SPORT", "Syria", [(1.0, "Syria")], "0,1,1.0,Syria"),
    ("2 SPORT", "Paris", [(0.9, "Paris"), (0.1, "Paris Hilton")], "0,1,0.9,Paris"),
]
TEST_DOCS = [
    ("947testa CRICKET", "France|B beat Japan|B ."),
    ("1163testb SOCCER", "SOCCER - JAPAN|B GET WIN , CHINA|B IN DEFEAT . <br> AT&T|B sponsor "
     "Michael|B Jordan|I ."),
]
TEST_A_MENTIONS = [
    ("947testa CRICKET", "France", [(0.9, "France"), (0.1, "Paris")], "0,1,0.9,France"),
    ("947testa CRICKET", "Japan", [(0.6, "Japan"), (0.4, "Japan national football team")],
     "1,2,0.4,Japan national football team"),
]
TEST_B_MENTIONS = [
    ("1163testb SOCCER", "JAPAN", [(0.6, "Japan"), (0.4, "Japan national football team")],
     "1,2,0.4,Japan national football team"),
    ("1163testb SOCCER", "CHINA", [(1.0, "China")], "0,1,1.0,China"),
    ("1163testb SOCCER", "AT&T", [(1.0, "AT&T")], "0,1,1.0,AT&amp;T"),  # &amp; in the gold
    # Gold outside the titles file: dropped as out of the knowledge base.
    ("1163testb SOCCER", "Michael Jordan", [(1.0, "Michael Jordan")],
     "-1,1,Michael Jordan (footballer)"),
]
ACE_DOCS = [("ace1", "Merkel|B visited France|B .")]
ACE_MENTIONS = [
    ("ace1", "Merkel", [(1.0, "Angela Merkel")], "0,1,1.0,Angela Merkel"),
    ("ace1", "France", [(0.5, "France"), (0.5, "Paris")], "0,1,0.5,France"),
]


def _word_file(docs):
  """A word file: `-DOCSTART- (<id>` then the CoNLL lines of each `(id, spec)` document."""
  lines = []
  for doc_id, spec in docs:
    lines.append(f"-DOCSTART- ({doc_id}")
    lines += _word_lines(_doc(spec))
  return "\n".join(lines) + "\n"


def write_dataset(directory: Path) -> Path:
  """The dataset directory, plus `titles.txt` and `redirects.tsv` in it."""
  directory.mkdir(parents=True, exist_ok=True)

  def mentions(rows):
    return "\n".join(_mention_line(*row) for row in rows) + "\n"

  (directory / "aida_train.txt").write_text(_word_file(TRAIN_DOCS), encoding="utf-8")
  (directory / "aida_train.csv").write_text(mentions(TRAIN_MENTIONS), encoding="utf-8")
  (directory / "testa_testb_aggregate_original").write_text(_word_file(TEST_DOCS), encoding="utf-8")
  (directory / "aida_testA.csv").write_text(mentions(TEST_A_MENTIONS), encoding="utf-8")
  (directory / "aida_testB.csv").write_text(mentions(TEST_B_MENTIONS), encoding="utf-8")
  (directory / "ace2004.conll").write_text(_word_file(ACE_DOCS), encoding="utf-8")
  (directory / "wned-ace2004.csv").write_text(mentions(ACE_MENTIONS), encoding="utf-8")
  (directory / "persons.txt").write_text("\n".join(PERSONS) + "\n", encoding="utf-8")
  (directory / "titles.txt").write_text("\n".join(TITLES + KB_ONLY) + "\n", encoding="utf-8")
  (directory / "redirects.tsv").write_text(
      "".join(f"{a}\t{b}\n" for a, b in REDIRECTS.items()), encoding="utf-8")
  return directory


def write_tokenizer(directory: Path) -> Path:
  """GPT-2 BPE words; entity vocabulary [PAD] 0, [UNK] 1, [MASK] 2, [MASK2] 3, then TITLES."""
  write_luke_tokenizer_dir(directory, lite_entity_vocab=False)
  vocab = {"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "[MASK2]": 3,
           **{t: 4 + i for i, t in enumerate(TITLES)}}
  (directory / "entity_vocab.json").write_text(json.dumps(vocab, ensure_ascii=False),
                                               encoding="utf-8")
  return directory


def write_masked_lm(directory: Path, tokenizer_dir: Path, seed: int = 0,
                    entity_scale: float = 30.0, **overrides) -> Path:
  """A random tiny `LukeForMaskedLM` checkpoint (the pretraining export's kind).

  The entity table is scaled by `entity_scale`: fine-tuning keeps it frozen, and at the
  initialiser's scale (std 0.02) candidate scores would stay within a few hundredths of each
  other for many steps; a pretrained table has rows of useful norm.
  """
  import jax
  from luke_jax import checkpoint
  from luke_jax.models import registry
  from luke_jax.models.config import preset
  from luke_jax.tokenization.tokenizer import LukeTokenizer
  tokenizer = LukeTokenizer.from_pretrained(tokenizer_dir)
  config = preset("tiny", vocab_size=len(tokenizer),
                  entity_vocab_size=len(tokenizer.entity_vocab), max_position_embeddings=130,
                  **overrides)
  params = registry.init_params("LukeForMaskedLM", config, jax.random.PRNGKey(seed))
  table = params["luke"]["entity_embeddings"]["entity_embeddings"]
  table["embedding"] = table["embedding"] * entity_scale
  # A bias of its own (initialised at 0), so a test can tell the checkpoint's head was taken.
  bias = params["entity_predictions"]["bias"]
  params["entity_predictions"]["bias"] = jax.random.normal(jax.random.PRNGKey(seed + 1),
                                                           bias.shape, bias.dtype) * 0.1
  return checkpoint.save_checkpoint(directory, params, config, "LukeForMaskedLM",
                                    tokenizer_dir=tokenizer_dir)


def random_rows(rng: np.random.Generator, batch: int, words: int, entities: int,
                candidates: int, vocab: int, entity_vocab: int, first_entity: int = 4):
  """Random model rows: mentions of 1-3 pieces, distinct candidates (some slots with none)."""
  input_ids = rng.integers(5, vocab, (batch, words)).astype(np.int32)
  attention_mask = np.ones((batch, words), np.int32)
  mask = np.zeros((batch, entities), np.int32)
  positions = np.full((batch, entities, 3), -1, np.int32)
  cands = np.zeros((batch, entities, candidates), np.int32)
  for b in range(batch):
    n = int(rng.integers(1, entities + 1))
    mask[b, :n] = 1
    for e in range(n):
      start, length = int(rng.integers(1, words - 3)), int(rng.integers(1, 4))
      positions[b, e, :length] = np.arange(start, start + length)
      k = int(rng.integers(0, candidates + 1)) if e else int(rng.integers(1, candidates + 1))
      cands[b, e, :k] = rng.choice(np.arange(first_entity, entity_vocab), k, replace=False)
  return dict(input_ids=input_ids, attention_mask=attention_mask, entity_attention_mask=mask,
              entity_position_ids=positions, entity_candidate_ids=cands)


# ---- a learnable synthetic dataset (fine-tuning end to end) --------------------------------

# (words with |B/|I marks, [(mention text, gold, [(prior, title)...])]): the context decides
# between candidates whose priors say otherwise half of the time.
_TEMPLATES = [
    ("Paris|B shopped with friends .",
     [("Paris", "Paris Hilton", [(0.7, "Paris"), (0.3, "Paris Hilton")])]),
    ("They flew to Paris|B in France|B .",
     [("Paris", "Paris", [(0.7, "Paris"), (0.3, "Paris Hilton")]),
      ("France", "France", [(0.9, "France"), (0.1, "Paris")])]),
    ("Jordan|B scored many points .",
     [("Jordan", "Michael Jordan", [(0.6, "Jordan"), (0.4, "Michael Jordan")])]),
    ("Syria|B borders Jordan|B to the south .",
     [("Syria", "Syria", [(1.0, "Syria")]),
      ("Jordan", "Jordan", [(0.6, "Jordan"), (0.4, "Michael Jordan")])]),
    ("Japan|B won the match 2 - 0 .",
     [("Japan", "Japan national football team",
       [(0.6, "Japan"), (0.4, "Japan national football team")])]),
    ("Japan|B and China|B signed a treaty .",
     [("Japan", "Japan", [(0.6, "Japan"), (0.4, "Japan national football team")]),
      ("China", "China", [(1.0, "China")])]),
]


def write_synthetic_dataset(directory: Path, train_docs: int = 24, test_docs: int = 6) -> Path:
  """aida_train / aida_testA / aida_testB of the templates in turn (persons.txt included)."""
  directory.mkdir(parents=True, exist_ok=True)

  def split(prefix, n, offset):
    docs, rows = [], []
    for i in range(n):
      spec, mentions = _TEMPLATES[(i + offset) % len(_TEMPLATES)]
      doc_id = f"{i}{prefix} DOC"
      docs.append((doc_id, spec))
      rows += [(doc_id, text, cands, f"-1,1,{gold}") for text, gold, cands in mentions]
    return docs, rows

  train, train_rows = split("train", train_docs, 0)
  dev, dev_rows = split("testa", test_docs, 1)
  test, test_rows = split("testb", test_docs, 2)
  (directory / "aida_train.txt").write_text(_word_file(train), encoding="utf-8")
  (directory / "testa_testb_aggregate_original").write_text(_word_file(dev + test), encoding="utf-8")
  for name, rows in (("aida_train.csv", train_rows), ("aida_testA.csv", dev_rows),
                     ("aida_testB.csv", test_rows)):
    (directory / name).write_text("\n".join(_mention_line(*r) for r in rows) + "\n",
                                  encoding="utf-8")
  (directory / "persons.txt").write_text("\n".join(PERSONS) + "\n", encoding="utf-8")
  return directory
