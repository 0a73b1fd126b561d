r"""ReCoRD (SuperGLUE JSONL) with the paper's settings.

Paper (the commands in github.com/studio-ousia/luke `examples/legacy/README.md`): batch 32
(1 x 4 accumulation x 8 GPUs), lr 1e-5, 2 epochs, seed 4, sequences of 512 tokens with queries
of at most 90 and windows 128 tokens apart; the dev exact match picks the best epoch. Scores
are the official script's fractions (0.906 = 90.6 EM).

  python run_finetune.py --config configs/finetune/record.py \
      --config.train.init_checkpoint=/ckpt/luke-large \
      --config.data.train_file=ReCoRD/train.jsonl \
      --config.data.dev_file=ReCoRD/val.jsonl \
      --workdir /tmp/record

Add `--config.train.grad_accum_steps=4` (or 8) when 32 rows of 512 tokens do not fit at once.
The SuperGLUE `test.jsonl` has no answers: as `test_file` it gives predictions, no scores.
"""

from luke_jax.finetune.config import base_config


def get_config(arg=None):
  del arg
  config = base_config("record")
  config.data.update(dict(
      max_seq_length=512,
      max_query_length=90,  # query tokens, the placeholder included
      doc_stride=128,       # tokens between window starts (the reference's meaning)
      # Placeholder + up to 63 candidates per row; a window with more gives more rows. The
      # reference pads to the longest row of its batch; fixed shapes need a bound, and ReCoRD
      # windows rarely hold more.
      max_entity_length=64,
      max_mention_length=30,
      placeholder_token="<ent2>",     # the reference's [PLACEHOLDER]
      entity_marker_token="<ent>"))   # the reference's [ENTITY], around every candidate
  config.train.update(dict(num_epochs=2, batch_size=32, eval_batch_size=32, seed=4))
  config.optim.learning_rate = 1e-5
  return config
