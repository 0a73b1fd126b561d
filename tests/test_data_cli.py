"""The three data tools chained on the real sample, then masked batches from the result."""

import json
import subprocess
import sys

import numpy as np
import pytest

from luke_jax.data import dataset
from luke_jax.data.masking import MaskingConfig, word_start_table
from luke_jax.data.pipeline import PretrainingPipeline
from luke_jax.tokenization.entity_vocab import EntityVocab
from luke_jax.tokenization.tokenizer import LukeTokenizer


def _run(*args):
  proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


@pytest.mark.slow
def test_dump_to_masked_batches(wiki_dump, tmp_path):
  tokdir, vocab, out = tmp_path / "tokenizer", tmp_path / "entity_vocab.jsonl", tmp_path / "ds"
  _run("luke_jax.data.train_sentencepiece", f"--dump={wiki_dump}", f"--output_dir={tokdir}",
       "--vocab_size=2000", "--max_num_documents=30")
  printed = _run("luke_jax.data.build_entity_vocab", f"--dump={wiki_dump}", f"--output={vocab}",
                 "--vocab_size=40")
  assert "Angola" in printed  # the top entries are printed
  _run("luke_jax.data.build_pretraining_dataset", f"--dump={wiki_dump}", f"--tokenizer={tokdir}",
       f"--entity_vocab={vocab}", f"--output_dir={out}", "--max_seq_length=128",
       "--max_entity_length=8", "--max_mention_length=8", "--max_num_documents=30",
       "--include_unk_entities", "--workers=2")
  meta = json.loads((out / "metadata.json").read_text())
  assert meta["number_of_items"] > 0 and meta["tokenizer_class"] == "sentencepiece"
  tokenizer = LukeTokenizer.from_pretrained(out)
  entity_vocab = EntityVocab.load(out / "entity_vocab.jsonl")
  pieces = [tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))]
  config = MaskingConfig(
      cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, pad_id=tokenizer.pad_token_id,
      mask_id=tokenizer.mask_token_id, vocab_size=tokenizer.mask_token_id + 1,
      entity_mask_id=entity_vocab.mask_id, entity_pad_id=entity_vocab.pad_id,
      entity_vocab_size=len(entity_vocab), max_seq_length=128, max_entity_length=8,
      max_mention_length=8, whole_word_masking=False)
  source = dataset.data_source(out)
  with PretrainingPipeline(source, config, word_start_table(pieces, "sentencepiece"),
                           global_batch_size=4, seed=0, num_workers=0) as pipeline:
    batch = next(iter(pipeline))
  assert batch["input_ids"].shape == (4, 128)
  assert batch["entity_position_ids"].shape == (4, 8, 8)
  assert np.all(batch["input_ids"][:, 0] == tokenizer.cls_token_id)
  assert batch["mlm_weights"].sum() > 0 and batch["mep_weights"].sum() > 0
