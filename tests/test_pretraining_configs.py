"""Every pretraining config in configs/ runs a step.

`configs/pretrain_tiny.py` runs in `test_train.py`, each `configs/finetune/*.py` in its task's
test (`run_tiny_finetune`).

The model dimensions shrink to a tiny encoder; everything else is the config's own: optimizer
and schedule, stage and trainable rules, dtype, scan and remat policy, mesh and sharding rules.
"""

import jax
import numpy as np
import pytest

from conftest import load_config
from luke_jax.pretraining import train
from test_train import _fast_compiles  # noqa: F401

pytestmark = pytest.mark.slow  # end to end: `make test` runs it, `make test-fast` does not

TINY_MODEL = dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                  intermediate_size=37, entity_emb_size=16, max_position_embeddings=130)


@pytest.mark.parametrize("arg", [f"model={m},size={s},stage={t}" for m in ("luke", "mluke")
                                 for s in ("base", "large") for t in (1, 2)])
def test_pretrain_config_runs_a_step(arg, dataset_dir, tmp_path):
  config = load_config("pretrain.py", arg)
  config.model.update(TINY_MODEL)
  config.data.update(dataset_dir=str(dataset_dir), max_seq_length=128, num_workers=0)
  config.train.update(steps=1, batch_size=8, export=False)  # one row per device
  result = train.train_and_evaluate(config, tmp_path)
  assert result.step == 1 and np.isfinite(result.losses[0][1])
  layer = jax.tree.leaves(result.params["luke"]["encoder"])[0]
  assert layer.dtype == np.float32  # parameters stay float32 under bfloat16 compute



@pytest.fixture(scope="module")
def ed_dataset_dir(dataset_dir, wiki_dump, tmp_path_factory):
  """The ED recipe's data: a small candidate-like vocabulary, other links kept as [UNK]."""
  from luke_jax.data import dataset, entity_vocab_builder
  from luke_jax.tokenization.entity_vocab import EntityVocab
  out = tmp_path_factory.mktemp("ed_data")
  vocab_file = out / "entity_vocab.jsonl"
  counts = entity_vocab_builder.count_links(wiki_dump, workers=1)
  entity_vocab_builder.save_atomic(entity_vocab_builder.build_entity_vocab(counts, 40),
                                   vocab_file)
  meta = dataset.build(wiki_dump, dataset_dir.parent / "tokenizer", vocab_file, out / "dataset",
                       config=dict(max_seq_length=128, max_entity_length=16,
                                   max_mention_length=8, include_unk_entities=True),
                       workers=1, max_num_documents=20)
  assert meta["number_of_items"]
  ids = np.concatenate([e["entity_ids"] for e in dataset.read_pretraining_examples(
      out / "dataset")])
  unk = EntityVocab.load(vocab_file).unk_id
  assert np.mean(ids == unk) > 0.5  # most links fall outside the 40 entries: [UNK] inputs
  return out / "dataset"


def test_ed_pretrain_config_runs_a_step(ed_dataset_dir, tmp_path):
  # Stage 1 (the entity parameters only); stage 2 differs in the optimizer's numbers.
  assert load_config("pretrain_ed.py", "stage=2").optim.learning_rate == 5e-5
  config = load_config("pretrain_ed.py", "stage=1")
  assert config.data.masked_lm_prob == 0.0 and config.data.masked_entity_prob == 0.3
  config.model.update(TINY_MODEL)
  config.data.update(dataset_dir=str(ed_dataset_dir), max_seq_length=128, num_workers=0)
  config.train.update(steps=1, batch_size=8, export=False)
  result = train.train_and_evaluate(config, tmp_path)
  assert result.step == 1 and np.isfinite(result.losses[0][1])


def test_ed_pretrain_config_refuses_a_dataset_without_unk_entities(dataset_dir, tmp_path):
  config = load_config("pretrain_ed.py", "stage=1")
  config.model.update(TINY_MODEL)
  config.data.update(dataset_dir=str(dataset_dir), max_seq_length=128, num_workers=0)
  config.train.update(steps=1, batch_size=8, export=False)
  with pytest.raises(ValueError, match="include_unk_entities"):
    train.train_and_evaluate(config, tmp_path)
