r"""Entity disambiguation fine-tuned on AIDA-CoNLL with the global ED model's settings.

  python run_finetune.py --config configs/finetune/entity_disambiguation.py \
      --config.train.init_checkpoint=$LUKE_JAX_CHECKPOINT \
      --config.data.train_file=$ED/aida_train.csv --config.data.dev_file=$ED/aida_testA.csv \
      --config.data.test_file=$ED/aida_testB.csv \
      --config.data.titles_file=$ED/enwiki_20181220_titles.txt \
      --config.data.redirects_file=$ED/enwiki_20181220_redirects.tsv --workdir /tmp/luke_ed

$ED is the dataset directory of github.com/studio-ousia/luke `examples/entity_disambiguation`
(README); the word files and `persons.txt` are found next to the mention files. The checkpoint
is the ED model (its entity-prediction head is the starting point) or any LukeForMaskedLM
checkpoint; the model keeps its own attention (the ED model has no entity-aware queries).
Reference `train.py`: batch 16, lr 2e-5, 2 epochs, 10% warmup then linear decay, AdamW
(0.9, 0.999) eps 1e-6 without bias correction, weight decay 0.01, gradient clipping 1.0, the
entity embedding table and the entity head's bias frozen; 90% of each window's mentions masked
per step; 512 word pieces, 128 mentions, 30 pieces per mention and 30 candidates per window.
Dev and test are decoded globally with "simple" document splits (the paper's best zero-shot
numbers use `--config.data.document_split_mode=per_mention`); other test sets:
`python -m luke_jax.disambiguation.evaluate --model=WORKDIR/best ...`.
"""

import ml_collections

from luke_jax.finetune.config import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = base_config("entity_disambiguation")
  config.data.titles_file = ""
  config.data.redirects_file = ""
  config.data.max_seq_length = 512
  config.data.max_entity_length = 128
  config.data.max_mention_length = 30
  config.data.max_candidate_length = 30
  config.data.masked_entity_prob = 0.9
  config.data.inference_mode = "global"  # "global" | "local"
  config.data.document_split_mode = "simple"  # "simple" | "per_mention" (dev and test)
  # A candidate outside the entity vocabulary: "unk" (its [UNK] id, as the reference) | "drop".
  config.data.unknown_candidates = "unk"
  # The checkpoint's own attention (None keeps it): the ED model has no entity-aware queries.
  config.model.use_entity_aware_attention = ml_collections.FieldReference(None, field_type=bool)
  config.optim.update(learning_rate=2e-5, warmup_ratio=0.1, b2=0.999, eps=1e-6,
                      weight_decay=0.01, max_grad_norm=1.0, bias_correction=False)
  # The reference trains neither the entity table (tied to the head's decoder) nor the bias.
  config.optim.trainable = [["luke/entity_embeddings/entity_embeddings/.*", False],
                            ["entity_predictions/bias", False], [".*", True]]
  config.train.batch_size = 16
  config.train.eval_batch_size = 16
  config.train.num_epochs = 2
  return config
