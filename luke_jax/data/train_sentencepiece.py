r"""Train a SentencePiece model on a Wikipedia dump's text, for pretraining from scratch.

  python -m luke_jax.data.train_sentencepiece --dump=DUMP --output_dir=TOKDIR --vocab_size=8000 \
      [--allow_truncated_dump]

Writes a tokenizer directory that `LukeTokenizer.from_pretrained(TOKDIR)` reads (fairseq id
order, as XLM-R and mLUKE): `sentencepiece.bpe.model`, `tokenizer_config.json` and an
`entity_vocab.json` (the one given by --entity_vocab, else just the special entities).

A dump that ends early (truncated or corrupt) is an error and nothing is written, unless
--allow_truncated_dump accepts the articles before the damage. With --max_num_documents the dump
is read only as far as needed: damage after the articles used does not matter.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from absl import app, flags, logging

from luke_jax.data import wikipedia
from luke_jax.tokenization.entity_vocab import EntityVocab

_DUMP = flags.DEFINE_string("dump", None, "MediaWiki XML dump (.xml or .xml.bz2).", required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Tokenizer directory to create.",
                                  required=True)
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 32000, "Number of SentencePiece pieces.")
_MODEL_TYPE = flags.DEFINE_enum("model_type", "unigram", ["unigram", "bpe"], "Algorithm.")
_COVERAGE = flags.DEFINE_float("character_coverage", 0.9995, "Character coverage.")
_MAX_DOCS = flags.DEFINE_integer("max_num_documents", None, "Use only the first N articles.")
_ENTITY_VOCAB = flags.DEFINE_string("entity_vocab", None, "Entity vocabulary to include.")
_ALLOW_TRUNCATED = flags.DEFINE_bool(
    wikipedia.ALLOW_TRUNCATED_FLAG.lstrip("-"), False,
    "Train on a truncated or corrupt dump, up to the damage (the model is then partial); "
    "without it such a dump is an error and nothing is written.")


def write_corpus(dump: str, path: Path, max_documents: int | None,
                 stats: wikipedia.DumpStats | None = None) -> int:
  """One paragraph per line; returns the number of lines. `stats` tells whether the dump
  ended early (`truncated`)."""
  lines = 0
  with open(path, "w", encoding="utf-8") as f:
    for i, page in enumerate(p for p in wikipedia.iter_pages(dump, stats)
                             if p.redirect is None):
      if max_documents and i >= max_documents:
        break
      for paragraph in page.paragraphs:
        text = " ".join(paragraph.text.split())
        if text:
          f.write(text + "\n")
          lines += 1
  return lines


def train(dump: str, output_dir: str | os.PathLike, *, vocab_size: int, model_type: str = "unigram",
          character_coverage: float = 0.9995, max_documents: int | None = None,
          entity_vocab: str | None = None, allow_truncated_dump: bool = False) -> Path:
  """Trains the model and writes the tokenizer directory (see the module docstring).

  Raises:
    FileExistsError: `output_dir` exists (it is never overwritten).
    wikipedia.DumpError: the dump is unreadable, or ends early and `allow_truncated_dump` is
      False; nothing is written then.
  """
  import sentencepiece  # pylint: disable=g-import-not-at-top
  output_dir = Path(output_dir)
  if output_dir.exists():
    raise FileExistsError(f"{output_dir} already exists")
  output_dir.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
  try:
    corpus = tmp / "corpus.txt"
    stats = wikipedia.DumpStats()
    lines = write_corpus(dump, corpus, max_documents, stats)
    # Before training: a refused dump costs no training time and leaves nothing behind.
    wikipedia.check_complete(stats, dump, allow_truncated_dump)
    if not lines:
      raise ValueError(f"{dump}: no article text to train on")
    logging.info("training SentencePiece (%s, %d pieces) on %d paragraphs", model_type,
                 vocab_size, lines)
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp / "sentencepiece.bpe"), vocab_size=vocab_size,
        model_type=model_type, character_coverage=character_coverage, hard_vocab_limit=False,
        # Every paragraph is used, unshuffled, so the same dump gives the same model.
        shuffle_input_sentence=False, minloglevel=2, num_threads=os.cpu_count() or 1)
    corpus.unlink()
    (tmp / "sentencepiece.bpe.vocab").unlink()
    vocab = (EntityVocab.load(entity_vocab) if entity_vocab else EntityVocab.from_dict(
        {"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "[MASK2]": 3}))
    vocab.save(tmp / "entity_vocab.json")
    (tmp / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "MLukeTokenizer", "task": None, "max_entity_length": 32,
         "max_mention_length": 30}, indent=2) + "\n")
    os.replace(tmp, output_dir)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return output_dir


def main(argv):
  del argv
  out = train(_DUMP.value, _OUTPUT_DIR.value, vocab_size=_VOCAB_SIZE.value,
              model_type=_MODEL_TYPE.value, character_coverage=_COVERAGE.value,
              max_documents=_MAX_DOCS.value, entity_vocab=_ENTITY_VOCAB.value,
              allow_truncated_dump=_ALLOW_TRUNCATED.value)
  print(f"wrote {out}")


if __name__ == "__main__":
  from luke_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)  # one line per expected error, exit status 2 for bad input
