r"""Tiny LUKE pretraining for smoke runs, tests and `python -m luke_jax.pretrain_demo`.

  python run_pretrain.py --config configs/pretrain_tiny.py \
      --config.data.dataset_dir=$DATASET --workdir /tmp/luke_pretrain_tiny

The model has the `tiny` preset's shapes with plain attention; its vocabulary sizes (0 here)
come from the dataset. Random init, everything trainable (stage 2 semantics: there is no RoBERTa
to freeze); `--config.train.stage=1 --config.train.init_checkpoint=DIR` runs the stage-1 recipe
on a tiny RoBERTa conversion.
"""

import dataclasses

import ml_collections

from luke_jax import sharding
from luke_jax.models.config import preset


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = ml_collections.ConfigDict()
  # Plain attention, as in the full recipe (configs/pretrain.py).
  model = dataclasses.asdict(preset("tiny", vocab_size=0, entity_vocab_size=0,
                                    max_position_embeddings=130,
                                    use_entity_aware_attention=False))
  model.pop("id2label")  # heads are task-specific; pretraining has none
  config.model = model

  config.data = ml_collections.ConfigDict(dict(
      dataset_dir="", max_seq_length=128, max_entity_length=16, max_mention_length=8,
      whole_word_masking=True, masked_lm_prob=0.15, masked_entity_prob=0.15, num_workers=0))

  config.optim = ml_collections.ConfigDict(dict(
      learning_rate=2e-3, warmup_steps=20, total_steps=0, b1=0.9, b2=0.999, eps=1e-6,
      weight_decay=0.01, bias_correction=False, max_grad_norm=1.0,
      trainable=ml_collections.FieldReference(None, field_type=list)))

  config.train = ml_collections.ConfigDict(dict(
      steps=300, global_batch_size=16, grad_accum_steps=1, log_every=25, ckpt_every=100,
      keep_ckpts=2, seed=0, stage=2, init_checkpoint="", export=True))

  # Tuples, so that the command line can override them, e.g.
  # --config.mesh='(("data", -1), ("fsdp", 4), ("tensor", 2))'.
  config.mesh = (("data", -1), ("fsdp", 1), ("tensor", 1))
  config.sharding = ml_collections.ConfigDict(
      {"rules": tuple(tuple(r) for r in sharding.DEFAULT_RULES)})
  return config
