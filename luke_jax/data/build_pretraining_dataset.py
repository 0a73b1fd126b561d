r"""Build LUKE pretraining examples from a Wikipedia dump.

  python -m luke_jax.data.build_pretraining_dataset --dump=DUMP --tokenizer=TOKDIR \
      --entity_vocab=entity_vocab.jsonl --output_dir=DATASET [--allow_truncated_dump]

Runs one worker process per core. Rerunning with the same arguments after a crash finishes the
job; a finished dataset is left alone. A truncated or corrupt dump is an error (no dataset is
written) unless --allow_truncated_dump accepts the pages before the damage; `metadata.json`
then says `"partial"`.
"""

from __future__ import annotations

from absl import app, flags

from luke_jax.data import dataset, wikipedia

_DUMP = flags.DEFINE_string("dump", None, "MediaWiki XML dump (.xml or .xml.bz2).", required=True)
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "Tokenizer directory.", required=True)
_ENTITY_VOCAB = flags.DEFINE_string("entity_vocab", None, "Entity vocabulary (.jsonl/.json/.tsv).",
                                    required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Dataset directory.", required=True)
_MAX_SEQ = flags.DEFINE_integer("max_seq_length", 512, "Tokens per example incl. <s> and </s>.")
_MAX_ENT = flags.DEFINE_integer("max_entity_length", 128, "Mentions kept per example.")
_MAX_MENTION = flags.DEFINE_integer("max_mention_length", 30, "Tokens kept per mention.")
_MIN_SENT = flags.DEFINE_integer("min_sentence_length", 5, "Shorter sentences are dropped.")
_UNK = flags.DEFINE_bool("include_unk_entities", False, "Keep unknown links as [UNK].")
_NO_ENT = flags.DEFINE_bool("include_sentences_without_entities", False,
                            "Emit examples without links too.")
_ABSTRACT = flags.DEFINE_bool("abstract_only", False, "Use only text before the first heading.")
_MAX_DOCS = flags.DEFINE_integer("max_num_documents", None, "Use only the first N articles.")
_LANGUAGE = flags.DEFINE_string("language", None, "Language of the entity vocabulary entries "
                                "(null in monolingual vocabularies, as the reference).")
_WORKERS = flags.DEFINE_integer("workers", None, "Worker processes (default: all cores).")
_ALLOW_TRUNCATED = flags.DEFINE_bool(
    wikipedia.ALLOW_TRUNCATED_FLAG.lstrip("-"), False,
    "Build from a truncated or corrupt dump, up to the damage (the dataset is then marked "
    "partial); without it such a dump is an error and no dataset is written.")


def main(argv):
  del argv
  config = dict(max_seq_length=_MAX_SEQ.value, max_entity_length=_MAX_ENT.value,
                max_mention_length=_MAX_MENTION.value, min_sentence_length=_MIN_SENT.value,
                include_unk_entities=_UNK.value,
                include_sentences_without_entities=_NO_ENT.value,
                abstract_only=_ABSTRACT.value, language=_LANGUAGE.value)
  meta = dataset.build(_DUMP.value, _TOKENIZER.value, _ENTITY_VOCAB.value, _OUTPUT_DIR.value,
                       config=config, workers=_WORKERS.value,
                       max_num_documents=_MAX_DOCS.value,
                       allow_truncated_dump=_ALLOW_TRUNCATED.value)
  stats = meta.get("stats", {})
  print(f"{meta['number_of_items']} examples from {stats.get('pages', '?')} pages "
        f"({stats.get('page_errors', 0)} pages failed) in {_OUTPUT_DIR.value}")
  if meta.get("partial"):
    print(meta["partial"])


if __name__ == "__main__":
  from luke_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)  # one line per expected error, exit status 2 for bad input
