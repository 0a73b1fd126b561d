r"""Extractive QA on SQuAD 1.1 (default) or 2.0 (`:v2`), the paper's settings.

  python run_finetune.py --config configs/finetune/squad.py \
      --config.train.init_checkpoint=$LUKE_JAX_CHECKPOINT \
      --config.data.train_file=$SQUAD/train-v1.1.json \
      --config.data.dev_file=$SQUAD/dev-v1.1.json --workdir /tmp/luke_squad

  python run_finetune.py --config configs/finetune/squad.py:v2 \
      --config.train.init_checkpoint=$LUKE_JAX_CHECKPOINT \
      --config.data.train_file=$SQUAD/train-v2.0.json \
      --config.data.dev_file=$SQUAD/dev-v2.0.json --workdir /tmp/luke_squad2

Paper (the `reading_comprehension` command in github.com/studio-ousia/luke
`examples/legacy/README.md`): effective batch 48, lr 1.5e-5, 2 epochs, seed 14, sequence 512,
question 64, doc stride 128 (a step between windows), answers of at most 30 tokens from the 20
best starts and ends; entity embeddings frozen. If 48 windows do not fit
the accelerator, raise `train.grad_accum_steps` (batch_size stays the effective batch).
`dev_predictions.json` in the workdir is what the official `evaluate-v1.1.py` /
`evaluate-v2.0.py` read. The paper fed Wikipedia entities linked from each passage's article;
`--config.data.entities=titles` (exact matches of entity-vocabulary titles) or a JSON
`{"mention text": "Entity Title"}` file approximates that; the default feeds none.
"""

import ml_collections

from luke_jax.finetune.config import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  version = (arg or "v1").lower()
  if version not in ("v1", "v1.1", "v2", "v2.0"):
    raise ValueError(f"squad config argument {arg!r}: use v1 (SQuAD 1.1) or v2 (SQuAD 2.0)")
  config = base_config("squad")
  config.data.max_seq_length = 512
  config.data.max_query_length = 64
  config.data.doc_stride = 128
  config.data.max_answer_length = 30
  config.data.n_best_size = 20
  config.data.version_2_with_negative = version.startswith("v2")
  # SQuAD 2.0: predict "" when the null score beats the best span by more than this.
  config.data.null_score_diff_threshold = 0.0
  config.data.entities = "none"  # "none" | "titles" | path to a mention dictionary JSON
  config.data.max_entity_length = 128
  config.data.max_mention_length = 30
  config.train.batch_size = 48
  config.train.eval_batch_size = 64
  config.optim.learning_rate = 1.5e-5
  config.train.num_epochs = 2
  config.train.seed = 14
  # The legacy recipe freezes the (500K-row) entity embedding table.
  config.optim.trainable = [["luke/entity_embeddings/entity_embeddings/embedding", False],
                            [".*", True]]
  return config
