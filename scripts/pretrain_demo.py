r"""End-to-end pretraining demo on the real Wikipedia sample, on CPU in a few minutes.

  python scripts/pretrain_demo.py --out demo_out      (what `make demo` runs)

Steps, all under `--out`: fetch the sample dump (`data/fetch_sample.sh`) if missing, train a
SentencePiece tokenizer (`tokenizer/`), build the entity vocabulary (`entity_vocab.jsonl`)
and the pretraining dataset (`dataset/`), pretrain `configs/pretrain_tiny.py` (`workdir/`:
checkpoints, TensorBoard events), export `model/` (luke-jax) and `hf_export/` (transformers),
and check that `transformers.LukeForMaskedLM` loads the export with no missing or unexpected
keys. Reruns reuse the tokenizer, vocabulary and dataset and start training afresh.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags, logging


def _define_flags() -> None:
  # Defined only when run as a script: the tests import this module for `build_dataset`.
  flags.DEFINE_string("out", "demo_out", "Directory for everything the demo writes.")
  flags.DEFINE_integer("steps", 600, "Training steps.")
  flags.DEFINE_integer("batch_size", 32, "Global batch size.")


REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "samples" / "enwiki-sample.xml.bz2"


def fetch_sample() -> Path:
  if not SAMPLE.exists():
    subprocess.run(["bash", str(REPO / "data" / "fetch_sample.sh"), str(SAMPLE.parent)],
                   check=True, cwd=REPO, env={**os.environ, "PYTHON": sys.executable})
  return SAMPLE


def build_dataset(out: Path, *, dump: Path | None = None, vocab_size: int = 4000,
                  entity_vocab_size: int = 1000, max_documents: int | None = None,
                  workers: int = 2) -> Path:
  """Tokenizer, entity vocabulary and dataset under `out`; returns the dataset directory.

  Each product is skipped when already present, so reruns are cheap.
  """
  from luke_jax.data import dataset, entity_vocab_builder, train_sentencepiece  # pylint: disable=g-import-not-at-top
  dump = dump or fetch_sample()
  out.mkdir(parents=True, exist_ok=True)
  tokenizer_dir, vocab_file, dataset_dir = out / "tokenizer", out / "entity_vocab.jsonl", out / "dataset"
  if not tokenizer_dir.exists():
    train_sentencepiece.train(str(dump), tokenizer_dir, vocab_size=vocab_size,
                              max_documents=max_documents)
  if not vocab_file.exists():
    counts = entity_vocab_builder.count_links(dump, workers=1)
    entity_vocab_builder.save_atomic(
        entity_vocab_builder.build_entity_vocab(counts, entity_vocab_size), vocab_file)
  dataset.build(dump, tokenizer_dir, vocab_file, dataset_dir,
                config=dict(max_seq_length=128, max_entity_length=16, max_mention_length=8),
                workers=workers, max_num_documents=max_documents)
  return dataset_dir


def tiny_config():
  """`configs/pretrain_tiny.py`'s config, loaded from the checkout as `--config` loads it."""
  spec = importlib.util.spec_from_file_location("pretrain_tiny",
                                                REPO / "configs" / "pretrain_tiny.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def check_hf_export(hf_dir: Path) -> None:
  import transformers  # pylint: disable=g-import-not-at-top
  _, info = transformers.LukeForMaskedLM.from_pretrained(hf_dir, output_loading_info=True)
  bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys") and v}
  if bad:
    raise RuntimeError(f"{hf_dir}: transformers reports {bad}")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO; keep the loss visible
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_threefry_partitionable", True)
  from luke_jax.convert import hf  # pylint: disable=g-import-not-at-top
  from luke_jax.pretraining import train  # pylint: disable=g-import-not-at-top
  out = Path(flags.FLAGS.out).absolute()
  start = time.time()

  print("== 1/3 data: tokenizer, entity vocabulary, dataset", flush=True)
  dataset_dir = build_dataset(out)
  data_seconds = time.time() - start

  print(f"== 2/3 pretraining configs/pretrain_tiny.py for {flags.FLAGS.steps} steps", flush=True)
  config = tiny_config()
  config.data.dataset_dir = str(dataset_dir)
  config.train.steps = flags.FLAGS.steps
  config.train.batch_size = flags.FLAGS.batch_size
  workdir = out / "workdir"
  shutil.rmtree(workdir, ignore_errors=True)  # the demo always trains from scratch
  train_start = time.time()
  result = train.train_and_evaluate(config, workdir)
  model_dir, hf_dir = out / "model", out / "hf_export"
  shutil.rmtree(model_dir, ignore_errors=True)
  shutil.move(str(result.model_dir), str(model_dir))
  hf.write_hf(hf_dir, result.params, result.model_config, train.ARCHITECTURE,
              tokenizer_dir=dataset_dir, overwrite=True)
  train_seconds = time.time() - train_start

  print("== 3/3 loading the export with transformers", flush=True)
  check_hf_export(hf_dir)
  first, last = result.losses[0], result.losses[-1]
  window = min(20, len(result.losses))
  mean = lambda xs: sum(x for _, x in xs) / len(xs)
  print(f"""
dataset      {dataset_dir}
checkpoints  {workdir / 'checkpoints'}   TensorBoard: {workdir / 'tensorboard'}
luke-jax     {model_dir}   (luke_jax.from_pretrained)
HF export    {hf_dir}   (transformers.LukeForMaskedLM: no missing or unexpected keys)
loss         step {first[0]}: {first[1]:.4f}  ->  step {last[0]}: {last[1]:.4f}
             (mean of first {window}: {mean(result.losses[:window]):.4f}, last {window}: \
{mean(result.losses[-window:]):.4f})
time         data {data_seconds:.0f}s, training+export {train_seconds:.0f}s, total \
{time.time() - start:.0f}s""", flush=True)
  if mean(result.losses[-window:]) >= mean(result.losses[:window]):
    raise SystemExit("the loss did not fall")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
