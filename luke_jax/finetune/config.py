"""The fields every fine-tuning config has; `configs/finetune/<task>.py` adds the task's.

The shared sections (`model`, `mesh`, `sharding`, `optim`, `train`) are
`luke_jax.training.config`'s. Optimiser defaults are the paper's fine-tuning trainer
(github.com/studio-ousia/luke `examples/legacy/utils/trainer.py`): AdamW without bias
correction, betas (0.9, 0.98), eps 1e-6, weight decay 0.01 (not on biases and LayerNorm),
linear decay after 6% warmup, no gradient clipping, dropout 0.1.
"""

from __future__ import annotations

import ml_collections

from luke_jax.training.config import shared_config


def base_config(task: str) -> ml_collections.ConfigDict:
  config = shared_config()
  config.task = task
  config.data = ml_collections.ConfigDict(dict(
      train_file="", dev_file="", test_file="",
      max_seq_length=512, max_entity_length=128, max_mention_length=30))
  # Changes to the checkpoint's model config (fields left out keep the checkpoint's value).
  # attention_impl None keeps the checkpoint's ("fused" unless it says otherwise); "splash" is
  # the TPU kernel, without attention dropout.
  config.model = ml_collections.ConfigDict(dict(
      use_entity_aware_attention=True, dtype="float32", scan_layers=False,
      remat_policy="none", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
      attention_impl=ml_collections.FieldReference(None, field_type=str)))
  config.optim.update(learning_rate=1e-5, warmup_ratio=0.06, b2=0.98)
  # train.init_checkpoint: a luke-jax checkpoint (converter or pretraining) or a Hugging Face
  # LUKE directory; its tokenizer files are used. Any head's checkpoint works: the encoder
  # `luke` is taken.
  config.train.update(num_epochs=3, batch_size=32, seed=42, log_every=50, ckpt_every=500,
                      keep_ckpts=2)
  config.train.eval_batch_size = 32
  config.train.eval_every_epoch = True
  return config
