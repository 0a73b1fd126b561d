r"""Builds an entity vocabulary (JSONL) from a Wikipedia dump.

  python -m luke_jax.data.build_entity_vocab --dump=enwiki-latest-pages-articles.xml.bz2 \
      --output=entity_vocab.jsonl --vocab_size=500000 [--min_count=1] [--language=en] \
      [--white_list=titles.txt] [--white_list_only] [--include_mask2] [--workers=8] \
      [--allow_truncated_dump]

The equivalent of the reference's `build-dump-db` followed by `build-entity-vocab`; see
`luke_jax.data.entity_vocab_builder` for the ordering rules.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags, logging

from luke_jax.data.entity_vocab_builder import (MASK2, SPECIALS, build_entity_vocab, count_links,
                                               save_atomic)
from luke_jax.data.wikipedia import ALLOW_TRUNCATED_FLAG

_DUMP = flags.DEFINE_string("dump", None, "MediaWiki XML dump (.xml.bz2, .xml.gz or .xml).")
_OUTPUT = flags.DEFINE_string("output", None, "Vocabulary to write (.jsonl; .json, .tsv too).")
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 1_000_000,
                                   "Entries including [PAD], [UNK] and [MASK].", lower_bound=3)
_MIN_COUNT = flags.DEFINE_integer("min_count", 1, "Fewest links a title needs.", lower_bound=0)
_LANGUAGE = flags.DEFINE_string("language", None,
                                "Language stored with every title (null when not given).")
_WHITE_LIST = flags.DEFINE_multi_string("white_list", [],
                                        "File of titles (one a line) to take first.")
_WHITE_LIST_ONLY = flags.DEFINE_bool("white_list_only", False, "Take white-listed titles only.")
_INCLUDE_MASK2 = flags.DEFINE_bool("include_mask2", False, "Append [MASK2] after the titles.")
_WORKERS = flags.DEFINE_integer("workers", 1, "Processes converting wikitext; 0 = every CPU.",
                                lower_bound=0)
_TOP = flags.DEFINE_integer("top", 10, "Entries to print.", lower_bound=0)
_ALLOW_TRUNCATED = flags.DEFINE_bool(
    ALLOW_TRUNCATED_FLAG.lstrip("-"), False,
    "Build from a truncated or corrupt dump, up to the damage (the output is then partial); "
    "without it such a dump is an error and nothing is written.")

flags.mark_flags_as_required(["dump", "output"])


def _read_white_list(paths: list[str]) -> list[str]:
  titles = []
  for path in paths:
    for line in Path(path).read_text(encoding="utf-8").splitlines():
      if line.strip():
        titles.append(line.strip())
  return titles


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # A missing or unreadable dump (OSError, DumpError) is reported by cli.run as one line.
  counts = count_links(_DUMP.value, workers=_WORKERS.value,
                       allow_truncated_dump=_ALLOW_TRUNCATED.value)
  stats = counts.stats
  if stats.truncated or stats.errors:
    logging.warning("%d error(s) while reading %s, e.g. %s", stats.errors, _DUMP.value,
                    stats.error_examples[:3])
  vocab = build_entity_vocab(counts, _VOCAB_SIZE.value, _MIN_COUNT.value, _LANGUAGE.value,
                             _read_white_list(_WHITE_LIST.value), _WHITE_LIST_ONLY.value,
                             _INCLUDE_MASK2.value, source=_OUTPUT.value)
  path = save_atomic(vocab, _OUTPUT.value)
  print(f"pages: {stats.pages} (articles {stats.articles}, redirects {stats.redirects}, "
        f"other namespaces {stats.skipped_namespace}, errors {stats.errors}"
        f"{', truncated' if stats.truncated else ''})")
  print(f"links: {stats.links} to {len(counts.counts)} distinct targets (after redirects)")
  print(f"entity vocabulary: {len(vocab)} entries -> {path}")
  if counts.partial:
    print(counts.partial)
  print(f"top {_TOP.value} entities (id, title, links):")
  for idx in range(len(SPECIALS), min(len(SPECIALS) + _TOP.value, len(vocab))):
    entity = vocab.get_entities(idx)[0]
    if entity.title != MASK2:
      print(f"  {idx}\t{entity.title}\t{vocab.get_count(idx)}")


if __name__ == "__main__":
  from luke_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)  # one line per expected error, exit status 2 for bad input
