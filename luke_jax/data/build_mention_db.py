r"""Builds a mention database (name -> candidate entities) from a Wikipedia dump.

  python -m luke_jax.data.build_mention_db --dump=enwiki-latest-pages-articles.xml.bz2 \
      --output=mention_db [--min_link_count=1] [--max_candidates=100] \
      [--min_link_prob=0.01] [--max_mention_length=20] [--noinclude_titles] \
      [--noinclude_redirects] [--exclude_titles=held_out.txt] [--workers=8] [--overwrite] \
      [--allow_truncated_dump]

The output is a directory read by `luke_jax.data.mention_db.MentionDB.load`; see
`luke_jax.data.mention_db_builder` for what is counted. An existing output is refused unless
--overwrite (and then only a mention database is replaced); a truncated or corrupt dump is an
error and nothing is written, unless --allow_truncated_dump (`meta.json` then says "partial").
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags, logging

from luke_jax.data import mention_db_builder
from luke_jax.data.wikipedia import ALLOW_TRUNCATED_FLAG

_DUMP = flags.DEFINE_string("dump", None, "MediaWiki XML dump (.xml.bz2, .xml.gz or .xml).")
_OUTPUT = flags.DEFINE_string("output", None, "Database directory to create.")
_MIN_LINK_COUNT = flags.DEFINE_integer("min_link_count", 1, "Fewest links a candidate needs.",
                                       lower_bound=0)
_MAX_CANDIDATES = flags.DEFINE_integer("max_candidates", 100,
                                       "Candidates kept per name (the most linked).",
                                       lower_bound=1)
_MIN_LINK_PROB = flags.DEFINE_float(
    "min_link_prob", 0.01, "Fewest links per mentioning page a name needs; 0 skips the "
    "second pass over the dump (doc counts are then 0).", lower_bound=0.0, upper_bound=1.0)
_MAX_MENTION_LENGTH = flags.DEFINE_integer("max_mention_length", 20,
                                           "Longest name, in tokens.", lower_bound=1)
_INCLUDE_TITLES = flags.DEFINE_bool("include_titles", True,
                                    "Count article titles as names of their article.")
_INCLUDE_REDIRECTS = flags.DEFINE_bool("include_redirects", True,
                                       "Count redirect titles as names of their target.")
_EXCLUDE_TITLES = flags.DEFINE_string(
    "exclude_titles", None, "File of article titles (one a line) whose text is not read "
    "(held-out pages).")
_WORKERS = flags.DEFINE_integer("workers", 1, "Processes converting wikitext; 0 = every CPU.",
                                lower_bound=0)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing mention database.")
_ALLOW_TRUNCATED = flags.DEFINE_bool(
    ALLOW_TRUNCATED_FLAG.lstrip("-"), False,
    "Build from a truncated or corrupt dump, up to the damage (the output is then partial); "
    "without it such a dump is an error and nothing is written.")

flags.mark_flags_as_required(["dump", "output"])


def read_titles(path: str) -> list[str]:
  """The non-blank lines of a UTF-8 file."""
  lines = Path(path).read_text(encoding="utf-8").splitlines()
  return [line.strip() for line in lines if line.strip()]


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  exclude = read_titles(_EXCLUDE_TITLES.value) if _EXCLUDE_TITLES.value else []
  # A missing or unreadable dump (OSError, DumpError) is reported by cli.run as one line.
  summary = mention_db_builder.build(
      _DUMP.value, _OUTPUT.value, min_link_count=_MIN_LINK_COUNT.value,
      max_candidates=_MAX_CANDIDATES.value, min_link_prob=_MIN_LINK_PROB.value,
      max_mention_length=_MAX_MENTION_LENGTH.value, include_titles=_INCLUDE_TITLES.value,
      include_redirects=_INCLUDE_REDIRECTS.value, exclude_titles=exclude,
      workers=_WORKERS.value, overwrite=_OVERWRITE.value,
      allow_truncated_dump=_ALLOW_TRUNCATED.value)
  stats = summary.stats
  if stats.truncated or stats.errors:
    logging.warning("%d error(s) while reading %s, e.g. %s", stats.errors, _DUMP.value,
                    stats.error_examples[:3])
  print(f"pages: {stats.pages} (articles {summary.articles}, redirects {summary.redirects}, "
        f"other namespaces {summary.other_namespaces}, excluded {summary.excluded}, "
        f"errors {stats.errors}{', truncated' if stats.truncated else ''})")
  print(f"anchors: {summary.anchors}")
  print(f"mention database: {summary.names} names, {summary.candidates} candidates, "
        f"{summary.titles} titles -> {summary.path} ({summary.seconds:.1f} s)")
  if summary.partial:
    print(summary.partial)


if __name__ == "__main__":
  from luke_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)  # one line per expected error, exit status 2 for bad input
