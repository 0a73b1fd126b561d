r"""LUKE / mLUKE pretraining with the reference hyper-parameters (two stages).

  python -m luke_jax.convert --src_format=roberta --src=$ROBERTA_BASE --dst=$R \
      --entity_vocab_size=$(wc -l < $DATASET/entity_vocab.jsonl)
  python run_pretrain.py --config configs/pretrain.py:size=base,stage=1 \
      --config.data.dataset_dir=$DATASET --config.train.init_checkpoint=$R --workdir $W1
  python run_pretrain.py --config configs/pretrain.py:size=base,stage=2 \
      --config.data.dataset_dir=$DATASET --config.train.init_checkpoint=$W1/model --workdir $W2

`size` is base | large, `model` is luke | mluke (default luke). Stage 1 trains only the entity
embeddings and the entity head (reference `--fix-bert-weights`); stage 2 trains everything
from the stage-1 result with a fresh optimizer (`--reset-optimization-states`). Reference
(luke.md C.7): AdamW b=(0.9, 0.999), eps 1e-6, wd 0.01, no bias correction, 2,500 warmup steps
then linear decay to 0, batch 2048, gradient clipping 10000 (about off); peak lr 5e-4 in
stage 1, 1e-5 (LUKE) / 1e-4 (mLUKE base) / 5e-5 (mLUKE large) in stage 2; 98,168 steps per
stage for LUKE, 540,326 for mLUKE. Set `grad_accum_steps` so that 2048 / accum fits memory.
"""

import dataclasses

import ml_collections

from luke_jax import sharding
from luke_jax.models.config import preset

_STEPS = {"luke": 98_168, "mluke": 540_326}
_STAGE2_LR = {("luke", "base"): 1e-5, ("luke", "large"): 1e-5,
              ("mluke", "base"): 1e-4, ("mluke", "large"): 5e-5}


def _parse(arg: str | None) -> dict[str, str]:
  out = dict(size="base", stage="1", model="luke")
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    if key not in out:
      raise ValueError(f"unknown config argument {key!r}; known: {sorted(out)}")
    out[key] = value
  return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = _parse(arg)
  name, size, stage = args["model"], args["size"], int(args["stage"])
  if name not in _STEPS or size not in ("base", "large") or stage not in (1, 2):
    raise ValueError(f"bad config argument {arg!r}: model luke|mluke, size base|large, stage 1|2")
  config = ml_collections.ConfigDict()
  # Pretraining uses plain attention (luke.md C.8): the entity-aware queries are added as copies
  # of `query` when converting for fine-tuning, and a RoBERTa conversion has none.
  # Vocabulary sizes 0: the dataset's (its tokenizer is RoBERTa's / XLM-R's, without the two
  # entity markers the released checkpoints add later).
  model = dataclasses.asdict(preset(f"{name}-{size}", dtype="bfloat16", scan_layers=True,
                                    remat_policy="minimal", use_entity_aware_attention=False,
                                    vocab_size=0, entity_vocab_size=0))
  model.pop("id2label")
  config.model = model

  config.data = ml_collections.ConfigDict(dict(
      dataset_dir="", max_seq_length=512, max_entity_length=128, max_mention_length=30,
      whole_word_masking=True, masked_lm_prob=0.15, masked_entity_prob=0.15, num_workers=4))

  config.optim = ml_collections.ConfigDict(dict(
      learning_rate=5e-4 if stage == 1 else _STAGE2_LR[(name, size)], warmup_steps=2500,
      total_steps=_STEPS[name], b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01,
      bias_correction=False, max_grad_norm=10000.0,
      trainable=ml_collections.FieldReference(None, field_type=list)))

  config.train = ml_collections.ConfigDict(dict(
      steps=_STEPS[name], global_batch_size=2048, grad_accum_steps=1, log_every=100,
      ckpt_every=1000, keep_ckpts=3, seed=0, stage=stage, init_checkpoint="", export=True))

  # Tuples, so that the command line can override them, e.g.
  # --config.mesh='(("data", -1), ("fsdp", 4), ("tensor", 2))'.
  config.mesh = (("data", -1), ("fsdp", 1), ("tensor", 1))
  config.sharding = ml_collections.ConfigDict(
      {"rules": tuple(tuple(r) for r in sharding.DEFAULT_RULES)})
  return config
