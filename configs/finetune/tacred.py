r"""Relation classification on TACRED with the paper's settings.

  python run_finetune.py --config configs/finetune/tacred.py \
      --config.train.init_checkpoint=$LUKE_JAX_CHECKPOINT \
      --config.data.train_file=$TACRED/train.json --config.data.dev_file=$TACRED/dev.json \
      --config.data.test_file=$TACRED/test.json --workdir /tmp/luke_tacred

Paper (the commands in github.com/studio-ousia/luke `examples/legacy/README.md`): effective
batch 32 (4 x 8 accumulation), lr 1e-5, 5 epochs, seed 42; AdamW without bias correction,
betas (0.9, 0.98), 6% warmup then linear decay (the base config). If 32 sentences do not fit
the accelerator, raise `train.grad_accum_steps` (batch_size stays the effective batch).
Prediction only (one sentence per line, `<e1>subject</e1>` and `<e2>object</e2>` marked):

  python run_finetune.py --config configs/finetune/tacred.py --predict_only \
      --predict_file sentences.txt --workdir /tmp/luke_tacred  # -> predictions.txt
"""

import ml_collections

from luke_jax.finetune.config import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = base_config("tacred")
  # TACRED sentences are at most ~100 words, far below 256 sub-words; longer input loses
  # context words at its edges (never entity words).
  config.data.max_seq_length = 256
  config.data.max_entity_length = 2  # subject, object
  config.data.max_mention_length = 30
  config.data.negative_label = "no_relation"  # id 0; left out of the micro P/R/F1
  # A fixed label list (e.g. a fine-tuned checkpoint's id2label order); empty: no_relation
  # then the training relations sorted.
  config.data.labels = ml_collections.FieldReference([], field_type=list)
  config.train.batch_size = 32
  config.train.eval_batch_size = 64
  config.optim.learning_rate = 1e-5
  config.train.num_epochs = 5
  config.train.seed = 42
  return config
