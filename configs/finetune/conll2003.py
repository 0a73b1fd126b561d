r"""Named entity recognition on CoNLL-2003 with the paper's settings.

  python run_finetune.py --config configs/finetune/conll2003.py \
      --config.train.init_checkpoint=$LUKE_JAX_CHECKPOINT \
      --config.data.train_file=$CONLL/eng.train --config.data.dev_file=$CONLL/eng.testa \
      --config.data.test_file=$CONLL/eng.testb --workdir /tmp/luke_conll2003

Files are the CoNLL-2003 columns (`token POS chunk NER`, or just `token tag`), IOB1 as
distributed or IOB2; `-DOCSTART-` separates documents. Paper (the commands in
github.com/studio-ousia/luke `examples/legacy/README.md`): effective batch 8 (2 x 4
accumulation), lr 1e-5, 5 epochs, seed 35, 512 subwords, 128 spans per instance, spans of at
most 16 subwords; AdamW without bias correction, betas (0.9, 0.98), 6% warmup then linear
decay (the base config). If 8 windows of 512 do not fit the accelerator, raise
`train.grad_accum_steps` (batch_size stays the effective batch). Predictions
(`{dev,test}_predictions.txt`, `token gold predicted`) can be checked with conlleval.
Prediction only with the fine-tuned model (`--checkpoint`, default WORKDIR/best) on plain text
(one sentence per line, tokens separated by spaces, a blank line between documents); it writes
WORKDIR/predictions.txt, `token predicted` per line (`--noraw` reads a CoNLL file instead):

  python run_finetune.py --config configs/finetune/conll2003.py --predict_only \
      --predict_file sentences.txt --workdir /tmp/luke_conll2003
"""

import ml_collections

from luke_jax.finetune.config import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = base_config("conll2003")
  # A sentence is encoded with the words of its neighbours in the document around it
  # (the paper's document-level context; ~1 F1 better than the sentence alone, luke#19).
  config.data.max_seq_length = 512
  config.data.max_entity_length = 128  # spans per instance; more become several instances
  config.data.max_mention_length = 16  # longest span, in subwords
  # "auto": IOB1 when some I- tag opens an entity, else IOB2; "iob2" makes such a tag an
  # error; predictions are written in the file's scheme.
  config.data.tag_scheme = "auto"
  config.data.document_context = True
  config.train.batch_size = 8
  config.train.eval_batch_size = 32
  config.optim.learning_rate = 1e-5
  config.train.num_epochs = 5
  config.train.seed = 35
  return config
