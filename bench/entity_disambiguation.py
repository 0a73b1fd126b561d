r"""Entity disambiguation on Wikipedia's own links: the model against the prior, local vs global.

  python bench/entity_disambiguation.py [--out /tmp/luke_ed_bench] [--model DIR]
      [--held_out 0.2] [--seed 0] [--epochs 3] [--hidden 64] [--max_seq_length 256]

On the Wikipedia sample (`make samples`): a fifth of the articles (`--held_out`, chosen by
`--seed`) are held out. The mention dictionary (`luke_jax.data.build_mention_db`) is built from
the other pages only (their links, plus every title and redirect as a name), so the held-out
pages' links are unseen gold mentions (`luke_jax.disambiguation.wiki_anchors`). Without
`--model`, a tiny LUKE (random, `--hidden` wide, two layers, a SentencePiece vocabulary trained
on the dump, the entity vocabulary = every candidate title) is fine-tuned for entity
disambiguation on the training pages' links (`run_finetune.py`'s trainer with
`configs/finetune/entity_disambiguation.py`, everything trainable since nothing is pretrained;
only the paragraphs holding an ambiguous link, `wiki_anchors.informative_paragraphs`);
with `--model`, that checkpoint (e.g. the converted official ED model) is evaluated as it is.

Printed: the prior-only baseline (the most linked candidate) and the model in each inference
and split mode, as in-KB accuracy (correct / mentions whose gold is among the candidates, the
accuracy ED papers report), precision (correct / mentions with candidates, the official
script's), the ambiguous mentions alone, and mentions/s of the model (compilation excluded: a
warm-up pass runs first).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (pins threads before jax starts)

ROOT = Path(__file__).resolve().parents[1]
WIKI = ROOT / "data" / "samples" / "enwiki-sample.xml.bz2"
MODES = (("local", "simple"), ("global", "simple"), ("local", "per_mention"),
         ("global", "per_mention"))


def split_titles(dump: Path, held_out: float, seed: int) -> tuple[list[str], list[str]]:
  """(training titles, held-out titles) of the dump's articles."""
  from luke_jax.data import wikipedia
  titles = sorted(p.title for p in wikipedia.iter_pages(dump) if not p.is_redirect)
  random.Random(seed).shuffle(titles)
  cut = max(1, round(len(titles) * held_out))
  return sorted(titles[cut:]), sorted(titles[:cut])


def build_data(out: Path, dump: Path = WIKI, held_out: float = 0.2, seed: int = 0):
  """The mention dictionary of the training pages and both pages' documents (JSON lines)."""
  from luke_jax.data import mention_db_builder
  from luke_jax.data.mention_db import MentionDB
  from luke_jax.disambiguation import documents, wiki_anchors
  out.mkdir(parents=True, exist_ok=True)
  train_titles, held_titles = split_titles(dump, held_out, seed)
  held_file = out / "held_out_titles.txt"
  held_file.write_text("".join(t + "\n" for t in held_titles), encoding="utf-8")
  db_dir = out / "mention_db"
  if not db_dir.exists():
    mention_db_builder.build(dump, db_dir, exclude_titles=held_titles)
  db = MentionDB.load(db_dir)
  files = {}
  for name, titles in (("train", train_titles), ("held_out", held_titles)):
    files[name] = out / f"{name}.jsonl"
    if not files[name].exists():
      documents.write_jsonl(wiki_anchors.documents_from_dump(dump, db, titles=set(titles)),
                            files[name])
  # What fine-tuning reads: only paragraphs with an ambiguous link (one candidate: no loss).
  files["train_paragraphs"] = out / "train_paragraphs.jsonl"
  if not files["train_paragraphs"].exists():
    documents.write_jsonl(wiki_anchors.informative_paragraphs(
        documents.read_jsonl(files["train"])), files["train_paragraphs"])
  return db_dir, files


def tiny_checkpoint(out: Path, documents_files, dump: Path = WIKI, hidden: int = 64,
                    vocab_size: int = 4000) -> Path:
  """A random tiny LukeForMaskedLM whose entity vocabulary holds every candidate title."""
  import jax
  from luke_jax import checkpoint
  from luke_jax.data import train_sentencepiece
  from luke_jax.disambiguation import documents
  from luke_jax.models import registry
  from luke_jax.models.config import preset
  from luke_jax.tokenization.tokenizer import LukeTokenizer
  pieces = out / "sentencepiece"
  if not pieces.exists():
    train_sentencepiece.train(str(dump), pieces, vocab_size=vocab_size)
  tokenizer_dir = out / "tokenizer"
  shutil.rmtree(tokenizer_dir, ignore_errors=True)
  shutil.copytree(pieces, tokenizer_dir)
  for stale in tokenizer_dir.glob("entity_vocab*"):
    stale.unlink()
  titles = sorted({c.title for path in documents_files for d in documents.read_jsonl(path)
                   for m in d.mentions for c in m.candidates[:30]})
  vocab = {"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "[MASK2]": 3,
           **{t: 4 + i for i, t in enumerate(titles)}}
  (tokenizer_dir / "entity_vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
  tokenizer = LukeTokenizer.from_pretrained(tokenizer_dir)
  config = preset("tiny", vocab_size=len(tokenizer), entity_vocab_size=len(vocab),
                  max_position_embeddings=258, hidden_size=hidden, entity_emb_size=hidden,
                  num_attention_heads=4, intermediate_size=4 * hidden,
                  use_entity_aware_attention=False)
  params = registry.init_params("LukeForMaskedLM", config, jax.random.PRNGKey(0))
  return checkpoint.save_checkpoint(out / "base", params, config, "LukeForMaskedLM",
                                    tokenizer_dir=tokenizer_dir, overwrite=True)


def fine_tune(base: Path, files, workdir: Path, *, epochs: int, learning_rate: float,
              max_seq_length: int = 256) -> Path:
  """`configs/finetune/entity_disambiguation.py` on the training pages; returns `best/`."""
  import importlib.util
  from luke_jax.finetune import trainer
  spec = importlib.util.spec_from_file_location(
      "ed_config", ROOT / "configs" / "finetune" / "entity_disambiguation.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.data.update(train_file=str(files["train_paragraphs"]), max_seq_length=max_seq_length,
                     max_entity_length=64, inference_mode="local")
  config.train.init_checkpoint = str(base)
  # Nothing is pretrained: the entity table and the head's bias learn too (the recipe
  # freezes them because a pretrained ED model's table is already good).
  config.optim.trainable = [[".*", True]]
  config.optim.update(learning_rate=learning_rate, warmup_ratio=0.05)
  config.train.update(num_epochs=epochs, batch_size=16, ckpt_every=100_000, log_every=100)
  config.mesh = (("data", 1), ("fsdp", 1), ("tensor", 1))
  shutil.rmtree(workdir, ignore_errors=True)
  trainer.finetune(config, workdir)
  return workdir / "best"


def evaluate(model: Path, held_out: Path, modes=MODES, max_seq_length: int = 256,
             warm_up: bool = True):
  """Rows of scores: the prior, then the model in each (inference, split) mode (`warm_up`:
  time a second pass, compilation excluded)."""
  import luke_jax
  from luke_jax.disambiguation import documents, features, runner, wiki_anchors
  from luke_jax.tokenization.tokenizer import LukeTokenizer
  docs = documents.read_jsonl(held_out)
  module, params = luke_jax.from_pretrained(model, architecture=runner.ARCHITECTURE)
  tokenizer = LukeTokenizer.from_pretrained(model)
  config = features.FeatureConfig(max_seq_length=min(max_seq_length,
                                                     module.config.max_seq_length),
                                  max_entity_length=64)
  prior = wiki_anchors.in_kb_prior_accuracy(docs)
  rows = [dict(name="prior (most linked candidate)", **prior,
               ambiguous=_ambiguous(docs, [[m.candidates[0].title if m.candidates else None
                                            for m in d.mentions] for d in docs]))]
  for inference, split in modes:
    forward = runner.compiled_forward(module, params, tokenizer, inference)
    if warm_up:
      runner.evaluate_documents(module, params, tokenizer, docs, config,
                                inference_mode=inference, split_mode=split, batch_size=16,
                                forward=forward)
    predictions, scores = runner.evaluate_documents(
        module, params, tokenizer, docs, config, inference_mode=inference, split_mode=split,
        batch_size=16, forward=forward)
    titles = [[p.title for p in doc] for doc in predictions]
    rows.append(dict(name=f"model {inference}, {split}", precision=scores["precision"],
                     in_kb_accuracy=_in_kb(docs, titles), ambiguous=_ambiguous(docs, titles),
                     mentions_per_second=scores["mentions_per_second"]))
  return rows


def _gold_known(m) -> bool:
  return any(c.title == m.title for c in m.candidates)


def _in_kb(docs, titles) -> float:
  pairs = [(m, t) for d, ts in zip(docs, titles) for m, t in zip(d.mentions, ts)
           if _gold_known(m)]
  return sum(m.title == t for m, t in pairs) / max(len(pairs), 1)


def _ambiguous(docs, titles) -> str:
  pairs = [(m, t) for d, ts in zip(docs, titles) for m, t in zip(d.mentions, ts)
           if _gold_known(m) and len(m.candidates) > 1]
  return f"{sum(m.title == t for m, t in pairs)}/{len(pairs)}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", type=Path, default=Path("/tmp/luke_ed_bench"))
  parser.add_argument("--model", type=Path, help="evaluate this checkpoint (no training)")
  parser.add_argument("--held_out", type=float, default=0.2)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--hidden", type=int, default=64)
  parser.add_argument("--learning_rate", type=float, default=3e-3)
  parser.add_argument("--max_seq_length", type=int, default=256)
  args = common.parse_args(parser, epochs=1)  # --quick: one epoch, a smoke run
  start = time.perf_counter()
  _, files = build_data(args.out, held_out=args.held_out, seed=args.seed)
  model = args.model
  if model is None:
    base = tiny_checkpoint(args.out, list(files.values()), hidden=args.hidden)
    model = fine_tune(base, files, args.out / "finetune", epochs=args.epochs,
                      learning_rate=args.learning_rate, max_seq_length=args.max_seq_length)
  rows = evaluate(model, files["held_out"], max_seq_length=args.max_seq_length)
  common.print_table(
      f"Entity disambiguation on held-out Wikipedia links ({rows[0]['mentions']} mentions, "
      f"{rows[0]['in_kb_mentions']} with the gold among the candidates)",
      ["", "in-KB accuracy", "precision", "ambiguous correct", "mentions/s"],
      [[r["name"], f"{r['in_kb_accuracy']:.4f}", f"{r['precision']:.4f}", r["ambiguous"],
        f"{r['mentions_per_second']:.0f}" if "mentions_per_second" in r else "-"]
       for r in rows])
  print(f"{common.environment(args.threads)}; {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
  main()
