r"""Entity typing on Open Entity with the paper's settings.

  python run_finetune.py --config configs/finetune/open_entity.py \
      --config.train.init_checkpoint=$LUKE_JAX_CHECKPOINT \
      --config.data.train_file=$OPEN_ENTITY/train.json \
      --config.data.dev_file=$OPEN_ENTITY/dev.json \
      --config.data.test_file=$OPEN_ENTITY/test.json --workdir /tmp/luke_open_entity

Files are UFET crowd JSON lines (`ultrafine_acl18/crowd/{train,dev,test}.json`, filtered to
the 9 general types) or ERNIE's Open Entity release (`OpenEntity/{train,dev,test}.json`, the
paper's data). Paper (the commands in github.com/studio-ousia/luke `examples/legacy/README.md`):
batch 4 (2 x 2 accumulation), lr 1e-5, 3 epochs, seed 12, mention length 30; AdamW without
bias correction, betas (0.9, 0.98), 6% warmup then linear decay (the base config). Prediction
only (one sentence per line, the mention marked `<e>...</e>`):

  python run_finetune.py --config configs/finetune/open_entity.py --predict_only \
      --predict_file sentences.txt --workdir /tmp/luke_open_entity  # -> predictions.jsonl
"""

import ml_collections

from luke_jax.finetune.config import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = base_config("open_entity")
  # Open Entity sentences fit 256 sub-words; longer input loses context words at its edges.
  config.data.max_seq_length = 256
  config.data.max_entity_length = 1
  config.data.max_mention_length = 30
  # The type list (index = output unit); empty: the 9 general types, sorted.
  config.data.labels = ml_collections.FieldReference([], field_type=list)
  config.train.batch_size = 4
  config.train.eval_batch_size = 32
  config.optim.learning_rate = 1e-5
  config.train.num_epochs = 3
  config.train.seed = 12
  return config
