"""Throughput of the pretraining data path: example building and masked batches.

Build rows (skipped with `--dump=`): the real Wikipedia sample (`data/samples/enwiki-sample.xml.bz2`,
`make samples`) turned into examples by `ExampleBuilder` in this process (pages/s and
examples/s on one core), and by `dataset.build` with one worker process per core.

Synthetic examples shaped like LUKE's: `--words` word ids (510 = a full 512-token sequence)
over a 50,265-id vocabulary where 70% of ids start a word, and `--entities` mentions of 1 to 4
tokens each. Batches of `--batch_size` with the reference's default rates (15% words with
whole-word masking and 80/10/10, 15% entities).

Rows of the table:
  mask_batch         masking alone, in this process (`PretrainingPipeline.batch_at`)
  workers=0          the pipeline with its background thread in this process
  workers=N          the pipeline with N grain worker processes (1 and every core)

Each row is the best of `--repeats` windows of `--batches` batches (wall clock; the best
window is the least disturbed by other load), after a warm-up of `max(2, N)` batches, so worker
start-up is not counted. "per core" divides by the worker count (1 for in-process rows); the
main process also spends some CPU receiving batches, so on a machine with no spare core the
all-core row under-states what each worker does.

  python bench/pipeline.py [--batch_size 256] [--batches 10] [--repeats 3] [--workers 1,2]
                           [--dump data/samples/enwiki-sample.xml.bz2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from luke_jax.data.masking import MaskingConfig  # noqa: E402
from luke_jax.data.pipeline import PretrainingPipeline  # noqa: E402

VOCAB = 50265
ENTITY_VOCAB = 500_000


def synthetic_examples(num: int, words: int, entities: int, seed: int = 0) -> list[dict]:
  """`num` examples of `words` word ids and `entities` non-overlapping mentions."""
  rng = np.random.default_rng(seed)
  examples = []
  for page in range(num):
    lengths = rng.integers(1, 5, entities)
    gaps = rng.multinomial(words - int(lengths.sum()), np.ones(entities + 1) / (entities + 1))
    starts = np.cumsum(gaps[:-1]) + np.concatenate([[0], np.cumsum(lengths)[:-1]])
    positions = np.full((entities, 30), -1, np.int32)
    offsets = np.arange(30)
    positions[:] = np.where(offsets < lengths[:, None], starts[:, None] + offsets, -1)
    examples.append(dict(word_ids=rng.integers(4, VOCAB - 1, words, dtype=np.int32),
                         entity_ids=rng.integers(3, ENTITY_VOCAB, entities, dtype=np.int32),
                         entity_position_ids=positions, page_id=np.int64(page)))
  return examples


def best_rate(produce, batches: int, repeats: int, batch_size: int) -> float:
  """Examples per second of the fastest of `repeats` windows of `batches` calls."""
  best = 0.0
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(batches):
      produce()
    best = max(best, batches * batch_size / (time.perf_counter() - start))
  return best


def build_rows(dump: str, cores: int) -> list[tuple[str, float, float]]:
  """(row, pages/s, examples/s) for building examples from `dump` (512-token examples)."""
  import tempfile  # pylint: disable=g-import-not-at-top
  from luke_jax.data import dataset, entity_vocab_builder, train_sentencepiece, wikipedia  # noqa
  from luke_jax.data.examples import ExampleBuilder, ExampleConfig  # noqa
  from luke_jax.tokenization.tokenizer import LukeTokenizer  # noqa
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    tokdir = train_sentencepiece.train(dump, Path(tmp) / "tok", vocab_size=4000)
    counts = entity_vocab_builder.count_links(dump)
    vocab = entity_vocab_builder.build_entity_vocab(counts, vocab_size=100_000)
    vocab_path = vocab.save(Path(tmp) / "entity_vocab.jsonl")
    pages = [p for p in wikipedia.iter_pages(dump) if p.redirect is None]
    builder = ExampleBuilder(LukeTokenizer.from_pretrained(tokdir), vocab, counts.redirects,
                             ExampleConfig(include_unk_entities=True))
    start = time.perf_counter()
    examples = sum(1 for page in pages for _ in builder(page))
    seconds = time.perf_counter() - start
    rows.append(("build, 1 process", len(pages) / seconds, examples / seconds))
    start = time.perf_counter()
    meta = dataset.build(dump, tokdir, vocab_path, Path(tmp) / "ds", workers=cores,
                         config=dict(include_unk_entities=True))
    seconds = time.perf_counter() - start
    rows.append((f"dataset.build, {cores} workers", len(pages) / seconds,
                 meta["number_of_items"] / seconds))
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--batches", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--words", type=int, default=510)
  parser.add_argument("--entities", type=int, default=128)
  parser.add_argument("--num_examples", type=int, default=1024,
                      help="distinct examples (each is pickled into every worker)")
  parser.add_argument("--dump", default=str(Path(__file__).resolve().parents[1] / "data" /
                                            "samples" / "enwiki-sample.xml.bz2"),
                      help="Wikipedia dump for the build rows ('' to skip them)")
  parser.add_argument("--workers", default=None,
                      help="comma-separated worker counts (default: 1 and every core)")
  args = parser.parse_args()

  cores = os.cpu_count() or 1
  workers = ([int(w) for w in args.workers.split(",")] if args.workers
             else sorted({1, cores}))
  config = MaskingConfig(cls_id=0, sep_id=2, pad_id=1, mask_id=VOCAB - 1, vocab_size=VOCAB,
                         entity_mask_id=2, entity_vocab_size=ENTITY_VOCAB)
  is_word_start = np.random.default_rng(1).random(VOCAB) < 0.7
  source = synthetic_examples(max(args.num_examples, args.batch_size), args.words,
                              args.entities)
  make = lambda w: PretrainingPipeline(source, config, is_word_start,
                                       global_batch_size=args.batch_size, seed=0,
                                       process_index=0, process_count=1, num_workers=w)

  rows = []
  rate = lambda produce: best_rate(produce, args.batches, args.repeats, args.batch_size)
  with make(0) as pipeline:
    steps = iter(range(10**9))
    pipeline.batch_at(0)
    rows.append(("mask_batch", 1, rate(lambda: pipeline.batch_at(next(steps)))))
    for _ in range(2):
      next(pipeline)
    rows.append(("workers=0", 1, rate(lambda: next(pipeline))))
  for w in workers:
    with make(w) as pipeline:
      for _ in range(max(2, w)):
        next(pipeline)
      rows.append((f"workers={w}", w, rate(lambda: next(pipeline))))

  print(f"{args.batch_size} x ({args.words} words + <s></s>, {args.entities} entities), "
        f"{cores} cores, best of {args.repeats} x {args.batches} batches per row")
  print(f"{'':14s} {'examples/s':>12s} {'per core':>10s}")
  for name, used, rate in rows:
    print(f"{name:14s} {rate:12,.0f} {rate / used:10,.0f}")
  if args.dump and Path(args.dump).exists():
    print(f"\nbuilding examples (max_seq_length 512) from {args.dump}")
    print(f"{'':28s} {'pages/s':>10s} {'examples/s':>12s}")
    for name, pages, examples in build_rows(args.dump, cores):
      print(f"{name:28s} {pages:10,.1f} {examples:12,.1f}")


if __name__ == "__main__":
  main()
