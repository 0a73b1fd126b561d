"""The fields every fine-tuning config has; `configs/finetune/<task>.py` adds the task's.

Optimiser defaults are the paper's trainer (`luke.md` E): AdamW without bias correction,
betas (0.9, 0.98), eps 1e-6, weight decay 0.01 (not on biases and LayerNorm), linear decay
after 6% warmup, no gradient clipping, dropout 0.1.
"""

from __future__ import annotations

import ml_collections

from luke_jax import sharding


def base_config(task: str) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = task
  # A luke-jax checkpoint (converter or pretraining) or a Hugging Face LUKE directory; its
  # tokenizer files are used. Any head's checkpoint works: the encoder `luke` is taken.
  config.init_checkpoint = ""
  config.data = ml_collections.ConfigDict(dict(
      train_file="", dev_file="", test_file="",
      max_seq_length=512, max_entity_length=128, max_mention_length=30))
  config.model = ml_collections.ConfigDict(dict(
      use_entity_aware_attention=True, dtype="float32", scan_layers=False,
      remat_policy="none", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1))
  config.train = ml_collections.ConfigDict(dict(
      num_epochs=3, batch_size=32, eval_batch_size=32, learning_rate=1e-5,
      max_steps=0,            # a cap on optimizer steps; 0 = epochs decide
      grad_accum_steps=1, seed=42, warmup_ratio=0.06, weight_decay=0.01, b1=0.9, b2=0.98,
      eps=1e-6, bias_correction=False, max_grad_norm=0.0,
      # [regex, trainable] rules over '/'-joined parameter paths; empty = everything trains.
      trainable=ml_collections.FieldReference([], field_type=list),
      eval_every_epoch=True, log_every=50, ckpt_every=500, keep_ckpts=2))
  # A tuple, so `--config.mesh="(('data', 2), ('fsdp', 1), ('tensor', 1))"` overrides it.
  config.mesh = (("data", -1), ("fsdp", 1), ("tensor", 1))
  config.sharding = ml_collections.ConfigDict(
      {"rules": [list(r) for r in sharding.DEFAULT_RULES]})
  return config
