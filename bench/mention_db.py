r"""The mention database at full-Wikipedia scale: write, load, memory, query and detect rates.

  python bench/mention_db.py [--names 5000000] [--rows 20000000] [--titles 6000000]
      [--queries 100000] [--sentences 2000] [--output DIR]

Builds a synthetic database through the same writer as `build_mention_db`
(`luke_jax.data.mention_db.write`): `--names` distinct names (every word of the enwiki
sample's text, then random two- and three-word names over that vocabulary, so that real
sentences meet names as they would in a full-Wikipedia database), `--rows` candidate rows in
all (1 to 40 per name, heavy-tailed), over `--titles` titles. Then, in a fresh process (so
that the generator's memory does not count), it times `MentionDB.load`, reports the resident
memory after loading and after the lookups (heap apart from the database pages the lookups
mapped in, which the kernel may drop), and measures:

  query    `db.query(name)` on random stored names (hits) and random misses, one at a time
  detect   `db.detect(sentence)` on `--sentences` real sentences of the enwiki sample
           (`make samples`), every n-gram up to the longest stored name

Rows print wall times on this machine; the machine's other load shows in them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from luke_jax.data import mention_db  # noqa: E402

SAMPLE = ROOT / "data" / "samples" / "enwiki-sample.xml.bz2"


def sample_paragraphs(limit: int = 4000) -> list[str]:
  from luke_jax.data.wikipedia import iter_pages
  paragraphs = []
  if SAMPLE.exists():
    for page in iter_pages(SAMPLE):
      paragraphs += [p.text for p in page.paragraphs]
      if len(paragraphs) >= limit:
        break
  return paragraphs or ["Aristotle taught Alexander the Great in Macedonia."]


def synthetic(num_names: int, num_rows: int, num_titles: int, seed: int = 0):
  """Names, per-name candidate arrays and titles (see the module docstring)."""
  rng = np.random.default_rng(seed)
  vocab = sorted({w for text in sample_paragraphs() for w in mention_db.words(text)})
  names = set(vocab[:num_names])
  pick = random.Random(seed)
  while len(names) < num_names:
    size = pick.choice((2, 2, 3))
    names.add(" ".join(pick.choices(vocab, k=size)))
  names = sorted(names)
  pick.shuffle(names)
  # Candidates per name: 1 + a heavy tail, scaled to about `num_rows` in all.
  sizes = np.minimum(1 + rng.zipf(1.7, num_names), 40)
  sizes = np.maximum(1, np.round(sizes * num_rows / sizes.sum())).astype(np.int64)
  offsets = np.zeros(num_names + 1, np.int64)
  np.cumsum(sizes, out=offsets[1:])
  rows = int(offsets[-1])
  titles_of_rows = rng.integers(0, num_titles, rows, dtype=np.int64)
  counts = rng.zipf(1.5, rows).clip(1, 100_000).astype(np.int64)
  # Within a name: by count, descending (as the builder orders them).
  group = np.repeat(np.arange(num_names), sizes)
  order = np.lexsort((-counts, group))
  counts, titles_of_rows = counts[order], titles_of_rows[order]
  totals = np.add.reduceat(counts, offsets[:-1])
  docs = totals * rng.integers(1, 50, num_names)
  titles = [f"Entity {i:08d}" for i in range(num_titles)]
  return names, totals, docs, offsets, titles_of_rows, counts, titles


def rss_mib() -> str:
  """Resident memory: total, and its anonymous (heap) and file-backed (mapped pages) parts."""
  fields = {}
  for line in Path("/proc/self/status").read_text().splitlines():
    key, _, value = line.partition(":")
    if key in ("VmRSS", "RssAnon", "RssFile"):
      fields[key] = int(value.split()[0]) / 1024
  if "VmRSS" not in fields:
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (peak)"
  return (f"{fields['VmRSS']:.0f} MiB (heap {fields.get('RssAnon', 0):.0f}, mapped files "
          f"{fields.get('RssFile', 0):.0f})")


def measure(path: str, queries: int, sentences: int) -> dict:
  """Runs in a fresh process: load time, memory and lookup rates."""
  rss_before = rss_mib()
  started = time.perf_counter()
  db = mention_db.MentionDB.load(path)
  load_s = time.perf_counter() - started
  rss_loaded = rss_mib()
  mention_db.normalize_mention("warm up")  # builds the tokenizer's pattern (once per process)
  rng = random.Random(1)
  stored = [db.name(rng.randrange(len(db))) for _ in range(queries // 2)]
  missing = [f"zzq{rng.randrange(10**9)} unknown" for _ in range(queries - len(stored))]
  names = stored + missing
  rng.shuffle(names)
  started = time.perf_counter()
  hits = sum(bool(db.query(name)) for name in names)
  query_s = time.perf_counter() - started
  text = [s for p in sample_paragraphs() for s in re.split(r"(?<=[.!?]) ", p)
          if len(s.split()) >= 5][:sentences]
  tokens = sum(len(mention_db.words(s)) for s in text)
  started = time.perf_counter()
  found = sum(len(db.detect(s)) for s in text)
  detect_s = time.perf_counter() - started
  return dict(load_s=load_s, rss_before_mib=rss_before, rss_loaded_mib=rss_loaded,
              rss_after_mib=rss_mib(), queries=len(names), hits=hits,
              query_per_s=len(names) / query_s, sentences=len(text), tokens=tokens,
              mentions=found, detect_per_s=len(text) / detect_s,
              detect_tokens_per_s=tokens / detect_s, longest_name=db.meta["longest_name"])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--names", type=int, default=5_000_000)
  parser.add_argument("--rows", type=int, default=20_000_000)
  parser.add_argument("--titles", type=int, default=6_000_000)
  parser.add_argument("--queries", type=int, default=100_000)
  parser.add_argument("--sentences", type=int, default=2000)
  parser.add_argument("--output", default=None, help="keep the database here")
  parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # the child's run
  args = parser.parse_args()
  if args.measure:
    print(json.dumps(measure(args.measure, args.queries, args.sentences)))
    return

  work = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="mention_db_"))
  path = work / "db" if not args.output else work
  try:
    started = time.perf_counter()
    data = synthetic(args.names, args.rows, args.titles)
    generate_s = time.perf_counter() - started
    started = time.perf_counter()
    mention_db.write(path, *data, meta={"doc_counts": True, "source": "bench"},
                     overwrite=bool(args.output))
    write_s = time.perf_counter() - started
    write_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del data
    size = sum(f.stat().st_size for f in path.iterdir())
    child = subprocess.run(
        [sys.executable, __file__, f"--measure={path}", f"--queries={args.queries}",
         f"--sentences={args.sentences}"], capture_output=True, text=True, check=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    meta = json.loads((path / "meta.json").read_text())
    print(f"database      {meta['num_names']:,} names, {meta['num_candidates']:,} candidate rows, "
          f"{meta['num_titles']:,} titles, {size / 2**20:,.0f} MiB on disk")
    print(f"generate      {generate_s:.1f} s (synthetic data, not part of a build)")
    print(f"write         {write_s:.1f} s (hashing, sorting, .npy files; peak RSS of the "
          f"writing process {write_rss:,.0f} MiB)")
    print(f"load          {result['load_s'] * 1000:.1f} ms; RSS {result['rss_before_mib']} "
          f"before, {result['rss_loaded_mib']} after load, {result['rss_after_mib']} after "
          "the lookups (the sample's sentences included)")
    print(f"query         {result['query_per_s']:,.0f} queries/s ({result['queries']:,} "
          f"queries, {result['hits']:,} hits)")
    print(f"detect        {result['detect_per_s']:,.0f} sentences/s, "
          f"{result['detect_tokens_per_s']:,.0f} tokens/s ({result['sentences']} sample "
          f"sentences, {result['tokens']:,} tokens, {result['mentions']:,} mentions, n-grams up "
          f"to {result['longest_name']} tokens)")
  finally:
    if not args.output:
      shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main()
