r"""Tiny LUKE pretraining for smoke runs, tests and `scripts/pretrain_demo.py`.

  python run_pretrain.py --config configs/pretrain_tiny.py \
      --config.data.dataset_dir=$DATASET --workdir /tmp/luke_pretrain_tiny

The model has the `tiny` preset's shapes with plain attention; its vocabulary sizes (0 here)
come from the dataset. Random init, everything trainable (stage 2 semantics: there is no RoBERTa
to freeze); `--config.train.stage=1 --config.train.init_checkpoint=DIR` runs the stage-1 recipe
on a tiny RoBERTa conversion.
"""

from luke_jax.models.config import preset
from luke_jax.pretraining.config import base_config


def get_config(arg: str | None = None):
  del arg
  # Plain attention, as in the full recipe (configs/pretrain.py).
  config = base_config(
      preset("tiny", vocab_size=0, entity_vocab_size=0, max_position_embeddings=130,
             use_entity_aware_attention=False), preset="tiny",
      max_seq_length=128, max_entity_length=16, max_mention_length=8, num_workers=0)
  config.optim.update(learning_rate=2e-3, warmup_steps=20, max_grad_norm=1.0)
  config.train.update(steps=300, batch_size=16, log_every=25, ckpt_every=100, keep_ckpts=2)
  return config
